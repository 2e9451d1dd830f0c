//! A held session: where it lives in connmgr, its sequence numbers and
//! credits, and what it is waiting for. Pure state; the engine drives it.

use bytes::Bytes;
use holdfast_protocol::handoff::{Accept, HoldMode, KeepAlive, Response};
use holdfast_protocol::zhttp::{Header, Packet, PacketType};
use std::collections::VecDeque;
use tokio_util::time::delay_queue;

/// Items a stream session may have waiting for credits; past this the
/// client is too slow and is disconnected (Pushpin's per-session queue).
pub const QUEUE_MAX: usize = 100;

/// One held client connection.
pub struct Session {
    /// connmgr's id.
    pub connmgr: String,
    /// Session id.
    pub id: String,
    /// Our next packet's sequence number.
    pub out_seq: u32,
    /// Expected sequence number of connmgr's next packet.
    pub in_seq: u32,
    /// Body bytes connmgr accepts now.
    pub credits: usize,
    /// Long-poll or stream.
    pub mode: HoldMode,
    /// Subscribed channels.
    pub channels: Vec<String>,
    /// Long-poll: the response to send at timeout.
    pub timeout_response: Response,
    /// Stream keep-alive.
    pub keep_alive: Option<KeepAlive>,
    /// Stream content waiting for credits.
    pub queue: VecDeque<Bytes>,
    /// End the stream once the queue is sent.
    pub closing: bool,
    /// Timers: hold timeout or stream keep-alive, and ZHTTP keep-alive/expiry.
    pub hold_timer: Option<delay_queue::Key>,
    /// ZHTTP liveness timer.
    pub link_timer: Option<delay_queue::Key>,
    /// Packets received since the last liveness check.
    pub heard: bool,
}

impl Session {
    /// A session from a hand-over.
    pub fn from_accept(accept: Accept) -> Session {
        Session {
            connmgr: accept.connmgr,
            id: accept.id,
            out_seq: accept.out_seq,
            in_seq: accept.in_seq,
            credits: accept.credits as usize,
            mode: accept.hold.mode,
            channels: accept.hold.channels.into_iter().map(|c| c.name).collect(),
            timeout_response: accept.response,
            keep_alive: accept.hold.keep_alive,
            queue: VecDeque::new(),
            closing: false,
            hold_timer: None,
            link_timer: None,
            heard: true,
        }
    }

    /// A packet of `kind` with the next sequence number.
    pub fn packet(&mut self, from: &str, kind: PacketType) -> Packet {
        let packet = Packet::new(kind, from, &self.id, self.out_seq);
        self.out_seq = self.out_seq.wrapping_add(1);
        packet
    }

    /// The first packet of a response: status, headers, body, `more`.
    pub fn response_packet(&mut self, from: &str, response: &Response, more: bool) -> Packet {
        let mut packet = self.packet(from, PacketType::Data);
        packet.code = Some(response.code);
        packet.reason = Some(response.reason.clone());
        packet.headers = Some(response.headers.clone());
        packet.body = Some(response.body.clone());
        packet.more = more;
        packet
    }
}

/// The response a long-poll gets for a published `http-response`: the
/// item's status, reason and body; headers inherited from the timeout
/// response unless the item sets them (same name replaced); `Grip-*` never
/// sent; Content-Length computed here.
pub fn published_response(
    timeout: &Response,
    item: &holdfast_protocol::publish::HttpResponse,
) -> Response {
    let code = item.code.unwrap_or(200);
    let reason = item.reason.clone().unwrap_or_else(|| {
        http::StatusCode::from_u16(code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_owned()
    });
    let overridden = |name: &str| {
        item.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut headers: Vec<Header> = timeout
        .headers
        .iter()
        .filter(|h| !overridden(&h.0) && !h.0.eq_ignore_ascii_case("content-length"))
        .cloned()
        .collect();
    headers.extend(
        item.headers
            .iter()
            .filter(|(n, _)| {
                !n.to_ascii_lowercase().starts_with("grip-")
                    && !n.eq_ignore_ascii_case("content-length")
            })
            .map(|(n, v)| Header(n.clone(), v.clone())),
    );
    headers.push(Header(
        "Content-Length".into(),
        Bytes::from(item.body.len().to_string()),
    ));
    Response {
        code,
        reason,
        headers,
        body: item.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::publish::HttpResponse;

    #[test]
    fn published_response_inherits_and_overrides_headers() {
        let timeout = Response {
            code: 200,
            reason: "OK".into(),
            headers: vec![
                Header("Content-Type".into(), Bytes::from_static(b"text/plain")),
                Header("X-Kept".into(), Bytes::from_static(b"1")),
                Header("Content-Length".into(), Bytes::from_static(b"99")),
            ],
            body: Bytes::from_static(b"timeout"),
        };
        let item = HttpResponse {
            code: Some(201),
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                ),
                ("Grip-X".into(), Bytes::from_static(b"no")),
            ],
            body: Bytes::from_static(b"{}"),
            ..HttpResponse::default()
        };
        let r = published_response(&timeout, &item);
        assert_eq!(
            (r.code, r.reason.as_str(), &r.body[..]),
            (201, "Created", &b"{}"[..])
        );
        let names: Vec<(&str, &[u8])> =
            r.headers.iter().map(|h| (h.0.as_str(), &h.1[..])).collect();
        assert_eq!(
            names,
            vec![
                ("X-Kept", &b"1"[..]),
                ("content-type", &b"application/json"[..]),
                ("Content-Length", &b"2"[..])
            ]
        );
    }
}
