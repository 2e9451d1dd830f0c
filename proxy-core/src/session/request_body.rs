//! A request body as connmgr sends it: when it does not come whole in the
//! first packet, it streams toward the origin through a channel bounded by
//! the window granted to connmgr ([`REQUEST_WINDOW`]), the origin's
//! progress becoming connmgr's credits. A copy of the request, body
//! included, is kept for a hand-over to the handler (which may replay it)
//! while it stays within [`REPLAY_MAX`].

use super::zhttp::Zhttp;
use crate::prepare::Prepared;
use bytes::Bytes;
use holdfast_protocol::handoff;
use holdfast_protocol::zhttp::{Packet, PacketType};
use holdfast_runtime::body::{body_channel, BodySender, Drained};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Request body bytes connmgr may send before we grant more. Large enough to
/// keep an upload flowing across one round trip of credit packets.
pub(crate) const REQUEST_WINDOW: u32 = 128 * 1024;

/// Largest request body kept for a hand-over (Pushpin's limit for
/// requests whose answer may be held).
const REPLAY_MAX: usize = 100_000;

/// How long the rest of a body may take once the session waits for it.
const FINISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The request's body, and the copy kept for a hand-over.
pub(crate) struct RequestBody {
    /// The body toward the origin, while it is still arriving.
    tx: Option<BodySender>,
    /// Body bytes the origin has taken (become credits for connmgr).
    drained: Arc<Drained>,
    /// The request as received; `None` once a streamed body outgrew
    /// [`REPLAY_MAX`].
    replay: Option<handoff::Request>,
    /// A streamed body is still arriving (the request is not complete).
    open: bool,
}

impl RequestBody {
    /// The body of `prepared`: whole, or, when connmgr has `more` to send,
    /// streaming (the first part queued, the window granted).
    pub async fn start(
        zhttp: &mut Zhttp,
        prepared: &mut Prepared,
        replay: handoff::Request,
        more: bool,
    ) -> RequestBody {
        let drained = Arc::new(Drained::default());
        let mut tx = None;
        if more {
            // What waits for the origin is bounded by the window we grant
            // (and the first packet's body, sent unasked).
            let first = prepared.body.take();
            let first_len = first.as_ref().map_or(0, Bytes::len);
            let (sender, rx) = body_channel(REQUEST_WINDOW as usize + first_len, drained.clone());
            if let Some(body) = first {
                let _ = sender.push(body);
            }
            tx = Some(sender);
            prepared.streaming_body = Some(rx);
            zhttp.give_back(REQUEST_WINDOW as usize).await;
        }
        RequestBody {
            tx,
            drained,
            replay: Some(replay),
            open: more,
        }
    }

    /// Body bytes the origin has taken, to give back to connmgr.
    pub fn drained(&self) -> Arc<Drained> {
        self.drained.clone()
    }

    /// The whole request, once its body has arrived within [`REPLAY_MAX`].
    pub fn whole(&self) -> Option<&handoff::Request> {
        self.replay.as_ref().filter(|_| !self.open)
    }

    /// Takes the whole request (see [`RequestBody::whole`]).
    pub fn take_whole(&mut self) -> Option<handoff::Request> {
        self.replay.take().filter(|_| !self.open)
    }

    /// Handles a packet from connmgr while the request is served; `Some`
    /// ends the session.
    pub async fn on_packet(&mut self, zhttp: &mut Zhttp, packet: Packet) -> Option<&'static str> {
        if !zhttp.take_in(&packet) {
            let cancel = zhttp.packet(PacketType::Cancel);
            zhttp.send(cancel).await;
            return Some("bad seq");
        }
        match packet.kind() {
            PacketType::Data => {
                self.take(packet.body.filter(|b| !b.is_empty()), packet.more);
                None
            }
            PacketType::Cancel => Some("cancelled by client"),
            PacketType::Error => Some("error from connmgr"),
            PacketType::HandoffStart => {
                let proceed = zhttp.packet(PacketType::HandoffProceed);
                zhttp.send(proceed).await;
                None
            }
            _ => None,
        }
    }

    /// A part of the body from connmgr (`more` when others follow).
    fn take(&mut self, chunk: Option<Bytes>, more: bool) {
        if let (true, Some(chunk)) = (self.tx.is_some(), chunk) {
            self.keep_for_replay(&chunk);
            // Never waits: the window we granted bounds it (connmgr's
            // sending past it already failed the endpoint's check).
            if self.tx.as_ref().is_some_and(|tx| tx.push(chunk).is_err()) {
                // The origin stopped reading the body; its response decides.
                self.tx = None;
            }
        }
        if !more {
            self.tx = None;
            self.open = false;
        }
    }

    /// Appends a streamed part to the copy kept for a hand-over, or drops
    /// the copy once the body is too large to keep.
    fn keep_for_replay(&mut self, chunk: &Bytes) {
        if let Some(r) = &mut self.replay {
            if r.body.len() + chunk.len() > REPLAY_MAX {
                self.replay = None;
            } else {
                let mut body = Vec::with_capacity(r.body.len() + chunk.len());
                body.extend_from_slice(&r.body);
                body.extend_from_slice(chunk);
                r.body = Bytes::from(body);
            }
        }
    }

    /// Takes the rest of the body from connmgr, while it fits the replay
    /// copy and arrives within [`FINISH_TIMEOUT`]; afterwards
    /// [`RequestBody::whole`] says whether it is whole. `Err` ends the
    /// session (the client went away).
    pub async fn finish(&mut self, zhttp: &mut Zhttp) -> Result<(), &'static str> {
        let deadline = Instant::now() + FINISH_TIMEOUT;
        while self.open && self.replay.is_some() {
            match tokio::time::timeout_at(deadline, zhttp.inbox.recv()).await {
                Ok(Some(packet)) => {
                    if let Some(outcome) = self.on_packet(zhttp, *packet).await {
                        return Err(outcome);
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(replay: &[u8], open: bool) -> RequestBody {
        RequestBody {
            tx: None,
            drained: Arc::default(),
            replay: Some(handoff::Request {
                method: "POST".into(),
                uri: "http://example.com/".into(),
                headers: Vec::new(),
                body: Bytes::copy_from_slice(replay),
            }),
            open,
        }
    }

    #[test]
    fn a_streamed_body_is_whole_once_its_last_part_came() {
        let mut b = body(b"ab", true);
        assert!(b.whole().is_none());
        b.take(None, true);
        assert!(b.whole().is_none());
        b.take(None, false);
        assert_eq!(b.whole().map(|r| &r.body[..]), Some(&b"ab"[..]));
        assert!(b.take_whole().is_some());
        assert!(b.take_whole().is_none());
    }

    #[test]
    fn the_replay_copy_is_dropped_past_its_limit() {
        let mut b = body(b"ab", true);
        b.keep_for_replay(&Bytes::from_static(b"cd"));
        assert_eq!(b.replay.as_ref().map(|r| &r.body[..]), Some(&b"abcd"[..]));
        b.keep_for_replay(&Bytes::from(vec![0u8; REPLAY_MAX]));
        assert!(b.replay.is_none());
    }
}
