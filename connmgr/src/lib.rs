//! Holdfast's connection manager.
//!
//! Owns every client socket: accepts HTTP/1.1 connections, and HTTPS with
//! HTTP/2 where configured, enforces the
//! limits (header size, URI length, body size, connection count, idle time),
//! and turns each request into a ZHTTP session with a proxy over ZeroMQ, with
//! credit-based flow control in both directions.
//!
//! # Layout
//! - [`config`]: command line and settings.
//! - [`limits`]: every limit and timeout, with why.
//! - [`listener`]: accept loop, connection permits, TLS handshakes.
//! - [`servers`]: hyper's HTTP/1.1 and HTTP/2 servers for a connection.
//! - [`lean`]: plain HTTP/1.1 bodyless GETs (held streams, long-polls)
//!   served without hyper's per-connection buffers; the rest goes to hyper.
//! - [`tls`]: certificates by SNI from a folder, ALPN.
//! - [`session`]: one request as a ZHTTP session (the data path); hands
//!   WebSocket handshakes to [`websocket`].
//! - [`websocket`]: WebSocket clients: handshake, upgrade, frames as ZHTTP packets.
//! - [`deflate`]: permessage-deflate, a layer under tungstenite.
//! - [`shared`]: what every session shares, and how its packets go out.
//! - [`answer`]: answers connmgr writes itself (refusals, errors).
//! - [`metrics`]: connections and requests, reported to the handler.
//! - [`sockets`]: the PUSH/ROUTER/SUB sockets and the session routing table.

pub mod answer;
pub mod config;
pub mod deflate;
pub mod lean;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod servers;
pub mod session;
pub mod shared;
pub mod sockets;
pub mod tls;
pub mod websocket;

pub use config::Config;

#[cfg(fuzzing)]
pub mod fuzzing;

use holdfast_runtime::Shutdown;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Pending connections the kernel queues per listening socket (std's
/// default is 128, too few for a connection storm).
const LISTEN_BACKLOG: u32 = 4096;

/// Runs the connection manager until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let sockets = sockets::Sockets::start(
        &ctx,
        &config.id,
        &config.zclient_stream,
        config.daemon.format,
    )?;
    let config = Arc::new(config);
    let shared = Arc::new(shared::Shared::new(
        sockets.clone(),
        config.clone(),
        shutdown.tracker.clone(),
    ));
    if let Some(spec) = &config.metrics_spec {
        let out = holdfast_protocol::zmq::connect_push(&ctx, spec, "metrics")?;
        holdfast_runtime::metrics::spawn_reporter(
            shared.metrics.registry.clone(),
            out,
            config.daemon.format,
        );
    }
    let limit = Arc::new(Semaphore::new(config.maxconn));
    let mut listeners = Vec::new();
    let plain = config.listen.iter().map(|l| (l.addr, l.tls));
    let secure = config.tls_listen.iter().map(|a| (*a, true));
    for (addr, tls) in plain.chain(secure) {
        let acceptor = if tls {
            let dir = config
                .certs
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("TLS on {addr} needs --certs"))?;
            let server = tls::server_config(dir, addr.port())?;
            Some(tokio_rustls::TlsAcceptor::from(server))
        } else {
            None
        };
        let listener = bind(addr, config.reuse_port)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        tracing::info!(tls, "listening on {}", listener.local_addr()?);
        listeners.push(tokio::spawn(listener::serve(
            listener,
            acceptor,
            shared.clone(),
            limit.clone(),
            shutdown.token.clone(),
        )));
    }
    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "ready", "connmgr ready");
    shutdown.token.cancelled().await;
    for l in listeners {
        let _ = l.await;
    }
    if !shutdown.drain(config.daemon.grace()).await {
        tracing::warn!(
            sessions = sockets.sessions().len(),
            "grace period over; closing remaining connections"
        );
    }
    Ok(())
}

/// A listening socket on `addr`, shared with other processes when
/// `reuse_port` (each then gets a share of new connections).
fn bind(addr: std::net::SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's TcpListener::bind does on Unix.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
