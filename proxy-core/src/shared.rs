//! What every session of the proxy shares: the sockets toward connmgr and
//! the handler, the routes, the origin client and signing, the edge cache,
//! the registries of WebSocket and SockJS sessions, and the metrics.

use crate::cache::store::Cache;
use crate::inspect::Inspector;
use crate::metrics::Metrics;
use crate::origin::headers::ForwardRules;
use crate::routes::RouteTable;
use crate::session::sockjs::registry::Registry as SockJsSessions;
use crate::session::ws::routes::WsRoutes;
use holdfast_grip::client::OriginClient;
use holdfast_grip::sign::{Signer, Verifier};
use holdfast_protocol::zmq::link::Link as Sockets;
use holdfast_protocol::zmq::Multipart;
use std::sync::{Arc, RwLock};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// State shared by every session.
pub struct Shared {
    /// Sockets toward connmgr.
    pub sockets: Arc<Sockets>,
    /// Our id, the `from` of every packet (shared by every session).
    pub from: Arc<str>,
    /// Largest WebSocket message taken from an origin.
    pub max_message_size: usize,
    /// Current routes; replaced whole on reload. The lock is held only to
    /// clone the `Arc`.
    pub routes: RwLock<Arc<RouteTable>>,
    /// Pooled origin client.
    pub client: OriginClient,
    /// X-Forwarded-* policy.
    pub rules: ForwardRules,
    /// Default signer (`sig_iss`, `sig_key`).
    pub signer: Signer,
    /// Verifier for trusted upstream clients (`upstream_key`).
    pub upstream: Option<Verifier>,
    /// Detailed error bodies.
    pub debug: bool,
    /// `aco` on every route.
    pub auto_cross_origin: bool,
    /// The edge cache, for routes with `cache`.
    pub cache: Arc<Cache>,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// Session tasks.
    pub tracker: TaskTracker,
    /// Where held sessions go (the handler's accept socket), if anywhere.
    pub handler: Option<mpsc::Sender<Multipart>>,
    /// Where WebSocket sessions' GRIP control goes (the handler), if anywhere.
    pub ws_control: Option<mpsc::Sender<Multipart>>,
    /// WebSocket sessions with GRIP, for the handler's deliveries.
    pub ws_routes: WsRoutes,
    /// Asks the handler for requests' client sessions (`session` routes).
    pub inspector: Option<Inspector>,
    /// Live SockJS sessions (routes with `sockjs`).
    pub sockjs: SockJsSessions,
    /// The SockJS client library the iframe page loads.
    pub sockjs_url: String,
}

impl Shared {
    /// The routes as they are now.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Replaces the routes (a reload).
    pub fn set_routes(&self, table: RouteTable) {
        if let Ok(mut current) = self.routes.write() {
            *current = Arc::new(table);
        }
    }
}
