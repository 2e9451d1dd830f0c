//! The handler's event loop: one task owns every held session, the channel
//! index and one timer queue (hold timeouts, stream keep-alives and ZHTTP
//! liveness all live in a single `DelayQueue`, a timer wheel), so a held
//! connection costs a map entry and a few timer slots, not a task.
//!
//! Fan-out: a publish to a channel sends one packet per connmgr for every
//! session ready to take the content (`id` is the list of `{id, seq}`), up
//! to [`BATCH`] sessions a packet; sessions short of credits queue the item.

use crate::sequencing::{Sequencer, MESSAGE_WAIT};
use crate::session::{published_response, Session, QUEUE_MAX};
use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::handoff::{Accept, HoldMode, Response};
use holdfast_protocol::publish::{Action, Item};
use holdfast_protocol::zhttp::{IdSeq, Ids, Packet, PacketType};
use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::Multipart;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

/// Sessions addressed by one delivery packet. Large enough that a publish
/// to 10,000 subscribers of one connmgr is a handful of packets, small
/// enough that connmgr's per-packet work stays short.
pub const BATCH: usize = 4096;

/// ZHTTP liveness: a keep-alive every 45 s, and a session is dropped when
/// connmgr has been silent for 60 s (Pushpin's values).
const LINK_KEEP_ALIVE: Duration = Duration::from_secs(45);
const LINK_EXPIRY: Duration = Duration::from_secs(60);

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A session's timer (key = session).
    Session(SessionTimer),
    /// A channel's out-of-order items waited long enough (key = channel).
    Sequence,
}

/// A session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionTimer {
    /// Long-poll timeout, or stream keep-alive.
    Hold,
    /// ZHTTP keep-alive and expiry.
    Link,
}

/// Owner of all held sessions.
pub struct Engine {
    link: Arc<Link>,
    sessions: HashMap<String, Session>,
    /// Channel → keys of subscribed sessions.
    channels: HashMap<String, HashSet<String>>,
    timers: DelayQueue<(String, Timer)>,
    /// When each session last heard from connmgr.
    heard: HashMap<String, Instant>,
    /// The SUB publish input's subscriptions, following local interest.
    sub_control: Option<mpsc::Sender<Multipart>>,
    /// Subscription changes not yet sent to it.
    sub_changes: Vec<Multipart>,
    /// Item order and duplicates per channel.
    sequencer: Sequencer,
}

fn key_of(connmgr: &str, id: &str) -> String {
    format!("{connmgr} {id}")
}

impl Engine {
    /// An engine sending through `link`.
    pub fn new(link: Arc<Link>, sub_control: Option<mpsc::Sender<Multipart>>) -> Engine {
        Engine {
            link,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            timers: DelayQueue::new(),
            heard: HashMap::new(),
            sub_control,
            sub_changes: Vec::new(),
            sequencer: Sequencer::default(),
        }
    }

