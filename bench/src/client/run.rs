//! A run of the load generator: every connection opened (at most
//! `--connect-concurrency` at a time) and held, then the mode: listen only,
//! a storm, or items published one after another, each once delivered
//! everywhere, with latency, memory and CPU per delivery reported.

use super::connection::connection;
use super::publish::{item, zmq_publisher, Publisher};
use super::storm::{arrivals_json, losses, storm};
use super::{wait_until, ws_echo, Args, Arrivals, Shared};
use crate::procfs::{
    cpu_per_delivery, cpu_ticks, cpu_ticks_by_process, per_connection, rss_by_process, total_rss,
};
use crate::stats::{percentile, summary};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Runs the mode `args` asks for and prints its report.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let args = Arc::new(args);
    if args.rss_only {
        println!("{}", serde_json::to_string(&rss_by_process(&args.pids))?);
        return Ok(());
    }
    if let Some(addr) = args.serve_echo {
        return ws_echo::serve(addr).await;
    }
    if args.ws_echo {
        let report = ws_echo::run(args.clone()).await?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let shared = Arc::new(Shared {
        published: Mutex::new(vec![None; args.messages]),
        latencies: Mutex::new(vec![Vec::new(); args.messages]),
        ready: AtomicUsize::new(0),
        delivered: (0..args.messages).map(|_| AtomicUsize::new(0)).collect(),
        storm: Mutex::new(vec![(0, None); args.connections]),
        arrivals: Mutex::new(vec![Arrivals::default(); args.messages]),
        notify: Notify::new(),
    });
    // Connected before the streams are held, so it sees every instance's
    // subscription pass through the broker.
    let zmq_subscribed = match &args.publish_zmq {
        Some(addr) => Some(zmq_publisher(addr, &args.channel, args.zmq_subscribers)?),
        None => None,
    };
    let held = connect_all(&args, &shared).await;
    let mut publisher = Publisher::http(&args.publish);
    let report = if args.listen_only {
        listen_only(&args, &shared, &held).await
    } else if args.rate > 0.0 {
        storm(&args, &shared, &publisher, held.ready).await?
    } else {
        if let Some(subscribed) = zmq_subscribed {
            publisher = publisher.with_zmq(subscribed.await??, &args.channel);
        }
        sequential(&args, &shared, &publisher, held).await?
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The connections, once every one is held (or failed), and the memory
/// they took.
struct Held {
    tasks: Vec<JoinHandle<()>>,
    failures: Arc<AtomicUsize>,
    all_ready: bool,
    connect_secs: f64,
    ready: usize,
    rss_before: u64,
    by_process_before: BTreeMap<String, u64>,
    rss_after: u64,
    rss_settled: u64,
    by_process_held: BTreeMap<String, u64>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens every connection and waits until each is held or failed; what
/// they cost once held, after what setting them up took has had
/// `--settle-secs` to go back (not when listening or in a storm).
async fn connect_all(args: &Arc<Args>, shared: &Arc<Shared>) -> Held {
    let rss_before = total_rss(&args.pids);
    let by_process_before = rss_by_process(&args.pids);
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let source = (!args.sources.is_empty()).then(|| args.sources[i % args.sources.len()]);
        let (args, shared, limit, failures) = (
            args.clone(),
            shared.clone(),
            limit.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // The permit covers connecting and the initial response only.
            let Ok(permit) = limit.acquire_owned().await else {
                return;
            };
            if let Err(err) = connection(args, shared.clone(), source, permit, i).await {
                if failures.fetch_add(1, Ordering::SeqCst) < 5 {
                    eprintln!("connection {i}: {err}");
                }
                shared.notify.notify_waiters();
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout.max(60));
    let all_ready = wait_until(shared, deadline, || {
        shared.ready.load(Ordering::SeqCst) + failures.load(Ordering::SeqCst) >= args.connections
    })
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::SeqCst);
    let rss_after = total_rss(&args.pids);
    if !args.listen_only && args.rate == 0.0 {
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    }
    Held {
        tasks,
        failures,
        all_ready,
        connect_secs,
        ready,
        rss_before,
        by_process_before,
        rss_after,
        rss_settled: total_rss(&args.pids),
        by_process_held: rss_by_process(&args.pids),
    }
}

/// Listening only (another process publishes): `ready N` on stderr, then
/// what arrived once every connection has the last item.
async fn listen_only(args: &Args, shared: &Shared, held: &Held) -> serde_json::Value {
    let ready = held.ready;
    eprintln!("ready {ready}");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    wait_until(shared, deadline, || {
        shared
            .storm
            .lock()
            .map(|s| s.iter().filter(|(_, at)| at.is_some()).count() >= ready)
            .unwrap_or(false)
    })
    .await;
    let storm = shared.storm.lock().map(|s| s.clone()).unwrap_or_default();
    let (lost, short) = losses(&storm, ready, args.messages);
    serde_json::json!({
        "connections": args.connections,
        "connected": ready,
        "failed": held.failures.load(Ordering::SeqCst),
        "expected_per_connection": args.messages,
        "lost_deliveries": lost,
        "connections_missing_items": short,
        "connect_secs": held.connect_secs,
        "arrivals": arrivals_json(shared),
    })
}

/// Items one after another, each once delivered everywhere (or after
/// `--timeout`), `--interval-ms` apart; the report.
async fn sequential(
    args: &Args,
    shared: &Shared,
    publisher: &Publisher,
    held: Held,
) -> anyhow::Result<serde_json::Value> {
    let ready = held.ready;
    let publishing = Instant::now();
    let mut cpu_before = cpu_ticks_by_process(&args.pids);
    cpu_before.insert("holdfast-bench".into(), cpu_ticks("self"));
    let mut complete = 0;
    // Markers are found in the raw bytes, so WebSocket frame headers
    // around them do not matter.
    let format = if args.websocket {
        "ws-message"
    } else {
        "http-stream"
    };
    for k in 0..args.messages {
        if k > 0 && args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        if let Ok(mut published) = shared.published.lock() {
            published[k] = Some(Instant::now());
        }
        publisher
            .send(k, &item(&args.channel, k, format, false))
            .await?;
        let deadline = Instant::now() + Duration::from_secs(args.timeout);
        if wait_until(shared, deadline, || {
            shared.delivered[k].load(Ordering::SeqCst) >= ready
        })
        .await
        {
            complete += 1;
        }
    }
    let publish_secs = publishing.elapsed().as_secs_f64();
    let mut cpu_after = cpu_ticks_by_process(&args.pids);
    cpu_after.insert("holdfast-bench".into(), cpu_ticks("self"));
    let latencies = shared
        .latencies
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let deliveries: usize = latencies.iter().map(Vec::len).sum();
    let cpu = cpu_per_delivery(&cpu_before, &cpu_after, deliveries);
    // Memory given back: every client leaves, then the proxy has
    // `--settle-secs` to let go of what they held.
    let rss_published = total_rss(&args.pids);
    let failed = held.failures.load(Ordering::SeqCst);
    let memory = memory_report(&held, rss_published);
    drop(held);
    tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
    let rss_closed = total_rss(&args.pids);
    let mut report = serde_json::json!({
        "target": args.target.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "publish": args.publish,
        "connections": args.connections,
        "failed": failed,
        "messages": args.messages,
        "messages_fully_delivered": complete,
        "deliveries": deliveries,
        "deliveries_per_sec": deliveries as f64 / publish_secs.max(1e-9),
        "cpu_us_per_delivery_by_process": cpu,
        "rss_kb_after_close": rss_closed,
    });
    merge(&mut report, memory);
    merge(&mut report, latency_report(&latencies));
    let (before, published) = (report["rss_kb_before"].as_u64().unwrap_or(0), rss_published);
    report["rss_returned_after_close_pct"] = serde_json::json!(if published > before {
        (published.saturating_sub(rss_closed)) as f64 * 100.0 / (published - before) as f64
    } else {
        0.0
    });
    Ok(report)
}

/// What connecting took, and the memory the connections held.
fn memory_report(held: &Held, rss_published: u64) -> serde_json::Value {
    let ready = held.ready;
    let per = |grown: u64| {
        if ready > 0 {
            grown as f64 / ready as f64
        } else {
            0.0
        }
    };
    serde_json::json!({
        "connected": ready,
        "all_connected": held.all_ready,
        "connect_secs": held.connect_secs,
        "connect_rate_per_sec": ready as f64 / held.connect_secs.max(1e-9),
        "rss_kb_before": held.rss_before,
        "rss_kb_after": held.rss_after,
        "rss_kb_per_connection": per(held.rss_after.saturating_sub(held.rss_before)),
        "rss_kb_settled": held.rss_settled,
        "rss_kb_per_connection_settled": per(held.rss_settled.saturating_sub(held.rss_before)),
        "rss_kb_per_connection_by_process": per_connection(&held.by_process_before, &held.by_process_held, ready),
        "rss_kb_by_process_before": held.by_process_before,
        "rss_kb_by_process_held": held.by_process_held,
        "rss_kb_after_publishing": rss_published,
    })
}

/// Publish-to-delivery latency per item: to the first subscriber, to the
/// last, and each item's p99.
fn latency_report(latencies: &[Vec<u64>]) -> serde_json::Value {
    let first: Vec<u64> = latencies
        .iter()
        .filter_map(|l| l.iter().min().copied())
        .collect();
    let last: Vec<u64> = latencies
        .iter()
        .filter_map(|l| l.iter().max().copied())
        .collect();
    let ms = |us: &u64| *us as f64 / 1000.0;
    serde_json::json!({
        "latency_first_subscriber": summary(first.clone()),
        "latency_last_subscriber_each_ms": last.iter().map(ms).collect::<Vec<_>>(),
        "latency_p99_each_ms": latencies.iter().map(|l| {
            let mut l = l.clone();
            l.sort_unstable();
            percentile(&l, 0.99) as f64 / 1000.0
        }).collect::<Vec<_>>(),
        "latency_first_each_ms": first.iter().map(ms).collect::<Vec<_>>(),
        "latency_last_subscriber": summary(last),
    })
}

/// Adds `more`'s fields to `report`.
fn merge(report: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(report), serde_json::Value::Object(more)) = (report.as_object_mut(), more) {
        report.extend(more);
    }
}
