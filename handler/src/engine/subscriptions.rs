//! The channel index: which sessions each channel has, the channels whose
//! subscription lingers after their last long-poll left (its client
//! usually comes straight back), and the subscription changes for those
//! who follow local interest (the SUB publish input, the bus): a channel's
//! first subscription and its last unsubscription, each once.

use super::timers::{Timer, Timers};
use holdfast_protocol::zmq::Multipart;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::time::delay_queue::Key;

/// Delay between a channel's first subscription and the update of its
/// sessions.
pub const FIRST_SUBSCRIPTION_DELAY: Duration = Duration::from_secs(1);

/// The XSUB message that subscribes to (or unsubscribes from) `channel`:
/// what followers of local interest are sent.
pub fn interest_message(channel: &str, subscribe: bool) -> Multipart {
    let mut frame = vec![u8::from(subscribe)];
    frame.extend_from_slice(channel.as_bytes());
    vec![frame]
}

/// What an unsubscription left of a channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Left {
    /// Other sessions hold it.
    Still,
    /// Nobody holds it, but its subscription lingers.
    Lingers,
    /// Nobody holds it: let go (its change is queued for the followers).
    Released,
}

/// The channel index.
pub struct Subscriptions {
    /// Channel → keys of subscribed sessions.
    channels: HashMap<String, HashSet<String>>,
    /// Channels without sessions whose subscription lingers, with the
    /// timer that ends it.
    lingering: HashMap<String, Key>,
    /// Who follows local interest.
    followers: Vec<mpsc::Sender<Multipart>>,
    /// Changes not yet sent to them.
    changes: Vec<Multipart>,
    /// Update every session of a channel a second after its first
    /// subscription.
    first_update: bool,
    /// How long a channel whose last long-poll left stays subscribed.
    linger: Duration,
}

impl Subscriptions {
    /// An empty index whose changes go to `followers`.
    pub fn new(
        followers: Vec<mpsc::Sender<Multipart>>,
        first_update: bool,
        linger: Duration,
    ) -> Self {
        Subscriptions {
            channels: HashMap::new(),
            lingering: HashMap::new(),
            followers,
            changes: Vec::new(),
            first_update,
            linger,
        }
    }

    /// Subscribes session `key` to `channel`; how many sessions it has now.
    /// A first subscription (not one that lingered) is a change for the
    /// followers, and starts the first-subscription update.
    pub fn subscribe(&mut self, key: &str, channel: &str, timers: &mut Timers) -> usize {
        let lingered = self.lingering.remove(channel);
        if let Some(timer) = &lingered {
            // Still subscribed: not a first subscription.
            timers.cancel(timer);
        }
        let subscribers = self.channels.entry(channel.to_owned()).or_default();
        if subscribers.is_empty() && lingered.is_none() {
            self.changes.push(interest_message(channel, true));
            if self.first_update {
                timers.after(channel, Timer::FirstSubscription, FIRST_SUBSCRIPTION_DELAY);
            }
        }
        subscribers.insert(key.to_owned());
        subscribers.len()
    }

    /// Unsubscribes session `key` from `channel`. A channel its last
    /// long-poll left lingers a while; otherwise, with nobody left, it is
    /// let go.
    pub fn unsubscribe(
        &mut self,
        key: &str,
        channel: &str,
        long_poll: bool,
        timers: &mut Timers,
    ) -> Left {
        let Some(set) = self.channels.get_mut(channel) else {
            return Left::Still;
        };
        set.remove(key);
        if !set.is_empty() {
            return Left::Still;
        }
        self.channels.remove(channel);
        if long_poll && !self.linger.is_zero() {
            let timer = timers.after(channel, Timer::Linger, self.linger);
            self.lingering.insert(channel.to_owned(), timer);
            return Left::Lingers;
        }
        self.changes.push(interest_message(channel, false));
        Left::Released
    }

    /// A channel's linger timer fired: whether it is let go now (nobody
    /// came back); its change is queued then.
    pub fn linger_over(&mut self, channel: &str) -> bool {
        let over = self.lingering.remove(channel).is_some() && !self.channels.contains_key(channel);
        if over {
            self.changes.push(interest_message(channel, false));
        }
        over
    }

    /// Whether `channel` has sessions here.
    pub fn has(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The sessions of `channel`.
    pub fn subscribers(&self, channel: &str) -> Vec<String> {
        self.channels
            .get(channel)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes `channel`'s sessions out while an item is handed to them
    /// (nothing subscribes or unsubscribes meanwhile): they are walked
    /// without copying their keys. [`Subscriptions::restore`] puts them back.
    pub fn take(&mut self, channel: &str) -> Option<HashSet<String>> {
        self.channels.get_mut(channel).map(std::mem::take)
    }

    /// Puts back what [`Subscriptions::take`] took.
    pub fn restore(&mut self, channel: &str, subscribers: HashSet<String>) {
        if let Some(slot) = self.channels.get_mut(channel) {
            *slot = subscribers;
        }
    }

    /// Channels, and subscriptions over all of them.
    pub fn counts(&self) -> (usize, usize) {
        let subscriptions = self.channels.values().map(HashSet::len).sum();
        (self.channels.len(), subscriptions)
    }

    /// Sends the followers the changes since the last call.
    pub async fn announce(&mut self) {
        for change in self.changes.drain(..) {
            for follower in &self.followers {
                // A follower gone (its input ended) is not waited for.
                let _ = follower.send(change.clone()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_messages() {
        assert_eq!(interest_message("ab", true), vec![vec![1, b'a', b'b']]);
        assert_eq!(interest_message("ab", false), vec![vec![0, b'a', b'b']]);
    }

    #[tokio::test(start_paused = true)]
    async fn followers_hear_of_a_first_subscription_and_a_last_unsubscription_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut timers = Timers::default();
        let mut subs = Subscriptions::new(vec![tx], false, Duration::from_secs(60));
        assert_eq!(subs.subscribe("a", "ch", &mut timers), 1);
        assert_eq!(subs.subscribe("b", "ch", &mut timers), 2);
        assert_eq!(subs.unsubscribe("a", "ch", false, &mut timers), Left::Still);
        assert_eq!(
            subs.unsubscribe("b", "ch", false, &mut timers),
            Left::Released
        );
        subs.announce().await;
        assert_eq!(rx.recv().await, Some(interest_message("ch", true)));
        assert_eq!(rx.recv().await, Some(interest_message("ch", false)));
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_polls_channel_lingers_and_a_comeback_is_no_first_subscription() {
        let (tx, mut rx) = mpsc::channel(8);
        let mut timers = Timers::default();
        let mut subs = Subscriptions::new(vec![tx], false, Duration::from_secs(60));
        subs.subscribe("a", "ch", &mut timers);
        assert_eq!(
            subs.unsubscribe("a", "ch", true, &mut timers),
            Left::Lingers
        );
        subs.subscribe("b", "ch", &mut timers);
        assert!(!subs.linger_over("ch"), "it came back");
        subs.unsubscribe("b", "ch", true, &mut timers);
        assert!(subs.linger_over("ch"));
        subs.announce().await;
        assert_eq!(rx.recv().await, Some(interest_message("ch", true)));
        assert_eq!(rx.recv().await, Some(interest_message("ch", false)));
        assert!(rx.try_recv().is_err());
    }
}
