//! WebSocket-over-HTTP (route target option `over_http`): the client's
//! WebSocket becomes a series of `POST`s of `application/websocket-events`
//! to the target, one in flight at a time, each carrying the client's
//! events queued meanwhile ([`gateway`]); the events of each answer go to
//! the client. The first request is `OPEN` ([`open`]); an answer other
//! than `200` with `OPEN` refuses the handshake with the origin's own
//! response. `Keep-Alive-Interval` makes idle connections send empty
//! requests; `Content-Bytes-Accepted` re-offers what the origin did not
//! take. With `Sec-WebSocket-Extensions: grip` in the accepting answer,
//! origin messages must carry the message prefix (`m:` unless set), which
//! is removed, and `c:` messages are GRIP control messages (see
//! [`super::grip`]).
//!
//! The loop waits for the next event (the origin's answer, connmgr's
//! packet, a delivery, a timer) and hands each to a small function.

mod gateway;
mod open;

use super::client::WsClient;
use super::grip::{sleep_until, Delivered, FromOrigin, Grip};
use super::VOUCH_INTERVAL;
use crate::error::ProxyError;
use crate::prepare::Prepared;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use gateway::{accepted_events, exchange, take_accepted, Answer, Gateway, REQUEST_TIMEOUT};
use holdfast_protocol::wscontrol::Deliver;
use holdfast_protocol::wsevents::{Event, EventKind};
use holdfast_protocol::zhttp::{Packet, PacketType};
use holdfast_runtime::ws;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{Instant, Interval, Sleep};
use tokio_tungstenite::tungstenite::Message;

/// Serves a WebSocket session through a WebSocket-over-HTTP origin.
///
/// This future lives as long as the connection, so what only the
/// handshake needs is in [`open::open`]'s, boxed and gone once the
/// connection is open; `prepared` comes boxed for the same reason (an
/// async fn keeps its arguments' room for good).
pub(super) async fn serve(zhttp: &mut Zhttp, prepared: Box<Prepared>) -> Ended {
    let opened = match Box::pin(open::open(zhttp, prepared)).await {
        Ok(opened) => opened,
        Err(ended) => return ended,
    };
    let mut connection = Connection {
        client: WsClient::new(zhttp),
        grip: opened.grip,
        gateway: opened.gateway,
        pending: VecDeque::new(),
        replayed: 0,
        replay_events: 0,
        fragments: ws::Assembler::default(),
        exchange: Exchange::Idle(Instant::now()),
        closing: false,
        refresh: false,
    };
    let delivered = Box::pin(connection.deliver_to_client(opened.events.into_iter())).await;
    let outcome = match delivered {
        Some(outcome) => outcome,
        None => connection.run().await,
    };
    connection.client.drain().await;
    Box::pin(connection.grip.end(connection.client.zhttp)).await;
    (101, outcome)
}

/// Where the exchange with the origin stands.
enum Exchange {
    /// No request in flight, since then.
    Idle(Instant),
    /// A request in flight, and how many events it offered.
    InFlight(BoxFuture<'static, Result<Answer, ProxyError>>, usize),
}

/// What happened next.
enum Next {
    /// The origin answered the request in flight.
    Answer(Result<Answer, ProxyError>),
    /// A packet from connmgr (`None`: shutting down).
    Client(Option<Box<Packet>>),
    /// A publish for the client (`None`: the client fell too far behind).
    Deliver(Option<Arc<Deliver>>),
    /// The origin's timed GRIP messages are due.
    GripTimer,
    /// The origin's keep-alive request is due.
    KeepAlive,
    /// Time to tell the handler the session lives.
    Vouch,
    /// The session's keep-alive or expiry is due.
    Timer,
}

/// A WebSocket-over-HTTP connection the origin accepted.
struct Connection<'a> {
    client: WsClient<'a>,
    grip: Grip,
    gateway: Box<Gateway>,
    /// The client's events for the origin, oldest first.
    pending: VecDeque<Event>,
    /// Message bytes the last request offered that the origin did not take.
    replayed: usize,
    /// Events of the last request the origin did not take (still first
    /// in `pending`): re-offered, but not a reason for a request alone.
    replay_events: usize,
    /// The client's message being reassembled.
    fragments: ws::Assembler,
    exchange: Exchange,
    /// The client closed: its close waits for the origin to take it.
    closing: bool,
    /// A publish asked for a request now (`action: refresh`).
    refresh: bool,
}

