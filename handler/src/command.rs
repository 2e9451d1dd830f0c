//! The command socket (ZRPC over a REP-compatible ROUTER): a request is a
//! TNetString dict `{id, method, args}`, the answer `{id, success, value}` or
//! `{id, success: false, condition}`. Pushpin's tools send it bare or with a
//! `T` tag; the answer uses the request's form.

use crate::engine::Input;
use crate::publish::Sink;
use holdfast_protocol::tnetstring;
use holdfast_protocol::value::Value;
use holdfast_protocol::zmq::Multipart;

/// Methods this handler answers.
const METHODS: &[&str] = &["conncheck", "get-zmq-uris", "publish", "recover", "refresh"];

/// What the handler knows when answering.
pub struct Context<'a> {
    /// This socket's own address, for `get-zmq-uris`.
    pub command_spec: &'a str,
    /// The publish inputs' addresses, for `get-zmq-uris`.
    pub publish_pull: Option<&'a str>,
    /// The SUB input's address.
    pub publish_sub: Option<&'a str>,
    /// Where `publish`, `recover` and `refresh` go.
    pub items: Option<&'a Sink>,
}

fn bytes(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn entry(key: &str, value: Value) -> (Vec<u8>, Value) {
    (key.as_bytes().to_vec(), value)
}

/// Answers one ZeroMQ message from the command socket; `None` when it is not
/// even a request (no envelope), which is dropped.
pub async fn answer(msg: Multipart, ctx: &Context<'_>) -> Option<Multipart> {
    let delimiter = msg.iter().position(|f| f.is_empty())?;
    let body = msg.get(delimiter + 1)?;
    let (tagged, raw) = match body.split_first() {
        Some((b'T', rest)) => (true, rest),
        _ => (false, &body[..]),
    };
    let reply = respond(raw, ctx).await;
    let mut encoded = if tagged { vec![b'T'] } else { Vec::new() };
    tnetstring::write(&reply, &mut encoded);
    let mut out: Multipart = msg[..=delimiter].to_vec();
    out.push(encoded);
    Some(out)
}

fn failure(id: Option<Value>, condition: &str) -> Value {
    let mut entries = Vec::new();
    if let Some(id) = id {
        entries.push(entry("id", id));
    }
    entries.push(entry("success", Value::Bool(false)));
    entries.push(entry("condition", bytes(condition)));
    Value::Map(entries)
}

async fn respond(raw: &[u8], ctx: &Context<'_>) -> Value {
    let request = match tnetstring::parse_complete(raw) {
        Ok(request @ Value::Map(_)) => request,
        Ok(_) | Err(_) => {
            tracing::warn!("command: request is not a TNetString dict");
            return failure(None, "bad-format");
        }
    };
    let id = request.get("id").cloned();
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return failure(id, "bad-format");
    };
    let value = match method {
        "conncheck" => {
            let Some(Value::List(_)) = request.get("args").and_then(|a| a.get("ids")) else {
                return failure(id, "bad-request");
            };
            // No session is held yet, so none of the asked ids is connected here.
            Value::List(Vec::new())
        }
        "get-zmq-uris" => {
            let mut uris = vec![entry("command", bytes(ctx.command_spec))];
            if let Some(pull) = ctx.publish_pull {
                uris.push(entry("publish-pull", bytes(pull)));
            }
            if let Some(sub) = ctx.publish_sub {
                uris.push(entry("publish-sub", bytes(sub)));
            }
            Value::Map(uris)
        }
        "publish" => {
            let Some(Value::List(list)) = request.get("args").and_then(|a| a.get("items")) else {
                return failure(id, "bad-request");
            };
            let parsed: Result<Vec<_>, _> = list
                .iter()
                .enumerate()
                .map(|(i, v)| holdfast_protocol::publish::parse_item_value(v, i, false))
                .collect();
            let Ok(items) = parsed else {
                return failure(id, "bad-format");
            };
            let Some(sink) = ctx.items else {
                return failure(id, "service-unavailable");
            };
            if let Err(refused) = sink.publish(items).await {
                tracing::warn!("command: publish refused: {refused}");
                return failure(id, "service-unavailable");
            }
            Value::Null
        }
        "recover" => match ctx.items {
            Some(sink) if sink.local(Input::Recover).await.is_ok() => Value::Null,
            _ => return failure(id, "service-unavailable"),
        },
        "refresh" => {
            // Refresh acts on WebSocket-over-HTTP sessions (`cid` or
            // `channel`); HTTP sessions have nothing to refresh.
            let args = request.get("args");
            let named = |key: &str| {
                args.and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let (cid, channel) = (named("cid"), named("channel"));
            if cid.is_none() && channel.is_none() {
                return failure(id, "bad-request");
            }
            match ctx.items {
                Some(sink) if sink.local(Input::Refresh { cid, channel }).await.is_ok() => {
                    Value::Null
                }
                _ => return failure(id, "service-unavailable"),
            }
        }
        other => {
            tracing::info!(method = other, known = ?METHODS, "command: unknown method");
            return failure(id, "method-not-found");
        }
    };
    let mut entries = Vec::new();
    if let Some(id) = id {
        entries.push(entry("id", id));
    }
    entries.push(entry("success", Value::Bool(true)));
    entries.push(entry("value", value));
    Value::Map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn call(body: &[u8]) -> Value {
        let ctx = Context {
            command_spec: "tcp://127.0.0.1:5563",
            publish_pull: None,
            publish_sub: None,
            items: None,
        };
        let out = run(answer(
            vec![b"peer".to_vec(), Vec::new(), body.to_vec()],
            &ctx,
        ))
        .unwrap();
        assert_eq!(out[0], b"peer");
        assert!(out[1].is_empty());
        let raw = out[2].strip_prefix(b"T").unwrap_or(&out[2]);
        tnetstring::parse_complete(raw).unwrap()
    }

    fn request(method: &str, args: Value) -> Vec<u8> {
        tnetstring::to_vec(&Value::Map(vec![
            entry("id", bytes("1")),
            entry("method", bytes(method)),
            entry("args", args),
        ]))
    }

    #[test]
    fn conncheck_and_uris() {
        let ids = Value::Map(vec![entry("ids", Value::List(vec![bytes("a")]))]);
        let reply = call(&request("conncheck", ids));
        assert_eq!(reply.get("success"), Some(&Value::Bool(true)));
        assert_eq!(reply.get("value"), Some(&Value::List(vec![])));
        assert_eq!(reply.get("id"), Some(&bytes("1")));
        let mut tagged = b"T".to_vec();
        tagged.extend(request("get-zmq-uris", Value::Map(vec![])));
        let reply = call(&tagged);
        assert_eq!(
            reply.get("value").and_then(|v| v.get("command")),
            Some(&bytes("tcp://127.0.0.1:5563"))
        );
    }

    #[test]
    fn malformed_requests() {
        let condition = |reply: Value| {
            reply
                .get("condition")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(condition(call(b"garbage")).as_deref(), Some("bad-format"));
        assert_eq!(condition(call(b"5:hello,")).as_deref(), Some("bad-format"));
        assert_eq!(
            condition(call(&tnetstring::to_vec(&Value::Map(vec![])))).as_deref(),
            Some("bad-format")
        );
        assert_eq!(
            condition(call(&request("conncheck", Value::Map(vec![])))).as_deref(),
            Some("bad-request")
        );
        assert_eq!(
            condition(call(&request("nope", Value::Map(vec![])))).as_deref(),
            Some("method-not-found")
        );
        assert_eq!(
            condition(call(&request("publish", Value::Map(vec![])))).as_deref(),
            Some("bad-request")
        );
        let items = Value::Map(vec![entry("items", Value::List(vec![Value::Map(vec![])]))]);
        assert_eq!(
            condition(call(&request("publish", items))).as_deref(),
            Some("bad-format")
        );
        let ctx = Context {
            command_spec: "x",
            publish_pull: None,
            publish_sub: None,
            items: None,
        };
        assert!(run(answer(vec![b"no-envelope".to_vec()], &ctx)).is_none());
    }
}
