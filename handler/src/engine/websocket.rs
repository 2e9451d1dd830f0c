//! WebSocket sessions: their proxies report subscriptions (and check that
//! deliveries reach them); published `ws-message` content goes back to the
//! proxy that owns each session.

use super::Engine;
use holdfast_protocol::format;
use holdfast_protocol::wscontrol::Control;
use holdfast_protocol::zmq::Multipart;
use tokio::time::Instant;

impl Engine {
    /// A WebSocket session's subscription change, from its proxy.
    pub(super) async fn on_ws_control(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        let control = match format::decode::<Control>(frame) {
            Ok(control) => control,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable WebSocket control dropped");
                return;
            }
        };
        tracing::debug!(kind = %control.kind, session = %control.id, channel = ?control.channel, "WebSocket control");
        if control.kind == "hello" {
            // A proxy checking that our deliveries reach it: answer on its topic.
            self.out.ws_hello(&control.proxy);
            return;
        }
        if let (Some(sid), Some(Ok(mut store))) = (
            control.sid.as_deref().filter(|_| control.kind == "session"),
            self.client_sessions.as_ref().map(|s| s.lock()),
        ) {
            store.create_or_update(sid, &[]);
        }
        let change = self.ws.apply(control, Instant::now());
        for channel in &change.subscribed {
            self.subscribe_channel(&change.key, channel);
        }
        for channel in &change.unsubscribed {
            self.unsubscribe_channel(&change.key, channel);
        }
        for channel in &change.subscribed {
            self.ws_history(&change.key, channel).await;
        }
    }
}
