//! The stored answers: one LRU list of URLs (host and path with query),
//! each with its variants (one per combination of the request headers its
//! answers `Vary` on), bounded in bytes; purges by URL and by
//! `Surrogate-Key` (hard: removed; soft: marked stale, still served within
//! its stale windows); and request collapsing (one origin fetch per URL at
//! a time, the others wait for its [`Outcome`]).

use super::policy::Freshness;
use bytes::Bytes;
use holdfast_protocol::zhttp::Header;
use lru::LruCache;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Bytes counted per stored answer beyond what it holds: the object, its
/// place in the index and the LRU list, allocator rounding (measured: see
/// BENCHMARKS.md, "Edge cache memory").
const ENTRY_OVERHEAD: usize = 768;

/// Bytes counted per stored header beyond its name and value (the header
/// map's entry and index).
const HEADER_OVERHEAD: usize = 96;

/// What a URL costs in the index (its strings and their bookkeeping).
fn url_cost(key: &Key) -> usize {
    key.host.len() + key.path.len() + 48
}

/// A URL as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Host, as sent to the origin (lower-cased).
    pub host: String,
    /// Path and query.
    pub path: String,
}

impl Key {
    /// The key of an absolute `http(s)://host[:port]/path` URL.
    pub fn of_url(url: &str) -> Option<Key> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        (!host.is_empty()).then(|| Key {
            host: host.to_ascii_lowercase(),
            path: path.to_owned(),
        })
    }
}

/// One stored answer.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Status code.
    pub status: u16,
    /// The origin's headers (hop-by-hop ones already removed).
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// When it was stored.
    pub stored_at: Instant,
    /// Fresh until then.
    pub fresh_until: Instant,
    /// Served stale while one request refreshes it, until then
    /// (`stale-while-revalidate`).
    pub refresh_until: Instant,
    /// Usable (on origin errors, or while refreshed) until then.
    pub keep_until: Instant,
    /// Its stale windows, to move them when it is made stale early.
    swr: Duration,
    grace: Duration,
    /// The request headers it varies on, with the values it was fetched
    /// with.
    pub vary: Vec<(String, Option<Bytes>)>,
    /// Its `Surrogate-Key`s.
    pub keys: Vec<String>,
    /// Bytes of its URL in the index.
    url_len: usize,
}

impl Stored {
    /// An answer stored now.
    pub fn new(
        status: u16,
        headers: http::HeaderMap,
        body: Bytes,
        freshness: Freshness,
        vary: Vec<(String, Option<Bytes>)>,
        keys: Vec<String>,
    ) -> Stored {
        let now = Instant::now();
        let fresh_until = now + freshness.ttl;
        Stored {
            status,
            headers,
            body,
            stored_at: now,
            fresh_until,
            refresh_until: fresh_until + freshness.swr,
            keep_until: fresh_until + freshness.grace.max(freshness.swr),
            swr: freshness.swr,
            grace: freshness.grace,
            vary,
            keys,
            url_len: 0,
        }
    }

    /// The same answer, stale from now (a soft purge): its stale windows
    /// start now.
    fn made_stale(&self, now: Instant) -> Stored {
        let fresh_until = self.fresh_until.min(now);
        Stored {
            fresh_until,
            refresh_until: fresh_until + self.swr,
            keep_until: fresh_until + self.grace.max(self.swr),
            ..self.clone()
        }
    }

    /// Whether a stale answer may be served at once while it is refreshed.
    pub fn may_refresh_in_background(&self, now: Instant) -> bool {
        now < self.refresh_until
    }

    /// What it costs in memory, as counted against the cache's size:
    /// everything it holds, with the bookkeeping around each part.
    fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + HEADER_OVERHEAD)
            .sum();
        let vary: usize = self
            .vary
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, Bytes::len) + 48)
            .sum();
        let keys: usize = self.keys.iter().map(|k| k.len() + 24).sum();
        self.body.len() + headers + vary + keys + self.url_len + ENTRY_OVERHEAD
    }

    fn matches(&self, request: &[Header]) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| request_value(request, name).as_ref() == value.as_ref())
    }
}

/// The values a request has for `name` (joined, as one header).
pub fn request_value(request: &[Header], name: &str) -> Option<Bytes> {
    let mut values = request
        .iter()
        .filter(|Header(n, _)| n.eq_ignore_ascii_case(name))
        .map(|Header(_, v)| v.clone());
    let first = values.next()?;
    let rest: Vec<Bytes> = values.collect();
    if rest.is_empty() {
        return Some(first);
    }
    let mut joined = first.to_vec();
    for v in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(&v);
    }
    Some(Bytes::from(joined))
}

