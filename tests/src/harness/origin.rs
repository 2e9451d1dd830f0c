//! An origin server running inside the test, with endpoints that make the
//! proxy's behaviour observable:
//!
//! - `/download/<n>`: `n` bytes (`byte i = i % 251`), chunked, 64 KiB at a time.
//! - `/chunks/<k>`: `k` chunks `chunk <i>\n`, chunked encoding.
//! - `/grip`: a GRIP stream hold (`Grip-Hold`, `Grip-Channel`).
//! - `/grip-instruct`: an `application/grip-instruct` body.
//! - `/grip/<case>`: GRIP answers without a hold, and malformed ones (see [`grip_case`]).
//! - `/status/<code>`: that status, short body.
//! - `/delay/<s>`: `200 late` after `s` seconds (a slow origin).
//! - `/slow-read`: reads the request body slowly (a pause after each MiB),
//!   then answers like the catch-all below.
//! - `/forever`: one chunk `tick\n`, then nothing until the proxy drops the
//!   response, which the origin counts ([`Origin::wait_cancelled`]).
//! - anything else: JSON describing the request (method, path, headers,
//!   body length and FNV-1a hash), so tests see what the origin received.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// FNV-1a, 64 bit: a cheap fingerprint of a body.
pub fn fnv1a(data: &[u8], mut hash: u64) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    hash
}

/// Where FNV-1a starts.
pub const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// The byte at position `i` of a `/download` body.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A running test origin.
pub struct Origin {
    /// Its address.
    pub addr: SocketAddr,
    requests: Arc<(AtomicUsize, Notify)>,
    cancelled: Arc<(AtomicUsize, Notify)>,
    task: JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts an origin on a free loopback port.
    pub async fn start() -> Origin {
        Origin::start_with(None).await
    }

    /// Starts an HTTPS origin with a freshly generated self-signed
    /// certificate for `localhost` and `127.0.0.1`.
    pub async fn start_tls() -> Origin {
        Origin::start_with(Some(self_signed_acceptor())).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let requests = Arc::new((AtomicUsize::new(0), Notify::new()));
        let cancelled = Arc::new((AtomicUsize::new(0), Notify::new()));
        let (counter, cancels) = (requests.clone(), cancelled.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (counter, cancels, tls) = (counter.clone(), cancels.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        counter.0.fetch_add(1, Ordering::SeqCst);
                        counter.1.notify_waiters();
                        respond(req, cancels.clone())
                    });
                    let builder = http1::Builder::new();
                    let _ = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                });
            }
        });
        Origin {
            addr,
            requests,
            cancelled,
            task,
        }
    }

    /// `host:port` for a route line.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Waits until `/forever` responses were dropped `n` times in all.
    pub async fn wait_cancelled(&self, n: usize, timeout: std::time::Duration) -> bool {
        wait_count(&self.cancelled, n, timeout).await
    }

    /// Waits until `n` requests were received in all.
    pub async fn wait_requests(&self, n: usize, timeout: std::time::Duration) -> bool {
        wait_count(&self.requests, n, timeout).await
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.0.load(Ordering::SeqCst)
    }
}

/// Waits until `counter` reaches `n`; false once `timeout` passed.
async fn wait_count(
    counter: &(AtomicUsize, Notify),
    n: usize,
    timeout: std::time::Duration,
) -> bool {
    let (count, notify) = counter;
    tokio::time::timeout(timeout, async {
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if count.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    })
    .await
    .is_ok()
}

/// A TLS acceptor with a freshly generated self-signed certificate for
/// `localhost` and `127.0.0.1`.
pub fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("self-signed certificate");
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der())
        .expect("private key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn full(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> http::Response<Body> {
    let mut resp = http::Response::builder().status(status);
    for (n, v) in headers {
        resp = resp.header(*n, *v);
    }
    resp.body(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    )
    .expect("valid response")
}

fn channel_response(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> http::Response<Body> {
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    http::Response::builder()
        .status(200)
        .header("Content-Type", "text/plain")
        .body(StreamBody::new(stream).boxed())
        .expect("valid response")
}

fn streamed(chunks: Vec<Bytes>, headers: &[(&str, &str)]) -> http::Response<Body> {
    let stream = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Frame::data(c))));
    let mut resp = http::Response::builder().status(200);
    for (n, v) in headers {
        resp = resp.header(*n, *v);
    }
    resp.body(StreamBody::new(stream).boxed())
        .expect("valid response")
}

