//! Accept loop: one task per client connection, a semaphore permit per
//! connection (over `client_maxconn` the client gets 503), hyper's HTTP/1.1
//! server with keep-alive, header limits and an idle timeout. hyper keeps its
//! default header-count limit (100, parsed on the stack); the session answers
//! 431 with a message above [`crate::limits::MAX_HEADERS`].

use crate::limits::{READ_BUFFER_MAX, REFUSAL_LINGER};
use crate::session::{handle, Shared};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The canned answer for a connection over the limit: written before any
/// request is read, so it cannot depend on one.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\nToo many connections; try again.\r\n";

/// Accepts connections on `listener` until `token` is cancelled.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    token: CancellationToken,
) {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.idle_timeout())
        .max_header_size(shared.config.buffer_size.max(1024))
        .max_buf_size(READ_BUFFER_MAX.max(shared.config.buffer_size + 8192));
    let builder = Arc::new(builder);
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
            tracing::warn!(%peer, "connection refused: client_maxconn reached");
            tokio::spawn(refuse(stream));
            continue;
        };
        let shared = shared.clone();
        let builder = builder.clone();
        let token = token.clone();
        shared.tracker.clone().spawn(async move {
            serve_connection(stream, peer, shared, &builder, token).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: &http1::Builder,
    token: CancellationToken,
) {
    let service = service_fn(move |req| handle(req, shared.clone(), peer));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
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

async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(REFUSAL).await;
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
