//! Fan-out: a published item taken through sequencing, then what each
//! subscriber of its channel does with it (deliver, queue for credits,
//! answer a long-poll, close, recover), and the deliveries of one chunk of
//! subscribers sent as one packet per connmgr and content.

use super::delivery::{Ready, BATCH};
use super::timers::Timer;
use super::Engine;
use crate::session::{Decision, Offered, SessionTimer};
use holdfast_protocol::handoff::{HoldMode, Response};
use holdfast_protocol::publish::Item;
use std::collections::HashSet;
use tokio::time::Instant;

/// What a chunk of subscribers left to do once its deliveries are out.
#[derive(Default)]
struct Aftermath {
    /// Sessions with content queued, or closing.
    flush: Vec<String>,
    /// Sessions too slow for their queue.
    drop: Vec<String>,
    /// Sessions asked by a hint to ask the origin.
    recover: Vec<String>,
    /// Sessions that missed an item.
    gaps: Vec<String>,
    /// Long-poll answers.
    responses: Vec<(String, Response)>,
}

impl Engine {
    /// Takes a published item through sequencing, then delivers what it
    /// releases. Channels without local sessions are not tracked at all.
    pub(super) async fn offer(&mut self, item: Item) {
        // Kept whether or not anyone here listens now: a client that left
        // comes back for it.
        self.history.record(&item, Instant::now());
        if !self.subscriptions.has(&item.channel) {
            self.report.message(&item, 0);
            return;
        }
        let channel = item.channel.clone();
        let outcome = self.sequencer.offer(item, Instant::now());
        if outcome.start_wait {
            self.timers
                .after(&channel, Timer::Sequence, self.options.message_wait);
        }
        for item in outcome.release {
            self.publish(item).await;
        }
    }

    /// Hands `item` to every subscriber of its channel. The subscribers
    /// are taken out while the item is handed out (nothing here subscribes
    /// or unsubscribes) and walked without copying their keys; they go back
    /// before anything else happens. A chunk of sessions at a time, each
    /// chunk's packets sent before the next is looked at: connmgr starts
    /// writing to clients while the rest of a large channel is still being
    /// decided.
    pub(super) async fn publish(&mut self, item: Item) {
        let Some(subscribers) = self.subscriptions.take(&item.channel) else {
            return;
        };
        self.note_sent(&item, &subscribers);
        self.publish_ws(&item, &subscribers).await;
        let mut after = Aftermath::default();
        let mut sent = 0;
        let mut keys = subscribers.iter();
        loop {
            let (ready, looked_at) = self.decide_chunk(&item, &mut keys, &mut after);
            if looked_at == 0 {
                break;
            }
            sent += self.out.send_ready(ready).await;
            // The socket task was woken into this worker's LIFO slot, where
            // the other worker cannot steal it: without a yield the packets
            // leave only once the whole channel is decided.
            tokio::task::yield_now().await;
        }
        self.subscriptions.restore(&item.channel, subscribers);
        self.settle(&item, sent, after).await;
    }

    /// The WebSocket subscribers' deliveries, to their proxies (with the
    /// bus's history, those waiting for it hold the item back).
    async fn publish_ws(&mut self, item: &Item, subscribers: &HashSet<String>) {
        if self.ws.is_empty() {
            return;
        }
        let mut ws_keys: Vec<String> = subscribers
            .iter()
            .filter(|k| self.ws.contains(k))
            .cloned()
            .collect();
        if self.history.from_bus() {
            ws_keys.retain(|k| !self.ws.holds_back(k, item));
        }
        if !ws_keys.is_empty() {
            let deliveries = self.ws.deliveries(item, &ws_keys);
            let sessions: usize = deliveries.iter().map(|(_, d)| d.ids.len()).sum();
            self.report.count(|m| &m.deliveries, sessions);
            self.out.send_ws(deliveries).await;
        }
    }

