//! GRIP instructions in an origin's response, from its `Grip-*` headers and,
//! for `application/grip-instruct`, its JSON body. Parsing only: what to do
//! with them is decided by the caller. Defaults and checks follow Pushpin.

use super::headers::{elements, meta_pairs, Element};
use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use serde::Deserialize;

/// Response-hold timeout when none is given (seconds).
pub const DEFAULT_TIMEOUT: u32 = 55;
/// Shortest response-hold timeout; smaller values are raised to it.
pub const MIN_TIMEOUT: u32 = 5;
/// Keep-alive interval when none is given (seconds).
pub const DEFAULT_KEEP_ALIVE: u32 = 55;
/// Next-link timeout when `rel=next` has none (seconds).
pub const DEFAULT_LINK_TIMEOUT: u32 = 120;
/// Filters one channel may carry.
pub const MAX_FILTERS: usize = 5;
/// Channels read from one answer; further ones are dropped here. The
/// handler applies the configured `connection_subscription_max` (20 by
/// default) below this.
pub const MAX_CHANNELS: usize = 1000;
/// Largest `application/grip-instruct` body read.
pub const MAX_INSTRUCT_BODY: usize = 100_000;

/// How a connection is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldMode {
    /// Long-poll: nothing is sent until a publish or the timeout.
    Response,
    /// Streaming: the response goes out now, publishes are appended.
    Stream,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Channel name.
    pub name: String,
    /// Last item id the origin knows of.
    pub prev_id: Option<String>,
    /// Filter names, in order.
    pub filters: Vec<String>,
}

/// When keep-alive data is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAliveMode {
    /// After `timeout` seconds without other content.
    Idle,
    /// Every `timeout` seconds.
    Interval,
}

/// Stream keep-alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAlive {
    /// Bytes to send.
    pub data: Bytes,
    /// Seconds.
    pub timeout: u32,
    /// Idle or interval.
    pub mode: KeepAliveMode,
}

/// A `Grip-Link rel=next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextLink {
    /// URI (possibly relative to the request).
    pub uri: String,
    /// Seconds before the link is fetched.
    pub timeout: u32,
}

/// The response carried in an instruct body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstructResponse {
    /// Status code.
    pub code: u16,
    /// Reason phrase, if given.
    pub reason: Option<String>,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// Everything an origin's response instructs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Instruct {
    /// Hold mode, if the response is held.
    pub hold: Option<HoldMode>,
    /// Subscriptions.
    pub channels: Vec<Channel>,
    /// Response-hold timeout, seconds.
    pub timeout: u32,
    /// Stream keep-alive.
    pub keep_alive: Option<KeepAlive>,
    /// Subscription metadata (`Grip-Set-Meta`).
    pub meta: Vec<(String, String)>,
    /// `Grip-Status`: code and optional reason.
    pub status: Option<(u16, Option<String>)>,
    /// `Grip-Expose-Headers`: only these origin headers reach the client.
    pub expose_headers: Option<Vec<String>>,
    /// `Grip-Link rel=next`.
    pub next_link: Option<NextLink>,
    /// `Grip-Link rel=gone`.
    pub gone_link: Option<String>,
    /// The response of an `application/grip-instruct` body.
    pub response: Option<InstructResponse>,
    /// `Grip-Session-Id` (Pushpin's session feature).
    pub session_id: Option<String>,
    /// `Grip-Session-Detect`: path prefix, JSON pointer, form field.
    pub session_detect: Vec<SessionDetect>,
    /// `Grip-Last` on the response: channel → last id the client has.
    pub last_ids: Vec<(String, String)>,
}

/// One `Grip-Session-Detect` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDetect {
    /// Requests whose path starts with this.
    pub path_prefix: String,
    /// JSON pointer to the session id in their body.
    pub sid_ptr: String,
    /// Form field holding the JSON, when the body is a form.
    pub json_param: Option<String>,
}

