//! GRIP inside a WebSocket session (both WebSocket-over-HTTP and native
//! WebSocket origins that answer with `Sec-WebSocket-Extensions: grip`):
//! `c:` control messages from the origin become [`Control`]s for the
//! handler (subscribe, unsubscribe, set-meta), published `ws-message`
//! content comes back as [`Deliver`]s and goes to the client; every
//! keep-alive tick says the session is alive, and its end is reported.
//! `keep-alive`, `send-delayed` and `flush-delayed` are the session's own
//! timers ([`Grip::deadline`], [`Grip::tick`]); `detach` is returned to
//! the transport, which closes the origin side. `session` names the
//! client session (Pushpin's session feature) whose last ids the handler
//! keeps. Unknown types are logged and skipped, as Pushpin does.

use super::client::WsClient;
use crate::session::zhttp::Zhttp;
use base64::Engine;
use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::wscontrol::{Control, Deliver};
use holdfast_protocol::zhttp::PacketType;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most filters one subscription may name (Pushpin's limit).
const MAX_FILTERS: usize = 5;

/// A session's GRIP: off, or its state.
pub(crate) struct Grip {
    state: Option<GripState>,
}

/// The state of a session with GRIP on.
struct GripState {
    /// Prefix of origin messages meant for the client.
    prefix: String,
    /// The route's channel prefix.
    channel_prefix: String,
    /// Published content for this session.
    deliveries: mpsc::Receiver<Arc<Deliver>>,
    /// The origin's `keep-alive` message, if it set one.
    keep_alive: Option<KeepAlive>,
    /// The origin's `send-delayed` message and when it goes.
    delayed: Option<(Outgoing, Instant)>,
}

/// A message the origin left with the proxy to send later.
#[derive(Debug, Clone, PartialEq)]
struct Outgoing {
    kind: PacketType,
    text: bool,
    content: Bytes,
}

/// A repeated message: after `period` of silence toward the client
/// (`idle` mode) or every `period` (`interval` mode).
#[derive(Debug)]
struct KeepAlive {
    message: Outgoing,
    period: Duration,
    interval: bool,
    next: Instant,
}

/// What a control message asks of the transport.
#[derive(Debug, PartialEq, Eq)]
enum Controlled {
    /// Nothing: done here (or ignored).
    Done,
    /// `detach`: close the origin side, keep the client.
    Detach,
}

/// What becomes of a message from the origin.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FromOrigin {
    /// Goes to the client as this.
    Forward(Bytes),
    /// Handled here, or dropped.
    Skip,
    /// `detach`: close the origin side, keep the client.
    Detach,
}

/// What a delivery did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// Sent to the client.
    Sent,
    /// Closed the client's connection.
    Closed,
    /// Asked for a request to the origin now.
    Refresh,
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `Sec-WebSocket-Extensions: grip[; message-prefix="..."]`: GRIP is on,
/// with this prefix (default `m:`).
pub(crate) fn grip_prefix(headers: &http::HeaderMap) -> Option<String> {
    let value = headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|e| e.split(';').next().is_some_and(|n| n.trim() == "grip"))?;
    let prefix = value
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "message-prefix")
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    Some(prefix.unwrap_or_else(|| "m:".to_owned()))
}

impl Grip {
    /// GRIP on, with this message prefix, when the origin's answer asks
    /// for it (`headers`); the session's deliveries are registered.
    pub fn of(zhttp: &Zhttp, headers: &http::HeaderMap, channel_prefix: String) -> Grip {
        let state = grip_prefix(headers).map(|prefix| GripState {
            prefix,
            channel_prefix,
            deliveries: zhttp.shared.ws_routes.register(zhttp.id()),
            keep_alive: None,
            delayed: None,
        });
        Grip { state }
    }

    /// Whether GRIP is on.
    pub fn is_on(&self) -> bool {
        self.state.is_some()
    }

    /// When [`Grip::tick`] has something to send.
    pub fn deadline(&self) -> Option<Instant> {
        let state = self.state.as_ref()?;
        let keep_alive = state.keep_alive.as_ref().map(|k| k.next);
        let delayed = state.delayed.as_ref().map(|(_, at)| *at);
        keep_alive.into_iter().chain(delayed).min()
    }

    /// Something went to the client: an idle keep-alive starts over.
    pub fn sent(&mut self) {
        if let Some(k) = self.state.as_mut().and_then(|s| s.keep_alive.as_mut()) {
            if !k.interval {
                k.next = Instant::now() + k.period;
            }
        }
    }

