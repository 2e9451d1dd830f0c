//! One SockJS session: the frames waiting for its client, and the task
//! that stands for the client toward the origin. The task is the local
//! ZHTTP peer of a WebSocket session of this proxy (as connmgr is for
//! real WebSocket clients): it opens that session with the client's first
//! request, takes its messages into the queue the transports drain, and
//! passes the client's messages on, both ways within ZHTTP credits. The
//! session ends when its client has had no receiving connection for
//! [`DISCONNECT_DELAY`], or either side closes; its close frame is kept a
//! little longer for late requests.

use super::registry::{Opener, Opening, SockSession};
use crate::session::ws::start_local;
use crate::shared::Shared;
use bytes::Bytes;
use holdfast_protocol::zhttp::{Endpoint, Ext, Packet, PacketType};
use holdfast_runtime::ws::Assembler;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::Message;

/// How long a session waits for its client's next receiving connection.
pub const DISCONNECT_DELAY: Duration = Duration::from_secs(5);

/// How long a closed session still answers with its close frame.
const CLOSED_LINGER: Duration = Duration::from_secs(5);

/// Message bytes from the origin that may wait for the client.
const WINDOW: usize = 64 * 1024;

/// The session `key`, started with `opener` if it does not live: a task
/// stands for its client toward the origin.
pub fn session(
    shared: &Arc<Shared>,
    key: &str,
    opener: impl FnOnce() -> Opener,
) -> Arc<SockSession> {
    let (session, incoming, n) = shared.sockjs.get_or_insert(key);
    if let Some(incoming) = incoming {
        let peer = Peer {
            shared: shared.clone(),
            key: key.to_owned(),
            session: session.clone(),
            incoming,
            endpoint: Endpoint::new(Arc::from(PEER), format!("sockjs-{n}"), Instant::now()),
            assembler: Assembler::default(),
        };
        shared.tracker.spawn(peer.run(opener()));
    }
    session
}

/// The `from` of SockJS sessions' packets.
const PEER: &str = "sockjs";

/// The task standing for a SockJS client toward the origin.
struct Peer {
    shared: Arc<Shared>,
    key: String,
    session: Arc<SockSession>,
    incoming: mpsc::Receiver<Vec<String>>,
    endpoint: Endpoint,
    assembler: Assembler,
}

impl Peer {
    async fn run(mut self, opener: Opener) {
        let (to_peer, mut from_session) = mpsc::channel(64);
        // The session may send one whole message past the window, as to
        // connmgr.
        self.endpoint.set_overshoot(self.shared.max_message_size);
        let mut first = self.endpoint.packet(PacketType::Data);
        first.method = Some("GET".into());
        first.uri = Some(opener.uri);
        first.headers = Some(opener.headers);
        first.credits = Some(self.endpoint.offer(WINDOW));
        first.stream = true;
        first.peer_address = opener.peer;
        first.ext = Some(Ext { multi: true });
        self.endpoint.stamp_first(&mut first, Instant::now());
        if let Err(err) = start_local(&self.shared, first, PEER, to_peer, opener.route) {
            tracing::warn!(session = %self.key, "SockJS session not started: {err}");
            self.session.close(1011, "Server error");
        }
        let (code, reason) = self.drive(&mut from_session).await;
        self.session.close(code, &reason);
        // Late requests still learn how it ended, for a while.
        tokio::time::sleep(CLOSED_LINGER).await;
        self.shared.sockjs.remove(&self.key);
    }

