//! Runtime helpers shared by the four binaries: one shutdown idiom, one
//! signal policy, one log format.

pub mod body;
mod logging;
mod shutdown;

pub use logging::init_tracing;
pub use shutdown::{reload_on_sighup, shutdown_on_signals, Shutdown};
