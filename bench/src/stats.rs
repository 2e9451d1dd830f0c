//! Percentiles and the latency summaries reports carry.

/// The `p` quantile (0 to 1) of sorted values (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// p50, p99 and max of microsecond values, in milliseconds.
pub fn summary(mut values: Vec<u64>) -> serde_json::Value {
    values.sort_unstable();
    serde_json::json!({
        "p50_ms": percentile(&values, 0.5) as f64 / 1000.0,
        "p99_ms": percentile(&values, 0.99) as f64 / 1000.0,
        "max_ms": values.last().copied().unwrap_or(0) as f64 / 1000.0,
    })
}
