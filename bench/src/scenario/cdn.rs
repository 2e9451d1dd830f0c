//! Chaining through a CDN: new held connections a second, and the
//! origin's requests for N of them, for Holdfast → Varnish (cache hits),
//! Holdfast → origin, Holdfast's own edge cache and Pushpin 1.36 →
//! Varnish; then a purge + publish storm against Holdfast (items naming a
//! cache key, at a fixed rate): purges sent (to nginx's sink, which counts
//! them), items each subscriber got, and how soon the last item arrived
//! after the last publish.

use super::clients::{self, run as run_client};
use super::fixtures::{grip_origin, CHANNEL};
use super::progress;
use super::record::Record;
use super::subjects::{start, Running, Setup, Subject};
use holdfast_tests::harness::nginx::Nginx;
use holdfast_tests::{Client, Varnish};

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections per row.
    #[arg(default_value_t = 10_000)]
    connections: usize,
    /// The storm: items a second.
    #[arg(long, default_value_t = 1000)]
    storm_rate: usize,
    /// The storm: seconds.
    #[arg(long, default_value_t = 5)]
    storm_seconds: usize,
    /// The storm: subscribers.
    #[arg(long, default_value_t = 100)]
    storm_subscribers: usize,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let origin = grip_origin().await;
    let varnish = Varnish::start_with(&origin.target("origin"), "malloc,64m", &[]).await;
    let mut record = Record::new(
        "cdn",
        format!(
            "holdfast-bench --connections {} --messages 1 (connect/s: held connections set up per second; origin: requests the origin got)",
            args.connections
        ),
        &["path", "connected", "connect/s", "origin requests", "publish->last subscriber ms"],
    );
    let rows = [
        (
            "holdfast-varnish",
            Subject::Holdfast,
            format!("* {}", varnish.target()),
            "/cached",
        ),
        (
            "holdfast-direct",
            Subject::Holdfast,
            format!("* {}", origin.target("origin")),
            "/stream",
        ),
        (
            "holdfast-edge-cache",
            Subject::Holdfast,
            format!("*,cache {}", origin.target("origin")),
            "/cached",
        ),
        (
            "pushpin-varnish",
            Subject::PushpinDefault,
            format!("* {}", varnish.target()),
            "/cached",
        ),
    ];
    for (name, subject, route, path) in rows {
        if name == "pushpin-varnish" {
            // Each row starts with one miss.
            let url = format!("http://{}/cached", varnish.target());
            Client::new()
                .send("PURGE", &url, &[("Host", "bench")], "")
                .await;
        }
        progress(name);
        let proxy = start(&subject, &Setup::route(route)).await;
        let before = origin.count_lines("cached.log");
        let report = connect_row(&args, &proxy, path).await?;
        let asked = origin.count_lines("cached.log") - before;
        let origin_requests = if path == "/cached" {
            asked.to_string()
        } else {
            report["connected"].to_string()
        };
        record.row(vec![
            name.to_owned(),
            format!("{}/{}", report["connected"], report["connections"]),
            format!(
                "{:.0}",
                report["connect_rate_per_sec"].as_f64().unwrap_or(0.0)
            ),
            origin_requests,
            format!(
                "{:.1}",
                report["latency_last_subscriber"]["p50_ms"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            ),
        ]);
        record.report(name, report);
    }
    let storm = storm(&args, &origin).await?;
    record.notes.push(storm.0);
    record.report("storm", storm.1);
    record.finish()?;
    Ok(())
}

/// Holds the connections, publishes one item.
async fn connect_row(
    args: &Args,
    proxy: &Running,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let flags = argv![
        "--channel",
        CHANNEL,
        "--publish",
        proxy.publish(),
        "--pids",
        proxy.pid()
    ];
    run_client(
        &[
            clients::hold(proxy.addr(), path, args.connections, 1),
            flags,
        ]
        .concat(),
    )
    .await
}

/// The purge + publish storm: its line, and its report.
async fn storm(args: &Args, origin: &Nginx) -> anyhow::Result<(String, serde_json::Value)> {
    progress("storm");
    let setup = Setup::route(format!("* {}", origin.target("origin"))).set(
        "handler",
        "purge_targets",
        format!("http://{}", origin.target("purge")),
    );
    let proxy = start(&Subject::Holdfast, &setup).await;
    let items = args.storm_rate * args.storm_seconds;
    let r = run_client(&argv![
        "--target",
        proxy.addr(),
        "--path",
        "/stream",
        "--channel",
        CHANNEL,
        "--connections",
        args.storm_subscribers,
        "--messages",
        items,
        "--rate",
        args.storm_rate,
        "--purge",
        "--publish",
        proxy.publish()
    ])
    .await?;
    drop(proxy);
    let purges = origin.count_lines("purges.log");
    let l = &r["last_item_after_last_publish"];
    let line = format!(
        "storm: {} items at {:.0}/s to {} subscribers, {purges} purges (window 1 s, {} s), {:.1} items per subscriber, last item reached {}/{}, p50 {:.0} ms / max {:.0} ms after the last publish",
        r["published"],
        r["publish_rate_per_sec"].as_f64().unwrap_or(0.0),
        r["connected"],
        args.storm_seconds,
        r["items_received_per_connection"].as_f64().unwrap_or(0.0),
        r["last_item_received_by"],
        r["connected"],
        l["p50_ms"].as_f64().unwrap_or(f64::NAN),
        l["max_ms"].as_f64().unwrap_or(f64::NAN),
    );
    Ok((line, r))
}
