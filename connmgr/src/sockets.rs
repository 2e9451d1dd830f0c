//! The three ZeroMQ sockets toward the proxy and the table that routes each
//! incoming packet to its session's task.
//!
//! - PUSH (bind `BASE-out`): first packet of every new request; ZeroMQ
//!   spreads them over the connected proxies.
//! - ROUTER (bind `BASE-out-stream`): later packets, addressed to the proxy
//!   that owns the session (its `from`).
//! - SUB (bind `BASE-in`, subscribed to `"<id> "`): packets from proxies.

use holdfast_protocol::format::{self, split_topic};
use holdfast_protocol::zhttp::{Packet, PacketType};
use holdfast_protocol::zmq::{apply_specs, spawn, stream_specs, Multipart, SessionTable};
use holdfast_protocol::Format;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Shared handle to the sockets and the session table.
pub struct Sockets {
    /// Our instance id (`from` of every packet we send).
    pub id: String,
    /// Encoding of packets we send.
    pub format: Format,
    push: mpsc::Sender<Multipart>,
    router: mpsc::Sender<Multipart>,
    /// Session id → the task that owns it.
    sessions: SessionTable,
    /// Identities of peers that just connected (their ROUTER's probe).
    reconnected: broadcast::Sender<Vec<u8>>,
}

/// Why a packet could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The packet could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] format::EncodeError),
    /// The socket's task is gone (shutting down).
    #[error("socket closed")]
    Closed,
}

impl Sockets {
    /// Binds the sockets and starts the tasks that read them.
    pub fn start(
        ctx: &zmq::Context,
        id: &str,
        base: &str,
        format: Format,
    ) -> anyhow::Result<Arc<Sockets>> {
        let [out_spec, stream_spec, in_spec] = stream_specs(base).map_err(anyhow::Error::msg)?;

        let push = holdfast_protocol::zmq::new_socket(ctx, zmq::PUSH)?;
        // Requests wait here while no proxy is connected; 128 like Pushpin.
        push.set_sndhwm(128)?;
        apply_specs(&push, &out_spec, true)?;

        let router = holdfast_protocol::zmq::new_socket(ctx, zmq::ROUTER)?;
        router.set_identity(id.as_bytes())?;
        // No probe of ours: owners watch their own handshake, and Pushpin's
        // proxy and handler would log a two-frame message as malformed.
        // A restarted peer connects with its predecessor's identity: hand
        // the identity over (the default refuses the newcomer while the old
        // connection is not yet seen closed).
        router.set_router_handover(true)?;
        apply_specs(&router, &stream_spec, true)?;

        let sub = holdfast_protocol::zmq::new_socket(ctx, zmq::SUB)?;
        sub.set_subscribe(format!("{id} ").as_bytes())?;
        apply_specs(&sub, &in_spec, true)?;

        let push = spawn(push, "connmgr-out")?;
        let router = spawn(router, "connmgr-out-stream")?;
        let sub = spawn(sub, "connmgr-in")?;
        drop(push.rx);
        drop(sub.tx);

        let sockets = Arc::new(Sockets {
            id: id.to_owned(),
            format,
            push: push.tx,
            router: router.tx,
            sessions: SessionTable::default(),
            reconnected: broadcast::channel(16).0,
        });
        tokio::spawn(read_packets(sockets.clone(), sub.rx, sub_body));
        tokio::spawn(read_packets(sockets.clone(), router.rx, router_body));
        Ok(sockets)
    }

    /// The table routing packets to session tasks.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Sends the first packet of a session (to any proxy).
    pub async fn send_first(&self, packet: &Packet) -> Result<(), SendError> {
        let frame = format::encode(packet, self.format)?;
        self.push
            .send(vec![frame])
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Sends a later packet to the proxy whose identity is `to`.
    pub async fn send_to(&self, to: &[u8], packet: &Packet) -> Result<(), SendError> {
        let frame = format::encode(packet, self.format)?;
        self.router
            .send(vec![to.to_vec(), Vec::new(), frame])
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Peers connecting from now on (identities). A restarted handler or
    /// proxy keeps its identity but not its sessions: a session owned by
    /// that identity sends a keep-alive at once, which a new process
    /// answers with `cancel` (unknown session), ending it now instead of at
    /// the 60 s expiry; a peer that only reconnected knows its sessions.
    pub fn reconnects(&self) -> broadcast::Receiver<Vec<u8>> {
        self.reconnected.subscribe()
    }

    /// Hands a decoded packet to its session(s); answers `cancel` for ids we
    /// do not know, so the peer stops sending.
    async fn dispatch(&self, packet: Packet) {
        for unknown in self.sessions.deliver(packet, false).await {
            let Some(id) = unknown.single_id() else {
                continue;
            };
            self.cancel_unknown(id, &unknown).await;
        }
    }

    async fn cancel_unknown(&self, id: &str, packet: &Packet) {
        if matches!(packet.kind(), PacketType::Cancel | PacketType::Error) {
            return;
        }
        let Some(from) = packet.from.as_deref() else {
            return;
        };
        tracing::debug!(session = %id, "packet for unknown session: answering cancel");
        let cancel = Packet::new(PacketType::Cancel, &self.id, id, 0);
        let _ = self.send_to(from.as_bytes(), &cancel).await;
    }
}

fn decode(frame: &[u8]) -> Option<Packet> {
    match format::decode::<Packet>(frame) {
        Ok(packet) => Some(packet),
        Err(err) => {
            tracing::warn!(error = %err, "undecodable packet from proxy dropped");
            None
        }
    }
}

/// Reads one socket's messages for the life of the process (after SIGTERM
/// too: draining sessions still get their last packets, such as the
/// handler's clean end of a held stream); `body` picks the packet frame out
/// of a message (`None` skips it).
async fn read_packets(
    sockets: Arc<Sockets>,
    mut rx: mpsc::Receiver<Multipart>,
    body: fn(&Multipart) -> Option<&[u8]>,
) {
    while let Some(msg) = rx.recv().await {
        if let [identity, probe] = msg.as_slice() {
            if probe.is_empty() {
                tracing::debug!(peer = %String::from_utf8_lossy(identity), "peer connected");
                let _ = sockets.reconnected.send(identity.clone());
                continue;
            }
        }
        if let Some(packet) = body(&msg).and_then(decode) {
            sockets.dispatch(packet).await;
        }
    }
}

/// SUB: `"<our id> <tagged packet>"`.
fn sub_body(msg: &Multipart) -> Option<&[u8]> {
    let frame = msg.first()?;
    match split_topic(frame) {
        Some((_, body)) => Some(body),
        None => {
            tracing::warn!("packet without recipient prefix dropped");
            None
        }
    }
}

/// ROUTER (proxies may also answer there, `router-resp`): `[identity, "",
/// packet]`; a two-frame message is a peer's probe.
fn router_body(msg: &Multipart) -> Option<&[u8]> {
    msg.get(2).map(Vec::as_slice)
}
