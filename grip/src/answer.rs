//! What the client gets for an origin's response: relayed as it is, or, when
//! it carries GRIP instructions, with them applied (`Grip-Status`,
//! `Grip-Expose-Headers`, an instruct body's response) and every `Grip-*`
//! header removed. A response that asks for a hold becomes [`Answer::Hold`]:
//! the handler takes the session over. So does a response with a next link
//! and no hold (paging): it is held as a stream whose link is followed at
//! once, and ends when a page has neither hold nor link. A stream hold's
//! initial body of any size passes: past [`MAX_INSTRUCT_BODY`] the rest is
//! left to stream before the hold begins.

use crate::error::GripError;
use crate::instruct::{HoldMode, Instruct, KeepAliveMode, MAX_INSTRUCT_BODY};
use crate::{is_grip_response, is_instruct_body};
use bytes::Bytes;
use holdfast_protocol::handoff;
use holdfast_protocol::inspect::{DetectRule, SessionUpdate};
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// How long an instruct body may take to arrive.
const INSTRUCT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The response to send to the client; `B` is the origin's body type (a
/// live connection's, or a cached one).
pub enum Answer<B = Incoming> {
    /// Status and headers decided here; the origin's body follows as it comes.
    Relay {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: Option<String>,
        /// Headers for the client.
        headers: Vec<Header>,
        /// The origin's body.
        body: B,
    },
    /// The origin asked for a hold; `response` is what the client gets at
    /// once (stream) or at timeout (long-poll).
    Hold {
        /// The instructions.
        instruct: Box<Instruct>,
        /// The response, GRIP applied.
        response: handoff::Response,
        /// A stream hold's initial body past [`MAX_INSTRUCT_BODY`]:
        /// `response.body` is its start and this the rest, to pass to the
        /// client as it comes before the subscription starts.
        rest: Option<B>,
    },
    /// A complete response (from an `application/grip-instruct` body).
    Whole {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: Option<String>,
        /// Headers for the client.
        headers: Vec<Header>,
        /// Body.
        body: Bytes,
    },
}

fn canonical_reason(code: u16) -> Option<String> {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(str::to_owned)
}

fn header(name: &str, value: &[u8]) -> Header {
    Header(name.to_owned(), Bytes::copy_from_slice(value))
}

/// Decides the answer. `grip` is false when GRIP is not processed (route
/// `no_grip`, trusted upstream client): the response is relayed untouched.
pub async fn interpret<B>(resp: http::Response<B>, grip: bool) -> Result<Answer<B>, GripError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(GripError::UpgradeUnsupported);
    }
    let (parts, body) = resp.into_parts();
    let code = parts.status.as_u16();
    if !grip || !is_grip_response(&parts.headers) {
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name.as_str()))
            .map(|(name, value)| header(name.as_str(), value.as_bytes()))
            .collect();
        return Ok(Answer::Relay {
            code,
            reason: canonical_reason(code),
            headers,
            body,
        });
    }
    let mut instruct = Instruct::from_headers(&parts.headers).map_err(GripError::BadInstruct)?;
    if is_instruct_body(&parts.headers) {
        let collected = read_limited(body).await?;
        instruct
            .apply_body(code, &collected)
            .map_err(GripError::BadInstruct)?;
        let response = instruct.response.take().unwrap_or_default();
        let headers: Vec<Header> = response
            .headers
            .iter()
            .filter(|(name, _)| !grip_or_hop(name))
            .map(|(name, value)| header(name, value.as_bytes()))
            .collect();
        let reason = response.reason.or_else(|| canonical_reason(response.code));
        page_now(&mut instruct);
        instruct.check().map_err(GripError::BadInstruct)?;
        if instruct.hold.is_some() {
            let response = handoff::Response {
                code: response.code,
                reason: reason.unwrap_or_default(),
                headers,
                body: response.body,
            };
            return Ok(Answer::Hold {
                instruct: Box::new(instruct),
                response,
                rest: None,
            });
        }
        return Ok(Answer::Whole {
            code: response.code,
            reason,
            headers,
            body: response.body,
        });
    }
    page_now(&mut instruct);
    instruct.check().map_err(GripError::BadInstruct)?;
    let (code, reason) = match instruct.status.clone() {
        Some((code, reason)) => (code, reason.or_else(|| canonical_reason(code))),
        None => (code, canonical_reason(code)),
    };
    let exposed = |name: &str| {
        instruct
            .expose_headers
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| e.eq_ignore_ascii_case(name)))
    };
    let held = instruct.hold.is_some();
    let headers: Vec<Header> = parts
        .headers
        .iter()
        // A held response's length is not the origin's, nor is its age a
        // cache's (instructions served from a CDN): drop both.
        .filter(|(name, _)| {
            !grip_or_hop(name.as_str())
                && exposed(name.as_str())
                && !(held && (*name == http::header::CONTENT_LENGTH || *name == http::header::AGE))
        })
        .map(|(name, value)| header(name.as_str(), value.as_bytes()))
        .collect();
    if held {
        let stream = instruct.hold == Some(HoldMode::Stream);
        let (body, rest) = read_initial(body, stream).await?;
        let response = handoff::Response {
            code,
            reason: reason.unwrap_or_default(),
            headers,
            body,
        };
        return Ok(Answer::Hold {
            instruct: Box::new(instruct),
            response,
            rest,
        });
    }
    Ok(Answer::Relay {
        code,
        reason,
        headers,
        body,
    })
}

