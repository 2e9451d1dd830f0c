//! WebSocket messages as ZHTTP carries them: a message may arrive in
//! fragments (data packets with `more`), `content-type: binary` marks binary
//! messages, and anything else is text (sent as binary when it is not valid
//! UTF-8, rather than dropped). Shared by connmgr (toward clients) and the
//! proxy (toward origins).

use crate::zhttp::{Packet, PacketType};
use bytes::Bytes;
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

/// Read buffer per connection. tungstenite's default (128 KiB, allocated
/// up front) would make a held WebSocket cost more than 128 KiB.
const READ_BUFFER: usize = 4096;

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
