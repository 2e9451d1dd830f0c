//! The SockJS WebSocket transport: the session's frames as text messages
//! within connmgr's credits, the client's messages (a JSON array or
//! string each) passed on; a heartbeat when the session has nothing to
//! say.

use super::frames::{self, Frame};
use super::registry::SockSession;
use super::{session_for, HEARTBEAT};
use crate::prepare::Prepared;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use holdfast_protocol::zhttp::{Packet, PacketType};
use tokio::time::{sleep_until, Instant};

/// Credits offered to connmgr for a WebSocket client's messages.
const WS_WINDOW: usize = 64 * 1024;

/// The WebSocket transport: the session's frames as text messages, the
/// client's messages (a JSON array or string each) passed on.
pub(super) async fn serve(zhttp: &mut Zhttp, prepared: &Prepared, key: &str) -> Ended {
    let session = session_for(zhttp, prepared, key);
    let mut accept = zhttp.packet(PacketType::Data);
    accept.code = Some(101);
    accept.reason = Some("Switching Protocols".into());
    accept.headers = Some(Vec::new());
    accept.credits = Some(zhttp.endpoint.offer(WS_WINDOW));
    zhttp.send(accept).await;
    if !session.attach() {
        let frame = Frame::Close(2010, "Another connection still open".into());
        text(zhttp, frame.encode()).await;
        close(zhttp, 3000).await;
        return (101, "sockjs busy");
    }
    let outcome = bridge(zhttp, &session).await;
    session.detach();
    (101, outcome)
}

/// What happened next.
enum Event {
    /// A frame of the session for the client.
    Frame(Frame),
    /// The session had nothing to say for a while.
    Heartbeat,
    /// A packet from connmgr (`None`: shutting down).
    Packet(Option<Box<Packet>>),
    /// The session's keep-alive or expiry is due.
    Timer,
}

/// The session's frames to the client and its messages to the session,
/// until either ends.
async fn bridge(zhttp: &mut Zhttp, session: &SockSession) -> &'static str {
    let mut heartbeat = Instant::now() + HEARTBEAT;
    loop {
        let can_send = zhttp.endpoint.can_send();
        let deadline = zhttp.endpoint.next_deadline();
        let event = tokio::select! {
            frame = session.next_frame(), if can_send => Event::Frame(frame),
            _ = sleep_until(heartbeat), if can_send => Event::Heartbeat,
            packet = zhttp.inbox.recv() => Event::Packet(packet),
            _ = sleep_until(deadline) => Event::Timer,
        };
        let end = match event {
            Event::Frame(frame) => {
                heartbeat = Instant::now() + HEARTBEAT;
                let closing = matches!(frame, Frame::Close(..));
                text(zhttp, frame.encode()).await;
                if closing {
                    close(zhttp, 3000).await;
                    return "sockjs session closed";
                }
                None
            }
            Event::Heartbeat => {
                heartbeat = Instant::now() + HEARTBEAT;
                text(zhttp, Frame::Heartbeat.encode()).await;
                None
            }
            Event::Packet(None) => Some("shutdown"),
            Event::Packet(Some(packet)) => on_packet(zhttp, session, *packet).await,
            Event::Timer => (!zhttp.on_timer().await).then_some("connmgr gone"),
        };
        if let Some(outcome) = end {
            return outcome;
        }
    }
}

/// A packet from connmgr: the client's messages for the session, a ping
/// answered, or the client's close; `Some` ends the connection.
async fn on_packet(
    zhttp: &mut Zhttp,
    session: &SockSession,
    packet: Packet,
) -> Option<&'static str> {
    if !zhttp.take_in(&packet) {
        return Some("bad seq");
    }
    match packet.kind() {
        PacketType::Data => {
            let body = packet.body.clone().unwrap_or_default();
            match frames::messages(&body, true) {
                Ok(messages) => {
                    if !session.send(messages).await {
                        return Some("sockjs session closed");
                    }
                }
                // Not JSON: SockJS servers drop the connection.
                Err(_) => {
                    close(zhttp, 1002).await;
                    session.close_by_client();
                    return Some("sockjs bad message");
                }
            }
            zhttp.give_back(body.len()).await;
            None
        }
        PacketType::Ping => {
            let mut pong = zhttp.packet(PacketType::Pong);
            pong.body = packet.body.clone();
            zhttp.send(pong).await;
            None
        }
        PacketType::Close => {
            session.close_by_client();
            close(zhttp, packet.code.unwrap_or(1000)).await;
            Some("closed by client")
        }
        PacketType::Cancel | PacketType::Error => Some("client disconnected"),
        _ => None,
    }
}

/// Sends a text message (its credits spent).
async fn text(zhttp: &mut Zhttp, text: String) {
    zhttp.endpoint.spend(text.len());
    let mut packet = zhttp.packet(PacketType::Data);
    packet.content_type = Some("text".into());
    packet.body = Some(Bytes::from(text));
    zhttp.send(packet).await;
}

/// Closes the client's WebSocket with `code`.
async fn close(zhttp: &mut Zhttp, code: u16) {
    let mut packet = zhttp.packet(PacketType::Close);
    packet.code = Some(code);
    zhttp.send(packet).await;
}
