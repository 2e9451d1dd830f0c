//! Benchmark scenarios: each starts what it measures (nginx, Varnish,
//! NATS, Holdfast, Pushpin 1.36) through the end-to-end harness, waits for
//! each to be ready on its own signal, runs the load generator (this
//! program, as child processes) or wrk, and writes one JSON record
//! (`target/bench/<scenario>-<time>.json`) whose table it prints:
//! [`render`] prints a record's table again. `scripts/bench-env.sh`
//! installs the tools.
//!
//! - [`subjects`]: the proxies a scenario compares, and how each starts.
//! - [`fixtures`]: the benchmarks' origin (nginx) and its purge sink.
//! - [`clients`]: load generator child processes, and wrk.
//! - [`record`]: the JSON record and its table.
//! - one file per scenario: [`proxy`], [`ws`], [`fanout`], [`held`],
//!   [`heap`], [`soak`], [`cdn`], [`bus`].

/// A command line: flags and values, each turned into a string.
macro_rules! argv {
    ($($arg:expr),* $(,)?) => { Vec::<String>::from([$($arg.to_string()),*]) };
}

pub mod bus;
pub mod cdn;
pub mod clients;
pub mod fanout;
pub mod fixtures;
pub mod heap;
pub mod held;
pub mod proxy;
pub mod record;
pub mod render;
pub mod soak;
pub mod subjects;
pub mod ws;

/// A scenario, and its settings.
#[derive(Debug, clap::Subcommand)]
pub enum Scenario {
    /// Plain proxying: wrk against nginx directly, through Holdfast and
    /// through Pushpin, alternating runs.
    Proxy(proxy::Args),
    /// WebSocket echo: directly, through Holdfast and through Pushpin.
    Ws(ws::Args),
    /// Held streams (or WebSockets) and fan-out, proxy after proxy.
    Fanout(fanout::Args),
    /// Very many held streams from several client processes.
    Held(held::Args),
    /// Where a held stream's bytes go: heaptrack under each process.
    Heap(heap::Args),
    /// Many held streams for a long time under steady publishing.
    Soak(soak::Args),
    /// Chaining through a CDN, and a purge + publish storm.
    Cdn(cdn::Args),
    /// Scale-out: one instance, the ZeroMQ broker, NATS, JetStream.
    Bus(bus::Args),
    /// Prints the table of records written before.
    Render(render::Args),
}

/// Runs a scenario.
pub async fn run(scenario: Scenario) -> anyhow::Result<()> {
    match scenario {
        Scenario::Proxy(args) => proxy::run(args).await,
        Scenario::Ws(args) => ws::run(args).await,
        Scenario::Fanout(args) => fanout::run(args).await,
        Scenario::Held(args) => held::run(args).await,
        Scenario::Heap(args) => heap::run(args).await,
        Scenario::Soak(args) => soak::run(args).await,
        Scenario::Cdn(args) => cdn::run(args).await,
        Scenario::Bus(args) => bus::run(args).await,
        Scenario::Render(args) => render::run(args),
    }
}

/// Progress, on stderr (the table goes to stdout).
pub fn progress(line: &str) {
    eprintln!("== {line}");
}

/// The median of `values` (the lower one of an even count's middle two).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// The `p` quantile of `values` (nearest rank; NaN without values).
pub fn quantile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.99), 5.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
