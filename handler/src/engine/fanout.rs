//! Fan-out: what each subscriber of a channel does with a published item
//! (deliver, queue for credits, answer a long-poll, close, recover), and
//! the deliveries of one chunk of subscribers sent as one packet per
//! connmgr and content.

use super::*;

/// Sessions looked at, and at most addressed by one delivery packet, at a
/// time. Large enough that a publish to 10,000 subscribers is ten packets,
/// small enough that connmgr starts writing to clients within a
/// millisecond or two while the handler works through the rest.
pub const BATCH: usize = 1024;

/// One chunk's deliveries: per connmgr and distinct content, the sessions
/// that take it now, sent as one packet.
#[derive(Default)]
pub(super) struct Ready {
    groups: Vec<ReadyGroup>,
    /// Groups by content, for items whose content filters render it per
    /// session.
    by_content: HashMap<Bytes, Vec<usize>>,
    /// The group the last session joined: without content filters every
    /// session shares the item's own buffer, so this is nearly always it.
    last: usize,
}

pub(super) struct ReadyGroup {
    connmgr: String,
    content: Bytes,
    ids: Vec<IdSeq>,
}

impl Ready {
    pub(super) fn add(&mut self, connmgr: &str, content: Bytes, id: IdSeq) {
        let same_as_last = self.groups.get(self.last).is_some_and(|g| {
            g.content.as_ptr() == content.as_ptr()
                && g.content.len() == content.len()
                && g.connmgr == connmgr
        });
        if !same_as_last {
            let candidates = self.by_content.entry(content.clone()).or_default();
            self.last = match candidates
                .iter()
                .copied()
                .find(|&i| self.groups[i].connmgr == connmgr)
            {
                Some(i) => i,
                None => {
                    self.groups.push(ReadyGroup {
                        connmgr: connmgr.to_owned(),
                        content,
                        ids: Vec::new(),
                    });
                    candidates.push(self.groups.len() - 1);
                    self.groups.len() - 1
                }
            };
        }
        self.groups[self.last].ids.push(id);
    }
}

/// What one session does with a published item.
pub(super) enum Decision {
    Skip,
    /// Send this content (stream).
    Deliver(Bytes),
    /// Answer the long-poll.
    Respond(Response),
    /// End the stream.
    Close,
    /// Ask the origin (a hint).
    Recover,
    /// It missed an item (a prev-id that is not the last id it got): ask
    /// the origin, or, with no way to ask, end it.
    Gap,
    /// Keep it until the channel's history arrives from the bus.
    HoldBack,
}

