//! One side of a ZHTTP session, as every Holdfast process keeps it: the
//! session's ids, the sequence numbers both ways, the credits both ways, the
//! keep-alive and expiry clock, and the rules for pausing (hand-over) and
//! cancelling. Pure state: the caller owns the socket and the timer, and
//! asks the endpoint what to number, what it may send and when.
//!
//! Rules written once here:
//! - A packet is numbered when it is sent ([`Endpoint::stamp`]), never when
//!   it is made: a packet made and held back cannot be overtaken by a later
//!   one, and one never sent (no peer known yet, or paused) leaves no gap.
//! - Packets from the peer must come in sequence ([`Endpoint::receive`]);
//!   a `cancel` is taken whatever its `seq` (Pushpin's peers send it out of
//!   sequence, or with 0 for a session they do not know).
//! - Credits count body bytes (WebSocket: message, ping and pong payload
//!   bytes). A sender may start a message while it holds any credit; a
//!   message larger than the credit left puts it in debt, and it waits
//!   until the peer has given the debt back ([`Endpoint::can_send`]).
//! - A receiver grants credits ([`Endpoint::grant`]) as what it received
//!   leaves its buffers. A peer that sends past what was granted (plus one
//!   message's overshoot, see [`Endpoint::set_overshoot`]) breaks the
//!   protocol: [`Endpoint::receive`] says so instead of letting a buffer
//!   grow.
//! - Keep-alive: something goes to the peer at least every
//!   [`KEEP_ALIVE_INTERVAL`]; a peer silent for [`SESSION_EXPIRY`] is gone.
//! - After `handoff-proceed` ([`Endpoint::pause`]) nothing is sent until the
//!   new owner speaks; its first packet names it (`from`).

use super::{Packet, PacketType};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a session says something to its peer when it has nothing
/// else to send (Pushpin's 45 s): under [`SESSION_EXPIRY`] with margin for a
/// busy peer.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(45);

/// How long a peer may be silent before its session is considered dead
/// (Pushpin's `ZHTTP_SESSION_TIMEOUT`, 60 s).
pub const SESSION_EXPIRY: Duration = Duration::from_secs(60);

/// How long a session may hold data for a reader that takes none of it
/// (a client or origin that stopped reading) before it is closed. Senders
/// are slowed by credits meanwhile; nothing is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What was wrong with a packet from the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A packet came out of order (or one was lost).
    #[error("out-of-order packet: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The sequence number due.
        expected: u32,
        /// The one received.
        got: u32,
    },
    /// The peer sent more body than it was granted.
    #[error("peer sent {over} bytes beyond its credits")]
    BeyondCredits {
        /// By how much.
        over: u64,
    },
}

/// One side of a ZHTTP session. See the module docs.
#[derive(Debug)]
pub struct Endpoint {
    /// Our instance id: `from` of every packet we send.
    from: Arc<str>,
    /// The session id.
    id: String,
    /// Where our packets go (the peer's `from`), once known.
    peer: Option<String>,
    /// Sequence number of our next packet.
    out_seq: u32,
    /// Sequence number due on the peer's next packet.
    in_seq: u32,
    /// Body bytes we may send; negative while a message sent past the
    /// credit left is not yet paid back.
    credits: i64,
    /// Body bytes the peer may still send us; negative by at most
    /// `overshoot` (its last message went past the grant).
    window: i64,
    /// How far past the grant one message may go.
    overshoot: u64,
    /// When the peer was last heard from.
    heard: Instant,
    /// When we last sent anything.
    sent: Instant,
    /// Handed over: silent until the new owner speaks.
    paused: bool,
}

impl Endpoint {
    /// A new session `id` that we start (our first packet is `seq` 0), or
    /// that the peer started with its first packet (then call
    /// [`Endpoint::receive`] with that packet).
    pub fn new(from: Arc<str>, id: impl Into<String>, now: Instant) -> Endpoint {
        Endpoint {
            from,
            id: id.into(),
            peer: None,
            out_seq: 0,
            in_seq: 0,
            credits: 0,
            window: 0,
            overshoot: 0,
            heard: now,
            sent: now,
            paused: false,
        }
    }

