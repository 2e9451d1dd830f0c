//! Item order and duplicates per channel, as Pushpin's handler keeps them.
//!
//! - An item whose id was seen on its channel within the id cache's time
//!   (`id_cache_ttl`, default [`ID_CACHE_TTL`]; 0 turns it off) is a
//!   duplicate and dropped.
//! - An item whose `prev-id` is not the channel's last released id waits
//!   (at most [`PENDING_MAX`] per channel) for its predecessor; when the
//!   predecessor arrives the chain is released in order. If it never comes
//!   within `message_wait` (default [`MESSAGE_WAIT`]), the engine calls [`Sequencer::give_up`] and
//!   the waiting items go out in arrival order.
//! - `no-seq` items, and items of a channel whose last id is unknown, go out
//!   at once.
//!
//! Pure state: no timers or I/O here; the engine owns those.

use holdfast_protocol::publish::Item;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// How long an item id is remembered for de-duplication by default
/// (Pushpin's example config, `id_cache_ttl`).
pub const ID_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long an out-of-order item waits for its predecessor by default
/// (`message_wait`).
pub const MESSAGE_WAIT: Duration = Duration::from_secs(5);
/// Items that may wait per channel; past this the oldest goes out.
pub const PENDING_MAX: usize = 100;

/// What the engine should do after offering an item.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Items to deliver now, in order.
    pub release: Vec<Item>,
    /// The channel's wait timer should be started (first item waiting).
    pub start_wait: bool,
}

/// Per-channel order and de-duplication state.
pub struct Sequencer {
    /// How long ids are remembered; zero: not at all.
    id_ttl: Duration,
    last_id: HashMap<String, String>,
    pending: HashMap<String, VecDeque<Item>>,
    seen: HashSet<(String, String)>,
    seen_order: VecDeque<(Instant, String, String)>,
}

impl Default for Sequencer {
    fn default() -> Sequencer {
        Sequencer::new(ID_CACHE_TTL)
    }
}

