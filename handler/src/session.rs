//! A held session: its ZHTTP endpoint with connmgr (sequence numbers,
//! credits, liveness), and what it is waiting for. Pure state; the engine
//! drives it.

use bytes::Bytes;
use holdfast_protocol::handoff::{
    Accept, CrossOrigin, HoldMode, KeepAlive, Origin, Request, Response,
};
use holdfast_protocol::zhttp::{Endpoint, Header, Packet, PacketType};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::time::delay_queue;
use url::Url;

/// Items a stream session may have waiting for credits; past this the
/// client is too slow and is disconnected (Pushpin's per-session queue).
pub const QUEUE_MAX: usize = 100;

/// One held client connection.
pub struct Session {
    /// The ZHTTP session with connmgr (its id and connmgr's, sequence
    /// numbers, credits, liveness), taken over from the proxy.
    pub endpoint: Endpoint,
    /// Long-poll or stream.
    pub mode: HoldMode,
    /// Subscriptions.
    pub channels: Vec<Subscription>,
    /// Metadata for filters (`Grip-Set-Meta`).
    pub meta: Vec<(String, String)>,
    /// The client's request, replayed when a long-poll is asked again.
    pub request: Request,
    /// How to reach the origin again; `None` from a proxy that did not say.
    pub origin: Option<Origin>,
    /// Stream: the next link and its timeout in seconds.
    pub next_link: Option<(Url, u32)>,
    /// Where to `POST` when the session ends (from the first instructions).
    pub gone_link: Option<Url>,
    /// Where the session stands: held, streaming, asking the origin, or
    /// closing.
    pub phase: Phase,
    /// Bumped for each request, so a stale answer is recognised.
    pub generation: u64,
    /// Failed attempts at the current next link.
    pub link_failures: u32,
    /// Channels that got an item since the next-link timer started.
    pub fed: HashSet<String>,
    /// Long-poll: the response to send at timeout.
    pub timeout_response: Response,
    /// Stream keep-alive.
    pub keep_alive: Option<KeepAlive>,
    /// Stream content waiting for credits.
    pub queue: VecDeque<Bytes>,
    /// Timers: hold timeout or stream keep-alive, and ZHTTP keep-alive/expiry.
    pub hold_timer: Option<delay_queue::Key>,
    /// ZHTTP liveness timer (keep-alive and expiry).
    pub link_timer: Option<delay_queue::Key>,
    /// Next-link timer (timeout, or back-off after a failure).
    pub next_timer: Option<delay_queue::Key>,
    /// Client session id (Pushpin's session feature), when the origin named one.
    pub sid: Option<String>,
    /// Route `aco`: responses get CORS headers, long-poll answers may be
    /// JSON-P.
    pub cross_origin: Option<CrossOrigin>,
    /// Channels whose history was asked of the bus, and what was published
    /// on them meanwhile (boxed: nearly every session has none).
    pub awaiting: Option<Box<AwaitingHistory>>,
}

/// A session's history lookups under way on the bus.
#[derive(Debug, Default)]
pub struct AwaitingHistory {
    /// `(channel, the origin named the position)`: when history does not
    /// reach back, such a session asks the origin, as without history.
    pub channels: Vec<(String, bool)>,
    /// Items published on those channels meanwhile, in order.
    pub held_back: Vec<holdfast_protocol::publish::Item>,
}

impl AwaitingHistory {
    /// Whether `channel`'s history is awaited.
    pub fn awaits(&self, channel: &str) -> bool {
        self.channels.iter().any(|(c, _)| c == channel)
    }
}

impl Session {
    /// Whether the origin can be asked again for what the session missed:
    /// a long-poll retries its request, a stream fetches its next link.
    pub fn can_recover(&self) -> bool {
        self.origin.is_some() && (self.mode == HoldMode::Response || self.next_link.is_some())
    }

    /// A session from a hand-over, before its instructions are applied
    /// (the engine does that, as it does for a retry or a link page);
    /// `from` is our id.
    pub fn from_accept(accept: &Accept, from: Arc<str>, now: Instant) -> Session {
        Session {
            endpoint: Endpoint::resume(
                from,
                accept.id.clone(),
                accept.connmgr.clone(),
                (accept.in_seq, accept.out_seq),
                accept.credits,
                now,
            ),
            mode: accept.hold.mode,
            channels: Vec::new(),
            meta: Vec::new(),
            request: accept.request.clone(),
            origin: accept.origin.clone(),
            next_link: None,
            gone_link: None,
            // The proxy may have sent the head and a large initial body.
            phase: if accept.started {
                Phase::Streaming
            } else {
                Phase::Held
            },
            generation: 0,
            link_failures: 0,
            fed: HashSet::new(),
            timeout_response: accept.response.clone(),
            keep_alive: None,
            queue: VecDeque::new(),
            hold_timer: None,
            link_timer: None,
            next_timer: None,
            sid: None,
            cross_origin: accept.cross_origin.clone(),
            awaiting: None,
        }
    }

