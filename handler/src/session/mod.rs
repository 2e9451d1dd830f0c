//! A held session: its ZHTTP endpoint with connmgr (sequence numbers,
//! credits, liveness), its subscriptions, and what it is waiting for. The
//! session keeps its own rules: what it takes of a published item
//! ([`Session::decide`]), what goes to the client now and what waits for
//! credits (at most [`QUEUE_MAX`] items: past that the client is too slow),
//! where its response stands ([`Phase`]), and when it may ask the origin
//! again. The engine drives it (timers, sockets, the channel index).

mod answers;
mod phase;
mod response;
mod subscription;

pub use answers::{
    Applied, Ask, Decision, KeepAliveTick, NextCheck, NotAsked, Offered, Parting, SessionTimer,
    Source,
};
pub use phase::Phase;
pub use response::published_response;
pub use subscription::{AwaitingHistory, Subscription};

use crate::fetch::resolve;
use crate::filters::Subscriber;
use bytes::Bytes;
use holdfast_protocol::handoff::{
    Accept, CrossOrigin, Hold, HoldMode, KeepAlive, Origin, Request, Response,
};
use holdfast_protocol::publish::{Action, Item};
use holdfast_protocol::zhttp::{Endpoint, IdSeq, Packet, PacketType, SessionError};
use response::{cross_origin, last_event_id};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::time::delay_queue;
use url::Url;

/// Items a stream session may have waiting for credits; past this the
/// client is too slow and is disconnected (Pushpin's per-session queue).
pub const QUEUE_MAX: usize = 100;

/// One held client connection.
pub struct Session {
    /// The ZHTTP session with connmgr (its id and connmgr's, sequence
    /// numbers, credits, liveness), taken over from the proxy.
    endpoint: Endpoint,
    /// Long-poll or stream.
    mode: HoldMode,
    /// Subscriptions.
    channels: Vec<Subscription>,
    /// Metadata for filters (`Grip-Set-Meta`).
    meta: Vec<(String, String)>,
    /// The client's request, replayed when a long-poll is asked again.
    request: Request,
    /// How to reach the origin again; `None` from a proxy that did not say.
    origin: Option<Origin>,
    /// Stream: the next link and its timeout in seconds.
    next_link: Option<(Url, u32)>,
    /// Where to `POST` when the session ends (from the first instructions).
    gone_link: Option<Url>,
    /// Where the session stands: held, streaming, asking the origin, or
    /// closing.
    phase: Phase,
    /// Bumped for each request, so a stale answer is recognised.
    generation: u64,
    /// Failed attempts at the current next link.
    link_failures: u32,
    /// Channels that got an item since the next-link timer started.
    fed: HashSet<String>,
    /// Long-poll: the response to send at timeout.
    timeout_response: Response,
    /// Stream keep-alive.
    keep_alive: Option<KeepAlive>,
    /// Stream content waiting for credits.
    queue: VecDeque<Bytes>,
    /// The engine's timer of each [`SessionTimer`], when armed.
    timers: [Option<delay_queue::Key>; 3],
    /// Client session id (Pushpin's session feature), when the origin named one.
    sid: Option<String>,
    /// Route `aco`: responses get CORS headers, long-poll answers may be
    /// JSON-P.
    cross_origin: Option<CrossOrigin>,
    /// Channels whose history was asked of the bus, and what was published
    /// on them meanwhile (boxed: nearly every session has none).
    awaiting: Option<Box<AwaitingHistory>>,
}

impl Session {
    /// A session from a hand-over, before its instructions are applied
    /// (see [`Session::apply_hold`]); `from` is our id.
    pub fn from_accept(accept: &Accept, from: Arc<str>, now: Instant) -> Session {
        Session {
            endpoint: Endpoint::resume(
                from,
                accept.id.clone(),
                accept.connmgr.clone(),
                (accept.in_seq, accept.out_seq),
                accept.credits,
                now,
            ),
            mode: accept.hold.mode,
            channels: Vec::new(),
            meta: Vec::new(),
            request: accept.request.clone(),
            origin: accept.origin.clone(),
            next_link: None,
            gone_link: None,
            // The proxy may have sent the head and a large initial body.
            phase: if accept.started {
                Phase::Streaming
            } else {
                Phase::Held
            },
            generation: 0,
            link_failures: 0,
            fed: HashSet::new(),
            timeout_response: accept.response.clone(),
            keep_alive: None,
            queue: VecDeque::new(),
            timers: [None; 3],
            sid: None,
            cross_origin: accept.cross_origin.clone(),
            awaiting: None,
        }
    }

