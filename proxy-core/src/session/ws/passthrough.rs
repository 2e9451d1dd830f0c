//! WebSocket passthrough: the client's handshake (a `ws://` session from
//! connmgr) is replayed to the route's target as a WebSocket handshake of
//! the proxy's own ([`super::connect`]). The target's `101` becomes the
//! session's `101`; a refusal (any other HTTP answer) goes to the client
//! as it is. Then messages, pings, pongs and closes travel both ways,
//! within connmgr's credits. A target that answers with
//! `Sec-WebSocket-Extensions: grip` gets GRIP over the connection (see
//! [`super::grip`]): its `c:` messages are control, its other messages
//! lose their prefix (or are dropped without it), and publishes reach the
//! client.
//!
//! The bridge waits for the next event (the origin's message, connmgr's
//! packet, a write to the origin done, a delivery, a timer) and hands each
//! to a small function of its own.

use super::client::WsClient;
use super::connect::{connect, response_headers, Connected, Io};
use super::grip::{sleep_until, Delivered, FromOrigin, Grip};
use super::VOUCH_INTERVAL;
use crate::prepare::Prepared;
use crate::session::request_body::REQUEST_WINDOW;
use crate::session::zhttp::{Ended, Zhttp};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::StreamExt;
use holdfast_protocol::wscontrol::Deliver;
use holdfast_protocol::zhttp::{Packet, PacketType, STALL_TIMEOUT};
use holdfast_runtime::ws::{self, Outbox};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Interval, Sleep};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long a WebSocket's closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

type Stream = SplitStream<WebSocketStream<Box<dyn Io>>>;
type Sink = SplitSink<WebSocketStream<Box<dyn Io>>, Message>;

/// Proxies a WebSocket session to the route's target. `prepared` comes
/// boxed: an async fn keeps its arguments' room for its whole life, and
/// this one lives as long as the connection.
pub(super) async fn serve(zhttp: &mut Zhttp, prepared: Box<Prepared>) -> Ended {
    let debug = zhttp.shared.debug || prepared.route.debug;
    let connected = match connect(&zhttp.shared, &prepared).await {
        Ok(connected) => connected,
        Err(err) => return (zhttp.fail_with(&err, debug).await, "origin error"),
    };
    let (ws, response) = match connected {
        Connected::Open(ws, response) => (ws, response),
        Connected::Refused(response) => {
            let code = response.status().as_u16();
            let mut packet = zhttp.packet(PacketType::Data);
            packet.code = Some(code);
            packet.reason = response.status().canonical_reason().map(str::to_owned);
            packet.headers = Some(response_headers(&response));
            packet.body = Some(Bytes::from(response.into_body().unwrap_or_default()));
            zhttp.send(packet).await;
            return (code, "websocket refused by origin");
        }
    };
    let mut accept = zhttp.packet(PacketType::Data);
    accept.code = Some(101);
    accept.reason = Some("Switching Protocols".into());
    accept.headers = Some(response_headers(&response));
    accept.credits = Some(zhttp.endpoint.offer(REQUEST_WINDOW as usize));
    // connmgr's messages may go past the window by one message.
    zhttp.endpoint.set_overshoot(zhttp.shared.max_message_size);
    zhttp.send(accept).await;
    let channel_prefix = prepared.route.prefix.clone().unwrap_or_default();
    let grip = Grip::of(zhttp, response.headers(), channel_prefix);
    // Not needed past the handshake, and the bridge may run for hours.
    drop(prepared);
    drop(response);
    let mut bridge = Bridge {
        client: WsClient::new(zhttp),
        grip,
        outbox: Outbox::default(),
        fragments: ws::Assembler::default(),
        to_grant: 0,
        detached: false,
    };
    let (sink, stream) = (*ws).split();
    let outcome = bridge.run(sink, stream).await;
    bridge.grip.end(bridge.client.zhttp).await;
    (101, outcome)
}

/// What happened next.
enum Event {
    /// The origin's next message (`None`: it is gone).
    Origin(Option<Result<Message, WsError>>),
    /// A packet from connmgr (`None`: shutting down).
    Client(Option<Box<Packet>>),
    /// A write to the origin finished (with the message bytes written).
    Written(Result<usize, WsError>),
    /// A publish for the client (`None`: the client fell too far behind).
    Deliver(Option<Arc<Deliver>>),
    /// The origin's timed GRIP messages are due.
    GripTimer,
    /// Time to tell the handler the session lives.
    Vouch,
    /// The session's keep-alive, expiry or stall check is due.
    Timer,
}

/// A WebSocket between connmgr's session and the target.
struct Bridge<'a> {
    client: WsClient<'a>,
    grip: Grip,
    /// What waits for the origin.
    outbox: Outbox,
    /// The client's message being reassembled.
    fragments: ws::Assembler,
    /// Bytes written to the origin, not yet given back to connmgr.
    to_grant: usize,
    /// The origin detached: its side is closed, the client's stays.
    detached: bool,
}

