//! The handler's settings, from its command line (the runner derives them
//! from `pushpin.conf`'s `[handler]` section).

use clap::Parser;

/// Command line of `holdfast-handler`.
#[derive(Debug, Clone, Parser)]
#[command(name = "holdfast-handler", version, about = "Holdfast handler")]
pub struct Config {
    /// Command socket (ZeroMQ REP-compatible ROUTER), bound.
    #[arg(long = "command-spec", default_value = "tcp://127.0.0.1:5563")]
    pub command_spec: String,

    /// Log level: 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    #[arg(long = "loglevel", default_value_t = 2)]
    pub log_level: u8,

    /// Debug logging.
    #[arg(long)]
    pub verbose: bool,
}