    // === identity ===

    /// connmgr's id: where the session's packets go.
    pub fn connmgr(&self) -> &str {
        self.endpoint.peer().unwrap_or_default()
    }

    /// The session id.
    pub fn id(&self) -> &str {
        self.endpoint.id()
    }

    /// Long-poll or stream.
    pub fn mode(&self) -> HoldMode {
        self.mode
    }

    /// The client session id (Pushpin's session feature).
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// Names the client session.
    pub fn set_sid(&mut self, sid: Option<String>) {
        self.sid = sid;
    }

    /// The channels it is subscribed to.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// The answer a long-poll gets at its timeout.
    pub fn timeout_response(&self) -> Response {
        self.timeout_response.clone()
    }

    /// The slot of one of its timers (the engine's timer queue keeps the
    /// rule that a slot holds only a live key).
    pub fn timer(&mut self, which: SessionTimer) -> &mut Option<delay_queue::Key> {
        &mut self.timers[which as usize]
    }

    /// Whether the origin can be asked again for what the session missed:
    /// a long-poll retries its request, a stream fetches its next link.
    pub fn can_recover(&self) -> bool {
        self.origin.is_some() && (self.mode == HoldMode::Response || self.next_link.is_some())
    }

    /// The session is over: its armed timers, and its gone link to tell.
    pub fn parting(mut self) -> Parting {
        let timers = self.timers.iter_mut().filter_map(Option::take).collect();
        let name = format!("{}:{}", self.connmgr(), self.id());
        let gone = match (self.origin, self.gone_link) {
            (Some(origin), Some(gone)) => Some((origin, gone)),
            _ => None,
        };
        Parting { timers, gone, name }
    }

    // === ZHTTP ===

    /// Numbers packets as they leave (see `Endpoint::stamp`): each with
    /// where it goes.
    pub fn stamp_all(&mut self, packets: Vec<Packet>, now: Instant) -> Vec<(String, Packet)> {
        let mut out = Vec::with_capacity(packets.len());
        for mut packet in packets {
            if let Some(to) = self.endpoint.stamp(&mut packet, now) {
                out.push((to.to_owned(), packet));
            }
        }
        out
    }

    /// Checks and takes in a packet from connmgr (credits, liveness).
    pub fn receive(&mut self, packet: &Packet, now: Instant) -> Result<(), SessionError> {
        self.endpoint.receive(packet, now)
    }

    /// A cancel for connmgr, unless the session is already cancelled.
    pub fn cancel(&self) -> Option<Packet> {
        self.endpoint.cancel()
    }

    /// When the ZHTTP liveness timer is next due.
    pub fn next_deadline(&self) -> Instant {
        self.endpoint.next_deadline()
    }

    /// The liveness timer fired: `None` when connmgr has been silent too
    /// long (the session is over), else the keep-alive packet, if one is due.
    pub fn link_tick(&self, now: Instant) -> Option<Option<Packet>> {
        if self.endpoint.expired(now) {
            return None;
        }
        Some(
            self.endpoint
                .keep_alive_due(now)
                .then(|| self.packet(PacketType::KeepAlive)),
        )
    }

    /// A packet of `kind`, numbered when it is sent.
    fn packet(&self, kind: PacketType) -> Packet {
        self.endpoint.packet(kind)
    }

    // === hold instructions ===

    /// Applies hold instructions: from the hand-over, from a long-poll
    /// asked again, or from a stream's next link (whose body is appended).
    /// The caller arms the timers it says and diffs the channels.
    pub fn apply_hold(
        &mut self,
        hold: Hold,
        response: Response,
        source: Source,
        subscription_max: usize,
    ) -> Applied {
        let old = self.channel_names();
        let ignored = self.set_channels(hold.channels, subscription_max);
        self.meta = hold.meta;
        self.keep_alive = hold.keep_alive;
        self.take_links(hold.next_link, hold.gone_link, source);
        self.fed.clear();
        self.link_failures = 0;
        if source != Source::Link {
            self.mode = hold.mode;
        }
        let packets = self.start_or_queue(response, source);
        let hold_after = match self.mode {
            HoldMode::Response => Some(hold.timeout),
            HoldMode::Stream => self.keep_alive.as_ref().map(|k| k.timeout),
        };
        let follow_now = matches!(self.next_link, Some((_, 0)));
        let next_after = self
            .next_link
            .as_ref()
            .filter(|_| !follow_now)
            .map(|(_, seconds)| Duration::from_secs((*seconds).into()));
        Applied {
            old,
            new: self.channel_names(),
            ignored,
            packets,
            hold_after: hold_after.map(|s| Duration::from_secs(s.into())),
            next_after,
            follow_now,
        }
    }

