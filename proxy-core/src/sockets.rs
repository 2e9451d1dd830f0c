//! The proxy's side of the ZHTTP link with connmgr:
//!
//! - PULL (connect `BASE-out`): first packets of new requests.
//! - ROUTER (connect `BASE-out-stream`, identity = our id): later packets.
//! - XPUB (connect `BASE-in`): our packets, framed `"<connmgr-id> T..."`.
//!
//! PUB/SUB drops messages sent before the subscriber's subscription arrives,
//! and ROUTER drops messages for a peer not yet connected, so the proxy takes
//! no request until both links are up: XPUB reports connmgr's subscription,
//! and connmgr's ROUTER probes us when our connection is accepted.

use holdfast_protocol::format;
use holdfast_protocol::zhttp::{Packet, PacketType};
use holdfast_protocol::zmq::{apply_specs, spawn, stream_specs, Multipart, SessionTable};
use holdfast_protocol::Format;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Shared handle to the sockets and the session table.
pub struct Sockets {
    /// Our instance id.
    pub id: String,
    /// Encoding of packets we send.
    pub format: Format,
    publish: mpsc::Sender<Multipart>,
    sessions: SessionTable,
}

/// The socket ends the request loop reads.
pub struct Inputs {
    /// First packets of new requests.
    pub requests: mpsc::Receiver<Multipart>,
    router: mpsc::Receiver<Multipart>,
    xpub: mpsc::Receiver<Multipart>,
}

impl Sockets {
    /// Connects the three sockets to connmgr's spec base.
    pub fn start(
        ctx: &zmq::Context,
        id: &str,
        base: &str,
        format: Format,
    ) -> anyhow::Result<(Arc<Sockets>, Inputs)> {
        let [out_spec, stream_spec, in_spec] = stream_specs(base).map_err(anyhow::Error::msg)?;
        let pull = ctx.socket(zmq::PULL)?;
        apply_specs(&pull, &out_spec, false)?;
        let router = ctx.socket(zmq::ROUTER)?;
        router.set_identity(id.as_bytes())?;
        apply_specs(&router, &stream_spec, false)?;
        let xpub = ctx.socket(zmq::XPUB)?;
        apply_specs(&xpub, &in_spec, false)?;

        let pull = spawn(pull, "proxy-in")?;
        let router = spawn(router, "proxy-in-stream")?;
        let xpub = spawn(xpub, "proxy-out")?;
        drop(router.tx);
        let sockets = Arc::new(Sockets {
            id: id.to_owned(),
            format,
            publish: xpub.tx,
            sessions: SessionTable::default(),
        });
        Ok((
            sockets,
            Inputs {
                requests: pull.rx,
                router: router.rx,
                xpub: xpub.rx,
            },
        ))
    }

    /// The table routing packets to session tasks (keyed by connmgr + id).
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
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
    /// Waits until connmgr has subscribed to our XPUB and probed our ROUTER,
    /// then keeps both links serviced in the background: later packets are
    /// delivered to sessions, further subscription messages are discarded.
    pub async fn wait_ready(&mut self, sockets: Arc<Sockets>, token: CancellationToken) -> bool {
        let (mut subscribed, mut probed) = (false, false);
        while !(subscribed && probed) {
            tokio::select! {
                msg = self.xpub.recv() => match msg {
                    Some(msg) => subscribed |= msg.first().is_some_and(|f| f.first() == Some(&1)),
                    None => return false,
                },
                msg = self.router.recv() => match msg {
                    Some(msg) => {
                        probed = true;
                        handle_router(&sockets, msg).await;
                    }
                    None => return false,
                },
                _ = token.cancelled() => return false,
            }
        }
        let mut router = std::mem::replace(&mut self.router, mpsc::channel(1).1);
        let mut xpub = std::mem::replace(&mut self.xpub, mpsc::channel(1).1);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = router.recv() => match msg {
                        Some(msg) => handle_router(&sockets, msg).await,
                        None => return,
                    },
                    // Subscription changes (connmgr restarts) need no action.
                    msg = xpub.recv() => if msg.is_none() { return },
                    _ = token.cancelled() => return,
                }
            }
        });
        true
    }
}

/// `[identity, "", body]` from connmgr; two frames are a probe.
async fn handle_router(sockets: &Sockets, msg: Multipart) {
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
    for unknown in sockets.sessions.deliver(packet, true) {
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
