//! WebSocket echo: this program's echo origin (tungstenite) directly, and
//! behind a passthrough route on each proxy; its echo client drives each
//! path in turn, runs alternating. Per path: echoes per second (median),
//! round trip p50 / p99 of the median run, messages lost (must be 0).

use super::clients::{run as run_client, Client};
use super::record::Record;
use super::subjects::{parse_list, start, Setup, Subject};
use super::{median, progress};
use std::time::Duration;

/// Settings.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Connections.
    #[arg(default_value_t = 50)]
    connections: usize,
    /// Messages per connection.
    #[arg(default_value_t = 2000)]
    messages: usize,
    /// Bytes per message.
    #[arg(default_value_t = 100)]
    size: usize,
    /// Messages in flight per connection.
    #[arg(default_value_t = 8)]
    in_flight: usize,
    /// Runs of each path.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The proxies in front of the echo origin.
    #[arg(long, default_value = "holdfast,pushpin-default", value_parser = parse_list)]
    subjects: std::vec::Vec<Subject>,
}

/// Runs it.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let port = holdfast_tests::free_port();
    let echo_addr = format!("127.0.0.1:{port}");
    let mut echo = Client::spawn(&argv!["--serve-echo", echo_addr])?;
    anyhow::ensure!(
        echo.wait_line("echo origin on", Duration::from_secs(10))
            .await,
        "the echo origin did not start"
    );
    let setup = Setup::route(format!("* {echo_addr}"));
    let mut paths = vec![("echo origin directly".to_owned(), echo_addr.clone())];
    let mut running = Vec::new();
    for subject in &args.subjects {
        progress(&format!("starting {}", subject.name()));
        let proxy = start(subject, &setup).await;
        paths.push((format!("{} -> origin", subject.name()), proxy.addr()));
        running.push(proxy);
    }
    let echo_run = |addr: &str| {
        argv![
            "--ws-echo",
            "--target",
            addr,
            "--path",
            "/echo",
            "--connections",
            args.connections,
            "--messages",
            args.messages,
            "--size",
            args.size,
            "--in-flight",
            args.in_flight,
            "--timeout",
            30
        ]
    };
    for (_, addr) in &paths {
        run_client(&echo_run(addr)).await?;
    }
    let mut reports: Vec<Vec<serde_json::Value>> = vec![Vec::new(); paths.len()];
    for round in 1..=args.runs {
        progress(&format!("round {round} of {}", args.runs));
        for (i, (_, addr)) in paths.iter().enumerate() {
            reports[i].push(run_client(&echo_run(addr)).await?);
        }
    }
    let mut record = Record::new(
        "ws",
        format!(
            "holdfast-bench --ws-echo: {} connections x {} messages of {} bytes, {} in flight each; {} alternating runs",
            args.connections, args.messages, args.size, args.in_flight, args.runs
        ),
        &["path", "echoes/s (median)", "runs", "round trip p50 / p99 (median run)", "lost"],
    );
    for ((name, _), runs) in paths.iter().zip(&reports) {
        let rates: Vec<f64> = runs
            .iter()
            .map(|r| r["echoes_per_sec"].as_f64().unwrap_or(0.0))
            .collect();
        let m = median(&rates);
        let mid = runs
            .iter()
            .find(|r| r["echoes_per_sec"].as_f64() == Some(m))
            .unwrap_or(&serde_json::Value::Null);
        let lost: u64 = runs.iter().map(|r| r["lost"].as_u64().unwrap_or(0)).sum();
        record.row(vec![
            name.clone(),
            format!("{m:.0}"),
            rates
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(" "),
            format!(
                "{} / {} ms",
                mid["round_trip_p50_ms"], mid["round_trip_p99_ms"]
            ),
            lost.to_string(),
        ]);
        record.report(name, serde_json::Value::Array(runs.clone()));
    }
    record.finish()?;
    drop((running, echo));
    Ok(())
}
