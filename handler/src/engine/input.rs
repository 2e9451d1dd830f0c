//! What the engine is asked from outside its sessions: items to deliver
//! (from the publish inputs, the bus, purges), recover, history answers
//! from the bus, refresh.

use holdfast_protocol::publish::Item;

/// What publishers and the command socket ask of the engine.
#[derive(Debug)]
pub enum Input {
    /// Items to deliver, in order.
    Items(Vec<Item>),
    /// Forget every channel's last id and ask the origin again for every
    /// session (`POST /recover`, the `recover` command).
    Recover,
    /// What the bus's stream holds after a session's position (the answer
    /// to a [`crate::history::Lookup`]).
    History {
        /// The lookup.
        lookup: crate::history::Lookup,
        /// The items after it, or `Unknown`.
        found: crate::history::Since,
    },
    /// Make WebSocket-over-HTTP sessions ask their origin now (the
    /// `refresh` command): one connection by id, or every one on a channel.
    Refresh {
        /// A connection id.
        cid: Option<String>,
        /// A channel.
        channel: Option<String>,
    },
}
