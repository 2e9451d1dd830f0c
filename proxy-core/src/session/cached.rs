//! A request on a route with `cache`: answered from the edge cache when it
//! holds a fresh answer (GRIP instructions included, so a hold starts
//! without the origin); otherwise one request per URL goes to the origin
//! while the others wait for its answer, which is stored when the origin
//! allows it. A stale answer serves while the origin fails. `PURGE` from
//! this machine removes a URL, or the objects tagged with the
//! `Surrogate-Key`s it names.

use super::forward::{forward, origin_of, Forwarded};
use super::{Prepared, Shared};
use crate::cache::policy::{self, Freshness};
use crate::cache::store::{request_value, Fetch};
use crate::cache::{Key, Lookup, Stored};
use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use holdfast_grip::instruct::MAX_INSTRUCT_BODY;
use holdfast_protocol::zhttp::{is_hop_by_hop, Header};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use std::sync::Arc;
use std::time::Duration;

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
        && prepared.method == http::Method::GET
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
    let keys: Vec<String> = ["surrogate-key", "xkey-purge"]
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
        shared.cache.purge_url(&key_of(prepared))
    } else {
        shared.cache.purge_keys(&keys)
    };
    tracing::info!(purged, keys = ?keys, path = %prepared.path, "edge cache purge");
    (200, format!("Purged {purged} objects.\n"))
}

/// Answers from the cache, or asks the origin (once per URL at a time)
/// and stores what it may.
pub(super) async fn forward_cached(
    shared: Arc<Shared>,
    prepared: Prepared,
) -> Result<Forwarded, ProxyError> {
    let key = key_of(&prepared);
    let cache = shared.cache.clone();
    let mut waited = false;
    loop {
        let (stale, guard) = match cache.lookup(&key, &prepared.headers) {
            Lookup::Fresh(stored) => {
                if let Some(origin) = origin_of(&shared, &prepared) {
                    return Ok(Forwarded {
                        response: from_cache(&stored, "HIT"),
                        origin,
                    });
                }
                (None, None)
            }
            Lookup::Stale(stored) => match cache.begin_fetch(&key) {
                Fetch::Leader(guard) => (Some(stored), Some(guard)),
                // Someone is refreshing it: the stale answer will do.
                Fetch::Follower(_) => match origin_of(&shared, &prepared) {
                    Some(origin) => {
                        return Ok(Forwarded {
                            response: from_cache(&stored, "STALE"),
                            origin,
                        })
                    }
                    None => (None, None),
                },
            },
            Lookup::Miss => match cache.begin_fetch(&key) {
                Fetch::Leader(guard) => (None, Some(guard)),
                Fetch::Follower(mut done) if !waited => {
                    waited = true;
                    let _ = tokio::time::timeout(COLLAPSE_WAIT, done.changed()).await;
                    continue;
                }
                // Waited once and still nothing stored: ask on our own.
                Fetch::Follower(_) => (None, None),
            },
        };
        let vary_request = prepared.headers.clone();
        let fallback = stale.as_ref().and_then(|s| {
            let origin = origin_of(&shared, &prepared)?;
            Some((s.clone(), origin))
        });
        let result = forward(shared.clone(), prepared).await;
        let failed = match &result {
            Ok(f) => f.response.status().is_server_error(),
            Err(_) => true,
        };
        if failed {
            if let Some((stored, origin)) = fallback {
                cache.served_stale();
                tracing::info!(path = %key.path, "origin failed; serving the stale cached answer");
                return Ok(Forwarded {
                    response: from_cache(&stored, "STALE"),
                    origin,
                });
            }
        }
        let forwarded = result?;
        let stored = store(&shared, key, &vary_request, forwarded).await;
        drop(guard);
        return stored;
    }
}

/// Stores the origin's answer when it may be (its body read whole first),
/// and returns it for the client.
async fn store(
    shared: &Shared,
    key: Key,
    request: &[Header],
    forwarded: Forwarded,
) -> Result<Forwarded, ProxyError> {
    let Forwarded { response, origin } = forwarded;
    let (mut parts, body) = response.into_parts();
    let freshness = policy::storable(parts.status.as_u16(), &parts.headers);
    let grip = parts
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("grip-"));
    let limit = if grip { MAX_INSTRUCT_BODY } else { MAX_OBJECT };
    let bounded = body.size_hint().upper().is_some_and(|n| n <= limit as u64);
    let Some(freshness) = freshness.filter(|_| grip || bounded) else {
        // Not stored: passed on as it comes.
        strip_surrogate(&mut parts.headers);
        mark(&mut parts.headers, "MISS");
        return Ok(Forwarded {
            response: http::Response::from_parts(parts, body),
            origin,
        });
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
    let stored = stored_answer(
        parts.status.as_u16(),
        &parts.headers,
        bytes,
        freshness,
        request,
    );
    let response = from_cache(&stored, "MISS");
    shared.cache.store(key, stored);
    Ok(Forwarded { response, origin })
}

/// The object to store for an answer.
fn stored_answer(
    status: u16,
    headers: &http::HeaderMap,
    body: bytes::Bytes,
    freshness: Freshness,
    request: &[Header],
) -> Stored {
    let vary = policy::vary_names(headers)
        .into_iter()
        .map(|name| {
            let value = request_value(request, &name);
            (name, value)
        })
        .collect();
    let keys = policy::surrogate_keys(headers);
    let mut kept = http::HeaderMap::new();
    for (name, value) in headers {
        if !is_hop_by_hop(name.as_str()) && name != http::header::CONTENT_LENGTH {
            kept.append(name.clone(), value.clone());
        }
    }
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