/// Why instructions are unusable (the client then gets 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructError {
    /// `Grip-Hold` is neither `response` nor `stream`.
    #[error("Grip-Hold: unknown mode {0:?}")]
    BadHold(String),
    /// A channel has more than [`MAX_FILTERS`] filters.
    #[error("Grip-Channel {0:?}: more than {MAX_FILTERS} filters")]
    TooManyFilters(String),
    /// `Grip-Timeout` is not a non-negative integer.
    #[error("Grip-Timeout: {0:?} is not a number of seconds")]
    BadTimeout(String),
    /// `Grip-Keep-Alive` is malformed.
    #[error("Grip-Keep-Alive: {0}")]
    BadKeepAlive(String),
    /// `Grip-Set-Meta` is malformed.
    #[error("Grip-Set-Meta: {0}")]
    BadMeta(String),
    /// `Grip-Link` is malformed.
    #[error("Grip-Link: {0}")]
    BadLink(String),
    /// `Grip-Status` is malformed.
    #[error("Grip-Status: {0:?} is not a status code from 0 to 999")]
    BadStatus(String),
    /// A stream hold subscribes with a prev-id but gives no next link to
    /// recover from a gap with.
    #[error("stream hold with a prev-id on {0:?} needs a Grip-Link rel=next")]
    PrevIdWithoutLink(String),
    /// An instruct body came with a status other than 200.
    #[error("application/grip-instruct with status {0} (must be 200)")]
    InstructStatus(u16),
    /// A GRIP header's value is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(String),
    /// The instruct body is not the expected JSON.
    #[error("application/grip-instruct body: {0}")]
    BadBody(String),
}

/// A GRIP header's value as text: UTF-8, as Pushpin reads it (a channel
/// may be named `café`); other bytes are refused, not skipped.
fn text<'a>(name: &str, value: &'a http::HeaderValue) -> Result<&'a str, InstructError> {
    std::str::from_utf8(value.as_bytes()).map_err(|_| InstructError::NotUtf8(name.to_owned()))
}

fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, InstructError> {
    headers
        .get(name)
        .map(|v| text(name, v).map(str::trim))
        .transpose()
}

fn all_values<'a>(headers: &'a HeaderMap, name: &str) -> Result<Vec<&'a str>, InstructError> {
    headers
        .get_all(name)
        .iter()
        .map(|v| text(name, v))
        .collect()
}

fn seconds(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok()
}

impl Instruct {
    /// Reads the `Grip-*` headers of a response.
    pub fn from_headers(headers: &HeaderMap) -> Result<Instruct, InstructError> {
        let mut instruct = Instruct {
            timeout: DEFAULT_TIMEOUT,
            ..Instruct::default()
        };
        if let Some(hold) = first_value(headers, "grip-hold")? {
            instruct.hold = Some(match hold {
                "response" => HoldMode::Response,
                "stream" => HoldMode::Stream,
                other => return Err(InstructError::BadHold(other.to_owned())),
            });
        }
        for element in elements(all_values(headers, "grip-channel")?.into_iter()) {
            let Ok(e) = Element::parse(&element) else {
                continue;
            };
            if e.first.is_empty() {
                continue;
            }
            let filters: Vec<String> = e.params_exact("filter").map(str::to_owned).collect();
            if filters.len() > MAX_FILTERS {
                return Err(InstructError::TooManyFilters(e.first));
            }
            instruct.push_channel(Channel {
                prev_id: e.param("prev-id").map(str::to_owned),
                name: e.first,
                filters,
            });
        }
        if let Some(timeout) = first_value(headers, "grip-timeout")? {
            let secs =
                seconds(timeout).ok_or_else(|| InstructError::BadTimeout(timeout.to_owned()))?;
            instruct.timeout = secs.max(MIN_TIMEOUT);
        }
        if let Some(value) = first_value(headers, "grip-keep-alive")? {
            instruct.keep_alive = Some(parse_keep_alive(value)?);
        }
        for element in elements(all_values(headers, "grip-set-meta")?.into_iter()) {
            instruct
                .meta
                .extend(meta_pairs(&element).map_err(InstructError::BadMeta)?);
        }
        if let Some(value) = first_value(headers, "grip-status")? {
            instruct.status = Some(parse_status(value)?);
        }
        if headers.contains_key("grip-expose-headers") {
            instruct.expose_headers = Some(elements(
                all_values(headers, "grip-expose-headers")?.into_iter(),
            ));
        }
        for element in elements(all_values(headers, "grip-link")?.into_iter()) {
            let e =
                Element::parse(&element).map_err(|err| InstructError::BadLink(err.to_string()))?;
            let Some(rel) = e.param("rel") else { continue };
            let uri = e
                .first
                .strip_prefix('<')
                .and_then(|u| u.strip_suffix('>'))
                .filter(|u| u.parse::<http::Uri>().is_ok())
                .ok_or_else(|| InstructError::BadLink(format!("{:?} is not <URI>", e.first)))?
                .to_owned();
            match rel {
                "next" => {
                    let timeout = match e.param("timeout") {
                        Some(t) => seconds(t)
                            .ok_or_else(|| InstructError::BadLink(format!("bad timeout {t:?}")))?,
                        None => DEFAULT_LINK_TIMEOUT,
                    };
                    instruct.next_link = Some(NextLink { uri, timeout });
                }
                "gone" => instruct.gone_link = Some(uri),
                _ => {}
            }
        }
        instruct.session_id = first_value(headers, "grip-session-id")?
            .filter(|sid| !sid.is_empty())
            .map(str::to_owned);
        for element in elements(all_values(headers, "grip-session-detect")?.into_iter()) {
            // Every token is a pair; rules missing a part are skipped, as
            // Pushpin does.
            let Ok(pairs) = meta_pairs(&element) else {
                tracing::debug!(rule = %element, "malformed Grip-Session-Detect ignored");
                continue;
            };
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            match (get("path-prefix"), get("sid-ptr")) {
                (Some(path_prefix), Some(sid_ptr)) => instruct.session_detect.push(SessionDetect {
                    path_prefix,
                    sid_ptr,
                    json_param: get("json-param"),
                }),
                _ => {
                    tracing::debug!(rule = %element, "Grip-Session-Detect without path-prefix and sid-ptr ignored")
                }
            }
        }
        for element in elements(all_values(headers, "grip-last")?.into_iter()) {
            let Ok(e) = Element::parse(&element) else {
                continue;
            };
            if let (false, Some(id)) = (e.first.is_empty(), e.param("last-id")) {
                instruct.last_ids.push((e.first.clone(), id.to_owned()));
            }
        }
        Ok(instruct)
    }

