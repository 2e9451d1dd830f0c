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
use super::{signer_for, Prepared, Session, CLOSE_TIMEOUT, REQUEST_WINDOW, VOUCH_INTERVAL};
use crate::error::ProxyError;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use bytes::Bytes;
use futures_util::StreamExt;
use holdfast_grip::sign::Signer;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header, Packet, PacketType, STALL_TIMEOUT};
use holdfast_runtime::ws::{self, Outbox};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long connecting and the handshake with the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// `prepared` comes boxed: an async fn keeps its arguments' room for
    /// its whole life, and this one lives as long as the connection.
    pub(super) async fn websocket(&mut self, prepared: Box<Prepared>) -> (u16, &'static str) {
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
        accept.credits = Some(self.endpoint.offer(REQUEST_WINDOW as usize));
        // connmgr's messages may go past the window by one message.
        self.endpoint.set_overshoot(self.shared.max_message_size);
        self.send(accept).await;
        let channel_prefix = prepared.route.prefix.clone().unwrap_or_default();
        let mut grip = grip_prefix(response.headers()).map(|p| self.grip_start(p, channel_prefix));
        // Not needed past the handshake, and the bridge may run for hours.
        drop(prepared);
        drop(response);
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
                    let config = holdfast_grip::client::tls_config(target.insecure)
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
                let config = holdfast_runtime::ws::config(self.shared.max_message_size);
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
    /// side ends. Both directions are flow-controlled: the origin is read
    /// while connmgr has credit for what it sends (and nothing else waits
    /// for the client), and what connmgr sends waits in an [`Outbox`] for
    /// the origin, whose progress becomes connmgr's credits. Pings are
    /// answered where they arrive (the origin's by tungstenite, the
    /// client's by connmgr), so neither is forwarded.
    async fn bridge(
        &mut self,
        ws: WebSocketStream<Box<dyn Io>>,
        grip: &mut Option<GripWs>,
    ) -> &'static str {
        let (mut sink, mut stream) = ws.split();
        let mut outbox = Outbox::default();
        let mut fragments = ws::Assembler::default();
        // Bytes written to the origin, not yet given back to connmgr.
        let mut to_grant = 0usize;
        // The origin detached: its side is closed, the client's stays.
        let mut detached = false;
        let timer = tokio::time::sleep_until(self.endpoint.next_deadline());
        tokio::pin!(timer);
        // The handler forgets GRIP sessions not vouched for in 2 minutes.
        let mut vouch = tokio::time::interval_at(Instant::now() + VOUCH_INTERVAL, VOUCH_INTERVAL);
        loop {
            self.flush_to_client().await;
            let client_ready = self.to_client.is_empty();
            let can_read = client_ready && self.endpoint.can_send() && !detached;
            let timers = GripWs::deadline(grip);
            let end = tokio::select! {
                message = stream.next(), if can_read => match message {
                    Some(Ok(message)) => self.on_origin_message(message, grip, &mut detached, &mut outbox).await,
                    Some(Err(WsError::Capacity(err))) => {
                        tracing::info!(session = %self.endpoint.id(), "origin message too big: {err}");
                        outbox.push(ws::close(1009, "message too big"));
                        self.close_client(1009, "message too big");
                        Some("origin message too big")
                    }
                    Some(Err(err)) => {
                        tracing::info!(session = %self.endpoint.id(), error = %err, "origin WebSocket failed");
                        self.origin_failed();
                        Some("origin failed")
                    }
                    None => {
                        self.origin_failed();
                        Some("origin gone")
                    }
                },
                packet = self.inbox.recv() => match packet {
                    Some(packet) => self.on_client_packet(*packet, &mut fragments, detached, &mut outbox).await,
                    None => Some("shutdown"),
                },
                written = outbox.write(&mut sink), if !outbox.is_idle() => match written {
                    Ok(bytes) => {
                        to_grant += bytes;
                        if to_grant >= REQUEST_WINDOW as usize / 2 || (outbox.is_empty() && to_grant > 0) {
                            if let Some(credit) = self.endpoint.grant(std::mem::take(&mut to_grant)) {
                                self.send(credit).await;
                            }
                        }
                        None
                    }
                    Err(err) => {
                        tracing::info!(session = %self.endpoint.id(), error = %err, "write to the origin failed");
                        self.origin_failed();
                        Some("origin gone")
                    }
                },
                deliver = next_delivery(grip), if client_ready => match deliver {
                    Some(deliver) => match self.grip_deliver(deliver) {
                        Delivered::Closed => {
                            if !detached {
                                outbox.push(ws::close(1000, "closed by publish"));
                            }
                            Some("closed by publish")
                        }
                        Delivered::Sent => {
                            GripWs::sent(grip);
                            None
                        }
                        Delivered::Refresh => None,
                    },
                    None => {
                        self.close_client(1008, "too slow for publishes");
                        if !detached {
                            outbox.push(ws::close(1001, "client gone"));
                        }
                        Some("client too slow")
                    }
                },
                _ = sleep_until(timers) => {
                    self.grip_tick(grip);
                    None
                }
                _ = vouch.tick(), if grip.is_some() => {
                    self.grip_alive(grip).await;
                    None
                }
                _ = &mut timer => {
                    let now = Instant::now();
                    if self.endpoint.expired(now) {
                        outbox.push(ws::close(1001, "client gone"));
                        Some("expired")
                    } else if outbox.stall_deadline().is_some_and(|at| now >= at) {
                        tracing::info!(session = %self.endpoint.id(), "origin read nothing for {}s: closing", STALL_TIMEOUT.as_secs());
                        self.close_client(1011, "upstream stalled");
                        Some("origin stalled")
                    } else {
                        if self.endpoint.keep_alive_due(now) {
                            let packet = self.packet(PacketType::KeepAlive);
                            self.send(packet).await;
                        }
                        let mut at = self.endpoint.next_deadline();
                        if let Some(stall) = outbox.stall_deadline() {
                            at = at.min(stall);
                        }
                        timer.as_mut().reset(at);
                        None
                    }
                }
            };
            if let Some(outcome) = end {
                // Last words both ways: to the origin briefly, to the
                // client as long as it reads.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    while !outbox.is_idle() {
                        if outbox.write(&mut sink).await.is_err() {
                            return;
                        }
                    }
                })
                .await;
                if outcome == "closed by client" && !detached {
                    // Let the origin's answering close arrive, and pass it
                    // on as the answer to the client's.
                    let answer = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while let Some(Ok(message)) = stream.next().await {
                            if matches!(message, Message::Close(_)) {
                                return Some(message);
                            }
                        }
                        None
                    })
                    .await;
                    if let Ok(Some(close)) = answer {
                        let mut p = self.packet(PacketType::Data);
                        ws::fill_packet(&mut p, close);
                        self.queue_for_client(p);
                    }
                }
                self.drain_to_client().await;
                return outcome;
            }
            if let Some(stall) = outbox.stall_deadline() {
                if stall < timer.deadline() {
                    timer.as_mut().reset(stall);
                }
            }
        }
    }

    /// A message from the origin, for the client; `Some` ends the session.
    async fn on_origin_message(
        &mut self,
        message: Message,
        grip: &mut Option<GripWs>,
        detached: &mut bool,
        outbox: &mut Outbox,
    ) -> Option<&'static str> {
        let message = match message {
            Message::Text(_) | Message::Binary(_) => {
                let text = message.is_text();
                let content = match message {
                    Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                    other => other.into_data(),
                };
                match self.grip_origin_message(grip, content, text).await {
                    FromOrigin::Forward(content) => ws::message(!text, content),
                    FromOrigin::Skip => return None,
                    FromOrigin::Detach => {
                        tracing::debug!(session = %self.endpoint.id(), "origin detached");
                        outbox.push(ws::close(1000, "detached"));
                        *detached = true;
                        return None;
                    }
                }
            }
            // Answered by tungstenite; connmgr's client answers its own.
            Message::Ping(_) | Message::Frame(_) => return None,
            other => other,
        };
        let closing = matches!(message, Message::Close(_));
        let mut p = self.packet(PacketType::Data);
        ws::fill_packet(&mut p, message);
        self.queue_for_client(p);
        closing.then_some("closed by origin")
    }

    /// A packet from connmgr, for the origin; `Some` ends the session.
    async fn on_client_packet(
        &mut self,
        packet: Packet,
        fragments: &mut ws::Assembler,
        detached: bool,
        outbox: &mut Outbox,
    ) -> Option<&'static str> {
        if !self.take_in(&packet) {
            if !detached {
                outbox.push(ws::close(1011, "internal error"));
            }
            let cancel = self.packet(PacketType::Cancel);
            self.send(cancel).await;
            return Some("bad seq");
        }
        match packet.kind() {
            PacketType::Ping => {
                // The client's ping, forwarded by a connection manager that
                // does not answer pings itself (Pushpin's condure): answered
                // here, once.
                let mut pong = self.packet(PacketType::Pong);
                pong.body = packet.body.clone();
                self.queue_for_client(pong);
                // Its payload is ours to give back.
                self.give_back(packet.body.as_ref().map_or(0, Bytes::len))
                    .await;
                None
            }
            PacketType::Data | PacketType::Pong if detached => {
                // Nobody to send it to: dropped, its credits given back.
                self.give_back(packet.body.as_ref().map_or(0, Bytes::len))
                    .await;
                None
            }
            PacketType::Close if detached => Some("closed by client"),
            PacketType::Data | PacketType::Pong | PacketType::Close => {
                let message = fragments.message_of(&packet)?;
                let closing = matches!(message, Message::Close(_));
                outbox.push(message);
                closing.then_some("closed by client")
            }
            PacketType::Cancel | PacketType::Error => {
                if !detached {
                    outbox.push(ws::close(1001, "client gone"));
                }
                Some("client gone")
            }
            _ => None,
        }
    }

    /// Gives connmgr `bytes` of credit back at once.
    async fn give_back(&mut self, bytes: usize) {
        if let Some(credit) = self.endpoint.grant(bytes) {
            self.send(credit).await;
        }
    }

    /// Tells connmgr the origin failed (it closes the client with 1011).
    fn origin_failed(&mut self) {
        let mut p = self.packet(PacketType::Error);
        p.condition = Some("remote-connection-failed".into());
        self.queue_for_client(p);
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
