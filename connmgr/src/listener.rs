//! Accept loop: one task per client connection, a semaphore permit per
//! connection (over `client_maxconn` the client gets 503). Plain
//! connections start on [`crate::lean`], which leaves all but bodyless GETs
//! to hyper's HTTP/1.1 server with keep-alive, header limits and an idle
//! timeout. hyper keeps its
//! default header-count limit (100, parsed on the stack); the session answers
//! 431 with a message above [`crate::limits::MAX_HEADERS`].
//!
//! On a TLS listener the handshake comes first (certificates by SNI, see
//! [`crate::tls`]); a client that negotiates `h2` gets hyper's HTTP/2 server,
//! others HTTP/1.1. A plain HTTP request on a TLS port gets a 400 saying so,
//! as nginx does, instead of a handshake failure.

use crate::limits::REFUSAL_LINGER;
use crate::metrics::Transport;
use crate::servers;
use crate::shared::Shared;
use hyper::server::conn::http1;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The canned answer for a connection over the limit: written before any
/// request is read, so it cannot depend on one.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\nToo many connections; try again.\r\n";

/// The answer to a plain HTTP request on a TLS port.
const PLAIN_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\nConnection: close\r\n\r\nThis port speaks TLS: use https:// (or wss://).\n";

/// Accepts connections on `listener` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    token: CancellationToken,
) {
    let builder = Arc::new(servers::http1_builder(&shared.config));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = token.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            shared.metrics.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "connection refused: client_maxconn reached");
            tokio::spawn(refuse(stream));
            continue;
        };
        shared.metrics.accepted.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let builder = builder.clone();
        let token = token.clone();
        let tls = tls.clone();
        shared.tracker.clone().spawn(async move {
            match tls {
                None => crate::lean::serve(stream, peer, shared, &builder, token).await,
                // Boxed: a TLS connection's future is several times a plain
                // one's, and every task would be sized for the larger.
                Some(tls) => Box::pin(serve_tls(stream, peer, tls, shared, &builder, token)).await,
            }
            drop(permit);
        });
    }
}

/// The handshake, then HTTP/2 or HTTP/1.1 as negotiated.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    shared: Arc<Shared>,
    builder: &http1::Builder,
    token: CancellationToken,
) {
    let timeout = shared.config.idle_timeout();
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) if crate::tls::looks_like_tls(&first) => {}
        Ok(Ok(1)) => {
            tracing::info!(%peer, "plain HTTP on a TLS port: 400");
            refuse_with(stream, PLAIN_ON_TLS).await;
            return;
        }
        _ => return,
    }
    let stream = match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::info!(%peer, error = %err, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        servers::serve_h2(stream, peer, shared, token).await;
    } else {
        let _open = shared.metrics.open(Transport::Http1);
        servers::serve_http1(stream, peer, true, shared, builder, token).await;
    }
}

async fn refuse(stream: TcpStream) {
    refuse_with(stream, REFUSAL).await;
}

async fn refuse_with(mut stream: TcpStream, answer: &[u8]) {
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
    // Read what the client sent so closing does not reset the connection
    // before it has read the answer.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
