//! Very many held streams, from several client processes (the open-file
//! limit here is 20,000 a process): each listener holds its share from an
//! address of its own (127.0.0.2, .3...), Holdfast runs one connection
//! manager per 15,000 by default. Once all are held and `--settle` seconds
//! have passed, a publisher sends M items, one every `--interval` seconds;
//! the listeners note when each item reached their first and last
//! connection, and the reports are merged: latency from publish to the
//! first and to the last of all subscribers, deliveries lost, memory of the
//! proxy's whole tree once held, settled, and after every client left.

use super::clients::{self, run as run_client, Client};
use super::fixtures::{grip_origin, CHANNEL};
use super::record::Record;
use super::subjects::{parse_list, start, Setup, Subject};
use super::{progress, quantile};
use crate::procfs::rss_by_process;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold.
    #[arg(default_value_t = 20_000)]
    connections: usize,
    /// Items to publish.
    #[arg(default_value_t = 5)]
    messages: usize,
    /// Client processes (default: one per 5,000 connections).
    #[arg(long)]
    procs: Option<usize>,
    /// Connection attempts in flight per process.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// All of each process's connections at once.
    #[arg(long)]
    storm: bool,
    /// Holdfast's connection managers (default: one per 15,000).
    #[arg(long)]
    connmgrs: Option<usize>,
    /// Seconds between items.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Seconds to let memory settle (after connecting, after closing).
    #[arg(long, default_value_t = 15)]
    settle: u64,
    /// The proxies, in turn.
    #[arg(long, default_value = "holdfast,pushpin-default", value_parser = parse_list)]
    subjects: std::vec::Vec<Subject>,
}

/// The proxy's memory, per program name, at each point.
#[derive(Debug, Default, serde::Serialize)]
pub struct Memory {
    before: BTreeMap<String, u64>,
    held: BTreeMap<String, u64>,
    settled: BTreeMap<String, u64>,
    published: BTreeMap<String, u64>,
    closed: BTreeMap<String, u64>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let procs = args.procs.unwrap_or(args.connections.div_ceil(5000)).max(1);
    let per_proc = args.connections.div_ceil(procs);
    let concurrency = if args.storm {
        per_proc
    } else {
        args.concurrency
    };
    let connmgrs = args.connmgrs.unwrap_or(args.connections.div_ceil(15_000));
    let origin = grip_origin().await;
    let setup = Setup::route(format!("* {}", origin.target("origin")))
        .many_connections(args.connections, connmgrs.max(1));
    let mut record = Record::new(
        "held",
        format!(
            "{} held streams over {procs} client processes, {concurrency} connecting at a time each, {} items every {}s (latencies in ms, RSS in KiB per held connection)",
            args.connections, args.messages, args.interval
        ),
        &[
            "proxy", "connected", "connect/s", "RSS at connect", "settled", "settled by process",
            "settled total MiB", "given back after close", "lost deliveries", "first p50",
            "last p50", "last p99", "last max",
        ],
    );
    for subject in &args.subjects {
        progress(&format!(
            "{}: {} connections over {procs} processes ({concurrency} connecting at a time each)",
            subject.name(),
            args.connections
        ));
        let proxy = start(subject, &setup).await;
        let pid = [proxy.pid()];
        let mut memory = Memory {
            before: rss_by_process(&pid),
            ..Memory::default()
        };
        let started = Instant::now();
        let timeout = (args.messages as f64 * args.interval) as u64 + 120;
        let mut listeners = Vec::new();
        for i in 1..=procs {
            let flags = argv![
                "--listen-only",
                "--connect-concurrency",
                concurrency,
                "--sources",
                format!("127.0.0.{}", i + 1),
                "--timeout",
                timeout
            ];
            let held = clients::hold(proxy.addr(), "/stream", per_proc, args.messages);
            listeners.push(Client::spawn(&[held, flags].concat())?);
        }
        for listener in &mut listeners {
            anyhow::ensure!(
                listener.wait_ready(Duration::from_secs(timeout)).await,
                "a listener never held its connections: {:?}",
                listener.errors_with("")
            );
        }
        let connect_secs = started.elapsed().as_secs_f64();
        memory.held = rss_by_process(&pid);
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        memory.settled = rss_by_process(&pid);
        let publisher = run_client(&argv![
            "--connections",
            0,
            "--messages",
            args.messages,
            "--rate",
            1.0 / args.interval,
            "--channel",
            CHANNEL,
            "--publish",
            proxy.publish()
        ])
        .await?;
        memory.published = rss_by_process(&pid);
        let mut reports = Vec::new();
        let mut errors = Vec::new();
        for listener in listeners {
            errors.extend(listener.errors_with("connection").into_iter().take(5));
            reports.push(listener.report().await?);
        }
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        memory.closed = rss_by_process(&pid);
        for error in errors.iter().take(5) {
            eprintln!("{error}");
        }
        let merged = merge(&reports, &publisher);
        record.row(row(
            &subject.name(),
            args.connections,
            connect_secs,
            &merged,
            &memory,
        ));
        record.report(
            &subject.name(),
            serde_json::json!({"listeners": reports, "publisher": publisher, "memory": memory,
                "connect_secs": connect_secs}),
        );
    }
    record.finish()?;
    Ok(())
}

