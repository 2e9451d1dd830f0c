//! Wire formats shared by every Holdfast process.
//!
//! Holdfast's processes (connmgr, proxy, handler) talk over ZeroMQ in
//! Pushpin's ZHTTP packet schema. This crate holds that schema, its two
//! codecs and the async socket adapters, so that every process encodes,
//! decodes and moves frames the same way.
//!
//! # Layout
//! - [`tnetstring`]: TNetString parser and writer (pure, bounded).
//! - [`msgpack`]: MessagePack via rmp-serde, same surface.
//! - [`value`]: the self-describing value tree and its serde bridge.
//! - [`format`]: the `T`/`M` tag in front of a frame; encode/decode any model.
//! - [`zhttp`]: the ZHTTP packet model (request, response, credit, ...).
//! - [`publish`]: publish items (JSON and TNetString) and their checks.
//! - [`handoff`]: a held session handed from the proxy to the handler.
//! - [`inspect`]: Pushpin's session feature (session ids and their last ids).
//! - [`wsevents`]: WebSocket-over-HTTP's `application/websocket-events`.
//! - [`wscontrol`]: GRIP over WebSocket between the proxy and the handler.
//! - [`zmq`] (feature `zmq`): ZeroMQ sockets as tokio actors, and the
//!   table routing packets to their sessions.
//!
//! What the processes share at run time (logging, shutdown, metrics, the
//! streamed body) is `holdfast-runtime`'s.

pub mod format;
pub mod handoff;
pub mod inspect;
pub mod msgpack;
pub mod publish;
pub mod tnetstring;
pub mod value;
pub mod wscontrol;
pub mod wsevents;
pub mod zhttp;

#[cfg(feature = "zmq")]
pub mod zmq;

#[cfg(fuzzing)]
pub mod fuzzing;

pub use format::Format;
