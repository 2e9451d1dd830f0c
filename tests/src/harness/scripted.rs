//! An origin whose answers a test writes as a function of the request, and
//! which remembers every request it got (for `Grip-Last`, link and gone
//! requests, retries) so that tests can wait for them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A request the origin got.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers (names lower case), in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Seen {
    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.all(name).into_iter().next()
    }
}

/// An answer: status, headers, body. A header [`DELAY`] is not sent: the
/// answer waits that many milliseconds instead.
pub type Answer = (u16, Vec<(String, String)>, String);

/// The pseudo-header that delays an answer (milliseconds).
pub const DELAY: &str = "x-scripted-delay-ms";

/// Builds an answer from string slices.
pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    (
        status,
        headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body.to_owned(),
    )
}

/// The answer of a WebSocket-over-HTTP origin echoing a request's first
/// `TEXT` event with the GRIP message prefix `m:` (no events when the
/// request has none).
pub fn echo_events(seen: &Seen) -> Answer {
    const EVENTS: (&str, &str) = ("Content-Type", "application/websocket-events");
    let text = seen
        .body
        .strip_prefix("TEXT ")
        .and_then(|rest| rest.split_once("\r\n"))
        .map(|(_, t)| t.trim_end_matches("\r\n"));
    match text {
        Some(text) => {
            let reply = format!("m:{text}");
            answer(
                200,
                &[EVENTS],
                &format!("TEXT {:x}\r\n{reply}\r\n", reply.len()),
            )
        }
        None => answer(200, &[EVENTS], ""),
    }
}

type Script = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A running scripted origin.
pub struct Scripted {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<(Mutex<Vec<Seen>>, Notify)>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Starts an origin answering with `script`.
    pub async fn start(script: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let seen: Arc<(Mutex<Vec<Seen>>, Notify)> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (log, script) = (log.clone(), script.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (log, script) = (log.clone(), script.clone());
                        async move {
                            let method = req.method().to_string();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("/".to_owned(), |p| p.to_string());
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (
                                        n.to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                                .unwrap_or_default();
                            let seen = Seen {
                                method,
                                path,
                                headers,
                                body,
                            };
                            let (status, headers, body) = script(&seen);
                            log.0.lock().unwrap().push(seen);
                            log.1.notify_waiters();
                            let mut resp = http::Response::builder().status(status);
                            for (n, v) in &headers {
                                if n == DELAY {
                                    let ms = v.parse().unwrap_or(0);
                                    tokio::time::sleep(Duration::from_millis(ms)).await;
                                    continue;
                                }
                                resp = resp.header(n, v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                resp.body(Full::new(Bytes::from(body))).unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Scripted { addr, seen, task }
    }

    /// `host:port` for a route line.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.0.lock().unwrap().clone()
    }

    /// Waits until a request matching `pred` arrived; returns it.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.seen.1.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(s) = self.seen().into_iter().find(|s| pred(s)) {
                    return s;
                }
                notified.await;
            }
        })
        .await
        .ok()
    }
}
