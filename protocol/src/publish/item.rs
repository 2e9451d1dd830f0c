//! The item model and its parser.

use crate::tnetstring;
use crate::value::Value;
use base64::Engine;
use bytes::Bytes;

/// Most items accepted in one publish request.
pub const MAX_ITEMS: usize = 1000;

/// Most cache keys plus URLs one item may purge (Fastly's batch limit).
pub const MAX_PURGE: usize = 256;

/// Why a publish was refused. Every message names the item and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The body is not JSON.
    #[error("Body is not valid JSON: {0}")]
    BadJson(String),
    /// The TNetString frame is malformed.
    #[error("Invalid TNetString: {0}")]
    BadTNetString(String),
    /// The top level is not `{"items": [...]}`.
    #[error("Invalid format: expected an object with an \"items\" list")]
    NoItems,
    /// More items than [`MAX_ITEMS`].
    #[error("Invalid format: more than {MAX_ITEMS} items")]
    TooManyItems,
    /// An item is not an object.
    #[error("Invalid format: item {0} is not an object")]
    NotAnObject(usize),
    /// An item has no channel.
    #[error("Invalid format: item {0}: missing \"channel\"")]
    MissingChannel(usize),
    /// An item has no format.
    #[error("Invalid format: item {0}: no format (http-response, http-stream or ws-message)")]
    NoFormat(usize),
    /// A field has the wrong type or value.
    #[error("Invalid format: item {item}: {field}: {expected}")]
    BadField {
        /// Item index.
        item: usize,
        /// Field path, e.g. `http-response.code`.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A header of an `http-response` that cannot be sent as it is.
    #[error("Invalid format: item {item}: http-response.headers: {name:?} {problem}")]
    BadHeader {
        /// Item index.
        item: usize,
        /// The header's name, as given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// What to do with a format's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Deliver the content.
    #[default]
    Send,
    /// Ask the session to fetch fresh data from the origin.
    Hint,
    /// End the stream (or close the WebSocket).
    Close,
    /// Refresh (WebSocket-over-HTTP).
    Refresh,
}

/// `http-response` format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// Action.
    pub action: Action,
    /// Status code (default 200).
    pub code: Option<u16>,
    /// Reason phrase.
    pub reason: Option<String>,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
    /// Content filters the publisher expects the subscription to apply.
    pub content_filters: Option<Vec<String>>,
}

/// `http-stream` format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpStream {
    /// Action.
    pub action: Action,
    /// Content to append.
    pub content: Bytes,
    /// Content filters the publisher expects the subscription to apply.
    pub content_filters: Option<Vec<String>>,
}

/// WebSocket message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WsMessageType {
    /// Text frame.
    #[default]
    Text,
    /// Binary frame.
    Binary,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

/// `ws-message` format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WsMessage {
    /// Action.
    pub action: Action,
    /// Frame type.
    pub kind: WsMessageType,
    /// Content.
    pub content: Bytes,
    /// Close code (`action: close`).
    pub code: Option<u16>,
    /// Close reason.
    pub reason: Option<String>,
}

/// The formats an item carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Format {
    /// For long-polling (response holds).
    pub http_response: Option<HttpResponse>,
    /// For streaming holds.
    pub http_stream: Option<HttpStream>,
    /// For WebSocket sessions.
    pub ws_message: Option<WsMessage>,
}

/// One publish item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    /// Channel.
    pub channel: String,
    /// Item id.
    pub id: Option<String>,
    /// Id of the previous item on the channel.
    pub prev_id: Option<String>,
    /// Metadata for filters.
    pub meta: Vec<(String, String)>,
    /// Bypass sequencing.
    pub no_seq: bool,
    /// Formats.
    pub formats: Format,
    /// Cache objects to purge before the item is delivered (Holdfast
    /// addition; such items are paced per channel).
    pub purge: Option<Purge>,
}

/// What an item purges from the caches before it is delivered: objects
/// tagged with `keys` (Surrogate-Key), and `urls`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Purge {
    /// Surrogate keys.
    pub keys: Vec<String>,
    /// Absolute `http://` or `https://` URLs, as clients request them.
    pub urls: Vec<String>,
    /// Mark stale instead of removing, where the cache can (Fastly soft
    /// purge, Varnish xkey soft purge).
    pub soft: bool,
}

