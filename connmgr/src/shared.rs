//! What every connection and session of connmgr shares: the sockets toward
//! the proxies and the handler, the settings, the task tracker, metrics,
//! and how a session's packets go out (numbered by its
//! [`Endpoint`] as they leave).

use crate::config::Config;
use crate::sockets::{SendError, Sockets};
use holdfast_protocol::zhttp::{Endpoint, Packet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// State every connection shares.
pub struct Shared {
    /// Sockets toward the proxies.
    pub sockets: Arc<Sockets>,
    /// Our id, the `from` of every packet (shared by every session).
    pub from: Arc<str>,
    /// Settings.
    pub config: Arc<Config>,
    /// Session tasks, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Counters and gauges.
    pub metrics: crate::metrics::Metrics,
    next_id: AtomicU64,
}

impl Shared {
    /// Shared state over started sockets.
    pub fn new(sockets: Arc<Sockets>, config: Arc<Config>, tracker: TaskTracker) -> Shared {
        Shared {
            from: Arc::from(sockets.id.as_str()),
            sockets,
            config: config.clone(),
            tracker,
            metrics: crate::metrics::Metrics::new(&config.id),
            next_id: AtomicU64::new(0),
        }
    }

    /// A session id unique within this instance, in Pushpin's
    /// `<worker>-<slot>-<counter>` shape.
    pub fn new_id(&self) -> String {
        format!("0-0-{:x}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Sends a packet of a session to its peer, numbered now; nothing
    /// when the endpoint has nobody to send it to (not yet, or paused).
    ///
    /// The future is boxed (as is [`Shared::send_first`]'s): it holds a
    /// packet while the socket is busy, and a session task awaiting it
    /// inline would carry that space for as long as the session is held.
    pub fn send<'a>(
        &'a self,
        endpoint: &'a mut Endpoint,
        mut packet: Packet,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Some(peer) = endpoint.stamp(&mut packet, Instant::now()) else {
                return;
            };
            if let Err(err) = self.sockets.send_to(peer.as_bytes(), &packet).await {
                tracing::debug!(session = %endpoint.id(), error = %err, "packet to the owner not sent");
            }
        })
    }

    /// Sends a session's first packet (to whichever proxy takes it).
    pub fn send_first<'a>(
        &'a self,
        endpoint: &'a mut Endpoint,
        mut packet: Packet,
    ) -> Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>> {
        Box::pin(async move {
            endpoint.stamp_first(&mut packet, Instant::now());
            self.sockets.send_first(&packet).await
        })
    }
}
