//! End-to-end tests against the real binaries: one test binary, a module per
//! area, so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod browser;
mod bus;
mod cdn;
mod client_sessions;
mod delivery_settings;
mod edge_cache;
mod edge_cache_http;
mod eventstream;
mod faults;
mod flow_control;
mod history;
mod holds;
mod interop;
mod libraries;
mod limits;
mod livecounter;
mod metrics;
mod proxying;
mod purge;
mod recovery;
mod route_options;
mod scale_out;
mod signing;
mod sockjs;
mod status_page;
mod tls;
mod websocket;
mod ws_control;