    /// The next delivery (`None`: the session fell too far behind and must
    /// close), or never without GRIP.
    pub async fn next_delivery(&mut self) -> Option<Arc<Deliver>> {
        match &mut self.state {
            Some(state) => state.deliveries.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Reports the session's end to the handler.
    pub async fn end(&self, zhttp: &Zhttp) {
        if self.is_on() {
            zhttp.shared.ws_routes.unregister(zhttp.id());
            ws_control(zhttp, control_of("end")).await;
        }
    }

    /// Tells the handler the session still exists.
    pub async fn alive(&self, zhttp: &Zhttp) {
        if self.is_on() {
            ws_control(zhttp, control_of("alive")).await;
        }
    }

    /// A text or binary message from the origin: unchanged without GRIP;
    /// with GRIP, `c:` control is handled here, the message prefix removed,
    /// and messages without it dropped.
    pub async fn origin_message(
        &mut self,
        client: &mut WsClient<'_>,
        content: Bytes,
        text: bool,
    ) -> FromOrigin {
        let Some(state) = self.state.as_ref() else {
            return FromOrigin::Forward(content);
        };
        if text && content.starts_with(b"c:") {
            return match self.control(client, &content[2..]).await {
                Controlled::Detach => FromOrigin::Detach,
                Controlled::Done => FromOrigin::Skip,
            };
        }
        if !content.starts_with(state.prefix.as_bytes()) {
            tracing::debug!(session = %client.zhttp.id(), "origin message without the GRIP message prefix dropped");
            return FromOrigin::Skip;
        }
        let content = content.slice(state.prefix.len()..);
        self.sent();
        FromOrigin::Forward(content)
    }

    /// Handles a `c:` control message's JSON.
    async fn control(&mut self, client: &mut WsClient<'_>, json: &[u8]) -> Controlled {
        let Some(state) = self.state.as_mut() else {
            return Controlled::Done;
        };
        let id = client.zhttp.id().to_owned();
        let value = match control_json(json) {
            Ok(value) => value,
            Err(why) => {
                tracing::info!(session = %id, "{why}");
                return Controlled::Done;
            }
        };
        let kind = text(&value, "type").unwrap_or_default();
        let control = match kind.as_str() {
            "subscribe" | "unsubscribe" => subscription(&kind, &value, &state.channel_prefix),
            "set-meta" => set_meta(&value),
            "session" => client_session(&value),
            "keep-alive" => {
                state.keep_alive = keep_alive(&value);
                tracing::debug!(session = %id, on = state.keep_alive.is_some(), "GRIP keep-alive set");
                return Controlled::Done;
            }
            "send-delayed" => {
                let Some(message) = outgoing(&value) else {
                    tracing::info!(session = %id, "GRIP send-delayed without content ignored");
                    return Controlled::Done;
                };
                let at = Instant::now() + timeout_of(&value, 1);
                // A replaced message goes out first.
                if let Some((previous, _)) = state.delayed.replace((message, at)) {
                    self.send(client, &previous);
                }
                return Controlled::Done;
            }
            "flush-delayed" => {
                if let Some((message, _)) = state.delayed.take() {
                    self.send(client, &message);
                }
                return Controlled::Done;
            }
            "detach" => return Controlled::Detach,
            other => {
                tracing::info!(session = %id, kind = other, "GRIP control message not supported; ignored");
                return Controlled::Done;
            }
        };
        match control {
            Ok(control) => ws_control(client.zhttp, control).await,
            Err(why) => tracing::info!(session = %id, "{why}"),
        }
        Controlled::Done
    }

    /// Sends what the session's timers hold once due.
    pub fn tick(&mut self, client: &mut WsClient<'_>) {
        let now = Instant::now();
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let delayed = match &state.delayed {
            Some((_, at)) if *at <= now => state.delayed.take().map(|(m, _)| m),
            _ => None,
        };
        let keep_alive = match state.keep_alive.as_mut() {
            Some(k) if k.next <= now => {
                k.next = if k.interval {
                    k.next + k.period
                } else {
                    now + k.period
                }
                .max(now);
                Some(k.message.clone())
            }
            _ => None,
        };
        for message in delayed.iter().chain(keep_alive.iter()) {
            self.send(client, message);
        }
    }

    /// Queues a message of the origin's for the client.
    fn send(&mut self, client: &mut WsClient<'_>, message: &Outgoing) {
        let mut packet = client.packet(message.kind.clone());
        if message.kind == PacketType::Data {
            packet.content_type = Some(if message.text { "text" } else { "binary" }.into());
        }
        packet.body = Some(message.content.clone());
        client.queue(packet);
        self.sent();
    }

    /// Acts on a delivery: a message for the client (queued within
    /// connmgr's credits), a close, or a refresh (for
    /// WebSocket-over-HTTP: ask the origin now).
    pub fn deliver(&mut self, client: &mut WsClient<'_>, deliver: Arc<Deliver>) -> Delivered {
        let (kind, content_type) = match deliver.kind.as_str() {
            "text" => (PacketType::Data, Some("text")),
            "binary" => (PacketType::Data, Some("binary")),
            "ping" => (PacketType::Ping, None),
            "pong" => (PacketType::Pong, None),
            "close" => (PacketType::Close, None),
            "refresh" => return Delivered::Refresh,
            _ => {
                self.sent();
                return Delivered::Sent;
            }
        };
        let mut packet = client.packet(kind.clone());
        packet.content_type = content_type.map(str::to_owned);
        if kind == PacketType::Close {
            packet.code = Some(deliver.code.unwrap_or(1000));
        }
        packet.body = Some(Bytes::clone(&deliver.content));
        client.queue(packet);
        if kind == PacketType::Close {
            return Delivered::Closed;
        }
        self.sent();
        Delivered::Sent
    }
}

/// Sends a control message for this session to the handler.
async fn ws_control(zhttp: &Zhttp, mut control: Control) {
    let Some(tx) = &zhttp.shared.ws_control else {
        tracing::debug!(session = %zhttp.id(), "no handler for WebSocket control");
        return;
    };
    control.proxy = zhttp.shared.sockets.id.clone();
    control.id = zhttp.id().to_owned();
    match format::encode(&control, zhttp.shared.sockets.format) {
        Ok(frame) => {
            if tx.send(vec![frame]).await.is_err() {
                tracing::warn!(session = %zhttp.id(), "handler control socket closed");
            }
        }
        Err(err) => {
            tracing::warn!(session = %zhttp.id(), error = %err, "control not encoded")
        }
    }
}

/// A control message of this kind and nothing else.
fn control_of(kind: &str) -> Control {
    Control {
        kind: kind.into(),
        ..Control::default()
    }
}

/// Why a control message is ignored (as Pushpin ignores it), for the log.
#[derive(Debug, thiserror::Error)]
enum Ignored {
    #[error("GRIP control message that is not a JSON object ignored")]
    NotAnObject,
    #[error("invalid GRIP control message ignored: {0}")]
    Invalid(serde_json::Error),
    #[error("GRIP {kind} without a channel ignored")]
    NoChannel { kind: String },
    #[error("GRIP set-meta without a name ignored")]
    NoName,
    #[error("GRIP session with a non-string id ignored")]
    SessionId,
}

/// A control message's JSON object.
fn control_json(json: &[u8]) -> Result<Value, Ignored> {
    match serde_json::from_slice::<Value>(json) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(Ignored::NotAnObject),
        Err(err) => Err(Ignored::Invalid(err)),
    }
}

/// A string member of a control message.
fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(|v| v.as_str()).map(str::to_owned)
}