/// Parses an HTTP publish body: `{"items": [...]}`.
///
/// Items are read one at a time and the count is checked as they come, so a
/// body of many small items is refused before it is held in memory as a
/// tree (a tree node costs far more than the JSON text it came from).
pub fn parse_items_json(body: &[u8]) -> Result<Vec<Item>, PublishError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() && e.to_string().starts_with(TOO_MANY_ITEMS) {
            PublishError::TooManyItems
        } else if e.is_data() {
            PublishError::NoItems
        } else {
            PublishError::BadJson(e.to_string())
        }
    })?;
    let Some(ItemTrees(items)) = envelope.items else {
        return Err(PublishError::NoItems);
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| parse_item_value(v, i, true))
        .collect()
}

/// The top level of an HTTP publish body; other fields are skipped unread.
#[derive(serde::Deserialize)]
struct Envelope {
    items: Option<ItemTrees>,
}

/// The `items` list, at most [`MAX_ITEMS`] long, as value trees.
struct ItemTrees(Vec<Value>);

/// Starts the serde error of a list over [`MAX_ITEMS`].
const TOO_MANY_ITEMS: &str = "too many items";

impl<'de> serde::Deserialize<'de> for ItemTrees {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> serde::de::Visitor<'de> for ListVisitor {
            type Value = ItemTrees;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of items")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ItemTrees, A::Error> {
                let mut items = Vec::new();
                while items.len() < MAX_ITEMS {
                    match seq.next_element::<serde_json::Value>()? {
                        Some(item) => items.push(from_json(&item)),
                        None => return Ok(ItemTrees(items)),
                    }
                }
                match seq.next_element::<serde::de::IgnoredAny>()? {
                    Some(_) => Err(serde::de::Error::custom(TOO_MANY_ITEMS)),
                    None => Ok(ItemTrees(items)),
                }
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}

/// Parses one item from a TNetString (no `T` tag).
pub fn parse_item_tnetstring(data: &[u8]) -> Result<Item, PublishError> {
    parse_item_frame(data, None)
}

/// Parses one ZeroMQ publish frame: `J` + JSON, `T` + TNetString, or a bare
/// TNetString. `channel` (the topic frame on SUB) sets the item's channel.
pub fn parse_item_frame(frame: &[u8], channel: Option<&str>) -> Result<Item, PublishError> {
    let tnet = |data: &[u8]| {
        tnetstring::parse_complete(data).map_err(|e| PublishError::BadTNetString(e.to_string()))
    };
    let (mut value, json) = match frame.split_first() {
        Some((b'J', json)) => {
            let parsed: serde_json::Value =
                serde_json::from_slice(json).map_err(|e| PublishError::BadJson(e.to_string()))?;
            (from_json(&parsed), true)
        }
        Some((b'T', data)) => (tnet(data)?, false),
        _ => (tnet(frame)?, false),
    };
    if let (Some(channel), Value::Map(entries)) = (channel, &mut value) {
        entries.retain(|(k, _)| k != b"channel");
        entries.push((
            b"channel".to_vec(),
            Value::Bytes(channel.as_bytes().to_vec()),
        ));
    }
    parse_item_value(&value, 0, json)
}

/// JSON → value tree; strings become bytes, numbers ints or floats.
fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::Bytes(s.as_bytes().to_vec()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), from_json(v)))
                .collect(),
        ),
    }
}

/// Reads fields of one item, remembering which item for messages.
struct Fields<'a> {
    item: usize,
    value: &'a Value,
    prefix: &'static str,
    /// JSON carries binary as base64 in `*-bin` fields; TNetString is binary safe.
    json: bool,
}

impl<'a> Fields<'a> {
    fn bad(&self, field: &str, expected: &'static str) -> PublishError {
        let field = if self.prefix.is_empty() {
            field.to_owned()
        } else {
            format!("{}.{field}", self.prefix)
        };
        PublishError::BadField {
            item: self.item,
            field,
            expected,
        }
    }