    /// The hold's channels, at most `max`; the names of those ignored.
    fn set_channels(
        &mut self,
        channels: Vec<holdfast_protocol::handoff::Channel>,
        max: usize,
    ) -> Vec<String> {
        self.channels = channels
            .into_iter()
            .map(|c| Subscription {
                name: c.name,
                prev_id: c.prev_id,
                filters: c.filters,
            })
            .collect();
        if self.channels.len() <= max {
            return Vec::new();
        }
        let ignored = self.channels[max..]
            .iter()
            .map(|c| c.name.clone())
            .collect();
        self.channels.truncate(max);
        ignored
    }

    /// The hold's links, resolved against where the instructions came from
    /// (the origin's URI, or the next link's); the gone link only from
    /// the first instructions.
    fn take_links(&mut self, next: Option<(String, u32)>, gone: Option<String>, source: Source) {
        let base = match source {
            Source::Link => self.next_link.as_ref().map(|(u, _)| u.to_string()),
            _ => self.origin.as_ref().map(|o| o.uri.clone()),
        };
        let resolve_link = |link: &str| base.as_deref().and_then(|b| resolve(b, link));
        self.next_link = next.and_then(|(uri, timeout)| resolve_link(&uri).map(|u| (u, timeout)));
        if source == Source::Accept {
            self.gone_link = gone.as_deref().and_then(resolve_link);
        }
    }

    /// The response's start, by mode: a stream's head with what of its
    /// body the credits allow (the rest queued), a stream page's body
    /// queued, a long-poll's timeout response kept. The first packet after
    /// a hand-over tells connmgr the session moved here.
    fn start_or_queue(&mut self, response: Response, source: Source) -> Vec<Packet> {
        let mut packets = Vec::new();
        match self.mode {
            HoldMode::Stream if !self.phase.started() => {
                let mut response = self.cross_origin_response(response, false);
                let body = std::mem::take(&mut response.body);
                let now = self.endpoint.take_credits(body.len());
                response.body = body.slice(..now);
                if now < body.len() {
                    self.queue.push_back(body.slice(now..));
                }
                packets.push(self.response_packet(&response, true));
                self.phase = Phase::Streaming;
            }
            HoldMode::Stream => {
                if !response.body.is_empty() {
                    self.queue.push_back(response.body);
                }
                if source == Source::Accept {
                    packets.push(self.packet(PacketType::KeepAlive));
                }
            }
            HoldMode::Response => {
                if source == Source::Accept {
                    packets.push(self.packet(PacketType::KeepAlive));
                }
                self.timeout_response = response;
            }
        }
        packets
    }

    // === history ===

    /// Where the client was, channel by channel, for history: `(channel,
    /// position, the position to remember when the origin did not name
    /// one)`. A stream's SSE `Last-Event-ID` stands for channels without a
    /// prev-id.
    pub fn history_positions(&self) -> Vec<(String, String, Option<String>)> {
        let last_event_id = (self.mode == HoldMode::Stream)
            .then(|| last_event_id(&self.request))
            .flatten();
        self.channels
            .iter()
            .filter_map(|c| {
                let position = c.prev_id.as_deref().or(last_event_id.as_deref())?;
                // decide() checks items against the position.
                let named = c.prev_id.is_none().then(|| position.to_owned());
                Some((c.name.clone(), position.to_owned(), named))
            })
            .collect()
    }

    /// Remembers `id` as where the session stands on `channel`.
    pub fn set_position(&mut self, channel: &str, id: String) {
        if let Some(sub) = self.subscription_mut(channel) {
            sub.prev_id = Some(id);
        }
    }