/// `subscribe` / `unsubscribe`: the channel (with the route's prefix), its
/// filters, and (a Holdfast addition) where the client was, for history.
fn subscription(kind: &str, value: &Value, channel_prefix: &str) -> Result<Control, Ignored> {
    let Some(channel) = text(value, "channel").filter(|c| !c.is_empty()) else {
        return Err(Ignored::NoChannel {
            kind: kind.to_owned(),
        });
    };
    let filters = value
        .get("filters")
        .and_then(|f| f.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .take(MAX_FILTERS)
                .collect()
        })
        .unwrap_or_default();
    let prev_id = text(value, "prev-id").filter(|id| !id.is_empty() && kind == "subscribe");
    Ok(Control {
        kind: kind.to_owned(),
        channel: Some(format!("{channel_prefix}{channel}")),
        filters,
        prev_id,
        ..Control::default()
    })
}

/// `set-meta`: a name, and a value (none clears it).
fn set_meta(value: &Value) -> Result<Control, Ignored> {
    let Some(name) = text(value, "name") else {
        return Err(Ignored::NoName);
    };
    Ok(Control {
        kind: "set-meta".into(),
        name: Some(name),
        value: text(value, "value"),
        ..Control::default()
    })
}

/// `session`: no id (or an empty one) clears the session; a non-string id
/// makes the message invalid, as in Pushpin.
fn client_session(value: &Value) -> Result<Control, Ignored> {
    let sid = match value.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()).filter(|id| !id.is_empty()),
        Some(_) => return Err(Ignored::SessionId),
    };
    Ok(Control {
        kind: "session".into(),
        sid,
        ..Control::default()
    })
}

/// `keep-alive`: the message and its period (55 s unless given); none
/// without content, which turns it off.
fn keep_alive(value: &Value) -> Option<KeepAlive> {
    outgoing(value).map(|message| {
        let period = timeout_of(value, 55);
        KeepAlive {
            message,
            period,
            interval: text(value, "mode").as_deref() == Some("interval"),
            next: Instant::now() + period,
        }
    })
}