    /// Rules that span headers: a stream hold with a prev-id must have a
    /// next link (the only way it can recover from a gap).
    pub fn check(&self) -> Result<(), InstructError> {
        if self.hold == Some(HoldMode::Stream) && self.next_link.is_none() {
            if let Some(c) = self.channels.iter().find(|c| c.prev_id.is_some()) {
                return Err(InstructError::PrevIdWithoutLink(c.name.clone()));
            }
        }
        Ok(())
    }

    fn push_channel(&mut self, channel: Channel) {
        if self.channels.len() < MAX_CHANNELS {
            self.channels.push(channel);
        }
    }

    /// Applies an `application/grip-instruct` body on top of the headers:
    /// `hold` overrides mode, timeout and keep-alive, merges meta and appends
    /// channels; `response` replaces the origin's response.
    pub fn apply_body(&mut self, status: u16, body: &[u8]) -> Result<(), InstructError> {
        if status != 200 {
            return Err(InstructError::InstructStatus(status));
        }
        let parsed: InstructBody =
            serde_json::from_slice(body).map_err(|e| InstructError::BadBody(e.to_string()))?;
        if let Some(hold) = parsed.hold {
            self.hold = Some(match hold.mode.as_deref() {
                None | Some("response") => HoldMode::Response,
                Some("stream") => HoldMode::Stream,
                Some(other) => return Err(InstructError::BadHold(other.to_owned())),
            });
            for c in hold.channels {
                if c.filters.len() > MAX_FILTERS {
                    return Err(InstructError::TooManyFilters(c.name));
                }
                self.push_channel(Channel {
                    name: c.name,
                    prev_id: c.prev_id,
                    filters: c.filters,
                });
            }
            if let Some(timeout) = hold.timeout {
                self.timeout = timeout.max(MIN_TIMEOUT);
            }
            if let Some(ka) = hold.keep_alive {
                let data = match (ka.content, ka.content_bin) {
                    (_, Some(bin)) => base64::engine::general_purpose::STANDARD
                        .decode(bin)
                        .map_err(|_| {
                            InstructError::BadBody("keep-alive content-bin is not base64".into())
                        })?,
                    (Some(text), None) => text.into_bytes(),
                    (None, None) => {
                        return Err(InstructError::BadBody("keep-alive has no content".into()))
                    }
                };
                self.keep_alive = Some(KeepAlive {
                    data: Bytes::from(data),
                    timeout: ka.timeout.unwrap_or(DEFAULT_KEEP_ALIVE).max(1),
                    // No mode in JSON: content does not restart the timer.
                    mode: KeepAliveMode::Interval,
                });
            }
            self.meta.extend(hold.meta);
        }
        let r = parsed.response.unwrap_or_default();
        let body = match (r.body, r.body_bin) {
            (_, Some(bin)) => base64::engine::general_purpose::STANDARD
                .decode(bin)
                .map_err(|_| InstructError::BadBody("response body-bin is not base64".into()))?,
            (Some(text), None) => text.into_bytes(),
            (None, None) => Vec::new(),
        };
        self.response = Some(InstructResponse {
            code: r.code.unwrap_or(200),
            reason: r.reason,
            headers: r.headers.map(HeaderList::into_pairs).unwrap_or_default(),
            body: Bytes::from(body),
        });
        Ok(())
    }
}