impl Bridge<'_> {
    /// Moves frames between connmgr's session and the target until either
    /// side ends. Both directions are flow-controlled: the origin is read
    /// while connmgr has credit for what it sends (and nothing else waits
    /// for the client), and what connmgr sends waits in an [`Outbox`] for
    /// the origin, whose progress becomes connmgr's credits. Pings are
    /// answered where they arrive (the origin's by tungstenite, the
    /// client's by connmgr), so neither is forwarded.
    async fn run(&mut self, mut sink: Sink, mut stream: Stream) -> &'static str {
        let timer = tokio::time::sleep_until(self.client.zhttp.endpoint.next_deadline());
        tokio::pin!(timer);
        // The handler forgets GRIP sessions not vouched for in 2 minutes.
        let mut vouch = tokio::time::interval_at(Instant::now() + VOUCH_INTERVAL, VOUCH_INTERVAL);
        loop {
            self.client.flush().await;
            let event = self
                .next_event(&mut sink, &mut stream, timer.as_mut(), &mut vouch)
                .await;
            let end = match event {
                Event::Origin(message) => self.on_origin(message).await,
                Event::Client(Some(packet)) => self.on_client(packet).await,
                Event::Client(None) => Some("shutdown"),
                Event::Written(written) => self.on_written(written).await,
                Event::Deliver(deliver) => self.on_deliver(deliver),
                Event::GripTimer => {
                    self.grip.tick(&mut self.client);
                    None
                }
                Event::Vouch => {
                    self.grip.alive(self.client.zhttp).await;
                    None
                }
                Event::Timer => self.on_timer(timer.as_mut()).await,
            };
            if let Some(outcome) = end {
                self.finish(outcome, &mut sink, &mut stream).await;
                return outcome;
            }
            if let Some(stall) = self.outbox.stall_deadline() {
                if stall < timer.deadline() {
                    timer.as_mut().reset(stall);
                }
            }
        }
    }

    async fn next_event(
        &mut self,
        sink: &mut Sink,
        stream: &mut Stream,
        timer: Pin<&mut Sleep>,
        vouch: &mut Interval,
    ) -> Event {
        let client_ready = self.client.is_ready();
        let can_read = client_ready && self.client.zhttp.endpoint.can_send() && !self.detached;
        let grip_timers = self.grip.deadline();
        let writing = !self.outbox.is_idle();
        let grip_on = self.grip.is_on();
        tokio::select! {
            message = stream.next(), if can_read => Event::Origin(message),
            packet = self.client.zhttp.inbox.recv() => Event::Client(packet),
            written = self.outbox.write(sink), if writing => Event::Written(written),
            deliver = self.grip.next_delivery(), if client_ready => Event::Deliver(deliver),
            _ = sleep_until(grip_timers) => Event::GripTimer,
            _ = vouch.tick(), if grip_on => Event::Vouch,
            _ = timer => Event::Timer,
        }
    }

    /// A message from the origin, or its end; `Some` ends the session.
    async fn on_origin(
        &mut self,
        message: Option<Result<Message, WsError>>,
    ) -> Option<&'static str> {
        match message {
            Some(Ok(message)) => self.on_origin_message(message).await,
            Some(Err(WsError::Capacity(err))) => {
                tracing::info!(session = %self.client.zhttp.id(), "origin message too big: {err}");
                self.outbox.push(ws::close(1009, "message too big"));
                self.client.close(1009, "message too big");
                Some("origin message too big")
            }
            Some(Err(err)) => {
                tracing::info!(session = %self.client.zhttp.id(), error = %err, "origin WebSocket failed");
                self.client.origin_failed();
                Some("origin failed")
            }
            None => {
                self.client.origin_failed();
                Some("origin gone")
            }
        }
    }

    /// A message from the origin, for the client; `Some` ends the session.
    async fn on_origin_message(&mut self, message: Message) -> Option<&'static str> {
        let message = match message {
            Message::Text(_) | Message::Binary(_) => {
                let text = message.is_text();
                let content = match message {
                    Message::Text(t) => Bytes::copy_from_slice(t.as_bytes()),
                    other => other.into_data(),
                };
                match self
                    .grip
                    .origin_message(&mut self.client, content, text)
                    .await
                {
                    FromOrigin::Forward(content) => ws::message(!text, content),
                    FromOrigin::Skip => return None,
                    FromOrigin::Detach => {
                        tracing::debug!(session = %self.client.zhttp.id(), "origin detached");
                        self.outbox.push(ws::close(1000, "detached"));
                        self.detached = true;
                        return None;
                    }
                }
            }
            // Answered by tungstenite; connmgr's client answers its own.
            Message::Ping(_) | Message::Frame(_) => return None,
            other => other,
        };
        let closing = matches!(message, Message::Close(_));
        let mut p = self.client.packet(PacketType::Data);
        ws::fill_packet(&mut p, message);
        self.client.queue(p);
        closing.then_some("closed by origin")
    }

    /// A packet from connmgr, for the origin; `Some` ends the session.
    /// The packet stays boxed: this future is part of the connection's
    /// for its life, and a packet by value would keep its room (twice).
    async fn on_client(&mut self, packet: Box<Packet>) -> Option<&'static str> {
        if !self.client.take_in(&packet) {
            if !self.detached {
                self.outbox.push(ws::close(1011, "internal error"));
            }
            let cancel = self.client.packet(PacketType::Cancel);
            self.client.zhttp.send(cancel).await;
            return Some("bad seq");
        }
        let size = packet.body.as_ref().map_or(0, Bytes::len);
        match packet.kind() {
            PacketType::Ping => {
                self.client.answer_ping(&packet).await;
                None
            }
            PacketType::Data | PacketType::Pong if self.detached => {
                // Nobody to send it to: dropped, its credits given back.
                self.client.zhttp.give_back(size).await;
                None
            }
            PacketType::Close if self.detached => Some("closed by client"),
            PacketType::Data | PacketType::Pong | PacketType::Close => {
                let message = self.fragments.message_of(&packet)?;
                let closing = matches!(message, Message::Close(_));
                self.outbox.push(message);
                closing.then_some("closed by client")
            }
            PacketType::Cancel | PacketType::Error => {
                if !self.detached {
                    self.outbox.push(ws::close(1001, "client gone"));
                }
                Some("client gone")
            }
            _ => None,
        }
    }

    /// A write to the origin finished: what it took becomes connmgr's
    /// credits, half a window at a time (or all once nothing waits).
    async fn on_written(&mut self, written: Result<usize, WsError>) -> Option<&'static str> {
        match written {
            Ok(bytes) => {
                self.to_grant += bytes;
                if self.to_grant >= REQUEST_WINDOW as usize / 2
                    || (self.outbox.is_empty() && self.to_grant > 0)
                {
                    let n = std::mem::take(&mut self.to_grant);
                    self.client.zhttp.give_back(n).await;
                }
                None
            }
            Err(err) => {
                tracing::info!(session = %self.client.zhttp.id(), error = %err, "write to the origin failed");
                self.client.origin_failed();
                Some("origin gone")
            }
        }
    }

    /// A publish for the client; `Some` ends the session.
    fn on_deliver(&mut self, deliver: Option<Arc<Deliver>>) -> Option<&'static str> {
        let Some(deliver) = deliver else {
            self.client.close(1008, "too slow for publishes");
            if !self.detached {
                self.outbox.push(ws::close(1001, "client gone"));
            }
            return Some("client too slow");
        };
        match self.grip.deliver(&mut self.client, deliver) {
            Delivered::Closed => {
                if !self.detached {
                    self.outbox.push(ws::close(1000, "closed by publish"));
                }
                Some("closed by publish")
            }
            Delivered::Sent | Delivered::Refresh => None,
        }
    }

    /// Expiry, a stalled origin, or a keep-alive due.
    async fn on_timer(&mut self, mut timer: Pin<&mut Sleep>) -> Option<&'static str> {
        let now = Instant::now();
        if self.client.zhttp.endpoint.expired(now) {
            self.outbox.push(ws::close(1001, "client gone"));
            return Some("expired");
        }
        if self.outbox.stall_deadline().is_some_and(|at| now >= at) {
            tracing::info!(session = %self.client.zhttp.id(), "origin read nothing for {}s: closing", STALL_TIMEOUT.as_secs());
            self.client.close(1011, "upstream stalled");
            return Some("origin stalled");
        }
        let zhttp = &mut *self.client.zhttp;
        let keep_alive = zhttp
            .endpoint
            .keep_alive_due(now)
            .then(|| zhttp.packet(PacketType::KeepAlive));
        zhttp.send_if_any(keep_alive).await;
        let mut at = zhttp.endpoint.next_deadline();
        if let Some(stall) = self.outbox.stall_deadline() {
            at = at.min(stall);
        }
        timer.as_mut().reset(at);
        None
    }

    /// Last words both ways: to the origin briefly, to the client as long
    /// as it reads. A client's close waits for the origin's answering
    /// close, which goes to the client as the answer to its own.
    async fn finish(&mut self, outcome: &str, sink: &mut Sink, stream: &mut Stream) {
        let outbox = &mut self.outbox;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while !outbox.is_idle() {
                if outbox.write(sink).await.is_err() {
                    return;
                }
            }
        })
        .await;
        if outcome == "closed by client" && !self.detached {
            let answer = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        return Some(message);
                    }
                }
                None
            })
            .await;
            if let Ok(Some(close)) = answer {
                let mut p = self.client.packet(PacketType::Data);
                ws::fill_packet(&mut p, close);
                self.client.queue(p);
            }
        }
        self.client.drain().await;
    }
}
