//! The engine's one timer queue (a `DelayQueue`, a timer wheel): hold
//! timeouts, stream keep-alives, next links, ZHTTP liveness, sequencing
//! waits, first-subscription updates, lingering subscriptions, smoothed
//! updates and the WebSocket sweep. A session's timers are slots in the
//! session; the rule kept here is that a slot only ever holds a live key
//! (a stale key could remove another timer that reuses it, and resetting
//! one panics).

use crate::session::SessionTimer;
use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::time::delay_queue::Key;
use tokio_util::time::DelayQueue;

/// How often WebSocket sessions without news are looked for.
pub const WS_SWEEP: Duration = Duration::from_secs(30);

/// Smoothed updates (recover command, first subscriptions): this many
/// sessions every [`UPDATE_INTERVAL`], Pushpin's 10 actions of 100 a second.
pub const UPDATE_BATCH: usize = 100;

/// Between two batches of smoothed updates.
pub const UPDATE_INTERVAL: Duration = Duration::from_millis(100);

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
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
    /// A channel's subscription lingered long enough (key = channel).
    Linger,
}

/// The timer queue, and the sessions waiting for a smoothed update.
#[derive(Default)]
pub struct Timers {
    queue: DelayQueue<(String, Timer)>,
    updates: VecDeque<String>,
    updates_armed: bool,
}

impl Timers {
    /// Whether anything is armed.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next timer due: what it is for, and for whom.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<Option<(String, Timer)>> {
        self.queue
            .poll_expired(cx)
            .map(|expired| expired.map(|e| e.into_inner()))
    }

    /// Arms a timer that no slot holds (channels' and the engine's own).
    pub fn after(&mut self, key: &str, timer: Timer, after: Duration) -> Key {
        self.queue.insert((key.to_owned(), timer), after)
    }

    /// Removes a timer no slot holds any more.
    pub fn cancel(&mut self, timer: &Key) {
        self.queue.try_remove(timer);
    }

    /// Arms session `key`'s timer `which` in `slot`, replacing what it held.
    pub fn arm(&mut self, slot: &mut Option<Key>, key: &str, which: SessionTimer, after: Duration) {
        self.disarm(slot);
        *slot = Some(
            self.queue
                .insert((key.to_owned(), Timer::Session(which)), after),
        );
    }

    /// As [`Timers::arm`], at a point in time.
    pub fn arm_at(&mut self, slot: &mut Option<Key>, key: &str, which: SessionTimer, at: Instant) {
        self.disarm(slot);
        *slot = Some(
            self.queue
                .insert_at((key.to_owned(), Timer::Session(which)), at),
        );
    }

    /// Removes the timer in `slot`, if any.
    pub fn disarm(&mut self, slot: &mut Option<Key>) {
        if let Some(timer) = slot.take() {
            self.queue.try_remove(&timer);
        }
    }

    /// The timer in `slot` fired: its key is no longer live.
    pub fn fired(slot: &mut Option<Key>) {
        *slot = None;
    }

    /// Starts the timer in `slot` over, `after` from now.
    pub fn postpone(&mut self, slot: &Option<Key>, after: Duration) {
        if let Some(timer) = slot {
            self.queue.reset(timer, after);
        }
    }

    /// Arms the WebSocket sweep.
    pub fn arm_ws_sweep(&mut self) {
        self.queue.insert((String::new(), Timer::WsSweep), WS_SWEEP);
    }

    /// Sessions to update, smoothed: [`UPDATE_BATCH`] every
    /// [`UPDATE_INTERVAL`], the first batch at once.
    pub fn queue_updates(&mut self, keys: Vec<String>) {
        self.updates.extend(keys);
        if !self.updates_armed && !self.updates.is_empty() {
            self.updates_armed = true;
            self.queue
                .insert((String::new(), Timer::Updates), Duration::ZERO);
        }
    }

    /// The updates' timer fired: the next batch (the timer is armed again
    /// while sessions wait).
    pub fn next_updates(&mut self) -> Vec<String> {
        let n = self.updates.len().min(UPDATE_BATCH);
        let batch: Vec<String> = self.updates.drain(..n).collect();
        if self.updates.is_empty() {
            self.updates_armed = false;
        } else {
            self.queue
                .insert((String::new(), Timer::Updates), UPDATE_INTERVAL);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_slot_holds_only_a_live_timer() {
        let mut timers = Timers::default();
        let mut slot = None;
        timers.arm(&mut slot, "s", SessionTimer::Hold, Duration::from_secs(5));
        // Arming again replaces it: one timer, not two.
        timers.arm(&mut slot, "s", SessionTimer::Hold, Duration::from_secs(1));
        let other = timers.after("c", Timer::Sequence, Duration::from_secs(3));
        let fired = std::future::poll_fn(|cx| timers.poll_expired(cx)).await;
        assert_eq!(
            fired,
            Some(("s".to_owned(), Timer::Session(SessionTimer::Hold)))
        );
        Timers::fired(&mut slot);
        // Disarming an emptied slot touches nobody else's timer.
        timers.disarm(&mut slot);
        timers.cancel(&other);
        assert!(timers.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn updates_go_in_batches() {
        let mut timers = Timers::default();
        timers.queue_updates((0..250).map(|n| n.to_string()).collect());
        let mut sizes = Vec::new();
        while !timers.is_empty() {
            let fired = std::future::poll_fn(|cx| timers.poll_expired(cx)).await;
            assert_eq!(fired.map(|f| f.1), Some(Timer::Updates));
            sizes.push(timers.next_updates().len());
        }
        assert_eq!(sizes, [100, 100, 50]);
    }
}