/// What the cache has for a request.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh answer.
    Fresh(Arc<Stored>),
    /// A stale answer, usable if the origin fails.
    Stale(Arc<Stored>),
    /// Nothing.
    Miss,
}

/// Who fetches a missing URL.
pub enum Fetch {
    /// This request: it [`FetchGuard::finish`]es with what waiters should
    /// do.
    Leader(FetchGuard),
    /// Another request is fetching it: wait for its outcome.
    Follower(watch::Receiver<Outcome>),
}

/// What a fetch left for the requests that waited for it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not finished; a guard dropped in this state failed (the origin
    /// could not be reached): the next waiter becomes the fetcher.
    Pending,
    /// Stored: look again.
    Stored,
    /// Not storable, but the same for everyone who asked: this answer.
    Shared(Arc<Stored>),
    /// Neither storable nor shareable: each waiter asks on its own.
    Pass,
}

/// Held by the request fetching a URL; dropping it wakes the waiters.
pub struct FetchGuard {
    cache: Arc<Cache>,
    key: Key,
    // Dropped with the guard: waiters' `changed()` then returns.
    done: watch::Sender<Outcome>,
}

impl FetchGuard {
    /// Whether requests wait for this fetch (the cache holds one receiver).
    pub fn has_waiters(&self) -> bool {
        self.done.receiver_count() > 1
    }

    /// Ends the fetch, telling waiters what to do.
    pub fn finish(self, outcome: Outcome) {
        self.done.send_replace(outcome);
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.cache.lock().inflight.remove(&self.key);
    }
}

/// Counts for logs and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Answered from a fresh object.
    pub hits: u64,
    /// Fetched from the origin.
    pub misses: u64,
    /// Answered from a stale object because the origin failed.
    pub stale: u64,
    /// Objects removed by purges.
    pub purged: u64,
    /// Objects removed to stay within the size.
    pub evicted: u64,
    /// Objects stored now.
    pub objects: u64,
    /// Bytes stored now.
    pub bytes: u64,
}

/// The edge cache.
pub struct Cache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    urls: LruCache<Key, Vec<Arc<Stored>>>,
    bytes: usize,
    inflight: HashMap<Key, watch::Receiver<Outcome>>,
    stats: Stats,
}

