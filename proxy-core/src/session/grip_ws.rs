//! GRIP inside a WebSocket session (both WebSocket-over-HTTP and native
//! WebSocket origins that answer with `Sec-WebSocket-Extensions: grip`):
//! `c:` control messages from the origin become [`Control`]s for the
//! handler (subscribe, unsubscribe, set-meta), published `ws-message`
//! content comes back as [`Deliver`]s and goes to the client; every
//! keep-alive tick says the session is alive, and its end is reported.
//! `detach`, `session`, `keep-alive`, `send-delayed` and `flush-delayed`
//! are logged and skipped (not implemented yet), as are unknown types.

use super::Session;
use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::wscontrol::{Control, Deliver};
use holdfast_protocol::zhttp::PacketType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Deliveries that may wait for one session.
const DELIVERY_QUEUE: usize = 100;

/// Session id → where its deliveries go.
#[derive(Default)]
pub struct WsRoutes {
    // One shared copy per delivery: a delivery names every session it is
    // for, and cloning that list per session would cost n².
    routes: Mutex<HashMap<String, mpsc::Sender<Arc<Deliver>>>>,
}

impl WsRoutes {
    /// Hands a delivery to each of its sessions.
    pub fn dispatch(&self, deliver: Deliver) {
        let deliver = Arc::new(deliver);
        let Ok(routes) = self.routes.lock() else {
            return;
        };
        for id in &deliver.ids {
            tracing::debug!(session = %id, kind = %deliver.kind, known = routes.contains_key(id), "WebSocket delivery");
            if let Some(tx) = routes.get(id) {
                if tx.try_send(deliver.clone()).is_err() {
                    tracing::info!(session = %id, "WebSocket session too slow for publishes; message dropped");
                }
            }
        }
    }

    fn register(&self, id: &str) -> mpsc::Receiver<Arc<Deliver>> {
        let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(id.to_owned(), tx);
        }
        rx
    }

    fn unregister(&self, id: &str) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(id);
        }
    }
}

/// A session's GRIP state.
pub(super) struct GripWs {
    /// Prefix of origin messages meant for the client.
    pub prefix: String,
    /// The route's channel prefix.
    pub channel_prefix: String,
    /// Published content for this session.
    pub deliveries: mpsc::Receiver<Arc<Deliver>>,
}

/// `Sec-WebSocket-Extensions: grip[; message-prefix="..."]`: GRIP is on,
/// with this prefix (default `m:`).
pub(super) fn grip_prefix(headers: &http::HeaderMap) -> Option<String> {
    let value = headers
        .get_all("sec-websocket-extensions")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find(|e| e.split(';').next().is_some_and(|n| n.trim() == "grip"))?;
    let prefix = value
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim() == "message-prefix")
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    Some(prefix.unwrap_or_else(|| "m:".to_owned()))
}

/// The next delivery, or never without GRIP.
pub(super) async fn next_delivery(grip: &mut Option<GripWs>) -> Option<Arc<Deliver>> {
    match grip {
        Some(grip) => grip.deliveries.recv().await,
        None => std::future::pending().await,
    }
}

impl Session {
    /// Turns GRIP on for this session.
    pub(super) fn grip_start(&self, prefix: String, channel_prefix: String) -> GripWs {
        GripWs {
            prefix,
            channel_prefix,
            deliveries: self.shared.ws_routes.register(&self.id),
        }
    }

    /// Reports the session's end to the handler.
    pub(super) async fn grip_end(&self, grip: &Option<GripWs>) {
        if grip.is_some() {
            self.shared.ws_routes.unregister(&self.id);
            self.ws_control(Control {
                kind: "end".into(),
                ..Control::default()
            })
            .await;
        }
    }

    /// Tells the handler the session still exists.
    pub(super) async fn grip_alive(&self, grip: &Option<GripWs>) {
        if grip.is_some() {
            self.ws_control(Control {
                kind: "alive".into(),
                ..Control::default()
            })
            .await;
        }
    }

