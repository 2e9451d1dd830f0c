//! Taking sessions over: a hand-over from the proxy, the instructions of
//! a hold (from the hand-over, a retried long-poll or a next link) applied
//! to a session, its subscriptions, and connmgr's packets for a session.

use super::histories::Look;
use super::subscriptions::Left;
use super::{key_of, Engine};
use crate::session::{Applied, Session, SessionTimer, Source};
use holdfast_protocol::format;
use holdfast_protocol::handoff::{Accept, Hold, HoldMode, Response};
use holdfast_protocol::publish::Item;
use holdfast_protocol::zhttp::{Packet, PacketType};
use holdfast_protocol::zmq::Multipart;
use tokio::time::Instant;

impl Engine {
    pub(super) async fn accept_frame(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        match format::decode::<Accept>(frame) {
            Ok(accept) => self.accept(accept).await,
            Err(err) => tracing::warn!(error = %err, "undecodable hand-over dropped"),
        }
    }

    pub(super) async fn accept(&mut self, mut accept: Accept) {
        let key = key_of(&accept.connmgr, &accept.id);
        if self.sessions.contains_key(&key) {
            tracing::warn!(session = %key, "hand-over of a session already held; ignored");
            return;
        }
        let mut session = Session::from_accept(&accept, self.out.from(), Instant::now());
        if let Some(update) = accept.hold.session.take() {
            if let Some(Ok(mut store)) = self.client_sessions.as_ref().map(|s| s.lock()) {
                store.apply(&update);
            }
            session.set_sid(update.sid);
        }
        self.sessions.insert(key.clone(), Box::new(session));
        self.arm_link_timer(&key);
        self.report.stat(
            "conn",
            serde_json::json!({"id": format!("{}:{}", accept.connmgr, accept.id),
                "type": "http", "ttl": crate::stats::TTL}),
        );
        self.install(&key, accept.hold, accept.response, Source::Accept)
            .await;
    }

    /// Applies hold instructions to a session: from the hand-over, from a
    /// long-poll asked again, or from a stream's next link (whose body is
    /// appended). Channels are diffed: left ones unsubscribed, new ones
    /// subscribed. Where the client was, history still holds what it
    /// missed: that is replayed, and the origin is not asked for those
    /// channels; a channel that delivered past what the origin told the
    /// session makes it ask again.
    pub(super) async fn install(
        &mut self,
        key: &str,
        hold: Hold,
        response: Response,
        source: Source,
    ) {
        let max = self.options.subscription_max;
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let applied = session.apply_hold(hold, response, source, max);
        if !applied.ignored.is_empty() {
            tracing::info!(session = %key, ignored = ?applied.ignored, "channels beyond connection_subscription_max ({max}) ignored");
        }
        self.arm_hold_timers(key, &applied);
        let (replay, replayed) = self.history_plan(key);
        let stale = self.stale_channels(key, &replayed);
        let mode = self.sessions.get(key).map(|s| s.mode());
        tracing::debug!(session = %key, ?mode, channels = ?applied.new, ?source, "session held");
        let Applied {
            old,
            new,
            packets,
            follow_now,
            ..
        } = applied;
        self.send_session(key, packets).await;
        for channel in old.iter().filter(|c| !new.contains(c)) {
            self.unsubscribe_channel(key, channel);
        }
        for channel in new.iter().filter(|c| !old.contains(c)) {
            self.subscribe_channel(key, channel);
        }
        for channel in &stale {
            self.sequencer.clear_last_id(Some(channel));
        }
        if follow_now || !stale.is_empty() {
            self.recover(key, true);
        }
        if !replay.is_empty() {
            tracing::debug!(session = %key, items = replay.len(), "missed items replayed from history");
            self.replay(key, replay).await;
        }
        self.flush(key).await;
    }

