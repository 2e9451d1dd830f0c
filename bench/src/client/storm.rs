//! A storm (or a soak, when slow and long): items published at a rate
//! without waiting for their deliveries, the proxy's memory sampled
//! meanwhile, then what each connection received.

use super::publish::{item, Publisher};
use super::{wait_until, wall_us, Args, Shared};
use crate::procfs::total_rss;
use crate::stats::summary;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Publishes `--messages` items at `--rate` per second, then waits for the
/// last one to reach every connection.
pub(crate) async fn storm(
    args: &Args,
    shared: &Shared,
    publisher: &Publisher,
    ready: usize,
) -> anyhow::Result<serde_json::Value> {
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut last_published = started;
    let mut published_at_us = Vec::with_capacity(args.messages);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_rss(
        args.pids.clone(),
        Duration::from_secs(args.sample_secs.max(1)),
        samples.clone(),
    ));
    for k in 0..args.messages {
        tokio::time::sleep_until(started + period * k as u32).await;
        let item = item(&args.channel, k, "http-stream", args.purge);
        last_published = Instant::now();
        published_at_us.push(wall_us());
        publisher.send(k, &item).await?;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    let got_last =
        |storm: &[(usize, Option<Instant>)]| storm.iter().filter(|(_, at)| at.is_some()).count();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    wait_until(shared, deadline, || {
        shared
            .storm
            .lock()
            .map(|s| got_last(&s) >= ready)
            .unwrap_or(false)
    })
    .await;
    // Let stragglers count, then total per connection.
    let storm = shared.storm.lock().map(|s| s.clone()).unwrap_or_default();
    let last_delays: Vec<u64> = storm
        .iter()
        .filter_map(|(_, at)| at.map(|at| at.duration_since(last_published).as_micros() as u64))
        .collect();
    sampler.abort();
    let total: usize = storm.iter().map(|(n, _)| n).sum();
    let (lost, short) = losses(&storm, ready, args.messages);
    let rss: Vec<(f64, u64)> = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= args.warmup_secs as f64)
        .map(|(_, kb)| *kb);
    let growth = match (warm, rss.last()) {
        (Some(warm), Some((_, end))) if warm > 0 => {
            Some((*end as f64 - warm as f64) * 100.0 / warm as f64)
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "connections": args.connections,
        "connected": ready,
        "lost_deliveries": lost,
        "connections_missing_items": short,
        "rss_kb_samples": rss.iter().map(|(t, kb)| serde_json::json!([t, kb])).collect::<Vec<_>>(),
        "rss_growth_after_warmup_pct": growth,
        "published": args.messages,
        "publish_rate_per_sec": args.messages as f64 / publish_secs.max(1e-9),
        "purge": args.purge,
        "items_received_per_connection": total as f64 / ready.max(1) as f64,
        "last_item_received_by": got_last(&storm),
        "last_item_after_last_publish": summary(last_delays),
        "published_at_us": published_at_us,
        "arrivals": arrivals_json(shared),
    }))
}

/// Per item: `[deliveries, first arrival µs, last arrival µs]`.
pub(crate) fn arrivals_json(shared: &Shared) -> serde_json::Value {
    let arrivals = shared
        .arrivals
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    arrivals
        .iter()
        .map(|a| serde_json::json!([a.count, a.first_us, a.last_us]))
        .collect()
}

/// Deliveries missing (`messages` for every connected connection, minus
/// what arrived) and how many connections miss any. Connections that never
/// connected are not counted: they show in `connected`.
pub(crate) fn losses(
    storm: &[(usize, Option<Instant>)],
    ready: usize,
    messages: usize,
) -> (usize, usize) {
    let mut counts: Vec<usize> = storm.iter().map(|(n, _)| *n).collect();
    // The connected ones are those that received anything or are within
    // `ready`; the best `ready` counts stand for them.
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.truncate(ready);
    let lost = counts.iter().map(|n| messages.saturating_sub(*n)).sum();
    let short = counts.iter().filter(|n| **n < messages).count();
    (lost, short)
}

/// Appends `(seconds since start, total RSS KiB of pids)` to `samples`
/// every `every`, until aborted.
async fn sample_rss(pids: Vec<u32>, every: Duration, samples: Arc<Mutex<Vec<(f64, u64)>>>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let kb = total_rss(&pids);
        if let Ok(mut s) = samples.lock() {
            s.push((started.elapsed().as_secs_f64().round(), kb));
        }
    }
}
