//! Where the engine's messages go: sessions' packets to their connmgr
//! (over the link), and WebSocket sessions' deliveries to the proxy that
//! owns each (PUB, topic = proxy id); and a publish's deliveries for one
//! chunk of subscribers, gathered as one packet per connmgr and content.

use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::wscontrol::{topic, Deliver};
use holdfast_protocol::zhttp::{IdSeq, Ids, Packet, PacketType};
use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::Multipart;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Sessions looked at, and at most addressed by one delivery packet, at a
/// time. Large enough that a publish to 10,000 subscribers is ten packets,
/// small enough that connmgr starts writing to clients within a
/// millisecond or two while the handler works through the rest.
pub const BATCH: usize = 1024;

/// One chunk's deliveries: per connmgr and distinct content, the sessions
/// that take it now, sent as one packet.
#[derive(Default)]
pub struct Ready {
    groups: Vec<ReadyGroup>,
    /// Groups by content, for items whose content filters render it per
    /// session.
    by_content: HashMap<Bytes, Vec<usize>>,
    /// The group the last session joined: without content filters every
    /// session shares the item's own buffer, so this is nearly always it.
    last: usize,
}

pub struct ReadyGroup {
    connmgr: String,
    content: Bytes,
    ids: Vec<IdSeq>,
}

impl Ready {
    pub fn add(&mut self, connmgr: &str, content: Bytes, id: IdSeq) {
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

/// The engine's ways out.
pub struct Outbox {
    link: Arc<Link>,
    /// Our id, the `from` of every session's packets.
    from: Arc<str>,
    /// Where `ws-message` content goes (PUB, topic = proxy id).
    ws_out: Option<mpsc::Sender<Multipart>>,
}

impl Outbox {
    /// Sending through `link`.
    pub fn new(link: Arc<Link>) -> Outbox {
        Outbox {
            from: Arc::from(link.id.as_str()),
            link,
            ws_out: None,
        }
    }

    /// WebSocket deliveries go through `out`.
    pub fn set_ws_out(&mut self, out: mpsc::Sender<Multipart>) {
        self.ws_out = Some(out);
    }

    /// Our id.
    pub fn from(&self) -> Arc<str> {
        self.from.clone()
    }

    /// Sends a packet to connmgr `to`.
    pub async fn send(&self, to: &str, packet: &Packet) {
        if let Err(err) = self.link.send(to, packet).await {
            tracing::warn!(error = %err, "packet to connmgr not encoded");
        }
    }

    /// Sends packets already numbered, each to its connmgr.
    pub async fn send_all(&self, packets: Vec<(String, Packet)>) {
        for (to, packet) in packets {
            self.send(&to, &packet).await;
        }
    }

    /// Tells connmgr `to` we hold no session `id` (a packet for a session
    /// that is gone).
    pub async fn cancel(&self, to: &str, id: &str) {
        let cancel = Packet::new(PacketType::Cancel, &self.link.id, id, 0);
        self.send(to, &cancel).await;
    }

    /// Sends a chunk's deliveries, one packet per group; how many
    /// sessions they address.
    pub async fn send_ready(&self, ready: Ready) -> usize {
        let mut sent = 0;
        for group in ready.groups {
            sent += group.ids.len();
            let mut packet = Packet::new(PacketType::Data, &self.link.id, "", 0);
            packet.id = Some(Ids::Many(group.ids));
            packet.seq = None;
            packet.body = Some(group.content);
            packet.more = true;
            self.send(&group.connmgr, &packet).await;
        }
        sent
    }

    /// Sends deliveries to the proxies owning their sessions.
    pub async fn send_ws(&self, deliveries: Vec<(String, Deliver)>) {
        let Some(out) = &self.ws_out else { return };
        for (proxy, deliver) in deliveries {
            match format::encode(&deliver, self.link.format) {
                Ok(frame) => {
                    if out.send(vec![topic(&proxy), frame]).await.is_err() {
                        tracing::warn!("WebSocket delivery socket closed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "WebSocket delivery not encoded"),
            }
        }
    }

    /// Answers a proxy checking that our deliveries reach it.
    pub fn ws_hello(&self, proxy: &str) {
        let hello = Deliver {
            kind: "hello".into(),
            ..Default::default()
        };
        if let (Some(out), Ok(frame)) = (&self.ws_out, format::encode(&hello, self.link.format)) {
            let _ = out.try_send(vec![topic(proxy), frame]);
        }
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
