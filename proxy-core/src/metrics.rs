//! The proxy's metrics: requests, origin latency, WebSocket sessions and
//! the edge cache; reported to the handler every second (see
//! `holdfast_runtime::metrics`).

use crate::cache::Cache;
use holdfast_runtime::metrics::{sample, Histogram, Registry};
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;

/// The proxy's series.
pub struct Metrics {
    /// Where they live.
    pub registry: Arc<Registry>,
    /// Requests routed (sessions started).
    pub requests: Arc<AtomicU64>,
    /// Requests handed to the handler (holds).
    pub holds: Arc<AtomicU64>,
    /// Time from sending a request to the origin's response head.
    pub origin_latency: Arc<Histogram>,
    /// WebSocket sessions open.
    pub websockets: Arc<AtomicI64>,
}

impl Metrics {
    /// Proxy `id`'s series, the edge cache's counts among them.
    pub fn new(id: &str, cache: Arc<Cache>) -> Metrics {
        let r = Registry::new("proxy", id);
        r.collect(Box::new(move || {
            let s = cache.stats();
            let lookups = "Edge cache answers, by verdict.";
            vec![
                sample(
                    "holdfast_cache_lookups_total",
                    "counter",
                    lookups,
                    &[("verdict", "hit")],
                    s.hits,
                ),
                sample(
                    "holdfast_cache_lookups_total",
                    "counter",
                    lookups,
                    &[("verdict", "miss")],
                    s.misses,
                ),
                sample(
                    "holdfast_cache_lookups_total",
                    "counter",
                    lookups,
                    &[("verdict", "stale")],
                    s.stale,
                ),
                sample(
                    "holdfast_cache_purged_total",
                    "counter",
                    "Edge cache objects purged.",
                    &[],
                    s.purged,
                ),
                sample(
                    "holdfast_cache_evicted_total",
                    "counter",
                    "Edge cache objects evicted to stay within cache_size.",
                    &[],
                    s.evicted,
                ),
                sample(
                    "holdfast_cache_objects",
                    "gauge",
                    "Edge cache objects stored.",
                    &[],
                    s.objects,
                ),
                sample(
                    "holdfast_cache_bytes",
                    "gauge",
                    "Edge cache bytes stored.",
                    &[],
                    s.bytes,
                ),
            ]
        }));
        Metrics {
            requests: r.counter(
                "holdfast_proxy_requests_total",
                "Requests the proxy routed.",
                &[],
            ),
            holds: r.counter(
                "holdfast_holds_total",
                "Requests the origin asked to hold (handed to the handler).",
                &[],
            ),
            origin_latency: r.histogram(
                "holdfast_origin_response_seconds",
                "Time to the origin's response head.",
            ),
            websockets: r.gauge(
                "holdfast_proxy_websockets",
                "WebSocket sessions the proxy carries.",
                &[],
            ),
            registry: r,
        }
    }
}
