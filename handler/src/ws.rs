//! WebSocket sessions' subscriptions (GRIP over WebSocket). The proxy owns
//! the sessions; the handler only knows what they subscribed to, their
//! meta, and which proxy to send `ws-message` content to. A session the
//! proxy stops vouching for (no `alive` for [`WS_TTL`]) is forgotten.

use crate::filters::Subscriber;
use crate::session::Subscription;
use holdfast_protocol::publish::{Action, Item, WsMessageType};
use holdfast_protocol::wscontrol::{Control, Deliver};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long a session lives without an `alive` from its proxy.
pub const WS_TTL: Duration = Duration::from_secs(120);

/// One WebSocket session as the handler knows it.
#[derive(Debug)]
struct WsSession {
    proxy: String,
    id: String,
    channels: Vec<Subscription>,
    meta: Vec<(String, String)>,
    alive: Instant,
    /// Client session id (`session` control message).
    sid: Option<String>,
    /// History lookups on the bus under way, and what was held back.
    awaiting: Option<Box<crate::session::AwaitingHistory>>,
}

/// Every WebSocket session, by key.
#[derive(Debug)]
pub struct WsSessions {
    sessions: HashMap<String, WsSession>,
    /// Channels one session may subscribe to (`connection_subscription_max`).
    max_channels: usize,
}

/// What a control message changed in the channel index.
#[derive(Debug, Default, PartialEq)]
pub struct Change {
    /// The session's key.
    pub key: String,
    /// Channels it joined.
    pub subscribed: Vec<String>,
    /// Channels it left.
    pub unsubscribed: Vec<String>,
}

/// The channel-index key of a WebSocket session.
pub fn key_of(proxy: &str, id: &str) -> String {
    format!("ws {proxy} {id}")
}

impl WsSessions {
    /// No sessions yet; each may subscribe to `max_channels` channels.
    pub fn new(max_channels: usize) -> WsSessions {
        WsSessions {
            sessions: HashMap::new(),
            max_channels,
        }
    }

    /// How many sessions it knows.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether it knows no session.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Whether `key` is a WebSocket session.
    pub fn contains(&self, key: &str) -> bool {
        self.sessions.contains_key(key)
    }

    /// The client session id of session `key`, if it has one.
    pub fn sid(&self, key: &str) -> Option<&str> {
        self.sessions.get(key).and_then(|s| s.sid.as_deref())
    }

    /// Applies a control message.
    pub fn apply(&mut self, control: Control, now: Instant) -> Change {
        let key = key_of(&control.proxy, &control.id);
        let mut change = Change {
            key: key.clone(),
            ..Change::default()
        };
        if control.kind == "end" {
            if let Some(session) = self.sessions.remove(&key) {
                change.unsubscribed = session.channels.into_iter().map(|c| c.name).collect();
            }
            return change;
        }
        let session = self.sessions.entry(key).or_insert_with(|| WsSession {
            proxy: control.proxy.clone(),
            id: control.id.clone(),
            channels: Vec::new(),
            meta: Vec::new(),
            alive: now,
            sid: None,
            awaiting: None,
        });
        session.alive = now;
        match (control.kind.as_str(), control.channel) {
            ("subscribe", Some(channel)) => {
                if session.channels.len() >= self.max_channels {
                    tracing::info!(session = %control.id, %channel, "subscription beyond connection_subscription_max ({}) ignored", self.max_channels);
                } else if !session.channels.iter().any(|c| c.name == channel) {
                    session.channels.push(Subscription {
                        name: channel.clone(),
                        prev_id: control.prev_id,
                        filters: control.filters,
                    });
                    change.subscribed.push(channel);
                }
            }
            ("unsubscribe", Some(channel)) => {
                let before = session.channels.len();
                session.channels.retain(|c| c.name != channel);
                if session.channels.len() < before {
                    change.unsubscribed.push(channel);
                }
            }
            ("session", _) => session.sid = control.sid,
            ("set-meta", _) => {
                if let Some(name) = control.name {
                    session.meta.retain(|(n, _)| *n != name);
                    if let Some(value) = control.value {
                        session.meta.push((name, value));
                    }
                }
            }
            _ => {}
        }
        change
    }

    /// The position a session subscribed to `channel` with, if any.
    pub fn prev_id(&self, key: &str, channel: &str) -> Option<String> {
        let session = self.sessions.get(key)?;
        let sub = session.channels.iter().find(|c| c.name == channel)?;
        sub.prev_id.clone()
    }

    /// Holds back what is published on `channel` for the session until
    /// [`WsSessions::end_wait`].
    pub fn await_history(&mut self, key: &str, channel: &str) {
        if let Some(session) = self.sessions.get_mut(key) {
            let awaiting = session.awaiting.get_or_insert_with(Default::default);
            awaiting.channels.push((channel.to_owned(), false));
        }
    }

    /// Keeps `item` for the session if it awaits the item's channel's
    /// history; whether it did.
    pub fn holds_back(&mut self, key: &str, item: &Item) -> bool {
        let Some(awaiting) = self.sessions.get_mut(key).and_then(|s| s.awaiting.as_mut()) else {
            return false;
        };
        if !awaiting.awaits(&item.channel) {
            return false;
        }
        awaiting.held_back.push(item.clone());
        true
    }

