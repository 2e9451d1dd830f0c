//! Routing of incoming ZHTTP packets to the task that owns each session.

use crate::zhttp::{Ids, Packet};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Packets that may wait for one session's task. Peers send body only within
/// granted credits, so a handful suffice; a peer that floods past this is
/// broken, and the packet is dropped (the session then fails on its sequence
/// check).
pub const SESSION_QUEUE: usize = 64;

/// Session key → the inbox of the task that owns it. The lock is never held
/// across an `.await`: every use is one lookup, insert or remove.
#[derive(Default)]
pub struct SessionTable {
    inboxes: Mutex<HashMap<String, mpsc::Sender<Packet>>>,
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
    pub fn register(&self, key: String) -> mpsc::Receiver<Packet> {
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        if let Ok(mut map) = self.inboxes.lock() {
            map.insert(key, tx);
        }
        rx
    }

    /// Forgets a session.
    pub fn unregister(&self, key: &str) {
        if let Ok(mut map) = self.inboxes.lock() {
            map.remove(key);
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inboxes.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands `packet` to its session(s), splitting a multi-id packet into one
    /// packet per id. Returns the packets whose session is unknown, so the
    /// caller can answer them (Pushpin answers `cancel`).
    pub fn deliver(&self, mut packet: Packet, qualify_by_from: bool) -> Vec<Packet> {
        let parts: Vec<Packet> = match packet.id.take() {
            None => return Vec::new(),
            Some(Ids::One(id)) => vec![Packet {
                id: Some(Ids::One(id)),
                ..packet
            }],
            // The list is taken out first, so each copy is of the packet
            // without it: a batch of n ids costs n small copies, not n².
            Some(Ids::Many(list)) => list
                .into_iter()
                .map(|entry| Packet {
                    id: Some(Ids::One(entry.id)),
                    seq: entry.seq,
                    ..packet.clone()
                })
                .collect(),
        };
        let mut unknown = Vec::new();
        for part in parts {
            let Some(id) = part.single_id() else { continue };
            let peer = if qualify_by_from {
                part.from.as_deref()
            } else {
                None
            };
            let key = session_key(peer, id);
            let inbox = self.inboxes.lock().ok().and_then(|m| m.get(&key).cloned());
            match inbox {
                Some(inbox) => {
                    if inbox.try_send(part).is_err() {
                        tracing::warn!(session = %key, "session inbox full or closed; packet dropped");
                    }
                }
                None => unknown.push(part),
            }
        }
        unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zhttp::{IdSeq, PacketType};

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
        let unknown = table.deliver(packet, false);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].single_id(), Some("b"));
        let got = a.recv().await.unwrap();
        assert_eq!((got.single_id(), got.seq), (Some("a"), Some(4)));
        table.unregister("a");
        assert!(table.is_empty());
    }
}