    /// `channel`'s history was asked of the bus: what is published on it
    /// meanwhile waits (`origin_named`: the origin named the position).
    pub fn await_history(&mut self, channel: &str, origin_named: bool) {
        let awaiting = self.awaiting.get_or_insert_with(Default::default);
        awaiting.channels.push((channel.to_owned(), origin_named));
    }

    /// Keeps an item published while the channel's history is awaited.
    pub fn hold_back(&mut self, item: Item) {
        if let Some(awaiting) = &mut self.awaiting {
            awaiting.held_back.push(item);
        }
    }

    /// The bus answered for `channel`: whether the origin named the
    /// position, and what was published on it meanwhile.
    pub fn end_history_wait(&mut self, channel: &str) -> Option<(bool, Vec<Item>)> {
        let awaiting = self.awaiting.as_mut()?;
        let at = awaiting.channels.iter().position(|(c, _)| c == channel)?;
        let (_, origin_named) = awaiting.channels.remove(at);
        let (meanwhile, others): (Vec<Item>, Vec<Item>) = std::mem::take(&mut awaiting.held_back)
            .into_iter()
            .partition(|i| i.channel == channel);
        awaiting.held_back = others;
        if awaiting.channels.is_empty() {
            self.awaiting = None;
        }
        Some((origin_named, meanwhile))
    }

    /// The channels (not among `replayed`) where the channel already
    /// delivered past what the origin told this session (`last_id`: the
    /// channel's last id): the session missed something.
    pub fn stale_channels(
        &self,
        replayed: &[String],
        last_id: impl Fn(&str) -> Option<String>,
    ) -> Vec<String> {
        self.channels
            .iter()
            .filter(|c| !replayed.contains(&c.name))
            .filter(|c| {
                c.prev_id
                    .as_deref()
                    .is_some_and(|p| last_id(&c.name).is_some_and(|last| last != p))
            })
            .map(|c| c.name.clone())
            .collect()
    }

    // === delivery ===

    /// What `session` does with `item` (and updates its subscription's
    /// last id when it takes the item).
    pub fn decide(&mut self, item: &Item) -> Decision {
        let (action, declared, content) = match self.mode {
            HoldMode::Stream => match &item.formats.http_stream {
                Some(s) => (s.action, s.content_filters.as_deref(), &s.content),
                None => return Decision::Skip,
            },
            HoldMode::Response => match &item.formats.http_response {
                Some(r) => (r.action, r.content_filters.as_deref(), &r.body),
                None => return Decision::Skip,
            },
        };
        if self
            .awaiting
            .as_ref()
            .is_some_and(|a| a.awaits(&item.channel))
        {
            return Decision::HoldBack;
        }
        if self.next_link.is_some() && !self.fed.contains(&item.channel) {
            self.fed.insert(item.channel.clone());
        }
        match action {
            Action::Hint => return Decision::Recover,
            Action::Refresh => return Decision::Skip,
            Action::Close if self.mode == HoldMode::Response => return Decision::Skip,
            _ => {}
        }
        // While the origin is being asked again, its answer covers items
        // with ids; a long-poll takes nothing until then.
        if self.phase.asking() && (self.mode == HoldMode::Response || item.id.is_some()) {
            return Decision::Skip;
        }
        let Some(sub) = self.channels.iter().find(|c| c.name == item.channel) else {
            return Decision::Skip;
        };
        if let (Some(expected), Some(prev)) = (&sub.prev_id, &item.prev_id) {
            if expected != prev {
                return Decision::Gap;
            }
        }
        if sub.filters.is_empty() {
            // The common case: no filter, the content is shared as it is.
            if let Some(sub) = self.subscription_mut(&item.channel) {
                if item.id.is_some() {
                    sub.prev_id = item.id.clone();
                }
            }
            if declared.is_some_and(|d| !d.is_empty()) {
                return Decision::Skip;
            }
            return match (action, self.mode, &item.formats.http_response) {
                (Action::Close, _, _) => Decision::Close,
                (_, HoldMode::Response, Some(r)) => {
                    Decision::Respond(published_response(&self.timeout_response, r))
                }
                _ => Decision::Deliver(content.clone()),
            };
        }
        let filters = sub.filters.clone();
        let prefix = self
            .origin
            .as_ref()
            .map_or(String::new(), |o| o.prefix.clone());
        if let Some(sub) = self.subscription_mut(&item.channel) {
            if item.id.is_some() {
                sub.prev_id = item.id.clone();
            }
        }
        let channels = &self.channels;
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
            meta: &self.meta,
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
        match (self.mode, &item.formats.http_response) {
            (HoldMode::Response, Some(r)) => {
                let mut r = r.clone();
                r.body = content;
                Decision::Respond(published_response(&self.timeout_response, &r))
            }
            _ => Decision::Deliver(content),
        }
    }

