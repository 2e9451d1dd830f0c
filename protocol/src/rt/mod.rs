//! Runtime helpers shared by the four binaries: one shutdown idiom, one
//! signal policy, one log format.

pub mod body;
mod logging;
mod shutdown;

pub use logging::init_tracing;
pub use shutdown::{reload_on_sighup, shutdown_on_signals, Shutdown};

use std::fmt::Display;
use std::future::Future;

/// The body of every daemon's `main`: logging, the signal policy, then
/// `run`; an error is logged and ends the process with status 1.
pub async fn daemon_main<F, Fut, E>(log_level: u8, verbose: bool, run: F)
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    init_tracing(log_level, verbose);
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
