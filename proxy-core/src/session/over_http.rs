//! WebSocket-over-HTTP (route target option `over_http`): the client's
//! WebSocket becomes a series of `POST`s of `application/websocket-events`
//! to the target, one in flight at a time, each carrying the client's
//! events queued meanwhile (its handshake headers replayed on every
//! request, with `Connection-Id`, `Meta-*` from `Set-Meta-*`, a fresh
//! `Grip-Sig`); the events of each answer go to the client. The first
//! request is `OPEN`; an answer other than `200` with `OPEN` refuses the
//! handshake with the origin's own response. `Keep-Alive-Interval` makes
//! idle connections send empty requests; `Content-Bytes-Accepted` re-offers
//! what the origin did not take. With `Sec-WebSocket-Extensions: grip` in
//! the accepting answer, origin messages must carry the message prefix
//! (`m:` unless set), which is removed, and `c:` messages are GRIP control
//! messages (see [`super::grip_ws`]).

use super::grip_ws::{grip_prefix, next_delivery, sleep_until, Delivered, FromOrigin, GripWs};
use super::{signer_for, Prepared, Session, REQUEST_WINDOW, VOUCH_INTERVAL};
use crate::error::ProxyError;
use crate::origin::headers::{origin_headers, rewrite_path, Forward};
use crate::origin::target_base;
use crate::routes::Target;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use holdfast_grip::client::OriginClient;
use holdfast_grip::sign::Signer;
use holdfast_protocol::wsevents::{self, Event, EventKind};
use holdfast_protocol::zhttp::{is_hop_by_hop, Header, Packet, PacketType};
use holdfast_runtime::body::HttpBody;
use holdfast_runtime::ws;
use http_body_util::{BodyExt, Limited};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Largest answer body read from the origin.
const MAX_ANSWER: usize = 1_000_000;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Keep-alive requests are at least this many seconds apart.
const MIN_KEEP_ALIVE: u64 = 20;

