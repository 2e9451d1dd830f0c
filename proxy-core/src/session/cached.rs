//! A request on a route with `cache`: answered from the edge cache when it
//! holds a fresh answer (GRIP instructions included, so a hold starts
//! without the origin); otherwise one request per URL goes to the origin
//! while the others wait for its outcome: the answer stored, or shared
//! with them when it may not be stored, or (a large or personal answer)
//! each asks on its own. The origin is asked without the client's
//! conditional headers, so the whole answer can be stored; the cache then
//! answers conditionals (304) and `HEAD` itself. A stale answer serves at
//! once while one request refreshes it (`stale-while-revalidate`, also
//! after a soft purge), and while the origin fails (`stale-if-error`).
//! `PURGE` from this machine removes a URL, or the objects tagged with the
//! `Surrogate-Key`s it names; with `Fastly-Soft-Purge: 1` (or
//! `xkey-softpurge`) it marks them stale instead.

use super::forward::{forward, origin_of, Forwarded};
use super::{Prepared, Shared};
use crate::cache::policy::{self, Freshness};
use crate::cache::store::FetchGuard;
use crate::cache::store::{request_value, Fetch, Outcome};
use crate::cache::{Key, Lookup, Stored};
use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use holdfast_grip::instruct::MAX_INSTRUCT_BODY;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a request waits for another's fetch of the same URL.
const COLLAPSE_WAIT: Duration = Duration::from_secs(30);

/// How long a cacheable answer's body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer stored (GRIP answers: what the proxy reads of their
/// body anyway, [`MAX_INSTRUCT_BODY`]); larger ones pass through.
const MAX_OBJECT: usize = 1024 * 1024;

/// Headers meant for the cache itself, never for clients.
const SURROGATE: &[&str] = &["surrogate-control", "surrogate-key"];

/// Whether the cache takes part in this request.
pub(super) fn applies(prepared: &Prepared) -> bool {
    prepared.route.cache
        && (prepared.method == http::Method::GET || prepared.method == http::Method::HEAD)
        && !prepared.websocket
        && prepared.streaming_body.is_none()
        && !policy::personal(&prepared.headers)
}

/// Whether this request is a purge of the edge cache (a `PURGE` on a
/// `cache` route).
pub(super) fn is_purge(prepared: &Prepared) -> bool {
    prepared.route.cache && prepared.method.as_str() == "PURGE"
}

/// The cache's key for a request: the Host the origin sees, and the path.
fn key_of(prepared: &Prepared) -> Key {
    let host = prepared.route.as_host.clone().unwrap_or_else(|| {
        request_value(&prepared.headers, "host")
            .map(|h| String::from_utf8_lossy(&h).into_owned())
            .unwrap_or_default()
    });
    Key {
        host: host.to_ascii_lowercase(),
        path: prepared.path.clone(),
    }
}

