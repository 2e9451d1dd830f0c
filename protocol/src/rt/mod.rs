//! Runtime helpers shared by the four binaries: one shutdown idiom, one
//! signal policy, one log format; the response body, WebSocket settings
//! and permessage-deflate layer connmgr and the proxy share.

pub mod body;
pub mod deflate;
mod logging;
pub mod metrics;
mod shutdown;
pub mod ws;

pub use logging::init_tracing;
pub use shutdown::{reload_on_sighup, shutdown_on_signals, Shutdown};

use crate::Format;
use std::fmt::Display;

/// Command-line options every daemon (connmgr, proxy, handler) shares.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Encoding of the ZHTTP packets this process sends.
    #[arg(long, default_value = "tnetstring")]
    pub format: Format,

    /// Log level: 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    #[arg(long = "loglevel", default_value_t = 2)]
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
