//! Publish inputs. Each turns what publishers send into items for the
//! engine, over one bounded channel: when the engine falls behind, inputs
//! wait (HTTP requests are answered later, the ZeroMQ socket stops reading
//! and its high-water mark applies).

pub mod auth;
pub mod http;
pub mod zmq_pull;
pub mod zmq_sub;

/// Publish requests waiting for the engine.
pub const QUEUE: usize = 1024;
