//! What each timer does when it fires: sequencing waits given up, linger
//! and first-subscription timers of channels, smoothed updates, the
//! WebSocket sweep, and a session's hold (long-poll timeout, stream
//! keep-alive), next-link and ZHTTP liveness timers.

use super::timers::{Timer, Timers};
use super::Engine;
use crate::session::{NextCheck, SessionTimer};
use holdfast_protocol::handoff::HoldMode;
use tokio::time::Instant;

impl Engine {
    /// (Re)arms a session's ZHTTP liveness timer at its endpoint's next
    /// deadline.
    pub(super) fn arm_link_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let at = session.next_deadline();
        self.timers.arm_at(
            session.timer(SessionTimer::Link),
            key,
            SessionTimer::Link,
            at,
        );
    }

    pub(super) async fn on_timer(&mut self, key: String, timer: Timer) {
        match timer {
            Timer::Sequence => {
                for item in self.sequencer.give_up(&key) {
                    self.publish(item).await;
                }
            }
            Timer::Linger => {
                if self.subscriptions.linger_over(&key) {
                    self.let_go(&key, "response");
                }
            }
            Timer::FirstSubscription => {
                let keys = self.subscriptions.subscribers(&key);
                self.timers.queue_updates(keys);
            }
            Timer::Updates => {
                for key in self.timers.next_updates() {
                    self.recover(&key, false);
                }
            }
            Timer::WsSweep => {
                for change in self.ws.expire(Instant::now()) {
                    tracing::info!(session = %change.key, "WebSocket session not heard of for {}s: forgotten", crate::ws::WS_TTL.as_secs());
                    for channel in &change.unsubscribed {
                        self.unsubscribe_channel(&change.key, channel);
                    }
                }
                self.timers.arm_ws_sweep();
            }
            Timer::Session(which) => {
                let Some(session) = self.sessions.get_mut(&key) else {
                    return;
                };
                // Fired: the slot's key is no longer live.
                Timers::fired(session.timer(which));
                match which {
                    SessionTimer::Hold => self.on_hold_timer(&key).await,
                    SessionTimer::Next => self.on_next_timer(&key),
                    SessionTimer::Link => self.on_link_timer(&key).await,
                }
            }
        }
    }

    /// A long-poll's timeout (its timeout response), or a stream's
    /// keep-alive (then the next one is armed).
    async fn on_hold_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.mode() == HoldMode::Response {
            let response = session.timeout_response();
            self.respond(key, response).await;
            return;
        }
        let Some(tick) = session.keep_alive_tick() else {
            return;
        };
        if let Some(packet) = tick.packet {
            self.send_session(key, vec![packet]).await;
        }
        if tick.flush {
            self.flush(key).await;
        }
        if let Some(session) = self.sessions.get_mut(key) {
            self.timers.arm(
                session.timer(SessionTimer::Hold),
                key,
                SessionTimer::Hold,
                tick.again,
            );
        }
    }

    /// A stream's next-link timer: every channel fed since, nothing was
    /// missed (the timer starts over); otherwise the link is fetched.
    fn on_next_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match session.next_link_check() {
            NextCheck::Rearm(again) => {
                if let Some(after) = again {
                    self.timers.arm(
                        session.timer(SessionTimer::Next),
                        key,
                        SessionTimer::Next,
                        after,
                    );
                }
            }
            NextCheck::Ask => self.recover(key, false),
        }
    }

    /// ZHTTP liveness: a silent connmgr ends the session; otherwise a
    /// keep-alive when due.
    async fn on_link_timer(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        match session.link_tick(Instant::now()) {
            None => {
                tracing::info!(session = %key, "connmgr silent for {}s: session dropped", holdfast_protocol::zhttp::SESSION_EXPIRY.as_secs());
                self.remove(key);
            }
            Some(keep_alive) => {
                if let Some(packet) = keep_alive {
                    self.send_session(key, vec![packet]).await;
                }
                self.arm_link_timer(key);
            }
        }
    }
}
