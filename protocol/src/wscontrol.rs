//! GRIP over WebSocket between the proxy, which owns WebSocket sessions,
//! and the handler, which owns channels: the proxy reports what a
//! session's origin asked for in `c:` control messages ([`Control`], on
//! the handler's ws-control PULL socket) and the handler sends published
//! `ws-message` content back ([`Deliver`], on its PUB socket, topic = the
//! proxy's id). Encoded with the usual `T`/`M` frame tag.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What a WebSocket session's origin asked for, or that the session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Control {
    /// `subscribe`, `unsubscribe`, `set-meta`, `session`, `alive` (the session still
    /// exists; sent every keep-alive interval), `end`, or `hello` (a proxy
    /// starting up; the handler answers with a `hello` delivery, so the
    /// proxy knows deliveries reach it).
    pub kind: String,
    /// The proxy's id (where deliveries go).
    pub proxy: String,
    /// The session's id within that proxy.
    pub id: String,
    /// Channel (route prefix applied), for subscribe and unsubscribe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Filters of a subscription.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    /// The last item id the client has on the channel (subscribe; a
    /// Holdfast addition): what channel history holds after it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_id: Option<String>,
    /// Meta name (set-meta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Meta value; none removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Client session id (`session`); none clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The topic of deliveries for proxy `id` on the handler's delivery socket:
/// the id and a space, so that no proxy's subscription is a prefix of
/// another's (`proxy` and `proxy-2`).
pub fn topic(id: &str) -> Vec<u8> {
    format!("{id} ").into_bytes()
}

/// Topic of edge-cache purges on the handler's delivery socket, which
/// every proxy subscribes to besides its own id (ids never start with `*`).
pub const PURGE_TOPIC: &str = "*purge";

/// What the proxies purge from their edge caches: the content of a
/// `purge` [`Deliver`], as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CachePurge {
    /// Surrogate keys.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Absolute URLs, as clients request them.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Mark stale instead of removing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// Published content for some sessions of one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Deliver {
    /// Session ids.
    pub ids: Vec<String>,
    /// `text`, `binary`, `ping`, `pong`, `close`, or `hello` (the answer to
    /// a proxy's `hello`).
    pub kind: String,
    /// Message content (close: the reason).
    pub content: Bytes,
    /// Close code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decode, encode, Format};

    #[test]
    fn roundtrip_both_formats() {
        let control = Control {
            kind: "subscribe".into(),
            proxy: "proxy_1".into(),
            id: "0-0-1".into(),
            channel: Some("room".into()),
            filters: vec!["skip-self".into()],
            ..Control::default()
        };
        let deliver = Deliver {
            ids: vec!["0-0-1".into(), "0-0-2".into()],
            kind: "text".into(),
            content: Bytes::from_static(b"hi"),
            code: None,
        };
        for format in [Format::TNetString, Format::MessagePack] {
            assert_eq!(
                decode::<Control>(&encode(&control, format).unwrap()).unwrap(),
                control
            );
            assert_eq!(
                decode::<Deliver>(&encode(&deliver, format).unwrap()).unwrap(),
                deliver
            );
        }
        assert!(decode::<Control>(b"T3:abc,").is_err());
    }
}
