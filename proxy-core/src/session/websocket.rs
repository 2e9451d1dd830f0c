//! WebSocket passthrough: the client's handshake (a `ws://` session from
//! connmgr) is replayed to the route's target as a WebSocket handshake of
//! the proxy's own (the proxy's headers, `Grip-Sig`, the client's
//! subprotocols). The target's `101` becomes the session's `101`; a refusal
//! (any other HTTP answer) goes to the client as it is. Then messages,
//! pings, pongs and closes travel both ways, within connmgr's credits.
//! A target that answers with `Sec-WebSocket-Extensions: grip` gets GRIP
//! over the connection (see [`super::grip_ws`]): its `c:` messages are
//! control, its other messages lose their prefix (or are dropped without
//! it), and publishes reach the client.
//! Targets are tried in order while they refuse the connection.

use super::grip_ws::{grip_prefix, next_delivery, sleep_until, Delivered, FromOrigin, GripWs};
use super::{signer_for, Prepared, Session, KEEP_ALIVE_INTERVAL, REQUEST_WINDOW, SESSION_EXPIRY};
use crate::error::ProxyError;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use crate::origin::sign::Signer;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use holdfast_protocol::rt::ws;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header, PacketType};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long connecting and the handshake with the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest message accepted from the target.
const MAX_MESSAGE: usize = 1024 * 1024;

/// Client handshake headers the proxy's own handshake replaces.
const HANDSHAKE_HEADERS: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "upgrade",
    "connection",
    "host",
];

/// A connection to a target, plain or TLS.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// What the target answered.
enum Connected {
    Open(
        Box<WebSocketStream<Box<dyn Io>>>,
        http::Response<Option<Vec<u8>>>,
    ),
    Refused(http::Response<Option<Vec<u8>>>),
}

impl Session {
    /// Proxies a WebSocket session to the route's target.
    pub(super) async fn websocket(&mut self, prepared: Prepared) -> (u16, &'static str) {
        let debug = self.shared.debug || prepared.route.debug;
        let connected = match self.connect_target(&prepared).await {
            Ok(connected) => connected,
            Err(err) => return (self.fail_with(&err, debug).await, "origin error"),
        };
        let (ws, response) = match connected {
            Connected::Open(ws, response) => (ws, response),
            Connected::Refused(response) => {
                let code = response.status().as_u16();
                let mut packet = self.packet(PacketType::Data);
                packet.code = Some(code);
                packet.reason = response.status().canonical_reason().map(str::to_owned);
                packet.headers = Some(response_headers(&response));
                packet.body = Some(Bytes::from(response.into_body().unwrap_or_default()));
                self.send(packet).await;
                return (code, "websocket refused by origin");
            }
        };
        let mut accept = self.packet(PacketType::Data);
        accept.code = Some(101);
        accept.reason = Some("Switching Protocols".into());
        accept.headers = Some(response_headers(&response));
        accept.credits = Some(REQUEST_WINDOW);
        self.send(accept).await;
        let channel_prefix = prepared.route.prefix.clone().unwrap_or_default();
        let mut grip = grip_prefix(response.headers()).map(|p| self.grip_start(p, channel_prefix));
        let outcome = self.bridge(*ws, &mut grip).await;
        self.grip_end(&grip).await;
        (101, outcome)
    }

