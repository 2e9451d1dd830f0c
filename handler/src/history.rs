//! Channel history (`history_size`, `history_ttl`, `history_channels`): the
//! last items published on each channel, kept in the handler so that a
//! client coming back with where it was (a `prev-id` from the origin, or
//! an SSE `Last-Event-ID`) gets what it missed from here, in order, without
//! the origin being asked. Only items with an `id` are kept (nothing else
//! can be pointed at). Bounded three ways: items per channel, their age,
//! and channels (the least recently published is forgotten first).

use holdfast_protocol::publish::Item;
use lru::LruCache;
use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;
use tokio::time::Instant;

/// What history keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Items per channel; 0: no history.
    pub size: usize,
    /// Longest an item is kept.
    pub ttl: Duration,
    /// Channels remembered.
    pub channels: usize,
}

/// What history says about a client's position on a channel.
#[derive(Debug, PartialEq)]
pub enum Since {
    /// The position is in history: these came after it (maybe none).
    Found(Vec<Item>),
    /// History does not reach back to it (or never had it).
    Unknown,
}

/// A session's lookup of a channel's history on the bus (JetStream).
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The session (engine key).
    pub key: String,
    /// The channel.
    pub channel: String,
    /// The id the session had last.
    pub after: String,
}

/// The kept items.
pub struct History {
    limits: Limits,
    channels: Option<LruCache<String, VecDeque<(Instant, Item)>>>,
    items: usize,
}

impl History {
    /// History within `limits` (none when `limits.size` is 0).
    pub fn new(limits: Limits) -> History {
        let channels = (limits.size > 0)
            .then(|| NonZeroUsize::new(limits.channels))
            .flatten()
            .map(LruCache::new);
        History {
            limits,
            channels,
            items: 0,
        }
    }

    /// Whether anything is kept at all.
    pub fn enabled(&self) -> bool {
        self.channels.is_some()
    }

    /// Items kept, all channels.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// Channels with items kept.
    pub fn channel_count(&self) -> usize {
        self.channels.as_ref().map_or(0, LruCache::len)
    }

    /// Keeps `item` (when it has an id), dropping what falls out.
    pub fn record(&mut self, item: &Item, now: Instant) {
        let Some(channels) = &mut self.channels else {
            return;
        };
        if item.id.is_none() {
            return;
        }
        if !channels.contains(&item.channel) {
            // Full: the least recently published channel makes room.
            if let Some((_, evicted)) = channels.push(item.channel.clone(), VecDeque::new()) {
                self.items -= evicted.len();
            }
        }
        let Some(kept) = channels.get_mut(&item.channel) else {
            return;
        };
        kept.push_back((now, item.clone()));
        self.items += 1;
        while kept.len() > self.limits.size {
            kept.pop_front();
            self.items -= 1;
        }
        self.items -= expire(kept, now, self.limits.ttl);
    }

    /// Forgets `channel` (its items stopped arriving here: with the bus,
    /// when nobody here listens; what was kept would hide a gap).
    pub fn forget(&mut self, channel: &str) {
        if let Some(kept) = self.channels.as_mut().and_then(|c| c.pop(channel)) {
            self.items -= kept.len();
        }
    }

    /// What came on `channel` after the item `id`.
    pub fn since(&mut self, channel: &str, id: &str, now: Instant) -> Since {
        let Some(kept) = self.channels.as_mut().and_then(|c| c.peek_mut(channel)) else {
            return Since::Unknown;
        };
        self.items -= expire(kept, now, self.limits.ttl);
        match kept.iter().position(|(_, i)| i.id.as_deref() == Some(id)) {
            Some(at) => Since::Found(kept.iter().skip(at + 1).map(|(_, i)| i.clone()).collect()),
            None => Since::Unknown,
        }
    }
}

/// Drops items older than `ttl` from the front; returns how many.
fn expire(kept: &mut VecDeque<(Instant, Item)>, now: Instant, ttl: Duration) -> usize {
    let mut gone = 0;
    while kept
        .front()
        .is_some_and(|(at, _)| now.saturating_duration_since(*at) > ttl)
    {
        kept.pop_front();
        gone += 1;
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(channel: &str, id: Option<&str>) -> Item {
        Item {
            channel: channel.into(),
            id: id.map(Into::into),
            ..Item::default()
        }
    }

    fn ids(since: Since) -> Option<Vec<String>> {
        match since {
            Since::Found(items) => Some(items.into_iter().filter_map(|i| i.id).collect()),
            Since::Unknown => None,
        }
    }

    fn limits(size: usize, ttl: u64, channels: usize) -> Limits {
        Limits {
            size,
            ttl: Duration::from_secs(ttl),
            channels,
        }
    }

    #[test]
    fn what_came_after_a_position() {
        let now = Instant::now();
        let mut h = History::new(limits(3, 60, 10));
        for id in ["1", "2", "3", "4"] {
            h.record(&item("a", Some(id)), now);
        }
        h.record(&item("a", None), now);
        h.record(&item("b", Some("x")), now);
        assert_eq!(
            ids(h.since("a", "2", now)),
            Some(vec!["3".into(), "4".into()])
        );
        assert_eq!(ids(h.since("a", "4", now)), Some(vec![]));
        // Fell out (size 3), never seen, other channel.
        assert_eq!(ids(h.since("a", "1", now)), None);
        assert_eq!(ids(h.since("a", "9", now)), None);
        assert_eq!(ids(h.since("c", "1", now)), None);
        assert_eq!(h.len(), 4);
        assert_eq!(h.channel_count(), 2);
    }

    #[test]
    fn items_age_out() {
        let start = Instant::now();
        let mut h = History::new(limits(10, 5, 10));
        h.record(&item("a", Some("1")), start);
        h.record(&item("a", Some("2")), start + Duration::from_secs(3));
        let later = start + Duration::from_secs(6);
        assert_eq!(ids(h.since("a", "1", later)), None);
        assert_eq!(ids(h.since("a", "2", later)), Some(vec![]));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn the_least_recently_published_channel_goes_first() {
        let now = Instant::now();
        let mut h = History::new(limits(10, 60, 2));
        h.record(&item("a", Some("1")), now);
        h.record(&item("b", Some("1")), now);
        h.record(&item("a", Some("2")), now);
        h.record(&item("c", Some("1")), now);
        assert_eq!(ids(h.since("b", "1", now)), None);
        assert_eq!(ids(h.since("a", "1", now)), Some(vec!["2".into()]));
        assert_eq!(h.len(), 3);
        assert_eq!(h.channel_count(), 2);
    }

    #[test]
    fn off_keeps_nothing() {
        let now = Instant::now();
        let mut h = History::new(limits(0, 60, 10));
        h.record(&item("a", Some("1")), now);
        assert!(!h.enabled());
        assert!(h.is_empty());
        assert_eq!(ids(h.since("a", "1", now)), None);
    }
}
