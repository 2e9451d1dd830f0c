//! `holdfast-bench`: drives any GRIP proxy (Holdfast, Pushpin) the same way
//! and reports JSON.
//!
//! It opens N stream connections to a URL whose origin answers with a
//! `Grip-Hold: stream` on one channel, waits until every one has its initial
//! response, then publishes M items over HTTP one after another; each item is
//! `m<k>\n`, and each connection notes when it sees it. Reported: connect
//! rate, publish→delivery latency to the first and to the last subscriber
//! (p50/p99/max over the items), deliveries per second, the memory (RSS)
//! of the given processes and their children before and after connecting,
//! and the CPU time each of them (and this process) spent per delivery
//! while the items went out.
//!
//! With `--rate`, items go out at that rate without waiting for their
//! deliveries (a storm; with `--purge`, each names a cache key to purge,
//! so Holdfast paces them), and what each connection received is reported:
//! how many items, and whether and when the last one arrived.
//!
//! `--ws-echo` and `--serve-echo` measure WebSocket echo through a proxy
//! instead (see [`client::ws_echo`]).

//!
//! # Layout
//! - [`client`]: the load generator (the flat flags, as above).
//! - [`scenario`]: whole benchmarks as subcommands (`holdfast-bench
//!   fanout 10000 5`): what they start, the load, a JSON record and its
//!   table.
//! - [`procfs`]: memory and CPU time of processes, from `/proc`.
//! - [`stats`]: percentiles and latency summaries.

mod client;
mod procfs;
#[macro_use]
mod scenario;
mod stats;

use clap::Parser;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "holdfast-bench",
    about = "Hold stream connections on a GRIP proxy, publish, measure; or run a whole scenario",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// A whole scenario (without one: the load generator alone).
    #[command(subcommand)]
    scenario: Option<scenario::Scenario>,
    #[command(flatten)]
    client: client::Args,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        // Interrupted, what the scenario started is stopped (its fixtures'
        // drops run) rather than left behind.
        Some(scenario) => tokio::select! {
            done = scenario::run(scenario) => done,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
        },
        None => client::run::run(cli.client).await,
    }
}
