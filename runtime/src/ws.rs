//! WebSocket messages as ZHTTP carries them: a message may arrive in
//! fragments (data packets with `more`), `content-type: binary` marks binary
//! messages, and anything else is text (sent as binary when it is not valid
//! UTF-8, rather than dropped). Shared by connmgr (toward clients) and the
//! proxy (toward origins), as is the [`Outbox`] that writes messages to a
//! WebSocket peer without holding up the session that feeds it.

use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use holdfast_protocol::zhttp::{Packet, PacketType, STALL_TIMEOUT};
use std::collections::VecDeque;
use std::task::{Context, Poll};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// Puts fragmented messages back together.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<(bool, Vec<u8>)>,
}

impl Assembler {
    /// Adds a data packet; the whole message once its last fragment is in.
    pub fn push(&mut self, packet: &Packet) -> Option<Message> {
        let body = packet.body.clone().unwrap_or_default();
        let binary = packet.content_type.as_deref() == Some("binary");
        let (binary, data) = match self.partial.take() {
            Some((first_binary, mut buf)) => {
                buf.extend_from_slice(&body);
                (first_binary, Bytes::from(buf))
            }
            None => (binary, body),
        };
        if packet.more {
            self.partial = Some((binary, data.to_vec()));
            return None;
        }
        Some(message(binary, data))
    }
}

impl Assembler {
    /// The WebSocket message a data, ping, pong or close packet stands for
    /// (a data packet's message once its last fragment is in).
    pub fn message_of(&mut self, packet: &Packet) -> Option<Message> {
        let body = || packet.body.clone().unwrap_or_default();
        match packet.kind() {
            PacketType::Data => self.push(packet),
            PacketType::Ping => Some(Message::Ping(body())),
            PacketType::Pong => Some(Message::Pong(body())),
            PacketType::Close => {
                let reason = body();
                Some(close(
                    packet.code.unwrap_or(1000),
                    &String::from_utf8_lossy(&reason),
                ))
            }
            _ => None,
        }
    }
}

/// Fills `packet` (kind, content type, body, close code) for a message
/// from a WebSocket peer; false for raw frames, which carry nothing.
pub fn fill_packet(packet: &mut Packet, message: Message) -> bool {
    match message {
        Message::Text(text) => {
            packet.content_type = Some("text".into());
            packet.body = Some(Bytes::copy_from_slice(text.as_bytes()));
        }
        Message::Binary(data) => {
            packet.content_type = Some("binary".into());
            packet.body = Some(data);
        }
        Message::Ping(data) => {
            packet.kind = PacketType::Ping;
            packet.body = Some(data);
        }
        Message::Pong(data) => {
            packet.kind = PacketType::Pong;
            packet.body = Some(data);
        }
        Message::Close(frame) => {
            packet.kind = PacketType::Close;
            if let Some(frame) = frame {
                packet.code = Some(frame.code.into());
                packet.body = Some(Bytes::copy_from_slice(frame.reason.as_bytes()));
            }
        }
        Message::Frame(_) => return false,
    }
    true
}

/// A text or binary message of `data`.
pub fn message(binary: bool, data: Bytes) -> Message {
    if binary {
        return Message::Binary(data);
    }
    match String::from_utf8(data.to_vec()) {
        Ok(text) => Message::Text(text.into()),
        Err(_) => Message::Binary(data),
    }
}

/// Messages on their way to a WebSocket peer. The session task queues
/// what its ZHTTP peer sent (bounded by the credits it granted) and keeps
/// taking packets while [`Outbox::write`] hands the queue to the socket as
/// fast as the peer reads; what was handed over is given back as credits,
/// so a slow reader slows its writer and nothing is dropped.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Message>,
    /// Something was handed to the sink and not yet flushed.
    unflushed: bool,
    /// When the queue last moved (or filled from empty).
    progress: Option<Instant>,
}

impl Outbox {
    /// Queues `message`.
    pub fn push(&mut self, message: Message) {
        if self.is_idle() {
            self.progress = Some(Instant::now());
        }
        self.queue.push_back(message);
    }

    /// Nothing queued and nothing left to flush.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.unflushed
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// When the peer will have taken nothing for [`STALL_TIMEOUT`] while
    /// something waits for it, if something does.
    pub fn stall_deadline(&self) -> Option<Instant> {
        (!self.is_idle())
            .then_some(self.progress)
            .flatten()
            .map(|at| at + STALL_TIMEOUT)
    }

    /// Hands queued messages to `sink` while it takes them, then flushes;
    /// waits until something moved. Returns the credit-worthy bytes handed
    /// over (message, ping and pong payloads). Cancel-safe: a message
    /// leaves the queue only as the sink takes it.
    pub async fn write<S>(&mut self, sink: &mut S) -> Result<usize, S::Error>
    where
        S: Sink<Message> + Unpin,
    {
        std::future::poll_fn(|cx| self.poll_write(sink, cx)).await
    }