impl Cache {
    /// A cache holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Arc<Cache> {
        Arc::new(Cache {
            max_bytes,
            inner: Mutex::new(Inner {
                urls: LruCache::unbounded(),
                bytes: 0,
                inflight: HashMap::new(),
                stats: Stats::default(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // update is a single step); keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored answer for a request, if any is usable.
    pub fn lookup(&self, key: &Key, request: &[Header]) -> Lookup {
        let now = Instant::now();
        let mut inner = self.lock();
        let Some(variants) = inner.urls.get(key) else {
            return Lookup::Miss;
        };
        let found = variants
            .iter()
            .find(|s| s.matches(request) && s.keep_until > now)
            .cloned();
        match found {
            Some(s) if s.fresh_until > now => {
                inner.stats.hits += 1;
                Lookup::Fresh(s)
            }
            Some(s) => Lookup::Stale(s),
            None => Lookup::Miss,
        }
    }

    /// Makes this request the fetcher of `key`, unless one is already.
    pub fn begin_fetch(self: &Arc<Self>, key: &Key) -> Fetch {
        let mut inner = self.lock();
        if let Some(rx) = inner.inflight.get(key) {
            return Fetch::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(Outcome::Pending);
        inner.inflight.insert(key.clone(), rx);
        inner.stats.misses += 1;
        Fetch::Leader(FetchGuard {
            cache: self.clone(),
            key: key.clone(),
            done: tx,
        })
    }

    /// Counts an answer served stale because the origin failed.
    pub fn served_stale(&self) {
        self.lock().stats.stale += 1;
    }

    /// Stores an answer, replacing the one with the same variant; evicts
    /// the least recently used URLs beyond the size. Larger than the whole
    /// cache: not stored.
    pub fn store(&self, key: Key, mut stored: Stored) {
        stored.url_len = url_cost(&key);
        let size = stored.size();
        if size > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        let inner = &mut *inner;
        let variants = inner.urls.get_or_insert_mut(key.clone(), Vec::new);
        let mut freed = 0;
        variants.retain(|s| {
            let same = s.vary == stored.vary;
            if same {
                freed += s.size();
            }
            !same
        });
        variants.push(Arc::new(stored));
        inner.bytes = inner.bytes + size - freed;
        while inner.bytes > self.max_bytes {
            let Some((evicted_key, evicted)) = inner.urls.pop_lru() else {
                break;
            };
            inner.bytes -= evicted.iter().map(|s| s.size()).sum::<usize>();
            inner.stats.evicted += evicted.len() as u64;
            if evicted_key == key {
                break;
            }
        }
    }

    /// Purges every variant of a URL: removed, or with `soft` made stale;
    /// how many.
    pub fn purge_url(&self, key: &Key, soft: bool) -> usize {
        let mut inner = self.lock();
        if soft {
            let now = Instant::now();
            let Some(variants) = inner.urls.peek_mut(key) else {
                return 0;
            };
            for stored in variants.iter_mut() {
                *stored = Arc::new(stored.made_stale(now));
            }
            let n = variants.len();
            inner.stats.purged += n as u64;
            return n;
        }
        let Some(variants) = inner.urls.pop(key) else {
            return 0;
        };
        inner.bytes -= variants.iter().map(|s| s.size()).sum::<usize>();
        inner.stats.purged += variants.len() as u64;
        variants.len()
    }

    /// Purges every object tagged with one of `keys`: removed, or with
    /// `soft` made stale; how many.
    pub fn purge_keys(&self, keys: &[String], soft: bool) -> usize {
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut purged = 0;
        let mut emptied = Vec::new();
        for (url, variants) in inner.urls.iter_mut() {
            let before = variants.len();
            let tagged = |s: &Stored| s.keys.iter().any(|k| keys.contains(k));
            if soft {
                for stored in variants.iter_mut().filter(|s| tagged(s)) {
                    *stored = Arc::new(stored.made_stale(now));
                    purged += 1;
                }
                continue;
            }
            variants.retain(|s| {
                if tagged(s) {
                    inner.bytes -= s.size();
                }
                !tagged(s)
            });
            purged += before - variants.len();
            if variants.is_empty() {
                emptied.push(url.clone());
            }
        }
        for url in emptied {
            inner.urls.pop(&url);
        }
        inner.stats.purged += purged as u64;
        purged
    }

    /// Applies a purge from the handler (a `purge` delivery: keys and URLs
    /// as JSON); how many objects went.
    pub fn purge_named(&self, frame: &[u8]) -> usize {
        use holdfast_protocol::wscontrol::{CachePurge, Deliver};
        let purge = holdfast_protocol::format::decode::<Deliver>(frame)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                serde_json::from_slice::<CachePurge>(&d.content).map_err(|e| e.to_string())
            });
        let purge = match purge {
            Ok(purge) => purge,
            Err(err) => {
                tracing::warn!("undecodable cache purge dropped: {err}");
                return 0;
            }
        };
        let mut purged = self.purge_keys(&purge.keys, purge.soft);
        for url in &purge.urls {
            if let Some(key) = Key::of_url(url) {
                purged += self.purge_url(&key, purge.soft);
            }
        }
        tracing::info!(
            purged,
            keys = purge.keys.len(),
            urls = purge.urls.len(),
            "edge cache purge from the handler"
        );
        purged
    }

    /// Counts so far, and what is stored.
    pub fn stats(&self) -> Stats {
        let inner = self.lock();
        Stats {
            objects: inner.urls.iter().map(|(_, v)| v.len() as u64).sum(),
            bytes: inner.bytes as u64,
            ..inner.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(path: &str) -> Key {
        Key {
            host: "example.com".into(),
            path: path.into(),
        }
    }

    fn answer(body: &str, ttl: u64, vary: Vec<(String, Option<Bytes>)>, keys: &[&str]) -> Stored {
        Stored::new(
            200,
            http::HeaderMap::new(),
            Bytes::copy_from_slice(body.as_bytes()),
            Freshness {
                ttl: Duration::from_secs(ttl),
                grace: Duration::from_secs(60),
                swr: Duration::ZERO,
            },
            vary,
            keys.iter().map(|k| k.to_string()).collect(),
        )
    }

    fn accept(value: &str) -> Vec<Header> {
        vec![Header(
            "Accept".into(),
            Bytes::copy_from_slice(value.as_bytes()),
        )]
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_then_gone() {
        let cache = Cache::new(1 << 20);
        cache.store(key("/a"), answer("a", 10, vec![], &[]));
        assert!(matches!(cache.lookup(&key("/a"), &[]), Lookup::Fresh(s) if s.body == "a"));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(matches!(cache.lookup(&key("/a"), &[]), Lookup::Stale(_)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(cache.lookup(&key("/a"), &[]), Lookup::Miss));
        assert!(matches!(cache.lookup(&key("/b"), &[]), Lookup::Miss));
    }

    #[tokio::test]
    async fn variants_by_vary() {
        let cache = Cache::new(1 << 20);
        let sse = vec![(
            "accept".into(),
            Some(Bytes::from_static(b"text/event-stream")),
        )];
        let none = vec![("accept".into(), None)];
        cache.store(key("/c"), answer("stream", 10, sse.clone(), &[]));
        cache.store(key("/c"), answer("plain", 10, none, &[]));
        let body = |request: &[Header]| match cache.lookup(&key("/c"), request) {
            Lookup::Fresh(s) => String::from_utf8_lossy(&s.body).into_owned(),
            other => format!("{other:?}"),
        };
        assert_eq!(body(&accept("text/event-stream")), "stream");
        assert_eq!(body(&[]), "plain");
        assert_eq!(body(&accept("text/html")), "Miss");
        // The same variant again replaces it.
        cache.store(key("/c"), answer("stream 2", 10, sse, &[]));
        assert_eq!(body(&accept("text/event-stream")), "stream 2");
        assert_eq!(cache.stats().objects, 2);
        assert_eq!(cache.purge_url(&key("/c"), false), 2);
        assert_eq!(body(&[]), "Miss");
    }

    #[tokio::test]
    async fn purge_by_surrogate_key() {
        let cache = Cache::new(1 << 20);
        cache.store(key("/1"), answer("1", 10, vec![], &["counters", "c1"]));
        cache.store(key("/2"), answer("2", 10, vec![], &["counters"]));
        cache.store(key("/3"), answer("3", 10, vec![], &["other"]));
        assert_eq!(cache.purge_keys(&["counters".into()], false), 2);
        assert!(matches!(cache.lookup(&key("/1"), &[]), Lookup::Miss));
        assert!(matches!(cache.lookup(&key("/3"), &[]), Lookup::Fresh(_)));
        let stats = cache.stats();
        assert_eq!((stats.objects, stats.purged), (1, 2));
    }

    #[tokio::test]
    async fn least_recently_used_go_first() {
        let body = "x".repeat(1000);
        let one = answer(&body, 10, vec![], &[]).size() + url_cost(&key("/1"));
        let cache = Cache::new(one * 3);
        for path in ["/1", "/2", "/3"] {
            cache.store(key(path), answer(&body, 10, vec![], &[]));
        }
        // Use /1, so /2 is the least recently used.
        assert!(matches!(cache.lookup(&key("/1"), &[]), Lookup::Fresh(_)));
        cache.store(key("/4"), answer(&body, 10, vec![], &[]));
        assert!(matches!(cache.lookup(&key("/2"), &[]), Lookup::Miss));
        for path in ["/1", "/3", "/4"] {
            assert!(
                matches!(cache.lookup(&key(path), &[]), Lookup::Fresh(_)),
                "{path}"
            );
        }
        let stats = cache.stats();
        assert_eq!((stats.objects, stats.evicted), (3, 1));
        assert!(stats.bytes <= (one * 3) as u64);
        // Larger than the whole cache: not stored, nothing evicted.
        cache.store(key("/big"), answer(&"y".repeat(one * 4), 10, vec![], &[]));
        assert_eq!(cache.stats().objects, 3);
    }

    #[tokio::test]
    async fn one_fetch_per_url() {
        let cache = Cache::new(1 << 20);
        let Fetch::Leader(guard) = cache.begin_fetch(&key("/x")) else {
            panic!("first is the leader")
        };
        let Fetch::Follower(mut waiting) = cache.begin_fetch(&key("/x")) else {
            panic!("second waits")
        };
        assert!(matches!(cache.begin_fetch(&key("/y")), Fetch::Leader(_)));
        cache.store(key("/x"), answer("x", 10, vec![], &[]));
        guard.finish(Outcome::Stored);
        // The wait ends with what to do, and the answer is there.
        assert!(waiting.changed().await.is_ok());
        assert!(matches!(*waiting.borrow(), Outcome::Stored));
        assert!(matches!(cache.lookup(&key("/x"), &[]), Lookup::Fresh(_)));
        assert!(matches!(cache.begin_fetch(&key("/x")), Fetch::Leader(_)));
    }
}
