//! The owner's side of the ZHTTP link with connmgr, used by the proxy (which
//! takes new requests) and the handler (which takes over held sessions):
//!
//! - PULL (connect `BASE-out`, proxy only): first packets of new requests.
//! - ROUTER (connect `BASE-out-stream`, identity = our id): later packets.
//! - XPUB (connect `BASE-in`): our packets, framed `"<connmgr-id> T..."`.
//!
//! PUB/SUB drops messages sent before the subscriber's subscription arrives,
//! and ROUTER drops messages for a peer not yet connected, so the owner takes
//! no session until both links are up: XPUB reports connmgr's subscription,
//! and a monitor on our ROUTER reports its completed handshake with
//! connmgr's. Both are facts about our own sockets, so any connection
//! manager that speaks ZHTTP will do: Holdfast's, or Pushpin's condure,
//! which sends no probe of its own.
//!
//! Several connmgr processes (comma-separated bases) are linked the same
//! way: each socket connects to every one, and the link is ready once each
//! has subscribed and each ROUTER connection has completed its handshake.

use super::{apply_specs, spawn, stream_specs, Multipart, SessionTable};
use crate::format;
use crate::zhttp::{Packet, PacketType};
use crate::Format;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Shared handle to the link and its session table.
pub struct Link {
    /// Our instance id.
    pub id: String,
    /// Encoding of packets we send.
    pub format: Format,
    publish: mpsc::Sender<Multipart>,
    sessions: SessionTable,
    /// Where packets for sessions not in the table go (the handler keeps
    /// its sessions in one task); without it they are answered `cancel`.
    catch_all: Option<mpsc::Sender<Packet>>,
}

