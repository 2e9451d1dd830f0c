//! The client's side of a proxied WebSocket: whatever is for the client
//! (the origin's messages, publishes, the origin's timed messages, pongs,
//! closes) waits in a queue and goes to connmgr within the credits
//! connmgr granted; while it waits, the session takes nothing more for
//! the client (it stops reading the origin, leaves publishes queued), so
//! a slow client slows its sources instead of growing a buffer. Also
//! where the closing handshake stands with the client.

use crate::session::zhttp::{Sending, Zhttp};
use bytes::Bytes;
use holdfast_protocol::zhttp::{Packet, PacketType, STALL_TIMEOUT};
use std::collections::VecDeque;
use tokio::time::Instant;

/// A WebSocket's closing handshake, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientClose {
    /// No close either way yet.
    Open,
    /// The client closed (with this code, if any) and has no answer yet:
    /// a connection manager that waits for the owner's close (Pushpin's
    /// condure) keeps the client waiting until one comes.
    Received(Option<u16>),
    /// A close for the client is queued or sent.
    Answered,
}

/// The client of a WebSocket session: its ZHTTP side and what waits for it.
pub(crate) struct WsClient<'a> {
    /// The session's ZHTTP side.
    pub zhttp: &'a mut Zhttp,
    /// Packets for the client waiting for connmgr's credits.
    to_client: VecDeque<Packet>,
    /// Where the closing handshake stands.
    close: ClientClose,
}

impl<'a> WsClient<'a> {
    /// A client with nothing queued.
    pub fn new(zhttp: &'a mut Zhttp) -> WsClient<'a> {
        WsClient {
            zhttp,
            to_client: VecDeque::new(),
            close: ClientClose::Open,
        }
    }

    /// Nothing waits for the client: the session may take more for it.
    pub fn is_ready(&self) -> bool {
        self.to_client.is_empty()
    }

    /// A packet of the session (see [`Zhttp::packet`]).
    pub fn packet(&self, kind: PacketType) -> Packet {
        self.zhttp.packet(kind)
    }

    /// Queues a WebSocket packet for the client (data, ping, pong, close);
    /// [`WsClient::flush`] sends it within connmgr's credits.
    pub fn queue(&mut self, packet: Packet) {
        if *packet.kind() == PacketType::Close {
            self.close = ClientClose::Answered;
        }
        self.to_client.push_back(packet);
    }

    /// Queues a WebSocket close for the client.
    pub fn close(&mut self, code: u16, reason: &str) {
        let mut p = self.packet(PacketType::Close);
        p.code = Some(code);
        p.body = Some(Bytes::copy_from_slice(reason.as_bytes()));
        self.queue(p);
    }

    /// Tells connmgr the origin failed (it closes the client with 1011).
    pub fn origin_failed(&mut self) {
        let mut p = self.packet(PacketType::Error);
        p.condition = Some("remote-connection-failed".into());
        self.queue(p);
    }

    /// Checks a packet from connmgr and takes its credits (see
    /// [`Zhttp::take_in`]), noting a client's close.
    pub fn take_in(&mut self, packet: &Packet) -> bool {
        if !self.zhttp.take_in(packet) {
            return false;
        }
        if *packet.kind() == PacketType::Close && self.close == ClientClose::Open {
            self.close = ClientClose::Received(packet.code);
        }
        true
    }

    /// Answers the client's ping here, once (a connection manager that
    /// does not answer pings, as Pushpin's condure, forwards them), and
    /// gives back its payload's credit. Not an async fn: the pong is
    /// queued before the send, so a session's future keeps no room for it.
    pub fn answer_ping(&mut self, ping: &Packet) -> Sending<'_> {
        let mut pong = self.packet(PacketType::Pong);
        pong.body = ping.body.clone();
        self.queue(pong);
        let size = ping.body.as_ref().map_or(0, Bytes::len);
        self.zhttp.give_back(size)
    }

    /// At a WebSocket's end: a client that closed first gets its close
    /// echoed (RFC 6455 5.5.1) if nothing answered it yet. Holdfast's
    /// connmgr answers a client's close itself; Pushpin's condure waits
    /// for the owner's.
    fn answer_close(&mut self) {
        if let ClientClose::Received(code) = self.close {
            let mut p = self.packet(PacketType::Close);
            p.code = code;
            self.queue(p);
        }
    }

    /// At a WebSocket's end: sends what still waits for the client (the
    /// origin's last messages, a close) as connmgr's credits allow, for
    /// as long as the client keeps reading.
    pub async fn drain(&mut self) {
        self.answer_close();
        let deadline = Instant::now() + STALL_TIMEOUT;
        loop {
            self.flush().await;
            if self.to_client.is_empty() {
                return;
            }
            match tokio::time::timeout_at(deadline, self.zhttp.inbox.recv()).await {
                Ok(Some(packet)) => {
                    let ended = matches!(packet.kind(), PacketType::Cancel | PacketType::Error);
                    if !self.take_in(&packet) || ended {
                        return;
                    }
                }
                _ => {
                    tracing::debug!(session = %self.zhttp.id(), queued = self.to_client.len(), "client took nothing more; session ends");
                    return;
                }
            }
        }
    }

    /// Sends queued packets for the client while connmgr has credit (a
    /// message may go past what is left, see
    /// [`holdfast_protocol::zhttp::Endpoint::spend`]).
    pub async fn flush(&mut self) {
        while let Some(front) = self.to_client.front() {
            let cost = ws_credit(front);
            if cost > 0 && !self.zhttp.endpoint.can_send() {
                return;
            }
            let Some(packet) = self.to_client.pop_front() else {
                return;
            };
            self.zhttp.endpoint.spend(cost);
            self.zhttp.send(packet).await;
        }
        if self.to_client.capacity() > 0 {
            // Emptied: its room (440 bytes a packet) goes back rather than
            // staying with a connection that may be idle for hours.
            self.to_client = VecDeque::new();
        }
    }
}

/// The credits a WebSocket packet for connmgr costs: its payload, for data,
/// pings and pongs.
fn ws_credit(packet: &Packet) -> usize {
    match packet.kind() {
        PacketType::Data | PacketType::Ping | PacketType::Pong => {
            packet.body.as_ref().map_or(0, Bytes::len)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_messages_cost_credits() {
        let mut data = Packet::new(PacketType::Data, "connmgr", "1", 0);
        data.body = Some(Bytes::from_static(b"hello"));
        assert_eq!(ws_credit(&data), 5);
        let mut close = Packet::new(PacketType::Close, "connmgr", "1", 0);
        close.body = Some(Bytes::from_static(b"bye"));
        assert_eq!(ws_credit(&close), 0);
    }
}
