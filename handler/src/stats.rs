//! Pushpin's stats socket: the handler PUBlishes events about connections,
//! subscriptions and messages, and a periodic report, for external tools
//! (monitors, brokers that forward only subscribed channels). Each message
//! is one frame, `<type> T<tnetstring>`, as Pushpin sends them:
//!
//! - `conn {from, id, type: "http", ttl}`, and `{from, id, unavailable: true}`
//!   when the session ends;
//! - `sub {mode: "stream"|"response", channel, ttl, subscribers}`, and
//!   `{mode, channel, unavailable: true}` when the last subscriber leaves;
//! - `message {channel, item-id, count, transport}` per published item;
//! - `report {from, connections, minutes, received, sent}` every
//!   [`REPORT_INTERVAL`].

use holdfast_protocol::format::{self, Format};
use holdfast_protocol::zmq::Multipart;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a `conn` or `sub` event stays true without being repeated.
pub const TTL: u64 = 120;

/// How often `report` goes out (Pushpin's `stats_report_interval`).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Where stats events go.
#[derive(Clone)]
pub struct Stats {
    out: mpsc::Sender<Multipart>,
    from: String,
}

impl Stats {
    /// Events from handler `from` through `out` (a bound PUB socket).
    pub fn new(out: mpsc::Sender<Multipart>, from: &str) -> Stats {
        Stats {
            out,
            from: from.to_owned(),
        }
    }

    /// Sends one event; dropped when the socket is busy (stats are best
    /// effort, never a reason to slow delivery).
    pub fn event(&self, kind: &str, mut fields: serde_json::Value) {
        if let serde_json::Value::Object(map) = &mut fields {
            map.entry("from")
                .or_insert_with(|| self.from.clone().into());
        }
        let mut frame = format!("{kind} ").into_bytes();
        if format::encode_into(&fields, Format::TNetString, &mut frame).is_ok() {
            let _ = self.out.try_send(vec![frame]);
        }
    }
}
