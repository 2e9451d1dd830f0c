//! The handler's settings, from its command line (the runner derives them
//! from `pushpin.conf`'s `[handler]` section).

use clap::Parser;
use holdfast_runtime::DaemonArgs;
use std::net::SocketAddr;

/// Command line of `holdfast-handler`.
#[derive(Debug, Clone, Parser)]
#[command(name = "holdfast-handler", version, about = "Holdfast handler")]
pub struct Config {
    /// Instance id (ZHTTP `from`, ROUTER identity). Default: `handler_<pid>`.
    #[arg(long)]
    pub id: Option<String>,

    /// connmgr's ZHTTP spec base (as given to holdfast-connmgr).
    #[arg(long = "connmgr-stream")]
    pub connmgr_stream: Option<String>,

    /// Where proxies hand held sessions over (PULL, bound).
    #[arg(long = "accept-spec")]
    pub accept_spec: Option<String>,

    /// Where proxies ask for requests' client sessions (ZRPC `inspect`,
    /// ROUTER, bound; routes with `session`).
    #[arg(long = "inspect-spec")]
    pub inspect_spec: Option<String>,

    /// Where proxies report WebSocket sessions' subscriptions (PULL, bound).
    #[arg(long = "ws-control-in-spec")]
    pub ws_control_in_spec: Option<String>,

    /// Where `ws-message` content goes to the proxies (PUB, bound; topic =
    /// the proxy's id).
    #[arg(long = "ws-control-out-spec")]
    pub ws_control_out_spec: Option<String>,

    /// Command socket (ZeroMQ REP-compatible ROUTER), bound.
    #[arg(long = "command-spec", default_value = "tcp://127.0.0.1:5563")]
    pub command_spec: String,

    /// Publish input, ZeroMQ PULL (bound).
    #[arg(long = "push-in-spec")]
    pub push_in_spec: Option<String>,

    /// Publish input, ZeroMQ SUB (two frames: channel, item); bound unless
    /// `--push-in-sub-connect`.
    #[arg(long = "push-in-sub-specs")]
    pub push_in_sub_specs: Option<String>,

    /// Connect the SUB input instead of binding it.
    #[arg(long = "push-in-sub-connect")]
    pub push_in_sub_connect: bool,

    /// Publish input, HTTP (`POST /publish/`).
    #[arg(long = "push-in-http")]
    pub push_in_http: Option<SocketAddr>,

