//! A WebSocket origin: echoes text and binary messages, picks the first
//! subprotocol offered, refuses `/refuse` with a 403, closes with 4001 when
//! told `close-me`, and records the close codes clients send. On
//! `/grip-room`, when the proxy offers the `grip` extension, it accepts it,
//! subscribes the connection to channel `native` with a `c:` control
//! message and prefixes its echoes with `m:`, except for `say:<text>`,
//! which it answers with `<text>` as it is (a way for tests to send
//! control messages). Every text message received is recorded.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Close codes and reasons received, with a wake-up for waiters.
type Closes = Arc<(Mutex<Vec<(u16, String)>>, Notify)>;
/// Each handshake's headers.
type Handshakes = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A client connection, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A running WebSocket origin.
pub struct WsOrigin {
    /// Its address.
    pub addr: SocketAddr,
    closes: Closes,
    handshakes: Handshakes,
    texts: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for WsOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsOrigin {
    /// Starts one on a free loopback port.
    pub async fn start() -> WsOrigin {
        WsOrigin::start_with(None).await
    }

    /// The same over TLS, with a fresh self-signed certificate for
    /// `127.0.0.1` (so only an `insecure` target accepts it).
    pub async fn start_tls() -> WsOrigin {
        WsOrigin::start_with(Some(crate::harness::origin::self_signed_acceptor())).await
    }

    // The handshake callback's error type is tungstenite's own.
    #[allow(clippy::result_large_err)]
    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let closes: Closes = Arc::default();
        let handshakes: Handshakes = Arc::default();
        let texts: Arc<Mutex<Vec<String>>> = Arc::default();
        let (c, h, t) = (closes.clone(), handshakes.clone(), texts.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (closes, handshakes, texts, tls) =
                    (c.clone(), h.clone(), t.clone(), tls.clone());
                tokio::spawn(async move {
                    let stream: Box<dyn Stream> = match tls {
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                        None => Box::new(stream),
                    };
                    let grip = Mutex::new(false);
                    let callback = |req: &Request, mut resp: Response| {
                        handshakes.lock().unwrap().push(
                            req.headers()
                                .iter()
                                .map(|(n, v)| {
                                    (
                                        n.to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect(),
                        );
                        if req.uri().path() == "/refuse" {
                            let mut refusal = ErrorResponse::new(Some("not for you\n".into()));
                            *refusal.status_mut() = http::StatusCode::FORBIDDEN;
                            return Err(refusal);
                        }
                        let offered = req
                            .headers()
                            .get("sec-websocket-protocol")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.split(',').next())
                            .map(|v| v.trim().to_owned());
                        if let Some(chosen) =
                            offered.and_then(|v| http::HeaderValue::from_str(&v).ok())
                        {
                            resp.headers_mut().insert("sec-websocket-protocol", chosen);
                        }
                        let grip_offered = req
                            .headers()
                            .get("sec-websocket-extensions")
                            .is_some_and(|v| v.as_bytes().starts_with(b"grip"));
                        if req.uri().path() == "/grip-room" && grip_offered {
                            resp.headers_mut().insert(
                                "sec-websocket-extensions",
                                http::HeaderValue::from_static("grip"),
                            );
                            *grip.lock().unwrap() = true;
                        }
                        Ok(resp)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    let grip = *grip.lock().unwrap();
                    if grip {
                        let subscribe = r#"c:{"type":"subscribe","channel":"native"}"#;
                        if ws.send(Message::text(subscribe)).await.is_err() {
                            return;
                        }
                    }
                    while let Some(Ok(message)) = ws.next().await {
                        if let Message::Text(t) = &message {
                            texts.lock().unwrap().push(t.to_string());
                        }
                        match message {
                            Message::Text(t) if t.as_str() == "close-me" => {
                                let _ = ws
                                    .send(Message::Close(Some(CloseFrame {
                                        code: CloseCode::from(4001),
                                        reason: "server bye".into(),
                                    })))
                                    .await;
                            }
                            Message::Text(t) if grip && t.starts_with("say:") => {
                                let said = Message::text(&t["say:".len()..]);
                                if ws.send(said).await.is_err() {
                                    return;
                                }
                            }
                            Message::Text(t) if grip => {
                                let sent = ws.send(Message::text(format!("m:{t}"))).await;
                                if sent.is_err() {
                                    return;
                                }
                            }
                            Message::Text(_) | Message::Binary(_) => {
                                let sent = ws.send(message).await;
                                if sent.is_err() {
                                    return;
                                }
                            }
                            Message::Close(frame) => {
                                let (code, reason) = frame
                                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                                    .unwrap_or((1005, String::new()));
                                closes.0.lock().unwrap().push((code, reason));
                                closes.1.notify_waiters();
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        WsOrigin {
            addr,
            closes,
            handshakes,
            texts,
            task,
        }
    }

    /// `host:port` for a route line.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Headers of each handshake received.
    pub fn handshakes(&self) -> Vec<Vec<(String, String)>> {
        self.handshakes.lock().unwrap().clone()
    }

    /// Text messages received, on every connection.
    pub fn texts(&self) -> Vec<String> {
        self.texts.lock().unwrap().clone()
    }

    /// Waits for a close from a client; returns its code and reason.
    pub async fn wait_close(&self, timeout: Duration) -> Option<(u16, String)> {
        tokio::time::timeout(timeout, async {
            loop {
                let notified = self.closes.1.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(close) = self.closes.0.lock().unwrap().first().cloned() {
                    return close;
                }
                notified.await;
            }
        })
        .await
        .ok()
    }
}