    fn poll_write<S>(&mut self, sink: &mut S, cx: &mut Context<'_>) -> Poll<Result<usize, S::Error>>
    where
        S: Sink<Message> + Unpin,
    {
        let mut credit = 0;
        let mut moved = false;
        while !self.queue.is_empty() {
            match sink.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => break,
            }
            let Some(message) = self.queue.pop_front() else {
                break;
            };
            credit += credit_of(&message);
            sink.start_send_unpin(message)?;
            self.unflushed = true;
            moved = true;
        }
        if self.unflushed {
            match sink.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    moved = true;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if !moved {
            return Poll::Pending;
        }
        self.progress = Some(Instant::now());
        Poll::Ready(Ok(credit))
    }
}

/// The bytes a message costs in ZHTTP credits.
pub fn credit_of(message: &Message) -> usize {
    match message {
        Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_) => {
            message.len()
        }
        Message::Close(_) | Message::Frame(_) => 0,
    }
}

/// Read buffer per connection, and the most one read takes. tungstenite's
/// default (128 KiB, allocated up front and kept) would make a held
/// WebSocket cost more than 128 KiB; the buffer is kept while the
/// connection is idle, so it is sized for the small messages held
/// connections carry (a larger message is read in several reads into room
/// reserved for it as a whole).
const READ_BUFFER: usize = 2048;

/// The configuration for every WebSocket: messages up to `max_message`,
/// a small read buffer, writes sent at once (no write buffering).
pub fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
}

/// A close frame.
pub fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes `room` messages, then waits until given more.
    #[derive(Default)]
    struct Gate {
        room: usize,
        taken: Vec<Message>,
        waker: Option<std::task::Waker>,
    }

    impl Sink<Message> for Gate {
        type Error = std::io::Error;
        fn poll_ready(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            if self.room == 0 {
                self.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn start_send(
            mut self: std::pin::Pin<&mut Self>,
            item: Message,
        ) -> Result<(), Self::Error> {
            self.room -= 1;
            self.taken.push(item);
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_outbox_moves_as_the_peer_reads_and_knows_when_it_stalls() {
        let mut outbox = Outbox::default();
        assert!(outbox.is_idle() && outbox.stall_deadline().is_none());
        for m in ["one", "two", "three"] {
            outbox.push(Message::Text(m.into()));
        }
        outbox.push(Message::Ping(Bytes::from_static(b"pi")));
        outbox.push(close(1000, "long reason"));
        let started = Instant::now();
        assert_eq!(outbox.stall_deadline(), Some(started + STALL_TIMEOUT));
        let mut gate = Gate {
            room: 2,
            ..Gate::default()
        };
        assert_eq!(outbox.write(&mut gate).await.unwrap(), 6);
        // The peer takes nothing more: no progress, nothing lost.
        let stuck = tokio::time::timeout(STALL_TIMEOUT, outbox.write(&mut gate)).await;
        assert!(stuck.is_err());
        assert_eq!(outbox.len(), 3);
        assert!(Instant::now() >= outbox.stall_deadline().unwrap());
        gate.room = 10;
        assert_eq!(outbox.write(&mut gate).await.unwrap(), 5 + 2);
        assert!(outbox.is_idle());
        let texts: Vec<_> = gate.taken.iter().map(|m| m.to_string()).collect();
        assert_eq!(texts[..3], ["one", "two", "three"]);
    }

    fn data(body: &'static [u8], more: bool, binary: bool) -> Packet {
        let mut p = Packet::new(PacketType::Data, "p", "s", 0);
        p.body = Some(Bytes::from_static(body));
        p.more = more;
        p.content_type = binary.then(|| "binary".to_owned());
        p
    }

    #[test]
    fn fragments_join_and_keep_the_first_type() {
        let mut a = Assembler::default();
        assert_eq!(a.push(&data(b"he", true, false)), None);
        assert_eq!(
            a.push(&data(b"llo", false, true)),
            Some(Message::Text("hello".into()))
        );
        assert_eq!(
            a.push(&data(b"\x00", false, true)),
            Some(Message::Binary(Bytes::from_static(b"\x00")))
        );
        let mut close_packet = Packet::new(PacketType::Close, "p", "s", 0);
        close_packet.code = Some(4000);
        close_packet.body = Some(Bytes::from_static(b"bye"));
        let message = a.message_of(&close_packet).unwrap();
        assert_eq!(message, close(4000, "bye"));
        let mut back = Packet::new(PacketType::Data, "p", "s", 0);
        assert!(fill_packet(&mut back, message));
        assert_eq!((back.kind(), back.code), (&PacketType::Close, Some(4000)));
        // Not UTF-8: sent as binary rather than lost.
        assert_eq!(
            a.push(&data(b"\xff", false, false)),
            Some(Message::Binary(Bytes::from_static(b"\xff")))
        );
    }
}