/// Client handshake headers not replayed to the origin.
const NOT_REPLAYED: &[&str] = &[
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
struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

/// The gateway's state for one connection.
struct Gateway {
    target: Target,
    uri: String,
    /// Headers replayed on every request (proxy's and client's): a list,
    /// not a map, as a map keeps spare room for as long as the connection
    /// lasts.
    headers: Box<[(http::HeaderName, http::HeaderValue)]>,
    signer: Option<Signer>,
    connection_id: String,
    meta: Vec<(String, String)>,
    keep_alive: Option<Duration>,
    /// The origin sent GRIP `detach`: it was sent `CLOSE` and gets no more
    /// requests; the client stays, for publishes.
    detached: bool,
}

impl Gateway {
    fn request(&self, events: &[Event], replayed: usize) -> http::Request<HttpBody> {
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
    fn absorb(&mut self, headers: &http::HeaderMap) {
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

/// A WebSocket-over-HTTP connection the origin accepted: what the rest of
/// the session needs.
struct Opened {
    gateway: Box<Gateway>,
    grip: Option<GripWs>,
    /// The events of the answer to `OPEN`, after the `OPEN` itself.
    events: Vec<Event>,
}

impl Session {
    /// Serves a WebSocket session through a WebSocket-over-HTTP origin.
    ///
    /// This future lives as long as the connection, so what only the
    /// handshake needs (the client's request, the origin's first answer,
    /// the origin client's future) is in [`Session::open_gateway`]'s,
    /// boxed and gone once the connection is open; `prepared` comes boxed
    /// for the same reason (an async fn keeps its arguments' room for good).
    pub(super) async fn over_http(&mut self, prepared: Box<Prepared>) -> (u16, &'static str) {
        let Opened {
            mut gateway,
            mut grip,
            events,
        } = match Box::pin(self.open_gateway(prepared)).await {
            Ok(opened) => opened,
            Err(ended) => return ended,
        };
        let delivered =
            Box::pin(self.deliver_to_client(&mut gateway, &mut grip, events.into_iter())).await;
        let outcome = match delivered {
            Some(outcome) => outcome,
            None => self.gateway_loop(gateway, &mut grip).await,
        };
        self.drain_to_client().await;
        Box::pin(self.grip_end(&grip)).await;
        (101, outcome)
    }

    /// The handshake: `OPEN` to the origin, and the client accepted or
    /// refused with the origin's answer (`Err` with the session's status
    /// and outcome when it ends here).
    async fn open_gateway(
        &mut self,
        prepared: Box<Prepared>,
    ) -> Result<Opened, (u16, &'static str)> {
        let debug = self.shared.debug || prepared.route.debug;
        let route = &prepared.route;
        let Some(target) = route.targets.iter().find(|t| t.over_http).cloned() else {
            return Err((
                self.fail_with(&ProxyError::HoldUnsupported, debug).await,
                "no target",
            ));
        };

        let forward = Forward {
            headers: &prepared.headers,
            peer: prepared.peer.as_deref(),
            tls: prepared.tls,
            trusted: prepared.trusted,
            route,
            target: &target,
            signature: None,
            session: None,
        };
        let mut headers = origin_headers(&forward, &self.shared.rules);
        let remove: Vec<http::HeaderName> = headers
            .keys()
            .filter(|n| {
                NOT_REPLAYED.contains(&n.as_str())
                    || n.as_str().starts_with("meta-")
                    || is_hop_by_hop(n.as_str())
            })
            .cloned()
            .collect();
        for name in remove {
            headers.remove(name);
        }
        let mut gateway = Gateway {
            uri: format!(
                "{}{}",
                target_base(&target),
                rewrite_path(&prepared.path, route)
            ),
            target,
            headers: headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            signer: signer_for(&self.shared, route, prepared.trusted),
            connection_id: format!("{}-{}", self.connmgr, self.endpoint.id()),
            meta: Vec::new(),
            keep_alive: None,
            detached: false,
        };
        // The handshake.
        let open = [Event::new(EventKind::Open, Bytes::new())];
        let answer = match Box::pin(exchange(
            self.shared.client.clone(),
            gateway.target.clone(),
            gateway.request(&open, 0),
        ))
        .await
        {
            Ok(answer) => answer,
            Err(err) => return Err((self.fail_with(&err, debug).await, "origin error")),
        };
        let events = match accepted_events(&answer) {
            Some(Ok(events)) if events.first().map(|e| &e.kind) == Some(&EventKind::Open) => events,
            Some(Ok(events))
                if events.is_empty() && answer.headers.contains_key("keep-alive-interval") =>
            {
                events
            }
            Some(Ok(_)) | Some(Err(_)) if answer.status == 200 => {
                let err = ProxyError::origin_body(
                    "WebSocket-over-HTTP answer to OPEN did not start with OPEN",
                );
                return Err((self.fail_with(&err, debug).await, "origin error"));
            }
            _ => {
                // Refused: the origin's answer goes to the client.
                let mut packet = self.packet(PacketType::Data);
                packet.code = Some(answer.status);
                packet.reason = http::StatusCode::from_u16(answer.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .map(str::to_owned);
                packet.headers = Some(client_headers(&answer.headers, &["content-length"]));
                packet.body = Some(answer.body.clone());
                self.send(packet).await;
                return Err((answer.status, "websocket refused by origin"));
            }
        };
        gateway.absorb(&answer.headers);
        let channel_prefix = prepared.route.prefix.clone().unwrap_or_default();
        let grip = grip_prefix(&answer.headers).map(|p| self.grip_start(p, channel_prefix));
        let mut accept = self.packet(PacketType::Data);
        accept.code = Some(101);
        accept.reason = Some("Switching Protocols".into());
        accept.headers = Some(client_headers(
            &answer.headers,
            &[
                "content-length",
                "content-type",
                "keep-alive-interval",
                "sec-websocket-extensions",
            ],
        ));
        accept.credits = Some(self.endpoint.offer(REQUEST_WINDOW as usize));
        self.endpoint.set_overshoot(self.shared.max_message_size);
        self.send(accept).await;
        Ok(Opened {
            gateway: Box::new(gateway),
            grip,
            events: events.into_iter().skip(1).collect(),
        })
    }

    /// Queues the origin's events for the client (sent within connmgr's
    /// credits); `Some` when the connection ends.
    async fn deliver_to_client(
        &mut self,
        gateway: &mut Gateway,
        grip: &mut Option<GripWs>,
        events: impl Iterator<Item = Event>,
    ) -> Option<&'static str> {
        for event in events {
            match event.kind {
                EventKind::Text | EventKind::Binary => {
                    let text = event.kind == EventKind::Text;
                    let content = match self.grip_origin_message(grip, event.content, text).await {
                        FromOrigin::Forward(content) => content,
                        FromOrigin::Skip => continue,
                        FromOrigin::Detach => {
                            if !gateway.detached {
                                tracing::debug!(session = %self.endpoint.id(), "origin detached");
                                gateway.detached = true;
                                self.tell_origin(gateway, Event::close(1000, ""));
                            }
                            continue;
                        }
                    };
                    let mut p = self.packet(PacketType::Data);
                    p.content_type = Some(if text { "text" } else { "binary" }.into());
                    p.body = Some(content);
                    self.queue_for_client(p);
                }
                EventKind::Ping | EventKind::Pong => {
                    let kind = if event.kind == EventKind::Ping {
                        PacketType::Ping
                    } else {
                        PacketType::Pong
                    };
                    let mut p = self.packet(kind);
                    p.body = Some(event.content);
                    self.queue_for_client(p);
                }
                EventKind::Close if gateway.detached => {}
                EventKind::Close => {
                    let (code, reason) = event.close_parts();
                    let mut p = self.packet(PacketType::Close);
                    p.code = (code != 1005).then_some(code);
                    p.body = Some(Bytes::from(reason));
                    self.queue_for_client(p);
                    return Some("closed by origin");
                }
                EventKind::Disconnect | EventKind::Open => {
                    let mut p = self.packet(PacketType::Error);
                    p.condition = Some("remote-connection-failed".into());
                    self.queue_for_client(p);
                    return Some("disconnected by origin");
                }
                EventKind::Other(_) => {}
            }
        }
        None
    }

    /// Client events out, origin events back, one request at a time. A
    /// new request goes only once the client has taken what the last
    /// answer brought (connmgr's credits), so a slow client slows the
    /// origin; the client's messages are always taken meanwhile (within
    /// the window granted) and go in the next request.
    async fn gateway_loop(
        &mut self,
        mut gateway: Box<Gateway>,
        grip: &mut Option<GripWs>,
    ) -> &'static str {
        let mut pending: VecDeque<Event> = VecDeque::new();
        let mut replayed = 0usize;
        // Events of the last request the origin did not take (still first
        // in `pending`): re-offered, but not a reason for a request alone.
        let mut replay_events = 0usize;
        let mut fragments = ws::Assembler::default();
        let mut in_flight: Option<InFlight> = None;
        let mut idle_since = Instant::now();
        let mut closing = false;
        // A publish asked for a request now (`action: refresh`).
        let mut refresh = false;
        let timer = tokio::time::sleep_until(self.endpoint.next_deadline());
        tokio::pin!(timer);
        let mut vouch = tokio::time::interval_at(Instant::now() + VOUCH_INTERVAL, VOUCH_INTERVAL);
        loop {
            self.flush_to_client().await;
            let client_ready = self.to_client.is_empty();
            if gateway.detached {
                pending.clear();
            } else if in_flight.is_none() && client_ready {
                // Send what is waiting, or a keep-alive when the origin asked for one.
                let due = refresh
                    || gateway
                        .keep_alive
                        .is_some_and(|k| idle_since.elapsed() >= k);
                if pending.len() > replay_events || due {
                    refresh = false;
                    let events: Vec<Event> = pending.iter().cloned().collect();
                    let request = gateway.request(&events, replayed);
                    let answer =
                        exchange(self.shared.client.clone(), gateway.target.clone(), request);
                    in_flight = Some((Box::pin(answer), events.len()));
                }
            }
            // When the origin's keep-alive request falls due.
            let keep_alive_at = gateway
                .keep_alive
                .filter(|_| !gateway.detached && in_flight.is_none())
                .map(|k| idle_since + k);
            let timers = GripWs::deadline(grip);
            tokio::select! {
                answer = answer_of(&mut in_flight) => {
                    let offered = in_flight.take().map_or(0, |(_, n)| n);
                    idle_since = Instant::now();
                    let answer = match answer {
                        Ok(answer) => answer,
                        Err(err) => {
                            tracing::warn!(session = %self.endpoint.id(), "{err}");
                            return self.upstream_error();
                        }
                    };
                    let parsed = match accepted_events(&answer) {
                        Some(Ok(events)) => events,
                        Some(Err(err)) => {
                            tracing::warn!(session = %self.endpoint.id(), "malformed websocket-events from the origin: {err}");
                            return self.upstream_error();
                        }
                        None => {
                            tracing::warn!(session = %self.endpoint.id(), status = answer.status, "WebSocket-over-HTTP origin answered without websocket-events");
                            return self.upstream_error();
                        }
                    };
                    gateway.absorb(&answer.headers);
                    let accepted = answer
                        .headers
                        .get("content-bytes-accepted")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<usize>().ok());
                    let taken = match take_accepted(&mut pending, offered, accepted) {
                        Ok(taken) => taken,
                        Err(fault) => {
                            tracing::warn!(session = %self.endpoint.id(), "WebSocket-over-HTTP origin {fault}");
                            return self.upstream_error();
                        }
                    };
                    replayed = taken.replayed;
                    replay_events = taken.replay_events;
                    // In a block: the credit's room is not kept across the await.
                    let sending = {
                        let credit = self.endpoint.grant(taken.content);
                        self.send_if_any(credit)
                    };
                    sending.await;
                    // Boxed: this future is the connection's for its life.
                    let delivered =
                        Box::pin(self.deliver_to_client(&mut gateway, grip, parsed.into_iter()))
                            .await;
                    if let Some(outcome) = delivered {
                        return outcome;
                    }
                    if closing && pending.is_empty() {
                        return "closed by client";
                    }
                }
                packet = self.inbox.recv() => {
                    let Some(packet) = packet else { return "shutdown" };
                    if !self.take_in(&packet) {
                        self.close_client(1011, "internal error");
                        return "bad seq";
                    }
                    match packet.kind() {
                        PacketType::Ping => {
                            // Answered here, once (a connection manager
                            // that does not answer pings forwards them).
                            let sending = {
                                let credit = self.answer_ping(&packet);
                                self.send_if_any(credit)
                            };
                            sending.await;
                        }
                        PacketType::Data | PacketType::Pong if gateway.detached => {
                            // Nobody to send it to: dropped, its credits given back.
                            let sending = {
                                let size = packet.body.as_ref().map_or(0, |b| b.len());
                                let credit = self.endpoint.grant(size);
                                self.send_if_any(credit)
                            };
                            sending.await;
                        }
                        PacketType::Close if gateway.detached => return "closed by client",
                        PacketType::Data => match fragments.push(&packet) {
                            Some(Message::Text(text)) => pending.push_back(Event::new(EventKind::Text, Bytes::copy_from_slice(text.as_bytes()))),
                            Some(Message::Binary(data)) => pending.push_back(Event::new(EventKind::Binary, data)),
                            _ => {}
                        },
                        PacketType::Pong => pending.push_back(Event::new(EventKind::Pong, packet.body.unwrap_or_default())),
                        PacketType::Close => {
                            let reason = packet.body.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                            pending.push_back(Event::close(packet.code.unwrap_or(1000), &reason));
                            closing = true;
                        }
                        PacketType::Cancel | PacketType::Error => {
                            if !gateway.detached {
                                self.tell_origin(&gateway, Event::new(EventKind::Disconnect, Bytes::new()));
                            }
                            return "client gone";
                        }
                        _ => {}
                    }
                }
                deliver = next_delivery(grip), if client_ready => match deliver {
                    Some(deliver) => match self.grip_deliver(deliver) {
                        Delivered::Closed => {
                            // Closed by a publish: the origin hears of it as a disconnect.
                            if !gateway.detached {
                                self.tell_origin(&gateway, Event::new(EventKind::Disconnect, Bytes::new()));
                            }
                            return "closed by publish";
                        }
                        Delivered::Refresh => refresh = true,
                        Delivered::Sent => GripWs::sent(grip),
                    },
                    None => {
                        self.close_client(1008, "too slow for publishes");
                        if !gateway.detached {
                            self.tell_origin(&gateway, Event::new(EventKind::Disconnect, Bytes::new()));
                        }
                        return "client too slow";
                    }
                },
                _ = sleep_until(timers) => self.grip_tick(grip),
                _ = sleep_until(keep_alive_at) => {}
                _ = vouch.tick(), if grip.is_some() => Box::pin(self.grip_alive(grip)).await,
                _ = &mut timer => {
                    let now = Instant::now();
                    if self.endpoint.expired(now) {
                        return "expired";
                    }
                    let sending = {
                        let keep_alive = self
                            .endpoint
                            .keep_alive_due(now)
                            .then(|| self.packet(PacketType::KeepAlive));
                        self.send_if_any(keep_alive)
                    };
                    sending.await;
                    timer.as_mut().reset(self.endpoint.next_deadline());
                }
            }
        }
    }

    /// Answers the client's ping here, once (a connection manager that does
    /// not answer pings forwards them); the credit for it, if one is due.
    fn answer_ping(&mut self, ping: &Packet) -> Option<Packet> {
        let mut pong = self.packet(PacketType::Pong);
        pong.body = ping.body.clone();
        self.queue_for_client(pong);
        let size = ping.body.as_ref().map_or(0, |b| b.len());
        self.endpoint.grant(size)
    }

    /// Sends the origin one last event (`DISCONNECT`: the client is gone;
    /// `CLOSE`: detached) in the background.
    fn tell_origin(&self, gateway: &Gateway, event: Event) {
        let request = gateway.request(&[event], 0);
        let client = self.shared.client.clone();
        let target = gateway.target.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.request(target.insecure, request))
                .await;
        });
    }

    /// Closes the client with 1011 (origin errors end up here).
    fn upstream_error(&mut self) -> &'static str {
        self.close_client(1011, "upstream error");
        "origin error"
    }
}

