//! The client's side of a proxied WebSocket: whatever is for the client
//! (the origin's messages, publishes, the origin's timed messages, pongs,
//! closes) waits in the session's queue and goes to connmgr within the
//! credits connmgr granted; while it waits, the session takes nothing more
//! for the client (it stops reading the origin, leaves publishes queued),
//! so a slow client slows its sources instead of growing a buffer.

use super::{ClientClose, Session};
use bytes::Bytes;
use holdfast_protocol::zhttp::{Packet, PacketType, STALL_TIMEOUT};
use std::collections::VecDeque;
use tokio::time::Instant;

impl Session {
    /// Queues a WebSocket packet for the client (data, ping, pong, close);
    /// [`Session::flush_to_client`] sends it within connmgr's credits.
    pub(super) fn queue_for_client(&mut self, packet: Packet) {
        if *packet.kind() == PacketType::Close {
            self.client_close = ClientClose::Answered;
        }
        self.to_client.push_back(packet);
    }

    /// At a WebSocket's end: a client that closed first gets its close
    /// echoed (RFC 6455 5.5.1) if nothing answered it yet. Holdfast's
    /// connmgr answers a client's close itself; Pushpin's condure waits
    /// for the owner's.
    pub(super) fn answer_client_close(&mut self) {
        if let ClientClose::Received(code) = self.client_close {
            let mut p = self.packet(PacketType::Close);
            p.code = code;
            self.queue_for_client(p);
        }
    }

    /// Queues a WebSocket close for the client.
    pub(super) fn close_client(&mut self, code: u16, reason: &str) {
        let mut p = self.packet(PacketType::Close);
        p.code = Some(code);
        p.body = Some(Bytes::copy_from_slice(reason.as_bytes()));
        self.queue_for_client(p);
    }

    /// At a WebSocket's end: sends what still waits for the client (the
    /// origin's last messages, a close) as connmgr's credits allow, for
    /// as long as the client keeps reading.
    pub(super) async fn drain_to_client(&mut self) {
        self.answer_client_close();
        let deadline = Instant::now() + STALL_TIMEOUT;
        loop {
            self.flush_to_client().await;
            if self.to_client.is_empty() {
                return;
            }
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(packet)) => {
                    let ended = matches!(packet.kind(), PacketType::Cancel | PacketType::Error);
                    if !self.take_in(&packet) || ended {
                        return;
                    }
                }
                _ => {
                    tracing::debug!(session = %self.endpoint.id(), queued = self.to_client.len(), "client took nothing more; session ends");
                    return;
                }
            }
        }
    }

    /// Sends queued packets for the client while connmgr has credit (a
    /// message may go past what is left, see
    /// [`holdfast_protocol::zhttp::Endpoint::spend`]).
    pub(super) async fn flush_to_client(&mut self) {
        while let Some(front) = self.to_client.front() {
            let cost = ws_credit(front);
            if cost > 0 && !self.endpoint.can_send() {
                return;
            }
            let Some(packet) = self.to_client.pop_front() else {
                return;
            };
            self.endpoint.spend(cost);
            self.send(packet).await;
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