    /// The subscription to `channel`, if any.
    pub fn subscription_mut(&mut self, channel: &str) -> Option<&mut Subscription> {
        self.channels.iter_mut().find(|c| c.name == channel)
    }

    /// A channel name as the origin knows it (without the route prefix).
    pub fn origin_name<'a>(&self, channel: &'a str) -> &'a str {
        let prefix = self.origin.as_ref().map_or("", |o| o.prefix.as_str());
        channel.strip_prefix(prefix).unwrap_or(channel)
    }

    /// `(channel, last id)` for `Grip-Last`, channel names as the origin
    /// knows them.
    pub fn last_ids(&self) -> Vec<(String, String)> {
        self.channels
            .iter()
            .filter_map(|c| {
                c.prev_id
                    .as_ref()
                    .map(|id| (self.origin_name(&c.name).to_owned(), id.clone()))
            })
            .collect()
    }

    /// connmgr's id: where the session's packets go.
    pub fn connmgr(&self) -> &str {
        self.endpoint.peer().unwrap_or_default()
    }

    /// The session id.
    pub fn id(&self) -> &str {
        self.endpoint.id()
    }

    /// A packet of `kind`, numbered when it is sent.
    pub fn packet(&self, kind: PacketType) -> Packet {
        self.endpoint.packet(kind)
    }

    /// A response shaped for the route's `aco`: CORS headers, or (a whole
    /// long-poll answer) wrapped as JSON-P.
    pub fn cross_origin_response(&self, response: Response, whole: bool) -> Response {
        use holdfast_grip::cross_origin::{apply_cors, jsonp_wrap};
        let Some(shape) = &self.cross_origin else {
            return response;
        };
        match (&shape.jsonp, whole) {
            (Some(jsonp), true) => {
                let (headers, body) = jsonp_wrap(
                    jsonp,
                    response.code,
                    &response.reason,
                    &response.headers,
                    &response.body,
                );
                Response {
                    code: 200,
                    reason: "OK".into(),
                    headers,
                    body,
                }
            }
            _ => {
                let mut response = response;
                apply_cors(&self.request.headers, &mut response.headers);
                response
            }
        }
    }

    /// The first packet of a response: status, headers, body, `more`.
    pub fn response_packet(&self, response: &Response, more: bool) -> Packet {
        let mut packet = self.packet(PacketType::Data);
        packet.code = Some(response.code);
        packet.reason = Some(response.reason.clone());
        packet.headers = Some(response.headers.clone());
        packet.body = Some(response.body.clone());
        packet.more = more;
        packet
    }
}

/// Where a held session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Held, its response not started: a long-poll waiting, or a stream
    /// before its head went out.
    Held,
    /// A stream whose head went out: items flow.
    Streaming,
    /// The origin is being asked again (a long-poll retry, a stream's next
    /// link); `started`: the stream's head had already gone out.
    Asking {
        /// The response head went out before.
        started: bool,
    },
    /// Ending: what is queued goes out, then the response ends.
    Closing,
}

impl Phase {
    /// Whether the response head went out.
    pub fn started(self) -> bool {
        matches!(
            self,
            Phase::Streaming | Phase::Asking { started: true } | Phase::Closing
        )
    }

    /// Whether a request to the origin is in flight.
    pub fn asking(self) -> bool {
        matches!(self, Phase::Asking { .. })
    }

    /// Whether the session is ending.
    pub fn closing(self) -> bool {
        self == Phase::Closing
    }

    /// The phase once the origin is being asked (from a phase that is not
    /// closing).
    pub fn ask(self) -> Phase {
        Phase::Asking {
            started: self.started(),
        }
    }

    /// The phase once the origin's answer is in.
    pub fn answered(self) -> Phase {
        match self {
            Phase::Asking { started: true } => Phase::Streaming,
            Phase::Asking { started: false } => Phase::Held,
            other => other,
        }
    }
}

/// One subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Channel (route prefix applied).
    pub name: String,
    /// The last id this session got (or the origin said it had).
    pub prev_id: Option<String>,
    /// Filters, in order.
    pub filters: Vec<String>,
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
    fn phases() {
        let held = Phase::Held;
        assert!(!held.started() && !held.asking() && !held.closing());
        assert_eq!(held.ask(), Phase::Asking { started: false });
        assert_eq!(held.ask().answered(), Phase::Held);
        let streaming = Phase::Streaming;
        assert!(streaming.started());
        assert_eq!(streaming.ask(), Phase::Asking { started: true });
        assert!(streaming.ask().started() && streaming.ask().asking());
        assert_eq!(streaming.ask().answered(), Phase::Streaming);
        assert_eq!(Phase::Closing.answered(), Phase::Closing);
    }

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