    fn text(&self, key: &str) -> Result<Option<String>, PublishError> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.bad(key, "must be a string")),
        }
    }

    fn bytes(&self, key: &str) -> Result<Option<Bytes>, PublishError> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(Bytes::copy_from_slice(b))),
            Some(_) => Err(self.bad(key, "must be a string")),
        }
    }

    /// `key` as text/bytes, or `key-bin` as base64 (JSON) / bytes.
    fn content(&self, key: &str) -> Result<Option<Bytes>, PublishError> {
        let bin = format!("{key}-bin");
        if let Some(value) = self.bytes(&bin)? {
            if !self.json {
                return Ok(Some(value));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&value)
                .map_err(|_| {
                    self.bad(
                        if key == "body" {
                            "body-bin"
                        } else {
                            "content-bin"
                        },
                        "must be base64",
                    )
                })?;
            return Ok(Some(Bytes::from(decoded)));
        }
        self.bytes(key)
    }

    fn int(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, PublishError> {
        match self.value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Int(n)) if range.contains(n) => Ok(Some(*n)),
            Some(_) => Err(self.bad(key, "must be a whole number in range")),
        }
    }

    /// A reason phrase: one line of visible text (RFC 9112 4).
    fn reason(&self) -> Result<Option<String>, PublishError> {
        let reason = self.text("reason")?;
        match &reason {
            Some(r)
                if !r
                    .bytes()
                    .all(|b| b == b'\t' || b == b' ' || (b >= 0x21 && b != 0x7f)) =>
            {
                Err(self.bad("reason", "must be one line of visible text"))
            }
            _ => Ok(reason),
        }
    }

    /// `content-filters`: a list of filter names.
    fn content_filters(&self) -> Result<Option<Vec<String>>, PublishError> {
        match self.value.get("content-filters") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::List(names)) => names
                .iter()
                .map(|n| {
                    n.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.bad("content-filters", "must be a list of strings"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.bad("content-filters", "must be a list of strings")),
        }
    }

    fn action(&self) -> Result<Action, PublishError> {
        Ok(match self.text("action")?.as_deref() {
            None | Some("send") => Action::Send,
            Some("hint") => Action::Hint,
            Some("close") => Action::Close,
            Some("refresh") => Action::Refresh,
            Some(_) => return Err(self.bad("action", "must be send, hint, close or refresh")),
        })
    }
}

/// Parses one item from the value tree; `index` names it in messages.
pub fn parse_item_value(value: &Value, index: usize, json: bool) -> Result<Item, PublishError> {
    if !matches!(value, Value::Map(_)) {
        return Err(PublishError::NotAnObject(index));
    }
    let fields = Fields {
        item: index,
        value,
        prefix: "",
        json,
    };
    let channel = fields
        .text("channel")?
        .filter(|c| !c.is_empty())
        .ok_or(PublishError::MissingChannel(index))?;
    let meta = item_meta(value, &fields)?;
    let no_seq = match value.get("no-seq") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(fields.bad("no-seq", "must be true or false")),
    };
    // Formats under "formats", or at the top level (pubcontrol's HTTP layout).
    let holder = match value.get("formats") {
        None | Some(Value::Null) => value,
        Some(formats @ Value::Map(_)) => formats,
        Some(_) => return Err(fields.bad("formats", "must be an object")),
    };
    let format = |name: &'static str| -> Result<Option<Fields<'_>>, PublishError> {
        match holder.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Map(_)) => Ok(Some(Fields {
                item: index,
                value: v,
                prefix: name,
                json,
            })),
            Some(_) => Err(fields.bad(name, "must be an object")),
        }
    };
    let mut formats = Format::default();
    if let Some(f) = format("http-response")? {
        formats.http_response = Some(http_response(&f, index)?);
    }
    if let Some(f) = format("http-stream")? {
        formats.http_stream = Some(http_stream(&f)?);
    }
    if let Some(f) = format("ws-message")? {
        formats.ws_message = Some(ws_message(&f)?);
    }
    if formats == Format::default() {
        return Err(PublishError::NoFormat(index));
    }
    Ok(Item {
        channel,
        id: fields.text("id")?,
        prev_id: fields.text("prev-id")?,
        meta,
        no_seq,
        formats,
        purge: parse_purge(&fields)?,
    })
}