impl Engine {
    /// Sends queued content that now fits the credits; ends the session when
    /// it was closing and the queue is empty.
    pub(super) async fn flush(&mut self, key: &str) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        let mut packets = Vec::new();
        while session.endpoint.can_send() {
            let Some(front) = session.queue.front_mut() else {
                break;
            };
            let chunk = front.split_to(session.endpoint.take_credits(front.len()));
            if front.is_empty() {
                session.queue.pop_front();
            }
            let mut packet = session.packet(PacketType::Data);
            packet.body = Some(chunk);
            packet.more = true;
            packets.push(packet);
        }
        let end = session.phase.closing() && session.queue.is_empty();
        if end {
            let mut last = session.packet(PacketType::Data);
            last.body = Some(Bytes::new());
            packets.push(last);
        }
        self.send_session(key, packets).await;
        if end {
            self.remove(key);
        }
    }

    /// What `session` does with `item` (and updates its subscription's
    /// last id when it takes the item).
    pub(super) fn decide(session: &mut Session, item: &Item) -> Decision {
        let (action, declared, content) = match session.mode {
            HoldMode::Stream => match &item.formats.http_stream {
                Some(s) => (s.action, s.content_filters.as_deref(), &s.content),
                None => return Decision::Skip,
            },
            HoldMode::Response => match &item.formats.http_response {
                Some(r) => (r.action, r.content_filters.as_deref(), &r.body),
                None => return Decision::Skip,
            },
        };
        if session
            .awaiting
            .as_ref()
            .is_some_and(|a| a.awaits(&item.channel))
        {
            return Decision::HoldBack;
        }
        if session.next_link.is_some() && !session.fed.contains(&item.channel) {
            session.fed.insert(item.channel.clone());
        }
        match action {
            Action::Hint => return Decision::Recover,
            Action::Refresh => return Decision::Skip,
            Action::Close if session.mode == HoldMode::Response => return Decision::Skip,
            _ => {}
        }
        // While the origin is being asked again, its answer covers items
        // with ids; a long-poll takes nothing until then.
        if session.phase.asking() && (session.mode == HoldMode::Response || item.id.is_some()) {
            return Decision::Skip;
        }
        let Some(sub) = session.channels.iter().find(|c| c.name == item.channel) else {
            return Decision::Skip;
        };
        if let (Some(expected), Some(prev)) = (&sub.prev_id, &item.prev_id) {
            if expected != prev {
                return Decision::Gap;
            }
        }
        if sub.filters.is_empty() {
            // The common case: no filter, the content is shared as it is.
            if let Some(sub) = session.subscription_mut(&item.channel) {
                if item.id.is_some() {
                    sub.prev_id = item.id.clone();
                }
            }
            if declared.is_some_and(|d| !d.is_empty()) {
                return Decision::Skip;
            }
            return match (action, session.mode, &item.formats.http_response) {
                (Action::Close, _, _) => Decision::Close,
                (_, HoldMode::Response, Some(r)) => {
                    Decision::Respond(published_response(&session.timeout_response, r))
                }
                _ => Decision::Deliver(content.clone()),
            };
        }
        let filters = sub.filters.clone();
        let prefix = session
            .origin
            .as_ref()
            .map_or(String::new(), |o| o.prefix.clone());
        if let Some(sub) = session.subscription_mut(&item.channel) {
            if item.id.is_some() {
                sub.prev_id = item.id.clone();
            }
        }
        let channels = &session.channels;
        let subscribed = |name: &str| {
            let full = format!("{prefix}{name}");
            channels.iter().any(|c| c.name == full)
        };
        let last_id = |name: &str| {
            let full = format!("{prefix}{name}");
            channels
                .iter()
                .find(|c| c.name == full)
                .and_then(|c| c.prev_id.clone())
        };
        let subscriber = Subscriber {
            filters: &filters,
            meta: &session.meta,
            subscribed: &subscribed,
            last_id: &last_id,
        };
        if subscriber.drops(&item.meta) || !subscriber.accepts(declared) {
            return Decision::Skip;
        }
        if action == Action::Close {
            return Decision::Close;
        }
        let content = subscriber.content(content);
        match (session.mode, &item.formats.http_response) {
            (HoldMode::Response, Some(r)) => {
                let mut r = r.clone();
                r.body = content;
                Decision::Respond(published_response(&session.timeout_response, &r))
            }
            _ => Decision::Deliver(content),
        }
    }

    pub(super) async fn publish(&mut self, item: Item) {
        // The subscribers are taken out while the item is handed out
        // (nothing here subscribes or unsubscribes) and walked without
        // copying their keys; they go back before anything else happens.
        let Some(subscribers) = self.channels.get_mut(&item.channel).map(std::mem::take) else {
            return;
        };
        self.note_sent(&item, &subscribers);
        if !self.ws.is_empty() {
            let mut ws_keys: Vec<String> = subscribers
                .iter()
                .filter(|k| self.ws.contains(k))
                .cloned()
                .collect();
            if self.bus_history.is_some() {
                ws_keys.retain(|k| !self.ws.holds_back(k, &item));
            }
            if !ws_keys.is_empty() {
                let deliveries = self.ws.deliveries(&item, &ws_keys);
                let sessions: usize = deliveries.iter().map(|(_, d)| d.ids.len()).sum();
                self.count(|m| &m.deliveries, sessions);
                self.send_ws(deliveries).await;
            }
        }
        let from = self.link.id.clone();
        let now = Instant::now();
        let mut to_flush = Vec::new();
        let mut to_drop = Vec::new();
        let mut to_recover = Vec::new();
        let mut responses: Vec<(String, Response)> = Vec::new();
        let mut sent = 0;
        let mut gaps = Vec::new();
        // A chunk of sessions at a time, each chunk's packets sent before
        // the next is looked at: connmgr starts writing to clients while
        // the rest of a large channel is still being decided.
        let mut keys = subscribers.iter();
        loop {
            let mut ready = Ready::default();
            let mut looked_at = 0;
            for key in keys.by_ref().take(BATCH) {
                looked_at += 1;
                let Some(session) = self.sessions.get_mut(key) else {
                    continue;
                };
                match Engine::decide(session, &item) {
                    Decision::Skip => {}
                    Decision::HoldBack => {
                        if let Some(awaiting) = &mut session.awaiting {
                            awaiting.held_back.push(item.clone());
                        }
                    }
                    Decision::Recover => to_recover.push(key.clone()),
                    Decision::Gap => gaps.push(key.clone()),
                    Decision::Respond(response) => responses.push((key.clone(), response)),
                    Decision::Close => {
                        session.phase = Phase::Closing;
                        to_flush.push(key.clone());
                    }
                    Decision::Deliver(content) => {
                        if session.queue.is_empty()
                            && !session.phase.closing()
                            && session.endpoint.credits() >= content.len()
                        {
                            session.endpoint.spend(content.len());
                            let id = IdSeq {
                                id: session.id().to_owned(),
                                // Sent with this chunk, just below.
                                seq: session.endpoint.next_seq(now),
                            };
                            ready.add(session.connmgr(), content, id);
                            if let (Some(ka), Some(timer)) =
                                (&session.keep_alive, &session.hold_timer)
                            {
                                if ka.idle {
                                    self.timers
                                        .reset(timer, Duration::from_secs(ka.timeout.into()));
                                }
                            }
                        } else if session.queue.len() >= QUEUE_MAX {
                            tracing::info!(session = %key, "client too slow: {QUEUE_MAX} items queued; disconnecting");
                            to_drop.push(key.clone());
                        } else {
                            session.queue.push_back(content);
                            to_flush.push(key.clone());
                        }
                    }
                }
            }
            if looked_at == 0 {
                break;
            }
            for group in ready.groups {
                sent += group.ids.len();
                let mut packet = Packet::new(PacketType::Data, &from, "", 0);
                packet.id = Some(Ids::Many(group.ids));
                packet.seq = None;
                packet.body = Some(group.content);
                packet.more = true;
                self.send(&group.connmgr, &packet).await;
            }
            // The socket task was woken into this worker's LIFO slot, where
            // the other worker cannot steal it: without a yield the packets
            // leave only once the whole channel is decided.
            tokio::task::yield_now().await;
        }
        if let Some(slot) = self.channels.get_mut(&item.channel) {
            *slot = subscribers;
        }
        sent += responses.len();
        self.count(|m| &m.deliveries, sent);
        self.message_stat(&item, sent);
        self.count(|m| &m.dropped, to_drop.len());
        for (key, response) in responses {
            self.respond(&key, response).await;
        }
        for key in to_flush {
            self.flush(&key).await;
        }
        for key in to_drop {
            let cancel = self.sessions.get(&key).and_then(|s| s.endpoint.cancel());
            self.send_session(&key, cancel.into_iter().collect()).await;
            self.remove(&key);
        }
        if !to_recover.is_empty() || !gaps.is_empty() {
            if item.prev_id.is_some() {
                self.sequencer.clear_last_id(Some(&item.channel));
            }
            for key in to_recover {
                self.recover(&key, true);
            }
            for key in gaps {
                self.on_gap(&key, &item.channel).await;
            }
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
        let timeout_response = match session.mode {
            HoldMode::Stream => {
                session.phase = Phase::Closing;
                None
            }
            HoldMode::Response => Some(session.timeout_response.clone()),
        };
        self.count(|m| &m.ended_on_gap, 1);
        match timeout_response {
            None => self.flush(key).await,
            Some(response) => self.respond(key, response).await,
        }
    }

    /// Records `item`'s id as the last one sent to the client sessions of
    /// its subscribers (Pushpin does this for every subscriber, whatever
    /// its filters decide).
    pub(super) fn note_sent(&self, item: &Item, keys: &HashSet<String>) {
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
                Some(session) => session.sid.as_deref(),
                None => self.ws.sid(key),
            };
            if let Some(sid) = sid {
                store.sent(sid, &item.channel, id);
            }
        }
    }

    /// Sends a whole response (long-poll answer) and ends the session once
    /// it is out.
    pub(super) async fn respond(&mut self, key: &str, mut response: Response) {
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        response = session.cross_origin_response(response, true);
        let body = std::mem::take(&mut response.body);
        let now = session.endpoint.take_credits(body.len());
        response.body = body.slice(..now);
        let rest = body.slice(now..);
        let more = !rest.is_empty();
        let packet = session.response_packet(&response, more);
        if more {
            session.queue.push_back(rest);
            session.phase = Phase::Closing;
        }
        self.unsubscribe(key);
        self.send_session(key, vec![packet]).await;
        if !more {
            self.remove(key);
        }
    }

    /// Takes a published item through sequencing, then delivers what it
    /// releases. Channels without local sessions are not tracked at all.
    pub(super) async fn offer(&mut self, item: Item) {
        // Kept whether or not anyone here listens now: a client that left
        // comes back for it.
        self.history.record(&item, Instant::now());
        if !self.channels.contains_key(&item.channel) {
            self.message_stat(&item, 0);
            return;
        }
        let channel = item.channel.clone();
        let outcome = self.sequencer.offer(item, Instant::now());
        if outcome.start_wait {
            self.timers
                .insert((channel, Timer::Sequence), self.options.message_wait);
        }
        for item in outcome.release {
            self.publish(item).await;
        }
    }

    /// The `message` stats event: an item and how many sessions got it.
    pub(super) fn message_stat(&self, item: &Item, count: usize) {
        if self.stats.is_none() {
            return;
        }
        let transport = if item.formats.http_stream.is_some() {
            "http-stream"
        } else if item.formats.http_response.is_some() {
            "http-response"
        } else {
            "ws-message"
        };
        self.stat(
            "message",
            serde_json::json!({"channel": item.channel, "item-id": item.id,
                "count": count, "transport": transport}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> IdSeq {
        IdSeq {
            id: format!("s{n}"),
            seq: Some(n),
        }
    }

    #[test]
    fn deliveries_are_grouped_by_connmgr_and_content() {
        let shared = Bytes::from_static(b"hello\n");
        let mut ready = Ready::default();
        ready.add("connmgr", shared.clone(), id(1));
        ready.add("connmgr", shared.clone(), id(2));
        // Equal content in another buffer (a filter's rendering) joins it.
        ready.add("connmgr", Bytes::from(b"hello\n".to_vec()), id(3));
        ready.add("connmgr-2", shared.clone(), id(4));
        ready.add("connmgr", Bytes::from_static(b"other\n"), id(5));
        ready.add("connmgr", shared, id(6));
        let groups: Vec<(&str, &[u8], Vec<u32>)> = ready
            .groups
            .iter()
            .map(|g| {
                let seqs = g.ids.iter().filter_map(|i| i.seq).collect();
                (g.connmgr.as_str(), &g.content[..], seqs)
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                ("connmgr", &b"hello\n"[..], vec![1, 2, 3, 6]),
                ("connmgr-2", &b"hello\n"[..], vec![4]),
                ("connmgr", &b"other\n"[..], vec![5]),
            ]
        );
    }
}
