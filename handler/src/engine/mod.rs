//! The handler's event loop: one task owns every held session, the channel
//! index and one timer queue (hold timeouts, stream keep-alives, next
//! links, ZHTTP liveness, sequencing waits and smoothed updates all live in
//! a single `DelayQueue`, a timer wheel), so a held connection costs a map
//! entry and a few timer slots, not a task.
//!
//! Fan-out: a publish to a channel sends one packet per connmgr and per
//! distinct content for every session ready to take it (`id` is the list
//! of `{id, seq}`), up to `delivery::BATCH` sessions a packet; sessions
//! short of credits queue the item. Content differs between sessions only
//! when a content filter (`build-id`, `var-subst`) renders it for each.
//!
//! Recovery: each subscription remembers the last id its session got. An
//! item whose `prev-id` is not that id means the session missed something:
//! a long-poll asks the origin again with `Grip-Last`, a stream fetches its
//! next link, and a stream with no next link ends where it was. So do a
//! `hint`, the `recover` command, a session accepted with a prev-id older
//! than what the channel already delivered, and (one second after a
//! channel's first subscription) every session on it. With channel history
//! on, a session accepted with a position history still holds (its
//! prev-id, or a stream's SSE `Last-Event-ID`) gets what it missed from
//! history instead, and the origin is not asked.
//!
//! # Layout
//! The engine is made of parts, each keeping its own rules (none of them
//! knows the engine):
//! - [`input`]: what the engine is asked from outside its sessions.
//! - [`subscriptions`]: the channel index, lingering channels, and the
//!   subscription changes for who follows local interest.
//! - [`timers`]: the one timer queue, and smoothed updates.
//! - [`delivery`]: packets to connmgr, deliveries to proxies, one chunk's
//!   deliveries gathered per connmgr and content.
//! - [`histories`]: local channel history and the bus's.
//! - [`report`]: counters, gauges and Pushpin's stats events.
//!
//! Its behaviour, as `impl Engine` blocks by concern:
//! - this file: the engine, its run loop, sending a session's packets,
//!   ending sessions.
//! - `hold`: hand-overs and hold instructions, subscriptions, connmgr's
//!   packets.
//! - `fanout`: what each subscriber does with an item, deliveries in
//!   per-connmgr batches, queues within credits.
//! - `replay`: history handed to sessions coming back.
//! - `recovery`: asking the origin again, and what its answer does.
//! - `expired`: what each timer does.
//! - `websocket`: WebSocket sessions' control and deliveries.

use crate::fetch::{Fetched, Fetcher};
use crate::sequencing::Sequencer;
use crate::session::Session;
use crate::ws::WsSessions;
use delivery::Outbox;
use histories::Histories;
use holdfast_protocol::handoff::HoldMode;
use holdfast_protocol::publish::Item;
use holdfast_protocol::zhttp::Packet;
use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::Multipart;
use report::{Gauges, Report};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use subscriptions::Subscriptions;
use timers::Timers;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod delivery;
mod expired;
mod fanout;
pub mod histories;
mod hold;
mod input;
mod recovery;
mod replay;
pub mod report;
pub mod subscriptions;
pub mod timers;
mod websocket;

pub use input::Input;

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
    options: Options,
    /// Where its packets and deliveries go.
    out: Outbox,
    /// Boxed: a `Session` is about a kilobyte, and the map keeps up to
    /// twice its length in slots (it grows by doubling).
    sessions: HashMap<String, Box<Session>>,
    /// Channel → sessions, and what followers of interest hear.
    subscriptions: Subscriptions,
    timers: Timers,
    /// Item order, duplicates and each channel's last id.
    sequencer: Sequencer,
    /// The last items of each channel, for sessions coming back.
    history: Histories,
    /// Requests to the origin.
    fetcher: Fetcher,
    fetched: Option<mpsc::UnboundedReceiver<Fetched>>,
    /// WebSocket sessions' subscriptions (their proxies own them).
    ws: WsSessions,
    /// Where items with `purge` go first (they come back purged).
    purger: Option<mpsc::Sender<Item>>,
    /// Counters, gauges, stats.
    report: Report,
    /// Client sessions' last ids (Pushpin's session feature), when on.
    client_sessions: Option<crate::client_sessions::Shared>,
}

/// The next message of an optional input (never, without one).
async fn next_of(rx: &mut Option<mpsc::Receiver<Multipart>>) -> Option<Multipart> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A session's key in the engine: connmgr's id and the session's.
fn key_of(connmgr: &str, id: &str) -> String {
    format!("{connmgr} {id}")
}

impl Engine {
    /// An engine sending through `link`; `interest` follows its channels.
    pub fn new(
        link: Arc<Link>,
        interest: Vec<mpsc::Sender<Multipart>>,
        options: Options,
    ) -> Engine {
        let (fetcher, fetched) = Fetcher::new();
        Engine {
            out: Outbox::new(link),
            options,
            sessions: HashMap::new(),
            subscriptions: Subscriptions::new(
                interest,
                options.update_on_first_subscription,
                options.subscription_linger,
            ),
            timers: Timers::default(),
            sequencer: Sequencer::new(options.id_cache_ttl),
            history: Histories::new(options.history),
            fetcher,
            fetched: Some(fetched),
            ws: WsSessions::new(options.subscription_max),
            purger: None,
            report: Report::default(),
            client_sessions: None,
        }
    }

