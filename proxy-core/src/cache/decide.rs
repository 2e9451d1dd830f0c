//! What the edge cache does with a request for a URL, given what it holds
//! and who else is asking the origin for it: answer it (fresh, or stale
//! within `stale-while-revalidate`, the refresh left to one request),
//! revalidate a stale answer as the one request that asks the origin, fetch
//! a missing one as that request, wait for another's fetch (collapsing),
//! or, having waited long enough, ask on its own (pass).

use super::store::{Cache, Fetch, FetchGuard, Key, Lookup, Outcome, Stored};
use holdfast_protocol::zhttp::Header;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// What to do with a request.
pub(super) enum Decision {
    /// A fresh answer: serve it.
    Hit(Arc<Stored>),
    /// A stale answer that may serve now: serve it; with a guard, this
    /// request is the one that refreshes it, in the background.
    Stale {
        stored: Arc<Stored>,
        refresh: Option<FetchGuard>,
    },
    /// A stale answer past `stale-while-revalidate`: ask the origin as the
    /// fetcher of the URL, with its validators, and keep it for the
    /// origin's failure (`stale-if-error`).
    Revalidate {
        guard: FetchGuard,
        stale: Arc<Stored>,
    },
    /// Nothing usable: ask the origin as the fetcher of the URL.
    Fetch(FetchGuard),
    /// Another request is fetching it: wait for its outcome.
    Wait(watch::Receiver<Outcome>),
    /// Waited for others long enough (`deadline`): ask on its own.
    Pass,
}

/// Decides for a request of `key` with these headers (its `Vary`
/// variant), when waiting for another's fetch may last until `deadline`.
pub(super) fn decide(
    cache: &Arc<Cache>,
    key: &Key,
    request: &[Header],
    deadline: Instant,
) -> Decision {
    let now = Instant::now();
    match cache.lookup(key, request) {
        Lookup::Fresh(stored) => Decision::Hit(stored),
        Lookup::Stale(stored) if stored.may_refresh_in_background(now) => {
            let refresh = match cache.begin_fetch(key) {
                Fetch::Leader(guard) => Some(guard),
                Fetch::Follower(_) => None,
            };
            Decision::Stale { stored, refresh }
        }
        Lookup::Stale(stored) => match cache.begin_fetch(key) {
            Fetch::Leader(guard) => Decision::Revalidate {
                guard,
                stale: stored,
            },
            // Someone is refreshing it: the stale answer will do.
            Fetch::Follower(_) => Decision::Stale {
                stored,
                refresh: None,
            },
        },
        Lookup::Miss => match cache.begin_fetch(key) {
            Fetch::Leader(guard) => Decision::Fetch(guard),
            Fetch::Follower(done) if now < deadline => Decision::Wait(done),
            Fetch::Follower(_) => Decision::Pass,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::Freshness;
    use bytes::Bytes;
    use std::time::Duration;

    fn key() -> Key {
        Key {
            host: "example.com".into(),
            path: "/a".into(),
        }
    }

    fn answer(ttl: u64, swr: u64) -> Stored {
        Stored::new(
            200,
            http::HeaderMap::new(),
            Bytes::from_static(b"a"),
            Freshness {
                ttl: Duration::from_secs(ttl),
                grace: Duration::from_secs(60),
                swr: Duration::from_secs(swr),
            },
            Vec::new(),
            Vec::new(),
        )
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_is_a_hit() {
        let cache = Cache::new(1 << 20);
        cache.store(key(), answer(10, 0));
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Hit(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_within_its_window_serves_and_one_request_refreshes() {
        let cache = Cache::new(1 << 20);
        cache.store(key(), answer(10, 30));
        tokio::time::advance(Duration::from_secs(11)).await;
        let first = decide(&cache, &key(), &[], later());
        assert!(matches!(
            first,
            Decision::Stale {
                refresh: Some(_),
                ..
            }
        ));
        // While that refresh runs, others are served stale and do not refresh.
        let second = decide(&cache, &key(), &[], later());
        assert!(matches!(second, Decision::Stale { refresh: None, .. }));
        drop(first);
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Stale {
                refresh: Some(_),
                ..
            }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_past_its_window_is_revalidated_once() {
        let cache = Cache::new(1 << 20);
        cache.store(key(), answer(10, 0));
        tokio::time::advance(Duration::from_secs(11)).await;
        let first = decide(&cache, &key(), &[], later());
        assert!(matches!(first, Decision::Revalidate { .. }));
        // Someone is revalidating it: the stale answer will do.
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Stale { refresh: None, .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_miss_is_fetched_once_and_the_others_wait_then_pass() {
        let cache = Cache::new(1 << 20);
        let first = decide(&cache, &key(), &[], later());
        assert!(matches!(first, Decision::Fetch(_)));
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Wait(_)
        ));
        // Past the wait's deadline: ask on its own.
        assert!(matches!(
            decide(&cache, &key(), &[], Instant::now()),
            Decision::Pass
        ));
        // The fetch ends: the next request fetches anew.
        drop(first);
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Fetch(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn gone_past_its_grace_is_a_miss() {
        let cache = Cache::new(1 << 20);
        cache.store(key(), answer(10, 0));
        tokio::time::advance(Duration::from_secs(71)).await;
        assert!(matches!(
            decide(&cache, &key(), &[], later()),
            Decision::Fetch(_)
        ));
    }
}