    /// Offers content to a stream: sent now when nothing waits and the
    /// credits allow, else queued, unless [`QUEUE_MAX`] items wait.
    pub fn offer(&mut self, content: &Bytes, now: Instant) -> Offered {
        if self.queue.is_empty()
            && !self.phase.closing()
            && self.endpoint.credits() >= content.len()
        {
            self.endpoint.spend(content.len());
            let id = IdSeq {
                id: self.id().to_owned(),
                // Sent with this chunk, just below.
                seq: self.endpoint.next_seq(now),
            };
            let idle_keep_alive = self
                .keep_alive
                .as_ref()
                .filter(|ka| ka.idle)
                .map(|ka| Duration::from_secs(ka.timeout.into()));
            return Offered::Sent {
                id,
                idle_keep_alive,
            };
        }
        if self.queue.len() >= QUEUE_MAX {
            return Offered::TooSlow;
        }
        self.queue.push_back(content.clone());
        Offered::Queued
    }

    /// Queues content for the client, whatever waits already (history
    /// replayed to a session just taken over).
    pub fn enqueue(&mut self, content: Bytes) {
        self.queue.push_back(content);
    }

    /// The response ends once what is queued has gone.
    pub fn close(&mut self) {
        self.phase = Phase::Closing;
    }

    /// What of the queue connmgr's credits allow now, and the response's
    /// end once the queue is empty and it is closing (`true`: it ended).
    pub fn drain(&mut self) -> (Vec<Packet>, bool) {
        let mut packets = Vec::new();
        while self.endpoint.can_send() {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let chunk = front.split_to(self.endpoint.take_credits(front.len()));
            if front.is_empty() {
                self.queue.pop_front();
            }
            let mut packet = self.packet(PacketType::Data);
            packet.body = Some(chunk);
            packet.more = true;
            packets.push(packet);
        }
        let end = self.phase.closing() && self.queue.is_empty();
        if end {
            let mut last = self.packet(PacketType::Data);
            last.body = Some(Bytes::new());
            packets.push(last);
        }
        (packets, end)
    }

    /// A whole response (a long-poll's answer): its first packet, and
    /// whether more of it waits for credits (then the session closes once
    /// it has gone).
    pub fn answer(&mut self, response: Response) -> (Packet, bool) {
        let mut response = self.cross_origin_response(response, true);
        let body = std::mem::take(&mut response.body);
        let now = self.endpoint.take_credits(body.len());
        response.body = body.slice(..now);
        let rest = body.slice(now..);
        let more = !rest.is_empty();
        let packet = self.response_packet(&response, more);
        if more {
            self.queue.push_back(rest);
            self.phase = Phase::Closing;
        }
        (packet, more)
    }

    /// A stream's keep-alive timer fired: its keep-alive goes (now, or
    /// queued when larger than the window) unless data is queued already.
    pub fn keep_alive_tick(&mut self) -> Option<KeepAliveTick> {
        let ka = self.keep_alive.clone()?;
        let mut tick = KeepAliveTick {
            packet: None,
            flush: false,
            again: Duration::from_secs(ka.timeout.into()),
        };
        // Only an idle stream needs one: with content queued for the
        // client, data is flowing already.
        if self.queue.is_empty() {
            if self.endpoint.credits() >= ka.data.len() {
                self.endpoint.spend(ka.data.len());
                let mut packet = self.packet(PacketType::Data);
                packet.body = Some(ka.data.clone());
                packet.more = true;
                tick.packet = Some(packet);
            } else {
                // Larger than the client's window (a 60 KB keep-alive, an
                // 8 KB window): it goes in pieces as the window allows, as
                // content does.
                self.queue.push_back(ka.data.clone());
                tick.flush = true;
            }
        }
        Some(tick)
    }

    // === asking the origin again ===

