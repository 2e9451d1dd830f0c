//! Entry points for connmgr's fuzz targets (`connmgr/fuzz/`, built with
//! `--cfg fuzzing`). Each must never panic, whatever the bytes.

/// Client bytes as a connection's HTTP/1: read by hyper as connmgr
/// configures it ([`crate::servers::http1_builder`]), each request put
/// through connmgr's checks ([`crate::session::check_limits`],
/// [`crate::session::local_answer`]) and its body read to the end the way
/// a session reads it (chunked decoding included), within the body limit.
/// Whatever the bytes: no panic, no hang (the input ends, so must the
/// connection), and every answer a well-formed status line.
pub fn http1_request(data: &[u8]) {
    use crate::config::Config;
    use bytes::Bytes;
    use clap::Parser;
    use http_body_util::BodyExt;
    use std::sync::OnceLock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    static CONFIG: OnceLock<Config> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        Config::try_parse_from(["connmgr", "--zclient-stream", "tcp://127.0.0.1:1"])
            .expect("connmgr's defaults parse")
    });
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(
            move |req: http::Request<hyper::body::Incoming>| async move {
                let (parts, mut body) = req.into_parts();
                let refused = crate::session::check_limits(&parts, config)
                    .or_else(|| crate::session::local_answer(&parts));
                if let Some(resp) = refused {
                    return Ok::<_, std::convert::Infallible>(resp);
                }
                let mut total = 0u64;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            total += frame.data_ref().map_or(0, |d| d.len() as u64);
                            if total > config.max_body_size {
                                return Ok(crate::answer::plain(
                                    http::StatusCode::PAYLOAD_TOO_LARGE,
                                    "too large",
                                ));
                            }
                        }
                        Err(_) => {
                            return Ok(crate::answer::plain(
                                http::StatusCode::BAD_REQUEST,
                                "malformed",
                            ))
                        }
                    }
                }
                Ok(http::Response::new(holdfast_runtime::body::HttpBody::full(
                    Bytes::new(),
                )))
            },
        );
        let builder = crate::servers::http1_builder(config);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(server), service);
        let peer = async {
            let _ = client.write_all(data).await;
            let _ = client.shutdown().await;
            let mut answers = Vec::new();
            let _ = client.read_to_end(&mut answers).await;
            answers
        };
        let run = async { tokio::join!(connection, peer).1 };
        let answers = tokio::time::timeout(std::time::Duration::from_secs(10), run)
            .await
            .expect("the connection ends once the client's bytes have");
        assert!(
            answers.is_empty() || answers.starts_with(b"HTTP/1."),
            "not a status line: {:?}",
            String::from_utf8_lossy(&answers[..answers.len().min(64)])
        );
    });
}

/// Client bytes as [`crate::lean`] reads a request head: whatever they
/// are, no panic; a head it answers itself lies within the bytes and the
/// limit and is a GET without a body or an upgrade (everything else is
/// hyper's, which [`http1_request`] covers).
pub fn lean_head(data: &[u8]) {
    use crate::lean::{parse_head, Parsed};
    const LIMIT: usize = 8192;
    if let Parsed::Lean(parts, len) = parse_head(data, LIMIT) {
        assert!(len <= data.len() && len <= LIMIT);
        assert_eq!(parts.method, http::Method::GET);
        for name in ["content-length", "transfer-encoding", "upgrade", "expect"] {
            assert!(!parts.headers.contains_key(name), "{name} taken");
        }
    }
}

/// Client bytes through the permessage-deflate layer: whatever they are, it
/// hands tungstenite bytes without panicking, and never more than the
/// message limit per inflated message (plus frame headers).
pub fn websocket_deflate(data: &[u8]) {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};
    const LIMIT: usize = 4096;
    let agreement = crate::deflate::negotiate([&b"permessage-deflate"[..]]);
    let Some(agreement) = agreement else { return };
    let mut layer = crate::deflate::Deflated::new(data, LIMIT, agreement);
    let mut cx = Context::from_waker(Waker::noop());
    let mut total = 0usize;
    loop {
        let mut chunk = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut layer).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => total += buf.filled().len(),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    // Each input frame header is at least 2 bytes and inflates to at most
    // LIMIT + 1 bytes of payload and a 14-byte header.
    assert!(total <= data.len() + (data.len() / 2 + 1) * (LIMIT + 15));
}
