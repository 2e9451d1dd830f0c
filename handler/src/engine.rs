//! The handler's event loop: one task owns every held session, the channel
//! index and one timer queue (hold timeouts, stream keep-alives, next
//! links, ZHTTP liveness, sequencing waits and smoothed updates all live in
//! a single `DelayQueue`, a timer wheel), so a held connection costs a map
//! entry and a few timer slots, not a task.
//!
//! Fan-out: a publish to a channel sends one packet per connmgr and per
//! distinct content for every session ready to take it (`id` is the list
//! of `{id, seq}`), up to [`BATCH`] sessions a packet; sessions short of
//! credits queue the item. Content differs between sessions only when a
//! content filter (`build-id`, `var-subst`) renders it for each.
//!
//! Recovery: each subscription remembers the last id its session got. An
//! item whose `prev-id` is not that id means the session missed something:
//! a long-poll asks the origin again with `Grip-Last`, a stream fetches its
//! next link. So do a `hint`, the `recover` command, a session accepted
//! with a prev-id older than what the channel already delivered, and (one
//! second after a channel's first subscription) every session on it.

use crate::fetch::{resolve, Fetched, Fetcher, Purpose, Reply};
use crate::filters::Subscriber;
use crate::publish::Input;
use crate::sequencing::{Sequencer, MESSAGE_WAIT};
use crate::session::{published_response, Session, Subscription, QUEUE_MAX};
use crate::ws::WsSessions;
use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::handoff::{Accept, Hold, HoldMode, Response};
use holdfast_protocol::publish::{Action, Item};
use holdfast_protocol::zhttp::{Header, IdSeq, Ids, Packet, PacketType};
use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::Multipart;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::DelayQueue;

/// Sessions looked at, and at most addressed by one delivery packet, at a
/// time. Large enough that a publish to 10,000 subscribers is ten packets,
/// small enough that connmgr starts writing to clients within a
/// millisecond or two while the handler works through the rest.
pub const BATCH: usize = 1024;

/// Delay between a channel's first subscription and the update of its
/// sessions.
const FIRST_SUBSCRIPTION_DELAY: Duration = Duration::from_secs(1);

/// Smoothed updates (recover command, first subscriptions): this many
/// sessions every [`UPDATE_INTERVAL`], Pushpin's 10 actions of 100 a second.
const UPDATE_BATCH: usize = 100;
const UPDATE_INTERVAL: Duration = Duration::from_millis(100);

/// Attempts at a next link before the stream is ended; the wait doubles
/// from one second between them.
const LINK_ATTEMPTS: u32 = 5;

/// One chunk's deliveries: per connmgr and distinct content, the sessions
/// that take it now, sent as one packet.
#[derive(Default)]
struct Ready {
    groups: Vec<ReadyGroup>,
    /// Groups by content, for items whose content filters render it per
    /// session.
    by_content: HashMap<Bytes, Vec<usize>>,
    /// The group the last session joined: without content filters every
    /// session shares the item's own buffer, so this is nearly always it.
    last: usize,
}

struct ReadyGroup {
    connmgr: String,
    content: Bytes,
    ids: Vec<IdSeq>,
}

impl Ready {
    fn add(&mut self, connmgr: &str, content: Bytes, id: IdSeq) {
        let same_as_last = self.groups.get(self.last).is_some_and(|g| {
            g.content.as_ptr() == content.as_ptr()
                && g.content.len() == content.len()
                && g.connmgr == connmgr
        });
        if !same_as_last {
            let candidates = self.by_content.entry(content.clone()).or_default();
            self.last = match candidates
                .iter()
                .copied()
                .find(|&i| self.groups[i].connmgr == connmgr)
            {
                Some(i) => i,
                None => {
                    self.groups.push(ReadyGroup {
                        connmgr: connmgr.to_owned(),
                        content,
                        ids: Vec::new(),
                    });
                    candidates.push(self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
        }
        self.groups[self.last].ids.push(id);
    }
}

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A session's timer (key = session).
    Session(SessionTimer),
    /// A channel's out-of-order items waited long enough (key = channel).
    Sequence,
    /// A channel's first subscription settled (key = channel).
    FirstSubscription,
    /// Time for the next batch of smoothed updates (key empty).
    Updates,
    /// Time to forget WebSocket sessions their proxy stopped vouching for.
    WsSweep,
}

/// A session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionTimer {
    /// Long-poll timeout, or stream keep-alive.
    Hold,
    /// ZHTTP keep-alive and expiry.
    Link,
    /// Next-link timeout, or the back-off after a failed attempt.
    Next,
}

/// Where hold instructions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The proxy's hand-over.
    Accept,
    /// A long-poll asked again.
    Retry,
    /// A stream's next link.
    Link,
}

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Update every session of a channel a second after its first
    /// subscription.
    pub update_on_first_subscription: bool,
}

