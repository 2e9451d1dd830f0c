//! Where the handler's deliveries for WebSocket sessions with GRIP go: a
//! bounded queue per session, by session id.

use holdfast_protocol::wscontrol::Deliver;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Deliveries that may wait for one session (while the client takes
/// what it was sent). A session that falls further behind is closed, as
/// Pushpin closes a stream whose client cannot keep up: its queue is never
/// cut short while it stays open.
const DELIVERY_QUEUE: usize = 100;

/// Session id → where its deliveries go.
#[derive(Default)]
pub struct WsRoutes {
    // One shared copy per delivery: a delivery names every session it is
    // for, and cloning that list per session would cost n². The lock is
    // never held across an await.
    routes: Mutex<HashMap<String, mpsc::Sender<Arc<Deliver>>>>,
}

impl WsRoutes {
    /// Hands a delivery to each of its sessions. A session whose queue is
    /// full loses its route: it gets what is queued, then sees the end of
    /// its deliveries and closes (see [`DELIVERY_QUEUE`]).
    pub fn dispatch(&self, deliver: Deliver) {
        let deliver = Arc::new(deliver);
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        for id in &deliver.ids {
            tracing::debug!(session = %id, kind = %deliver.kind, known = routes.contains_key(id), "WebSocket delivery");
            let Some(tx) = routes.get(id) else { continue };
            if tx.try_send(deliver.clone()).is_err() {
                tracing::info!(session = %id, queued = DELIVERY_QUEUE, "WebSocket client too slow for its publishes: closing it");
                routes.remove(id);
            }
        }
    }

    /// The deliveries for session `id`, from now on.
    pub(crate) fn register(&self, id: &str) -> mpsc::Receiver<Arc<Deliver>> {
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(id.to_owned(), tx);
        }
        rx
    }

    /// Session `id` gets no more deliveries.
    pub(crate) fn unregister(&self, id: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(id);
        }
    }
}
