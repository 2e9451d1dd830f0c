//! Routing of incoming ZHTTP packets to the task that owns each session.

use crate::zhttp::{IdSeq, Ids, Packet, PacketType};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Packets that may wait for one session's task. Session tasks take their
/// packets as they come (what they hold is bounded by the credits they
/// granted), so this is rarely full; when it is, delivery waits for room,
/// which stops reading the socket that feeds it: nothing is dropped.
pub const SESSION_QUEUE: usize = 64;

/// Session key → the inbox of the task that owns it. The lock is never held
/// across an `.await`: every use is one lookup, insert or remove.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    inboxes: HashMap<String, Entry>,
    /// Every fast path's owner, each name once: a batch's `from` is looked
    /// up here once, and each of its sessions compares a pointer instead of
    /// reading its own copy of the name (a cache miss per delivery). Peers
    /// keep their names across restarts, so this stays a handful.
    owners: Vec<Arc<str>>,
}

struct Entry {
    /// Boxed: a channel's slots are allocated 32 at a time and a `Packet`
    /// is 440 bytes, so unboxed every held session would carry a 14 KiB
    /// block whose pages fill in one keep-alive at a time (RSS grew 440
    /// bytes per session per 45 s in the soak).
    inbox: mpsc::Sender<Box<Packet>>,
    fast: Option<Installed>,
}

/// A [`FastPath`] in the table, its owner's name interned.
struct Installed {
    body: Arc<dyn BodySink>,
    owner: Arc<str>,
    state: Arc<SessionState>,
}

/// Where a fast path puts body packets: the session's response body (the
/// process that owns the body implements it).
pub trait BodySink: Send + Sync {
    /// Takes `body`; false when it cannot now (the packet then goes to the
    /// session's task, which deals with it).
    fn take(&self, body: &Bytes) -> bool;
}

/// A streaming session's shortcut: body packets that arrive in sequence
/// from its owner go straight into the response body without waking the
/// session's task, which halves the task wake-ups of a fan-out. Anything
/// else (a head, the last packet, credits, an unexpected sequence number, a
/// full body queue) takes the inbox, in order behind what came before.
pub struct FastPath {
    /// The response body.
    pub body: Arc<dyn BodySink>,
    /// The owner's `from`; packets from anyone else take the inbox.
    pub owner: String,
    /// Shared with the session's task.
    pub state: Arc<SessionState>,
}

/// What a session shares with its fast path.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Sequence number expected on the owner's next packet.
    pub in_seq: AtomicU32,
    /// Body bytes that went by the fast path.
    pub bytes: AtomicU64,
    /// A packet went by the fast path since the task last looked.
    pub heard: AtomicBool,
}

impl Installed {
    /// Whether `packet`'s kind allows the fast path at all (the same for
    /// every session of a batch, so checked once).
    fn suits(packet: &Packet) -> bool {
        packet.kind() == &PacketType::Data
            && packet.more
            && packet.code.is_none()
            && packet.headers.is_none()
            && packet.credits.is_none()
    }

    /// Puts `body` in the response if the packet (one that [`suits`]) is
    /// from the owner (`from`, interned) and has the expected `seq`;
    /// returns whether it did.
    ///
    /// [`suits`]: Installed::suits
    fn take(&self, from: Option<&Arc<str>>, seq: Option<u32>, body: Option<&Bytes>) -> bool {
        let from_owner = from.is_some_and(|from| Arc::ptr_eq(from, &self.owner));
        let (true, Some(seq)) = (from_owner, seq) else {
            return false;
        };
        if self
            .state
            .in_seq
            .compare_exchange(
                seq,
                seq.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            return false;
        }
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            if !self.body.take(body) {
                // Past the credits granted, or the client is gone: the
                // session's task deals with it. Taking the sequence number
                // back is safe: the task touches it only for packets that
                // come after this one, through its inbox.
                self.state.in_seq.store(seq, Ordering::Release);
                return false;
            }
        }
        let len = body.map_or(0, Bytes::len);
        self.state.bytes.fetch_add(len as u64, Ordering::Relaxed);
        self.state.heard.store(true, Ordering::Relaxed);
        true
    }
}

