//! ZHTTP: HTTP and WebSocket sessions carried as packets over ZeroMQ, with
//! Pushpin's field names so Holdfast's processes can talk to Pushpin's.
//!
//! - `packet`, `ids`: the packet model and its `id` field.
//! - [`endpoint`] (feature `zmq`, for tokio's clock): one side of a session (sequence numbers,
//!   credits, keep-alive and expiry, hand-over), used by every process.

#[cfg(feature = "zmq")]
pub mod endpoint;
mod ids;
mod packet;

#[cfg(feature = "zmq")]
pub use endpoint::{Endpoint, SessionError, KEEP_ALIVE_INTERVAL, SESSION_EXPIRY, STALL_TIMEOUT};
pub use ids::{IdSeq, Ids};
pub use packet::{Ext, Header, Packet, PacketType};

/// Largest `from` accepted, as in Pushpin's connection manager.
pub const MAX_FROM_LEN: usize = 64;
/// Most ids accepted in one multi-id packet. Pushpin sends at most 128 (batched
/// keep-alives); Holdfast's handler batches deliveries of one publish to many
/// sessions of the same connmgr, up to this many per packet.
pub const MAX_BATCH_IDS: usize = 8192;

/// Response headers that describe one connection, not the message. Neither
/// side puts them in a packet's meaning: each HTTP hop writes its own.
pub const HOP_BY_HOP_HEADERS: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Whether `name` is one of [`HOP_BY_HOP_HEADERS`] (any case).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP_HEADERS
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
}