    /// What the next [`BATCH`] of `keys` do with `item`: the deliveries
    /// ready now, and how many sessions were looked at (0: none left).
    fn decide_chunk<'a>(
        &mut self,
        item: &Item,
        keys: &mut impl Iterator<Item = &'a String>,
        after: &mut Aftermath,
    ) -> (Ready, usize) {
        let now = Instant::now();
        let mut ready = Ready::default();
        let mut looked_at = 0;
        for key in keys.take(BATCH) {
            looked_at += 1;
            let Some(session) = self.sessions.get_mut(key) else {
                continue;
            };
            match session.decide(item) {
                Decision::Skip => {}
                Decision::HoldBack => session.hold_back(item.clone()),
                Decision::Recover => after.recover.push(key.clone()),
                Decision::Gap => after.gaps.push(key.clone()),
                Decision::Respond(response) => after.responses.push((key.clone(), response)),
                Decision::Close => {
                    session.close();
                    after.flush.push(key.clone());
                }
                Decision::Deliver(content) => match session.offer(&content, now) {
                    Offered::Sent {
                        id,
                        idle_keep_alive,
                    } => {
                        ready.add(session.connmgr(), content, id);
                        if let Some(period) = idle_keep_alive {
                            self.timers
                                .postpone(session.timer(SessionTimer::Hold), period);
                        }
                    }
                    Offered::Queued => after.flush.push(key.clone()),
                    Offered::TooSlow => {
                        tracing::info!(session = %key, "client too slow: {} items queued; disconnecting", crate::session::QUEUE_MAX);
                        after.drop.push(key.clone());
                    }
                },
            }
        }
        (ready, looked_at)
    }

    /// What a publish left to do, in order: counts, long-poll answers,
    /// flushes, sessions too slow, then recovery.
    async fn settle(&mut self, item: &Item, sent: usize, after: Aftermath) {
        let sent = sent + after.responses.len();
        self.report.count(|m| &m.deliveries, sent);
        self.report.message(item, sent);
        self.report.count(|m| &m.dropped, after.drop.len());
        for (key, response) in after.responses {
            self.respond(&key, response).await;
        }
        for key in after.flush {
            self.flush(&key).await;
        }
        for key in after.drop {
            let cancel = self.sessions.get(&key).and_then(|s| s.cancel());
            self.send_session(&key, cancel.into_iter().collect()).await;
            self.remove(&key);
        }
        if after.recover.is_empty() && after.gaps.is_empty() {
            return;
        }
        if item.prev_id.is_some() {
            self.sequencer.clear_last_id(Some(&item.channel));
        }
        for key in after.recover {
            self.recover(&key, true);
        }
        for key in after.gaps {
            self.on_gap(&key, &item.channel).await;
        }
    }

    /// A session missed an item: the origin is asked for what it missed,
    /// or, with no way to ask (a stream without a next link), the session
    /// ends where it was, so the client comes back from there (an SSE
    /// client with its `Last-Event-ID`, from history where it reaches):
    /// nothing is papered over, and nothing is lost without a word.
    pub(super) async fn on_gap(&mut self, key: &str, channel: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.can_recover() {
            self.recover(key, true);
            return;
        }
        tracing::info!(session = %key, %channel, "missed an item and has no way to ask the origin again: ending it");
        self.report.count(|m| &m.ended_on_gap, 1);
        match session.mode() {
            HoldMode::Stream => {
                session.close();
                self.flush(key).await;
            }
            HoldMode::Response => {
                let response = session.timeout_response();
                self.respond(key, response).await;
            }
        }
    }

    /// Records `item`'s id as the last one sent to the client sessions of
    /// its subscribers (Pushpin does this for every subscriber, whatever
    /// its filters decide).
    fn note_sent(&self, item: &Item, keys: &HashSet<String>) {
        let (Some(id), Some(store)) = (&item.id, &self.client_sessions) else {
            return;
        };
        let Ok(mut store) = store.lock() else { return };
        // The common case (no `session` route in use) costs no walk over
        // the subscribers.
        if store.is_empty() {
            return;
        }
        for key in keys {
            let sid = match self.sessions.get(key) {
                Some(session) => session.sid(),
                None => self.ws.sid(key),
            };
            if let Some(sid) = sid {
                store.sent(sid, &item.channel, id);
            }
        }
    }

    /// Sends a whole response (long-poll answer) and ends the session once
    /// it is out.
    pub(super) async fn respond(&mut self, key: &str, response: Response) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let (packet, more) = session.answer(response);
        self.unsubscribe(key);
        self.send_session(key, vec![packet]).await;
        if !more {
            self.remove(key);
        }
    }

    /// Sends what of a session's queue its credits allow, then its end
    /// once it is closing and the queue is empty.
    pub(super) async fn flush(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let (packets, end) = session.drain();
        self.send_session(key, packets).await;
        if end {
            self.remove(key);
        }
    }
}
