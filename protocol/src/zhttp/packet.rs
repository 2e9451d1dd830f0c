//! The ZHTTP packet model: one flat struct holding every field Pushpin's
//! components use, so decoding never loses a field and unknown keys are
//! ignored. [`PacketType`] names what the packet means.

use super::Ids;
use crate::value::Value;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a packet means (`type`; absent means data).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PacketType {
    /// Request or response data (no `type` field).
    #[default]
    Data,
    /// Terminal failure; `condition` says why.
    Error,
    /// Grants more send window (`credits`).
    Credit,
    /// Liveness; also announces a new owner after a handoff.
    KeepAlive,
    /// Abort the session.
    Cancel,
    /// Ask the peer to stop sending while the session moves.
    HandoffStart,
    /// The peer has stopped; the session may move.
    HandoffProceed,
    /// WebSocket close frame.
    Close,
    /// WebSocket ping.
    Ping,
    /// WebSocket pong.
    Pong,
    /// A type this implementation does not know; kept for logging.
    Unknown(String),
}

impl PacketType {
    fn as_str(&self) -> Option<&str> {
        Some(match self {
            PacketType::Data => return None,
            PacketType::Error => "error",
            PacketType::Credit => "credit",
            PacketType::KeepAlive => "keep-alive",
            PacketType::Cancel => "cancel",
            PacketType::HandoffStart => "handoff-start",
            PacketType::HandoffProceed => "handoff-proceed",
            PacketType::Close => "close",
            PacketType::Ping => "ping",
            PacketType::Pong => "pong",
            PacketType::Unknown(s) => s,
        })
    }

    fn parse(s: &str) -> PacketType {
        match s {
            "error" => PacketType::Error,
            "credit" => PacketType::Credit,
            "keep-alive" => PacketType::KeepAlive,
            "cancel" => PacketType::Cancel,
            "handoff-start" => PacketType::HandoffStart,
            "handoff-proceed" => PacketType::HandoffProceed,
            "close" => PacketType::Close,
            "ping" => PacketType::Ping,
            "pong" => PacketType::Pong,
            other => PacketType::Unknown(other.to_owned()),
        }
    }

    fn is_data(&self) -> bool {
        *self == PacketType::Data
    }
}

impl Serialize for PacketType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str().unwrap_or(""))
    }
}

impl<'de> Deserialize<'de> for PacketType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(PacketType::parse(&s))
    }
}

/// One HTTP header as `[name, value]`; values may be any bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header(pub String, pub Bytes);

/// Extension flags (`ext`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ext {
    /// The sender understands multi-id packets.
    #[serde(default, skip_serializing_if = "is_false")]
    pub multi: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A ZHTTP packet. Fields are optional as on the wire; which ones matter
/// depends on [`Packet::kind`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Packet {
    /// Sender's instance id: where replies go (PUB topic / ROUTER identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Session id(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Ids>,
    /// Per-direction sequence number, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// Packet type; absent means data.
    #[serde(default, rename = "type", skip_serializing_if = "PacketType::is_data")]
    pub kind: PacketType,
    /// Why an `error` packet ended the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Body bytes the receiver may now send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<u32>,
    /// More body packets follow.
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// The initiator wants a streamed, credit-controlled exchange.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stream: bool,
    /// Replies should come over the ROUTER path instead of PUB.
    #[serde(default, skip_serializing_if = "is_false")]
    pub router_resp: bool,
    /// Largest non-stream response the initiator accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u64>,
    /// Request timeout in seconds (client mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Request method (first request packet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Absolute request URI: `http(s)://` or `ws(s)://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Request or response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<Header>>,
    /// Body fragment, WebSocket message content, or close reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Bytes>,
    /// WebSocket message type: `text` or `binary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Response status, or WebSocket close code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Response reason phrase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Client address (server role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_address: Option<String>,
    /// Client port; Pushpin's C++ side writes it as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    /// Override of the TCP destination host (client role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_host: Option<String>,
    /// Override of the TCP destination port (client role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<u16>,
    /// Skip outbound deny lists (client role).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_policies: bool,
    /// Skip TLS certificate checks (client role).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ignore_tls_errors: bool,
    /// Opaque value echoed back by the responder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Value>,
    /// Opaque routing hints between Pushpin's proxy and handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough: Option<Value>,
    /// Extension flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<Ext>,
}

impl Packet {
    /// What this packet means.
    pub fn kind(&self) -> &PacketType {
        &self.kind
    }

    /// A packet of `kind` from `from` to session `id` with sequence `seq`.
    pub fn new(kind: PacketType, from: &str, id: &str, seq: u32) -> Packet {
        Packet {
            kind,
            from: Some(from.to_owned()),
            id: Some(Ids::One(id.to_owned())),
            seq: Some(seq),
            ..Packet::default()
        }
    }

    /// The single session id, if the packet has exactly one.
    pub fn single_id(&self) -> Option<&str> {
        match &self.id {
            Some(Ids::One(id)) => Some(id),
            _ => None,
        }
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .as_ref()?
            .iter()
            .find(|h| h.0.eq_ignore_ascii_case(name))
            .map(|h| &h.1)
    }
}
