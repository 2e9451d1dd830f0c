//! Pushpin's session feature (routes with `session`): for each client
//! session id, the last item id it was sent on each channel, and the rules
//! that find a session id in a request body. Held responses name sessions
//! (`Grip-Session-Id`, `Grip-Session-Detect`, `Grip-Last`) and WebSocket
//! origins do (`c:{"type":"session"}`); every publish with an id updates
//! the sessions it reached; the proxy asks ([`answer`], ZRPC `inspect`)
//! before forwarding a request, and the origin gets `Grip-Session-Id` and
//! `Grip-Last`. Pushpin keeps this in an optional external state service;
//! Holdfast keeps it here, bounded: least recently used sessions go first.

use holdfast_protocol::format::{self, Format};
use holdfast_protocol::inspect::{
    DetectRule, InspectReply, InspectRequest, Inspected, SessionUpdate, METHOD,
};
use holdfast_protocol::zmq::Multipart;
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

/// Sessions remembered.
pub const MAX_SESSIONS: usize = 100_000;
/// Detection rules remembered (origins send few, the same ones again).
pub const MAX_RULES: usize = 1_000;
/// Channels remembered per session.
pub const MAX_CHANNELS: usize = 100;

/// The session store, shared by the engine and the inspect socket.
pub type Shared = Arc<Mutex<ClientSessions>>;

/// Session ids, their last ids, and detection rules.
pub struct ClientSessions {
    rules: Vec<DetectRule>,
    last_ids: LruCache<String, Vec<(String, String)>>,
}

impl Default for ClientSessions {
    fn default() -> ClientSessions {
        ClientSessions::new(MAX_SESSIONS)
    }
}

