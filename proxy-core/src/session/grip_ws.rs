//! GRIP inside a WebSocket session (both WebSocket-over-HTTP and native
//! WebSocket origins that answer with `Sec-WebSocket-Extensions: grip`):
//! `c:` control messages from the origin become [`Control`]s for the
//! handler (subscribe, unsubscribe, set-meta), published `ws-message`
//! content comes back as [`Deliver`]s and goes to the client; every
//! keep-alive tick says the session is alive, and its end is reported.
//! `keep-alive`, `send-delayed` and `flush-delayed` are the session's own
//! timers ([`GripWs::deadline`], [`Session::grip_tick`]); `detach` is
//! returned to the transport, which closes the origin side. `session`
//! names the client session (Pushpin's session feature) whose last ids the
//! handler keeps. Unknown types are logged and skipped, as Pushpin does.

use super::Session;
use base64::Engine;
use bytes::Bytes;
use holdfast_protocol::format;
use holdfast_protocol::wscontrol::{Control, Deliver};
use holdfast_protocol::zhttp::PacketType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Deliveries that may wait for one session (while the client takes
/// what it was sent). A session that falls further behind is closed, as
/// Pushpin closes a stream whose client cannot keep up: its queue is never
/// cut short while it stays open.
const DELIVERY_QUEUE: usize = 100;

/// Session id → where its deliveries go.
#[derive(Default)]
pub struct WsRoutes {
    // One shared copy per delivery: a delivery names every session it is
    // for, and cloning that list per session would cost n².
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
    /// The origin's `keep-alive` message, if it set one.
    keep_alive: Option<KeepAlive>,
    /// The origin's `send-delayed` message and when it goes.
    delayed: Option<(Outgoing, Instant)>,
}

/// A message the origin left with the proxy to send later.
#[derive(Debug, Clone, PartialEq)]
struct Outgoing {
    kind: PacketType,
    text: bool,
    content: Bytes,
}

/// A repeated message: after `period` of silence toward the client
/// (`idle` mode) or every `period` (`interval` mode).
#[derive(Debug)]
struct KeepAlive {
    message: Outgoing,
    period: Duration,
    interval: bool,
    next: Instant,
}

impl GripWs {
    /// When [`Session::grip_tick`] has something to send.
    pub fn deadline(grip: &Option<GripWs>) -> Option<Instant> {
        let grip = grip.as_ref()?;
        let keep_alive = grip.keep_alive.as_ref().map(|k| k.next);
        let delayed = grip.delayed.as_ref().map(|(_, at)| *at);
        keep_alive.into_iter().chain(delayed).min()
    }

    /// Something went to the client: an idle keep-alive starts over.
    pub fn sent(grip: &mut Option<GripWs>) {
        if let Some(k) = grip.as_mut().and_then(|g| g.keep_alive.as_mut()) {
            if !k.interval {
                k.next = Instant::now() + k.period;
            }
        }
    }
}

/// What a control message asks of the transport.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Controlled {
    /// Nothing: done here (or ignored).
    Done,
    /// `detach`: close the origin side, keep the client.
    Detach,
}

/// What becomes of a message from the origin.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FromOrigin {
    /// Goes to the client as this.
    Forward(Bytes),
    /// Handled here, or dropped.
    Skip,
    /// `detach`: close the origin side, keep the client.
    Detach,
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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

