//! ZHTTP: HTTP and WebSocket sessions carried as packets over ZeroMQ, with
//! Pushpin's field names so Holdfast's processes can talk to Pushpin's.

mod ids;
mod packet;

pub use ids::{IdSeq, Ids};
pub use packet::{Ext, Header, Packet, PacketType};

/// Largest `from` accepted, as in Pushpin's connection manager.
pub const MAX_FROM_LEN: usize = 64;
/// Most ids in one multi-id packet (batched keep-alive or cancel).
pub const MAX_BATCH_IDS: usize = 128;
