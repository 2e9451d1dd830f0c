//! The WebSocket-over-HTTP exchange with the origin: the requests (the
//! client's events, its handshake headers replayed, `Connection-Id`,
//! `Meta-*`, a fresh `Grip-Sig`), what an answer changes (`Set-Meta-*`,
//! `Keep-Alive-Interval`), how much of a request the origin took
//! (`Content-Bytes-Accepted`), and the events an answer carries.

use crate::error::ProxyError;
use crate::routes::Target;
use bytes::Bytes;
use holdfast_grip::client::OriginClient;
use holdfast_grip::sign::Signer;
use holdfast_protocol::wsevents::{self, Event, EventKind};
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use holdfast_runtime::body::HttpBody;
use http_body_util::{BodyExt, Limited};
use std::collections::VecDeque;
use std::time::Duration;

/// Largest answer body read from the origin.
const MAX_ANSWER: usize = 1_000_000;

/// How long one request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive requests are at least this many seconds apart.
const MIN_KEEP_ALIVE: u64 = 20;

/// Client handshake headers not replayed to the origin.
pub(super) const NOT_REPLAYED: &[&str] = &[
    "upgrade",
    "connection",
    "accept",
    "connection-id",
    "content-length",
    "content-type",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
];

/// One exchange's outcome.
pub(super) struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// The gateway's state for one connection.
pub(super) struct Gateway {
    pub target: Target,
    pub uri: String,
    /// Headers replayed on every request (proxy's and client's): a list,
    /// not a map, as a map keeps spare room for as long as the connection
    /// lasts.
    pub headers: Box<[(http::HeaderName, http::HeaderValue)]>,
    pub signer: Option<Signer>,
    pub connection_id: String,
    pub meta: Vec<(String, String)>,
    pub keep_alive: Option<Duration>,
    /// The origin sent GRIP `detach`: it was sent `CLOSE` and gets no more
    /// requests; the client stays, for publishes.
    pub detached: bool,
}

impl Gateway {
    pub fn request(&self, events: &[Event], replayed: usize) -> http::Request<HttpBody> {
        let body = Bytes::from(wsevents::encode(events));
        let mut req = http::Request::new(HttpBody::Full(Some(body)));
        *req.method_mut() = http::Method::POST;
        if let Ok(uri) = self.uri.parse() {
            *req.uri_mut() = uri;
        }
        let headers = req.headers_mut();
        headers.reserve(self.headers.len() + 8);
        for (name, value) in self.headers.iter() {
            headers.append(name.clone(), value.clone());
        }
        let set = |headers: &mut http::HeaderMap, name: &str, value: &str| {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        };
        set(headers, "accept", wsevents::CONTENT_TYPE);
        set(headers, "content-type", wsevents::CONTENT_TYPE);
        set(headers, "connection-id", &self.connection_id);
        set(headers, "sec-websocket-extensions", "grip");
        if replayed > 0 {
            set(headers, "content-bytes-replayed", &replayed.to_string());
        }
        for (name, value) in &self.meta {
            set(headers, &format!("meta-{name}"), value);
        }
        if let Some(token) = self.signer.as_ref().and_then(Signer::token) {
            set(headers, "grip-sig", &token);
        }
        req
    }

    /// Applies `Set-Meta-*` and `Keep-Alive-Interval` from an answer.
    pub fn absorb(&mut self, headers: &http::HeaderMap) {
        for (name, value) in headers {
            if let Some(meta) = name.as_str().strip_prefix("set-meta-") {
                let value = value.to_str().unwrap_or("").to_owned();
                self.meta.retain(|(n, _)| n != meta);
                if !value.is_empty() {
                    self.meta.push((meta.to_owned(), value));
                }
            }
        }
        if let Some(seconds) = headers
            .get("keep-alive-interval")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&s| s > 0)
        {
            self.keep_alive = Some(Duration::from_secs(seconds.max(MIN_KEEP_ALIVE)));
        }
    }
}

/// Sends one request; the answer's status, headers and (bounded) body.
/// Owns what it needs, so a session can wait for it among other things.
pub(super) async fn exchange(
    client: OriginClient,
    target: Target,
    req: http::Request<HttpBody>,
) -> Result<Answer, ProxyError> {
    let name = format!("{}:{}", target.host, target.port);
    let failed = |reason: String| ProxyError::Origin {
        target: name.clone(),
        reason,
    };
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(target.insecure, req))
        .await
        .map_err(|_| failed("no answer".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(REQUEST_TIMEOUT, Limited::new(body, MAX_ANSWER).collect())
        .await
        .map_err(|_| failed("answer body took too long".into()))?
        .map_err(|e| {
            failed(format!(
                "answer body unreadable or over {MAX_ANSWER} bytes: {e}"
            ))
        })?
        .to_bytes();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    })
}