/// Why the link could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The spec base is unusable.
    #[error("{0}")]
    Spec(String),
    /// libzmq refused a socket or option.
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    /// Binding or connecting failed.
    #[error(transparent)]
    Connect(#[from] super::SpecError),
    /// The socket could not join the reactor.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// The socket ends the owner's loop reads.
pub struct Inputs {
    /// First packets of new requests (when asked for).
    pub requests: Option<mpsc::Receiver<Multipart>>,
    router: mpsc::Receiver<Multipart>,
    xpub: mpsc::Receiver<Multipart>,
    /// Our ROUTER's monitor: one event per completed handshake.
    handshakes: mpsc::Receiver<Multipart>,
    /// How many connmgr processes must subscribe and shake hands.
    connmgrs: usize,
}

impl Link {
    /// Connects to connmgr's spec base (or several, comma-separated: one
    /// per connmgr process); `take_requests` adds the PULL socket.
    pub fn start(
        ctx: &zmq::Context,
        id: &str,
        base: &str,
        format: Format,
        take_requests: bool,
        catch_all: Option<mpsc::Sender<Packet>>,
    ) -> Result<(Arc<Link>, Inputs), LinkError> {
        let bases: Vec<&str> = base
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        let mut specs: [Vec<String>; 3] = Default::default();
        for base in &bases {
            for (list, spec) in specs
                .iter_mut()
                .zip(stream_specs(base).map_err(LinkError::Spec)?)
            {
                list.push(spec);
            }
        }
        let [out_spec, stream_spec, in_spec] = specs.map(|list| list.join(","));
        let requests = if take_requests {
            let pull = super::new_socket(ctx, zmq::PULL)?;
            apply_specs(&pull, &out_spec, false)?;
            Some(spawn(pull, "zhttp-requests")?.rx)
        } else {
            None
        };
        let router = super::new_socket(ctx, zmq::ROUTER)?;
        router.set_identity(id.as_bytes())?;
        // Our probe tells connmgr we (re)connected: after a restart it asks
        // the sessions our predecessor owned, and we cancel them at once.
        router.set_probe_router(true)?;
        // The monitor reports each connection to a connmgr's ROUTER once
        // its handshake is done; it must exist before the connects.
        static MONITORS: AtomicUsize = AtomicUsize::new(0);
        let monitor_spec = format!(
            "inproc://holdfast-link-monitor-{}",
            MONITORS.fetch_add(1, Ordering::Relaxed)
        );
        router.monitor(&monitor_spec, zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32)?;
        let monitor = ctx.socket(zmq::PAIR)?;
        monitor.connect(&monitor_spec)?;
        apply_specs(&router, &stream_spec, false)?;
        let xpub = super::new_socket(ctx, zmq::XPUB)?;
        apply_specs(&xpub, &in_spec, false)?;
        let router = spawn(router, "zhttp-in-stream")?;
        let xpub = spawn(xpub, "zhttp-out")?;
        let monitor = spawn(monitor, "zhttp-in-stream-monitor")?;
        drop(router.tx);
        drop(monitor.tx);
        let link = Arc::new(Link {
            id: id.to_owned(),
            format,
            publish: xpub.tx,
            sessions: SessionTable::default(),
            catch_all,
        });
        Ok((
            link,
            Inputs {
                requests,
                router: router.rx,
                xpub: xpub.rx,
                handshakes: monitor.rx,
                connmgrs: bases.len().max(1),
            },
        ))
    }

    /// A link with no socket: its packets go to the returned receiver as
    /// the XPUB socket would get them (`"<connmgr-id> T..."`). For tests,
    /// which play connmgr.
    pub fn detached(id: &str, format: Format) -> (Arc<Link>, mpsc::Receiver<Multipart>) {
        let (publish, sent) = mpsc::channel(super::CHANNEL_CAPACITY);
        let link = Link {
            id: id.to_owned(),
            format,
            publish,
            sessions: SessionTable::default(),
            catch_all: None,
        };
        (Arc::new(link), sent)
    }

    /// The table routing packets to session tasks (keyed by connmgr + id).
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Waits (at most `within`) until every packet handed to [`Link::send`]
    /// has left for the socket: at the end of a process, what still sits
    /// in the channel to the socket's task would be lost with the task.
    pub async fn flush(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.publish.capacity() < self.publish.max_capacity() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // The socket's task takes a burst per wake-up; no event says
            // the channel emptied, so look again shortly.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        // The last one taken is written to the socket in the same step.
        tokio::task::yield_now().await;
        true
    }

    /// Sends `packet` to the connmgr whose id is `to`.
    pub async fn send(&self, to: &str, packet: &Packet) -> Result<(), format::EncodeError> {
        let frame = format::encode_addressed(to.as_bytes(), packet, self.format)?;
        if self.publish.send(vec![frame]).await.is_err() {
            tracing::debug!("publish socket closed; packet dropped");
        }
        Ok(())
    }
}

impl Inputs {
    /// Waits until every connmgr has subscribed to our XPUB and our ROUTER
    /// has completed its handshake with every connmgr's, then keeps both
    /// links serviced in the background: later packets are delivered to
    /// sessions, further subscription messages are discarded.
    ///
    /// Packets from connmgr wait in the ROUTER's queue until then: connmgr
    /// asks about a predecessor's sessions as soon as our ROUTER shakes
    /// hands, and a `cancel` answered before its subscription reached our
    /// XPUB would be dropped, leaving the session to the 60 s expiry.
    pub async fn wait_ready(&mut self, sockets: Arc<Link>, token: CancellationToken) -> bool {
        // Distinct subscriptions ("<connmgr-id> ") and connected endpoints
        // (a reconnect reports the same endpoint again).
        let mut subscribed = HashSet::new();
        let mut connected = HashSet::new();
        while subscribed.len() < self.connmgrs || connected.len() < self.connmgrs {
            tokio::select! {
                msg = self.xpub.recv() => match msg {
                    Some(msg) => {
                        if let Some(topic) = msg.first().filter(|f| f.first() == Some(&1)) {
                            subscribed.insert(topic[1..].to_vec());
                        }
                    }
                    None => return false,
                },
                msg = self.handshakes.recv() => match msg {
                    // [event id and value, endpoint]
                    Some(mut msg) if msg.len() == 2 => {
                        if let Some(endpoint) = msg.pop() {
                            connected.insert(endpoint);
                        }
                    }
                    Some(_) => {}
                    None => return false,
                },
                _ = token.cancelled() => return false,
            }
        }
        let mut router = std::mem::replace(&mut self.router, mpsc::channel(1).1);
        let mut xpub = std::mem::replace(&mut self.xpub, mpsc::channel(1).1);
        let mut handshakes = std::mem::replace(&mut self.handshakes, mpsc::channel(1).1);
        // Reading goes on after shutdown starts: sessions draining still
        // need connmgr's packets. It ends with the process.
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = router.recv() => match msg {
                        Some(msg) => handle_router(&sockets, msg).await,
                        None => return,
                    },
                    // Subscription changes and new handshakes (connmgr
                    // restarts) need no action. The monitor is drained for
                    // as long as the socket lives: libzmq reports events
                    // with a blocking send.
                    msg = xpub.recv() => if msg.is_none() { return },
                    msg = handshakes.recv() => if msg.is_none() { return },
                }
            }
        });
        true
    }
}

