//! The hand-over of a held session from the proxy to the handler.
//!
//! When an origin answers with a hold, the proxy pauses the ZHTTP session
//! (`handoff-start` / `handoff-proceed` with connmgr) and sends the handler
//! an [`Accept`]: where the session is, its sequence numbers and credits,
//! the request, the response to send (now for a stream, at timeout for a
//! long-poll) and the hold instructions. The handler then owns the session:
//! its first packet to connmgr tells connmgr where the session went.
//! Encoded with the usual `T`/`M` frame tag.

use crate::zhttp::Header;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A held session handed to the handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Accept {
    /// connmgr's id (`from` of its packets): where packets go.
    pub connmgr: String,
    /// Session id (chosen by connmgr).
    pub id: String,
    /// Sequence number expected on connmgr's next packet.
    pub in_seq: u32,
    /// Sequence number of our next packet to connmgr.
    pub out_seq: u32,
    /// Response body bytes connmgr accepts now.
    pub credits: u32,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// The request as the client sent it.
    pub request: Request,
    /// The response to send: at once for a stream, at timeout for a long-poll.
    pub response: Response,
    /// A stream whose head and initial body the proxy already sent (an
    /// initial body too large to pass along here): the handler continues
    /// it; `response` carries only what the timeout or a retry needs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    /// The route's `aco`: responses get CORS headers, or are wrapped as
    /// JSON-P when the request asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_origin: Option<CrossOrigin>,
    /// What the origin asked for.
    pub hold: Hold,
    /// How to reach the origin again (retries, next and gone links).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// Automatic cross-origin answers (route option `aco`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CrossOrigin {
    /// The request was a JSON-P one: responses are wrapped in a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonp: Option<Jsonp>,
}

/// How a JSON-P response is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Jsonp {
    /// The function called.
    pub callback: String,
    /// `extended`: the call's argument is `{code, reason, headers, body}`;
    /// otherwise (`basic`) it is the body itself.
    pub extended: bool,
}

/// The request as the origin received it, so the handler can ask again:
/// a long-poll retried with `Grip-Last`, a stream's next link, a gone link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Origin {
    /// Absolute URI sent to the origin; relative links resolve against it.
    pub uri: String,
    /// Headers sent to the origin, without `Grip-Sig` (signed afresh).
    pub headers: Vec<Header>,
    /// Issuer and key (Pushpin key syntax) for `Grip-Sig`, when signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<(String, String)>,
    /// Accept any TLS certificate (route target `insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// The route's channel prefix (`Grip-Last` names channels without it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// The client's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Absolute URI.
    pub uri: String,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body (complete: holds are only accepted for complete bodies).
    pub body: Bytes,
}

/// A response, with GRIP already applied (status, exposed headers, no `Grip-*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Bytes,
}

/// How the session is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldMode {
    /// Long-poll.
    Response,
    /// Streaming.
    Stream,
}

/// A subscription of the held session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Channel {
    /// Channel name (route prefix applied).
    pub name: String,
    /// Last id the origin knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_id: Option<String>,
    /// Filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
}

/// Stream keep-alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAlive {
    /// Bytes to send.
    pub data: Bytes,
    /// Seconds.
    pub timeout: u32,
    /// Restart the timer when content is sent (`idle`) or not (`interval`).
    pub idle: bool,
}

/// The hold instructions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Hold {
    /// Mode.
    pub mode: HoldMode,
    /// Subscriptions.
    pub channels: Vec<Channel>,
    /// Long-poll timeout in seconds.
    pub timeout: u32,
    /// Stream keep-alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<KeepAlive>,
    /// Subscription metadata.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub meta: Vec<(String, String)>,
    /// `Grip-Link rel=next`: URI and seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<(String, u32)>,
    /// `Grip-Link rel=gone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_link: Option<String>,
    /// The client session the origin named (routes with `session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::inspect::SessionUpdate>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decode, encode, Format};

    #[test]
    fn roundtrip_both_formats() {
        let accept = Accept {
            connmgr: "connmgr".into(),
            id: "0-0-1".into(),
            in_seq: 3,
            out_seq: 2,
            credits: 8192,
            peer_address: Some("127.0.0.1".into()),
            request: Request {
                method: "GET".into(),
                uri: "http://h/s".into(),
                headers: vec![Header("Host".into(), Bytes::from_static(b"h"))],
                body: Bytes::new(),
            },
            response: Response {
                code: 200,
                reason: "OK".into(),
                headers: vec![],
                body: Bytes::from_static(b"start\n"),
            },
            started: true,
            cross_origin: Some(CrossOrigin {
                jsonp: Some(Jsonp {
                    callback: "cb".into(),
                    extended: true,
                }),
            }),
            hold: Hold {
                mode: HoldMode::Stream,
                channels: vec![Channel {
                    name: "news".into(),
                    prev_id: Some("1".into()),
                    filters: vec![],
                }],
                timeout: 55,
                keep_alive: Some(KeepAlive {
                    data: Bytes::from_static(b":\n"),
                    timeout: 20,
                    idle: true,
                }),
                meta: vec![("user".into(), "a".into())],
                next_link: Some(("/next".into(), 120)),
                gone_link: None,
                session: None,
            },
            origin: Some(Origin {
                uri: "http://127.0.0.1:8080/s".into(),
                headers: vec![],
                sig: Some(("pushpin".into(), "changeme".into())),
                insecure: false,
                prefix: String::new(),
            }),
        };
        for format in [Format::TNetString, Format::MessagePack] {
            let bytes = encode(&accept, format).unwrap();
            assert_eq!(decode::<Accept>(&bytes).unwrap(), accept);
        }
        assert!(decode::<Accept>(b"T0:}").is_err());
    }
}
