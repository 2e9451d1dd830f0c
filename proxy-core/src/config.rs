//! The proxy's settings, from its command line (the runner derives them from
//! `pushpin.conf`'s `[proxy]` section).

use clap::Parser;
use holdfast_runtime::DaemonArgs;
use std::path::PathBuf;

/// Where SockJS's iframe page loads the client library from (Pushpin's
/// default).
pub const DEFAULT_SOCKJS_URL: &str = "http://cdn.jsdelivr.net/sockjs/0.3.4/sockjs.min.js";

/// Command line of `holdfast-proxy`.
#[derive(Debug, Clone, Parser)]
#[command(name = "holdfast-proxy", version, about = "Holdfast proxy")]
pub struct Config {
    /// Instance id (ZHTTP `from`, ROUTER identity). Default: `proxy_<pid>`.
    #[arg(long)]
    pub id: Option<String>,

    /// connmgr's ZHTTP spec base (see holdfast-connmgr --zclient-stream).
    #[arg(long = "connmgr-stream")]
    pub connmgr_stream: String,

    /// The handler's accept socket, where held sessions are handed over
    /// (without it, answers that ask for a hold get 501).
    #[arg(long = "handler-accept-spec")]
    pub handler_accept_spec: Option<String>,

    /// The handler's WebSocket control input (PUSH, connected).
    #[arg(long = "handler-ws-control-in-spec")]
    pub handler_ws_control_in_spec: Option<String>,

    /// The handler's WebSocket deliveries (SUB, connected, subscribed to
    /// this proxy's id).
    #[arg(long = "handler-ws-control-out-spec")]
    pub handler_ws_control_out_spec: Option<String>,

    /// The handler's inspect socket (DEALER, connected), asked for the
    /// client session of requests on routes with `session`.
    #[arg(long = "handler-inspect-spec")]
    pub handler_inspect_spec: Option<String>,

    /// Routes file; re-read on SIGHUP.
    #[arg(long = "routes-file")]
    pub routes_file: Option<PathBuf>,

    /// A route line (repeatable); when given, these replace the routes file.
    #[arg(long = "route")]
    pub routes: Vec<String>,

    /// Issuer claim of `Grip-Sig`.
    #[arg(long = "sig-iss", default_value = "pushpin")]
    pub sig_iss: String,

    /// Key of `Grip-Sig` (`base64:` and `file:` prefixes accepted).
    #[arg(
        long = "sig-key",
        env = "HOLDFAST_SIG_KEY",
        default_value = "changeme",
        hide_env_values = true
    )]
    pub sig_key: String,

    /// Key that makes a client whose `Grip-Sig` verifies with it trusted.
    #[arg(
        long = "upstream-key",
        env = "HOLDFAST_UPSTREAM_KEY",
        hide_env_values = true
    )]
    pub upstream_key: Option<String>,

    /// X-Forwarded-For rules for untrusted clients: `truncate:N`, `append`.
    #[arg(long = "x-forwarded-for", default_value = "")]
    pub x_forwarded_for: String,

    /// X-Forwarded-For rules for trusted clients.
    #[arg(long = "x-forwarded-for-trusted", default_value = "")]
    pub x_forwarded_for_trusted: String,

    /// `proto-only` sets X-Forwarded-Proto on TLS requests, `true` also the
    /// legacy X-Forwarded-Protocol, anything else sets neither.
    #[arg(long = "set-x-forwarded-protocol", default_value = "proto-only")]
    pub set_x_forwarded_protocol: String,

    /// Trust a client's X-Forwarded-Proto: https marks the request as TLS.
    #[arg(long = "accept-x-forwarded-protocol")]
    pub accept_x_forwarded_protocol: bool,

    /// Detailed error bodies for every route.
    #[arg(long)]
    pub debug: bool,

    /// The SockJS client library the page of SockJS's iframe transports
    /// loads.
    #[arg(long = "sockjs-url", default_value = DEFAULT_SOCKJS_URL)]
    pub sockjs_url: String,

    /// CORS headers (and JSON-P) on every route, as the route option `aco`.
    #[arg(long = "auto-cross-origin")]
    pub auto_cross_origin: bool,

    /// With the route option `orig_headers`: client headers passed as
    /// originals only when the client already marked them (comma-separated).
    #[arg(long = "orig-headers-need-mark", default_value = "")]
    pub orig_headers_need_mark: String,

    /// Where metrics reports go (the handler's metrics socket; PUSH,
    /// connected).
    #[arg(long = "metrics-spec")]
    pub metrics_spec: Option<String>,

    /// Bytes the edge cache (routes with `cache`) may hold; least recently
    /// used answers go first.
    #[arg(long = "cache-size", default_value_t = 64 * 1024 * 1024)]
    pub cache_size: usize,

    /// Largest WebSocket message taken from an origin, in bytes (the same
    /// limit connmgr applies to clients, `client_max_message_size`); a
    /// larger one closes the client with 1009.
    #[arg(long = "max-message-size", default_value_t = 1024 * 1024)]
    pub max_message_size: usize,

    /// Format, log level, verbosity.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

impl Config {
    /// The instance id, defaulting as Pushpin does.
    pub fn instance_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("proxy_{}", std::process::id()))
    }
}