    /// Until the session ends; how it ended.
    async fn drive(&mut self, from_session: &mut mpsc::Receiver<Packet>) -> (u16, String) {
        let drained = self.session.drained.clone();
        let session = self.session.clone();
        loop {
            // Registered before looking, so a change in between wakes it.
            let changed = session.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let idle = self.session.lock().idle_since;
            let idle_deadline = idle.map(|since| since + DISCONNECT_DELAY);
            if idle_deadline.is_some_and(|d| d <= now) {
                self.send(PacketType::Close, Some(1001), "").await;
                return (1001, "Client went away".into());
            }
            let open = self.session.lock().opening != Opening::Pending;
            let can_send = open && self.endpoint.can_send();
            let deadline = self
                .endpoint
                .next_deadline()
                .min(idle_deadline.unwrap_or(now + DISCONNECT_DELAY));
            tokio::select! {
                packet = from_session.recv() => {
                    let Some(packet) = packet else {
                        return (1011, "Server error".into());
                    };
                    if let Some(end) = self.on_packet(packet).await {
                        return end;
                    }
                }
                messages = self.incoming.recv(), if can_send => {
                    let Some(messages) = messages else { continue };
                    for text in messages {
                        self.endpoint.spend(text.len());
                        let mut packet = self.endpoint.packet(PacketType::Data);
                        packet.content_type = Some("text".into());
                        packet.body = Some(Bytes::from(text));
                        self.deliver(packet).await;
                    }
                }
                n = drained.take() => {
                    if let Some(credit) = self.endpoint.grant(n) {
                        self.deliver(credit).await;
                    }
                }
                _ = &mut changed => {
                    // A receiver came or went, or the client closed.
                    let closed = session.lock().closed.clone();
                    if let Some((code, reason)) = closed {
                        self.send(PacketType::Close, Some(code), &reason).await;
                        return (code, reason);
                    }
                }
                _ = sleep_until(deadline) => {
                    let now = Instant::now();
                    if self.endpoint.expired(now) {
                        return (1011, "Server error".into());
                    }
                    if self.endpoint.keep_alive_due(now) {
                        let packet = self.endpoint.packet(PacketType::KeepAlive);
                        self.deliver(packet).await;
                    }
                }
            }
        }
    }

    /// A packet from the origin side; `Some` when the session is over.
    async fn on_packet(&mut self, packet: Packet) -> Option<(u16, String)> {
        if let Err(err) = self.endpoint.receive(&packet, Instant::now()) {
            tracing::warn!(session = %self.key, "SockJS session: {err}");
            return Some((1011, "Server error".into()));
        }
        match packet.kind() {
            PacketType::Data if packet.code.is_some() => {
                let code = packet.code.unwrap_or(0);
                if code == 101 {
                    self.session.lock().opening = Opening::Open;
                    self.session.changed.notify_waiters();
                    return None;
                }
                tracing::info!(session = %self.key, code, "SockJS session refused by the origin");
                return Some((1011, format!("The origin refused the session ({code})")));
            }
            PacketType::Data => {
                if let Some(message) = self.assembler.message_of(&packet) {
                    let text = match message {
                        Message::Text(text) => text.to_string(),
                        // SockJS carries text only.
                        Message::Binary(data) => String::from_utf8_lossy(&data).into_owned(),
                        _ => return None,
                    };
                    self.session.lock().queue.push_back(text);
                    self.session.changed.notify_waiters();
                }
            }
            PacketType::Ping => {
                let mut pong = self.endpoint.packet(PacketType::Pong);
                pong.body = packet.body.clone();
                self.deliver(pong).await;
            }
            PacketType::Close => {
                let code = packet.code.unwrap_or(1000);
                let reason =
                    String::from_utf8_lossy(&packet.body.clone().unwrap_or_default()).into_owned();
                self.send(PacketType::Close, Some(code), &reason).await;
                return Some((code, reason));
            }
            PacketType::Cancel | PacketType::Error => {
                return Some((1011, "Server error".into()));
            }
            _ => {}
        }
        None
    }

    async fn send(&mut self, kind: PacketType, code: Option<u16>, reason: &str) {
        let mut packet = self.endpoint.packet(kind);
        packet.code = code;
        packet.body = Some(Bytes::copy_from_slice(reason.as_bytes()));
        self.deliver(packet).await;
    }

    /// Numbers `packet` and hands it to the session.
    async fn deliver(&mut self, mut packet: Packet) {
        if self.endpoint.stamp(&mut packet, Instant::now()).is_none() {
            return;
        }
        let _ = self.shared.sockets.sessions().deliver(packet, true).await;
    }
}
