//! Taking sessions over: a hand-over from the proxy, the instructions of
//! a hold (from the hand-over, a retried long-poll or a next link) applied
//! to a session, the channel index, and connmgr's packets for a session.

use super::fanout::Decision;
use super::*;
use crate::history::Since;

/// Delay between a channel's first subscription and the update of its
/// sessions.
pub(super) const FIRST_SUBSCRIPTION_DELAY: Duration = Duration::from_secs(1);

/// Where hold instructions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The proxy's hand-over.
    Accept,
    /// A long-poll asked again.
    Retry,
    /// A stream's next link.
    Link,
}

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
        let mut session = Session::from_accept(&accept, self.from.clone(), Instant::now());
        if let Some(update) = accept.hold.session.take() {
            if let Some(Ok(mut store)) = self.client_sessions.as_ref().map(|s| s.lock()) {
                store.apply(&update);
            }
            session.sid = update.sid;
        }
        self.sessions.insert(key.clone(), Box::new(session));
        self.arm_link_timer(&key);
        self.stat(
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
    /// subscribed.
    pub(super) async fn install(
        &mut self,
        key: &str,
        hold: Hold,
        response: Response,
        source: Source,
    ) {
        let subscription_max = self.options.subscription_max;
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let base = match source {
            Source::Link => session.next_link.as_ref().map(|(u, _)| u.to_string()),
            _ => session.origin.as_ref().map(|o| o.uri.clone()),
        };
        let resolve_link = |link: &str| base.as_deref().and_then(|b| resolve(b, link));
        let old: Vec<String> = session.channels.iter().map(|c| c.name.clone()).collect();
        session.channels = hold
            .channels
            .into_iter()
            .map(|c| Subscription {
                name: c.name,
                prev_id: c.prev_id,
                filters: c.filters,
            })
            .collect();
        if session.channels.len() > subscription_max {
            let ignored: Vec<&str> = session.channels[subscription_max..]
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            tracing::info!(session = %key, ?ignored, "channels beyond connection_subscription_max ({subscription_max}) ignored");
            session.channels.truncate(subscription_max);
        }
        session.meta = hold.meta;
        session.keep_alive = hold.keep_alive;
        session.next_link = hold
            .next_link
            .and_then(|(uri, timeout)| resolve_link(&uri).map(|u| (u, timeout)));
        if source == Source::Accept {
            session.gone_link = hold.gone_link.as_deref().and_then(resolve_link);
        }
        session.fed.clear();
        session.link_failures = 0;
        for timer in [session.hold_timer.take(), session.next_timer.take()]
            .into_iter()
            .flatten()
        {
            self.timers.try_remove(&timer);
        }
        let new: Vec<String> = session.channels.iter().map(|c| c.name.clone()).collect();
        if source != Source::Link {
            session.mode = hold.mode;
        }
        let mut packets = Vec::new();
        match session.mode {
            HoldMode::Stream if !session.phase.started() => {
                let mut response = session.cross_origin_response(response, false);
                let body = std::mem::take(&mut response.body);
                let now = session.endpoint.take_credits(body.len());
                response.body = body.slice(..now);
                if now < body.len() {
                    session.queue.push_back(body.slice(now..));
                }
                packets.push(session.response_packet(&response, true));
                session.phase = Phase::Streaming;
            }
            HoldMode::Stream => {
                if !response.body.is_empty() {
                    session.queue.push_back(response.body);
                }
                if source == Source::Accept {
                    // The proxy sent the head: our first packet tells
                    // connmgr the session moved here.
                    packets.push(session.packet(PacketType::KeepAlive));
                }
            }
            HoldMode::Response => {
                if source == Source::Accept {
                    // Our first packet tells connmgr the session moved here.
                    packets.push(session.packet(PacketType::KeepAlive));
                }
                session.timeout_response = response;
            }
        }
        let hold_after = match session.mode {
            HoldMode::Response => Some(hold.timeout),
            HoldMode::Stream => session.keep_alive.as_ref().map(|k| k.timeout),
        };
        if let Some(seconds) = hold_after {
            session.hold_timer = Some(self.timers.insert(
                (key.to_owned(), Timer::Session(SessionTimer::Hold)),
                Duration::from_secs(seconds.into()),
            ));
        }
        let follow_now = matches!(session.next_link, Some((_, 0)));
        if let Some((_, seconds)) = session.next_link.as_ref().filter(|_| !follow_now) {
            session.next_timer = Some(self.timers.insert(
                (key.to_owned(), Timer::Session(SessionTimer::Next)),
                Duration::from_secs((*seconds).into()),
            ));
        }
        // Where the client was: what history still holds after that is
        // replayed to it; the origin is not asked for those channels.
        let last_event_id = (session.mode == HoldMode::Stream)
            .then(|| last_event_id(&session.request))
            .flatten();
        let mut replay = Vec::new();
        let mut replayed = Vec::new();
        if self.history.enabled() {
            let now = Instant::now();
            for c in &session.channels {
                let Some(position) = c.prev_id.as_deref().or(last_event_id.as_deref()) else {
                    continue;
                };
                // decide() checks items against the position.
                let named = c.prev_id.is_none().then(|| position.to_owned());
                match self.history.since(&c.name, position, now) {
                    Since::Found(items) => {
                        replayed.push((c.name.clone(), named));
                        replay.extend(items);
                    }
                    Since::Unknown if self.bus_history.is_some() => {
                        // The bus's stream may reach back further; what is
                        // published meanwhile waits for its answer.
                        replayed.push((c.name.clone(), named));
                        let awaiting = session.awaiting.get_or_insert_with(Default::default);
                        awaiting
                            .channels
                            .push((c.name.clone(), c.prev_id.is_some()));
                        self.lookups.push(crate::history::Lookup {
                            key: key.to_owned(),
                            channel: c.name.clone(),
                            after: position.to_owned(),
                        });
                    }
                    Since::Unknown => {}
                }
            }
            for (channel, position) in &replayed {
                if let (Some(position), Some(sub)) = (position, session.subscription_mut(channel)) {
                    sub.prev_id = Some(position.clone());
                }
            }
        }
        // The channel already delivered past what the origin told this
        // session: it missed something.
        let stale: Vec<String> = session
            .channels
            .iter()
            .filter(|c| !replayed.iter().any(|(name, _)| *name == c.name))
            .filter(|c| {
                c.prev_id.as_deref().is_some_and(|p| {
                    self.sequencer
                        .last_id(&c.name)
                        .is_some_and(|last| last != p)
                })
            })
            .map(|c| c.name.clone())
            .collect();
        tracing::debug!(session = %key, mode = ?session.mode, channels = ?new, ?source, "session held");
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

    /// The bus's answer to a history lookup: what it found is replayed,
    /// then what was published meanwhile (less what the answer had). When
    /// the stream does not reach back, a session whose origin named the
    /// position asks the origin, as it would without history.
    pub(super) async fn on_history(&mut self, lookup: crate::history::Lookup, found: Since) {
        if self.ws.contains(&lookup.key) {
            let meanwhile = self.ws.end_wait(&lookup.key, &lookup.channel);
            let items = match found {
                Since::Found(items) => after_dedup(items, meanwhile),
                Since::Unknown => meanwhile,
            };
            self.ws_replay(&lookup.key, items).await;
            return;
        }
        let Some(session) = self.sessions.get_mut(&lookup.key) else {
            return;
        };
        let Some(awaiting) = &mut session.awaiting else {
            return;
        };
        let Some(at) = awaiting
            .channels
            .iter()
            .position(|(c, _)| *c == lookup.channel)
        else {
            return;
        };
        let (_, origin_named) = awaiting.channels.remove(at);
        let (meanwhile, others): (Vec<Item>, Vec<Item>) = std::mem::take(&mut awaiting.held_back)
            .into_iter()
            .partition(|i| i.channel == lookup.channel);
        awaiting.held_back = others;
        if awaiting.channels.is_empty() {
            session.awaiting = None;
        }
        let key = lookup.key;
        match found {
            Since::Found(items) => {
                tracing::debug!(session = %key, channel = %lookup.channel, items = items.len(), "history from the bus");
                self.replay(&key, after_dedup(items, meanwhile)).await;
            }
            Since::Unknown if origin_named => {
                tracing::debug!(session = %key, channel = %lookup.channel, "history does not reach back; asking the origin");
                self.sequencer.clear_last_id(Some(&lookup.channel));
                self.recover(&key, true);
            }
            Since::Unknown => self.replay(&key, meanwhile).await,
        }
        self.flush(&key).await;
    }

    /// Hands a session the items it missed, as a publish would (its queue
    /// takes what its credits do not).
    async fn replay(&mut self, key: &str, items: Vec<Item>) {
        for item in items {
            let Some(session) = self.sessions.get_mut(key) else {
                return;
            };
            match Engine::decide(session, &item) {
                Decision::Skip => {}
                Decision::HoldBack => {
                    if let Some(awaiting) = &mut session.awaiting {
                        awaiting.held_back.push(item);
                    }
                    continue;
                }
                Decision::Deliver(content) => session.queue.push_back(content),
                Decision::Respond(response) => {
                    self.respond(key, response).await;
                    return;
                }
                Decision::Close => {
                    session.phase = Phase::Closing;
                    return;
                }
                Decision::Recover => {
                    self.recover(key, true);
                    return;
                }
                Decision::Gap => {
                    self.on_gap(key, &item.channel).await;
                    return;
                }
            }
            self.count(|m| &m.history_replayed, 1);
        }
    }

    pub(super) fn subscribe_channel(&mut self, key: &str, channel: &str) {
        let lingered = self.lingering.remove(channel);
        if let Some(timer) = &lingered {
            // Still subscribed: not a first subscription.
            self.timers.try_remove(timer);
        }
        let subscribers = self.channels.entry(channel.to_owned()).or_default();
        if subscribers.is_empty() && lingered.is_none() {
            self.sub_changes
                .push(super::subscriptions::interest_message(channel, true));
            if self.options.update_on_first_subscription {
                self.timers.insert(
                    (channel.to_owned(), Timer::FirstSubscription),
                    FIRST_SUBSCRIPTION_DELAY,
                );
            }
        }
        subscribers.insert(key.to_owned());
        let count = subscribers.len();
        let mode = self.stats_mode(key);
        self.stat(
            "sub",
            serde_json::json!({"mode": mode, "channel": channel, "ttl": crate::stats::TTL,
                "subscribers": count}),
        );
    }

    pub(super) fn unsubscribe_channel(&mut self, key: &str, channel: &str) {
        if let Some(set) = self.channels.get_mut(channel) {
            set.remove(key);
            if set.is_empty() {
                self.channels.remove(channel);
                // A long-poll's client usually comes straight back: keep
                // the subscription and the channel's last id a while.
                let linger = self.options.subscription_linger;
                let long_poll = matches!(
                    self.sessions.get(key).map(|s| s.mode),
                    Some(HoldMode::Response)
                );
                if long_poll && !linger.is_zero() {
                    let timer = self
                        .timers
                        .insert((channel.to_owned(), Timer::Linger), linger);
                    self.lingering.insert(channel.to_owned(), timer);
                } else {
                    let mode = self.stats_mode(key);
                    self.let_go(channel, mode);
                }
            }
        }
    }

    /// A channel nobody holds any more: unsubscribed, its order forgotten.
    pub(super) fn let_go(&mut self, channel: &str, mode: &str) {
        if self.bus_history.is_some() {
            self.history.forget(channel);
        }
        self.stat(
            "sub",
            serde_json::json!({"mode": mode, "channel": channel, "unavailable": true}),
        );
        self.sequencer.forget_channel(channel);
        self.sub_changes
            .push(super::subscriptions::interest_message(channel, false));
    }

    pub(super) async fn on_packet(&mut self, packet: Packet) {
        let (Some(from), Some(id)) = (packet.from.clone(), packet.single_id().map(str::to_owned))
        else {
            return;
        };
        let key = key_of(&from, &id);
        let Some(session) = self.sessions.get_mut(&key) else {
            if !matches!(packet.kind(), PacketType::Cancel | PacketType::Error) {
                let cancel = Packet::new(PacketType::Cancel, &self.link.id, &id, 0);
                self.send(&from, &cancel).await;
            }
            return;
        };
        if let Err(err) = session.endpoint.receive(&packet, Instant::now()) {
            tracing::warn!(session = %key, "packet from connmgr refused: {err}");
            let cancel = session.endpoint.cancel();
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

/// The SSE client's last event id, when its request carries one.
fn last_event_id(request: &holdfast_protocol::handoff::Request) -> Option<String> {
    request
        .headers
        .iter()
        .find(|h| h.0.eq_ignore_ascii_case("last-event-id"))
        .and_then(|h| std::str::from_utf8(&h.1).ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
}

/// The stream's items, then those published meanwhile that they do not
/// already include.
fn after_dedup(items: Vec<Item>, meanwhile: Vec<Item>) -> Vec<Item> {
    let had: HashSet<Option<String>> = items.iter().map(|i| i.id.clone()).collect();
    let fresh = meanwhile
        .into_iter()
        .filter(|i| i.id.is_none() || !had.contains(&i.id));
    items.into_iter().chain(fresh).collect()
}
