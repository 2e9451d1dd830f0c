//! What the client gets for an origin's response: relayed as it is, or, when
//! it carries GRIP instructions, with them applied (`Grip-Status`,
//! `Grip-Expose-Headers`, an instruct body's response) and every `Grip-*`
//! header removed. Holding the connection is not done here: a response that
//! asks for a hold is refused with 501 until the handler can take it.

use crate::error::ProxyError;
use crate::grip::instruct::{Instruct, MAX_INSTRUCT_BODY};
use crate::grip::{is_grip_response, is_instruct_body};
use bytes::Bytes;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// How long an instruct body may take to arrive.
const INSTRUCT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The response to send to the client.
pub enum Answer {
    /// Status and headers decided here; the origin's body follows as it comes.
    Relay {
        /// Status code.
        code: u16,
        /// Reason phrase.
        reason: Option<String>,
        /// Headers for the client.
        headers: Vec<Header>,
        /// The origin's body.
        body: Incoming,
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
pub async fn interpret(resp: http::Response<Incoming>, grip: bool) -> Result<Answer, ProxyError> {
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(ProxyError::UpgradeUnsupported);
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
    let mut instruct = Instruct::from_headers(&parts.headers).map_err(ProxyError::BadInstruct)?;
    if is_instruct_body(&parts.headers) {
        let collected = tokio::time::timeout(
            INSTRUCT_BODY_TIMEOUT,
            Limited::new(body, MAX_INSTRUCT_BODY).collect(),
        )
        .await
        .map_err(|_| ProxyError::origin_body("instruct body took too long"))?
        .map_err(|e| {
            ProxyError::origin_body(&format!(
                "instruct body unreadable or over {MAX_INSTRUCT_BODY} bytes: {e}"
            ))
        })?
        .to_bytes();
        instruct
            .apply_body(code, &collected)
            .map_err(ProxyError::BadInstruct)?;
        if instruct.hold.is_some() || instruct.next_link.is_some() {
            return Err(ProxyError::HoldUnsupported);
        }
        let response = instruct.response.unwrap_or_default();
        let headers = response
            .headers
            .iter()
            .filter(|(name, _)| !grip_or_hop(name))
            .map(|(name, value)| header(name, value.as_bytes()))
            .collect();
        let reason = response.reason.or_else(|| canonical_reason(response.code));
        return Ok(Answer::Whole {
            code: response.code,
            reason,
            headers,
            body: response.body,
        });
    }
    if instruct.hold.is_some() || instruct.next_link.is_some() {
        return Err(ProxyError::HoldUnsupported);
    }
    let (code, reason) = match instruct.status {
        Some((code, reason)) => (code, reason.or_else(|| canonical_reason(code))),
        None => (code, canonical_reason(code)),
    };
    let exposed = |name: &str| {
        instruct
            .expose_headers
            .as_ref()
            .is_none_or(|list| list.iter().any(|e| e.eq_ignore_ascii_case(name)))
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !grip_or_hop(name.as_str()) && exposed(name.as_str()))
        .map(|(name, value)| header(name.as_str(), value.as_bytes()))
        .collect();
    Ok(Answer::Relay {
        code,
        reason,
        headers,
        body,
    })
}

/// `Grip-*` headers never reach clients; hop-by-hop ones are per connection.
fn grip_or_hop(name: &str) -> bool {
    is_hop_by_hop(name) || name.len() >= 5 && name[..5].eq_ignore_ascii_case("grip-")
}
