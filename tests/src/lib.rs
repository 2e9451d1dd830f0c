//! Harness for Holdfast's end-to-end tests: starts the real binaries on
//! unusual loopback ports and talks to them as clients and origins do.
//!
//! # Layout
//! - [`harness::binaries`]: where the built binaries are.
//! - [`harness::browser`]: headless Chromium showing a page.
//! - [`harness::ports`]: free loopback ports.
//! - [`harness::holdfast`]: a running `holdfast` with its config, logs and children.
//! - [`harness::origin`]: an in-process origin server with test endpoints.
//! - [`harness::scripted`]: an origin answering as each test scripts it, recording requests.
//! - [`harness::ws_origin`]: a WebSocket echo origin.
//! - [`harness::python`]: the Python clients and the `websockets` origin in `tests/python/`.
//! - [`harness::pushpin`]: Pushpin 1.36 under its own runner, optionally with Holdfast's connmgr.
//! - [`harness::varnish`]: Varnish with the repository's VCL, the CDN of the chaining tests.
//! - [`harness::nginx`]: nginx as an origin or reverse proxy of the benchmarks.
//! - [`harness::scratch`]: scratch folders in the temp folder.
//! - [`harness::client`]: HTTP clients, pooled and raw.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a harness fails loudly by design

pub mod harness;

pub use harness::browser::{screenshot, Browser};
pub use harness::client::{raw_exchange, Client, OpenStream, Reply};
pub use harness::holdfast::{Holdfast, HoldfastBuilder};
pub use harness::nats::NatsCluster;
pub use harness::nginx::Nginx;
pub use harness::origin::Origin;
pub use harness::ports::free_port;
pub use harness::pushpin::Pushpin;
pub use harness::python::{run_json, PyWsOrigin};
pub use harness::scripted::{answer, Scripted, Seen};
pub use harness::varnish::Varnish;
pub use harness::ws_origin::WsOrigin;