impl Connection<'_> {
    /// Client events out, origin events back, one request at a time. A
    /// new request goes only once the client has taken what the last
    /// answer brought (connmgr's credits), so a slow client slows the
    /// origin; the client's messages are always taken meanwhile (within
    /// the window granted) and go in the next request.
    async fn run(&mut self) -> &'static str {
        let timer = tokio::time::sleep_until(self.client.zhttp.endpoint.next_deadline());
        tokio::pin!(timer);
        let mut vouch = tokio::time::interval_at(Instant::now() + VOUCH_INTERVAL, VOUCH_INTERVAL);
        loop {
            self.client.flush().await;
            self.ask_if_due();
            let end = match self.next_event(timer.as_mut(), &mut vouch).await {
                // Boxed: this future is the connection's for its life.
                Next::Answer(answer) => Box::pin(self.on_answer(answer)).await,
                Next::Client(Some(packet)) => self.on_client(packet).await,
                Next::Client(None) => Some("shutdown"),
                Next::Deliver(deliver) => self.on_deliver(deliver),
                Next::GripTimer => {
                    self.grip.tick(&mut self.client);
                    None
                }
                Next::KeepAlive => None,
                Next::Vouch => {
                    Box::pin(self.grip.alive(self.client.zhttp)).await;
                    None
                }
                Next::Timer => self.on_timer(timer.as_mut()).await,
            };
            if let Some(outcome) = end {
                return outcome;
            }
        }
    }

    /// Sends what is waiting, or a keep-alive when the origin asked for
    /// one, once no request is in flight and the client took the last
    /// answer's events.
    fn ask_if_due(&mut self) {
        if self.gateway.detached {
            self.pending.clear();
            return;
        }
        let Exchange::Idle(since) = self.exchange else {
            return;
        };
        if !self.client.is_ready() {
            return;
        }
        let due = self.refresh
            || self
                .gateway
                .keep_alive
                .is_some_and(|k| since.elapsed() >= k);
        if self.pending.len() > self.replay_events || due {
            self.refresh = false;
            let events: Vec<Event> = self.pending.iter().cloned().collect();
            let request = self.gateway.request(&events, self.replayed);
            let shared = &self.client.zhttp.shared;
            let answer = exchange(shared.client.clone(), self.gateway.target.clone(), request);
            self.exchange = Exchange::InFlight(Box::pin(answer), events.len());
        }
    }

    async fn next_event(&mut self, timer: Pin<&mut Sleep>, vouch: &mut Interval) -> Next {
        // When the origin's keep-alive request falls due.
        let keep_alive_at = match self.exchange {
            Exchange::Idle(since) if !self.gateway.detached => {
                self.gateway.keep_alive.map(|k| since + k)
            }
            _ => None,
        };
        let client_ready = self.client.is_ready();
        let grip_timers = self.grip.deadline();
        let grip_on = self.grip.is_on();
        tokio::select! {
            answer = answer_of(&mut self.exchange) => Next::Answer(answer),
            packet = self.client.zhttp.inbox.recv() => Next::Client(packet),
            deliver = self.grip.next_delivery(), if client_ready => Next::Deliver(deliver),
            _ = sleep_until(grip_timers) => Next::GripTimer,
            _ = sleep_until(keep_alive_at) => Next::KeepAlive,
            _ = vouch.tick(), if grip_on => Next::Vouch,
            _ = timer => Next::Timer,
        }
    }

    /// The origin's answer: what it took of the request (connmgr's
    /// credits back), and its events for the client; `Some` ends the
    /// session.
    async fn on_answer(&mut self, answer: Result<Answer, ProxyError>) -> Option<&'static str> {
        let offered = match std::mem::replace(&mut self.exchange, Exchange::Idle(Instant::now())) {
            Exchange::InFlight(_, offered) => offered,
            Exchange::Idle(_) => 0,
        };
        let id = self.client.zhttp.id().to_owned();
        let answer = match answer {
            Ok(answer) => answer,
            Err(err) => {
                tracing::warn!(session = %id, "{err}");
                return Some(self.upstream_error());
            }
        };
        let parsed = match accepted_events(&answer) {
            Some(Ok(events)) => events,
            Some(Err(err)) => {
                tracing::warn!(session = %id, "malformed websocket-events from the origin: {err}");
                return Some(self.upstream_error());
            }
            None => {
                tracing::warn!(session = %id, status = answer.status, "WebSocket-over-HTTP origin answered without websocket-events");
                return Some(self.upstream_error());
            }
        };
        self.gateway.absorb(&answer.headers);
        let accepted = answer
            .headers
            .get("content-bytes-accepted")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let taken = match take_accepted(&mut self.pending, offered, accepted) {
            Ok(taken) => taken,
            Err(fault) => {
                tracing::warn!(session = %id, "WebSocket-over-HTTP origin {fault}");
                return Some(self.upstream_error());
            }
        };
        self.replayed = taken.replayed;
        self.replay_events = taken.replay_events;
        self.client.zhttp.give_back(taken.content).await;
        if let Some(outcome) = self.deliver_to_client(parsed.into_iter()).await {
            return Some(outcome);
        }
        (self.closing && self.pending.is_empty()).then_some("closed by client")
    }

    /// Queues the origin's events for the client (sent within connmgr's
    /// credits); `Some` when the connection ends.
    async fn deliver_to_client(
        &mut self,
        events: impl Iterator<Item = Event>,
    ) -> Option<&'static str> {
        for event in events {
            match event.kind {
                EventKind::Text | EventKind::Binary => {
                    let text = event.kind == EventKind::Text;
                    let forwarded = self
                        .grip
                        .origin_message(&mut self.client, event.content, text);
                    let content = match forwarded.await {
                        FromOrigin::Forward(content) => content,
                        FromOrigin::Skip => continue,
                        FromOrigin::Detach => {
                            self.detach();
                            continue;
                        }
                    };
                    let mut p = self.client.packet(PacketType::Data);
                    p.content_type = Some(if text { "text" } else { "binary" }.into());
                    p.body = Some(content);
                    self.client.queue(p);
                }
                EventKind::Ping | EventKind::Pong => {
                    let kind = if event.kind == EventKind::Ping {
                        PacketType::Ping
                    } else {
                        PacketType::Pong
                    };
                    let mut p = self.client.packet(kind);
                    p.body = Some(event.content);
                    self.client.queue(p);
                }
                EventKind::Close if self.gateway.detached => {}
                EventKind::Close => {
                    let (code, reason) = event.close_parts();
                    let mut p = self.client.packet(PacketType::Close);
                    p.code = (code != 1005).then_some(code);
                    p.body = Some(Bytes::from(reason));
                    self.client.queue(p);
                    return Some("closed by origin");
                }
                EventKind::Disconnect | EventKind::Open => {
                    self.client.origin_failed();
                    return Some("disconnected by origin");
                }
                EventKind::Other(_) => {}
            }
        }
        None
    }

    /// The origin sent GRIP `detach`: it is sent `CLOSE` and gets no more
    /// requests; the client stays, for publishes.
    fn detach(&mut self) {
        if !self.gateway.detached {
            tracing::debug!(session = %self.client.zhttp.id(), "origin detached");
            self.gateway.detached = true;
            self.tell_origin(Event::close(1000, ""));
        }
    }

    /// A packet from connmgr: its events queued for the origin; `Some`
    /// ends the session.
    /// The packet stays boxed: this future is part of the connection's
    /// for its life, and a packet by value would keep its room (twice).
    async fn on_client(&mut self, packet: Box<Packet>) -> Option<&'static str> {
        if !self.client.take_in(&packet) {
            self.client.close(1011, "internal error");
            return Some("bad seq");
        }
        let detached = self.gateway.detached;
        match packet.kind() {
            PacketType::Ping => self.client.answer_ping(&packet).await,
            PacketType::Data | PacketType::Pong if detached => {
                // Nobody to send it to: dropped, its credits given back.
                let size = packet.body.as_ref().map_or(0, |b| b.len());
                self.client.zhttp.give_back(size).await;
            }
            PacketType::Close if detached => return Some("closed by client"),
            PacketType::Data => match self.fragments.push(&packet) {
                Some(Message::Text(text)) => self.pending.push_back(Event::new(
                    EventKind::Text,
                    Bytes::copy_from_slice(text.as_bytes()),
                )),
                Some(Message::Binary(data)) => {
                    self.pending.push_back(Event::new(EventKind::Binary, data))
                }
                _ => {}
            },
            PacketType::Pong => self
                .pending
                .push_back(Event::new(EventKind::Pong, packet.body.unwrap_or_default())),
            PacketType::Close => {
                let reason = packet
                    .body
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                self.pending
                    .push_back(Event::close(packet.code.unwrap_or(1000), &reason));
                self.closing = true;
            }
            PacketType::Cancel | PacketType::Error => {
                self.disconnect_origin();
                return Some("client gone");
            }
            _ => {}
        }
        None
    }

    /// A publish for the client; `Some` ends the session.
    fn on_deliver(&mut self, deliver: Option<Arc<Deliver>>) -> Option<&'static str> {
        let Some(deliver) = deliver else {
            self.client.close(1008, "too slow for publishes");
            self.disconnect_origin();
            return Some("client too slow");
        };
        match self.grip.deliver(&mut self.client, deliver) {
            Delivered::Closed => {
                // Closed by a publish: the origin hears of it as a disconnect.
                self.disconnect_origin();
                Some("closed by publish")
            }
            Delivered::Refresh => {
                self.refresh = true;
                None
            }
            Delivered::Sent => None,
        }
    }

    /// Expiry, or a keep-alive to connmgr due.
    async fn on_timer(&mut self, mut timer: Pin<&mut Sleep>) -> Option<&'static str> {
        let now = Instant::now();
        if self.client.zhttp.endpoint.expired(now) {
            return Some("expired");
        }
        let zhttp = &mut *self.client.zhttp;
        let keep_alive = zhttp
            .endpoint
            .keep_alive_due(now)
            .then(|| zhttp.packet(PacketType::KeepAlive));
        zhttp.send_if_any(keep_alive).await;
        timer.as_mut().reset(zhttp.endpoint.next_deadline());
        None
    }

    /// Tells the origin the client is gone (unless it detached).
    fn disconnect_origin(&self) {
        if !self.gateway.detached {
            self.tell_origin(Event::new(EventKind::Disconnect, Bytes::new()));
        }
    }

    /// Sends the origin one last event (`DISCONNECT`: the client is gone;
    /// `CLOSE`: detached) in the background.
    fn tell_origin(&self, event: Event) {
        let request = self.gateway.request(&[event], 0);
        let client = self.client.zhttp.shared.client.clone();
        let target = self.gateway.target.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, client.request(target.insecure, request))
                .await;
        });
    }

    /// Closes the client with 1011 (origin errors end up here).
    fn upstream_error(&mut self) -> &'static str {
        self.client.close(1011, "upstream error");
        "origin error"
    }
}

/// Waits for the request in flight, or forever without one.
async fn answer_of(exchange: &mut Exchange) -> Result<Answer, ProxyError> {
    match exchange {
        Exchange::InFlight(answer, _) => answer.await,
        Exchange::Idle(_) => std::future::pending().await,
    }
}