/// Owner of all held sessions.
pub struct Engine {
    link: Arc<Link>,
    /// Our id, the `from` of every session's packets.
    from: Arc<str>,
    options: Options,
    sessions: HashMap<String, Session>,
    /// Channel → keys of subscribed sessions.
    channels: HashMap<String, HashSet<String>>,
    timers: DelayQueue<(String, Timer)>,
    /// The SUB publish input's subscriptions, following local interest.
    sub_control: Option<mpsc::Sender<Multipart>>,
    /// Subscription changes not yet sent to it.
    sub_changes: Vec<Multipart>,
    /// Item order, duplicates and each channel's last id.
    sequencer: Sequencer,
    /// Requests to the origin.
    fetcher: Fetcher,
    fetched: Option<mpsc::UnboundedReceiver<Fetched>>,
    /// Sessions waiting for a smoothed update.
    updates: VecDeque<String>,
    updates_armed: bool,
    /// WebSocket sessions' subscriptions (their proxies own them).
    ws: WsSessions,
    /// Where `ws-message` content goes (PUB, topic = proxy id).
    ws_out: Option<mpsc::Sender<Multipart>>,
    /// Where items with `purge` go first (they come back purged).
    purger: Option<mpsc::Sender<holdfast_protocol::publish::Item>>,
    /// Counters and gauges for `/metrics`.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Pushpin's stats socket, and the totals its next report covers.
    stats: Option<crate::stats::Stats>,
    stats_window: (u64, u64),
    /// Client sessions' last ids (Pushpin's session feature), when on.
    client_sessions: Option<crate::client_sessions::Shared>,
}

/// How often WebSocket sessions without news are looked for.
const WS_SWEEP: Duration = Duration::from_secs(30);

/// The next message of an optional input (never, without one).
async fn next_of(rx: &mut Option<mpsc::Receiver<Multipart>>) -> Option<Multipart> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn key_of(connmgr: &str, id: &str) -> String {
    format!("{connmgr} {id}")
}

/// What one session does with a published item.
enum Decision {
    Skip,
    /// Send this content (stream).
    Deliver(Bytes),
    /// Answer the long-poll.
    Respond(Response),
    /// End the stream.
    Close,
    /// Ask the origin (gap, hint).
    Recover,
}

impl Engine {
    /// An engine sending through `link`.
    pub fn new(
        link: Arc<Link>,
        sub_control: Option<mpsc::Sender<Multipart>>,
        options: Options,
    ) -> Engine {
        let (fetcher, fetched) = Fetcher::new();
        Engine {
            from: Arc::from(link.id.as_str()),
            link,
            options,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            timers: DelayQueue::new(),
            sub_control,
            sub_changes: Vec::new(),
            sequencer: Sequencer::default(),
            fetcher,
            fetched: Some(fetched),
            updates: VecDeque::new(),
            updates_armed: false,
            ws: WsSessions::default(),
            ws_out: None,
            purger: None,
            metrics: None,
            stats: None,
            stats_window: (0, 0),
            client_sessions: None,
        }
    }

    /// Sends `ws-message` content through `out` (the handler's PUB socket).
    pub fn with_ws_out(mut self, out: mpsc::Sender<Multipart>) -> Engine {
        self.ws_out = Some(out);
        self
    }

    /// Sends Pushpin's stats events through `stats`.
    /// Keeps client sessions' last ids in `store` (Pushpin's session feature).
    pub fn with_client_sessions(mut self, store: crate::client_sessions::Shared) -> Engine {
        self.client_sessions = Some(store);
        self
    }

    pub fn with_stats(mut self, stats: crate::stats::Stats) -> Engine {
        self.stats = Some(stats);
        self
    }

    fn stat(&self, kind: &str, fields: serde_json::Value) {
        if let Some(stats) = &self.stats {
            stats.event(kind, fields);
        }
    }

    /// The `report` event: sessions now, items and deliveries since the
    /// last one.
    fn stats_report(&mut self) {
        let Some(m) = &self.metrics else { return };
        let (items, sent) = (
            m.items.load(Ordering::Relaxed),
            m.deliveries.load(Ordering::Relaxed),
        );
        let (last_items, last_sent) = std::mem::replace(&mut self.stats_window, (items, sent));
        let connections = self.sessions.len() + self.ws.len();
        let minutes = (connections as u64 * crate::stats::REPORT_INTERVAL.as_secs()) / 60;
        self.stat(
            "report",
            serde_json::json!({"connections": connections, "minutes": minutes,
                "received": items - last_items, "sent": sent - last_sent}),
        );
    }

