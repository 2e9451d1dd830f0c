//! Pushpin's session feature on the wire: the proxy asks the handler which
//! client session a request belongs to ([`InspectRequest`], ZRPC method
//! `inspect` on the handler's inspect socket) and gets its id and the last
//! item ids that session was sent ([`Inspected`]); a held response hands
//! the handler the session id, detection rules and last ids the origin gave
//! ([`SessionUpdate`], inside the hand-over). Encoded with the usual
//! `T`/`M` frame tag.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The ZRPC method name.
pub const METHOD: &str = "inspect";

/// Where a request's session id is found: requests to `domain` whose path
/// starts with `path_prefix` carry a JSON body (or, with `json_param`, a
/// form field holding JSON) in which the JSON pointer `sid_ptr` names the id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DetectRule {
    /// Host (lower case, no port).
    pub domain: String,
    /// Path prefix.
    pub path_prefix: String,
    /// JSON pointer (RFC 6901) to the id.
    pub sid_ptr: String,
    /// Form field whose value is the JSON, when the body is a form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_param: Option<String>,
}

/// What a held response said about its client session
/// (`Grip-Session-Id`, `Grip-Session-Detect`, `Grip-Last`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SessionUpdate {
    /// The session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Rules for finding session ids in later requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detect: Vec<DetectRule>,
    /// Channel (route prefix applied) → last id the session has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_ids: Vec<(String, String)>,
}

/// A ZRPC request `{id, method: "inspect", args}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectRequest {
    /// Matches the answer to the request.
    pub id: String,
    /// [`METHOD`].
    pub method: String,
    /// The request.
    pub args: InspectArgs,
}

/// The request being inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectArgs {
    /// Host (lower case, no port).
    pub host: String,
    /// Path (with query).
    pub path: String,
    /// Body (when it came whole in the request's first packet).
    pub body: Bytes,
}

/// The answer `{id, success, value}` (or `{id, success: false, condition}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectReply {
    /// The request's id.
    pub id: String,
    /// Whether `value` holds the answer.
    pub success: bool,
    /// The answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Inspected>,
    /// Why not, when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// A request's session: its id and the last ids it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inspected {
    /// The session id, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Channel → last id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_ids: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{decode, encode, Format};

    #[test]
    fn roundtrip_both_formats() {
        let request = InspectRequest {
            id: "7".into(),
            method: METHOD.into(),
            args: InspectArgs {
                host: "example.com".into(),
                path: "/api/x".into(),
                body: Bytes::from_static(b"{\"sid\":\"a\"}"),
            },
        };
        let reply = InspectReply {
            id: "7".into(),
            success: true,
            value: Some(Inspected {
                sid: Some("a".into()),
                last_ids: vec![("news".into(), "3".into())],
            }),
            condition: None,
        };
        let update = SessionUpdate {
            sid: Some("a".into()),
            detect: vec![DetectRule {
                domain: "example.com".into(),
                path_prefix: "/api/".into(),
                sid_ptr: "/sid".into(),
                json_param: None,
            }],
            last_ids: vec![("news".into(), "3".into())],
        };
        for format in [Format::TNetString, Format::MessagePack] {
            let bytes = encode(&request, format).unwrap();
            assert_eq!(decode::<InspectRequest>(&bytes).unwrap(), request);
            let bytes = encode(&reply, format).unwrap();
            assert_eq!(decode::<InspectReply>(&bytes).unwrap(), reply);
            let bytes = encode(&update, format).unwrap();
            assert_eq!(decode::<SessionUpdate>(&bytes).unwrap(), update);
        }
    }

    #[test]
    fn malformed_requests_are_errors() {
        for bad in [&b"T3:abc,"[..], b"Tgarbage", b"T0:}", b"M\xc1"] {
            assert!(decode::<InspectRequest>(bad).is_err(), "{bad:?}");
        }
    }
}
