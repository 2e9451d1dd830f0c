//! Channel history for sessions coming back: the last items of each
//! channel kept here, and, in JetStream mode, the bus's stream asked for
//! what local history does not reach (its lookups sent once the channel's
//! subscription has gone out, so nothing falls between the two).

use crate::history::{History, Limits, Lookup, Since};
use holdfast_protocol::publish::Item;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What history has after a position.
pub enum Look {
    /// These items.
    Found(Vec<Item>),
    /// Asked of the bus's stream: its answer comes as an input.
    Asked,
    /// Nothing known.
    Unknown,
}

/// Local history, and the bus's.
pub struct Histories {
    local: History,
    /// The bus's stream (JetStream mode).
    bus: Option<mpsc::Sender<Lookup>>,
    /// Lookups not yet sent to it.
    pending: Vec<Lookup>,
}

impl Histories {
    /// Local history within `limits`.
    pub fn new(limits: Limits) -> Histories {
        Histories {
            local: History::new(limits),
            bus: None,
            pending: Vec::new(),
        }
    }

    /// Asks `lookups` (the bus's stream) for what local history lacks.
    pub fn set_bus(&mut self, lookups: mpsc::Sender<Lookup>) {
        self.bus = Some(lookups);
    }

    /// Whether history is kept at all.
    pub fn enabled(&self) -> bool {
        self.local.enabled()
    }

    /// Whether the bus's stream is history too. With the bus, items reach
    /// this instance only for channels someone here listens to, so a
    /// channel's local history is dropped when nobody does any more.
    pub fn from_bus(&self) -> bool {
        self.bus.is_some()
    }

    /// Keeps a published item.
    pub fn record(&mut self, item: &Item, now: Instant) {
        self.local.record(item, now);
    }

    /// Items kept, and channels with items.
    pub fn counts(&self) -> (usize, usize) {
        (self.local.len(), self.local.channel_count())
    }

    /// What `channel` has after `after`, for session `key`: from local
    /// history, or asked of the bus's stream.
    pub fn look(&mut self, key: &str, channel: &str, after: &str, now: Instant) -> Look {
        match self.local.since(channel, after, now) {
            Since::Found(items) => Look::Found(items),
            Since::Unknown if self.bus.is_some() => {
                self.pending.push(Lookup {
                    key: key.to_owned(),
                    channel: channel.to_owned(),
                    after: after.to_owned(),
                });
                Look::Asked
            }
            Since::Unknown => Look::Unknown,
        }
    }

    /// Nobody here listens to `channel` any more.
    pub fn released(&mut self, channel: &str) {
        if self.bus.is_some() {
            self.local.forget(channel);
        }
    }

    /// Sends the lookups since the last call to the bus.
    pub async fn send_lookups(&mut self) {
        if let Some(bus) = &self.bus {
            for lookup in self.pending.drain(..) {
                let _ = bus.send(lookup).await;
            }
        }
    }
}