fn parse_status(value: &str) -> Result<(u16, Option<String>), InstructError> {
    let (code, reason) = match value.split_once(' ') {
        Some((code, reason)) => (
            code,
            Some(reason.trim().to_owned()).filter(|r| !r.is_empty()),
        ),
        None => (value, None),
    };
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| *c <= 999)
        .ok_or_else(|| InstructError::BadStatus(value.to_owned()))?;
    Ok((code, reason))
}

fn parse_keep_alive(value: &str) -> Result<KeepAlive, InstructError> {
    let bad = |reason: String| InstructError::BadKeepAlive(reason);
    let e = Element::parse(value).map_err(|err| bad(err.to_string()))?;
    if e.first.is_empty() {
        return Err(bad("empty data".into()));
    }
    let data = match e.param("format").unwrap_or("raw") {
        "raw" => e.first.clone().into_bytes(),
        "cstring" => decode_cstring(&e.first).map_err(bad)?,
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(&e.first)
            .map_err(|_| bad("data is not base64".into()))?,
        other => return Err(bad(format!("unknown format {other:?}"))),
    };
    let timeout = match e.param("timeout") {
        Some(t) => seconds(t)
            .ok_or_else(|| bad(format!("bad timeout {t:?}")))?
            .max(1),
        None => DEFAULT_KEEP_ALIVE,
    };
    let mode = match e.param("mode") {
        None | Some("idle") => KeepAliveMode::Idle,
        Some("interval") => KeepAliveMode::Interval,
        Some(other) => return Err(bad(format!("unknown mode {other:?}"))),
    };
    Ok(KeepAlive {
        data: Bytes::from(data),
        timeout,
        mode,
    })
}

/// `\\`, `\r`, `\n` and `\xHH` are understood; other escapes are dropped
/// (as Pushpin, which also does not know `\t`).
fn decode_cstring(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'x') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let value = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "bad \\x escape in cstring data".to_owned())?;
                out.push(value);
            }
            Some(_) => {}
            None => return Err("cstring data ends with a backslash".into()),
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct InstructBody {
    hold: Option<HoldBody>,
    response: Option<ResponseBody>,
}

#[derive(Deserialize)]
struct HoldBody {
    mode: Option<String>,
    channels: Vec<ChannelBody>,
    timeout: Option<u32>,
    #[serde(rename = "keep-alive")]
    keep_alive: Option<KeepAliveBody>,
    #[serde(default)]
    meta: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct ChannelBody {
    name: String,
    #[serde(rename = "prev-id")]
    prev_id: Option<String>,
    #[serde(default)]
    filters: Vec<String>,
}

#[derive(Deserialize)]
struct KeepAliveBody {
    content: Option<String>,
    #[serde(rename = "content-bin")]
    content_bin: Option<String>,
    timeout: Option<u32>,
}

#[derive(Deserialize, Default)]
struct ResponseBody {
    code: Option<u16>,
    reason: Option<String>,
    headers: Option<HeaderList>,
    body: Option<String>,
    #[serde(rename = "body-bin")]
    body_bin: Option<String>,
}

/// Headers as a JSON object or a list of pairs.
#[derive(Deserialize)]
#[serde(untagged)]
enum HeaderList {
    Map(std::collections::BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

impl HeaderList {
    fn into_pairs(self) -> Vec<(String, String)> {
        match self {
            HeaderList::Map(map) => map.into_iter().collect(),
            HeaderList::Pairs(pairs) => pairs,
        }
    }
}

#[cfg(test)]
mod tests;