/// Purges what a `PURGE` names: `Surrogate-Key: <keys>` (or `xkey-purge`,
/// as for Varnish), else the URL. Only from this machine. The status and
/// text for the client.
pub(super) fn purge(shared: &Shared, prepared: &Prepared) -> (u16, String) {
    let local = prepared
        .peer
        .as_deref()
        .and_then(|p| p.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !local {
        let peer = prepared.peer.as_deref().unwrap_or("an unknown address");
        return (403, format!("Purging is not allowed from {peer}.\n"));
    }
    let soft = request_value(&prepared.headers, "fastly-soft-purge")
        .is_some_and(|v| &v[..] == b"1")
        || request_value(&prepared.headers, "xkey-softpurge").is_some();
    let keys: Vec<String> = ["surrogate-key", "xkey-purge", "xkey-softpurge"]
        .iter()
        .filter_map(|name| request_value(&prepared.headers, name))
        .flat_map(|v| {
            String::from_utf8_lossy(&v)
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let purged = if keys.is_empty() {
        shared.cache.purge_url(&key_of(prepared), soft)
    } else {
        shared.cache.purge_keys(&keys, soft)
    };
    tracing::info!(purged, keys = ?keys, soft, path = %prepared.path, "edge cache purge");
    (200, format!("Purged {purged} objects.\n"))
}

/// Request headers that make a request conditional; the origin is asked
/// without them and the cache answers them from what it holds.
const CONDITIONAL: &[&str] = &["if-none-match", "if-modified-since"];

/// Answers from the cache, or asks the origin (once per URL at a time)
/// and stores what it may.
pub(super) async fn forward_cached(
    shared: Arc<Shared>,
    mut prepared: Prepared,
) -> Result<Forwarded, ProxyError> {
    let key = key_of(&prepared);
    let cache = shared.cache.clone();
    let ask = Asked {
        head: prepared.method == http::Method::HEAD,
        conditions: prepared
            .headers
            .iter()
            .filter(|Header(n, _)| CONDITIONAL.iter().any(|c| n.eq_ignore_ascii_case(c)))
            .cloned()
            .collect(),
    };
    prepared
        .headers
        .retain(|Header(n, _)| !CONDITIONAL.iter().any(|c| n.eq_ignore_ascii_case(c)));
    if ask.head {
        // A HEAD is answered from a fresh GET's answer; otherwise it goes
        // to the origin as it is, and nothing is stored.
        if let Lookup::Fresh(stored) = cache.lookup(&key, &prepared.headers) {
            if let Some(answer) = ask.answer(&shared, &prepared, &stored, "HIT") {
                return Ok(answer);
            }
        }
        let mut forwarded = forward(shared.clone(), prepared).await?;
        mark(forwarded.response.headers_mut(), "MISS");
        return Ok(forwarded);
    }
    let deadline = Instant::now() + COLLAPSE_WAIT;
    loop {
        let now = Instant::now();
        let (guard, stale) = match cache.lookup(&key, &prepared.headers) {
            Lookup::Fresh(stored) => match ask.answer(&shared, &prepared, &stored, "HIT") {
                Some(answer) => return Ok(answer),
                None => (None, None),
            },
            Lookup::Stale(stored) if stored.may_refresh_in_background(now) => {
                if let Fetch::Leader(guard) = cache.begin_fetch(&key) {
                    if let Some(replay) = prepared.replay() {
                        let stale = stored.clone();
                        tokio::spawn(refresh(shared.clone(), replay, key.clone(), guard, stale));
                    }
                }
                match ask.answer(&shared, &prepared, &stored, "STALE") {
                    Some(answer) => return Ok(answer),
                    None => (None, None),
                }
            }
            Lookup::Stale(stored) => match cache.begin_fetch(&key) {
                Fetch::Leader(guard) => (Some(guard), Some(stored)),
                // Someone is refreshing it: the stale answer will do.
                Fetch::Follower(_) => match ask.answer(&shared, &prepared, &stored, "STALE") {
                    Some(answer) => return Ok(answer),
                    None => (None, None),
                },
            },
            Lookup::Miss => match cache.begin_fetch(&key) {
                Fetch::Leader(guard) => (Some(guard), None),
                Fetch::Follower(mut done) if now < deadline => {
                    let _ = tokio::time::timeout_at(deadline, done.changed()).await;
                    let outcome = done.borrow().clone();
                    match outcome {
                        Outcome::Shared(answer) => {
                            if let Some(answer) = ask.answer(&shared, &prepared, &answer, "MISS") {
                                return Ok(answer);
                            }
                            (None, None)
                        }
                        Outcome::Pass => (None, None),
                        // Stored: found on the next look; the fetch failed:
                        // the next waiter fetches.
                        Outcome::Stored | Outcome::Pending => continue,
                    }
                }
                // Waited long enough: ask on our own.
                Fetch::Follower(_) => (None, None),
            },
        };
        return fetch(&shared, prepared, key, guard, stale, &ask).await;
    }
}

/// What the client asked beyond the URL: only the head, or only if the
/// answer changed.
struct Asked {
    head: bool,
    /// Its `If-None-Match` / `If-Modified-Since`.
    conditions: Vec<Header>,
}

impl Asked {
    /// A stored answer as the client asked for it: `304` when its
    /// conditions hold (not for GRIP answers, which start holds), the
    /// head alone for `HEAD`. `None` when the request cannot be answered
    /// without the origin (no target to name).
    fn answer(
        &self,
        shared: &Shared,
        prepared: &Prepared,
        stored: &Stored,
        verdict: &str,
    ) -> Option<Forwarded> {
        let origin = origin_of(shared, prepared)?;
        let grip = stored
            .headers
            .keys()
            .any(|n| n.as_str().starts_with("grip-"));
        let response = if !grip && not_modified(&self.conditions, &stored.headers) {
            not_modified_response(stored, verdict)
        } else {
            let mut response = from_cache(stored, verdict);
            if self.head {
                *response.body_mut() = OriginBody::Stored(None);
            }
            response
        };
        Some(Forwarded { response, origin })
    }
}

/// Whether the client's conditions hold for a stored answer: its
/// `If-None-Match` names the answer's `ETag` (weak comparison, or `*`), or,
/// without `If-None-Match`, the answer's `Last-Modified` is no later than
/// `If-Modified-Since` (RFC 9110 13.1).
fn not_modified(conditions: &[Header], headers: &http::HeaderMap) -> bool {
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
fn not_modified_response(stored: &Stored, verdict: &str) -> http::Response<OriginBody> {
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

/// Asks the origin as the fetcher of `key` (or on its own, without a
/// guard), serves `stale` if the origin fails, stores what it may, and
/// tells the waiters.
async fn fetch(
    shared: &Arc<Shared>,
    mut prepared: Prepared,
    key: Key,
    guard: Option<FetchGuard>,
    stale: Option<Arc<Stored>>,
    ask: &Asked,
) -> Result<Forwarded, ProxyError> {
    let vary_request = prepared.headers.clone();
    if let Some(stale) = &stale {
        prepared.headers.extend(validators(stale));
    }
    let fallback = stale.and_then(|s| Some((s, origin_of(shared, &prepared)?)));
    let result = match (forward(shared.clone(), prepared).await, &fallback) {
        // Unchanged: the stale answer, fresh again, without its body resent.
        (Ok(forwarded), Some((stale, _)))
            if forwarded.response.status() == http::StatusCode::NOT_MODIFIED =>
        {
            let renewed = revalidated(stale, forwarded.response.headers(), &vary_request);
            return Ok(renew(shared, key, guard, renewed, stale, forwarded, ask));
        }
        (result, _) => result,
    };
    let failed = match &result {
        Ok(f) => f.response.status().is_server_error(),
        Err(_) => true,
    };
    if let (true, Some((stored, origin))) = (failed, &fallback) {
        shared.cache.served_stale();
        tracing::info!(path = %key.path, "origin failed; serving the stale cached answer");
        let response = from_cache(stored, "STALE");
        return Ok(Forwarded {
            response,
            origin: origin.clone(),
        });
    }
    // An unreachable origin: the guard drops unfinished, the next waiter
    // tries.
    let forwarded = result?;
    let waiters = guard.as_ref().is_some_and(FetchGuard::has_waiters);
    let (forwarded, outcome, kept) = store(shared, key, &vary_request, forwarded, waiters).await?;
    if let Some(guard) = guard {
        guard.finish(outcome);
    }
    // The client's conditions, against what was just kept.
    if let Some(kept) = kept {
        let grip = kept.headers.keys().any(|n| n.as_str().starts_with("grip-"));
        if !grip && not_modified(&ask.conditions, &kept.headers) {
            return Ok(Forwarded {
                response: not_modified_response(&kept, "MISS"),
                origin: forwarded.origin,
            });
        }
    }
    Ok(forwarded)
}

/// The validators of a stored answer, as a revalidation asks with them.
fn validators(stored: &Stored) -> Vec<Header> {
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
fn revalidated(
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

/// Keeps (and answers with) a revalidated answer; when the origin's 304
/// made it unstorable, the stale answer still goes to this client.
fn renew(
    shared: &Shared,
    key: Key,
    guard: Option<FetchGuard>,
    renewed: Option<Stored>,
    stale: &Stored,
    forwarded: Forwarded,
    ask: &Asked,
) -> Forwarded {
    let answer = |stored: &Stored| {
        let grip = stored
            .headers
            .keys()
            .any(|n| n.as_str().starts_with("grip-"));
        if !grip && not_modified(&ask.conditions, &stored.headers) {
            not_modified_response(stored, "MISS")
        } else {
            from_cache(stored, "MISS")
        }
    };
    let response = match renewed {
        Some(renewed) => {
            let response = answer(&renewed);
            shared.cache.store(key, renewed);
            if let Some(guard) = guard {
                guard.finish(Outcome::Stored);
            }
            response
        }
        None => answer(stale),
    };
    Forwarded {
        response,
        origin: forwarded.origin,
    }
}

/// Refreshes a stale answer in the background (`stale-while-revalidate`),
/// asking with its validators; an error answer leaves it in place.
async fn refresh(
    shared: Arc<Shared>,
    mut prepared: Prepared,
    key: Key,
    guard: FetchGuard,
    stale: Arc<Stored>,
) {
    let vary_request = prepared.headers.clone();
    prepared.headers.extend(validators(&stale));
    match forward(shared.clone(), prepared).await {
        Ok(forwarded) if forwarded.response.status() == http::StatusCode::NOT_MODIFIED => {
            if let Some(renewed) = revalidated(&stale, forwarded.response.headers(), &vary_request)
            {
                shared.cache.store(key, renewed);
                guard.finish(Outcome::Stored);
            }
        }
        Ok(forwarded) if !forwarded.response.status().is_server_error() => {
            match store(&shared, key, &vary_request, forwarded, false).await {
                Ok((_, outcome, _)) => guard.finish(outcome),
                Err(err) => tracing::info!("background refresh failed: {err}"),
            }
        }
        Ok(forwarded) => {
            tracing::info!(status = %forwarded.response.status(), "background refresh: the origin failed; the stale answer stays")
        }
        Err(err) => tracing::info!("background refresh failed: {err}"),
    }
}

/// Stores the origin's answer when it may be (its body read whole first),
/// and returns it for the client, with what waiters should do and the
/// answer kept (stored or shared). An answer
/// that may not be stored is read whole and shared with `waiters` when it
/// is small and not personal; otherwise it passes on as it comes.
async fn store(
    shared: &Shared,
    key: Key,
    request: &[Header],
    forwarded: Forwarded,
    waiters: bool,
) -> Result<(Forwarded, Outcome, Option<Arc<Stored>>), ProxyError> {
    let Forwarded { response, origin } = forwarded;
    let (mut parts, body) = response.into_parts();
    let freshness = policy::storable(parts.status.as_u16(), &parts.headers);
    let grip = parts
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("grip-"));
    let limit = if grip { MAX_INSTRUCT_BODY } else { MAX_OBJECT };
    let bounded = body.size_hint().upper().is_some_and(|n| n <= limit as u64);
    let shareable = waiters && bounded && !grip && policy::shareable(&parts.headers);
    let keep = match freshness.filter(|_| grip || bounded) {
        Some(freshness) => Some(freshness),
        None if shareable => None,
        None => {
            // Not stored: passed on as it comes.
            strip_surrogate(&mut parts.headers);
            mark(&mut parts.headers, "MISS");
            let response = http::Response::from_parts(parts, body);
            return Ok((Forwarded { response, origin }, Outcome::Pass, None));
        }
    };
    let bytes = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ProxyError::origin_body("cacheable answer body took too long"))?
        .map_err(|e| {
            ProxyError::origin_body(&format!(
                "cacheable answer body unreadable or over {limit} bytes: {e}"
            ))
        })?
        .to_bytes();
    // A shared answer is kept only for the waiters: fresh for no time.
    let freshness = keep.unwrap_or(Freshness {
        ttl: Duration::ZERO,
        grace: Duration::ZERO,
        swr: Duration::ZERO,
    });
    let stored = stored_answer(
        parts.status.as_u16(),
        &parts.headers,
        bytes,
        freshness,
        request,
    );
    let response = from_cache(&stored, "MISS");
    let kept = Arc::new(stored);
    let outcome = if keep.is_some() {
        shared.cache.store(key, Stored::clone(&kept));
        Outcome::Stored
    } else {
        Outcome::Shared(kept.clone())
    };
    Ok((Forwarded { response, origin }, outcome, Some(kept)))
}

/// The object to store for an answer.
fn stored_answer(
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
fn from_cache(stored: &Stored, verdict: &str) -> http::Response<OriginBody> {
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

fn strip_surrogate(headers: &mut http::HeaderMap) {
    for name in SURROGATE {
        headers.remove(*name);
    }
}

/// Adds the verdict to `X-Cache`, after any an upstream cache gave (the
/// last one is the cache nearest the client, as on Fastly).
fn mark(headers: &mut http::HeaderMap, verdict: &str) {
    let value = match headers.get("x-cache").and_then(|v| v.to_str().ok()) {
        Some(upstream) => format!("{upstream}, {verdict}"),
        None => verdict.to_owned(),
    };
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        headers.insert("x-cache", value);
    }
}
