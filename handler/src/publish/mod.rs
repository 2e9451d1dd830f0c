//! Publish inputs. Each turns what publishers send into [`Input`]s for the
//! engine, over one bounded channel: when the engine falls behind, inputs
//! wait (HTTP requests are answered later, the ZeroMQ socket stops reading
//! and its high-water mark applies).

pub mod auth;
pub mod http;
pub mod zmq_pull;
pub mod zmq_sub;

use holdfast_protocol::publish::Item;

/// Publish requests waiting for the engine.
pub const QUEUE: usize = 1024;

/// What publishers and the command socket ask of the engine.
#[derive(Debug)]
pub enum Input {
    /// Items to deliver, in order.
    Items(Vec<Item>),
    /// Forget every channel's last id and ask the origin again for every
    /// session (`POST /recover`, the `recover` command).
    Recover,
    /// Make WebSocket-over-HTTP sessions ask their origin now (the
    /// `refresh` command): one connection by id, or every one on a channel.
    Refresh {
        /// A connection id.
        cid: Option<String>,
        /// A channel.
        channel: Option<String>,
    },
}
