//! Soak: many held streams for a long time under steady publishing, proxy
//! after proxy. Connections are spread over `--procs` processes from
//! addresses of their own; one of them (the driver) publishes `--rate`
//! items a second for the duration and samples the proxy's memory every
//! 10 s, the others hold and count. Every connection must get every item;
//! the memory after warm-up (60 s) and at the end, and its growth.

use super::clients::{self, run as run_client, Client};
use super::fixtures::grip_origin;
use super::progress;
use super::record::Record;
use super::subjects::{parse_list, start, Setup, Subject};
use std::time::Duration;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold.
    #[arg(default_value_t = 19_000)]
    connections: usize,
    /// Seconds of publishing.
    #[arg(default_value_t = 600)]
    seconds: u64,
    /// Items a second (0.1: 1,900 deliveries a second at 19,000, under
    /// Pushpin's default pacing of 2,500).
    #[arg(long, default_value_t = 0.1)]
    rate: f64,
    /// Client processes (default 4, or one per 15,000 above 60,000).
    #[arg(long)]
    procs: Option<usize>,
    /// Holdfast's connection managers (default: one per 15,000).
    #[arg(long)]
    connmgrs: Option<usize>,
    /// Connection attempts in flight per process: gentle, so the scenario
    /// is the soak and not a connection storm.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The proxies, in turn.
    #[arg(long, default_value = "holdfast,pushpin-default", value_parser = parse_list)]
    subjects: std::vec::Vec<Subject>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let procs = args
        .procs
        .unwrap_or(if args.connections > 60_000 {
            args.connections.div_ceil(15_000)
        } else {
            4
        })
        .max(1);
    let per_proc = args.connections.div_ceil(procs);
    let messages = ((args.rate * args.seconds as f64).round() as usize).max(1);
    let connmgrs = args
        .connmgrs
        .unwrap_or(args.connections.div_ceil(15_000))
        .max(1);
    let origin = grip_origin().await;
    let setup = Setup::route(format!("* {}", origin.target("origin")))
        .many_connections(args.connections, connmgrs);
    let mut record = Record::new(
        "soak",
        format!(
            "soak: {} connections, {} s, {} items/s ({messages} items)",
            args.connections, args.seconds, args.rate
        ),
        &[
            "proxy",
            "connected",
            "items",
            "lost deliveries",
            "RSS MiB after warm-up",
            "RSS MiB at end",
            "growth",
        ],
    );
    for subject in &args.subjects {
        progress(&format!(
            "{}: {} connections over {procs} processes, {messages} items at {}/s",
            subject.name(),
            args.connections,
            args.rate
        ));
        let proxy = start(subject, &setup).await;
        let mut listeners = Vec::new();
        for i in 2..=procs {
            let flags = argv![
                "--listen-only",
                "--connect-concurrency",
                args.concurrency,
                "--sources",
                format!("127.0.0.{i}"),
                "--timeout",
                args.seconds + 300
            ];
            let held = clients::hold(proxy.addr(), "/stream", per_proc, messages);
            listeners.push(Client::spawn(&[held, flags].concat())?);
        }
        // Publishing starts once every listener holds its connections.
        for listener in &mut listeners {
            anyhow::ensure!(
                listener.wait_ready(Duration::from_secs(300)).await,
                "a listener never held its connections: {:?}",
                listener.errors_with("")
            );
        }
        let flags = argv![
            "--rate",
            args.rate,
            "--connect-concurrency",
            args.concurrency,
            "--sources",
            format!("127.0.0.{}", procs + 1),
            "--publish",
            proxy.publish(),
            "--pids",
            proxy.pid(),
            "--timeout",
            300
        ];
        let held = clients::hold(proxy.addr(), "/stream", per_proc, messages);
        let driver = run_client(&[held, flags].concat()).await?;
        let mut parts = vec![driver.clone()];
        for listener in listeners {
            parts.push(listener.report().await?);
        }
        let summary = summarize(&parts);
        record.row(row(&subject.name(), &summary));
        record.report(
            &subject.name(),
            serde_json::json!({"summary": summary, "parts": parts}),
        );
    }
    record.finish()?;
    Ok(())
}

/// The driver's report (first) and the listeners' merged.
pub fn summarize(parts: &[serde_json::Value]) -> serde_json::Value {
    let sum = |key: &str| {
        parts
            .iter()
            .map(|p| p[key].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let driver = &parts[0];
    let samples: Vec<(f64, u64)> = driver["rss_kb_samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s[0].as_f64()?, s[1].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let warm = samples.iter().find(|(t, _)| *t >= 60.0).map(|(_, kb)| *kb);
    serde_json::json!({
        "connections": sum("connections"),
        "connected": sum("connected"),
        "items": driver["published"],
        "lost_deliveries": sum("lost_deliveries"),
        "connections_missing_items": sum("connections_missing_items"),
        "rss_kb_warm": warm,
        "rss_kb_end": samples.last().map(|(_, kb)| *kb),
        "rss_growth_after_warmup_pct": driver["rss_growth_after_warmup_pct"],
    })
}

/// A proxy's row.
fn row(name: &str, s: &serde_json::Value) -> Vec<String> {
    let mib = |v: &serde_json::Value| {
        v.as_f64()
            .map_or("-".into(), |kb| format!("{:.1}", kb / 1024.0))
    };
    vec![
        name.to_owned(),
        format!("{}/{}", s["connected"], s["connections"]),
        s["items"].to_string(),
        format!(
            "{} ({} connections short)",
            s["lost_deliveries"], s["connections_missing_items"]
        ),
        mib(&s["rss_kb_warm"]),
        mib(&s["rss_kb_end"]),
        s["rss_growth_after_warmup_pct"]
            .as_f64()
            .map_or("-".into(), |g| format!("{g:+.1}%")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_and_listeners_add_up() {
        let driver = serde_json::json!({"connections": 10, "connected": 10, "published": 60,
            "lost_deliveries": 0, "connections_missing_items": 0,
            "rss_kb_samples": [[0.0, 1000], [60.0, 2048], [600.0, 2000]],
            "rss_growth_after_warmup_pct": -2.3});
        let listener = serde_json::json!({"connections": 10, "connected": 9,
            "lost_deliveries": 3, "connections_missing_items": 1});
        let s = summarize(&[driver, listener]);
        assert_eq!(
            (s["connected"].as_u64(), s["lost_deliveries"].as_u64()),
            (Some(19), Some(3))
        );
        assert_eq!(
            row("holdfast", &s).join(" | "),
            "holdfast | 19/20 | 60 | 3 (1 connections short) | 2.0 | 2.0 | -2.3%"
        );
    }
}