impl Sequencer {
    /// A sequencer remembering ids for `id_ttl` (zero: no de-duplication).
    pub fn new(id_ttl: Duration) -> Sequencer {
        Sequencer {
            id_ttl,
            last_id: HashMap::new(),
            pending: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Offers a published item.
    pub fn offer(&mut self, item: Item, now: Instant) -> Outcome {
        self.forget_old(now);
        if let Some(id) = item.id.as_ref().filter(|_| !self.id_ttl.is_zero()) {
            let key = (item.channel.clone(), id.clone());
            if self.seen.contains(&key) {
                tracing::debug!(channel = %item.channel, id = %id, "duplicate item dropped");
                return Outcome::default();
            }
            self.seen.insert(key);
            self.seen_order
                .push_back((now, item.channel.clone(), id.clone()));
        }
        let in_order = item.no_seq
            || item.prev_id.is_none()
            || match self.last_id.get(&item.channel) {
                None => true,
                Some(last) => item.prev_id.as_deref() == Some(last.as_str()),
            };
        if !in_order {
            let queue = self.pending.entry(item.channel.clone()).or_default();
            let start_wait = queue.is_empty();
            queue.push_back(item);
            let mut outcome = Outcome {
                release: Vec::new(),
                start_wait,
            };
            if queue.len() > PENDING_MAX {
                if let Some(oldest) = queue.pop_front() {
                    self.advance(&oldest);
                    outcome.release.push(oldest);
                }
            }
            return outcome;
        }
        let channel = item.channel.clone();
        let mut release = Vec::new();
        self.advance(&item);
        release.push(item);
        self.release_chain(&channel, &mut release);
        Outcome {
            release,
            start_wait: false,
        }
    }

    /// The wait for `channel` ran out: everything waiting goes out in
    /// arrival order, and the channel's last id is what went out last.
    pub fn give_up(&mut self, channel: &str) -> Vec<Item> {
        let waiting: Vec<Item> = self
            .pending
            .remove(channel)
            .map(Vec::from)
            .unwrap_or_default();
        if let Some(last) = waiting.last() {
            self.advance(last);
        }
        waiting
    }

    /// The id of the last item that went out on `channel`, if known.
    pub fn last_id(&self, channel: &str) -> Option<&str> {
        self.last_id.get(channel).map(String::as_str)
    }

    /// Forgets the last id of `channel` (a session found it inconsistent
    /// with what the origin said), or of every channel (`recover`).
    pub fn clear_last_id(&mut self, channel: Option<&str>) {
        match channel {
            Some(channel) => {
                self.last_id.remove(channel);
            }
            None => self.last_id.clear(),
        }
    }

    /// The channel lost its last subscriber: its order is forgotten.
    pub fn forget_channel(&mut self, channel: &str) {
        self.last_id.remove(channel);
        self.pending.remove(channel);
    }

    fn advance(&mut self, item: &Item) {
        match &item.id {
            Some(id) => {
                self.last_id.insert(item.channel.clone(), id.clone());
            }
            // An item without id leaves the order unknown.
            None => {
                self.last_id.remove(&item.channel);
            }
        }
    }

    fn release_chain(&mut self, channel: &str, release: &mut Vec<Item>) {
        while let Some(queue) = self.pending.get_mut(channel) {
            let last = self.last_id.get(channel).cloned();
            let Some(pos) = queue
                .iter()
                .position(|i| i.prev_id.is_some() && i.prev_id == last)
            else {
                break;
            };
            let Some(next) = queue.remove(pos) else { break };
            if queue.is_empty() {
                self.pending.remove(channel);
            }
            self.advance(&next);
            release.push(next);
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.seen_order.front() {
            if now.duration_since(*at) < self.id_ttl {
                break;
            }
            if let Some((_, channel, id)) = self.seen_order.pop_front() {
                self.seen.remove(&(channel, id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: Option<&str>, prev: Option<&str>) -> Item {
        Item {
            channel: "c".into(),
            id: id.map(str::to_owned),
            prev_id: prev.map(str::to_owned),
            ..Item::default()
        }
    }

    fn ids(items: &[Item]) -> Vec<&str> {
        items
            .iter()
            .map(|i| i.id.as_deref().unwrap_or("-"))
            .collect()
    }

    #[test]
    fn in_order_and_duplicates() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        assert_eq!(ids(&s.offer(item(Some("1"), None), now).release), vec!["1"]);
        assert_eq!(
            ids(&s.offer(item(Some("2"), Some("1")), now).release),
            vec!["2"]
        );
        assert!(
            s.offer(item(Some("2"), Some("1")), now).release.is_empty(),
            "duplicate"
        );
        // After the TTL the id may be used again.
        let later = now + ID_CACHE_TTL + Duration::from_secs(1);
        assert_eq!(s.offer(item(Some("1"), None), later).release.len(), 1);
    }

    #[test]
    fn the_id_cache_time_is_configurable_and_zero_turns_it_off() {
        let now = Instant::now();
        let mut short = Sequencer::new(Duration::from_secs(2));
        assert_eq!(short.offer(item(Some("1"), None), now).release.len(), 1);
        assert!(short
            .offer(item(Some("1"), None), now + Duration::from_secs(1))
            .release
            .is_empty());
        assert_eq!(
            short
                .offer(item(Some("1"), None), now + Duration::from_secs(3))
                .release
                .len(),
            1
        );
        let mut off = Sequencer::new(Duration::ZERO);
        assert_eq!(off.offer(item(Some("1"), None), now).release.len(), 1);
        assert_eq!(off.offer(item(Some("1"), None), now).release.len(), 1);
    }

    #[test]
    fn out_of_order_waits_for_its_predecessor() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        s.offer(item(Some("1"), None), now);
        let waiting = s.offer(item(Some("3"), Some("2")), now);
        assert!(waiting.release.is_empty());
        assert!(waiting.start_wait);
        let also = s.offer(item(Some("4"), Some("3")), now);
        assert!(also.release.is_empty() && !also.start_wait);
        assert_eq!(
            ids(&s.offer(item(Some("2"), Some("1")), now).release),
            vec!["2", "3", "4"]
        );
    }

    #[test]
    fn giving_up_releases_in_arrival_order() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        s.offer(item(Some("1"), None), now);
        s.offer(item(Some("5"), Some("4")), now);
        s.offer(item(Some("6"), Some("5")), now);
        assert_eq!(ids(&s.give_up("c")), vec!["5", "6"]);
        assert_eq!(
            ids(&s.offer(item(Some("7"), Some("6")), now).release),
            vec!["7"]
        );
        assert!(s.give_up("c").is_empty());
    }

    #[test]
    fn unknown_order_and_no_seq_go_out_at_once() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        assert_eq!(
            ids(&s.offer(item(Some("9"), Some("8")), now).release),
            vec!["9"],
            "last id unknown"
        );
        let mut bypass = item(Some("11"), Some("10"));
        bypass.no_seq = true;
        assert_eq!(ids(&s.offer(bypass, now).release), vec!["11"]);
        assert_eq!(ids(&s.offer(item(None, None), now).release), vec!["-"]);
        assert_eq!(
            ids(&s.offer(item(Some("x"), Some("whatever")), now).release),
            vec!["x"],
            "no id cleared the order"
        );
        s.forget_channel("c");
        assert_eq!(s.offer(item(Some("y"), Some("nope")), now).release.len(), 1);
    }

    #[test]
    fn pending_is_bounded() {
        let mut s = Sequencer::default();
        let now = Instant::now();
        s.offer(item(Some("0"), None), now);
        let mut released = 0;
        for n in 0..(PENDING_MAX + 5) {
            let id = format!("w{n}");
            released += s.offer(item(Some(&id), Some("missing")), now).release.len();
        }
        assert_eq!(released, 5);
    }
}