/// `[identity, "", body]` from connmgr (anything shorter is skipped).
async fn handle_router(sockets: &Link, msg: Multipart) {
    if msg.len() < 3 {
        return;
    }
    let packet = match format::decode::<Packet>(&msg[2]) {
        Ok(packet) => packet,
        Err(err) => {
            tracing::warn!(error = %err, "undecodable packet from connmgr dropped");
            return;
        }
    };
    for unknown in sockets.sessions.deliver(packet, true).await {
        if let Some(catch_all) = &sockets.catch_all {
            if catch_all.send(unknown).await.is_err() {
                return;
            }
            continue;
        }
        if matches!(unknown.kind(), PacketType::Cancel | PacketType::Error) {
            continue;
        }
        let (Some(from), Some(id)) = (unknown.from.as_deref(), unknown.single_id()) else {
            continue;
        };
        tracing::debug!(session = %id, "packet for unknown session: answering cancel");
        let cancel = Packet::new(PacketType::Cancel, &sockets.id, id, 0);
        let _ = sockets.send(from, &cancel).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Removes the test's socket directory, also when the test fails.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A restarted owner: connmgr asks about a session the moment our
    /// ROUTER connects, and subscribes to our XPUB only later. The
    /// `cancel` must reach it once it has subscribed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_packet_before_connmgr_subscribes_is_answered_after() {
        let dir = TempDir(std::env::temp_dir().join(format!("hf-link-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let base = format!("ipc://{}/zhttp", dir.0.display());
        let [_, stream_spec, in_spec] = stream_specs(&base).unwrap();
        let ctx = zmq::Context::new();
        let router = ctx.socket(zmq::ROUTER).unwrap();
        router.set_identity(b"cm").unwrap();
        router.set_rcvtimeo(10_000).unwrap();
        router.bind(&stream_spec).unwrap();

        let (link, mut inputs) =
            Link::start(&ctx, "owner", &base, Format::TNetString, false, None).unwrap();
        let token = CancellationToken::new();
        let ready = tokio::spawn(async move { inputs.wait_ready(link, token).await });

        let answer = tokio::task::spawn_blocking(move || {
            let probe = router.recv_multipart(0).unwrap();
            assert_eq!(probe, vec![b"owner".to_vec(), Vec::new()]);
            let ask = Packet::new(PacketType::KeepAlive, "cm", "held-1", 0);
            let frame = format::encode(&ask, Format::TNetString).unwrap();
            router
                .send_multipart([b"owner".to_vec(), Vec::new(), frame], 0)
                .unwrap();
            let sub = ctx.socket(zmq::SUB).unwrap();
            sub.set_subscribe(b"cm ").unwrap();
            sub.set_rcvtimeo(10_000).unwrap();
            sub.bind(&in_spec).unwrap();
            sub.recv_bytes(0)
        })
        .await
        .unwrap()
        .expect("the owner's answer within 10 s");
        assert!(ready.await.unwrap(), "link ready");
        let (to, body) = format::split_topic(&answer).unwrap();
        assert_eq!(to, b"cm");
        let cancel: Packet = format::decode(body).unwrap();
        assert_eq!(cancel.kind(), &PacketType::Cancel);
        assert_eq!(cancel.single_id(), Some("held-1"));
    }
}