/// An item's `meta`: strings to strings.
fn item_meta(value: &Value, fields: &Fields<'_>) -> Result<Vec<(String, String)>, PublishError> {
    Ok(match value.get("meta") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, v)| match (std::str::from_utf8(k), v.as_str()) {
                (Ok(k), Some(v)) => Ok((k.to_owned(), v.to_owned())),
                _ => Err(fields.bad("meta", "must map strings to strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(fields.bad("meta", "must be an object")),
    })
}

/// The `http-response` format (`index` names the item in messages).
fn http_response(f: &Fields<'_>, index: usize) -> Result<HttpResponse, PublishError> {
    let headers = match f.value.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(k, v)| match (std::str::from_utf8(k), v) {
                (Ok(k), Value::Bytes(b)) => Ok((k.to_owned(), Bytes::copy_from_slice(b))),
                _ => Err(f.bad("headers", "must map names to string values")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::List(pairs)) => pairs
            .iter()
            .map(|pair| match pair {
                Value::List(p) if p.len() == 2 => match (p[0].as_str(), &p[1]) {
                    (Some(k), Value::Bytes(b)) => Ok((k.to_owned(), Bytes::copy_from_slice(b))),
                    _ => Err(f.bad("headers", "must be [name, value] string pairs")),
                },
                _ => Err(f.bad("headers", "must be [name, value] string pairs")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(f.bad("headers", "must be an object or a list of pairs")),
    };
    for (name, value) in &headers {
        let problem = if name.is_empty() || !name.bytes().all(is_token_char) {
            "is not a valid header name"
        } else if !value
            .iter()
            .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
        {
            "has a value with a control character (CR, LF, NUL...)"
        } else {
            continue;
        };
        return Err(PublishError::BadHeader {
            item: index,
            name: name.clone(),
            problem,
        });
    }
    Ok(HttpResponse {
        action: f.action()?,
        code: f
            .int("code", 100..=599)
            .map_err(|_| f.bad("code", "must be a status code from 100 to 599"))?
            .map(|c| c as u16),
        reason: f.reason()?,
        headers,
        body: f.content("body")?.unwrap_or_default(),
        content_filters: f.content_filters()?,
    })
}

/// The `http-stream` format.
fn http_stream(f: &Fields<'_>) -> Result<HttpStream, PublishError> {
    let action = f.action()?;
    let content = f.content("content")?;
    if action == Action::Send && content.is_none() {
        return Err(f.bad(
            "content",
            "is required (or content-bin) unless action is close or hint",
        ));
    }
    Ok(HttpStream {
        action,
        content: content.unwrap_or_default(),
        content_filters: f.content_filters()?,
    })
}

/// The `ws-message` format.
fn ws_message(f: &Fields<'_>) -> Result<WsMessage, PublishError> {
    let kind = match f.text("type")?.as_deref() {
        None => None,
        Some("text") => Some(WsMessageType::Text),
        Some("binary") => Some(WsMessageType::Binary),
        Some("ping") => Some(WsMessageType::Ping),
        Some("pong") => Some(WsMessageType::Pong),
        Some(_) => return Err(f.bad("type", "must be text, binary, ping or pong")),
    };
    let binary = f.value.get("content-bin").is_some();
    Ok(WsMessage {
        action: f.action()?,
        // Default: text for content, binary for content-bin.
        kind: kind.unwrap_or(if binary {
            WsMessageType::Binary
        } else {
            WsMessageType::Text
        }),
        content: f.content("content")?.unwrap_or_default(),
        code: f.int("code", 0..=4999)?.map(|c| c as u16),
        reason: f.text("reason")?,
    })
}

/// A character allowed in a header name (RFC 9110 5.6.2 `tchar`).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `purge`: a list of surrogate keys, or `{"keys": [...], "urls": [...],
/// "soft": bool}`.
fn parse_purge(fields: &Fields<'_>) -> Result<Option<Purge>, PublishError> {
    let strings = |value: &Value, field: &str| -> Result<Vec<String>, PublishError> {
        let Value::List(list) = value else {
            return Err(fields.bad(field, "must be a list of strings"));
        };
        list.iter()
            .map(|v| {
                v.as_str()
                    .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        fields.bad(field, "must be a list of non-empty strings without spaces")
                    })
            })
            .collect()
    };
    let purge = match fields.value.get("purge") {
        None | Some(Value::Null) => return Ok(None),
        Some(list @ Value::List(_)) => Purge {
            keys: strings(list, "purge")?,
            ..Purge::default()
        },
        Some(map @ Value::Map(_)) => {
            let get = |key: &str| match map.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(v) => strings(v, &format!("purge.{key}")),
            };
            let soft = match map.get("soft") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(fields.bad("purge.soft", "must be true or false")),
            };
            Purge {
                keys: get("keys")?,
                urls: get("urls")?,
                soft,
            }
        }
        Some(_) => return Err(fields.bad("purge", "must be a list of keys or an object")),
    };
    let absolute = |url: &str| {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
    };
    if !purge.urls.iter().all(|u| absolute(u)) {
        return Err(fields.bad("purge.urls", "must be absolute http:// or https:// URLs"));
    }
    if purge.keys.len() + purge.urls.len() > MAX_PURGE {
        return Err(fields.bad("purge", "names more than 256 keys and URLs"));
    }
    if purge.keys.is_empty() && purge.urls.is_empty() {
        return Err(fields.bad("purge", "names no keys and no URLs"));
    }
    Ok(Some(purge))
}

mod encode;
pub use encode::encode_item_frame;

#[cfg(test)]
mod tests;