    /// Require this `user:password` (Basic) on the HTTP publish API.
    #[arg(
        long = "push-in-http-basic-auth",
        env = "HOLDFAST_PUBLISH_BASIC",
        hide_env_values = true
    )]
    pub push_in_http_basic_auth: Option<String>,

    /// Require a Bearer JWT signed HS256 with this key on the HTTP publish API.
    #[arg(
        long = "push-in-http-jwt-key",
        env = "HOLDFAST_PUBLISH_KEY",
        hide_env_values = true
    )]
    pub push_in_http_jwt_key: Option<String>,

    /// Largest HTTP publish body, bytes (`push_in_http_max_body_size`).
    #[arg(long = "push-in-http-max-body-size", default_value_t = crate::publish::http::DEFAULT_MAX_BODY)]
    pub push_in_http_max_body_size: usize,

    /// Publishes (an HTTP request's items, or one ZeroMQ message) that may
    /// wait for delivery (`message_hwm`); when full, publishers wait (HTTP)
    /// or are not read (ZeroMQ): nothing is dropped.
    #[arg(long = "message-hwm", default_value_t = crate::publish::QUEUE)]
    pub message_hwm: usize,

    /// Channels one connection may subscribe to; more are ignored
    /// (`connection_subscription_max`).
    #[arg(long = "connection-subscription-max", default_value_t = 20)]
    pub connection_subscription_max: usize,

    /// Seconds a channel stays subscribed (and keeps its last id) after its
    /// last long-poll left (`subscription_linger`).
    #[arg(long = "subscription-linger", default_value_t = 60)]
    pub subscription_linger: u64,

    /// Seconds a published item id is remembered to drop duplicates; 0:
    /// not at all (`id_cache_ttl`).
    #[arg(long = "id-cache-ttl", default_value_t = 60)]
    pub id_cache_ttl: u64,

    /// Milliseconds an out-of-order item waits for its predecessor
    /// (`message_wait`).
    #[arg(long = "message-wait", default_value_t = 5000)]
    pub message_wait: u64,

    /// Items kept per channel for clients coming back (`history_size`); 0:
    /// no history.
    #[arg(long = "history-size", default_value_t = 0)]
    pub history_size: usize,

    /// Seconds an item is kept in history (`history_ttl`).
    #[arg(long = "history-ttl", default_value_t = 600)]
    pub history_ttl: u64,

    /// Channels history remembers; past it the least recently published
    /// is forgotten (`history_channels`).
    #[arg(long = "history-channels", default_value_t = 10_000)]
    pub history_channels: usize,

    /// Clock skew allowed on a Bearer token's `exp` and `nbf`, seconds.
    #[arg(long = "push-in-http-jwt-leeway", default_value_t = 5)]
    pub push_in_http_jwt_leeway: u64,

    /// One second after a channel gets its first subscriber, ask the origin
    /// again for every session on it (closes the race between the origin's
    /// answer and the subscription), as Pushpin's
    /// `update_on_first_subscription`.
    #[arg(long = "update-on-first-subscription", default_value_t = true, action = clap::ArgAction::Set)]
    pub update_on_first_subscription: bool,

    /// Pushpin's stats socket (PUB, bound): conn, sub, message and report
    /// events.
    #[arg(long = "stats-spec")]
    pub stats_spec: Option<String>,

    /// Where connmgr and proxy processes send their metrics reports (PULL,
    /// bound).
    #[arg(long = "metrics-in-spec")]
    pub metrics_in_spec: Option<String>,

    /// Processes `/health` requires recent reports from (comma-separated:
    /// `connmgr`, `proxy`).
    #[arg(long = "health-requires", value_delimiter = ',')]
    pub health_requires: Vec<String>,

    /// Where items' `purge` goes (repeatable): `self` (the proxies' edge
    /// caches), a Varnish base URL, or `fastly:<service id>`.
    #[arg(long = "purge-target", default_value = "self")]
    pub purge_targets: Vec<crate::purge::Target>,

    /// Purge + publish pacing window per channel, in milliseconds.
    #[arg(long = "purge-window-ms", default_value_t = 1000)]
    pub purge_window_ms: u64,

    /// Fastly API base URL (for `fastly:` purge targets).
    #[arg(long = "fastly-api-url", default_value = "https://api.fastly.com")]
    pub fastly_api_url: String,

    /// Fastly API token (for `fastly:` purge targets).
    #[arg(
        long = "fastly-api-token",
        env = "HOLDFAST_FASTLY_TOKEN",
        hide_env_values = true
    )]
    pub fastly_api_token: Option<String>,

    /// The bus between instances: comma-separated NATS server URLs (may
    /// carry `user:password@`, so it is read from the environment too).
    #[arg(long = "bus-url", env = "HOLDFAST_BUS_URL", hide_env_values = true)]
    pub bus_url: Option<String>,

    /// First token of the bus subjects (`<prefix>.ch.<channel>`).
    #[arg(long = "bus-subject-prefix", default_value = "holdfast")]
    pub bus_subject_prefix: String,

    /// NATS credentials file (`.creds`: JWT and NKey seed).
    #[arg(long = "bus-credentials-file")]
    pub bus_credentials_file: Option<std::path::PathBuf>,

    /// NATS token.
    #[arg(long = "bus-token", env = "HOLDFAST_BUS_TOKEN", hide_env_values = true)]
    pub bus_token: Option<String>,

    /// CA certificates (PEM) for `tls://` NATS servers.
    #[arg(long = "bus-tls-ca-file")]
    pub bus_tls_ca_file: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for NATS servers that ask for one.
    #[arg(long = "bus-tls-cert-file")]
    pub bus_tls_cert_file: Option<std::path::PathBuf>,

    /// The client certificate's key (PEM).
    #[arg(long = "bus-tls-key-file")]
    pub bus_tls_key_file: Option<std::path::PathBuf>,

    /// Servers keeping a copy of the bus's JetStream stream (with channel
    /// history on): 1, or 3 or 5 in a cluster.
    #[arg(long = "bus-history-replicas", default_value_t = 1)]
    pub bus_history_replicas: usize,

    /// Format, log level, verbosity.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

impl Config {
    /// How to reach the bus, when `--bus-url` names one.
    pub fn bus(&self) -> Option<crate::bus::Settings> {
        let url = self.bus_url.as_deref().filter(|u| !u.trim().is_empty())?;
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        Some(crate::bus::Settings {
            url: url.to_owned(),
            subject_prefix: self.bus_subject_prefix.clone(),
            credentials_file: self.bus_credentials_file.clone(),
            token: set(&self.bus_token),
            tls_ca_file: self.bus_tls_ca_file.clone(),
            tls_cert_file: self.bus_tls_cert_file.clone(),
            tls_key_file: self.bus_tls_key_file.clone(),
            name: self.instance_id(),
            stream: (self.history_size > 0).then(|| crate::bus::StreamSettings {
                per_channel: i64::try_from(self.history_size).unwrap_or(i64::MAX),
                ttl: std::time::Duration::from_secs(self.history_ttl),
                replicas: self.bus_history_replicas,
            }),
        })
    }

    /// The instance id, defaulting as Pushpin does.
    pub fn instance_id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("handler_{}", std::process::id()))
    }
}