/// The next delivery (`None`: the session fell too far behind and must
/// close), or never without GRIP.
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
            deliveries: self.shared.ws_routes.register(self.endpoint.id()),
            keep_alive: None,
            delayed: None,
        }
    }

    /// Reports the session's end to the handler.
    pub(super) async fn grip_end(&self, grip: &Option<GripWs>) {
        if grip.is_some() {
            self.shared.ws_routes.unregister(self.endpoint.id());
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
            tracing::debug!(session = %self.endpoint.id(), "no handler for WebSocket control");
            return;
        };
        control.proxy = self.shared.sockets.id.clone();
        control.id = self.endpoint.id().to_owned();
        match format::encode(&control, self.shared.sockets.format) {
            Ok(frame) => {
                if tx.send(vec![frame]).await.is_err() {
                    tracing::warn!(session = %self.endpoint.id(), "handler control socket closed");
                }
            }
            Err(err) => {
                tracing::warn!(session = %self.endpoint.id(), error = %err, "control not encoded")
            }
        }
    }

    /// Handles a `c:` control message's JSON.
    async fn grip_control(&mut self, grip: &mut Option<GripWs>, json: &[u8]) -> Controlled {
        let Some(state) = grip.as_mut() else {
            return Controlled::Done;
        };
        let value: serde_json::Value = match serde_json::from_slice::<serde_json::Value>(json) {
            Ok(value) if value.is_object() => value,
            Ok(_) => {
                tracing::info!(session = %self.endpoint.id(), "GRIP control message that is not a JSON object ignored");
                return Controlled::Done;
            }
            Err(err) => {
                tracing::info!(session = %self.endpoint.id(), "invalid GRIP control message ignored: {err}");
                return Controlled::Done;
            }
        };
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let kind = text("type").unwrap_or_default();
        let control = match kind.as_str() {
            "subscribe" | "unsubscribe" => {
                let Some(channel) = text("channel").filter(|c| !c.is_empty()) else {
                    tracing::info!(session = %self.endpoint.id(), "GRIP {kind} without a channel ignored");
                    return Controlled::Done;
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
                // Holdfast addition: where the client was, for history.
                let prev_id = text("prev-id").filter(|id| !id.is_empty() && kind == "subscribe");
                Control {
                    kind,
                    channel: Some(format!("{}{channel}", state.channel_prefix)),
                    filters,
                    prev_id,
                    ..Control::default()
                }
            }
            "set-meta" => {
                let Some(name) = text("name") else {
                    tracing::info!(session = %self.endpoint.id(), "GRIP set-meta without a name ignored");
                    return Controlled::Done;
                };
                Control {
                    kind,
                    name: Some(name),
                    value: text("value"),
                    ..Control::default()
                }
            }
            "keep-alive" => {
                state.keep_alive = outgoing(&value).map(|message| {
                    let period = timeout_of(&value, 55);
                    KeepAlive {
                        message,
                        period,
                        interval: text("mode").as_deref() == Some("interval"),
                        next: Instant::now() + period,
                    }
                });
                tracing::debug!(session = %self.endpoint.id(), on = state.keep_alive.is_some(), "GRIP keep-alive set");
                return Controlled::Done;
            }
            "send-delayed" => {
                let Some(message) = outgoing(&value) else {
                    tracing::info!(session = %self.endpoint.id(), "GRIP send-delayed without content ignored");
                    return Controlled::Done;
                };
                let at = Instant::now() + timeout_of(&value, 1);
                // A replaced message goes out first.
                if let Some((previous, _)) = state.delayed.replace((message, at)) {
                    self.grip_send(grip, &previous);
                }
                return Controlled::Done;
            }
            "flush-delayed" => {
                if let Some((message, _)) = state.delayed.take() {
                    self.grip_send(grip, &message);
                }
                return Controlled::Done;
            }
            "session" => {
                // No id (or an empty one) clears the session; a non-string
                // id makes the message invalid, as in Pushpin.
                let sid = match value.get("id") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(id)) => {
                        Some(id.clone()).filter(|id| !id.is_empty())
                    }
                    Some(_) => {
                        tracing::info!(session = %self.endpoint.id(), "GRIP session with a non-string id ignored");
                        return Controlled::Done;
                    }
                };
                Control {
                    kind,
                    sid,
                    ..Control::default()
                }
            }
            "detach" => return Controlled::Detach,
            other => {
                tracing::info!(session = %self.endpoint.id(), kind = other, "GRIP control message not supported; ignored");
                return Controlled::Done;
            }
        };
        self.ws_control(control).await;
        Controlled::Done
    }

    /// A text or binary message from the origin: unchanged without GRIP;
    /// with GRIP, `c:` control is handled here, the message prefix removed,
    /// and messages without it dropped.
    pub(super) async fn grip_origin_message(
        &mut self,
        grip: &mut Option<GripWs>,
        content: Bytes,
        text: bool,
    ) -> FromOrigin {
        let Some(state) = grip.as_ref() else {
            return FromOrigin::Forward(content);
        };
        if text && content.starts_with(b"c:") {
            return match self.grip_control(grip, &content[2..]).await {
                Controlled::Detach => FromOrigin::Detach,
                Controlled::Done => FromOrigin::Skip,
            };
        }
        if !content.starts_with(state.prefix.as_bytes()) {
            tracing::debug!(session = %self.endpoint.id(), "origin message without the GRIP message prefix dropped");
            return FromOrigin::Skip;
        }
        let content = content.slice(state.prefix.len()..);
        GripWs::sent(grip);
        FromOrigin::Forward(content)
    }

    /// Sends what the session's timers hold once due.
    pub(super) fn grip_tick(&mut self, grip: &mut Option<GripWs>) {
        let now = Instant::now();
        let Some(state) = grip.as_mut() else { return };
        let delayed = match &state.delayed {
            Some((_, at)) if *at <= now => state.delayed.take().map(|(m, _)| m),
            _ => None,
        };
        let keep_alive = match state.keep_alive.as_mut() {
            Some(k) if k.next <= now => {
                k.next = if k.interval {
                    k.next + k.period
                } else {
                    now + k.period
                }
                .max(now);
                Some(k.message.clone())
            }
            _ => None,
        };
        for message in delayed.iter().chain(keep_alive.iter()) {
            self.grip_send(grip, message);
        }
    }

    /// Queues a message of the origin's for the client.
    fn grip_send(&mut self, grip: &mut Option<GripWs>, message: &Outgoing) {
        let mut packet = self.packet(message.kind.clone());
        if message.kind == PacketType::Data {
            packet.content_type = Some(if message.text { "text" } else { "binary" }.into());
        }
        packet.body = Some(message.content.clone());
        self.queue_for_client(packet);
        GripWs::sent(grip);
    }

    /// Acts on a delivery: a message for the client (queued within
    /// connmgr's credits), a close, or a refresh (for
    /// WebSocket-over-HTTP: ask the origin now).
    pub(super) fn grip_deliver(&mut self, deliver: Arc<Deliver>) -> Delivered {
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
        packet.body = Some(Bytes::clone(&deliver.content));
        self.queue_for_client(packet);
        if kind == PacketType::Close {
            Delivered::Closed
        } else {
            Delivered::Sent
        }
    }
}

