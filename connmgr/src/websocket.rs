//! WebSocket clients, carried over ZHTTP as Pushpin's connmgr carries them:
//! the handshake becomes a session whose first packet has a `ws://` (or
//! `wss://`) URI and the client's headers; the owner accepts with a `101`
//! data packet (connmgr then writes `Upgrade`, `Connection` and
//! `Sec-WebSocket-Accept` itself, keeping the owner's
//! `Sec-WebSocket-Protocol`) or refuses with any other response, which the
//! client gets as plain HTTP. After the upgrade each message is a data
//! packet with `content-type` `text` or `binary`; pings, pongs and closes
//! are `ping`, `pong` and `close` packets (close code in `code`, reason in
//! `body`).
//!
//! Flow control: client messages go to the owner while it has granted
//! credits (the 101 may carry none: then a full buffer is assumed, as
//! Pushpin does); messages to the client are written as they come and their
//! size is given back as credits once written. Messages over
//! `--max-message-size` close the connection with 1009, invalid UTF-8 in a
//! text message with 1007. With `--allow-compression`, clients offering
//! permessage-deflate get it ([`holdfast_protocol::rt::deflate`]).

use crate::session::{plain, Shared};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use holdfast_protocol::rt::body::HttpBody as ResponseBody;
use holdfast_protocol::rt::ws;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header, Packet, PacketType};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long the owner may take to accept or refuse the handshake.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection on which neither side said anything for this long is
/// closed (Pushpin's stream timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Keep-alive toward the owner, and the owner's expiry (as for HTTP).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(45);
const OWNER_EXPIRY: Duration = Duration::from_secs(60);

/// Headers of the owner's 101 that connmgr writes itself.
const OWN_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(http::header::UPGRADE, "websocket") && has(http::header::CONNECTION, "upgrade")
}

/// What is wrong with a handshake, if anything.
fn handshake_error(req: &Request<Incoming>) -> Option<&'static str> {
    if req.method() != http::Method::GET {
        return Some("a WebSocket handshake must be a GET");
    }
    if req.version() != http::Version::HTTP_11 {
        return Some("a WebSocket handshake must be HTTP/1.1");
    }
    let version = req.headers().get("sec-websocket-version");
    if version.and_then(|v| v.to_str().ok()) != Some("13") {
        return Some("Sec-WebSocket-Version must be 13");
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok());
    use base64::Engine;
    let decoded = key.and_then(|k| {
        base64::engine::general_purpose::STANDARD
            .decode(k.trim())
            .ok()
    });
    if decoded.is_none_or(|k| k.len() != 16) {
        return Some("Sec-WebSocket-Key must be 16 bytes in base64");
    }
    None
}

/// One WebSocket session's link to its owner.
struct Owner {
    shared: Arc<Shared>,
    id: String,
    to: Option<Vec<u8>>,
    out_seq: u32,
    in_seq: u32,
}

impl Owner {
    fn packet(&mut self, kind: PacketType) -> Packet {
        let packet = Packet::new(kind, &self.shared.sockets.id, &self.id, self.out_seq);
        self.out_seq = self.out_seq.wrapping_add(1);
        packet
    }

    async fn send(&mut self, packet: Packet) {
        if let Some(to) = &self.to {
            if let Err(err) = self.shared.sockets.send_to(to, &packet).await {
                tracing::debug!(session = %self.id, error = %err, "packet to owner not sent");
            }
        }
    }

    /// Checks a packet's sequence number and notes its sender; false when
    /// the sequence is broken.
    fn accept(&mut self, packet: &Packet) -> bool {
        if let Some(seq) = packet.seq {
            if seq != self.in_seq {
                tracing::warn!(session = %self.id, expected = self.in_seq, got = seq, "out-of-order packet from owner");
                return false;
            }
            self.in_seq = seq.wrapping_add(1);
        }
        if let Some(from) = &packet.from {
            if self.to.as_deref() != Some(from.as_bytes()) {
                self.to = Some(from.as_bytes().to_vec());
            }
        }
        true
    }
}

