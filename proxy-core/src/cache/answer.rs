//! Stored answers as clients get them: the response made from an object
//! (its `Age`, the verdict in `X-Cache`, no surrogate headers), `304 Not
//! Modified` when the client's conditions hold, the object to store for an
//! origin's answer, and revalidation (the validators to ask with, and an
//! object refreshed by the origin's `304`).

use super::policy::{self, Freshness};
use super::store::{request_value, Stored};
use crate::origin::body::OriginBody;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};

/// Headers meant for the cache itself, never for clients.
const SURROGATE: &[&str] = &["surrogate-control", "surrogate-key"];

/// Whether a stored answer carries GRIP instructions (which start holds,
/// so they are never answered with `304`).
pub(super) fn is_grip(headers: &http::HeaderMap) -> bool {
    headers.keys().any(|n| n.as_str().starts_with("grip-"))
}

/// The answer for a client whose conditions are `conditions`: `304` when
/// they hold (not for GRIP answers), else the whole stored answer.
pub(super) fn for_client(
    stored: &Stored,
    conditions: &[Header],
    verdict: &str,
) -> http::Response<OriginBody> {
    if !is_grip(&stored.headers) && not_modified(conditions, &stored.headers) {
        not_modified_response(stored, verdict)
    } else {
        from_cache(stored, verdict)
    }
}

/// Whether the client's conditions hold for a stored answer: its
/// `If-None-Match` names the answer's `ETag` (weak comparison, or `*`), or,
/// without `If-None-Match`, the answer's `Last-Modified` is no later than
/// `If-Modified-Since` (RFC 9110 13.1).
pub(super) fn not_modified(conditions: &[Header], headers: &http::HeaderMap) -> bool {
    let weak = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    if let Some(none_match) = request_value(conditions, "if-none-match") {
        let Some(etag) = headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let etag = weak(etag);
        return String::from_utf8_lossy(&none_match)
            .split(',')
            .any(|tag| tag.trim() == "*" || weak(tag) == etag);
    }
    let since = request_value(conditions, "if-modified-since")
        .and_then(|v| httpdate::parse_http_date(std::str::from_utf8(&v).ok()?.trim()).ok());
    let modified = headers
        .get(http::header::LAST_MODIFIED)
        .and_then(|v| httpdate::parse_http_date(v.to_str().ok()?.trim()).ok());
    matches!((since, modified), (Some(since), Some(modified)) if modified <= since)
}

/// `304 Not Modified` for a stored answer: its validators and caching
/// headers, no body.
pub(super) fn not_modified_response(stored: &Stored, verdict: &str) -> http::Response<OriginBody> {
    const KEPT: &[http::header::HeaderName] = &[
        http::header::ETAG,
        http::header::LAST_MODIFIED,
        http::header::CACHE_CONTROL,
        http::header::EXPIRES,
        http::header::VARY,
        http::header::CONTENT_LOCATION,
        http::header::DATE,
    ];
    let full = from_cache(stored, verdict);
    let mut response = http::Response::new(OriginBody::Stored(None));
    *response.status_mut() = http::StatusCode::NOT_MODIFIED;
    for name in KEPT.iter().chain([&http::header::AGE]) {
        for value in full.headers().get_all(name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    mark(response.headers_mut(), verdict);
    response
}

/// The validators of a stored answer, as a revalidation asks with them.
pub(super) fn validators(stored: &Stored) -> Vec<Header> {
    let mut out = Vec::new();
    let mut pass = |from: http::header::HeaderName, to: &str| {
        if let Some(value) = stored.headers.get(from) {
            out.push(Header(
                to.to_owned(),
                bytes::Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    };
    pass(http::header::ETAG, "if-none-match");
    pass(http::header::LAST_MODIFIED, "if-modified-since");
    out
}

/// A stale answer the origin said is unchanged (`304`): its headers
/// updated with the 304's (RFC 9111 4.3.4) and its freshness from them;
/// `None` when it may no longer be stored.
pub(super) fn revalidated(
    stale: &Stored,
    not_modified: &http::HeaderMap,
    request: &[Header],
) -> Option<Stored> {
    let mut headers = stale.headers.clone();
    for name in not_modified.keys() {
        if is_hop_by_hop(name.as_str()) || name == http::header::CONTENT_LENGTH {
            continue;
        }
        headers.remove(name);
        for value in not_modified.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let freshness = policy::storable(stale.status, &headers)?;
    Some(stored_answer(
        stale.status,
        &headers,
        stale.body.clone(),
        freshness,
        request,
    ))
}

/// The object to store for an answer.
pub(super) fn stored_answer(
    status: u16,
    headers: &http::HeaderMap,
    body: bytes::Bytes,
    freshness: Freshness,
    request: &[Header],
) -> Stored {
    // Everything kept is copied into buffers of its own size: the origin's
    // header values and body, and the request's, may be slices of whole
    // read buffers, which would stay alive with them.
    let vary = policy::vary_names(headers)
        .into_iter()
        .map(|name| {
            let value = request_value(request, &name).map(|v| bytes::Bytes::copy_from_slice(&v));
            (name, value)
        })
        .collect();
    let keys = policy::surrogate_keys(headers);
    let mut kept = http::HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_hop_by_hop(name.as_str()) && name != http::header::CONTENT_LENGTH {
            if let Ok(value) = http::HeaderValue::from_bytes(value.as_bytes()) {
                kept.append(name.clone(), value);
            }
        }
    }
    let body = bytes::Bytes::copy_from_slice(&body);
    Stored::new(status, kept, body, freshness, vary, keys)
}

/// A stored answer as the origin's response, with its `Age` and the
/// cache's verdict in `X-Cache`.
pub(super) fn from_cache(stored: &Stored, verdict: &str) -> http::Response<OriginBody> {
    let mut response = http::Response::new(OriginBody::Stored(Some(stored.body.clone())));
    *response.status_mut() =
        http::StatusCode::from_u16(stored.status).unwrap_or(http::StatusCode::OK);
    let headers = response.headers_mut();
    *headers = stored.headers.clone();
    strip_surrogate(headers);
    // Age: what it had when stored, plus its time here.
    let upstream = headers
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let age = upstream + stored.stored_at.elapsed().as_secs();
    headers.insert(http::header::AGE, http::HeaderValue::from(age));
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(stored.body.len()),
    );
    mark(headers, verdict);
    response
}

pub(super) fn strip_surrogate(headers: &mut http::HeaderMap) {
    for name in SURROGATE {
        headers.remove(*name);
    }
}

/// Adds the verdict to `X-Cache`, after any an upstream cache gave (the
/// last one is the cache nearest the client, as on Fastly).
pub(super) fn mark(headers: &mut http::HeaderMap, verdict: &str) {
    let value = match headers.get("x-cache").and_then(|v| v.to_str().ok()) {
        Some(upstream) => format!("{upstream}, {verdict}"),
        None => verdict.to_owned(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        headers.insert("x-cache", value);
    }
}
