//! connmgr's settings, from its command line (the runner derives them from
//! `pushpin.conf`, as Pushpin's runner does for condure).

use clap::Parser;
use holdfast_runtime::DaemonArgs;
use std::net::SocketAddr;
use std::time::Duration;

/// Command line of `holdfast-connmgr`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "holdfast-connmgr",
    version,
    about = "Holdfast connection manager"
)]
pub struct Config {
    /// Instance id: the ZHTTP `from` address and ROUTER identity.
    #[arg(long, default_value = "connmgr")]
    pub id: String,

    /// Client address to listen on (repeatable).
    #[arg(long = "listen", default_value = "0.0.0.0:7999")]
    pub listen: Vec<SocketAddr>,

    /// Share the listening ports with other connmgr processes
    /// (SO_REUSEPORT: the kernel spreads new connections over them).
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,

    /// Client address to listen on with TLS (repeatable); needs `--certs`.
    #[arg(long = "tls-listen")]
    pub tls_listen: Vec<SocketAddr>,

    /// Folder of PEM certificates for TLS listeners: `<host>.crt` and
    /// `<host>.key`, `_.<parent domain>.*` for wildcards, and `default.*` (or
    /// `default_<port>.*`) for everything else.
    #[arg(long = "certs")]
    pub certs: Option<std::path::PathBuf>,

    /// Base of the ZHTTP socket addresses toward the proxy: binds BASE-out
    /// (PUSH), BASE-out-stream (ROUTER) and BASE-in (SUB); for tcp://host:P,
    /// ports P, P+1 and P+2.
    #[arg(long = "zclient-stream")]
    pub zclient_stream: String,

    /// Bytes of request header accepted, and response bytes buffered per
    /// connection (the credits offered to the proxy).
    #[arg(long = "buffer-size", default_value_t = 8192)]
    pub buffer_size: usize,

    /// Most simultaneous client connections; further ones get 503.
    #[arg(long = "maxconn", default_value_t = 50_000)]
    pub maxconn: usize,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long = "max-body-size", default_value_t = 10 * 1024 * 1024)]
    pub max_body_size: u64,

    /// Seconds an idle keep-alive connection (or one sending its request
    /// header slowly) stays open.
    #[arg(long = "idle-timeout", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Where metrics reports go (the handler's metrics socket; PUSH,
    /// connected).
    #[arg(long = "metrics-spec")]
    pub metrics_spec: Option<String>,

    /// Negotiate permessage-deflate with WebSocket clients that offer it
    /// (condure's `--compression`).
    #[arg(long = "allow-compression")]
    pub allow_compression: bool,

    /// Largest WebSocket message accepted from a client, in bytes; larger
    /// ones close the connection with 1009.
    #[arg(long = "max-message-size", default_value_t = 1024 * 1024)]
    pub max_message_size: usize,

    /// Format, log level, verbosity.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

impl Config {
    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }
}
