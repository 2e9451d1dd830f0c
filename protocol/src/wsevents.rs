//! The `application/websocket-events` format of WebSocket-over-HTTP: a
//! list of events, each `NAME\r\n` or `NAME <hex length>\r\n<content>\r\n`.
//! Names are `OPEN`, `TEXT`, `BINARY`, `PING`, `PONG`, `CLOSE` (content: a
//! two-byte code and a reason) and `DISCONNECT`; unknown names are kept as
//! [`EventKind::Other`] so receivers can skip them. Content on events that
//! normally have none is accepted.

use bytes::Bytes;

/// The content type both directions use.
pub const CONTENT_TYPE: &str = "application/websocket-events";

/// Largest content length accepted in one event.
pub const MAX_EVENT: usize = 1_000_000;

/// What an event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The handshake (request) or its acceptance (response).
    Open,
    /// A text message.
    Text,
    /// A binary message.
    Binary,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
    /// A close, with optional code and reason.
    Close,
    /// The other side vanished without a close.
    Disconnect,
    /// A name this implementation does not know.
    Other(String),
}

impl EventKind {
    fn name(&self) -> &str {
        match self {
            EventKind::Open => "OPEN",
            EventKind::Text => "TEXT",
            EventKind::Binary => "BINARY",
            EventKind::Ping => "PING",
            EventKind::Pong => "PONG",
            EventKind::Close => "CLOSE",
            EventKind::Disconnect => "DISCONNECT",
            EventKind::Other(name) => name,
        }
    }

    fn from_name(name: &str) -> EventKind {
        match name {
            "OPEN" => EventKind::Open,
            "TEXT" => EventKind::Text,
            "BINARY" => EventKind::Binary,
            "PING" => EventKind::Ping,
            "PONG" => EventKind::Pong,
            "CLOSE" => EventKind::Close,
            "DISCONNECT" => EventKind::Disconnect,
            other => EventKind::Other(other.to_owned()),
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it is.
    pub kind: EventKind,
    /// Its content (empty when it has none).
    pub content: Bytes,
}

impl Event {
    /// An event with content.
    pub fn new(kind: EventKind, content: impl Into<Bytes>) -> Event {
        Event {
            kind,
            content: content.into(),
        }
    }

    /// A close event carrying `code` and `reason`.
    pub fn close(code: u16, reason: &str) -> Event {
        let mut content = code.to_be_bytes().to_vec();
        content.extend_from_slice(reason.as_bytes());
        Event::new(EventKind::Close, content)
    }

    /// A close event's code and reason (1005, no status, when absent).
    pub fn close_parts(&self) -> (u16, String) {
        match self.content.get(..2) {
            Some(code) => (
                u16::from_be_bytes([code[0], code[1]]),
                String::from_utf8_lossy(&self.content[2..]).into_owned(),
            ),
            None => (1005, String::new()),
        }
    }
}

/// Why a body is not valid `application/websocket-events`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventsError {
    /// An event line has no `\r\n`.
    #[error("event {0}: line not terminated by CRLF")]
    Unterminated(usize),
    /// The name is empty or not ASCII letters.
    #[error("event {0}: invalid name")]
    BadName(usize),
    /// The length is not hexadecimal or too large.
    #[error("event {0}: invalid content length")]
    BadLength(usize),
    /// The content is shorter than its length, or lacks its `\r\n`.
    #[error("event {0}: content truncated")]
    Truncated(usize),
}

/// Encodes events (lower-case hex lengths, as Pushpin writes them).
pub fn encode(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        out.extend_from_slice(event.kind.name().as_bytes());
        if event.content.is_empty() {
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(format!(" {:x}\r\n", event.content.len()).as_bytes());
            out.extend_from_slice(&event.content);
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Parses a body of events.
pub fn parse(body: &[u8]) -> Result<Vec<Event>, EventsError> {
    let mut events = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let index = events.len();
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or(EventsError::Unterminated(index))?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let (name, length) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], Some(&line[space + 1..])),
            None => (line, None),
        };
        if name.is_empty() || !name.iter().all(u8::is_ascii_alphabetic) {
            return Err(EventsError::BadName(index));
        }
        let name = std::str::from_utf8(name).map_err(|_| EventsError::BadName(index))?;
        let content = match length {
            None => Bytes::new(),
            Some(hex) => {
                let len = std::str::from_utf8(hex)
                    .ok()
                    .filter(|h| !h.is_empty() && h.len() <= 8)
                    .and_then(|h| usize::from_str_radix(h, 16).ok())
                    .filter(|&n| n <= MAX_EVENT)
                    .ok_or(EventsError::BadLength(index))?;
                if rest.len() < len + 2 || &rest[len..len + 2] != b"\r\n" {
                    return Err(EventsError::Truncated(index));
                }
                let content = Bytes::copy_from_slice(&rest[..len]);
                rest = &rest[len + 2..];
                content
            }
        };
        events.push(Event {
            kind: EventKind::from_name(name),
            content,
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let events = vec![
            Event::new(EventKind::Open, Bytes::new()),
            Event::new(EventKind::Text, "hello"),
            Event::new(EventKind::Binary, vec![0u8, 255]),
            Event::close(1000, "bye"),
            Event::new(EventKind::Disconnect, Bytes::new()),
        ];
        let body = encode(&events);
        assert_eq!(
            &body[..],
            &b"OPEN\r\nTEXT 5\r\nhello\r\nBINARY 2\r\n\x00\xff\r\nCLOSE 5\r\n\x03\xe8bye\r\nDISCONNECT\r\n"[..]
        );
        assert_eq!(parse(&body).unwrap(), events);
        assert_eq!(events[3].close_parts(), (1000, "bye".to_owned()));
        assert_eq!(
            Event::new(EventKind::Close, Bytes::new()).close_parts(),
            (1005, String::new())
        );
    }

    #[test]
    fn accepts_upper_case_hex_and_unknown_names() {
        let events = parse(b"TEXT A\r\n0123456789\r\nFUTURE\r\nPING 1\r\nx\r\n").unwrap();
        assert_eq!(events[0].content.len(), 10);
        assert_eq!(events[1].kind, EventKind::Other("FUTURE".into()));
        assert_eq!(events[2].content, Bytes::from_static(b"x"));
        assert!(parse(b"").unwrap().is_empty());
    }

    #[test]
    fn malformed_bodies() {
        let cases: &[(&[u8], EventsError)] = &[
            (b"OPEN", EventsError::Unterminated(0)),
            (b"OPEN\r\nTEXT", EventsError::Unterminated(1)),
            (b"\r\n", EventsError::BadName(0)),
            (b"TE XT 5\r\nhello\r\n", EventsError::BadLength(0)),
            (b"TEXT zz\r\n", EventsError::BadLength(0)),
            (b"TEXT \r\n", EventsError::BadLength(0)),
            (b"TEXT 123456789\r\n", EventsError::BadLength(0)),
            (b"TEXT 5\r\nhel", EventsError::Truncated(0)),
            (b"TEXT 2\r\nhello\r\n", EventsError::Truncated(0)),
            (b"T3XT\r\n", EventsError::BadName(0)),
        ];
        for (body, expected) in cases {
            assert_eq!(
                parse(body).unwrap_err(),
                *expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