    /// Starts a request to the origin: a long-poll replays its request
    /// with `Grip-Last`, a stream fetches its next link. Takes the timer
    /// the request replaces (a long-poll's timeout, a stream's next-link
    /// timer), for the engine to remove.
    pub fn begin_ask(&mut self) -> Result<(Ask<'_>, Option<delay_queue::Key>), NotAsked> {
        if self.phase.asking() || self.phase.closing() {
            return Err(NotAsked::Busy);
        }
        if self.origin.is_none() {
            return Err(NotAsked::NoOrigin);
        }
        if self.mode == HoldMode::Stream && self.next_link.is_none() {
            return Err(NotAsked::NoNextLink);
        }
        let last = self.last_ids();
        self.generation += 1;
        self.phase = self.phase.ask();
        let replaced = match self.mode {
            HoldMode::Response => self.timer(SessionTimer::Hold).take(),
            HoldMode::Stream => self.timer(SessionTimer::Next).take(),
        };
        let (Some(origin), generation) = (&self.origin, self.generation) else {
            return Err(NotAsked::NoOrigin);
        };
        let ask = match (&self.next_link, self.mode) {
            (Some((link, _)), HoldMode::Stream) => Ask::Link {
                origin,
                link,
                last,
                generation,
            },
            _ => Ask::Retry {
                origin,
                request: &self.request,
                last,
                generation,
            },
        };
        Ok((ask, replaced))
    }

    /// An answer came for request `generation`: whether it is the one the
    /// session waits for (a stale answer, or one for a session that is
    /// ending meanwhile, is not). The session is no longer asking.
    pub fn take_answer(&mut self, generation: u64) -> bool {
        if self.generation != generation || !self.phase.asking() {
            return false;
        }
        self.phase = self.phase.answered();
        true
    }

    /// A next link failed again: how many times now.
    pub fn link_failed(&mut self) -> u32 {
        self.link_failures += 1;
        self.link_failures
    }

    /// A page with neither hold nor link: the stream is complete once its
    /// body has gone.
    pub fn complete_stream(&mut self, body: Bytes) {
        self.next_link = None;
        if !body.is_empty() {
            self.queue.push_back(body);
        }
        self.phase = Phase::Closing;
    }

    /// The next-link timer fired: a stream whose every channel got
    /// something since (and whose link has not failed) missed nothing.
    pub fn next_link_check(&mut self) -> NextCheck {
        let all_fed = self.channels.iter().all(|c| self.fed.contains(&c.name));
        if self.link_failures == 0 && all_fed && !self.channels.is_empty() {
            self.fed.clear();
            let again = self
                .next_link
                .as_ref()
                .map(|(_, seconds)| Duration::from_secs((*seconds).into()));
            return NextCheck::Rearm(again);
        }
        NextCheck::Ask
    }

    // === helpers ===

    /// The subscription to `channel`, if any.
    fn subscription_mut(&mut self, channel: &str) -> Option<&mut Subscription> {
        self.channels.iter_mut().find(|c| c.name == channel)
    }

    /// A channel name as the origin knows it (without the route prefix).
    fn origin_name<'a>(&self, channel: &'a str) -> &'a str {
        let prefix = self.origin.as_ref().map_or("", |o| o.prefix.as_str());
        channel.strip_prefix(prefix).unwrap_or(channel)
    }

    /// `(channel, last id)` for `Grip-Last`, channel names as the origin
    /// knows them.
    fn last_ids(&self) -> Vec<(String, String)> {
        self.channels
            .iter()
            .filter_map(|c| {
                c.prev_id
                    .as_ref()
                    .map(|id| (self.origin_name(&c.name).to_owned(), id.clone()))
            })
            .collect()
    }

    /// A response shaped for the route's `aco` (see [`cross_origin`]).
    fn cross_origin_response(&self, response: Response, whole: bool) -> Response {
        cross_origin(response, self.cross_origin.as_ref(), &self.request, whole)
    }

    /// The first packet of a response: status, headers, body, `more`.
    fn response_packet(&self, response: &Response, more: bool) -> Packet {
        let mut packet = self.packet(PacketType::Data);
        packet.code = Some(response.code);
        packet.reason = Some(response.reason.clone());
        packet.headers = Some(response.headers.clone());
        packet.body = Some(response.body.clone());
        packet.more = more;
        packet
    }
}