    async fn ws_control(&self, mut control: Control) {
        let Some(tx) = &self.shared.ws_control else {
            tracing::debug!(session = %self.id, "no handler for WebSocket control");
            return;
        };
        control.proxy = self.shared.sockets.id.clone();
        control.id = self.id.clone();
        match format::encode(&control, self.shared.sockets.format) {
            Ok(frame) => {
                if tx.send(vec![frame]).await.is_err() {
                    tracing::warn!(session = %self.id, "handler control socket closed");
                }
            }
            Err(err) => tracing::warn!(session = %self.id, error = %err, "control not encoded"),
        }
    }

    /// Handles a `c:` control message's JSON.
    pub(super) async fn grip_control(&self, grip: &GripWs, json: &[u8]) {
        let value: serde_json::Value = match serde_json::from_slice(json) {
            Ok(value) => value,
            Err(err) => {
                tracing::info!(session = %self.id, "invalid GRIP control message ignored: {err}");
                return;
            }
        };
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let kind = text("type").unwrap_or_default();
        let control = match kind.as_str() {
            "subscribe" | "unsubscribe" => {
                let Some(channel) = text("channel").filter(|c| !c.is_empty()) else {
                    tracing::info!(session = %self.id, "GRIP {kind} without a channel ignored");
                    return;
                };
                let filters = value
                    .get("filters")
                    .and_then(|f| f.as_array())
                    .map(|list| {
                        list.iter()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .take(5)
                            .collect()
                    })
                    .unwrap_or_default();
                Control {
                    kind,
                    channel: Some(format!("{}{channel}", grip.channel_prefix)),
                    filters,
                    ..Control::default()
                }
            }
            "set-meta" => {
                let Some(name) = text("name") else {
                    tracing::info!(session = %self.id, "GRIP set-meta without a name ignored");
                    return;
                };
                Control {
                    kind,
                    name: Some(name),
                    value: text("value"),
                    ..Control::default()
                }
            }
            other => {
                tracing::info!(session = %self.id, kind = other, "GRIP control message not supported; ignored");
                return;
            }
        };
        self.ws_control(control).await;
    }

    /// Acts on a delivery: a message for the client, a close, or a refresh
    /// (for WebSocket-over-HTTP: ask the origin now).
    pub(super) async fn grip_deliver(&mut self, deliver: Arc<Deliver>) -> Delivered {
        let (kind, content_type) = match deliver.kind.as_str() {
            "text" => (PacketType::Data, Some("text")),
            "binary" => (PacketType::Data, Some("binary")),
            "ping" => (PacketType::Ping, None),
            "pong" => (PacketType::Pong, None),
            "close" => (PacketType::Close, None),
            "refresh" => return Delivered::Refresh,
            _ => return Delivered::Sent,
        };
        let mut packet = self.packet(kind.clone());
        packet.content_type = content_type.map(str::to_owned);
        if kind == PacketType::Close {
            packet.code = Some(deliver.code.unwrap_or(1000));
        }
        self.credits = self.credits.saturating_sub(deliver.content.len());
        packet.body = Some(Bytes::clone(&deliver.content));
        self.send(packet).await;
        if kind == PacketType::Close {
            Delivered::Closed
        } else {
            Delivered::Sent
        }
    }
}

/// What a delivery did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Delivered {
    /// Sent to the client.
    Sent,
    /// Closed the client's connection.
    Closed,
    /// Asked for a request to the origin now.
    Refresh,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grip_extension_and_prefix() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grip_prefix(&h), None);
        h.insert(
            "sec-websocket-extensions",
            http::HeaderValue::from_static("grip"),
        );
        assert_eq!(grip_prefix(&h).as_deref(), Some("m:"));
        h.insert(
            "sec-websocket-extensions",
            http::HeaderValue::from_static("foo, grip; message-prefix=\"\""),
        );
        assert_eq!(grip_prefix(&h).as_deref(), Some(""));
    }
}
