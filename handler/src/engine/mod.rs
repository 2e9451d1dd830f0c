//! The handler's event loop: one task owns every held session, the channel
//! index and one timer queue (hold timeouts, stream keep-alives, next
//! links, ZHTTP liveness, sequencing waits and smoothed updates all live in
//! a single `DelayQueue`, a timer wheel), so a held connection costs a map
//! entry and a few timer slots, not a task.
//!
//! Fan-out: a publish to a channel sends one packet per connmgr and per
//! distinct content for every session ready to take it (`id` is the list
//! of `{id, seq}`), up to `fanout::BATCH` sessions a packet; sessions short of
//! credits queue the item. Content differs between sessions only when a
//! content filter (`build-id`, `var-subst`) renders it for each.
//!
//! Recovery: each subscription remembers the last id its session got. An
//! item whose `prev-id` is not that id means the session missed something:
//! a long-poll asks the origin again with `Grip-Last`, a stream fetches its
//! next link. So do a `hint`, the `recover` command, a session accepted
//! with a prev-id older than what the channel already delivered, and (one
//! second after a channel's first subscription) every session on it.
//! With channel history on, a session accepted with a position history
//! still holds (its prev-id, or a stream's SSE `Last-Event-ID`) gets what
//! it missed from history instead, and the origin is not asked.
//!
//! # Layout
//! - this file: the engine, its run loop, sending a session's packets,
//!   ending sessions, stats.
//! - `accept`: hand-overs and hold instructions, the channel index,
//!   connmgr's packets.
//! - `fanout`: what each subscriber does with an item, deliveries in
//!   per-connmgr batches, queues within credits.
//! - `websocket`: WebSocket sessions' control and deliveries.
//! - `recovery`: asking the origin again, and what its answer does.
//! - `timers`: the one timer queue and what each timer does.

use crate::fetch::{resolve, Fetched, Fetcher, Purpose, Reply};
use crate::filters::Subscriber;
use crate::sequencing::Sequencer;
use crate::session::{published_response, Phase, Session, Subscription, QUEUE_MAX};
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

mod accept;
mod fanout;
mod input;
mod recovery;
pub mod subscriptions;
mod timers;
mod websocket;

pub use input::Input;

use accept::Source;
use recovery::{UPDATE_BATCH, UPDATE_INTERVAL};
use timers::{SessionTimer, Timer};

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Update every session of a channel a second after its first
    /// subscription.
    pub update_on_first_subscription: bool,
    /// Channels one session may subscribe to; more are ignored.
    pub subscription_max: usize,
    /// How long a channel whose last long-poll left stays subscribed.
    pub subscription_linger: Duration,
    /// How long item ids are remembered (zero: not at all).
    pub id_cache_ttl: Duration,
    /// How long an out-of-order item waits for its predecessor.
    pub message_wait: Duration,
    /// Channel history kept for clients coming back (size 0: none).
    pub history: crate::history::Limits,
}

impl Default for Options {
    /// Pushpin's defaults.
    fn default() -> Options {
        Options {
            update_on_first_subscription: true,
            subscription_max: 20,
            subscription_linger: Duration::from_secs(60),
            id_cache_ttl: crate::sequencing::ID_CACHE_TTL,
            message_wait: crate::sequencing::MESSAGE_WAIT,
            history: crate::history::Limits {
                size: 0,
                ttl: Duration::from_secs(600),
                channels: 10_000,
            },
        }
    }
}

/// Owner of all held sessions.
pub struct Engine {
    link: Arc<Link>,
    /// Our id, the `from` of every session's packets.
    from: Arc<str>,
    options: Options,
    /// Boxed: a `Session` is about a kilobyte, and the map keeps up to
    /// twice its length in slots (it grows by doubling).
    sessions: HashMap<String, Box<Session>>,
    /// Channel → keys of subscribed sessions.
    channels: HashMap<String, HashSet<String>>,
    /// Channels without sessions whose subscription lingers (their last
    /// long-poll left lately), with the timer that ends it.
    lingering: HashMap<String, tokio_util::time::delay_queue::Key>,
    timers: DelayQueue<(String, Timer)>,
    /// Who follows local interest (the SUB publish input, the bus): each
    /// gets every channel's first subscription and last unsubscription.
    interest: Vec<mpsc::Sender<Multipart>>,
    /// Subscription changes not yet sent to them.
    sub_changes: Vec<Multipart>,
    /// Item order, duplicates and each channel's last id.
    sequencer: Sequencer,
    /// The last items of each channel, for sessions coming back.
    history: crate::history::History,
    /// The bus's stream, asked for what local history does not have
    /// (JetStream mode); lookups not yet sent to it.
    bus_history: Option<mpsc::Sender<crate::history::Lookup>>,
    lookups: Vec<crate::history::Lookup>,
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

impl Engine {
    /// An engine sending through `link`.
    pub fn new(
        link: Arc<Link>,
        interest: Vec<mpsc::Sender<Multipart>>,
        options: Options,
    ) -> Engine {
        let (fetcher, fetched) = Fetcher::new();
        Engine {
            from: Arc::from(link.id.as_str()),
            link,
            options,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            lingering: HashMap::new(),
            timers: DelayQueue::new(),
            interest,
            sub_changes: Vec::new(),
            sequencer: Sequencer::new(options.id_cache_ttl),
            history: crate::history::History::new(options.history),
            bus_history: None,
            lookups: Vec::new(),
            fetcher,
            fetched: Some(fetched),
            updates: VecDeque::new(),
            updates_armed: false,
            ws: WsSessions::new(options.subscription_max),
            ws_out: None,
            purger: None,
            metrics: None,
            stats: None,
            stats_window: (0, 0),
            client_sessions: None,
        }
    }

    /// Asks the bus's stream for channel history local history lacks. With
    /// the bus, items reach this instance only for channels someone here
    /// listens to, so a channel's local history is dropped when nobody
    /// does any more.
    pub fn with_bus_history(mut self, lookups: mpsc::Sender<crate::history::Lookup>) -> Engine {
        self.bus_history = Some(lookups);
        self
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
        set(&m.history_items, self.history.len());
        set(&m.history_channels, self.history.channel_count());
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
                    Some(Input::History { lookup, found }) => self.on_history(lookup, found).await,
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
                Some(msg) = next_of(&mut ws_controls) => self.on_ws_control(&msg).await,
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
            for change in self.sub_changes.drain(..) {
                for follower in &self.interest {
                    // A follower gone (its input ended) is not waited for.
                    let _ = follower.send(change.clone()).await;
                }
            }
            // After the subscriptions: the bus reads a channel's history
            // once it listens to it, so nothing falls between the two.
            if let Some(bus) = &self.bus_history {
                for lookup in self.lookups.drain(..) {
                    let _ = bus.send(lookup).await;
                }
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

    /// A session's mode as Pushpin's stats name it.
    fn stats_mode(&self, key: &str) -> &'static str {
        match self.sessions.get(key).map(|s| &s.mode) {
            Some(HoldMode::Response) => "response",
            _ => "stream",
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
                    session.phase = Phase::Closing;
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

#[cfg(test)]
mod tests;
