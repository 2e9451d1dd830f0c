//! connmgr's metrics: connections by transport, accepted and refused, and
//! requests; reported to the handler every second (see
//! `holdfast_runtime::metrics`).

use holdfast_runtime::metrics::Registry;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// connmgr's series.
pub struct Metrics {
    /// Where they live.
    pub registry: Arc<Registry>,
    /// Client connections accepted.
    pub accepted: Arc<AtomicU64>,
    /// Client connections refused (over `client_maxconn`).
    pub refused: Arc<AtomicU64>,
    /// Requests (HTTP/1.1 and HTTP/2 streams, WebSocket handshakes).
    pub requests: Arc<AtomicU64>,
    open_http1: Arc<AtomicI64>,
    open_h2: Arc<AtomicI64>,
    open_websocket: Arc<AtomicI64>,
}

/// A transport counted while its guard lives.
#[derive(Clone, Copy)]
pub enum Transport {
    /// HTTP/1.1 connections (plain or TLS).
    Http1,
    /// HTTP/2 connections.
    H2,
    /// Upgraded WebSockets.
    WebSocket,
}

/// Counts one open connection of a transport until dropped.
pub struct Open(Arc<AtomicI64>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// connmgr `id`'s series.
    pub fn new(id: &str) -> Metrics {
        let r = Registry::new("connmgr", id);
        let open = |t| {
            r.gauge(
                "holdfast_connections_open",
                "Client connections open, by transport.",
                &[("transport", t)],
            )
        };
        Metrics {
            accepted: r.counter(
                "holdfast_connections_accepted_total",
                "Client connections accepted.",
                &[],
            ),
            refused: r.counter(
                "holdfast_connections_refused_total",
                "Client connections refused over client_maxconn.",
                &[],
            ),
            requests: r.counter(
                "holdfast_requests_total",
                "Client requests (HTTP/1.1, HTTP/2 streams, WebSocket handshakes).",
                &[],
            ),
            open_http1: open("http1"),
            open_h2: open("h2"),
            open_websocket: open("websocket"),
            registry: r,
        }
    }

    /// Counts a connection of `transport` as open until the guard drops.
    pub fn open(&self, transport: Transport) -> Open {
        let gauge = match transport {
            Transport::Http1 => &self.open_http1,
            Transport::H2 => &self.open_h2,
            Transport::WebSocket => &self.open_websocket,
        };
        gauge.fetch_add(1, Ordering::Relaxed);
        Open(gauge.clone())
    }
}