/// What the origin took of a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Taken {
    /// Message bytes accepted (credits for connmgr).
    pub content: usize,
    /// Message bytes offered but not accepted (`Content-Bytes-Replayed`
    /// of the next request).
    pub replayed: usize,
    /// Events of the request still pending.
    pub replay_events: usize,
}

/// Removes from `pending` (whose first `offered` events went in the
/// request) what the origin accepted: `accepted` bytes of message content
/// (everything when absent) counted from the front, a partly accepted
/// message keeping its rest, and a `CLOSE` (its payload counted last)
/// only once everything before it was taken. Accepting more than was
/// offered, or the content before a `CLOSE` but not the `CLOSE`, is a
/// fault of the origin.
pub(super) fn take_accepted(
    pending: &mut VecDeque<Event>,
    offered: usize,
    accepted: Option<usize>,
) -> Result<Taken, &'static str> {
    let request = pending.iter().take(offered);
    let content: usize = request
        .clone()
        .filter(|e| e.kind != EventKind::Close)
        .map(|e| e.content.len())
        .sum();
    let close = request
        .clone()
        .find(|e| e.kind == EventKind::Close)
        .map(|e| e.content.len());
    let total = content + close.unwrap_or(0);
    let accepted = accepted.unwrap_or(total);
    if accepted > total {
        return Err("accepted more bytes than were offered");
    }
    let content_accepted = accepted.min(content);
    let mut left = content_accepted;
    let mut removed = 0;
    while removed < offered {
        let Some(front) = pending.front_mut() else {
            break;
        };
        if front.kind == EventKind::Close {
            break;
        }
        if front.content.len() > left {
            front.content = front.content.slice(left..);
            break;
        }
        left -= front.content.len();
        pending.pop_front();
        removed += 1;
    }
    if close.is_some() && content_accepted == content {
        if accepted < total {
            return Err("accepted the messages before a CLOSE but not the CLOSE");
        }
        pending.pop_front();
        removed += 1;
    }
    Ok(Taken {
        content: content_accepted,
        replayed: content - content_accepted,
        replay_events: offered - removed,
    })
}

/// The events of a `200 application/websocket-events` answer; `None` for
/// any other answer.
pub(super) fn accepted_events(
    answer: &Answer,
) -> Option<Result<Vec<Event>, wsevents::EventsError>> {
    let content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    (answer.status == 200 && content_type == Some(wsevents::CONTENT_TYPE))
        .then(|| wsevents::parse(&answer.body))
}

/// The origin's headers for the client's answer.
pub(super) fn client_headers(headers: &http::HeaderMap, skip: &[&str]) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name.as_str())
                && !skip.contains(&name.as_str())
                && !name.as_str().starts_with("set-meta-")
        })
        .map(|(name, value)| {
            Header(
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Event {
        Event::new(EventKind::Text, Bytes::copy_from_slice(s.as_bytes()))
    }

    fn queue(events: &[Event]) -> VecDeque<Event> {
        events.iter().cloned().collect()
    }

    #[test]
    fn everything_accepted_by_default() {
        let mut pending = queue(&[text("hello"), text("world"), text("new")]);
        let taken = take_accepted(&mut pending, 2, None).unwrap();
        assert_eq!(
            taken,
            Taken {
                content: 10,
                replayed: 0,
                replay_events: 0
            }
        );
        assert_eq!(pending, queue(&[text("new")]));
    }

    #[test]
    fn partial_acceptance_keeps_the_rest_of_a_message() {
        let mut pending = queue(&[text("hello"), text("world")]);
        let taken = take_accepted(&mut pending, 2, Some(7)).unwrap();
        assert_eq!(
            taken,
            Taken {
                content: 7,
                replayed: 3,
                replay_events: 1
            }
        );
        assert_eq!(pending, queue(&[text("rld")]));
        let taken = take_accepted(&mut pending, 1, Some(0)).unwrap();
        assert_eq!(
            (taken.content, taken.replayed, taken.replay_events),
            (0, 3, 1)
        );
        assert_eq!(pending, queue(&[text("rld")]));
    }

    #[test]
    fn a_close_goes_once_the_messages_before_it_did() {
        let close = Event::close(1000, "bye");
        let mut pending = queue(&[text("hi"), close.clone()]);
        // Only part of the message: the close stays too.
        let taken = take_accepted(&mut pending, 2, Some(1)).unwrap();
        assert_eq!(taken.replay_events, 2);
        assert_eq!(pending, queue(&[text("i"), close.clone()]));
        // All of it.
        let taken = take_accepted(&mut pending, 2, Some(1 + close.content.len())).unwrap();
        assert_eq!(taken.replay_events, 0);
        assert!(pending.is_empty());
        // The messages but not the close: a fault.
        let mut pending = queue(&[text("hi"), close]);
        assert!(take_accepted(&mut pending, 2, Some(2)).is_err());
    }

    #[test]
    fn accepting_more_than_offered_is_a_fault() {
        let mut pending = queue(&[text("hi"), text("unoffered")]);
        assert!(take_accepted(&mut pending, 1, Some(3)).is_err());
    }
}
