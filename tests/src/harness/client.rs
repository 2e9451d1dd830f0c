//! HTTP clients for the tests: a pooled hyper client for ordinary requests
//! and a raw TCP exchange for malformed or limit-probing ones.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::{connect::HttpConnector, Client as HyperClient};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A finished response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Body>,
    timeout: Duration,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A new client with its own pool.
    pub fn new() -> Client {
        Client {
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same client, waiting up to `timeout` for each response (30 s
    /// unless told).
    pub fn with_timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// Sends a request with a complete body.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let body = Full::new(body.into())
            .map_err(|never| match never {})
            .boxed();
        self.send_body(method, url, headers, body).await
    }

    /// GET with no body.
    pub async fn get(&self, url: &str) -> Reply {
        self.send("GET", url, &[], Bytes::new()).await
    }

    /// Sends a request whose body is streamed chunk by chunk (chunked
    /// encoding), from a channel the caller feeds.
    pub async fn send_streamed(
        &self,
        method: &str,
        url: &str,
        chunks: mpsc::Receiver<Bytes>,
    ) -> Reply {
        let stream = futures_stream(chunks);
        let body = StreamBody::new(stream).boxed();
        self.send_body(method, url, &[], body).await
    }

    async fn send_body(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Reply {
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body).expect("valid request");
        let resp = tokio::time::timeout(self.timeout, self.inner.request(req))
            .await
            .unwrap_or_else(|_| panic!("no response within {:?}", self.timeout))
            .expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("whole body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A response whose body is read as it arrives.
pub struct OpenStream {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    body: hyper::body::Incoming,
    /// Everything received so far.
    pub received: Vec<u8>,
    /// Whether the body has ended.
    pub ended: bool,
    /// Whether it ended with an error (connection cut, no clean end).
    pub broken: bool,
}

impl OpenStream {
    /// Reads one more frame before `deadline`; false on timeout.
    async fn read_frame(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.body.frame()).await {
            Err(_) => false,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.received.extend_from_slice(&data);
                }
                true
            }
            Ok(Some(Err(_))) => {
                self.ended = true;
                self.broken = true;
                true
            }
            Ok(None) => {
                self.ended = true;
                true
            }
        }
    }

    /// Reads until the received text contains `needle`; false on timeout or end.
    pub async fn read_until(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !String::from_utf8_lossy(&self.received).contains(needle) {
            if self.ended || !self.read_frame(deadline).await {
                return false;
            }
        }
        true
    }

    /// Reads until at least `n` bytes have arrived; false on timeout or end.
    pub async fn read_bytes(&mut self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.received.len() < n {
            if self.ended || !self.read_frame(deadline).await {
                return false;
            }
        }
        true
    }

    /// Reads until the body ends; false on timeout.
    pub async fn read_to_end(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.ended {
            if !self.read_frame(deadline).await {
                return false;
            }
        }
        true
    }

    /// The text received so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }
}

impl Client {
    /// GET whose body is read as it arrives (streams, long-polls).
    pub async fn open(&self, url: &str) -> OpenStream {
        self.open_with(url, &[]).await
    }

    /// [`Client::open`] with request headers.
    pub async fn open_with(&self, url: &str, headers: &[(&str, &str)]) -> OpenStream {
        self.open_request("GET", url, headers).await
    }

    /// [`Client::open`] with a method (and no body) and request headers.
    pub async fn open_request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
    ) -> OpenStream {
        let mut req = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .expect("valid request");
        let resp = tokio::time::timeout(Duration::from_secs(30), self.inner.request(req))
            .await
            .expect("response head within 30 s")
            .expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        OpenStream {
            status,
            headers,
            body: resp.into_body(),
            received: Vec::new(),
            ended: false,
            broken: false,
        }
    }
}

/// Adapts a channel of chunks into a stream of body frames.
fn futures_stream(
    mut rx: mpsc::Receiver<Bytes>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync + 'static
{
    futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    })
}

/// Writes `request` on a fresh connection and reads until the server closes
/// it or `timeout` passes; returns what was read.
pub async fn raw_exchange(addr: &str, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        let mut buf = [0u8; 16384];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}
