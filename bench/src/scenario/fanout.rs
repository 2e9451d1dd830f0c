//! Held streams and fan-out, proxy after proxy: the load generator holds
//! N connections (nginx answers a stream hold on `bench`; with `--mode
//! ws`, a WebSocket-over-HTTP origin subscribes WebSockets to it),
//! publishes M items one after another, and reports connect rate, memory
//! per held connection (every process of the proxy), publish→delivery
//! latency to the first and last subscriber, deliveries per second. A
//! subject may be named twice (runs alternate, each gets its row).

use super::clients::{self, run as run_client};
use super::fixtures::{grip_origin, CHANNEL};
use super::progress;
use super::record::Record;
use super::subjects::{parse_list, start, Setup, Subject};

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections to hold.
    #[arg(default_value_t = 10_000)]
    connections: usize,
    /// Items to publish.
    #[arg(default_value_t = 5)]
    messages: usize,
    /// `http` (streams) or `ws` (WebSockets).
    #[arg(long, default_value = "http")]
    mode: String,
    /// The proxies, in turn.
    #[arg(long, default_value = "holdfast,pushpin-default,pushpin-tuned", value_parser = parse_list)]
    subjects: std::vec::Vec<Subject>,
    /// More load-generator flags (`--interval-ms 500`, `--connect-concurrency
    /// 5000` for a storm), passed as they are.
    #[arg(long, allow_hyphen_values = true, num_args = 1.., value_delimiter = ' ')]
    client: Vec<String>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let origin = grip_origin().await;
    let setup = Setup::route(format!("* {},over_http", origin.target("origin")));
    let (path, websocket) = match args.mode.as_str() {
        "http" => ("/stream", false),
        "ws" => ("/ws", true),
        other => anyhow::bail!("--mode {other}: http or ws"),
    };
    let mut record = Record::new(
        "fanout",
        format!(
            "holdfast-bench --connections {} --messages {}, {} (latencies in ms)",
            args.connections, args.messages, args.mode
        ),
        &[
            "proxy",
            "connected",
            "connect/s",
            "RSS KiB/conn at connect",
            "settled",
            "settled by process",
            "given back after close",
            "first p50",
            "first p99",
            "last p50",
            "last p99",
            "last max",
            "deliveries/s",
        ],
    );
    for subject in &args.subjects {
        progress(&subject.name());
        let proxy = start(subject, &setup).await;
        let mut client = clients::hold(proxy.addr(), path, args.connections, args.messages);
        client.extend(argv![
            "--channel",
            CHANNEL,
            "--publish",
            proxy.publish(),
            "--pids",
            proxy.pid()
        ]);
        if websocket {
            client.push("--websocket".into());
        }
        client.extend(args.client.iter().cloned());
        let report = run_client(&client).await?;
        record.row(row(&subject.name(), &report));
        record.report(&subject.name(), report);
    }
    record.finish()?;
    Ok(())
}

/// A report's row.
pub fn row(name: &str, r: &serde_json::Value) -> Vec<String> {
    let f = |v: &serde_json::Value, d: usize| format!("{:.*}", d, v.as_f64().unwrap_or(f64::NAN));
    let (first, last) = (
        &r["latency_first_subscriber"],
        &r["latency_last_subscriber"],
    );
    let by = r["rss_kb_per_connection_by_process"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, kb)| kb.as_f64().unwrap_or(0.0) >= 0.1)
                .map(|(n, kb)| format!("{} {kb}", n.trim_start_matches("holdfast-")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    vec![
        name.to_owned(),
        format!("{}/{}", r["connected"], r["connections"]),
        f(&r["connect_rate_per_sec"], 0),
        f(&r["rss_kb_per_connection"], 1),
        f(&r["rss_kb_per_connection_settled"], 1),
        by,
        format!("{}%", f(&r["rss_returned_after_close_pct"], 0)),
        f(&first["p50_ms"], 1),
        f(&first["p99_ms"], 1),
        f(&last["p50_ms"], 1),
        f(&last["p99_ms"], 1),
        f(&last["max_ms"], 1),
        f(&r["deliveries_per_sec"], 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_its_row() {
        let report = serde_json::json!({
            "connected": 10, "connections": 10, "connect_rate_per_sec": 1234.4,
            "rss_kb_per_connection": 12.34, "rss_kb_per_connection_settled": 10.06,
            "rss_kb_per_connection_by_process": {"holdfast-connmgr": 5.8, "holdfast-proxy": 0.0},
            "rss_returned_after_close_pct": 78.2,
            "latency_first_subscriber": {"p50_ms": 3.7, "p99_ms": 6.9, "max_ms": 7.0},
            "latency_last_subscriber": {"p50_ms": 39.5, "p99_ms": 43.6, "max_ms": 44.0},
            "deliveries_per_sec": 120688.2
        });
        assert_eq!(
            row("holdfast", &report).join(" | "),
            "holdfast | 10/10 | 1234 | 12.3 | 10.1 | connmgr 5.8 | 78% | 3.7 | 6.9 | 39.5 | 43.6 | 44.0 | 120688"
        );
    }
}