    /// Asks the bus's stream for channel history local history lacks. With
    /// the bus, items reach this instance only for channels someone here
    /// listens to, so a channel's local history is dropped when nobody
    /// does any more.
    pub fn with_bus_history(mut self, lookups: mpsc::Sender<crate::history::Lookup>) -> Engine {
        self.history.set_bus(lookups);
        self
    }

    /// Sends `ws-message` content through `out` (the handler's PUB socket).
    pub fn with_ws_out(mut self, out: mpsc::Sender<Multipart>) -> Engine {
        self.out.set_ws_out(out);
        self
    }

    /// Keeps client sessions' last ids in `store` (Pushpin's session feature).
    pub fn with_client_sessions(mut self, store: crate::client_sessions::Shared) -> Engine {
        self.client_sessions = Some(store);
        self
    }

    /// Sends Pushpin's stats events through `stats`.
    pub fn with_stats(mut self, stats: crate::stats::Stats) -> Engine {
        self.report.set_stats(stats);
        self
    }

    /// Counts into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Engine {
        self.report.set_metrics(metrics);
        self
    }

    /// Sends items with `purge` through `purger` before delivering them.
    pub fn with_purger(mut self, purger: mpsc::Sender<Item>) -> Engine {
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
            self.timers.arm_ws_sweep();
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
                    Some(input) => self.on_input(input).await,
                    None => break,
                },
                Some(done) = fetched.recv() => self.on_fetched(done).await,
                Some(msg) = next_of(&mut ws_controls) => self.on_ws_control(&msg).await,
                expired = std::future::poll_fn(|cx| self.timers.poll_expired(cx)), if timers_armed => {
                    if let Some((key, timer)) = expired {
                        self.on_timer(key, timer).await;
                    }
                }
                _ = gauges.tick() => self.set_gauges(),
                _ = reports.tick(), if self.report.has_stats() => {
                    self.report.report(self.sessions.len() + self.ws.len());
                }
                _ = token.cancelled() => break,
            }
            self.subscriptions.announce().await;
            // After the subscriptions: the bus reads a channel's history
            // once it listens to it, so nothing falls between the two.
            self.history.send_lookups().await;
        }
        let keys: Vec<String> = self.sessions.keys().cloned().collect();
        for key in keys {
            self.finish(&key).await;
        }
    }

    /// What publishers and the command socket ask.
    async fn on_input(&mut self, input: Input) {
        match input {
            Input::Items(items) => {
                self.report.count(|m| &m.items, items.len());
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
            Input::Recover => self.recover_all(),
            Input::History { lookup, found } => self.on_history(lookup, found).await,
            Input::Refresh { cid, channel } => {
                let keys = channel
                    .map(|c| self.subscriptions.subscribers(&c))
                    .unwrap_or_default();
                let refreshes = self.ws.refreshes(cid.as_deref(), &keys);
                self.out.send_ws(refreshes).await;
            }
        }
    }

    /// Sets the gauges from the state now.
    fn set_gauges(&self) {
        let streams = self
            .sessions
            .values()
            .filter(|s| s.mode() == HoldMode::Stream)
            .count();
        let (channels, subscriptions) = self.subscriptions.counts();
        self.report.gauges(Gauges {
            streams,
            responses: self.sessions.len() - streams,
            channels,
            subscriptions,
            ws: self.ws.len(),
            history: self.history.counts(),
        });
    }

    /// Numbers a session's packets as they leave (see
    /// `holdfast_protocol::zhttp::Endpoint::stamp`) and sends them.
    async fn send_session(&mut self, key: &str, packets: Vec<Packet>) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let out = session.stamp_all(packets, Instant::now());
        self.out.send_all(out).await;
    }

    /// A session's mode as Pushpin's stats name it.
    fn stats_mode(&self, key: &str) -> &'static str {
        match self.sessions.get(key).map(|s| s.mode()) {
            Some(HoldMode::Response) => "response",
            _ => "stream",
        }
    }

    /// Ends a session at shutdown: a stream gets its end, a long-poll its
    /// timeout response.
    async fn finish(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match session.mode() {
            HoldMode::Response => {
                let response = session.timeout_response();
                self.respond(key, response).await;
            }
            HoldMode::Stream => {
                session.close();
                self.flush(key).await;
            }
        }
    }

    fn unsubscribe(&mut self, key: &str) {
        let Some(session) = self.sessions.get(key) else {
            return;
        };
        for channel in session.channel_names() {
            self.unsubscribe_channel(key, &channel);
        }
    }

    /// Forgets a session; tells its gone link, if it has one.
    fn remove(&mut self, key: &str) {
        self.unsubscribe(key);
        let Some(session) = self.sessions.remove(key) else {
            return;
        };
        let parting = session.parting();
        self.report.stat(
            "conn",
            serde_json::json!({"id": parting.name, "unavailable": true}),
        );
        for timer in &parting.timers {
            self.timers.cancel(timer);
        }
        if let Some((origin, gone)) = &parting.gone {
            self.fetcher.gone(origin, gone);
        }
    }
}

#[cfg(test)]
mod tests;
