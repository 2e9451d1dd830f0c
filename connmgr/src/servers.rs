//! hyper's servers for a client connection: HTTP/1.1 (TLS connections,
//! and plain ones whose requests [`crate::lean`] leaves to hyper) and
//! HTTP/2 (TLS connections that negotiate `h2`), each request a ZHTTP
//! session ([`crate::session::handle`]), each connection finishing its
//! request in flight on shutdown.

use crate::limits::READ_BUFFER_MAX;
use crate::metrics::Transport;
use crate::session::handle;
use crate::shared::Shared;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How client connections' HTTP/1 is read: the limits on the head and the
/// read buffer, the idle timeout.
pub(crate) fn http1_builder(config: &crate::config::Config) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(config.idle_timeout())
        .max_header_size(config.buffer_size.max(1024))
        .max_buf_size(READ_BUFFER_MAX.max(config.buffer_size + 8192));
    builder
}

/// hyper's HTTP/1.1 server for the rest of a connection: TLS connections,
/// and plain ones whose requests [`crate::lean`] leaves to hyper.
pub(crate) async fn serve_http1<S>(
    stream: S,
    peer: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    builder: &http1::Builder,
    token: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: hyper keeps a slot the size of the service's future for the
    // whole connection (8 KiB for `handle`'s); boxed, the slot is a pointer
    // and the future's memory goes once the response head is out.
    let service = service_fn(move |req| Box::pin(handle(req, shared.clone(), peer, tls)));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = token.cancelled() => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "client connection ended with an error");
    }
}

/// HTTP/2: each stream is a request like any other (one ZHTTP session).
pub(crate) async fn serve_h2<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    token: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(
            u32::try_from(shared.config.buffer_size.max(1024)).unwrap_or(u32::MAX),
        )
        .max_concurrent_streams(H2_MAX_STREAMS);
    let _open = shared.metrics.open(Transport::H2);
    let service = service_fn(move |req| handle(req, shared.clone(), peer, true));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = token.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "HTTP/2 connection ended with an error");
    }
}

/// Streams one HTTP/2 connection may have open at once (each a held
/// request, for a browser's many EventSources).
const H2_MAX_STREAMS: u32 = 256;
