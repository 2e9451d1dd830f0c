//! Items back into the wire form the parsers read: a TNetString frame
//! (`T` + TNetString), binary safe, so an item crosses a bus (NATS) and is
//! read on the other side exactly as it was accepted.

use super::{Action, Item, WsMessageType};
use crate::value::Value;

/// `T` + the item as a TNetString: what [`super::parse_item_frame`] reads.
pub fn encode_item_frame(item: &Item) -> Vec<u8> {
    let mut out = vec![b'T'];
    crate::tnetstring::write(&item_value(item), &mut out);
    out
}

fn text(s: &str) -> Value {
    Value::Bytes(s.as_bytes().to_vec())
}

fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn action(a: Action) -> Value {
    text(match a {
        Action::Send => "send",
        Action::Hint => "hint",
        Action::Close => "close",
        Action::Refresh => "refresh",
    })
}

fn strings(list: &[String]) -> Value {
    Value::List(list.iter().map(|s| text(s)).collect())
}

/// Entries whose value is present.
fn map(entries: Vec<(&str, Option<Value>)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.as_bytes().to_vec(), v)))
            .collect(),
    )
}

fn item_value(item: &Item) -> Value {
    let f = &item.formats;
    let http_response = f.http_response.as_ref().map(|r| {
        map(vec![
            ("action", Some(action(r.action))),
            ("code", r.code.map(|c| Value::Int(c.into()))),
            ("reason", r.reason.as_deref().map(text)),
            (
                "headers",
                Some(Value::List(
                    r.headers
                        .iter()
                        .map(|(n, v)| Value::List(vec![text(n), bytes(v)]))
                        .collect(),
                )),
            ),
            ("body", Some(bytes(&r.body))),
            ("content-filters", r.content_filters.as_deref().map(strings)),
        ])
    });
    let http_stream = f.http_stream.as_ref().map(|s| {
        map(vec![
            ("action", Some(action(s.action))),
            ("content", Some(bytes(&s.content))),
            ("content-filters", s.content_filters.as_deref().map(strings)),
        ])
    });
    let ws_message = f.ws_message.as_ref().map(|m| {
        let kind = match m.kind {
            WsMessageType::Text => "text",
            WsMessageType::Binary => "binary",
            WsMessageType::Ping => "ping",
            WsMessageType::Pong => "pong",
        };
        map(vec![
            ("action", Some(action(m.action))),
            ("type", Some(text(kind))),
            ("content", Some(bytes(&m.content))),
            ("code", m.code.map(|c| Value::Int(c.into()))),
            ("reason", m.reason.as_deref().map(text)),
        ])
    });
    let purge = item.purge.as_ref().map(|p| {
        map(vec![
            ("keys", Some(strings(&p.keys))),
            ("urls", Some(strings(&p.urls))),
            ("soft", Some(Value::Bool(p.soft))),
        ])
    });
    map(vec![
        ("channel", Some(text(&item.channel))),
        ("id", item.id.as_deref().map(text)),
        ("prev-id", item.prev_id.as_deref().map(text)),
        (
            "meta",
            Some(Value::Map(
                item.meta
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), text(v)))
                    .collect(),
            )),
        ),
        ("no-seq", Some(Value::Bool(item.no_seq))),
        (
            "formats",
            Some(map(vec![
                ("http-response", http_response),
                ("http-stream", http_stream),
                ("ws-message", ws_message),
            ])),
        ),
        ("purge", purge),
    ])
}
