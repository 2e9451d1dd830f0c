//! What a session's methods answer the engine: what it does with an item,
//! what became of content offered, hold instructions as applied, the
//! request it makes of the origin (or why not), what its timers do, and
//! what is left once it ends; and what the engine's timers and hold
//! instructions are, from the session's side.

use bytes::Bytes;
use holdfast_protocol::handoff::{Origin, Request, Response};
use holdfast_protocol::zhttp::{IdSeq, Packet};
use std::time::Duration;
use tokio_util::time::delay_queue;
use url::Url;

/// A session's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionTimer {
    /// Long-poll timeout, or stream keep-alive.
    Hold,
    /// ZHTTP keep-alive and expiry.
    Link,
    /// Next-link timeout, or the back-off after a failed attempt.
    Next,
}

/// Where hold instructions came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The proxy's hand-over.
    Accept,
    /// A long-poll asked again.
    Retry,
    /// A stream's next link.
    Link,
}

/// What one session does with a published item.
pub enum Decision {
    /// Nothing.
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

/// What became of content offered to a stream.
pub enum Offered {
    /// Sent now, as this id and sequence number, with the keep-alive
    /// period an idle keep-alive starts over with.
    Sent {
        /// The delivery's id and sequence number.
        id: IdSeq,
        /// The idle keep-alive's period, when it has one.
        idle_keep_alive: Option<Duration>,
    },
    /// Queued for credits: a flush sends what it can.
    Queued,
    /// [`QUEUE_MAX`] items wait already: the client is too slow.
    TooSlow,
}

/// Hold instructions as applied to a session.
pub struct Applied {
    /// The channels before, and after.
    pub old: Vec<String>,
    /// The channels now.
    pub new: Vec<String>,
    /// Channels past `connection_subscription_max`, ignored.
    pub ignored: Vec<String>,
    /// What goes to connmgr now.
    pub packets: Vec<Packet>,
    /// When the hold timer fires (long-poll timeout, stream keep-alive).
    pub hold_after: Option<Duration>,
    /// When the next link is fetched (not when it is fetched at once).
    pub next_after: Option<Duration>,
    /// The next link is to be fetched at once (`timeout=0`).
    pub follow_now: bool,
}

/// A request to the origin a session makes (see [`Session::begin_ask`]).
pub enum Ask<'a> {
    /// A long-poll asks again with its request.
    Retry {
        /// How to reach the origin.
        origin: &'a Origin,
        /// The client's request.
        request: &'a Request,
        /// `Grip-Last` values.
        last: Vec<(String, String)>,
        /// Which request this is.
        generation: u64,
    },
    /// A stream fetches its next link.
    Link {
        /// How to reach the origin.
        origin: &'a Origin,
        /// The link.
        link: &'a Url,
        /// `Grip-Last` values.
        last: Vec<(String, String)>,
        /// Which request this is.
        generation: u64,
    },
}

/// Why a session does not ask the origin.
#[derive(Debug, PartialEq, Eq)]
pub enum NotAsked {
    /// A request is in flight, or the session is ending.
    Busy,
    /// The proxy gave no origin.
    NoOrigin,
    /// A stream without a next link.
    NoNextLink,
}

/// What the next-link timer does.
pub enum NextCheck {
    /// Every channel got something since: nothing missed; the timer
    /// starts over (with this period, while there is a link).
    Rearm(Option<Duration>),
    /// Fetch the link.
    Ask,
}

/// A stream's keep-alive, when its timer fires.
pub struct KeepAliveTick {
    /// Sent now (the keep-alive within credits).
    pub packet: Option<Packet>,
    /// Queued for credits (larger than the window): flush.
    pub flush: bool,
    /// When the next one is due.
    pub again: Duration,
}

/// A session ended: what is left to do for it.
pub struct Parting {
    /// Its armed timers.
    pub timers: Vec<delay_queue::Key>,
    /// Its gone link, and the origin to tell.
    pub gone: Option<(Origin, Url)>,
    /// `connmgr:id`, as stats name it.
    pub name: String,
}
