//! What Holdfast's processes share at run time, as opposed to on the wire
//! (that is `holdfast-protocol`): one daemon command line, one shutdown
//! idiom and signal policy, one log format, the metrics registry and its
//! reports, the streamed HTTP body that turns "bytes written" into ZHTTP
//! credits, and WebSocket messages as ZHTTP carries them.
//!
//! # Layout
//! - this file: [`DaemonArgs`] (the options every daemon shares) and
//!   [`daemon_main`].
//! - [`shutdown`](Shutdown): token and tracker, first/second signal policy, SIGHUP.
//! - `logging`: the tracing set-up ([`init_tracing`]).
//! - [`metrics`]: counters, gauges, histograms; reports to the handler, Prometheus text.
//! - [`body`]: an HTTP body fed from a queue, counting what is drained.
//! - `allocator`: the allocator's settings at start ([`give_memory_back`]).
//! - [`ws`]: WebSocket messages to and from ZHTTP packets; the [`ws::Outbox`].
//!
//! With feature `jemalloc` (which the process crates turn on by default),
//! linking this crate makes jemalloc the process's allocator; not in fuzz
//! builds, which keep the sanitizer's.

#[cfg(all(feature = "jemalloc", not(fuzzing)))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod allocator;
pub mod body;
mod logging;
pub mod metrics;
mod shutdown;
pub mod ws;

pub use allocator::give_memory_back;
pub use logging::{init_tracing, lifecycle_directive, LIFECYCLE};
pub use shutdown::{reload_on_sighup, shutdown_on_signals, Shutdown};

use holdfast_protocol::Format;
use std::fmt::Display;

/// Command-line options every daemon (connmgr, proxy, handler) shares.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Encoding of the ZHTTP packets this process sends.
    #[arg(long, default_value = "tnetstring")]
    pub format: Format,

    /// Log level: 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    #[arg(long = "loglevel", alias = "log-level", default_value_t = 2)]
    pub log_level: u8,

    /// Debug logging.
    #[arg(long)]
    pub verbose: bool,

    /// Log lines as text or as JSON objects.
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: LogFormat,

    /// Seconds to drain after SIGTERM before closing what is left.
    #[arg(long = "shutdown-grace", default_value_t = 5)]
    pub shutdown_grace: u64,
}

impl DaemonArgs {
    /// The drain period after SIGTERM.
    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.shutdown_grace)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `timestamp LEVEL message key=value`.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`).
    Json,
}
use std::future::Future;

/// The body of every daemon's `main`: logging, the signal policy, then
/// `run`; an error is logged and ends the process with status 1.
pub async fn daemon_main<F, Fut, E>(args: &DaemonArgs, run: F)
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    init_tracing(args.log_level, args.verbose, args.log_format);
    give_memory_back();
    let shutdown = Shutdown::new();
    if let Err(err) = shutdown_on_signals(shutdown.token.clone()) {
        tracing::error!("cannot install signal handlers: {err}");
        std::process::exit(1);
    }
    if let Err(err) = run(shutdown).await {
        tracing::error!("{err:#}");
        std::process::exit(1);
    }
}