impl ClientSessions {
    /// A store remembering up to `capacity` sessions.
    pub fn new(capacity: usize) -> ClientSessions {
        ClientSessions {
            rules: Vec::new(),
            last_ids: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Whether no session is known (then publishes have nothing to record).
    pub fn is_empty(&self) -> bool {
        self.last_ids.is_empty()
    }

    /// Applies what a held response said: new rules, and the session
    /// created or its last ids updated.
    pub fn apply(&mut self, update: &SessionUpdate) {
        for rule in &update.detect {
            if !self.rules.contains(rule) {
                if self.rules.len() >= MAX_RULES {
                    tracing::warn!(
                        "more than {MAX_RULES} Grip-Session-Detect rules; new rule ignored"
                    );
                    break;
                }
                self.rules.push(rule.clone());
            }
        }
        if let Some(sid) = &update.sid {
            self.create_or_update(sid, &update.last_ids);
        }
    }

    /// Creates session `sid` if new, and records `last_ids`.
    pub fn create_or_update(&mut self, sid: &str, last_ids: &[(String, String)]) {
        if !self.last_ids.contains(sid) {
            self.last_ids.put(sid.to_owned(), Vec::new());
        }
        for (channel, id) in last_ids {
            self.sent(sid, channel, id);
        }
    }

    /// Session `sid` was sent item `id` on `channel` (unknown sessions are
    /// not created: only the origin creates them).
    pub fn sent(&mut self, sid: &str, channel: &str, id: &str) {
        let Some(ids) = self.last_ids.get_mut(sid) else {
            return;
        };
        if let Some((_, last)) = ids.iter_mut().find(|(c, _)| c == channel) {
            id.clone_into(last);
        } else if ids.len() < MAX_CHANNELS {
            ids.push((channel.to_owned(), id.to_owned()));
        }
    }

    /// The session of a request, and what it was last sent.
    pub fn inspect(&mut self, host: &str, path: &str, body: &[u8]) -> Inspected {
        let Some(sid) = self.detect(host, path, body) else {
            return Inspected::default();
        };
        let last_ids = self.last_ids.get(&sid).cloned().unwrap_or_default();
        Inspected {
            sid: Some(sid),
            last_ids,
        }
    }

    /// The first rule for `host` and `path` whose pointer finds a string id.
    fn detect(&self, host: &str, path: &str, body: &[u8]) -> Option<String> {
        self.rules
            .iter()
            .filter(|r| r.domain == host && path.starts_with(&r.path_prefix))
            .find_map(|rule| {
                let json = match &rule.json_param {
                    Some(param) => url::form_urlencoded::parse(body)
                        .find(|(k, _)| k == param.as_str())
                        .map(|(_, v)| v.into_owned().into_bytes())?,
                    None => body.to_vec(),
                };
                let value: serde_json::Value = serde_json::from_slice(&json).ok()?;
                match value.pointer(&rule.sid_ptr)? {
                    serde_json::Value::String(sid) if !sid.is_empty() => Some(sid.clone()),
                    _ => None,
                }
            })
    }
}

/// Answers one message from the inspect socket (ROUTER: envelope, empty
/// delimiter, request); `None` when there is no envelope to answer to.
pub fn answer(msg: Multipart, sessions: &Shared, out: Format) -> Option<Multipart> {
    let delimiter = msg.iter().position(|f| f.is_empty())?;
    let frame = msg.get(delimiter + 1)?;
    let reply = match format::decode::<InspectRequest>(frame) {
        Ok(request) if request.method == METHOD => {
            let value = match sessions.lock() {
                Ok(mut store) => {
                    let args = &request.args;
                    store.inspect(&args.host, &args.path, &args.body)
                }
                Err(_) => Inspected::default(),
            };
            InspectReply {
                id: request.id,
                success: true,
                value: Some(value),
                condition: None,
            }
        }
        Ok(request) => InspectReply {
            id: request.id,
            success: false,
            value: None,
            condition: Some("method-not-found".into()),
        },
        Err(err) => {
            tracing::warn!(error = %err, "undecodable inspect request");
            InspectReply {
                id: String::new(),
                success: false,
                value: None,
                condition: Some("bad-format".into()),
            }
        }
    };
    let encoded = format::encode(&reply, out).ok()?;
    let mut reply_msg: Multipart = msg[..=delimiter].to_vec();
    reply_msg.push(encoded);
    Some(reply_msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use holdfast_protocol::inspect::InspectArgs;

    fn rule(prefix: &str, ptr: &str, param: Option<&str>) -> DetectRule {
        DetectRule {
            domain: "example.com".into(),
            path_prefix: prefix.into(),
            sid_ptr: ptr.into(),
            json_param: param.map(str::to_owned),
        }
    }

    fn store_with_session() -> ClientSessions {
        let mut store = ClientSessions::new(10);
        store.apply(&SessionUpdate {
            sid: Some("abc".into()),
            detect: vec![
                rule("/api/", "/session/id", None),
                rule("/form/", "/sid", Some("data")),
            ],
            last_ids: vec![("news".into(), "1".into())],
        });
        store
    }

    #[test]
    fn detects_from_json_and_form_bodies() {
        let mut store = store_with_session();
        store.sent("abc", "news", "2");
        store.sent("abc", "other", "x");
        let found = store.inspect("example.com", "/api/v1", br#"{"session":{"id":"abc"}}"#);
        assert_eq!(found.sid.as_deref(), Some("abc"));
        assert_eq!(
            found.last_ids,
            vec![("news".into(), "2".into()), ("other".into(), "x".into())]
        );
        let form = b"a=1&data=%7B%22sid%22%3A%22abc%22%7D";
        assert_eq!(
            store.inspect("example.com", "/form/x", form).sid.as_deref(),
            Some("abc")
        );
        // A session no origin named is found but has no last ids.
        let other = store.inspect("example.com", "/api/", br#"{"session":{"id":"zzz"}}"#);
        assert_eq!(
            (other.sid.as_deref(), other.last_ids.len()),
            (Some("zzz"), 0)
        );
    }

    #[test]
    fn malformed_or_unmatched_bodies_find_nothing() {
        let mut store = store_with_session();
        for (host, path, body) in [
            ("example.com", "/api/x", &b"not json"[..]),
            ("example.com", "/api/x", br#"{"session":{"id":5}}"#),
            ("example.com", "/api/x", br#"{"session":{"id":""}}"#),
            ("example.com", "/api/x", br#"{"session":"abc"}"#),
            ("example.com", "/elsewhere", br#"{"session":{"id":"abc"}}"#),
            ("other.com", "/api/x", br#"{"session":{"id":"abc"}}"#),
            ("example.com", "/form/x", b"data=%7Bbroken"),
            ("example.com", "/form/x", b"nodata=1"),
            ("example.com", "/api/x", b""),
        ] {
            assert_eq!(
                store.inspect(host, path, body),
                Inspected::default(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn unknown_sessions_are_not_created_by_publishes_and_store_is_bounded() {
        let mut store = ClientSessions::new(2);
        store.sent("ghost", "news", "1");
        assert!(store.last_ids.is_empty());
        store.create_or_update("a", &[]);
        store.create_or_update("b", &[]);
        store.create_or_update("c", &[]);
        assert_eq!(store.last_ids.len(), 2);
        assert!(!store.last_ids.contains("a"));
        for i in 0..MAX_CHANNELS + 5 {
            store.sent("c", &format!("ch{i}"), "1");
        }
        assert_eq!(store.last_ids.get("c").map(Vec::len), Some(MAX_CHANNELS));
    }

    #[test]
    fn answers_inspect_requests_and_rejects_bad_ones() {
        let shared: Shared = Arc::new(Mutex::new(store_with_session()));
        let request = InspectRequest {
            id: "9".into(),
            method: METHOD.into(),
            args: InspectArgs {
                host: "example.com".into(),
                path: "/api/".into(),
                body: Bytes::from_static(br#"{"session":{"id":"abc"}}"#),
            },
        };
        let frame = format::encode(&request, Format::TNetString).unwrap();
        let reply = answer(
            vec![b"peer".to_vec(), Vec::new(), frame],
            &shared,
            Format::MessagePack,
        )
        .unwrap();
        assert_eq!(&reply[..2], &[b"peer".to_vec(), Vec::new()]);
        let reply: InspectReply = format::decode(&reply[2]).unwrap();
        assert_eq!(reply.id, "9");
        assert_eq!(reply.value.unwrap().sid.as_deref(), Some("abc"));

        let reply = answer(
            vec![b"peer".to_vec(), Vec::new(), b"Tgarbage".to_vec()],
            &shared,
            Format::TNetString,
        )
        .unwrap();
        let reply: InspectReply = format::decode(&reply[2]).unwrap();
        assert_eq!(
            (reply.success, reply.condition.as_deref()),
            (false, Some("bad-format"))
        );

        let mut wrong = request;
        wrong.method = "recover".into();
        let frame = format::encode(&wrong, Format::TNetString).unwrap();
        let reply = answer(vec![Vec::new(), frame], &shared, Format::TNetString).unwrap();
        let reply: InspectReply = format::decode(&reply[1]).unwrap();
        assert_eq!(reply.condition.as_deref(), Some("method-not-found"));
        assert!(answer(vec![b"no-delimiter".to_vec()], &shared, Format::TNetString).is_none());
    }
}
