//! Receiving connections over HTTP: each carries one session's frames to
//! its client (one per request for polling transports, a stream for the
//! others, up to [`STREAM_LIMIT`] bytes), within connmgr's credits, with
//! a heartbeat when the session has nothing to say.

use super::frames::Frame;
use super::registry::SockSession;
use super::{common_headers, header, session_for, HEARTBEAT};
use crate::prepare::Prepared;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use holdfast_protocol::zhttp::{Header, Packet, PacketType};
use tokio::time::{sleep_until, Instant};

/// Bytes a streaming transport sends before ending its response, so
/// browsers do not keep whole streams in memory (the client reconnects).
const STREAM_LIMIT: usize = 128 * 1024;

/// How a receiving connection writes frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Transport {
    /// `xhr`: one frame per request.
    Polling,
    /// `xhr_streaming`: frames, one per line, after a 2 KiB prelude.
    Streaming,
    /// `eventsource`: frames as server-sent events.
    EventSource,
    /// `jsonp`: one frame per request, as a call to this callback.
    Jsonp(String),
}

impl Transport {
    pub fn content_type(&self) -> &'static str {
        match self {
            Transport::EventSource => "text/event-stream; charset=UTF-8",
            _ => "application/javascript; charset=UTF-8",
        }
    }

    /// One frame per request.
    pub fn polls(&self) -> bool {
        matches!(self, Transport::Polling | Transport::Jsonp(_))
    }

    pub fn prelude(&self) -> Bytes {
        match self {
            Transport::Polling | Transport::Jsonp(_) => Bytes::new(),
            Transport::Streaming => {
                let mut prelude = "h".repeat(2048);
                prelude.push('\n');
                Bytes::from(prelude)
            }
            Transport::EventSource => Bytes::from_static(b"\r\n"),
        }
    }

    pub fn write(&self, frame: &Frame) -> Bytes {
        match self {
            Transport::EventSource => Bytes::from(format!("data: {}\r\n\r\n", frame.encode())),
            Transport::Jsonp(callback) => {
                let frame = serde_json::Value::String(frame.encode()).to_string();
                Bytes::from(format!("/**/{callback}({frame});\r\n"))
            }
            _ => Bytes::from(format!("{}\n", frame.encode())),
        }
    }
}

/// A receiving connection: frames of session `key` as they come
/// (one, for polling), then the end of the response.
pub(super) async fn receive(
    zhttp: &mut Zhttp,
    prepared: &Prepared,
    key: &str,
    transport: Transport,
) -> Ended {
    let session = session_for(zhttp, prepared, key);
    let mut headers = common_headers(&prepared.headers);
    headers.push(header("Content-Type", transport.content_type()));
    if !session.attach() {
        // One receiving connection per session.
        let frame = Frame::Close(2010, "Another connection still open".into());
        let mut body = transport.prelude().to_vec();
        body.extend_from_slice(&transport.write(&frame));
        zhttp.respond(200, headers, Bytes::from(body)).await;
        return (200, "sockjs busy");
    }
    let outcome = stream(zhttp, &session, headers, &transport)
        .await
        .unwrap_or("client disconnected");
    session.detach();
    (200, outcome)
}

/// The response: its head, the transport's prelude, then frames (and
/// heartbeats) until the transport ends it.
async fn stream(
    zhttp: &mut Zhttp,
    session: &SockSession,
    headers: Vec<Header>,
    transport: &Transport,
) -> Result<&'static str, &'static str> {
    let mut head = zhttp.packet(PacketType::Data);
    head.code = Some(200);
    head.reason = Some("OK".into());
    head.headers = Some(headers);
    head.body = Some(Bytes::new());
    head.more = true;
    zhttp.send(head).await;
    write(zhttp, transport.prelude()).await?;
    let mut sent = 0;
    let mut heartbeat = Instant::now() + HEARTBEAT;
    loop {
        let frame = tokio::select! {
            frame = session.next_frame() => frame,
            _ = sleep_until(heartbeat) => Frame::Heartbeat,
            packet = zhttp.inbox.recv() => {
                from_connmgr(zhttp, packet.map(|p| *p))?;
                continue;
            }
        };
        heartbeat = Instant::now() + HEARTBEAT;
        let bytes = transport.write(&frame);
        sent += bytes.len();
        write(zhttp, bytes).await?;
        let done = matches!(frame, Frame::Close(..)) || transport.polls() || sent > STREAM_LIMIT;
        if done {
            let mut end = zhttp.packet(PacketType::Data);
            end.body = Some(Bytes::new());
            zhttp.send(end).await;
            return Ok("sockjs frames sent");
        }
    }
}

/// Writes body bytes to connmgr within its credits, taking its packets
/// meanwhile; `Err` when the client went away.
async fn write(zhttp: &mut Zhttp, mut data: Bytes) -> Result<(), &'static str> {
    while !data.is_empty() {
        if zhttp.endpoint.can_send() {
            let chunk = data.split_to(zhttp.endpoint.take_credits(data.len()));
            let mut packet = zhttp.packet(PacketType::Data);
            packet.body = Some(chunk);
            packet.more = true;
            zhttp.send(packet).await;
            continue;
        }
        let deadline = zhttp.endpoint.next_deadline();
        tokio::select! {
            packet = zhttp.inbox.recv() => from_connmgr(zhttp, packet.map(|p| *p))?,
            _ = sleep_until(deadline) => {
                if !zhttp.on_timer().await {
                    return Err("connmgr gone");
                }
            }
        }
    }
    Ok(())
}

/// A packet from connmgr while answering: credits are taken; a cancel
/// means the client went away.
fn from_connmgr(zhttp: &mut Zhttp, packet: Option<Packet>) -> Result<(), &'static str> {
    let packet = packet.ok_or("shutdown")?;
    if !zhttp.take_in(&packet) {
        return Err("bad seq");
    }
    match packet.kind() {
        PacketType::Cancel | PacketType::Error => Err("client disconnected"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_write_frames() {
        let frame = Frame::Messages(vec!["hi".into()]);
        assert_eq!(&Transport::Polling.write(&frame)[..], b"a[\"hi\"]\n");
        assert_eq!(
            &Transport::EventSource.write(&frame)[..],
            b"data: a[\"hi\"]\r\n\r\n"
        );
        assert_eq!(Transport::Streaming.prelude().len(), 2049);
    }
}