/// The message of a `keep-alive` or `send-delayed` control message: `content`
/// (text) or `content-bin` (base64), as `message-type` says (text unless
/// given, even for `content-bin`, as in Pushpin); none without content.
fn outgoing(value: &Value) -> Option<Outgoing> {
    let content = match (value.get("content"), value.get("content-bin")) {
        (Some(Value::String(text)), _) => Bytes::from(text.clone()),
        (_, Some(Value::String(b64))) => {
            Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64).ok()?)
        }
        _ => return None,
    };
    let (kind, text) = match value.get("message-type").and_then(|t| t.as_str()) {
        None | Some("text") => (PacketType::Data, true),
        Some("binary") => (PacketType::Data, false),
        Some("ping") => (PacketType::Ping, false),
        Some("pong") => (PacketType::Pong, false),
        Some(_) => return None,
    };
    Some(Outgoing {
        kind,
        text,
        content,
    })
}

/// A control message's `timeout` in seconds (at least 1), or `default`.
fn timeout_of(value: &Value, default: u64) -> Duration {
    let secs = value
        .get("timeout")
        .and_then(|t| t.as_u64())
        .unwrap_or(default);
    Duration::from_secs(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        serde_json::from_str::<Value>(s).unwrap()
    }

    #[test]
    fn grip_extension_and_prefix() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grip_prefix(&h), None);
        h.insert(
            "sec-websocket-extensions",
            http::HeaderValue::from_static("grip"),
        );
        assert_eq!(grip_prefix(&h).as_deref(), Some("m:"));
        h.insert(
            "sec-websocket-extensions",
            http::HeaderValue::from_static("foo, grip; message-prefix=\"\""),
        );
        assert_eq!(grip_prefix(&h).as_deref(), Some(""));
    }

    #[test]
    fn delayed_and_keep_alive_messages() {
        let text = outgoing(&json(r#"{"content": "hi"}"#)).unwrap();
        assert_eq!((text.kind, text.text), (PacketType::Data, true));
        assert_eq!(text.content, "hi");
        // content-bin stays a text message unless message-type says binary.
        let bin = outgoing(&json(r#"{"content-bin": "AAE="}"#)).unwrap();
        assert_eq!((bin.text, &bin.content[..]), (true, &[0u8, 1][..]));
        let bin = outgoing(&json(
            r#"{"content-bin": "AAE=", "message-type": "binary"}"#,
        ))
        .unwrap();
        assert!(!bin.text);
        let ping = outgoing(&json(r#"{"content": "", "message-type": "ping"}"#)).unwrap();
        assert_eq!(ping.kind, PacketType::Ping);
        for bad in [
            r#"{}"#,
            r#"{"content": 5}"#,
            r#"{"content-bin": "not base64!"}"#,
            r#"{"content": "x", "message-type": "shout"}"#,
        ] {
            assert_eq!(outgoing(&json(bad)), None, "{bad}");
        }
        assert_eq!(timeout_of(&json(r#"{}"#), 55), Duration::from_secs(55));
        assert_eq!(
            timeout_of(&json(r#"{"timeout": 0}"#), 55),
            Duration::from_secs(1)
        );
        assert_eq!(
            timeout_of(&json(r#"{"timeout": "x"}"#), 1),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn control_messages_that_are_ignored_say_why() {
        assert!(control_json(b"[1]").is_err());
        assert!(control_json(b"{").is_err());
        assert!(control_json(br#"{"type": "subscribe"}"#).is_ok());
        let sub = |s: &str| subscription("subscribe", &json(s), "p-");
        assert!(sub(r#"{"channel": ""}"#).is_err());
        let control = sub(r#"{"channel": "a", "prev-id": "7", "filters": ["f1", 2, "f2", "f3", "f4", "f5", "f6"]}"#).unwrap();
        assert_eq!(control.channel.as_deref(), Some("p-a"));
        assert_eq!(control.prev_id.as_deref(), Some("7"));
        assert_eq!(control.filters.len(), MAX_FILTERS);
        let unsub = subscription(
            "unsubscribe",
            &json(r#"{"channel": "a", "prev-id": "7"}"#),
            "",
        )
        .unwrap();
        assert_eq!(unsub.prev_id, None);
        assert!(set_meta(&json(r#"{"value": "x"}"#)).is_err());
        assert_eq!(
            set_meta(&json(r#"{"name": "n"}"#)).unwrap().name.as_deref(),
            Some("n")
        );
        assert!(client_session(&json(r#"{"id": 5}"#)).is_err());
        assert_eq!(client_session(&json(r#"{"id": ""}"#)).unwrap().sid, None);
        assert_eq!(
            client_session(&json(r#"{"id": "s"}"#))
                .unwrap()
                .sid
                .as_deref(),
            Some("s")
        );
        assert!(keep_alive(&json(r#"{}"#)).is_none());
        let k = keep_alive(&json(r#"{"content": "k", "mode": "interval"}"#)).unwrap();
        assert!(k.interval);
        assert_eq!(k.period, Duration::from_secs(55));
    }
}
