//! Timers: one queue for hold timeouts, stream keep-alives, next links,
//! ZHTTP liveness (the session's endpoint says when), sequencing waits,
//! smoothed updates and the WebSocket sweep.

use super::*;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
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

/// A session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionTimer {
    /// Long-poll timeout, or stream keep-alive.
    Hold,
    /// ZHTTP keep-alive and expiry.
    Link,
    /// Next-link timeout, or the back-off after a failed attempt.
    Next,
}

impl Engine {
    /// (Re)arms a session's ZHTTP liveness timer at its endpoint's next
    /// deadline.
    pub(super) fn arm_link_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if let Some(timer) = session.link_timer.take() {
            self.timers.try_remove(&timer);
        }
        session.link_timer = Some(self.timers.insert_at(
            (key.to_owned(), Timer::Session(SessionTimer::Link)),
            session.endpoint.next_deadline(),
        ));
    }

    pub(super) async fn on_timer(&mut self, key: String, timer: Timer) {
        match timer {
            Timer::Sequence => {
                for item in self.sequencer.give_up(&key) {
                    self.publish(item).await;
                }
            }
            Timer::Linger => {
                if self.lingering.remove(&key).is_some() && !self.channels.contains_key(&key) {
                    self.let_go(&key, "response");
                }
            }
            Timer::FirstSubscription => {
                let keys: Vec<String> = self
                    .channels
                    .get(&key)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                self.queue_updates(keys);
            }
            Timer::Updates => {
                let n = self.updates.len().min(UPDATE_BATCH);
                let batch: Vec<String> = self.updates.drain(..n).collect();
                for key in batch {
                    self.recover(&key, false);
                }
                if self.updates.is_empty() {
                    self.updates_armed = false;
                } else {
                    self.timers
                        .insert((String::new(), Timer::Updates), UPDATE_INTERVAL);
                }
            }
            Timer::WsSweep => {
                for change in self.ws.expire(Instant::now()) {
                    tracing::info!(session = %change.key, "WebSocket session not heard of for {}s: forgotten", crate::ws::WS_TTL.as_secs());
                    for channel in &change.unsubscribed {
                        self.unsubscribe_channel(&change.key, channel);
                    }
                }
                self.timers
                    .insert((String::new(), Timer::WsSweep), WS_SWEEP);
            }
            Timer::Session(timer) => self.on_session_timer(key, timer).await,
        }
    }

    pub(super) async fn on_session_timer(&mut self, key: String, timer: SessionTimer) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        match timer {
            SessionTimer::Hold => {
                session.hold_timer = None;
                match session.mode {
                    HoldMode::Response => {
                        let response = session.timeout_response.clone();
                        self.respond(&key, response).await;
                    }
                    HoldMode::Stream => {
                        let Some(ka) = session.keep_alive.clone() else {
                            return;
                        };
                        // Only an idle stream needs one: with content
                        // queued for the client, data is flowing already.
                        if session.queue.is_empty() {
                            if session.endpoint.credits() >= ka.data.len() {
                                session.endpoint.spend(ka.data.len());
                                let mut packet = session.packet(PacketType::Data);
                                packet.body = Some(ka.data.clone());
                                packet.more = true;
                                self.send_session(&key, vec![packet]).await;
                            } else {
                                // Larger than the client's window (a 60 KB
                                // keep-alive, an 8 KB window): it goes in
                                // pieces as the window allows, as content does.
                                session.queue.push_back(ka.data.clone());
                                self.flush(&key).await;
                            }
                        }
                        if let Some(session) = self.sessions.get_mut(&key) {
                            session.hold_timer = Some(self.timers.insert(
                                (key.clone(), Timer::Session(SessionTimer::Hold)),
                                Duration::from_secs(ka.timeout.into()),
                            ));
                        }
                    }
                }
            }
            SessionTimer::Next => {
                session.next_timer = None;
                let all_fed = session
                    .channels
                    .iter()
                    .all(|c| session.fed.contains(&c.name));
                if session.link_failures == 0 && all_fed && !session.channels.is_empty() {
                    session.fed.clear();
                    if let Some((_, seconds)) = &session.next_link {
                        session.next_timer = Some(self.timers.insert(
                            (key.clone(), Timer::Session(SessionTimer::Next)),
                            Duration::from_secs((*seconds).into()),
                        ));
                    }
                    return;
                }
                self.recover(&key, false);
            }
            SessionTimer::Link => {
                session.link_timer = None;
                let now = Instant::now();
                if session.endpoint.expired(now) {
                    tracing::info!(session = %key, "connmgr silent for {}s: session dropped", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
                    self.remove(&key);
                    return;
                }
                if session.endpoint.keep_alive_due(now) {
                    let packet = session.packet(PacketType::KeepAlive);
                    self.send_session(&key, vec![packet]).await;
                }
                self.arm_link_timer(&key);
            }
        }
    }
}