    /// A session taken over from another process (a hand-over), at the
    /// point where it left it.
    pub fn resume(
        from: Arc<str>,
        id: impl Into<String>,
        peer: impl Into<String>,
        (in_seq, out_seq): (u32, u32),
        credits: u32,
        now: Instant,
    ) -> Endpoint {
        Endpoint {
            peer: Some(peer.into()),
            in_seq,
            out_seq,
            credits: i64::from(credits),
            ..Endpoint::new(from, id, now)
        }
    }

    /// Lets one message go `bytes` past the grant (WebSocket messages are
    /// not split; the largest message accepted is the natural bound).
    pub fn set_overshoot(&mut self, bytes: usize) {
        self.overshoot = bytes as u64;
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Our instance id.
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The peer our packets go to, once known.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Sequence numbers `(in, out)`: due from the peer, and our next.
    pub fn seqs(&self) -> (u32, u32) {
        (self.in_seq, self.out_seq)
    }

    /// Moves the inbound sequence to `seq`, for a fast path that took
    /// in-sequence packets without this endpoint (connmgr's streams).
    pub fn sync_in_seq(&mut self, seq: u32) {
        self.in_seq = seq;
    }

    /// A packet of `kind` for this session, not yet numbered.
    pub fn packet(&self, kind: PacketType) -> Packet {
        let mut packet = Packet::new(kind, &self.from, &self.id, 0);
        packet.seq = None;
        packet
    }

    /// Numbers `packet` for sending now, and says where it goes; `None`
    /// (and no number used) when there is nobody to send it to yet, or the
    /// session is paused for a hand-over.
    pub fn stamp(&mut self, packet: &mut Packet, now: Instant) -> Option<&str> {
        if self.paused {
            return None;
        }
        let peer = self.peer.as_deref()?;
        packet.seq = Some(self.out_seq);
        self.out_seq = self.out_seq.wrapping_add(1);
        self.sent = now;
        Some(peer)
    }

    /// Numbers the first packet of a session we start: it goes to whoever
    /// takes it (a PUSH socket picks the peer), whose answer names it.
    pub fn stamp_first(&mut self, packet: &mut Packet, now: Instant) {
        packet.seq = Some(self.out_seq);
        self.out_seq = self.out_seq.wrapping_add(1);
        self.sent = now;
    }

    /// The next sequence number, used now, for a packet that carries it
    /// elsewhere (an entry of a multi-id packet); `None` as for
    /// [`Endpoint::stamp`].
    pub fn next_seq(&mut self, now: Instant) -> Option<u32> {
        if self.paused || self.peer.is_none() {
            return None;
        }
        let seq = self.out_seq;
        self.out_seq = self.out_seq.wrapping_add(1);
        self.sent = now;
        Some(seq)
    }

    /// Takes a packet from the peer: checks its sequence number, notes the
    /// peer (whoever speaks after a hand-over is the new owner), takes the
    /// credits it grants and counts the body it carries against ours.
    pub fn receive(&mut self, packet: &Packet, now: Instant) -> Result<(), SessionError> {
        // A cancel may come out of sequence (a peer that does not know the
        // session answers with seq 0): it ends the session either way.
        if let Some(seq) = packet.seq.filter(|_| packet.kind() != &PacketType::Cancel) {
            if seq != self.in_seq {
                return Err(SessionError::OutOfOrder {
                    expected: self.in_seq,
                    got: seq,
                });
            }
            self.in_seq = seq.wrapping_add(1);
        }
        self.heard = now;
        self.paused = false;
        if let Some(from) = packet.from.as_deref() {
            if self.peer.as_deref() != Some(from) {
                self.peer = Some(from.to_owned());
            }
        }
        if let Some(credits) = packet.credits {
            self.credits = self.credits.saturating_add(i64::from(credits));
        }
        if counts_against_credits(packet) {
            let len = packet.body.as_ref().map_or(0, |b| b.len());
            self.window -= len as i64;
            if self.window < -(self.overshoot as i64) {
                return Err(SessionError::BeyondCredits {
                    over: self.window.unsigned_abs() - self.overshoot,
                });
            }
        }
        Ok(())
    }

    /// Notes that the peer was heard from without a packet reaching
    /// [`Endpoint::receive`] (a fast path took it).
    pub fn heard(&mut self, now: Instant) {
        self.heard = now;
    }

    /// Counts `bytes` of body that a fast path took without this endpoint,
    /// so later grants and checks stay exact.
    pub fn received_elsewhere(&mut self, bytes: u64) {
        self.window = self
            .window
            .saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Body bytes we may send now (0 while in debt).
    pub fn credits(&self) -> usize {
        usize::try_from(self.credits.max(0)).unwrap_or(usize::MAX)
    }

    /// Adds credits the peer gave in some other way (Pushpin's connmgr
    /// assumes a full buffer when a WebSocket's `101` offers none).
    pub fn add_credits(&mut self, bytes: usize) {
        self.credits = self.credits.saturating_add(bytes as i64);
    }

    /// Whether we may start sending a body chunk or message.
    pub fn can_send(&self) -> bool {
        self.credits > 0
    }

    /// Uses `bytes` of credit (a message may go past what is left).
    pub fn spend(&mut self, bytes: usize) {
        self.credits = self.credits.saturating_sub(bytes as i64);
    }

    /// Takes up to `max` bytes of credit for a body chunk that can be
    /// split; returns how many.
    pub fn take_credits(&mut self, max: usize) -> usize {
        let n = max.min(self.credits());
        self.spend(n);
        n
    }

    /// Lets the peer send `bytes` more, counted from now on; the credit
    /// packet that says so, if there is anything to say. Used for the
    /// initial offer too (put its credits in the first packet instead when
    /// there is one: [`Endpoint::offer`]).
    pub fn grant(&mut self, bytes: usize) -> Option<Packet> {
        if bytes == 0 {
            return None;
        }
        let credits = self.offer(bytes);
        let mut packet = self.packet(PacketType::Credit);
        packet.credits = Some(credits);
        Some(packet)
    }

    /// Counts an offer of `bytes` that travels in a packet of ours (a first
    /// packet, a `101`); the value for its `credits` field.
    pub fn offer(&mut self, bytes: usize) -> u32 {
        let credits = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.window = self.window.saturating_add(i64::from(credits));
        credits
    }

    /// Hand-over: we said `handoff-proceed`, and stay silent (no
    /// keep-alive, no cancel) until the new owner speaks.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Whether we are waiting for a new owner.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// A `cancel` for the peer when the session ends early, if it should
    /// get one (it knows the session and we are not handed over).
    pub fn cancel(&self) -> Option<Packet> {
        (self.peer.is_some() && !self.paused).then(|| self.packet(PacketType::Cancel))
    }

    /// Whether a keep-alive is due now (nothing sent for a while).
    pub fn keep_alive_due(&self, now: Instant) -> bool {
        !self.paused && self.peer.is_some() && now >= self.sent + KEEP_ALIVE_INTERVAL
    }

    /// Whether the peer has been silent past [`SESSION_EXPIRY`].
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.heard + SESSION_EXPIRY
    }

    /// When [`Endpoint::keep_alive_due`] or [`Endpoint::expired`] may
    /// next become true: one timer per session is enough.
    pub fn next_deadline(&self) -> Instant {
        (self.sent + KEEP_ALIVE_INTERVAL).min(self.heard + SESSION_EXPIRY)
    }
}

/// Whether a packet's body is paid for with credits: data, and WebSocket
/// pings and pongs (as Pushpin counts them); not a close's reason, nor a
/// request's first packet (the initiator may send body there unasked).
fn counts_against_credits(packet: &Packet) -> bool {
    match packet.kind() {
        PacketType::Data => packet.method.is_none(),
        PacketType::Ping | PacketType::Pong => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
