//! ZeroMQ sockets on tokio.
//!
//! # Design
//!
//! A libzmq socket is not thread-safe and has no async API. What it does
//! offer is `ZMQ_FD`, a file descriptor that becomes readable (edge-triggered)
//! whenever the socket's `ZMQ_EVENTS` may have changed. Each socket is owned
//! by one tokio task (its *actor*, [`spawn`]) that registers that descriptor
//! with tokio's reactor through [`tokio::io::unix::AsyncFd`] and then:
//!
//! 1. reads `ZMQ_EVENTS`, and while the socket can receive (and the consumer
//!    has room) or can send (and a message is waiting), does so with
//!    `DONTWAIT`, up to [`BUDGET`] messages before yielding;
//! 2. otherwise sleeps until the descriptor signals, an outbound message is
//!    queued, or the consumer makes room.
//!
//! There is no polling loop and no thread per socket: a message costs one
//! non-blocking libzmq call plus one hop over a bounded tokio channel, which
//! stays in the same runtime. Backpressure is end to end: a full inbound
//! channel stops the actor from reading, so libzmq's high-water mark applies
//! to the peer; a socket that cannot send (HWM reached, no peer yet) leaves
//! the outbound channel full, and senders wait on it.

pub mod link;
mod sessions;
mod socket;
mod spec;

pub use sessions::{session_key, BodySink, FastPath, SessionState, SessionTable, SESSION_QUEUE};
pub use socket::{
    connect_push, new_socket, spawn, Multipart, SocketHandle, BUDGET, CHANNEL_CAPACITY, HWM, LINGER,
};
pub use spec::{apply_specs, stream_specs, SpecError};