/// The message of a `keep-alive` or `send-delayed` control message: `content`
/// (text) or `content-bin` (base64), as `message-type` says (text unless
/// given, even for `content-bin`, as in Pushpin); none without content.
fn outgoing(value: &serde_json::Value) -> Option<Outgoing> {
    let content = match (value.get("content"), value.get("content-bin")) {
        (Some(serde_json::Value::String(text)), _) => Bytes::from(text.clone()),
        (_, Some(serde_json::Value::String(b64))) => {
            Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64).ok()?)
        }
        _ => return None,
    };
    let (kind, text) = match value.get("message-type").and_then(|t| t.as_str()) {
        None | Some("text") => (PacketType::Data, true),
        Some("binary") => (PacketType::Data, false),
        Some("ping") => (PacketType::Ping, false),
        Some("pong") => (PacketType::Pong, false),
        Some(_) => return None,
    };
    Some(Outgoing {
        kind,
        text,
        content,
    })
}

/// A control message's `timeout` in seconds (at least 1), or `default`.
fn timeout_of(value: &serde_json::Value, default: u64) -> Duration {
    let secs = value
        .get("timeout")
        .and_then(|t| t.as_u64())
        .unwrap_or(default);
    Duration::from_secs(secs.max(1))
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

    #[test]
    fn delayed_and_keep_alive_messages() {
        let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        let text = outgoing(&json(r#"{"content": "hi"}"#)).unwrap();
        assert_eq!((text.kind, text.text), (PacketType::Data, true));
        assert_eq!(text.content, "hi");
        // content-bin stays a text message unless message-type says binary.
        let bin = outgoing(&json(r#"{"content-bin": "AAE="}"#)).unwrap();
        assert_eq!((bin.text, &bin.content[..]), (true, &[0u8, 1][..]));
        let bin = outgoing(&json(
            r#"{"content-bin": "AAE=", "message-type": "binary"}"#,
        ))
        .unwrap();
        assert!(!bin.text);
        let ping = outgoing(&json(r#"{"content": "", "message-type": "ping"}"#)).unwrap();
        assert_eq!(ping.kind, PacketType::Ping);
        for bad in [
            r#"{}"#,
            r#"{"content": 5}"#,
            r#"{"content-bin": "not base64!"}"#,
            r#"{"content": "x", "message-type": "shout"}"#,
        ] {
            assert_eq!(outgoing(&json(bad)), None, "{bad}");
        }
        assert_eq!(timeout_of(&json(r#"{}"#), 55), Duration::from_secs(55));
        assert_eq!(
            timeout_of(&json(r#"{"timeout": 0}"#), 55),
            Duration::from_secs(1)
        );
        assert_eq!(
            timeout_of(&json(r#"{"timeout": "x"}"#), 1),
            Duration::from_secs(1)
        );
    }
}
