//! The handler's metrics, and everyone's: its own counters and gauges, the
//! latest report of every connmgr and proxy (they PUSH one a second to the
//! metrics socket), rendered as Prometheus text for `GET /metrics`, and
//! `GET /health`, which says whether every process reported lately.

use holdfast_protocol::format;
use holdfast_runtime::metrics::{render, Registry, Report, REPORT_INTERVAL};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A process whose last report is older than this is not healthy (and its
/// samples are left out of `/metrics`).
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The handler's own series.
pub struct Metrics {
    registry: Arc<Registry>,
    /// Processes `/health` requires (`connmgr`, `proxy`).
    required: Vec<String>,
    reports: Mutex<HashMap<(String, String), (Report, Instant)>>,
    /// Items received on every input.
    pub items: Arc<AtomicU64>,
    /// Contents sent to held sessions (HTTP and WebSocket).
    pub deliveries: Arc<AtomicU64>,
    /// Sessions dropped for being too slow.
    pub dropped: Arc<AtomicU64>,
    /// Sessions ended for missing an item they had no way to recover.
    pub ended_on_gap: Arc<AtomicU64>,
    /// Held HTTP sessions, streams and long-polls.
    pub held_stream: Arc<AtomicI64>,
    /// Held long-polls.
    pub held_response: Arc<AtomicI64>,
    /// WebSocket sessions with subscriptions.
    pub ws_sessions: Arc<AtomicI64>,
    /// Channels with subscribers.
    pub channels: Arc<AtomicI64>,
    /// Subscriptions (session, channel).
    pub subscriptions: Arc<AtomicI64>,
    /// Purges that succeeded, per target.
    pub purges: Arc<AtomicU64>,
    /// Purges that failed (each attempt).
    pub purge_failures: Arc<AtomicU64>,
    /// Whether a bus (`bus_url`) is configured: `/health` then requires it.
    pub bus_configured: AtomicBool,
    /// With JetStream: whether its stream is set up (`/health` requires it).
    pub bus_stream_wanted: AtomicBool,
    /// The stream is set up.
    pub bus_stream_ready: AtomicBool,
    /// 1 while the bus is connected.
    pub bus_connected: Arc<AtomicI64>,
    /// Items published on the bus and confirmed.
    pub bus_published: Arc<AtomicU64>,
    /// Messages received from the bus.
    pub bus_received: Arc<AtomicU64>,
    /// Bus messages that were not items.
    pub bus_undecodable: Arc<AtomicU64>,
    /// Subscription overflows (NATS slow consumer events).
    pub bus_slow_consumer: Arc<AtomicU64>,
    /// Channels subscribed on the bus.
    pub bus_channels: Arc<AtomicI64>,
    /// Channels being read from the bus's JetStream stream (consumer up).
    pub bus_reading: Arc<AtomicI64>,
    /// Milliseconds from the stream storing the latest message read to its
    /// arrival here.
    pub bus_lag_ms: Arc<AtomicI64>,
    /// Items kept in channel history.
    pub history_items: Arc<AtomicI64>,
    /// Channels with items in history.
    pub history_channels: Arc<AtomicI64>,
    /// Items sent to returning sessions from history.
    pub history_replayed: Arc<AtomicU64>,
}

impl Metrics {
    /// The handler `id`'s metrics; `/health` requires reports from
    /// `required`.
    pub fn new(id: &str, required: Vec<String>) -> Arc<Metrics> {
        let r = Registry::new("handler", id);
        Arc::new(Metrics {
            items: r.counter(
                "holdfast_items_received_total",
                "Publish items received, every input.",
                &[],
            ),
            deliveries: r.counter(
                "holdfast_deliveries_total",
                "Published contents sent to held sessions.",
                &[],
            ),
            dropped: r.counter(
                "holdfast_sessions_dropped_total",
                "Held sessions closed for not keeping up with publishes.",
                &[],
            ),
            ended_on_gap: r.counter(
                "holdfast_sessions_ended_on_gap_total",
                "Held sessions ended for missing an item (a prev-id gap) with no way to ask the origin again (a stream without a next link); the client comes back from where it was.",
                &[],
            ),
            held_stream: r.gauge(
                "holdfast_held_sessions",
                "Held HTTP sessions.",
                &[("mode", "stream")],
            ),
            held_response: r.gauge(
                "holdfast_held_sessions",
                "Held HTTP sessions.",
                &[("mode", "response")],
            ),
            ws_sessions: r.gauge(
                "holdfast_websocket_sessions",
                "WebSocket sessions with GRIP subscriptions.",
                &[],
            ),
            channels: r.gauge("holdfast_channels", "Channels with subscribers.", &[]),
            subscriptions: r.gauge(
                "holdfast_subscriptions",
                "Subscriptions (held HTTP sessions to channels).",
                &[],
            ),
            purges: r.counter(
                "holdfast_purges_total",
                "Cache purges sent, per target.",
                &[("result", "ok")],
            ),
            purge_failures: r.counter(
                "holdfast_purges_total",
                "Cache purges sent, per target.",
                &[("result", "failed")],
            ),
            bus_configured: AtomicBool::new(false),
            bus_stream_wanted: AtomicBool::new(false),
            bus_stream_ready: AtomicBool::new(false),
            bus_connected: r.gauge(
                "holdfast_bus_connected",
                "1 while the bus (NATS) is connected.",
                &[],
            ),
            bus_published: r.counter(
                "holdfast_bus_published_total",
                "Items published on the bus and confirmed by it.",
                &[],
            ),
            bus_received: r.counter(
                "holdfast_bus_received_total",
                "Messages received from the bus.",
                &[],
            ),
            bus_undecodable: r.counter(
                "holdfast_bus_undecodable_total",
                "Bus messages dropped for not being publish items (logged).",
                &[],
            ),
            bus_slow_consumer: r.counter(
                "holdfast_bus_slow_consumer_total",
                "Channel subscriptions that overflowed and lost messages (logged).",
                &[],
            ),
            bus_channels: r.gauge(
                "holdfast_bus_channels",
                "Channels subscribed on the bus.",
                &[],
            ),
            bus_lag_ms: r.gauge(
                "holdfast_bus_lag_ms",
                "Milliseconds from the stream storing the latest item read to its arrival (JetStream).",
                &[],
            ),
            bus_reading: r.gauge(
                "holdfast_bus_channels_reading",
                "Channels whose JetStream consumer is up (history on).",
                &[],
            ),
            history_items: r.gauge(
                "holdfast_history_items",
                "Items kept in channel history.",
                &[],
            ),
            history_channels: r.gauge(
                "holdfast_history_channels",
                "Channels with items in history.",
                &[],
            ),
            history_replayed: r.counter(
                "holdfast_history_replayed_total",
                "Items sent from history to sessions that came back.",
                &[],
            ),
            registry: r,
            required,
            reports: Mutex::new(HashMap::new()),
        })
    }

    /// A report frame from the metrics socket.
    pub fn receive(&self, frame: &[u8]) {
        match format::decode::<Report>(frame) {
            Ok(report) => {
                if let Ok(mut reports) = self.reports.lock() {
                    reports.insert(
                        (report.process.clone(), report.id.clone()),
                        (report, Instant::now()),
                    );
                }
            }
            Err(err) => tracing::warn!(error = %err, "undecodable metrics report dropped"),
        }
    }

    /// Everyone's samples as Prometheus text.
    pub fn render(&self) -> String {
        let mut reports = vec![self.registry.report()];
        if let Ok(all) = self.reports.lock() {
            let mut fresh: Vec<&(Report, Instant)> = all
                .values()
                .filter(|(_, at)| at.elapsed() < STALE_AFTER)
                .collect();
            fresh.sort_by(|a, b| (&a.0.process, &a.0.id).cmp(&(&b.0.process, &b.0.id)));
            reports.extend(fresh.into_iter().map(|(r, _)| r.clone()));
        }
        render(&reports)
    }

    /// Whether every required process reported within [`STALE_AFTER`], and
    /// a JSON body saying so per process.
    pub fn health(&self) -> (bool, String) {
        let Ok(reports) = self.reports.lock() else {
            return (false, "{}".into());
        };
        let mut status = serde_json::Map::new();
        status.insert("handler".into(), "ok".into());
        let mut healthy = true;
        for process in &self.required {
            let latest = reports
                .iter()
                .filter(|((p, _), _)| p == process)
                .map(|(_, (_, at))| at.elapsed())
                .min();
            let state = match latest {
                Some(age) if age < STALE_AFTER => "ok".to_owned(),
                Some(age) => format!("silent for {}s", age.as_secs()),
                None => "never reported".to_owned(),
            };
            healthy &= state == "ok";
            status.insert(process.clone(), state.into());
        }
        if self.bus_configured.load(Relaxed) {
            let connected = self.bus_connected.load(Relaxed) == 1;
            let stream =
                !self.bus_stream_wanted.load(Relaxed) || self.bus_stream_ready.load(Relaxed);
            let state = match (connected, stream) {
                (false, _) => "disconnected",
                (true, false) => "connected, JetStream stream not set up yet",
                (true, true) => "ok",
            };
            healthy &= state == "ok";
            status.insert("bus".into(), state.into());
        }
        (healthy, serde_json::Value::Object(status).to_string())
    }
}

impl Metrics {
    /// The numbers the status page shows, as JSON: connections (every
    /// connmgr's), held sessions, WebSocket sessions, channels,
    /// subscriptions, and the items and deliveries totals (the page derives
    /// rates), the bus's state when there is one, with the time they were
    /// taken.
    pub fn snapshot(&self) -> serde_json::Value {
        let mut connections = 0.0;
        if let Ok(reports) = self.reports.lock() {
            for (report, at) in reports.values() {
                if at.elapsed() >= STALE_AFTER {
                    continue;
                }
                connections += report
                    .samples
                    .iter()
                    .filter(|s| s.name == "holdfast_connections_open")
                    .filter_map(|s| s.value.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        serde_json::json!({
            "at_ms": at_ms,
            "connections": connections as u64,
            "held": self.held_stream.load(Relaxed) + self.held_response.load(Relaxed),
            "websockets": self.ws_sessions.load(Relaxed),
            "channels": self.channels.load(Relaxed),
            "subscriptions": self.subscriptions.load(Relaxed),
            "items": self.items.load(Relaxed),
            "deliveries": self.deliveries.load(Relaxed),
            "history_items": self.history_items.load(Relaxed),
            "bus": self.bus_configured.load(Relaxed).then(|| serde_json::json!({
                "connected": self.bus_connected.load(Relaxed) == 1,
                "channels": self.bus_channels.load(Relaxed),
                "published": self.bus_published.load(Relaxed),
                "received": self.bus_received.load(Relaxed),
                "lost": self.bus_slow_consumer.load(Relaxed),
                "lag_ms": self.bus_lag_ms.load(Relaxed),
            })),
        })
    }
}

/// How often the engine sets its gauges.
pub const GAUGE_INTERVAL: Duration = REPORT_INTERVAL;