    /// The timers new instructions start (their old ones removed): the
    /// long-poll timeout or stream keep-alive, and the next link's.
    fn arm_hold_timers(&mut self, key: &str, applied: &Applied) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        self.timers.disarm(session.timer(SessionTimer::Hold));
        self.timers.disarm(session.timer(SessionTimer::Next));
        if let Some(after) = applied.hold_after {
            self.timers.arm(
                session.timer(SessionTimer::Hold),
                key,
                SessionTimer::Hold,
                after,
            );
        }
        if let Some(after) = applied.next_after {
            self.timers.arm(
                session.timer(SessionTimer::Next),
                key,
                SessionTimer::Next,
                after,
            );
        }
    }

    /// What history holds of what the session missed: the items to replay,
    /// and the channels history covers (found here, or asked of the bus:
    /// what is published on them meanwhile waits for its answer).
    fn history_plan(&mut self, key: &str) -> (Vec<Item>, Vec<String>) {
        let mut replay = Vec::new();
        let mut replayed = Vec::new();
        if !self.history.enabled() {
            return (replay, replayed);
        }
        let Some(session) = self.sessions.get_mut(key) else {
            return (replay, replayed);
        };
        let now = Instant::now();
        for (channel, position, named) in session.history_positions() {
            let covered = match self.history.look(key, &channel, &position, now) {
                Look::Found(items) => {
                    replay.extend(items);
                    true
                }
                Look::Asked => {
                    session.await_history(&channel, named.is_none());
                    true
                }
                Look::Unknown => false,
            };
            if covered {
                if let Some(position) = named {
                    session.set_position(&channel, position);
                }
                replayed.push(channel);
            }
        }
        (replay, replayed)
    }

    /// The channels (not covered by history) that already delivered past
    /// what the origin told this session: it missed something.
    fn stale_channels(&self, key: &str, replayed: &[String]) -> Vec<String> {
        let Some(session) = self.sessions.get(key) else {
            return Vec::new();
        };
        session.stale_channels(replayed, |c| self.sequencer.last_id(c).map(str::to_owned))
    }

    pub(super) fn subscribe_channel(&mut self, key: &str, channel: &str) {
        let count = self.subscriptions.subscribe(key, channel, &mut self.timers);
        let mode = self.stats_mode(key);
        self.report.stat(
            "sub",
            serde_json::json!({"mode": mode, "channel": channel, "ttl": crate::stats::TTL,
                "subscribers": count}),
        );
    }

    pub(super) fn unsubscribe_channel(&mut self, key: &str, channel: &str) {
        // A long-poll's client usually comes straight back: keep the
        // subscription and the channel's last id a while.
        let long_poll = matches!(
            self.sessions.get(key).map(|s| s.mode()),
            Some(HoldMode::Response)
        );
        let left = self
            .subscriptions
            .unsubscribe(key, channel, long_poll, &mut self.timers);
        if left == Left::Released {
            let mode = self.stats_mode(key);
            self.let_go(channel, mode);
        }
    }

    /// A channel nobody holds any more: its order and (with the bus) its
    /// history forgotten.
    pub(super) fn let_go(&mut self, channel: &str, mode: &str) {
        self.history.released(channel);
        self.report.stat(
            "sub",
            serde_json::json!({"mode": mode, "channel": channel, "unavailable": true}),
        );
        self.sequencer.forget_channel(channel);
    }

    pub(super) async fn on_packet(&mut self, packet: Packet) {
        let (Some(from), Some(id)) = (packet.from.clone(), packet.single_id().map(str::to_owned))
        else {
            return;
        };
        let key = key_of(&from, &id);
        let Some(session) = self.sessions.get_mut(&key) else {
            if !matches!(packet.kind(), PacketType::Cancel | PacketType::Error) {
                self.out.cancel(&from, &id).await;
            }
            return;
        };
        if let Err(err) = session.receive(&packet, Instant::now()) {
            tracing::warn!(session = %key, "packet from connmgr refused: {err}");
            let cancel = session.cancel();
            self.send_session(&key, cancel.into_iter().collect()).await;
            self.remove(&key);
            return;
        }
        match packet.kind() {
            PacketType::Cancel | PacketType::Error => {
                tracing::debug!(session = %key, "client gone");
                self.remove(&key);
            }
            _ => self.flush(&key).await,
        }
    }
}