/// The listeners' reports merged against the publisher's times.
#[derive(Debug, PartialEq)]
pub struct Merged {
    /// Connections held, over all listeners.
    pub connected: u64,
    /// Deliveries that did not arrive.
    pub lost: u64,
    /// Per item, ms from its publish to its first arrival anywhere.
    pub first: Vec<f64>,
    /// Per item, ms from its publish to its last arrival anywhere.
    pub last: Vec<f64>,
}

/// Merges listeners' `arrivals` (per item: count, first µs, last µs, wall
/// clock) with the publisher's `published_at_us`.
pub fn merge(listeners: &[serde_json::Value], publisher: &serde_json::Value) -> Merged {
    let sum = |key: &str| listeners.iter().map(|l| l[key].as_u64().unwrap_or(0)).sum();
    let published: Vec<u64> = publisher["published_at_us"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for (k, at) in published.iter().enumerate() {
        let seen: Vec<(u64, u64)> = listeners
            .iter()
            .filter_map(|l| {
                let a = &l["arrivals"][k];
                (a[0].as_u64()? > 0).then_some((a[1].as_u64()?, a[2].as_u64()?))
            })
            .collect();
        if let (Some(f), Some(l)) = (
            seen.iter().map(|s| s.0).min(),
            seen.iter().map(|s| s.1).max(),
        ) {
            first.push((f as f64 - *at as f64) / 1000.0);
            last.push((l as f64 - *at as f64) / 1000.0);
        }
    }
    Merged {
        connected: sum("connected"),
        lost: sum("lost_deliveries"),
        first,
        last,
    }
}

/// A proxy's row.
fn row(name: &str, wanted: usize, connect_secs: f64, m: &Merged, memory: &Memory) -> Vec<String> {
    let total = |r: &BTreeMap<String, u64>| r.values().sum::<u64>() as f64;
    let connected = m.connected.max(1) as f64;
    let per = |r: &BTreeMap<String, u64>| (total(r) - total(&memory.before)) / connected;
    let by = memory
        .settled
        .iter()
        .map(|(n, kb)| {
            (
                n,
                (*kb as f64 - *memory.before.get(n).unwrap_or(&0) as f64) / connected,
            )
        })
        .filter(|(_, per)| *per >= 0.1)
        .map(|(n, per)| format!("{} {per:.1}", n.trim_start_matches("holdfast-")))
        .collect::<Vec<_>>()
        .join(", ");
    let grown = total(&memory.published) - total(&memory.before);
    let back = if grown > 0.0 {
        (total(&memory.published) - total(&memory.closed)) * 100.0 / grown
    } else {
        0.0
    };
    let max = m.last.iter().copied().fold(f64::NAN, f64::max);
    vec![
        name.to_owned(),
        format!("{}/{wanted}", m.connected),
        format!("{:.0}", m.connected as f64 / connect_secs.max(1e-9)),
        format!("{:.1}", per(&memory.held)),
        format!("{:.1}", per(&memory.settled)),
        by,
        format!("{:.0}", total(&memory.settled) / 1024.0),
        format!("{back:.0}%"),
        m.lost.to_string(),
        format!("{:.1}", quantile(&m.first, 0.5)),
        format!("{:.1}", quantile(&m.last, 0.5)),
        format!("{:.1}", quantile(&m.last, 0.99)),
        format!("{max:.1}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_merged_against_the_publishers_times() {
        let listeners = [
            serde_json::json!({"connected": 2, "lost_deliveries": 0,
                "arrivals": [[2, 1_000_500, 1_002_000], [2, 2_000_300, 2_000_900]]}),
            serde_json::json!({"connected": 3, "lost_deliveries": 1,
                "arrivals": [[3, 1_000_400, 1_003_000], [0, 0, 0]]}),
        ];
        let publisher = serde_json::json!({"published_at_us": [1_000_000, 2_000_000]});
        assert_eq!(
            merge(&listeners, &publisher),
            Merged {
                connected: 5,
                lost: 1,
                first: vec![0.4, 0.3],
                last: vec![3.0, 0.9],
            }
        );
    }
}