/// Sends one request; the answer's status, headers and (bounded) body.
/// Owns what it needs, so a session can wait for it among other things.
async fn exchange(
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

/// A request to the origin in flight, and how many events it offered.
type InFlight = (BoxFuture<'static, Result<Answer, ProxyError>>, usize);

/// Waits for the request in flight, or forever without one.
async fn answer_of(in_flight: &mut Option<InFlight>) -> Result<Answer, ProxyError> {
    match in_flight {
        Some((answer, _)) => answer.await,
        None => std::future::pending().await,
    }
}

/// What the origin took of a request.
#[derive(Debug, PartialEq, Eq)]
struct Taken {
    /// Message bytes accepted (credits for connmgr).
    content: usize,
    /// Message bytes offered but not accepted (`Content-Bytes-Replayed`
    /// of the next request).
    replayed: usize,
    /// Events of the request still pending.
    replay_events: usize,
}

/// Removes from `pending` (whose first `offered` events went in the
/// request) what the origin accepted: `accepted` bytes of message content
/// (everything when absent) counted from the front, a partly accepted
/// message keeping its rest, and a `CLOSE` (its payload counted last)
/// only once everything before it was taken. Accepting more than was
/// offered, or the content before a `CLOSE` but not the `CLOSE`, is a
/// fault of the origin.
fn take_accepted(
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
fn accepted_events(answer: &Answer) -> Option<Result<Vec<Event>, wsevents::EventsError>> {
    let content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    (answer.status == 200 && content_type == Some(wsevents::CONTENT_TYPE))
        .then(|| wsevents::parse(&answer.body))
}

/// The origin's headers for the client's answer.
fn client_headers(headers: &http::HeaderMap, skip: &[&str]) -> Vec<Header> {
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
