//! A request on a route with `cache`, from its arrival to its answer:
//! answered from the edge cache when it holds a fresh answer (GRIP
//! instructions included, so a hold starts without the origin); otherwise
//! one request per URL goes to the origin while the others wait for its
//! outcome ([`super::decide`]): the answer stored, or shared with them
//! when it may not be stored, or (a large or personal answer) each asks
//! on its own. The origin is asked without the client's conditional
//! headers, so the whole answer can be stored; the cache then answers
//! conditionals (304) and `HEAD` itself. A stale answer serves at once
//! while one request refreshes it (`stale-while-revalidate`, also after a
//! soft purge), and while the origin fails (`stale-if-error`).

use super::answer::{
    for_client, from_cache, is_grip, mark, revalidated, stored_answer, strip_surrogate, validators,
};
use super::decide::{decide, Decision};
use super::policy::{self, Freshness};
use super::store::{request_value, FetchGuard, Key, Lookup, Outcome, Stored};
use crate::error::ProxyError;
use crate::origin::body::OriginBody;
use crate::origin::forward::{forward, origin_of, Forwarded};
use crate::prepare::Prepared;
use crate::shared::Shared;
use holdfast_grip::instruct::MAX_INSTRUCT_BODY;
use holdfast_protocol::zhttp::Header;
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

/// Whether the cache takes part in this request.
pub(crate) fn applies(prepared: &Prepared) -> bool {
    prepared.route.cache
        && (prepared.method == http::Method::GET || prepared.method == http::Method::HEAD)
        && !prepared.websocket
        && prepared.streaming_body.is_none()
        && !policy::personal(&prepared.headers)
}

/// The cache's key for a request: the Host the origin sees, and the path.
pub(super) fn key_of(prepared: &Prepared) -> Key {
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

/// Request headers that make a request conditional; the origin is asked
/// without them and the cache answers them from what it holds.
const CONDITIONAL: &[&str] = &["if-none-match", "if-modified-since"];

/// Answers from the cache, or asks the origin (once per URL at a time)
/// and stores what it may: the edge cache's entry point for a request
/// [`applies`] to.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    mut prepared: Prepared,
) -> Result<Forwarded, ProxyError> {
    let key = key_of(&prepared);
    let ask = Asked::take_from(&mut prepared);
    if ask.head {
        return head(&shared, prepared, &key, &ask).await;
    }
    let deadline = Instant::now() + COLLAPSE_WAIT;
    loop {
        let (guard, stale) = match decide(&shared.cache, &key, &prepared.headers, deadline) {
            Decision::Hit(stored) => match ask.answer(&shared, &prepared, &stored, "HIT") {
                Some(answer) => return Ok(answer),
                None => (None, None),
            },
            Decision::Stale { stored, refresh } => {
                if let (Some(guard), Some(replay)) = (refresh, prepared.replay()) {
                    let stale = stored.clone();
                    tokio::spawn(refresh_in_background(
                        shared.clone(),
                        replay,
                        key.clone(),
                        guard,
                        stale,
                    ));
                }
                match ask.answer(&shared, &prepared, &stored, "STALE") {
                    Some(answer) => return Ok(answer),
                    None => (None, None),
                }
            }
            Decision::Revalidate { guard, stale } => (Some(guard), Some(stale)),
            Decision::Fetch(guard) => (Some(guard), None),
            Decision::Wait(mut done) => {
                let _ = tokio::time::timeout_at(deadline, done.changed()).await;
                let outcome = done.borrow().clone();
                match outcome {
                    Outcome::Shared(answer) => {
                        match ask.answer(&shared, &prepared, &answer, "MISS") {
                            Some(answer) => return Ok(answer),
                            None => (None, None),
                        }
                    }
                    Outcome::Pass => (None, None),
                    // Stored: found on the next look; the fetch failed:
                    // the next waiter fetches.
                    Outcome::Stored | Outcome::Pending => continue,
                }
            }
            Decision::Pass => (None, None),
        };
        return fetch(&shared, prepared, key, guard, stale, &ask).await;
    }
}

/// A `HEAD` is answered from a fresh GET's answer; otherwise it goes to
/// the origin as it is, and nothing is stored.
async fn head(
    shared: &Arc<Shared>,
    prepared: Prepared,
    key: &Key,
    ask: &Asked,
) -> Result<Forwarded, ProxyError> {
    if let Lookup::Fresh(stored) = shared.cache.lookup(key, &prepared.headers) {
        if let Some(answer) = ask.answer(shared, &prepared, &stored, "HIT") {
            return Ok(answer);
        }
    }
    let mut forwarded = forward(shared.clone(), prepared).await?;
    mark(forwarded.response.headers_mut(), "MISS");
    Ok(forwarded)
}

/// What the client asked beyond the URL: only the head, or only if the
/// answer changed.
struct Asked {
    head: bool,
    /// Its `If-None-Match` / `If-Modified-Since`.
    conditions: Vec<Header>,
}

impl Asked {
    /// What `prepared` asks beyond the URL, its conditional headers taken
    /// out (the origin is asked without them).
    fn take_from(prepared: &mut Prepared) -> Asked {
        let conditional =
            |Header(n, _): &Header| CONDITIONAL.iter().any(|c| n.eq_ignore_ascii_case(c));
        let conditions = prepared
            .headers
            .iter()
            .filter(|h| conditional(h))
            .cloned()
            .collect();
        prepared.headers.retain(|h| !conditional(h));
        Asked {
            head: prepared.method == http::Method::HEAD,
            conditions,
        }
    }

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
        let mut response = for_client(stored, &self.conditions, verdict);
        if self.head {
            *response.body_mut() = OriginBody::Stored(None);
        }
        Some(Forwarded { response, origin })
    }
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
    match kept {
        Some(kept) => Ok(Forwarded {
            response: for_client(&kept, &ask.conditions, "MISS"),
            origin: forwarded.origin,
        }),
        None => Ok(forwarded),
    }
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
    let answer = |stored: &Stored| for_client(stored, &ask.conditions, "MISS");
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
async fn refresh_in_background(
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
    let grip = is_grip(&parts.headers);
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
