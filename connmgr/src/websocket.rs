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
//! Pushpin does); when it has none, the client is not read. Messages from
//! the owner wait in an [`Outbox`] (within the credits connmgr granted)
//! while the client reads, and their size goes back as credits once
//! written; a client that reads nothing for
//! [`holdfast_protocol::zhttp::STALL_TIMEOUT`] is closed. Pings are
//! answered where they arrive (tungstenite answers the client's; the
//! owner's reach the client, whose pongs go back), so each is answered
//! once. Messages over `--max-message-size` close the connection with
//! 1009, invalid UTF-8 in a text message with 1007, a frame length with its
//! top bit set with 1002. With
//! `--allow-compression`, clients offering permessage-deflate get it
//! ([`crate::deflate`]).

use crate::answer::plain;
use crate::shared::Shared;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use holdfast_protocol::zhttp::{is_hop_by_hop, Endpoint, Header, Packet, PacketType};
use holdfast_runtime::body::HttpBody as ResponseBody;
use holdfast_runtime::ws::{self, Outbox};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long the owner may take to accept or refuse the handshake.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection on which neither side said anything for this long is
/// closed (Pushpin's stream timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(1800);

/// How long the closing handshake may take once a close went out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers of the owner's 101 that connmgr writes itself.
const OWN_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];

/// Whether the request asks for a WebSocket.
pub fn is_upgrade(headers: &http::HeaderMap) -> bool {
    let has = |name: http::header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
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

/// Serves a WebSocket handshake: a ZHTTP session whose owner accepts or
/// refuses; on acceptance, the connection is upgraded and bridged.
pub async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    mut endpoint: Endpoint,
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
    let compress = shared
        .config
        .allow_compression
        .then(|| {
            crate::deflate::negotiate(
                req.headers()
                    .get_all("sec-websocket-extensions")
                    .iter()
                    .map(|v| v.as_bytes()),
            )
        })
        .flatten();
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let id = endpoint.id().to_owned();
    let mut inbox = shared.sockets.sessions().register(id.clone());
    // A message from the owner may go past the window by one message.
    endpoint.set_overshoot(shared.config.max_message_size);
    if shared.send_first(&mut endpoint, first).await.is_err() {
        shared.sockets.sessions().unregister(&id);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down.");
    }
    let answer = tokio::time::timeout(ACCEPT_TIMEOUT, owner_answer(&mut inbox, &mut endpoint))
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
        let resp = refused(&answer);
        tracing::info!(%peer, "{line} -> {} WebSocket refused", resp.status().as_u16());
        return resp;
    }
    if answer.credits.is_none() {
        // Pushpin's quirk, kept: a 101 without credits means a full buffer.
        endpoint.add_credits(shared.config.buffer_size);
    }
    let resp = accepted(&answer, &key, compress.as_ref());
    let upgrade = hyper::upgrade::on(&mut req);
    let tracker = shared.tracker.clone();
    // Built before the task: the task keeps the bridge, not its parts twice.
    let bridge = Bridge {
        shared,
        endpoint,
        inbox,
        outbox: Outbox::default(),
        fragments: ws::Assembler::default(),
        to_grant: 0,
        active: Instant::now(),
    };
    tracker.spawn(bridge_upgraded(
        bridge, upgrade, compress, line, peer, started,
    ));
    resp
}

/// The owner's answer to the handshake (data, error or cancel), its other
/// packets taken in; `None` when it broke the protocol or went away.
async fn owner_answer(
    inbox: &mut tokio::sync::mpsc::Receiver<Box<Packet>>,
    endpoint: &mut Endpoint,
) -> Option<Box<Packet>> {
    while let Some(packet) = inbox.recv().await {
        if let Err(err) = endpoint.receive(&packet, Instant::now()) {
            tracing::warn!(session = %endpoint.id(), "{err}");
            return None;
        }
        match packet.kind() {
            PacketType::Data | PacketType::Error | PacketType::Cancel => return Some(packet),
            _ => {}
        }
    }
    None
}

/// Refused: the owner's HTTP answer (data, or error `rejected` with a
/// response) goes to the client as it is.
fn refused(answer: &Packet) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(answer.code.unwrap_or(0))
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = answer
        .body
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"The WebSocket was refused.\n"));
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    copy_headers(answer, resp.headers_mut(), &["content-length"]);
    resp
}