    /// Stops holding back `channel` for the session; what was held back.
    pub fn end_wait(&mut self, key: &str, channel: &str) -> Vec<Item> {
        let Some(session) = self.sessions.get_mut(key) else {
            return Vec::new();
        };
        let Some(awaiting) = &mut session.awaiting else {
            return Vec::new();
        };
        awaiting.channels.retain(|(c, _)| c != channel);
        let (held, others): (Vec<Item>, Vec<Item>) = std::mem::take(&mut awaiting.held_back)
            .into_iter()
            .partition(|i| i.channel == channel);
        awaiting.held_back = others;
        if awaiting.channels.is_empty() {
            session.awaiting = None;
        }
        held
    }

    /// Forgets sessions not vouched for within [`WS_TTL`]; what they left.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.alive) > WS_TTL)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|key| {
                self.sessions.remove(&key).map(|s| Change {
                    key,
                    subscribed: Vec::new(),
                    unsubscribed: s.channels.into_iter().map(|c| c.name).collect(),
                })
            })
            .collect()
    }

    /// Refresh deliveries for the session `cid` (of any proxy) or for the
    /// sessions among `keys` (a channel's).
    pub fn refreshes(&self, cid: Option<&str>, keys: &[String]) -> Vec<(String, Deliver)> {
        let mut out: Vec<(String, Deliver)> = Vec::new();
        let chosen = self
            .sessions
            .iter()
            .filter(|(key, s)| cid.is_some_and(|c| c == s.id) || keys.iter().any(|k| k == *key));
        for (_, session) in chosen {
            match out.iter_mut().find(|(proxy, _)| *proxy == session.proxy) {
                Some((_, deliver)) => deliver.ids.push(session.id.clone()),
                None => out.push((
                    session.proxy.clone(),
                    Deliver {
                        ids: vec![session.id.clone()],
                        kind: "refresh".into(),
                        ..Deliver::default()
                    },
                )),
            }
        }
        out
    }

    /// What `item` means for the WebSocket sessions among `keys`: one
    /// delivery per proxy and per distinct content.
    pub fn deliveries(&self, item: &Item, keys: &[String]) -> Vec<(String, Deliver)> {
        let Some(message) = &item.formats.ws_message else {
            return Vec::new();
        };
        if message.action == Action::Hint {
            return Vec::new();
        }
        let mut out: Vec<(String, Deliver)> = Vec::new();
        for key in keys {
            let Some(session) = self.sessions.get(key) else {
                continue;
            };
            let Some(sub) = session.channels.iter().find(|c| c.name == item.channel) else {
                continue;
            };
            let subscribed = |name: &str| session.channels.iter().any(|c| c.name == name);
            let last_id = |_: &str| None;
            let subscriber = Subscriber {
                filters: &sub.filters,
                meta: &session.meta,
                subscribed: &subscribed,
                last_id: &last_id,
            };
            if subscriber.drops(&item.meta) {
                continue;
            }
            let (kind, content, code) = if message.action == Action::Refresh {
                ("refresh", bytes::Bytes::new(), None)
            } else if message.action == Action::Close {
                (
                    "close",
                    bytes::Bytes::from(message.reason.clone().unwrap_or_default()),
                    message.code,
                )
            } else {
                let kind = match message.kind {
                    WsMessageType::Text => "text",
                    WsMessageType::Binary => "binary",
                    WsMessageType::Ping => "ping",
                    WsMessageType::Pong => "pong",
                };
                (kind, subscriber.content(&message.content), None)
            };
            let existing = out.iter_mut().find(|(proxy, d)| {
                *proxy == session.proxy && d.kind == kind && d.content == content && d.code == code
            });
            match existing {
                Some((_, deliver)) => deliver.ids.push(session.id.clone()),
                None => out.push((
                    session.proxy.clone(),
                    Deliver {
                        ids: vec![session.id.clone()],
                        kind: kind.to_owned(),
                        content,
                        code,
                    },
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_protocol::publish::{Format, WsMessage};

    fn control(kind: &str, id: &str, channel: Option<&str>) -> Control {
        Control {
            kind: kind.into(),
            proxy: "p".into(),
            id: id.into(),
            channel: channel.map(str::to_owned),
            ..Control::default()
        }
    }

    #[test]
    fn subscriptions_meta_and_delivery() {
        let now = Instant::now();
        let mut ws = WsSessions::new(20);
        let change = ws.apply(control("subscribe", "a", Some("room")), now);
        assert_eq!(change.subscribed, ["room"]);
        assert!(ws
            .apply(control("subscribe", "a", Some("room")), now)
            .subscribed
            .is_empty());
        let mut sub = control("subscribe", "b", Some("room"));
        sub.filters = vec!["skip-self".into()];
        ws.apply(sub, now);
        let mut meta = control("set-meta", "b", None);
        meta.name = Some("user".into());
        meta.value = Some("bob".into());
        ws.apply(meta, now);

        let item = Item {
            channel: "room".into(),
            meta: vec![("sender".into(), "bob".into())],
            formats: Format {
                ws_message: Some(WsMessage {
                    content: bytes::Bytes::from_static(b"hi"),
                    ..WsMessage::default()
                }),
                ..Format::default()
            },
            ..Item::default()
        };
        let keys = vec![key_of("p", "a"), key_of("p", "b")];
        let out = ws.deliveries(&item, &keys);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].1.ids,
            ["a"],
            "skip-self kept bob's own message from bob"
        );
        assert_eq!(out[0].1.kind, "text");

        let change = ws.apply(control("end", "a", None), now);
        assert_eq!(change.unsubscribed, ["room"]);
        assert!(!ws.contains(&key_of("p", "a")));
        let gone = ws.expire(now + WS_TTL + Duration::from_secs(1));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].unsubscribed, ["room"]);
    }
}