    async fn connect_target(&self, prepared: &Prepared) -> Result<Connected, ProxyError> {
        let route = &prepared.route;
        let signer = signer_for(&self.shared, route, prepared.trusted);
        let path = rewrite_path(&prepared.path, route);
        let mut last = (String::new(), String::from("no target"));
        for target in &route.targets {
            let target_name = format!("{}:{}", target.host, target.port);

            let forward = Forward {
                headers: &prepared.headers,
                peer: prepared.peer.as_deref(),
                tls: prepared.tls,
                trusted: prepared.trusted,
                route,
                target,
                signature: signer.as_ref().and_then(Signer::token),
                session: None,
            };
            let headers = origin_headers(&forward, &self.shared.rules);
            let host = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .unwrap_or_else(|| target_name.clone());
            let scheme = if target.ssl { "wss" } else { "ws" };
            let uri = format!("{scheme}://{target_name}{path}");
            let mut request = uri.as_str().into_client_request().map_err(|e| {
                ProxyError::BadRequest(format!("unusable WebSocket URI {uri}: {e}"))
            })?;
            let out = request.headers_mut();
            for (name, value) in headers.iter() {
                if HANDSHAKE_HEADERS.contains(&name.as_str()) || is_hop_by_hop(name.as_str()) {
                    continue;
                }
                out.append(name.clone(), value.clone());
            }
            if let Ok(host) = http::HeaderValue::from_str(&host) {
                out.insert(http::header::HOST, host);
            }
            if let Ok(key) = http::HeaderValue::from_str(&generate_key()) {
                out.insert("sec-websocket-key", key);
            }
            if !route.no_grip {
                // Tell GRIP libraries this proxy speaks GRIP over WebSocket.
                out.insert(
                    "sec-websocket-extensions",
                    http::HeaderValue::from_static("grip"),
                );
            }
            let attempt = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
                let _ = tcp.set_nodelay(true);
                let stream: Box<dyn Io> = if target.ssl {
                    let config = crate::origin::client::tls_config(target.insecure)
                        .map_err(std::io::Error::other)?;
                    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                        .map_err(std::io::Error::other)?;
                    Box::new(
                        tokio_rustls::TlsConnector::from(config)
                            .connect(name, tcp)
                            .await?,
                    )
                } else {
                    Box::new(tcp)
                };
                let config = holdfast_protocol::rt::ws::config(MAX_MESSAGE);
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(std::io::Error::other)
            })
            .await;
            match attempt {
                Ok(Ok((ws, response))) => return Ok(Connected::Open(Box::new(ws), response)),
                Ok(Err(err)) => {
                    if let Some(WsError::Http(response)) =
                        err.get_ref().and_then(|e| e.downcast_ref::<WsError>())
                    {
                        return Ok(Connected::Refused((**response).clone()));
                    }
                    last = (target_name, err.to_string());
                    if err.kind() == std::io::ErrorKind::ConnectionRefused {
                        continue;
                    }
                    break;
                }
                Err(_) => {
                    last = (target_name, "no answer to the WebSocket handshake".into());
                    break;
                }
            }
        }
        Err(ProxyError::Origin {
            target: last.0,
            reason: last.1,
        })
    }

    /// Moves frames between connmgr's session and the target until either
    /// side ends.
    async fn bridge(
        &mut self,
        ws: WebSocketStream<Box<dyn Io>>,
        grip: &mut Option<GripWs>,
    ) -> &'static str {
        let (mut sink, mut stream) = ws.split();
        let mut keep_alive =
            tokio::time::interval_at(Instant::now() + KEEP_ALIVE_INTERVAL, KEEP_ALIVE_INTERVAL);
        let mut heard = Instant::now();
        let mut fragments = ws::Assembler::default();
        // The origin detached: its side is closed, the client's stays.
        let mut detached = false;
        loop {
            let can_read = self.credits > 0 && !detached;
            let timers = GripWs::deadline(grip);
            tokio::select! {
                message = stream.next(), if can_read => {
                    let packet = match message {
                        Some(Ok(Message::Frame(_))) => continue,
                        Some(Ok(message)) => {
                            let message = match message {
                                Message::Text(_) | Message::Binary(_) => {
                                    let text = message.is_text();
                                    let content = match message {
                                        Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                                        other => other.into_data(),
                                    };
                                    match self.grip_origin_message(grip, content, text).await {
                                        FromOrigin::Forward(content) => ws::message(!text, content),
                                        FromOrigin::Skip => continue,
                                        FromOrigin::Detach => {
                                            tracing::debug!(session = %self.id, "origin detached");
                                            let _ = sink.send(ws::close(1000, "detached")).await;
                                            detached = true;
                                            continue;
                                        }
                                    }
                                }
                                other => other,
                            };
                            let closing = matches!(message, Message::Close(_));
                            let size = if message.is_text() || message.is_binary() { message.len() } else { 0 };
                            let mut p = self.packet(PacketType::Data);
                            ws::fill_packet(&mut p, message);
                            self.credits = self.credits.saturating_sub(size);
                            if closing {
                                self.send(p).await;
                                return "closed by origin";
                            }
                            p
                        }
                        Some(Err(err)) => {
                            tracing::info!(session = %self.id, error = %err, "origin WebSocket failed");
                            let mut p = self.packet(PacketType::Error);
                            p.condition = Some("remote-connection-failed".into());
                            self.send(p).await;
                            return "origin failed";
                        }
                        None => {
                            let mut p = self.packet(PacketType::Error);
                            p.condition = Some("remote-connection-failed".into());
                            self.send(p).await;
                            return "origin gone";
                        }
                    };
                    self.send(packet).await;
                }
                packet = self.inbox.recv() => {
                    let Some(packet) = packet else { return "shutdown" };
                    heard = Instant::now();
                    if !self.take_in(&packet) {
                        let _ = sink.send(ws::close(1011, "internal error")).await;
                        let cancel = self.packet(PacketType::Cancel);
                        self.send(cancel).await;
                        return "bad seq";
                    }
                    match packet.kind() {
                        PacketType::Data | PacketType::Ping | PacketType::Pong if detached => {
                            // Nobody to send it to: dropped, its credits given back.
                            let size = packet.body.as_ref().map_or(0, |b| b.len());
                            if packet.kind() == &PacketType::Data && size > 0 {
                                let mut credit = self.packet(PacketType::Credit);
                                credit.credits = Some(u32::try_from(size).unwrap_or(u32::MAX));
                                self.send(credit).await;
                            }
                        }
                        PacketType::Close if detached => return "closed by client",
                        PacketType::Data | PacketType::Ping | PacketType::Pong | PacketType::Close => {
                            let Some(message) = fragments.message_of(&packet) else { continue };
                            let closing = matches!(message, Message::Close(_));
                            let size = if packet.kind() == &PacketType::Data { message.len() } else { 0 };
                            if sink.send(message).await.is_err() {
                                let mut p = self.packet(PacketType::Error);
                                p.condition = Some("remote-connection-failed".into());
                                self.send(p).await;
                                return "origin gone";
                            }
                            if !closing {
                                if size > 0 {
                                    let mut credit = self.packet(PacketType::Credit);
                                    credit.credits = Some(u32::try_from(size).unwrap_or(u32::MAX));
                                    self.send(credit).await;
                                }
                                continue;
                            }
                            // Let the origin's answering close arrive.
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                while let Some(Ok(message)) = stream.next().await {
                                    if let Message::Close(frame) = message {
                                        return frame;
                                    }
                                }
                                None
                            }).await;
                            return "closed by client";
                        }
                        PacketType::Cancel | PacketType::Error => {
                            let _ = sink.send(ws::close(1001, "client gone")).await;
                            return "client gone";
                        }
                        _ => {}
                    }
                }
                Some(deliver) = next_delivery(grip) => {
                    match self.grip_deliver(deliver).await {
                        Delivered::Closed => {
                            if !detached {
                                let _ = sink.send(ws::close(1000, "closed by publish")).await;
                            }
                            return "closed by publish";
                        }
                        Delivered::Sent => GripWs::sent(grip),
                        Delivered::Refresh => {}
                    }
                }
                _ = sleep_until(timers) => self.grip_tick(grip).await,
                _ = keep_alive.tick() => {
                    if heard.elapsed() > SESSION_EXPIRY {
                        let _ = sink.send(ws::close(1001, "client gone")).await;
                        return "expired";
                    }
                    let packet = self.packet(PacketType::KeepAlive);
                    self.send(packet).await;
                    self.grip_alive(grip).await;
                }
            }
        }
    }
}

/// The target's answer headers for connmgr (which writes the upgrade
/// headers itself).
fn response_headers(response: &http::Response<Option<Vec<u8>>>) -> Vec<Header> {
    response
        .headers()
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name.as_str()) && name.as_str() != "sec-websocket-accept"
        })
        .map(|(name, value)| {
            Header(
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}