/// Serves a WebSocket handshake: a ZHTTP session whose owner accepts or
/// refuses; on acceptance, the connection is upgraded and bridged.
pub async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    first: Packet,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let line = format!("{} {}", req.method(), req.uri());
    if let Some(reason) = handshake_error(&req) {
        tracing::info!(%peer, "{line} -> 400 bad WebSocket handshake: {reason}");
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("Bad WebSocket handshake: {reason}."),
        );
    }
    let compress = shared.config.allow_compression
        && holdfast_protocol::rt::deflate::offered(
            req.headers()
                .get_all("sec-websocket-extensions")
                .iter()
                .map(|v| v.as_bytes()),
        );
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let id = first.single_id().unwrap_or_default().to_owned();
    let mut inbox = shared.sockets.sessions().register(id.clone());
    let mut owner = Owner {
        shared: shared.clone(),
        id: id.clone(),
        to: None,
        out_seq: 1,
        in_seq: 0,
    };
    if shared.sockets.send_first(&first).await.is_err() {
        shared.sockets.sessions().unregister(&id);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down.");
    }
    let answer = tokio::time::timeout(ACCEPT_TIMEOUT, async {
        while let Some(packet) = inbox.recv().await {
            if !owner.accept(&packet) {
                return None;
            }
            match packet.kind() {
                PacketType::Data | PacketType::Error | PacketType::Cancel => return Some(packet),
                _ => {}
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(answer) = answer else {
        shared.sockets.sessions().unregister(&id);
        tracing::info!(%peer, "{line} -> 502 no answer from the proxy");
        return plain(
            StatusCode::BAD_GATEWAY,
            "The proxy did not accept the WebSocket.",
        );
    };
    let code = answer.code.unwrap_or(0);
    if answer.kind() != &PacketType::Data || code != 101 {
        shared.sockets.sessions().unregister(&id);
        // Refused: the owner's HTTP answer (data, or error `rejected` with
        // a response) goes to the client as it is.
        let status = StatusCode::from_u16(code)
            .ok()
            .filter(|s| !s.is_informational())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        let body = answer
            .body
            .clone()
            .unwrap_or_else(|| Bytes::from_static(b"The WebSocket was refused.\n"));
        let mut resp = Response::new(ResponseBody::full(body));
        *resp.status_mut() = status;
        copy_headers(&answer, resp.headers_mut(), &["content-length"]);
        tracing::info!(%peer, "{line} -> {} WebSocket refused", status.as_u16());
        return resp;
    }
    let credits = answer
        .credits
        .map_or(shared.config.buffer_size, |c| c as usize);
    let mut resp = Response::new(ResponseBody::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(&answer, resp.headers_mut(), OWN_HEADERS);
    let headers = resp.headers_mut();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) =
        HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key))
    {
        headers.insert("sec-websocket-accept", accept);
    }
    if compress {
        headers.insert(
            "sec-websocket-extensions",
            HeaderValue::from_static(holdfast_protocol::rt::deflate::RESPONSE),
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let tracker = shared.tracker.clone();
    tracker.spawn(async move {
        let outcome = match upgrade.await {
            Ok(upgraded) => {
                let _open = owner
                    .shared
                    .metrics
                    .open(crate::metrics::Transport::WebSocket);
                let max = owner.shared.config.max_message_size;
                let config = Some(ws::config(max));
                let io = TokioIo::new(upgraded);
                if compress {
                    let io = holdfast_protocol::rt::deflate::Deflated::new(io, max);
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, config).await;
                    bridge(ws, &mut owner, &mut inbox, credits).await
                } else {
                    let ws = WebSocketStream::from_raw_socket(io, Role::Server, config).await;
                    bridge(ws, &mut owner, &mut inbox, credits).await
                }
            }
            Err(err) => {
                tracing::debug!(session = %owner.id, error = %err, "upgrade failed");
                let cancel = owner.packet(PacketType::Cancel);
                owner.send(cancel).await;
                "upgrade failed"
            }
        };
        owner.shared.sockets.sessions().unregister(&owner.id);
        tracing::info!(
            "{line} -> 101 {}ms peer={peer} {outcome}",
            started.elapsed().as_millis()
        );
    });
    resp
}

fn copy_headers(packet: &Packet, out: &mut http::HeaderMap, skip: &[&str]) {
    for Header(name, value) in packet.headers.iter().flatten() {
        let lower = name.to_ascii_lowercase();
        if is_hop_by_hop(&lower) || skip.contains(&lower.as_str()) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            out.append(name, value);
        }
    }
}

/// Moves messages between the client and the owner until either ends.
async fn bridge<S>(
    ws: WebSocketStream<S>,
    owner: &mut Owner,
    inbox: &mut mpsc::Receiver<Box<Packet>>,
    mut credits: usize,
) -> &'static str
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let mut keep_alive =
        tokio::time::interval_at(Instant::now() + KEEP_ALIVE_INTERVAL, KEEP_ALIVE_INTERVAL);
    let mut heard_owner = Instant::now();
    let mut active = Instant::now();
    let mut reconnects = owner.shared.sockets.reconnects();
    // A message from the owner arriving in fragments.
    let mut fragments = ws::Assembler::default();
    loop {
        tokio::select! {
            message = stream.next(), if credits > 0 => {
                active = Instant::now();
                let packet = match message {
                    Some(Ok(Message::Frame(_))) => continue,
                    Some(Ok(message)) => {
                        let closing = matches!(message, Message::Close(_));
                        let size = if message.is_text() || message.is_binary() { message.len() } else { 0 };
                        let mut p = owner.packet(PacketType::Data);
                        ws::fill_packet(&mut p, message);
                        credits = credits.saturating_sub(size);
                        if closing {
                            owner.send(p).await;
                            // tungstenite answers the close; let it go out.
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                while let Some(Ok(_)) = stream.next().await {}
                            }).await;
                            return "closed by client";
                        }
                        p
                    }
                    Some(Err(err)) => {
                        let (code, reason, outcome) = match &err {
                            WsError::Capacity(_) => (1009, "message too big", "message too big"),
                            WsError::Utf8(_) => (1007, "invalid UTF-8", "invalid UTF-8"),
                            WsError::Protocol(_) => (1002, "protocol error", "protocol error"),
                            _ => {
                                let cancel = owner.packet(PacketType::Cancel);
                                owner.send(cancel).await;
                                return "client gone";
                            }
                        };
                        tracing::info!(session = %owner.id, error = %err, "closing the WebSocket with {code}");
                        let _ = sink.send(ws::close(code, reason)).await;
                        let mut p = owner.packet(PacketType::Close);
                        p.code = Some(code);
                        p.body = Some(Bytes::from_static(reason.as_bytes()));
                        owner.send(p).await;
                        return outcome;
                    }
                    None => {
                        let cancel = owner.packet(PacketType::Cancel);
                        owner.send(cancel).await;
                        return "client gone";
                    }
                };
                owner.send(packet).await;
            }
            packet = inbox.recv() => {
                let Some(packet) = packet else { return "shutdown" };
                if !owner.accept(&packet) {
                    let _ = sink.send(ws::close(1011, "internal error")).await;
                    return "bad seq";
                }
                heard_owner = Instant::now();
                if let Some(more) = packet.credits {
                    credits = credits.saturating_add(more as usize);
                }
                match packet.kind() {
                    PacketType::Data | PacketType::Ping | PacketType::Pong | PacketType::Close => {
                        active = Instant::now();
                        let Some(message) = fragments.message_of(&packet) else { continue };
                        let closing = matches!(message, Message::Close(_));
                        let size = if packet.kind() == &PacketType::Data { message.len() } else { 0 };
                        if sink.send(message).await.is_err() {
                            let cancel = owner.packet(PacketType::Cancel);
                            owner.send(cancel).await;
                            return "client gone";
                        }
                        if !closing {
                            if size > 0 {
                                let mut credit = owner.packet(PacketType::Credit);
                                credit.credits = Some(u32::try_from(size).unwrap_or(u32::MAX));
                                owner.send(credit).await;
                            }
                            continue;
                        }
                        // Wait for the client's close (or give up).
                        let _ = tokio::time::timeout(Duration::from_secs(5), async {
                            while let Some(Ok(message)) = stream.next().await {
                                if matches!(message, Message::Close(_)) {
                                    break;
                                }
                            }
                        }).await;
                        return "closed by owner";
                    }
                    PacketType::Cancel | PacketType::Error => {
                        let condition = packet.condition.as_deref().unwrap_or("cancelled");
                        tracing::info!(session = %owner.id, condition, "owner ended the WebSocket");
                        let _ = sink.send(ws::close(1011, "upstream error")).await;
                        return "ended by owner";
                    }
                    _ => {}
                }
            }
            Ok(peer) = reconnects.recv() => {
                // Our owner (re)connected: a restarted proxy does not know
                // this session and answers the keep-alive with cancel.
                if owner.to.as_deref() == Some(peer.as_slice()) {
                    let packet = owner.packet(PacketType::KeepAlive);
                    owner.send(packet).await;
                }
            }
            _ = keep_alive.tick() => {
                if heard_owner.elapsed() > OWNER_EXPIRY {
                    let _ = sink.send(ws::close(1011, "upstream gone")).await;
                    return "owner expired";
                }
                if active.elapsed() > IDLE_TIMEOUT {
                    let _ = sink.send(ws::close(1001, "idle")).await;
                    let cancel = owner.packet(PacketType::Cancel);
                    owner.send(cancel).await;
                    return "idle";
                }
                let packet = owner.packet(PacketType::KeepAlive);
                owner.send(packet).await;
            }
        }
    }
}
