//! What the engine tells about itself: counters and gauges for `/metrics`,
//! and Pushpin's stats socket (`conn`, `sub`, `message` and `report`
//! events).

use crate::metrics::Metrics;
use crate::stats::{Stats, REPORT_INTERVAL};
use holdfast_protocol::publish::Item;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

/// The state the gauges show.
pub struct Gauges {
    /// Held streams.
    pub streams: usize,
    /// Held long-polls.
    pub responses: usize,
    /// Channels with sessions.
    pub channels: usize,
    /// Subscriptions over all channels.
    pub subscriptions: usize,
    /// WebSocket sessions with subscriptions.
    pub ws: usize,
    /// Items in history, and channels with history.
    pub history: (usize, usize),
}

/// Counters, gauges and stats.
#[derive(Default)]
pub struct Report {
    metrics: Option<Arc<Metrics>>,
    stats: Option<Stats>,
    /// Items and deliveries at the last `report` event.
    window: (u64, u64),
}

impl Report {
    /// Counts into `metrics`.
    pub fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Sends stats events through `stats`.
    pub fn set_stats(&mut self, stats: Stats) {
        self.stats = Some(stats);
    }

    /// Whether stats events go anywhere.
    pub fn has_stats(&self) -> bool {
        self.stats.is_some()
    }

    /// A stats event.
    pub fn stat(&self, kind: &str, fields: serde_json::Value) {
        if let Some(stats) = &self.stats {
            stats.event(kind, fields);
        }
    }

    /// Adds `n` to a counter.
    pub fn count(&self, which: impl Fn(&Metrics) -> &AtomicU64, n: usize) {
        if let Some(m) = &self.metrics {
            which(m).fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The `message` stats event: an item and how many sessions got it.
    pub fn message(&self, item: &Item, count: usize) {
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

    /// The `report` event: `connections` now, items and deliveries since
    /// the last one.
    pub fn report(&mut self, connections: usize) {
        let Some(m) = &self.metrics else { return };
        let (items, sent) = (
            m.items.load(Ordering::Relaxed),
            m.deliveries.load(Ordering::Relaxed),
        );
        let (last_items, last_sent) = std::mem::replace(&mut self.window, (items, sent));
        let minutes = (connections as u64 * REPORT_INTERVAL.as_secs()) / 60;
        self.stat(
            "report",
            serde_json::json!({"connections": connections, "minutes": minutes,
                "received": items - last_items, "sent": sent - last_sent}),
        );
    }

    /// Sets the gauges.
    pub fn gauges(&self, now: Gauges) {
        let Some(m) = &self.metrics else { return };
        let set = |g: &AtomicI64, v: usize| {
            g.store(i64::try_from(v).unwrap_or(i64::MAX), Ordering::Relaxed)
        };
        set(&m.held_stream, now.streams);
        set(&m.held_response, now.responses);
        set(&m.channels, now.channels);
        set(&m.subscriptions, now.subscriptions);
        set(&m.ws_sessions, now.ws);
        set(&m.history_items, now.history.0);
        set(&m.history_channels, now.history.1);
    }
}