/// The `101` for an accepted handshake: the owner's headers, the upgrade,
/// the accept key for the client's `key`, and the compression agreed.
fn accepted(
    answer: &Packet,
    key: &[u8],
    compress: Option<&crate::deflate::Agreement>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(answer, resp.headers_mut(), OWN_HEADERS);
    let headers = resp.headers_mut();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    if let Ok(accept) =
        HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(key))
    {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(agreement) = compress {
        if let Ok(value) = HeaderValue::from_str(&agreement.response()) {
            headers.insert("sec-websocket-extensions", value);
        }
    }
    resp
}

/// The connection once upgraded: bridged until either side ends, then
/// the session's line in the log.
async fn bridge_upgraded(
    mut bridge: Bridge,
    upgrade: hyper::upgrade::OnUpgrade,
    compress: Option<crate::deflate::Agreement>,
    line: String,
    peer: SocketAddr,
    started: Instant,
) {
    let outcome = match upgrade.await {
        Ok(upgraded) => {
            let _open = bridge
                .shared
                .metrics
                .open(crate::metrics::Transport::WebSocket);
            let max = bridge.shared.config.max_message_size;
            let config = Some(ws::config(max));
            let io = TokioIo::new(upgraded);
            // Making the stream is boxed: inline, its future (with the
            // socket in it) would size the task for the connection's life.
            if let Some(agreement) = compress {
                let io = crate::deflate::Deflated::new(io, max, agreement);
                let ws = Box::pin(WebSocketStream::from_raw_socket(io, Role::Server, config));
                bridge.run(ws.await).await
            } else {
                let ws = Box::pin(WebSocketStream::from_raw_socket(io, Role::Server, config));
                bridge.run(ws.await).await
            }
        }
        Err(err) => {
            tracing::debug!(session = %bridge.endpoint.id(), error = %err, "upgrade failed");
            let cancel = bridge.endpoint.cancel();
            bridge.finish((cancel, Next::End("upgrade failed"))).await;
            "upgrade failed"
        }
    };
    bridge
        .shared
        .sockets
        .sessions()
        .unregister(bridge.endpoint.id());
    tracing::info!(
        "{line} -> 101 {}ms peer={peer} {outcome}",
        started.elapsed().as_millis()
    );
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

/// One upgraded WebSocket and its ZHTTP session with the owner.
struct Bridge {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    inbox: mpsc::Receiver<Box<Packet>>,
    /// Messages from the owner on their way to the client.
    outbox: Outbox,
    /// A message from the owner arriving in fragments.
    fragments: ws::Assembler,
    /// Bytes written to the client and not yet given back as credits.
    to_grant: usize,
    /// When either side last said something (for the idle timeout).
    active: Instant,
}

/// Where the closing handshake stands.
enum Closing {
    Open,
    /// A close went (or is going) to the client; its answer, or
    /// [`CLOSE_TIMEOUT`], ends the session.
    Sent {
        since: Instant,
        /// Who closed, for the log.
        by: &'static str,
    },
}

/// What a step of the bridge leads to.
enum Next {
    Continue,
    /// The closing handshake started (by whom): let the close go out, then
    /// wait for the client's.
    Closing(&'static str),
    End(&'static str),
}

/// What a step of the bridge sends to the owner (if anything) before the
/// bridge goes on. Steps are plain functions and the packet is sent by
/// [`Bridge::finish`], so the bridge's task never holds room for a packet
/// while it waits (a held WebSocket pays for that room all its life).
type Step = (Option<Packet>, Next);

impl Bridge {
    /// Moves messages between the client and the owner until either ends.
    /// The stream is split before the loop's future is made, so that
    /// future keeps only the halves.
    fn run<S>(&mut self, ws: WebSocketStream<S>) -> impl Future<Output = &'static str> + Send + '_
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, stream) = ws.split();
        self.run_split(sink, stream)
    }

    async fn run_split<S>(
        &mut self,
        mut sink: SplitSink<WebSocketStream<S>, Message>,
        mut stream: SplitStream<WebSocketStream<S>>,
    ) -> &'static str
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut reconnects = self.shared.sockets.reconnects();
        let mut closing = Closing::Open;
        let timer = sleep_until(self.deadline(&closing));
        tokio::pin!(timer);
        loop {
            let open = matches!(closing, Closing::Open);
            // The client is read while the owner has room (and always once
            // closing, for the client's answering close).
            let read_client = !open || self.endpoint.can_send();
            let step = tokio::select! {
                message = stream.next(), if read_client => {
                    self.active = Instant::now();
                    match (message, &closing) {
                        (Some(Ok(message)), Closing::Open) => self.on_client_message(message),
                        (Some(Err(err)), Closing::Open) => self.client_error(err),
                        (None, Closing::Open) => (self.endpoint.cancel(), Next::End("client gone")),
                        // The client's answering close, or the end after it.
                        (Some(Ok(Message::Close(_))) | Some(Err(_)) | None, Closing::Sent { by, .. }) => {
                            (None, Next::End(by))
                        }
                        (Some(Ok(_)), Closing::Sent { .. }) => (None, Next::Continue),
                    }
                }
                packet = self.inbox.recv() => match packet {
                    Some(packet) if open => self.on_owner_packet(*packet),
                    Some(_) => (None, Next::Continue),
                    None => (None, Next::End("shutdown")),
                },
                written = self.outbox.write(&mut sink), if !self.outbox.is_idle() => match written {
                    Ok(bytes) => {
                        self.active = Instant::now();
                        (self.give_back(bytes), Next::Continue)
                    }
                    Err(err) => {
                        tracing::debug!(session = %self.endpoint.id(), error = %err, "write to the client failed");
                        (self.endpoint.cancel(), Next::End("client gone"))
                    }
                },
                Ok(peer) = reconnects.recv() => {
                    // Our owner (re)connected: a restarted proxy does not
                    // know this session and answers the keep-alive with cancel.
                    if self.endpoint.peer().map(str::as_bytes) == Some(peer.as_slice()) {
                        (Some(self.endpoint.packet(PacketType::KeepAlive)), Next::Continue)
                    } else {
                        (None, Next::Continue)
                    }
                }
                _ = &mut timer => {
                    let step = self.on_timer(&closing);
                    timer.as_mut().reset(self.deadline(&closing));
                    step
                }
            };
            let next = self.finish(step).await;
            match next {
                Next::Continue => {}
                Next::Closing(by) => {
                    if open {
                        closing = Closing::Sent {
                            since: Instant::now(),
                            by,
                        };
                        timer.as_mut().reset(self.deadline(&closing));
                    }
                }
                Next::End(outcome) => {
                    // Whatever is queued for the client (a close) goes out
                    // if it can, briefly.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                        while !self.outbox.is_idle() {
                            if self.outbox.write(&mut sink).await.is_err() {
                                return;
                            }
                        }
                    })
                    .await;
                    return outcome;
                }
            }
        }
    }

    /// Sends a step's packet, if it has one; then what the step leads to.
    fn finish(&mut self, (packet, next): Step) -> impl Future<Output = Next> + Send + '_ {
        let send = packet.map(|packet| self.shared.send(&mut self.endpoint, packet));
        async move {
            if let Some(send) = send {
                send.await;
            }
            next
        }
    }

    /// The next time the timer has something to check. The timer is moved
    /// only when it fires or the closing handshake starts, not per message
    /// (a timer-wheel update per delivery is a fan-out's cost): the other
    /// deadlines only move later, and a stall's is always past the
    /// endpoint's next one when it starts.
    fn deadline(&self, closing: &Closing) -> Instant {
        let mut at = self
            .endpoint
            .next_deadline()
            .min(self.active + IDLE_TIMEOUT);
        if let Some(stall) = self.outbox.stall_deadline() {
            at = at.min(stall);
        }
        if let Closing::Sent { since, .. } = closing {
            at = at.min(*since + CLOSE_TIMEOUT);
        }
        at
    }

    /// A message from the client, for the owner.
    fn on_client_message(&mut self, message: Message) -> Step {
        match message {
            // Answered here by tungstenite; the owner's pongs would be a
            // second answer.
            Message::Ping(_) | Message::Frame(_) => return (None, Next::Continue),
            Message::Close(_) => {
                let mut p = self.endpoint.packet(PacketType::Data);
                ws::fill_packet(&mut p, message);
                // tungstenite answers the close; the read side sees the end.
                return (Some(p), Next::Closing("closed by client"));
            }
            _ => {}
        }
        self.endpoint.spend(ws::credit_of(&message));
        let mut p = self.endpoint.packet(PacketType::Data);
        ws::fill_packet(&mut p, message);
        (Some(p), Next::Continue)
    }

    /// The client broke the protocol (or went away).
    fn client_error(&mut self, err: WsError) -> Step {
        let (code, reason, outcome) = match &err {
            // RFC 6455 5.2: a 64-bit length's top bit must be 0; that is
            // a broken frame, not a big message.
            WsError::Capacity(CapacityError::MessageTooLong { size, .. })
                if *size as u64 > i64::MAX as u64 =>
            {
                (1002, "protocol error", "protocol error")
            }
            WsError::Capacity(_) => (1009, "message too big", "message too big"),
            WsError::Utf8(_) => (1007, "invalid UTF-8", "invalid UTF-8"),
            WsError::Protocol(_) => (1002, "protocol error", "protocol error"),
            _ => {
                tracing::debug!(session = %self.endpoint.id(), error = %err, "client connection ended");
                return (self.endpoint.cancel(), Next::End("client gone"));
            }
        };
        tracing::info!(session = %self.endpoint.id(), error = %err, "closing the WebSocket with {code}");
        self.outbox.push(ws::close(code, reason));
        let mut p = self.endpoint.packet(PacketType::Close);
        p.code = Some(code);
        p.body = Some(Bytes::from_static(reason.as_bytes()));
        (Some(p), Next::End(outcome))
    }

    /// A packet from the owner.
    fn on_owner_packet(&mut self, packet: Packet) -> Step {
        if let Err(err) = self.endpoint.receive(&packet, Instant::now()) {
            tracing::warn!(session = %self.endpoint.id(), "{err}");
            self.outbox.push(ws::close(1011, "internal error"));
            return (self.endpoint.cancel(), Next::End("protocol error"));
        }
        let next = match packet.kind() {
            PacketType::Data | PacketType::Ping | PacketType::Pong | PacketType::Close => {
                self.active = Instant::now();
                let Some(message) = self.fragments.message_of(&packet) else {
                    return (None, Next::Continue);
                };
                let closing = matches!(message, Message::Close(_));
                self.outbox.push(message);
                if closing {
                    Next::Closing("closed by owner")
                } else {
                    Next::Continue
                }
            }
            PacketType::Cancel | PacketType::Error => {
                let condition = packet.condition.as_deref().unwrap_or("cancelled");
                tracing::info!(session = %self.endpoint.id(), condition, "owner ended the WebSocket");
                self.outbox.push(ws::close(1011, "upstream error"));
                Next::End("ended by owner")
            }
            _ => Next::Continue,
        };
        (None, next)
    }

    /// Gives written bytes back to the owner, in half-window batches (or
    /// at once when nothing more waits), not a packet per message.
    fn give_back(&mut self, bytes: usize) -> Option<Packet> {
        self.to_grant += bytes;
        let batch = (self.shared.config.buffer_size / 2).max(1);
        if self.to_grant >= batch || (self.outbox.is_empty() && self.to_grant > 0) {
            let n = std::mem::take(&mut self.to_grant);
            return self.endpoint.grant(n);
        }
        None
    }

    fn on_timer(&mut self, closing: &Closing) -> Step {
        let now = Instant::now();
        if let Closing::Sent { since, by } = closing {
            if now >= *since + CLOSE_TIMEOUT {
                return (None, Next::End(by));
            }
        }
        if self.endpoint.expired(now) {
            tracing::info!(session = %self.endpoint.id(), "owner silent for {}s", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
            self.outbox.push(ws::close(1011, "upstream gone"));
            return (None, Next::End("owner expired"));
        }
        if self.outbox.stall_deadline().is_some_and(|at| now >= at) {
            tracing::info!(
                session = %self.endpoint.id(),
                queued = self.outbox.len(),
                "client read nothing for {}s: closing",
                holdfast_protocol::zhttp::STALL_TIMEOUT.as_secs()
            );
            return (self.endpoint.cancel(), Next::End("client stalled"));
        }
        if now >= self.active + IDLE_TIMEOUT {
            self.outbox.push(ws::close(1001, "idle"));
            return (self.endpoint.cancel(), Next::End("idle"));
        }
        if self.endpoint.keep_alive_due(now) {
            return (
                Some(self.endpoint.packet(PacketType::KeepAlive)),
                Next::Continue,
            );
        }
        (None, Next::Continue)
    }
}