    /// Runs until `token` is cancelled; then ends every held session cleanly
    /// (streams end, long-polls get their timeout response).
    pub async fn run(
        mut self,
        mut accepts: mpsc::Receiver<Multipart>,
        mut packets: mpsc::Receiver<Packet>,
        mut publishes: mpsc::Receiver<Vec<Item>>,
        token: CancellationToken,
    ) {
        loop {
            let timers_armed = !self.timers.is_empty();
            tokio::select! {
                msg = accepts.recv() => match msg {
                    Some(msg) => self.accept_frame(&msg).await,
                    None => break,
                },
                packet = packets.recv() => match packet {
                    Some(packet) => self.on_packet(packet).await,
                    None => break,
                },
                items = publishes.recv() => match items {
                    Some(items) => {
                        for item in items {
                            self.offer(item).await;
                        }
                    }
                    None => break,
                },
                expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)), if timers_armed => {
                    if let Some(expired) = expired {
                        let (key, timer) = expired.into_inner();
                        self.on_timer(key, timer).await;
                    }
                }
                _ = token.cancelled() => break,
            }
            if let Some(control) = &self.sub_control {
                for change in self.sub_changes.drain(..) {
                    if control.send(change).await.is_err() {
                        break;
                    }
                }
            } else {
                self.sub_changes.clear();
            }
        }
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        for key in keys {
            self.finish(&key).await;
        }
    }

    async fn send(&self, to: &str, packet: &Packet) {
        if let Err(err) = self.link.send(to, packet).await {
            tracing::warn!(error = %err, "packet to connmgr not encoded");
        }
    }

    async fn accept_frame(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        match format::decode::<Accept>(frame) {
            Ok(accept) => self.accept(accept).await,
            Err(err) => tracing::warn!(error = %err, "undecodable hand-over dropped"),
        }
    }

    async fn accept(&mut self, accept: Accept) {
        let key = key_of(&accept.connmgr, &accept.id);
        let timeout = accept.hold.timeout;
        let mut session = Session::from_accept(accept);
        let from = self.link.id.clone();
        match session.mode {
            HoldMode::Stream => {
                let mut response = session.timeout_response.clone();
                let body = std::mem::take(&mut response.body);
                let now = body.len().min(session.credits);
                response.body = body.slice(..now);
                session.credits -= now;
                if now < body.len() {
                    session.queue.push_back(body.slice(now..));
                }
                let packet = session.response_packet(&from, &response, true);
                self.send(&session.connmgr, &packet).await;
                if let Some(ka) = &session.keep_alive {
                    session.hold_timer = Some(self.timers.insert(
                        (key.clone(), Timer::Session(SessionTimer::Hold)),
                        Duration::from_secs(ka.timeout.into()),
                    ));
                }
            }
            HoldMode::Response => {
                // Our first packet tells connmgr the session moved here.
                let packet = session.packet(&from, PacketType::KeepAlive);
                self.send(&session.connmgr, &packet).await;
                session.hold_timer = Some(self.timers.insert(
                    (key.clone(), Timer::Session(SessionTimer::Hold)),
                    Duration::from_secs(timeout.into()),
                ));
            }
        }
        session.link_timer = Some(self.timers.insert(
            (key.clone(), Timer::Session(SessionTimer::Link)),
            LINK_KEEP_ALIVE,
        ));
        for channel in &session.channels {
            let subscribers = self.channels.entry(channel.clone()).or_default();
            if subscribers.is_empty() {
                self.sub_changes
                    .push(crate::publish::zmq_sub::subscription(channel, true));
            }
            subscribers.insert(key.clone());
        }
        tracing::debug!(session = %key, mode = ?session.mode, channels = ?session.channels, "session held");
        self.heard.insert(key.clone(), Instant::now());
        self.sessions.insert(key, session);
    }

    async fn on_packet(&mut self, packet: Packet) {
        let (Some(from), Some(id)) = (packet.from.clone(), packet.single_id().map(str::to_owned))
        else {
            return;
        };
        let key = key_of(&from, &id);
        let Some(session) = self.sessions.get_mut(&key) else {
            if !matches!(packet.kind(), PacketType::Cancel | PacketType::Error) {
                let cancel = Packet::new(PacketType::Cancel, &self.link.id, &id, 0);
                self.send(&from, &cancel).await;
            }
            return;
        };
        if let Some(seq) = packet.seq {
            if seq != session.in_seq {
                tracing::warn!(session = %key, expected = session.in_seq, got = seq, "out-of-order packet from connmgr");
                let cancel = session.packet(&self.link.id, PacketType::Cancel);
                let to = session.connmgr.clone();
                self.send(&to, &cancel).await;
                self.remove(&key);
                return;
            }
            session.in_seq = seq.wrapping_add(1);
        }
        self.heard.insert(key.clone(), Instant::now());
        if let Some(credits) = packet.credits {
            session.credits = session.credits.saturating_add(credits as usize);
        }
        match packet.kind() {
            PacketType::Cancel | PacketType::Error => {
                tracing::debug!(session = %key, "client gone");
                self.remove(&key);
            }
            _ => self.flush(&key).await,
        }
    }

    /// Sends queued content that now fits the credits; ends the session when
    /// it was closing and the queue is empty.
    async fn flush(&mut self, key: &str) {
        let from = self.link.id.clone();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let mut packets = Vec::new();
        while session.credits > 0 {
            let Some(front) = session.queue.front_mut() else {
                break;
            };
            let n = front.len().min(session.credits);
            let chunk = front.split_to(n);
            if front.is_empty() {
                session.queue.pop_front();
            }
            session.credits -= n;
            let mut packet = session.packet(&from, PacketType::Data);
            packet.body = Some(chunk);
            packet.more = true;
            packets.push(packet);
        }
        let end = session.closing && session.queue.is_empty();
        if end {
            let mut last = session.packet(&from, PacketType::Data);
            last.body = Some(Bytes::new());
            packets.push(last);
        }
        let to = session.connmgr.clone();
        for packet in &packets {
            self.send(&to, packet).await;
        }
        if end {
            self.remove(key);
        }
    }

    async fn publish(&mut self, item: Item) {
        let Some(subscribers) = self.channels.get(&item.channel) else {
            return;
        };
        let keys: Vec<String> = subscribers.iter().cloned().collect();
        let from = self.link.id.clone();
        // connmgr → sessions that take the content now, in one packet.
        let mut ready: HashMap<String, Vec<IdSeq>> = HashMap::new();
        let mut to_flush = Vec::new();
        let mut to_drop = Vec::new();
        let mut responses: Vec<(String, Response)> = Vec::new();
        for key in &keys {
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            match session.mode {
                HoldMode::Stream => {
                    let Some(stream) = &item.formats.http_stream else {
                        continue;
                    };
                    match stream.action {
                        Action::Send
                            if session.queue.is_empty()
                                && !session.closing
                                && session.credits >= stream.content.len() =>
                        {
                            session.credits -= stream.content.len();
                            ready
                                .entry(session.connmgr.clone())
                                .or_default()
                                .push(IdSeq {
                                    id: session.id.clone(),
                                    seq: Some(session.out_seq),
                                });
                            session.out_seq = session.out_seq.wrapping_add(1);
                            if let (Some(ka), Some(timer)) =
                                (&session.keep_alive, &session.hold_timer)
                            {
                                if ka.idle {
                                    self.timers
                                        .reset(timer, Duration::from_secs(ka.timeout.into()));
                                }
                            }
                        }
                        Action::Send if session.queue.len() >= QUEUE_MAX => {
                            tracing::info!(session = %key, "client too slow: {QUEUE_MAX} items queued; disconnecting");
                            to_drop.push(key.clone());
                        }
                        Action::Send => {
                            session.queue.push_back(stream.content.clone());
                            to_flush.push(key.clone());
                        }
                        Action::Close => {
                            session.closing = true;
                            to_flush.push(key.clone());
                        }
                        Action::Hint | Action::Refresh => {
                            tracing::debug!(session = %key, "hint: recovery needs next links, not supported yet");
                        }
                    }
                }
                HoldMode::Response => {
                    let Some(response) = &item.formats.http_response else {
                        continue;
                    };
                    if response.action == Action::Send {
                        responses.push((
                            key.clone(),
                            published_response(&session.timeout_response, response),
                        ));
                    }
                }
            }
        }
        if let Some(stream) = &item.formats.http_stream {
            for (connmgr, ids) in ready {
                for batch in ids.chunks(BATCH) {
                    let mut packet = Packet::new(PacketType::Data, &from, "", 0);
                    packet.id = Some(Ids::Many(batch.to_vec()));
                    packet.seq = None;
                    packet.body = Some(stream.content.clone());
                    packet.more = true;
                    self.send(&connmgr, &packet).await;
                }
            }
        }
        for (key, response) in responses {
            self.respond(&key, response).await;
        }
        for key in to_flush {
            self.flush(&key).await;
        }
        for key in to_drop {
            if let Some(session) = self.sessions.get_mut(&key) {
                let cancel = session.packet(&from, PacketType::Cancel);
                let to = session.connmgr.clone();
                self.send(&to, &cancel).await;
            }
            self.remove(&key);
        }
    }

    /// Sends a whole response (long-poll answer) and ends the session once
    /// it is out.
    async fn respond(&mut self, key: &str, mut response: Response) {
        let from = self.link.id.clone();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let body = std::mem::take(&mut response.body);
        let now = body.len().min(session.credits);
        response.body = body.slice(..now);
        session.credits -= now;
        let rest = body.slice(now..);
        let more = !rest.is_empty();
        let packet = session.response_packet(&from, &response, more);
        let to = session.connmgr.clone();
        if more {
            session.queue.push_back(rest);
            session.closing = true;
        }
        self.unsubscribe(key);
        self.send(&to, &packet).await;
        if !more {
            self.remove(key);
        }
    }

    /// Takes a published item through sequencing, then delivers what it
    /// releases. Channels without local sessions are not tracked at all.
    async fn offer(&mut self, item: Item) {
        if !self.channels.contains_key(&item.channel) {
            return;
        }
        let channel = item.channel.clone();
        let outcome = self.sequencer.offer(item, Instant::now());
        if outcome.start_wait {
            self.timers.insert((channel, Timer::Sequence), MESSAGE_WAIT);
        }
        for item in outcome.release {
            self.publish(item).await;
        }
    }

    async fn on_timer(&mut self, key: String, timer: Timer) {
        match timer {
            Timer::Sequence => {
                for item in self.sequencer.give_up(&key) {
                    self.publish(item).await;
                }
            }
            Timer::Session(timer) => self.on_session_timer(key, timer).await,
        }
    }

    async fn on_session_timer(&mut self, key: String, timer: SessionTimer) {
        let from = self.link.id.clone();
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        match timer {
            SessionTimer::Hold => {
                session.hold_timer = None;
                match session.mode {
                    HoldMode::Response => {
                        let response = session.timeout_response.clone();
                        self.respond(&key, response).await;
                    }
                    HoldMode::Stream => {
                        let Some(ka) = session.keep_alive.clone() else {
                            return;
                        };
                        if session.queue.is_empty() && session.credits >= ka.data.len() {
                            session.credits -= ka.data.len();
                            let mut packet = session.packet(&from, PacketType::Data);
                            packet.body = Some(ka.data.clone());
                            packet.more = true;
                            let to = session.connmgr.clone();
                            self.send(&to, &packet).await;
                        }
                        if let Some(session) = self.sessions.get_mut(&key) {
                            session.hold_timer = Some(self.timers.insert(
                                (key.clone(), Timer::Session(SessionTimer::Hold)),
                                Duration::from_secs(ka.timeout.into()),
                            ));
                        }
                    }
                }
            }
            SessionTimer::Link => {
                session.link_timer = None;
                let silent = self
                    .heard
                    .get(&key)
                    .is_none_or(|t| t.elapsed() > LINK_EXPIRY);
                if silent {
                    tracing::info!(session = %key, "connmgr silent for {}s: session dropped", LINK_EXPIRY.as_secs());
                    self.remove(&key);
                    return;
                }
                let packet = session.packet(&from, PacketType::KeepAlive);
                let to = session.connmgr.clone();
                session.link_timer = Some(self.timers.insert(
                    (key.clone(), Timer::Session(SessionTimer::Link)),
                    LINK_KEEP_ALIVE,
                ));
                self.send(&to, &packet).await;
            }
        }
    }

    /// Ends a session at shutdown: a stream gets its end, a long-poll its
    /// timeout response.
    async fn finish(&mut self, key: &str) {
        let Some(session) = self.sessions.get(key) else {
            return;
        };
        match session.mode {
            HoldMode::Response => {
                let response = session.timeout_response.clone();
                self.respond(key, response).await;
            }
            HoldMode::Stream => {
                if let Some(session) = self.sessions.get_mut(key) {
                    session.closing = true;
                }
                self.flush(key).await;
            }
        }
    }

    fn unsubscribe(&mut self, key: &str) {
        let Some(session) = self.sessions.get(key) else {
            return;
        };
        for channel in &session.channels {
            if let Some(set) = self.channels.get_mut(channel) {
                set.remove(key);
                if set.is_empty() {
                    self.channels.remove(channel);
                    self.sequencer.forget_channel(channel);
                    self.sub_changes
                        .push(crate::publish::zmq_sub::subscription(channel, false));
                }
            }
        }
    }

    fn remove(&mut self, key: &str) {
        self.unsubscribe(key);
        if let Some(session) = self.sessions.remove(key) {
            for timer in [session.hold_timer, session.link_timer]
                .into_iter()
                .flatten()
            {
                self.timers.try_remove(&timer);
            }
        }
        self.heard.remove(key);
    }
}