impl Inner {
    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.owners.iter().find(|o| ***o == *name) {
            return known.clone();
        }
        let name: Arc<str> = Arc::from(name);
        self.owners.push(name.clone());
        name
    }
}

/// The key of a session: its id, qualified by the peer's address when ids
/// are chosen by several peers (a proxy serving several connmgrs).
pub fn session_key(peer: Option<&str>, id: &str) -> String {
    match peer {
        Some(peer) => format!("{peer} {id}"),
        None => id.to_owned(),
    }
}

impl SessionTable {
    /// Registers a session; packets for `key` go to the returned inbox.
    pub fn register(&self, key: String) -> mpsc::Receiver<Box<Packet>> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        if let Ok(mut inner) = self.inner.lock() {
            inner.inboxes.insert(
                key,
                Entry {
                    inbox: tx,
                    fast: None,
                },
            );
        }
        rx
    }

    /// Opens (or closes, with `None`) a session's fast path.
    pub fn set_fast_path(&self, key: &str, fast: Option<FastPath>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let installed = fast.map(|fast| Installed {
            owner: inner.intern(&fast.owner),
            body: fast.body,
            state: fast.state,
        });
        if let Some(entry) = inner.inboxes.get_mut(key) {
            entry.fast = installed;
        }
    }

    /// Forgets a session.
    pub fn unregister(&self, key: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.inboxes.remove(key);
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.inboxes.len()).unwrap_or(0)
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands `packet` to its session(s), splitting a multi-id packet into one
    /// packet per id. A session whose inbox is full is waited for (after
    /// the others have theirs), so the caller stops reading its socket
    /// meanwhile: backpressure, never a dropped packet. Returns the
    /// packets whose session is unknown (or just ended), so the caller can
    /// answer them (Pushpin answers `cancel`).
    pub async fn deliver(&self, mut packet: Packet, qualify_by_from: bool) -> Vec<Packet> {
        let parts: Vec<IdSeq> = match packet.id.take() {
            None => return Vec::new(),
            Some(Ids::One(id)) => vec![IdSeq {
                id,
                seq: packet.seq,
            }],
            Some(Ids::Many(list)) => list,
        };
        // A batch's parts differ only in id and seq: each is copied out
        // of the packet (without its id list) only when it takes an inbox.
        let part_of = |entry: IdSeq| Packet {
            id: Some(Ids::One(entry.id)),
            seq: entry.seq,
            ..packet.clone()
        };
        let suits_fast_path = Installed::suits(&packet);
        let mut unknown = Vec::new();
        let mut full = Vec::new();
        {
            // One lock for the whole batch, never held across an await; no
            // key is built when ids are the keys (connmgr's side).
            let Ok(inner) = self.inner.lock() else {
                return unknown;
            };
            // The sender among the fast paths' owners (none: it owns none).
            let owner = packet
                .from
                .as_deref()
                .and_then(|from| inner.owners.iter().find(|o| ***o == *from));
            let inboxes = &inner.inboxes;
            for entry in parts {
                let qualified = match (qualify_by_from, packet.from.as_deref()) {
                    (true, peer) => Some(session_key(peer, &entry.id)),
                    (false, _) => None,
                };
                let key = qualified.as_deref().unwrap_or(&entry.id);
                let Some(session) = inboxes.get(key) else {
                    unknown.push(part_of(entry));
                    continue;
                };
                if let Some(fast) = session.fast.as_ref().filter(|_| suits_fast_path) {
                    if fast.take(owner, entry.seq, packet.body.as_ref()) {
                        continue;
                    }
                }
                match session.inbox.try_send(Box::new(part_of(entry))) {
                    Ok(()) => {}
                    Err(TrySendError::Full(part)) => full.push((session.inbox.clone(), part)),
                    Err(TrySendError::Closed(part)) => unknown.push(*part),
                }
            }
        }
        for (inbox, part) in full {
            if let Err(gone) = inbox.send(part).await {
                unknown.push(*gone.0);
            }
        }
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zhttp::PacketType;

    #[tokio::test]
    async fn a_full_inbox_is_waited_for_never_dropped() {
        let table = Arc::new(SessionTable::default());
        let mut slow = table.register("slow".into());
        let mut other = table.register("other".into());
        let packet = |id: &str, seq| Packet::new(PacketType::Data, "peer", id, seq);
        for seq in 0..SESSION_QUEUE as u32 {
            table.deliver(packet("slow", seq), false).await;
        }
        // The next one waits for the slow session; the socket's reader
        // (this task) waits with it.
        let feeder = {
            let table = table.clone();
            tokio::spawn(async move {
                table
                    .deliver(packet("slow", SESSION_QUEUE as u32), false)
                    .await;
                table.deliver(packet("other", 0), false).await;
            })
        };
        tokio::task::yield_now().await;
        assert!(other.try_recv().is_err(), "the reader is held up");
        for seq in 0..=SESSION_QUEUE as u32 {
            assert_eq!(slow.recv().await.unwrap().seq, Some(seq));
        }
        feeder.await.unwrap();
        assert_eq!(other.recv().await.unwrap().seq, Some(0));
    }

    #[tokio::test]
    async fn delivers_batches_and_reports_unknown() {
        let table = SessionTable::default();
        let mut a = table.register("a".into());
        let packet = Packet {
            id: Some(Ids::Many(vec![
                IdSeq {
                    id: "a".into(),
                    seq: Some(4),
                },
                IdSeq {
                    id: "b".into(),
                    seq: Some(9),
                },
            ])),
            kind: PacketType::KeepAlive,
            ..Packet::default()
        };
        let unknown = table.deliver(packet, false).await;
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].single_id(), Some("b"));
        let got = a.recv().await.unwrap();
        assert_eq!((got.single_id(), got.seq), (Some("a"), Some(4)));
        table.unregister("a");
        assert!(table.is_empty());
    }

    /// A body that takes what fits in a channel.
    struct Sink(mpsc::Sender<Bytes>);

    impl BodySink for Sink {
        fn take(&self, body: &Bytes) -> bool {
            self.0.try_send(body.clone()).is_ok()
        }
    }

    #[tokio::test]
    async fn fast_path_takes_in_sequence_body_packets_only() {
        let table = SessionTable::default();
        let mut inbox = table.register("s".into());
        let (body_tx, mut body_rx) = mpsc::channel(100);
        let state = Arc::new(SessionState::default());
        state.in_seq.store(5, Ordering::Release);
        table.set_fast_path(
            "s",
            Some(FastPath {
                body: Arc::new(Sink(body_tx)),
                owner: "handler".into(),
                state: state.clone(),
            }),
        );
        let data = |seq: u32, from: &str| {
            let mut p = Packet::new(PacketType::Data, from, "s", seq);
            p.body = Some(bytes::Bytes::from_static(b"x"));
            p.more = true;
            p
        };
        // In sequence from the owner: straight into the body.
        assert!(table.deliver(data(5, "handler"), false).await.is_empty());
        assert_eq!(body_rx.try_recv().unwrap(), &b"x"[..]);
        assert_eq!(state.in_seq.load(Ordering::Acquire), 6);
        assert_eq!(state.bytes.load(Ordering::Relaxed), 1);
        // Out of sequence, from someone else, or the last packet: the inbox.
        table.deliver(data(9, "handler"), false).await;
        table.deliver(data(6, "other"), false).await;
        let mut last = data(6, "handler");
        last.more = false;
        table.deliver(last, false).await;
        for expected in [9, 6, 6] {
            assert_eq!(inbox.recv().await.unwrap().seq, Some(expected));
        }
        assert_eq!(state.in_seq.load(Ordering::Acquire), 6);
        assert_eq!(state.bytes.load(Ordering::Relaxed), 1);
    }
}
