//! WebSocket sessions: their proxies report subscriptions, and published
//! `ws-message` content goes back to the proxy that owns each session.

use super::*;

impl Engine {
    /// Sends deliveries to the proxies owning their sessions.
    pub(super) async fn send_ws(
        &self,
        deliveries: Vec<(String, holdfast_protocol::wscontrol::Deliver)>,
    ) {
        let Some(out) = &self.ws_out else { return };
        for (proxy, deliver) in deliveries {
            match format::encode(&deliver, self.link.format) {
                Ok(frame) => {
                    let topic = holdfast_protocol::wscontrol::topic(&proxy);
                    if out.send(vec![topic, frame]).await.is_err() {
                        tracing::warn!("WebSocket delivery socket closed");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "WebSocket delivery not encoded"),
            }
        }
    }

    /// A WebSocket session's subscription change, from its proxy.
    pub(super) async fn on_ws_control(&mut self, msg: &Multipart) {
        let Some(frame) = msg.first() else { return };
        let control = match format::decode::<holdfast_protocol::wscontrol::Control>(frame) {
            Ok(control) => control,
            Err(err) => {
                tracing::warn!(error = %err, "undecodable WebSocket control dropped");
                return;
            }
        };
        tracing::debug!(kind = %control.kind, session = %control.id, channel = ?control.channel, "WebSocket control");
        if control.kind == "hello" {
            // A proxy checking that our deliveries reach it: answer on its topic.
            let hello = holdfast_protocol::wscontrol::Deliver {
                kind: "hello".into(),
                ..Default::default()
            };
            if let (Some(out), Ok(frame)) = (&self.ws_out, format::encode(&hello, self.link.format))
            {
                let topic = holdfast_protocol::wscontrol::topic(&control.proxy);
                let _ = out.try_send(vec![topic, frame]);
            }
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

    /// A WebSocket session that subscribed with where it was gets what
    /// history holds after that (from the bus's stream when local history
    /// lacks it; what is published meanwhile waits behind).
    async fn ws_history(&mut self, key: &str, channel: &str) {
        if !self.history.enabled() {
            return;
        }
        let Some(after) = self.ws.prev_id(key, channel) else {
            return;
        };
        match self.history.since(channel, &after, Instant::now()) {
            crate::history::Since::Found(items) => self.ws_replay(key, items).await,
            crate::history::Since::Unknown if self.bus_history.is_some() => {
                self.ws.await_history(key, channel);
                self.lookups.push(crate::history::Lookup {
                    key: key.to_owned(),
                    channel: channel.to_owned(),
                    after,
                });
            }
            crate::history::Since::Unknown => {}
        }
    }

    /// Sends `items` to one WebSocket session, in order.
    pub(super) async fn ws_replay(&mut self, key: &str, items: Vec<Item>) {
        let keys = [key.to_owned()];
        for item in items {
            let deliveries = self.ws.deliveries(&item, &keys);
            self.count(|m| &m.history_replayed, deliveries.len());
            self.send_ws(deliveries).await;
        }
    }
}