    /// Counts into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Engine {
        self.metrics = Some(metrics);
        self
    }

    /// Sets the gauges from the state now.
    fn set_gauges(&self) {
        let Some(m) = &self.metrics else { return };
        let streams = self
            .sessions
            .values()
            .filter(|s| s.mode == HoldMode::Stream)
            .count();
        let set = |g: &std::sync::atomic::AtomicI64, v: usize| {
            g.store(i64::try_from(v).unwrap_or(i64::MAX), Ordering::Relaxed)
        };
        set(&m.held_stream, streams);
        set(&m.held_response, self.sessions.len() - streams);
        set(&m.channels, self.channels.len());
        set(
            &m.subscriptions,
            self.channels.values().map(|s| s.len()).sum(),
        );
        set(&m.ws_sessions, self.ws.len());
    }

    fn count(
        &self,
        which: impl Fn(&crate::metrics::Metrics) -> &std::sync::atomic::AtomicU64,
        n: usize,
    ) {
        if let Some(m) = &self.metrics {
            which(m).fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Sends items with `purge` through `purger` before delivering them.
    pub fn with_purger(mut self, purger: mpsc::Sender<holdfast_protocol::publish::Item>) -> Engine {
        self.purger = Some(purger);
        self
    }

    /// Runs until `token` is cancelled; then ends every held session cleanly
    /// (streams end, long-polls get their timeout response).
    pub async fn run(
        mut self,
        mut accepts: mpsc::Receiver<Multipart>,
        mut packets: mpsc::Receiver<Packet>,
        mut inputs: mpsc::Receiver<Input>,
        mut ws_controls: Option<mpsc::Receiver<Multipart>>,
        token: CancellationToken,
    ) {
        let Some(mut fetched) = self.fetched.take() else {
            return;
        };
        if ws_controls.is_some() {
            self.timers
                .insert((String::new(), Timer::WsSweep), WS_SWEEP);
        }
        let mut gauges = tokio::time::interval(crate::metrics::GAUGE_INTERVAL);
        gauges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut reports = tokio::time::interval(crate::stats::REPORT_INTERVAL);
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                input = inputs.recv() => match input {
                    Some(Input::Items(items)) => {
                        self.count(|m| &m.items, items.len());
                        for item in items {
                            match (&self.purger, item.purge.is_some()) {
                                (Some(purger), true) => {
                                    if let Err(err) = purger.send(item).await {
                                        tracing::warn!("purger gone; delivering without purging");
                                        self.offer(err.0).await;
                                    }
                                }
                                _ => self.offer(item).await,
                            }
                        }
                    }
                    Some(Input::Recover) => self.recover_all(),
                    Some(Input::Refresh { cid, channel }) => {
                        let keys: Vec<String> = channel
                            .and_then(|c| self.channels.get(&c))
                            .map(|s| s.iter().cloned().collect())
                            .unwrap_or_default();
                        let refreshes = self.ws.refreshes(cid.as_deref(), &keys);
                        self.send_ws(refreshes).await;
                    }
                    None => break,
                },
                Some(done) = fetched.recv() => self.on_fetched(done).await,
                Some(msg) = next_of(&mut ws_controls) => self.on_ws_control(&msg),
                expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)), if timers_armed => {
                    if let Some(expired) = expired {
                        let (key, timer) = expired.into_inner();
                        self.on_timer(key, timer).await;
                    }
                }
                _ = gauges.tick() => self.set_gauges(),
                _ = reports.tick(), if self.stats.is_some() => self.stats_report(),
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

    /// Numbers a session's packets as they leave (see
    /// `holdfast_protocol::zhttp::Endpoint::stamp`) and sends them.
    async fn send_session(&mut self, key: &str, packets: Vec<Packet>) {
        let now = Instant::now();
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let mut out = Vec::with_capacity(packets.len());
        for mut packet in packets {
            if let Some(to) = session.endpoint.stamp(&mut packet, now) {
                out.push((to.to_owned(), packet));
            }
        }
        for (to, packet) in out {
            self.send(&to, &packet).await;
        }
    }

    /// (Re)arms a session's ZHTTP liveness timer at its endpoint's next
    /// deadline.
    fn arm_link_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(timer) = session.link_timer.take() {
            self.timers.try_remove(&timer);
        }
        session.link_timer = Some(self.timers.insert_at(
            (key.to_owned(), Timer::Session(SessionTimer::Link)),
            session.endpoint.next_deadline(),
        ));
    }

    async fn accept_frame(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        match format::decode::<Accept>(frame) {
            Ok(accept) => self.accept(accept).await,
            Err(err) => tracing::warn!(error = %err, "undecodable hand-over dropped"),
        }
    }

    async fn accept(&mut self, mut accept: Accept) {
        let key = key_of(&accept.connmgr, &accept.id);
        if self.sessions.contains_key(&key) {
            tracing::warn!(session = %key, "hand-over of a session already held; ignored");
            return;
        }
        let mut session = Session::from_accept(&accept, self.from.clone(), Instant::now());
        if let Some(update) = accept.hold.session.take() {
            if let Some(Ok(mut store)) = self.client_sessions.as_ref().map(|s| s.lock()) {
                store.apply(&update);
            }
            session.sid = update.sid;
        }
        self.sessions.insert(key.clone(), session);
        self.arm_link_timer(&key);
        self.stat(
            "conn",
            serde_json::json!({"id": format!("{}:{}", accept.connmgr, accept.id),
                "type": "http", "ttl": crate::stats::TTL}),
        );
        self.install(&key, accept.hold, accept.response, Source::Accept)
            .await;
    }

    /// Applies hold instructions to a session: from the hand-over, from a
    /// long-poll asked again, or from a stream's next link (whose body is
    /// appended). Channels are diffed: left ones unsubscribed, new ones
    /// subscribed.
    async fn install(&mut self, key: &str, hold: Hold, response: Response, source: Source) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let base = match source {
            Source::Link => session.next_link.as_ref().map(|(u, _)| u.to_string()),
            _ => session.origin.as_ref().map(|o| o.uri.clone()),
        };
        let resolve_link = |link: &str| base.as_deref().and_then(|b| resolve(b, link));
        let old: Vec<String> = session.channels.iter().map(|c| c.name.clone()).collect();
        session.channels = hold
            .channels
            .into_iter()
            .map(|c| Subscription {
                name: c.name,
                prev_id: c.prev_id,
                filters: c.filters,
            })
            .collect();
        session.meta = hold.meta;
        session.keep_alive = hold.keep_alive;
        session.next_link = hold
            .next_link
            .and_then(|(uri, timeout)| resolve_link(&uri).map(|u| (u, timeout)));
        if source == Source::Accept {
            session.gone_link = hold.gone_link.as_deref().and_then(resolve_link);
        }
        session.fed.clear();
        session.link_failures = 0;
        for timer in [session.hold_timer.take(), session.next_timer.take()]
            .into_iter()
            .flatten()
        {
            self.timers.try_remove(&timer);
        }
        let new: Vec<String> = session.channels.iter().map(|c| c.name.clone()).collect();
        if source != Source::Link {
            session.mode = hold.mode;
        }
        let mut packets = Vec::new();
        match session.mode {
            HoldMode::Stream if !session.started => {
                let mut response = response;
                let body = std::mem::take(&mut response.body);
                let now = session.endpoint.take_credits(body.len());
                response.body = body.slice(..now);
                if now < body.len() {
                    session.queue.push_back(body.slice(now..));
                }
                packets.push(session.response_packet(&response, true));
                session.started = true;
            }
            HoldMode::Stream => {
                if !response.body.is_empty() {
                    session.queue.push_back(response.body);
                }
            }
            HoldMode::Response => {
                if source == Source::Accept {
                    // Our first packet tells connmgr the session moved here.
                    packets.push(session.packet(PacketType::KeepAlive));
                }
                session.timeout_response = response;
            }
        }
        let hold_after = match session.mode {
            HoldMode::Response => Some(hold.timeout),
            HoldMode::Stream => session.keep_alive.as_ref().map(|k| k.timeout),
        };
        if let Some(seconds) = hold_after {
            session.hold_timer = Some(self.timers.insert(
                (key.to_owned(), Timer::Session(SessionTimer::Hold)),
                Duration::from_secs(seconds.into()),
            ));
        }
        let follow_now = matches!(session.next_link, Some((_, 0)));
        if let Some((_, seconds)) = session.next_link.as_ref().filter(|_| !follow_now) {
            session.next_timer = Some(self.timers.insert(
                (key.to_owned(), Timer::Session(SessionTimer::Next)),
                Duration::from_secs((*seconds).into()),
            ));
        }
        // The channel already delivered past what the origin told this
        // session: it missed something.
        let stale: Vec<String> = session
            .channels
            .iter()
            .filter(|c| {
                c.prev_id.as_deref().is_some_and(|p| {
                    self.sequencer
                        .last_id(&c.name)
                        .is_some_and(|last| last != p)
                })
            })
            .map(|c| c.name.clone())
            .collect();
        tracing::debug!(session = %key, mode = ?session.mode, channels = ?new, ?source, "session held");
        self.send_session(key, packets).await;
        for channel in old.iter().filter(|c| !new.contains(c)) {
            self.unsubscribe_channel(key, channel);
        }
        for channel in new.iter().filter(|c| !old.contains(c)) {
            self.subscribe_channel(key, channel);
        }
        for channel in &stale {
            self.sequencer.clear_last_id(Some(channel));
        }
        if follow_now || !stale.is_empty() {
            self.recover(key, true);
        }
        self.flush(key).await;
    }

    fn subscribe_channel(&mut self, key: &str, channel: &str) {
        let subscribers = self.channels.entry(channel.to_owned()).or_default();
        if subscribers.is_empty() {
            self.sub_changes
                .push(crate::publish::zmq_sub::subscription(channel, true));
            if self.options.update_on_first_subscription {
                self.timers.insert(
                    (channel.to_owned(), Timer::FirstSubscription),
                    FIRST_SUBSCRIPTION_DELAY,
                );
            }
        }
        subscribers.insert(key.to_owned());
        let count = subscribers.len();
        let mode = self.stats_mode(key);
        self.stat(
            "sub",
            serde_json::json!({"mode": mode, "channel": channel, "ttl": crate::stats::TTL,
                "subscribers": count}),
        );
    }

    /// The `message` stats event: an item and how many sessions got it.
    fn message_stat(&self, item: &Item, count: usize) {
        if self.stats.is_none() {
            return;
        }
        let transport = if item.formats.http_stream.is_some() {
            "http-stream"
        } else if item.formats.http_response.is_some() {
            "http-response"
        } else {
            "ws-message"
        };
        self.stat(
            "message",
            serde_json::json!({"channel": item.channel, "item-id": item.id,
                "count": count, "transport": transport}),
        );
    }

    /// A session's mode as Pushpin's stats name it.
    fn stats_mode(&self, key: &str) -> &'static str {
        match self.sessions.get(key).map(|s| &s.mode) {
            Some(HoldMode::Response) => "response",
            _ => "stream",
        }
    }

    fn unsubscribe_channel(&mut self, key: &str, channel: &str) {
        if let Some(set) = self.channels.get_mut(channel) {
            set.remove(key);
            if set.is_empty() {
                let mode = self.stats_mode(key);
                self.stat(
                    "sub",
                    serde_json::json!({"mode": mode, "channel": channel, "unavailable": true}),
                );
                self.channels.remove(channel);
                self.sequencer.forget_channel(channel);
                self.sub_changes
                    .push(crate::publish::zmq_sub::subscription(channel, false));
            }
        }
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
        if let Err(err) = session.endpoint.receive(&packet, Instant::now()) {
            tracing::warn!(session = %key, "packet from connmgr refused: {err}");
            let cancel = session.endpoint.cancel();
            self.send_session(&key, cancel.into_iter().collect()).await;
            self.remove(&key);
            return;
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
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let mut packets = Vec::new();
        while session.endpoint.can_send() {
            let Some(front) = session.queue.front_mut() else {
                break;
            };
            let chunk = front.split_to(session.endpoint.take_credits(front.len()));
            if front.is_empty() {
                session.queue.pop_front();
            }
            let mut packet = session.packet(PacketType::Data);
            packet.body = Some(chunk);
            packet.more = true;
            packets.push(packet);
        }
        let end = session.closing && session.queue.is_empty();
        if end {
            let mut last = session.packet(PacketType::Data);
            last.body = Some(Bytes::new());
            packets.push(last);
        }
        self.send_session(key, packets).await;
        if end {
            self.remove(key);
        }
    }

    /// What `session` does with `item` (and updates its subscription's
    /// last id when it takes the item).
    fn decide(session: &mut Session, item: &Item) -> Decision {
        let (action, declared, content) = match session.mode {
            HoldMode::Stream => match &item.formats.http_stream {
                Some(s) => (s.action, s.content_filters.as_deref(), &s.content),
                None => return Decision::Skip,
            },
            HoldMode::Response => match &item.formats.http_response {
                Some(r) => (r.action, r.content_filters.as_deref(), &r.body),
                None => return Decision::Skip,
            },
        };
        if session.next_link.is_some() && !session.fed.contains(&item.channel) {
            session.fed.insert(item.channel.clone());
        }
        match action {
            Action::Hint => return Decision::Recover,
            Action::Refresh => return Decision::Skip,
            Action::Close if session.mode == HoldMode::Response => return Decision::Skip,
            _ => {}
        }
        // While the origin is being asked again, its answer covers items
        // with ids; a long-poll takes nothing until then.
        if session.fetching && (session.mode == HoldMode::Response || item.id.is_some()) {
            return Decision::Skip;
        }
        let Some(sub) = session.channels.iter().find(|c| c.name == item.channel) else {
            return Decision::Skip;
        };
        if let (Some(expected), Some(prev)) = (&sub.prev_id, &item.prev_id) {
            if expected != prev {
                return Decision::Recover;
            }
        }
        if sub.filters.is_empty() {
            // The common case: no filter, the content is shared as it is.
            if let Some(sub) = session.subscription_mut(&item.channel) {
                if item.id.is_some() {
                    sub.prev_id = item.id.clone();
                }
            }
            if declared.is_some_and(|d| !d.is_empty()) {
                return Decision::Skip;
            }
            return match (action, session.mode, &item.formats.http_response) {
                (Action::Close, _, _) => Decision::Close,
                (_, HoldMode::Response, Some(r)) => {
                    Decision::Respond(published_response(&session.timeout_response, r))
                }
                _ => Decision::Deliver(content.clone()),
            };
        }
        let filters = sub.filters.clone();
        let prefix = session
            .origin
            .as_ref()
            .map_or(String::new(), |o| o.prefix.clone());
        if let Some(sub) = session.subscription_mut(&item.channel) {
            if item.id.is_some() {
                sub.prev_id = item.id.clone();
            }
        }
        let channels = &session.channels;
        let subscribed = |name: &str| {
            let full = format!("{prefix}{name}");
            channels.iter().any(|c| c.name == full)
        };
        let last_id = |name: &str| {
            let full = format!("{prefix}{name}");
            channels
                .iter()
                .find(|c| c.name == full)
                .and_then(|c| c.prev_id.clone())
        };
        let subscriber = Subscriber {
            filters: &filters,
            meta: &session.meta,
            subscribed: &subscribed,
            last_id: &last_id,
        };
        if subscriber.drops(&item.meta) || !subscriber.accepts(declared) {
            return Decision::Skip;
        }
        if action == Action::Close {
            return Decision::Close;
        }
        let content = subscriber.content(content);
        match (session.mode, &item.formats.http_response) {
            (HoldMode::Response, Some(r)) => {
                let mut r = r.clone();
                r.body = content;
                Decision::Respond(published_response(&session.timeout_response, &r))
            }
            _ => Decision::Deliver(content),
        }
    }

    /// Sends deliveries to the proxies owning their sessions.
    async fn send_ws(&self, deliveries: Vec<(String, holdfast_protocol::wscontrol::Deliver)>) {
        let Some(out) = &self.ws_out else { return };
        for (proxy, deliver) in deliveries {
            match format::encode(&deliver, self.link.format) {
                Ok(frame) => {
                    let topic = holdfast_protocol::wscontrol::topic(&proxy);
                    if out.send(vec![topic, frame]).await.is_err() {
                        tracing::warn!("WebSocket delivery socket closed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "WebSocket delivery not encoded"),
            }
        }
    }

    /// A WebSocket session's subscription change, from its proxy.
    fn on_ws_control(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        let control = match format::decode::<holdfast_protocol::wscontrol::Control>(frame) {
            Ok(control) => control,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable WebSocket control dropped");
                return;
            }
        };
        tracing::debug!(kind = %control.kind, session = %control.id, channel = ?control.channel, "WebSocket control");
        if control.kind == "hello" {
            // A proxy checking that our deliveries reach it: answer on its topic.
            let hello = holdfast_protocol::wscontrol::Deliver {
                kind: "hello".into(),
                ..Default::default()
            };
            if let (Some(out), Ok(frame)) = (&self.ws_out, format::encode(&hello, self.link.format))
            {
                let topic = holdfast_protocol::wscontrol::topic(&control.proxy);
                let _ = out.try_send(vec![topic, frame]);
            }
            return;
        }
        if let (Some(sid), Some(Ok(mut store))) = (
            control.sid.as_deref().filter(|_| control.kind == "session"),
            self.client_sessions.as_ref().map(|s| s.lock()),
        ) {
            store.create_or_update(sid, &[]);
        }
        let change = self.ws.apply(control, Instant::now());
        for channel in &change.subscribed {
            self.subscribe_channel(&change.key, channel);
        }
        for channel in &change.unsubscribed {
            self.unsubscribe_channel(&change.key, channel);
        }
    }

    async fn publish(&mut self, item: Item) {
        // The subscribers are taken out while the item is handed out
        // (nothing here subscribes or unsubscribes) and walked without
        // copying their keys; they go back before anything else happens.
        let Some(subscribers) = self.channels.get_mut(&item.channel).map(std::mem::take) else {
            return;
        };
        self.note_sent(&item, &subscribers);
        if !self.ws.is_empty() {
            let ws_keys: Vec<String> = subscribers
                .iter()
                .filter(|k| self.ws.contains(k))
                .cloned()
                .collect();
            if !ws_keys.is_empty() {
                let deliveries = self.ws.deliveries(&item, &ws_keys);
                let sessions: usize = deliveries.iter().map(|(_, d)| d.ids.len()).sum();
                self.count(|m| &m.deliveries, sessions);
                self.send_ws(deliveries).await;
            }
        }
        let from = self.link.id.clone();
        let now = Instant::now();
        let mut to_flush = Vec::new();
        let mut to_drop = Vec::new();
        let mut to_recover = Vec::new();
        let mut responses: Vec<(String, Response)> = Vec::new();
        let mut sent = 0;
        // A chunk of sessions at a time, each chunk's packets sent before
        // the next is looked at: connmgr starts writing to clients while
        // the rest of a large channel is still being decided.
        let mut keys = subscribers.iter();
        loop {
            let mut ready = Ready::default();
            let mut looked_at = 0;
            for key in keys.by_ref().take(BATCH) {
                looked_at += 1;
                let Some(session) = self.sessions.get_mut(key) else {
                    continue;
                };
                match Engine::decide(session, &item) {
                    Decision::Skip => {}
                    Decision::Recover => to_recover.push(key.clone()),
                    Decision::Respond(response) => responses.push((key.clone(), response)),
                    Decision::Close => {
                        session.closing = true;
                        to_flush.push(key.clone());
                    }
                    Decision::Deliver(content) => {
                        if session.queue.is_empty()
                            && !session.closing
                            && session.endpoint.credits() >= content.len()
                        {
                            session.endpoint.spend(content.len());
                            let id = IdSeq {
                                id: session.id().to_owned(),
                                // Sent with this chunk, just below.
                                seq: session.endpoint.next_seq(now),
                            };
                            ready.add(session.connmgr(), content, id);
                            if let (Some(ka), Some(timer)) =
                                (&session.keep_alive, &session.hold_timer)
                            {
                                if ka.idle {
                                    self.timers
                                        .reset(timer, Duration::from_secs(ka.timeout.into()));
                                }
                            }
                        } else if session.queue.len() >= QUEUE_MAX {
                            tracing::info!(session = %key, "client too slow: {QUEUE_MAX} items queued; disconnecting");
                            to_drop.push(key.clone());
                        } else {
                            session.queue.push_back(content);
                            to_flush.push(key.clone());
                        }
                    }
                }
            }
            if looked_at == 0 {
                break;
            }
            for group in ready.groups {
                sent += group.ids.len();
                let mut packet = Packet::new(PacketType::Data, &from, "", 0);
                packet.id = Some(Ids::Many(group.ids));
                packet.seq = None;
                packet.body = Some(group.content);
                packet.more = true;
                self.send(&group.connmgr, &packet).await;
            }
            // The socket task was woken into this worker's LIFO slot, where
            // the other worker cannot steal it: without a yield the packets
            // leave only once the whole channel is decided.
            tokio::task::yield_now().await;
        }
        if let Some(slot) = self.channels.get_mut(&item.channel) {
            *slot = subscribers;
        }
        sent += responses.len();
        self.count(|m| &m.deliveries, sent);
        self.message_stat(&item, sent);
        self.count(|m| &m.dropped, to_drop.len());
        for (key, response) in responses {
            self.respond(&key, response).await;
        }
        for key in to_flush {
            self.flush(&key).await;
        }
        for key in to_drop {
            let cancel = self.sessions.get(&key).and_then(|s| s.endpoint.cancel());
            self.send_session(&key, cancel.into_iter().collect()).await;
            self.remove(&key);
        }
        if !to_recover.is_empty() {
            if item.prev_id.is_some() {
                self.sequencer.clear_last_id(Some(&item.channel));
            }
            for key in to_recover {
                self.recover(&key, true);
            }
        }
    }

    /// Records `item`'s id as the last one sent to the client sessions of
    /// its subscribers (Pushpin does this for every subscriber, whatever
    /// its filters decide).
    fn note_sent(&self, item: &Item, keys: &HashSet<String>) {
        let (Some(id), Some(store)) = (&item.id, &self.client_sessions) else {
            return;
        };
        let Ok(mut store) = store.lock() else { return };
        // The common case (no `session` route in use) costs no walk over
        // the subscribers.
        if store.is_empty() {
            return;
        }
        for key in keys {
            let sid = match self.sessions.get(key) {
                Some(session) => session.sid.as_deref(),
                None => self.ws.sid(key),
            };
            if let Some(sid) = sid {
                store.sent(sid, &item.channel, id);
            }
        }
    }

    /// Asks the origin again for a session: a long-poll replays its
    /// request with `Grip-Last`, a stream fetches its next link. Does
    /// nothing while a request is in flight, or when there is no way to ask
    /// (a stream without a next link, a proxy that gave no origin).
    fn recover(&mut self, key: &str, urgent: bool) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.fetching || session.closing {
            return;
        }
        let Some(origin) = &session.origin else {
            return;
        };
        let last = session.last_ids();
        match session.mode {
            HoldMode::Response => {
                session.generation += 1;
                session.fetching = true;
                if let Some(timer) = session.hold_timer.take() {
                    self.timers.try_remove(&timer);
                }
                tracing::debug!(session = %key, urgent, ?last, "long-poll asked again");
                self.fetcher
                    .retry(key, session.generation, origin, &session.request, &last);
            }
            HoldMode::Stream => {
                let Some((link, _)) = &session.next_link else {
                    tracing::debug!(session = %key, "stream has no next link to recover with");
                    return;
                };
                session.generation += 1;
                session.fetching = true;
                if let Some(timer) = session.next_timer.take() {
                    self.timers.try_remove(&timer);
                }
                tracing::debug!(session = %key, urgent, %link, ?last, "next link fetched");
                self.fetcher
                    .link(key, session.generation, origin, link, &last);
            }
        }
    }

    /// `recover`: every channel's last id is forgotten and every session
    /// updated, smoothed.
    fn recover_all(&mut self) {
        self.sequencer.clear_last_id(None);
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        tracing::info!(sessions = keys.len(), "recover: updating every session");
        self.queue_updates(keys);
    }

    fn queue_updates(&mut self, keys: Vec<String>) {
        self.updates.extend(keys);
        if !self.updates_armed && !self.updates.is_empty() {
            self.updates_armed = true;
            self.timers
                .insert((String::new(), Timer::Updates), Duration::ZERO);
        }
    }

    async fn on_fetched(&mut self, done: Fetched) {
        let Some(session) = self.sessions.get_mut(&done.key) else {
            return;
        };
        if session.generation != done.generation {
            return;
        }
        session.fetching = false;
        let key = done.key;
        match (done.purpose, done.result) {
            (Purpose::Retry, Ok(Reply::Hold { hold, response })) => {
                self.install(&key, *hold, response, Source::Retry).await;
            }
            (Purpose::Retry, Ok(Reply::Complete(response))) => {
                self.respond(&key, response).await;
            }
            (Purpose::Retry, Err(err)) => {
                tracing::warn!(session = %key, "asking the origin again failed: {err}");
                self.respond(&key, error_response()).await;
            }
            (Purpose::Link, Ok(Reply::Hold { hold, response }))
                if hold.mode == HoldMode::Stream && (200..300).contains(&response.code) =>
            {
                self.install(&key, *hold, response, Source::Link).await;
            }
            (Purpose::Link, Ok(Reply::Complete(response)))
                if (200..300).contains(&response.code) =>
            {
                // A page with neither hold nor link: the stream is complete.
                session.next_link = None;
                if !response.body.is_empty() {
                    session.queue.push_back(response.body);
                }
                session.closing = true;
                self.flush(&key).await;
            }
            (Purpose::Link, Ok(_)) => {
                tracing::info!(session = %key, "next link answered with an error status or a long-poll hold; stream ended");
                session.closing = true;
                self.flush(&key).await;
            }
            (Purpose::Link, Err(err)) => {
                session.link_failures += 1;
                if session.link_failures >= LINK_ATTEMPTS {
                    tracing::warn!(session = %key, "next link failed {LINK_ATTEMPTS} times ({err}); stream ended");
                    session.closing = true;
                    self.flush(&key).await;
                    return;
                }
                let wait = Duration::from_secs(1 << (session.link_failures - 1)) + jitter();
                tracing::info!(session = %key, "next link failed ({err}); trying again in {}ms", wait.as_millis());
                session.next_timer = Some(
                    self.timers
                        .insert((key.clone(), Timer::Session(SessionTimer::Next)), wait),
                );
            }
        }
    }

    /// Sends a whole response (long-poll answer) and ends the session once
    /// it is out.
    async fn respond(&mut self, key: &str, mut response: Response) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let body = std::mem::take(&mut response.body);
        let now = session.endpoint.take_credits(body.len());
        response.body = body.slice(..now);
        let rest = body.slice(now..);
        let more = !rest.is_empty();
        let packet = session.response_packet(&response, more);
        if more {
            session.queue.push_back(rest);
            session.closing = true;
        }
        self.unsubscribe(key);
        self.send_session(key, vec![packet]).await;
        if !more {
            self.remove(key);
        }
    }

    /// Takes a published item through sequencing, then delivers what it
    /// releases. Channels without local sessions are not tracked at all.
    async fn offer(&mut self, item: Item) {
        if !self.channels.contains_key(&item.channel) {
            self.message_stat(&item, 0);
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
            Timer::FirstSubscription => {
                let keys: Vec<String> = self
                    .channels
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                self.queue_updates(keys);
            }
            Timer::Updates => {
                let n = self.updates.len().min(UPDATE_BATCH);
                let batch: Vec<String> = self.updates.drain(..n).collect();
                for key in batch {
                    self.recover(&key, false);
                }
                if self.updates.is_empty() {
                    self.updates_armed = false;
                } else {
                    self.timers
                        .insert((String::new(), Timer::Updates), UPDATE_INTERVAL);
                }
            }
            Timer::WsSweep => {
                for change in self.ws.expire(Instant::now()) {
                    tracing::info!(session = %change.key, "WebSocket session not heard of for {}s: forgotten", crate::ws::WS_TTL.as_secs());
                    for channel in &change.unsubscribed {
                        self.unsubscribe_channel(&change.key, channel);
                    }
                }
                self.timers
                    .insert((String::new(), Timer::WsSweep), WS_SWEEP);
            }
            Timer::Session(timer) => self.on_session_timer(key, timer).await,
        }
    }

    async fn on_session_timer(&mut self, key: String, timer: SessionTimer) {
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
                        if session.queue.is_empty() && session.endpoint.credits() >= ka.data.len() {
                            session.endpoint.spend(ka.data.len());
                            let mut packet = session.packet(PacketType::Data);
                            packet.body = Some(ka.data.clone());
                            packet.more = true;
                            self.send_session(&key, vec![packet]).await;
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
            SessionTimer::Next => {
                session.next_timer = None;
                let all_fed = session
                    .channels
                    .iter()
                    .all(|c| session.fed.contains(&c.name));
                if session.link_failures == 0 && all_fed && !session.channels.is_empty() {
                    session.fed.clear();
                    if let Some((_, seconds)) = &session.next_link {
                        session.next_timer = Some(self.timers.insert(
                            (key.clone(), Timer::Session(SessionTimer::Next)),
                            Duration::from_secs((*seconds).into()),
                        ));
                    }
                    return;
                }
                self.recover(&key, false);
            }
            SessionTimer::Link => {
                session.link_timer = None;
                let now = Instant::now();
                if session.endpoint.expired(now) {
                    tracing::info!(session = %key, "connmgr silent for {}s: session dropped", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
                    self.remove(&key);
                    return;
                }
                if session.endpoint.keep_alive_due(now) {
                    let packet = session.packet(PacketType::KeepAlive);
                    self.send_session(&key, vec![packet]).await;
                }
                self.arm_link_timer(&key);
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
        let channels: Vec<String> = session.channels.iter().map(|c| c.name.clone()).collect();
        for channel in channels {
            self.unsubscribe_channel(key, &channel);
        }
    }

    /// Forgets a session; tells its gone link, if it has one.
    fn remove(&mut self, key: &str) {
        self.unsubscribe(key);
        if let Some(session) = self.sessions.remove(key) {
            self.stat(
                "conn",
                serde_json::json!({"id": format!("{}:{}", session.connmgr(), session.id()),
                    "unavailable": true}),
            );
            for timer in [session.hold_timer, session.link_timer, session.next_timer]
                .into_iter()
                .flatten()
            {
                self.timers.try_remove(&timer);
            }
            if let (Some(origin), Some(gone)) = (&session.origin, &session.gone_link) {
                self.fetcher.gone(origin, gone);
            }
        }
    }
}

/// What a long-poll client gets when the origin cannot be asked again
/// (as for a first request: 502).
fn error_response() -> Response {
    let body = Bytes::from_static(b"Error while proxying to origin.\n");
    Response {
        code: 502,
        reason: "Bad Gateway".into(),
        headers: vec![
            Header("Content-Type".into(), Bytes::from_static(b"text/plain")),
            Header("Content-Length".into(), Bytes::from(body.len().to_string())),
        ],
        body,
    }
}

/// Up to a second, so that sessions failing together do not retry together.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(nanos % 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> IdSeq {
        IdSeq {
            id: format!("s{n}"),
            seq: Some(n),
        }
    }

    #[test]
    fn deliveries_are_grouped_by_connmgr_and_content() {
        let shared = Bytes::from_static(b"hello\n");
        let mut ready = Ready::default();
        ready.add("connmgr", shared.clone(), id(1));
        ready.add("connmgr", shared.clone(), id(2));
        // Equal content in another buffer (a filter's rendering) joins it.
        ready.add("connmgr", Bytes::from(b"hello\n".to_vec()), id(3));
        ready.add("connmgr-2", shared.clone(), id(4));
        ready.add("connmgr", Bytes::from_static(b"other\n"), id(5));
        ready.add("connmgr", shared, id(6));
        let groups: Vec<(&str, &[u8], Vec<u32>)> = ready
            .groups
            .iter()
            .map(|g| {
                let seqs = g.ids.iter().filter_map(|i| i.seq).collect();
                (g.connmgr.as_str(), &g.content[..], seqs)
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("connmgr", &b"hello\n"[..], vec![1, 2, 3, 6]),
                ("connmgr-2", &b"hello\n"[..], vec![4]),
                ("connmgr", &b"other\n"[..], vec![5]),
            ]
        );
    }
}
