//! The per-socket actor task.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// One ZeroMQ message: its frames in order.
pub type Multipart = Vec<Vec<u8>>;

/// Messages moved per wake-up before the actor yields to other tasks; 64
/// keeps a busy socket from starving the runtime while amortising the cost of
/// reading `ZMQ_EVENTS` over many messages.
pub const BUDGET: usize = 64;

/// Capacity of the channels between an actor and its users: deep enough to
/// absorb a burst of one [`BUDGET`] without blocking either side.
pub const CHANNEL_CAPACITY: usize = 256;

/// High-water mark of every socket made with [`new_socket`] unless the
/// caller sets its own: libzmq's default (1,000) drops PUB/ROUTER messages
/// silently when a burst exceeds it, and a burst of one packet per held
/// session (credits after a fan-out to 10,000 clients) does. Pushpin's
/// components use 101,000.
pub const HWM: i32 = 101_000;

/// How long closing a socket may wait to deliver what is still queued. libzmq
/// waits forever by default, which hangs process exit when the peer is gone
/// (a dead connmgr never takes its keep-alives); one second lets a clean
/// shutdown flush its last packets.
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// A new socket with Holdfast's defaults ([`HWM`] both ways, [`LINGER`]).
/// High-water marks apply to connections made after they are set, so set
/// them here, before any bind or connect.
pub fn new_socket(ctx: &zmq::Context, kind: zmq::SocketType) -> Result<zmq::Socket, zmq::Error> {
    let socket = ctx.socket(kind)?;
    socket.set_sndhwm(HWM)?;
    socket.set_rcvhwm(HWM)?;
    socket.set_linger(LINGER.as_millis() as i32)?;
    Ok(socket)
}

/// The two ends a socket's users hold.
#[derive(Debug)]
pub struct SocketHandle {
    /// Messages to send. Dropping every clone stops sending.
    pub tx: mpsc::Sender<Multipart>,
    /// Messages received. Dropping it stops receiving.
    pub rx: mpsc::Receiver<Multipart>,
}

/// `ZMQ_FD` is owned by libzmq: this wrapper only lends it to the reactor and
/// never closes it.
struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Moves `socket` into its own actor task; see the module docs.
///
/// Must be called inside a tokio runtime. The actor ends when both the
/// outbound senders and the inbound receiver are dropped, closing the socket.
pub fn spawn(socket: zmq::Socket, name: &'static str) -> io::Result<SocketHandle> {
    socket
        .set_linger(LINGER.as_millis() as i32)
        .map_err(io::Error::from)?;

    let raw = socket.get_fd().map_err(io::Error::from)?;
    // The safe constructor is deprecated because it cannot prove the fd
    // outlives the registration; `Actor` guarantees it by dropping `fd`
    // (deregistering) before `socket` (which closes the fd).
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(ZmqFd(raw), Interest::READABLE)?;
    let (out_tx, out_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let actor = Actor { fd, socket };
    tokio::spawn(async move {
        if let Err(err) = actor.run(out_rx, in_tx).await {
            tracing::error!(socket = name, error = %err, "zmq socket failed");
        }
    });
    Ok(SocketHandle {
        tx: out_tx,
        rx: in_rx,
    })
}

/// A PUSH socket connected to every spec in `specs`, in its own actor:
/// where the messages sent to the returned sender go (metrics reports,
/// hand-overs, control messages, each to one of the handler's PULLs).
pub fn connect_push(
    ctx: &zmq::Context,
    specs: &str,
    name: &'static str,
) -> io::Result<mpsc::Sender<Multipart>> {
    let push = new_socket(ctx, zmq::PUSH).map_err(io::Error::from)?;
    super::apply_specs(&push, specs, false).map_err(io::Error::other)?;
    Ok(spawn(push, name)?.tx)
}

/// Field order matters: `fd` is dropped (deregistered) before `socket`.
struct Actor {
    fd: AsyncFd<ZmqFd>,
    socket: zmq::Socket,
}

impl Actor {
    async fn run(
        self,
        mut outbound: mpsc::Receiver<Multipart>,
        inbound: mpsc::Sender<Multipart>,
    ) -> Result<(), zmq::Error> {
        let mut pending: Option<Multipart> = None;
        let mut out_open = true;
        loop {
            let mut moved = 0;
            let mut inbound_full = false;
            while moved < BUDGET {
                let events = self.socket.get_events()?;
                let mut progressed = false;
                if pending.is_none() && out_open {
                    match outbound.try_recv() {
                        Ok(msg) => pending = Some(msg),
                        Err(TryRecvError::Empty) => {}
                        Err(TryRecvError::Disconnected) => out_open = false,
                    }
                }
                if events.contains(zmq::POLLOUT) {
                    if let Some(msg) = pending.take() {
                        match self.socket.send_multipart(&msg, zmq::DONTWAIT) {
                            Ok(()) => progressed = true,
                            Err(zmq::Error::EAGAIN) => pending = Some(msg),
                            Err(err) => return Err(err),
                        }
                    }
                }
                if events.contains(zmq::POLLIN) && !inbound.is_closed() {
                    match inbound.try_reserve() {
                        Ok(permit) => match self.socket.recv_multipart(zmq::DONTWAIT) {
                            Ok(msg) => {
                                permit.send(msg);
                                progressed = true;
                            }
                            Err(zmq::Error::EAGAIN) => {}
                            Err(err) => return Err(err),
                        },
                        Err(TrySendError::Full(())) => inbound_full = true,
                        Err(TrySendError::Closed(())) => {}
                    }
                }
                if !progressed {
                    break;
                }
                moved += 1;
            }
            if moved == BUDGET {
                tokio::task::yield_now().await;
                continue;
            }
            if !out_open && pending.is_none() && inbound.is_closed() {
                return Ok(());
            }
            tokio::select! {
                guard = self.fd.readable() => {
                    if let Ok(mut guard) = guard {
                        // ZMQ_FD is edge-triggered: forget this edge, then the
                        // loop above re-reads ZMQ_EVENTS before sleeping again.
                        guard.clear_ready();
                    }
                }
                msg = outbound.recv(), if pending.is_none() && out_open => match msg {
                    Some(msg) => pending = Some(msg),
                    None => out_open = false,
                },
                _ = inbound.reserve(), if inbound_full => {}
            }
        }
    }
}