/// The hold instructions as the handler takes them; channel names get the
/// route's `prefix`.
pub fn hold_of(instruct: Instruct, prefix: &str) -> handoff::Hold {
    handoff::Hold {
        mode: match instruct.hold {
            Some(HoldMode::Stream) => handoff::HoldMode::Stream,
            _ => handoff::HoldMode::Response,
        },
        channels: instruct
            .channels
            .into_iter()
            .map(|c| handoff::Channel {
                name: format!("{prefix}{}", c.name),
                prev_id: c.prev_id,
                filters: c.filters,
            })
            .collect(),
        timeout: instruct.timeout,
        keep_alive: instruct.keep_alive.map(|k| handoff::KeepAlive {
            data: k.data,
            timeout: k.timeout,
            idle: k.mode == KeepAliveMode::Idle,
        }),
        meta: instruct.meta,
        next_link: instruct.next_link.map(|l| (l.uri, l.timeout)),
        gone_link: instruct.gone_link,
        session: None,
    }
}

/// What a held response said about its client session (routes with
/// `session`); its detection rules apply to requests to `host`.
pub fn session_of(instruct: &Instruct, prefix: &str, host: &str) -> Option<SessionUpdate> {
    if instruct.session_id.is_none()
        && instruct.session_detect.is_empty()
        && instruct.last_ids.is_empty()
    {
        return None;
    }
    Some(SessionUpdate {
        sid: instruct.session_id.clone(),
        detect: instruct
            .session_detect
            .iter()
            .map(|d| DetectRule {
                domain: host.to_owned(),
                path_prefix: d.path_prefix.clone(),
                sid_ptr: d.sid_ptr.clone(),
                json_param: d.json_param.clone(),
            })
            .collect(),
        last_ids: instruct
            .last_ids
            .iter()
            .map(|(channel, id)| (format!("{prefix}{channel}"), id.clone()))
            .collect(),
    })
}

/// A next link without a hold pages: the response is streamed and the
/// link fetched at once (timeout 0).
fn page_now(instruct: &mut Instruct) {
    if instruct.hold.is_none() {
        if let Some(link) = &mut instruct.next_link {
            instruct.hold = Some(HoldMode::Stream);
            link.timeout = 0;
        }
    }
}

/// Reads a body that must fit in [`MAX_INSTRUCT_BODY`] (instruct bodies, and
/// the initial body of a held response).
async fn read_limited<B>(body: B) -> Result<Bytes, GripError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(tokio::time::timeout(
        INSTRUCT_BODY_TIMEOUT,
        Limited::new(body, MAX_INSTRUCT_BODY).collect(),
    )
    .await
    .map_err(|_| GripError::Body(String::from("GRIP response body took too long")))?
    .map_err(|e| {
        GripError::Body(format!(
            "GRIP response body unreadable or over {MAX_INSTRUCT_BODY} bytes: {e}"
        ))
    })?
    .to_bytes())
}

/// Reads a held response's initial body. A long-poll's must fit in
/// [`MAX_INSTRUCT_BODY`] (it is kept until the timeout); a stream's is read
/// up to that and the rest, if any, returned unread.
async fn read_initial<B>(mut body: B, stream: bool) -> Result<(Bytes, Option<B>), GripError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if !stream {
        return Ok((read_limited(body).await?, None));
    }
    let mut start = bytes::BytesMut::new();
    let read = tokio::time::timeout(INSTRUCT_BODY_TIMEOUT, async {
        while start.len() <= MAX_INSTRUCT_BODY {
            match body.frame().await {
                None => return Ok(true),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        start.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    return Err(GripError::Body(format!(
                        "GRIP response body unreadable: {}",
                        e.into()
                    )))
                }
            }
        }
        Ok(false)
    })
    .await
    .map_err(|_| GripError::Body(String::from("GRIP response body took too long")))?;
    let whole = read? || body.is_end_stream();
    Ok((start.freeze(), (!whole).then_some(body)))
}

/// `Grip-*` headers never reach clients; hop-by-hop ones are per connection.
fn grip_or_hop(name: &str) -> bool {
    is_hop_by_hop(name) || name.len() >= 5 && name[..5].eq_ignore_ascii_case("grip-")
}