async fn respond(
    req: http::Request<Incoming>,
    cancels: Arc<(AtomicUsize, Notify)>,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/forever" {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _ = tx
                .send(Ok(Frame::data(Bytes::from_static(b"tick\n"))))
                .await;
            tx.closed().await;
            cancels.0.fetch_add(1, Ordering::SeqCst);
            cancels.1.notify_waiters();
        });
        return Ok(channel_response(rx));
    }
    if let Some(n) = path
        .strip_prefix("/download/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let data: Vec<u8> = (0..n).map(pattern).collect();
        let chunks = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
        return Ok(streamed(
            chunks,
            &[("Content-Type", "application/octet-stream")],
        ));
    }
    if let Some(k) = path
        .strip_prefix("/chunks/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        let chunks = (0..k)
            .map(|i| Bytes::from(format!("chunk {i}\n")))
            .collect();
        return Ok(streamed(chunks, &[("Content-Type", "text/plain")]));
    }
    if let Some(secs) = path
        .strip_prefix("/delay/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
        return Ok(full(200, &[("Content-Type", "text/plain")], "late\n"));
    }
    if path == "/late-body" {
        // The head at once; its short, known-length body only once the
        // request body has been read to its end.
        let mut request_body = req.into_body();
        let body = futures_util::stream::once(async move {
            while let Some(Ok(_)) = request_body.frame().await {}
            Ok(Frame::data(Bytes::from_static(b"ok\n")))
        });
        return Ok(http::Response::builder()
            .status(200)
            .header("Content-Type", "text/plain")
            .header("Content-Length", "3")
            .body(StreamBody::new(body).boxed())
            .expect("valid response"));
    }
    if path == "/grip" {
        return Ok(full(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "test"),
            ],
            "initial\n",
        ));
    }
    if let Some(case) = path.strip_prefix("/grip/") {
        if let Some(resp) = grip_case(case) {
            return Ok(resp);
        }
    }
    if path == "/grip-instruct" {
        return Ok(full(
            200,
            &[("Content-Type", "application/grip-instruct")],
            r#"{"hold":{"mode":"response","channels":[{"name":"test"}]}}"#,
        ));
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        return Ok(full(
            code,
            &[("Content-Type", "text/plain")],
            format!("status {code}\n"),
        ));
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let slow = path == "/slow-read";
    let mut body = req.into_body();
    let (mut len, mut hash) = (0usize, FNV_OFFSET);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let before = len >> 20;
            len += data.len();
            hash = fnv1a(&data, hash);
            if slow && len >> 20 != before {
                // A reader slower than the sender: what the proxy holds
                // must stay within its window meanwhile.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    let json = serde_json::json!({
        "method": method,
        "uri": uri,
        "headers": headers,
        "body_len": len,
        "body_hash": format!("{hash:016x}"),
    });
    Ok(full(
        200,
        &[("Content-Type", "application/json")],
        json.to_string(),
    ))
}

/// GRIP answers by name: `status` (Grip-Status with a channel), `expose`
/// (Grip-Expose-Headers), `bad-hold`, `bad-timeout` (malformed headers),
/// `instruct` (instruct body without a hold), `instruct-bad` (invalid JSON),
/// `instruct-404` (instruct body with a non-200 status), `hold-timeout` (a
/// long-poll on a quiet channel, timeout raised to 5 s), `keep-alive` (a
/// stream with a 1 s keep-alive).
pub fn grip_case(case: &str) -> Option<http::Response<Body>> {
    const INSTRUCT: (&str, &str) = ("Content-Type", "application/grip-instruct");
    Some(match case {
        "status" => full(
            200,
            &[
                ("Grip-Status", "299 Custom Reason"),
                ("Grip-Channel", "c"),
                ("X-Other", "kept"),
            ],
            "plain body\n",
        ),
        "expose" => full(
            200,
            &[
                ("Grip-Expose-Headers", "X-Keep"),
                ("X-Keep", "1"),
                ("X-Drop", "2"),
            ],
            "exposed\n",
        ),
        "bad-hold" => full(200, &[("Grip-Hold", "sometimes")], "x"),
        "bad-timeout" => full(
            200,
            &[("Grip-Hold", "response"), ("Grip-Timeout", "soon")],
            "x",
        ),
        "instruct" => full(
            200,
            &[INSTRUCT],
            r#"{"response":{"code":202,"headers":{"X-Made":"yes","Grip-Secret":"no"},"body":"made by instruct\n"}}"#,
        ),
        "instruct-bad" => full(200, &[INSTRUCT], "{not json"),
        "instruct-404" => full(404, &[INSTRUCT], "{}"),
        "hold-timeout" => full(
            200,
            &[
                ("Content-Type", "text/plain"),
                ("Grip-Hold", "response"),
                ("Grip-Channel", "quiet"),
                ("Grip-Timeout", "1"),
            ],
            "timed out\n",
        ),
        "keep-alive" => full(
            200,
            &[
                ("Grip-Hold", "stream"),
                ("Grip-Channel", "ka"),
                ("Grip-Keep-Alive", "ping\\n; format=cstring; timeout=1"),
            ],
            "open\n",
        ),
        _ => return None,
    })
}

/// The value of header `name` in an echo reply (first one, case-insensitive).
pub fn echoed_header(echo: &serde_json::Value, name: &str) -> Option<String> {
    echo["headers"].as_array()?.iter().find_map(|pair| {
        let n = pair[0].as_str()?;
        n.eq_ignore_ascii_case(name)
            .then(|| pair[1].as_str().unwrap_or_default().to_owned())
    })
}
