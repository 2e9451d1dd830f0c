//! Settings: the built-in defaults, an optional `pushpin.conf`-style file on
//! top, then command-line overrides; resolved into what each process needs.

mod defaults;
pub mod ini;

pub use defaults::{DEFAULT_CONFIG, DEFAULT_ROUTE};

use ini::{Ini, IniError};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Keys Holdfast reads, per section.
const USED: &[(&str, &[&str])] = &[
    ("global", &["rundir", "ipc_prefix", "port_offset"]),
    (
        "runner",
        &[
            "http_port",
            "https_ports",
            "log_level",
            "client_buffer_size",
            "client_maxconn",
            "client_max_body_size",
            "client_idle_timeout",
            "allow_compression",
            "client_max_message_size",
            "shutdown_grace",
            "connmgr_count",
            "proxy_count",
            "connmgr_bin",
            "libexec_dir",
            "rundir",
        ],
    ),
    (
        "proxy",
        &[
            "routesfile",
            "debug",
            "accept_x_forwarded_protocol",
            "set_x_forwarded_protocol",
            "x_forwarded_for",
            "x_forwarded_for_trusted",
            "sig_iss",
            "sig_key",
            "upstream_key",
            "cache_size",
            "auto_cross_origin",
            "orig_headers_need_mark",
            "sockjs_url",
        ],
    ),
    (
        "handler",
        &[
            "push_in_spec",
            "push_in_sub_specs",
            "push_in_sub_spec",
            "push_in_sub_connect",
            "push_in_http_basic_auth",
            "push_in_http_jwt_key",
            "push_in_http_jwt_leeway",
            "push_in_http_addr",
            "push_in_http_port",
            "command_spec",
            "stats_spec",
            "update_on_first_subscription",
            "purge_targets",
            "purge_window_ms",
            "fastly_api_url",
            "fastly_api_token",
        ],
    ),
];

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid INI.
    #[error("{path}: {source}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and what.
        source: IniError,
    },
    /// A key has a value it cannot take.
    #[error("[{section}] {key}={value:?}: {reason}")]
    BadValue {
        /// Section.
        section: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What it should be.
        reason: String,
    },
}

/// Everything the runner decides before starting the processes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Folder of the config file (relative paths resolve against it).
    pub config_dir: Option<PathBuf>,
    /// Folder for ipc sockets.
    pub rundir: PathBuf,
    /// Prefix of ipc socket names.
    pub ipc_prefix: String,
    /// Added to every TCP port.
    pub port_offset: u16,
    /// Client HTTP listen addresses.
    pub http_addrs: Vec<SocketAddr>,
    /// Client HTTPS listen addresses (`https_ports`).
    pub https_addrs: Vec<SocketAddr>,
    /// TLS certificates: `<config dir>/runner/certs`, as Pushpin keeps them.
    pub certs_dir: PathBuf,
    /// Default log level and per-process overrides.
    pub log_levels: LogLevels,
    /// `client_buffer_size`.
    pub client_buffer_size: usize,
    /// `client_maxconn`.
    pub client_maxconn: usize,
    /// `client_max_body_size` (Holdfast addition).
    pub client_max_body_size: u64,
    /// `client_idle_timeout` in seconds (Holdfast addition).
    pub client_idle_timeout: u64,
    /// `allow_compression` (Holdfast addition): permessage-deflate.
    pub allow_compression: bool,
    /// `client_max_message_size` (Holdfast addition): largest WebSocket
    /// message from a client.
    pub client_max_message_size: usize,
    /// `shutdown_grace` in seconds (Holdfast addition): how long each
    /// process drains after SIGTERM.
    pub shutdown_grace: u64,
    /// `connmgr_count` (Holdfast addition): connection manager processes.
    pub connmgr_count: usize,
    /// `proxy_count` (Holdfast addition): proxy processes.
    pub proxy_count: usize,
    /// `connmgr_bin` (Holdfast addition): the connection manager program,
    /// when it is not `holdfast-connmgr` beside the runner (for example
    /// Pushpin's `condure`, during a migration).
    pub connmgr_bin: Option<ConnmgrBin>,
    /// `libexec_dir` (Holdfast addition): where the helper programs are
    /// looked for after the runner's own folder.
    pub libexec_dir: PathBuf,
    /// Routes file, when routes come from a file.
    pub routes_file: Option<PathBuf>,
    /// Route lines given with `--route` (they replace the file).
    pub routes: Vec<String>,
    /// `[proxy]` settings passed through.
    pub proxy: ProxySettings,
    /// `command_spec`, port offset applied.
    pub command_spec: String,
    /// `stats_spec` (Pushpin's stats socket), placeholders expanded.
    pub stats_spec: String,
    /// `push_in_spec`, port offset applied (used once publishing exists).
    pub push_in_spec: String,
    /// `push_in_sub_specs`, port offset applied.
    pub push_in_sub_specs: String,
    /// `push_in_sub_connect`: connect the SUB input instead of binding it.
    pub push_in_sub_connect: bool,
    /// `update_on_first_subscription`: update a channel's sessions a second
    /// after its first subscription.
    pub update_on_first_subscription: bool,
    /// `purge_targets` (Holdfast addition), comma-separated.
    pub purge_targets: Vec<String>,
    /// `purge_window_ms` (Holdfast addition).
    pub purge_window_ms: u64,
    /// `fastly_api_url` (Holdfast addition).
    pub fastly_api_url: String,
    /// `fastly_api_token` (Holdfast addition).
    pub fastly_api_token: String,
    /// `push_in_http_basic_auth` (Holdfast addition): `user:password`.
    pub push_in_http_basic_auth: String,
    /// `push_in_http_jwt_key` (Holdfast addition): HS256 key for Bearer tokens.
    pub push_in_http_jwt_key: String,
    /// Pushpin's delivery settings, passed to the handler under the same
    /// names: `push_in_http_max_body_size`, `message_hwm`, `message_wait`,
    /// `id_cache_ttl`, `connection_subscription_max`, `subscription_linger`.
    pub delivery: Vec<(&'static str, u64)>,
    /// `push_in_http_jwt_leeway` (Holdfast addition): clock skew allowed on
    /// the token's `exp` and `nbf`, seconds.
    pub push_in_http_jwt_leeway: u64,
    /// `push_in_http_addr:push_in_http_port`, port offset applied.
    pub push_in_http: String,
    /// The NATS bus (Holdfast addition): `bus_url` (empty: none), then the
    /// other `bus_*` keys by name, passed as `--bus-...` (`bus_url` and
    /// `bus_token` in the environment: they may carry secrets).
    pub bus: Vec<(&'static str, String)>,
}

/// A connection manager program other than Holdfast's own.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnmgrBin {
    /// A path, or a name looked up on `PATH`.
    pub program: PathBuf,
    /// Which command line it takes.
    pub dialect: ConnmgrDialect,
}

/// The command line a connection manager takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnmgrDialect {
    /// `holdfast-connmgr`'s own.
    Holdfast,
    /// Pushpin's `condure` (and `pushpin-connmgr`): `--listen=addr,stream`,
    /// `--stream-maxconn`, `--log-level`, no Holdfast additions.
    Condure,
}

impl ConnmgrBin {
    /// The dialect follows the program's file name.
    fn new(program: PathBuf) -> ConnmgrBin {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dialect = if matches!(name.as_str(), "condure" | "pushpin-connmgr") {
            ConnmgrDialect::Condure
        } else {
            ConnmgrDialect::Holdfast
        };
        ConnmgrBin { program, dialect }
    }
}

/// `[proxy]` keys handed to `holdfast-proxy`.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// `debug`.
    pub debug: bool,
    /// `accept_x_forwarded_protocol`.
    pub accept_x_forwarded_protocol: bool,
    /// `set_x_forwarded_protocol`.
    pub set_x_forwarded_protocol: String,
    /// `x_forwarded_for`.
    pub x_forwarded_for: String,
    /// `x_forwarded_for_trusted`.
    pub x_forwarded_for_trusted: String,
    /// `sig_iss`.
    pub sig_iss: String,
    /// `sig_key`.
    pub sig_key: String,
    /// `upstream_key`.
    pub upstream_key: String,
    /// `cache_size` (Holdfast addition): bytes of the edge cache.
    pub cache_size: usize,
    /// `auto_cross_origin`: `aco` on every route.
    pub auto_cross_origin: bool,
    /// `orig_headers_need_mark`.
    pub orig_headers_need_mark: String,
    /// `sockjs_url`.
    pub sockjs_url: String,
}

/// Log levels: a default and per-process overrides (`2,proxy:3`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogLevels {
    /// For processes without an override.
    pub default: u8,
    /// `(process, level)`.
    pub overrides: Vec<(String, u8)>,
}

impl LogLevels {
    /// Parses `N`, `name:N`, comma-separated.
    pub fn parse(text: &str) -> Result<LogLevels, String> {
        let mut levels = LogLevels {
            default: 2,
            overrides: Vec::new(),
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || format!("bad log level {part:?}: expected N or process:N");
            match part.split_once(':') {
                Some((name, n)) => levels.overrides.push((
                    normalize_service(name).to_owned(),
                    n.trim().parse().map_err(|_| bad())?,
                )),
                None => levels.default = part.parse().map_err(|_| bad())?,
            }
        }
        Ok(levels)
    }

    /// The level for `process`.
    pub fn for_process(&self, process: &str) -> u8 {
        self.overrides
            .iter()
            .rev()
            .find(|(n, _)| n == process)
            .map_or(self.default, |(_, l)| *l)
    }
}

/// Pushpin's legacy service names map onto Holdfast's.
fn normalize_service(name: &str) -> &str {
    match name.trim() {
        "condure" | "pushpin-connmgr" => "connmgr",
        "pushpin-proxy" => "proxy",
        "pushpin-handler" => "handler",
        other => other,
    }
}

/// Command-line overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--route` lines.
    pub routes: Vec<String>,
    /// `--port`.
    pub port: Option<String>,
    /// `--id`.
    pub id: Option<u16>,
    /// `--loglevel`.
    pub log_level: Option<String>,
    /// `--verbose`.
    pub verbose: bool,
}

/// Reads the configuration: defaults, then the file, then overrides.
/// Returns the settings and the warnings to log.
pub fn load(overrides: &Overrides) -> Result<(Settings, Vec<String>), ConfigError> {
    let mut ini = ini::parse(DEFAULT_CONFIG).map_err(|source| ConfigError::Syntax {
        path: PathBuf::from("<built-in>"),
        source,
    })?;
    let mut warnings = Vec::new();
    let mut config_dir = None;
    if let Some(path) = &overrides.config {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file = ini::parse(&text).map_err(|source| ConfigError::Syntax {
            path: path.clone(),
            source,
        })?;
        warnings.extend(unused_keys(&file, path));
        for (section, keys) in file.sections {
            ini.sections.entry(section).or_default().extend(keys);
        }
        config_dir = Some(
            path.parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        );
    }
    resolve(&ini, config_dir, overrides).map(|s| (s, warnings))
}

fn unused_keys(file: &Ini, path: &Path) -> Vec<String> {
    let mut unused = Vec::new();
    for (section, keys) in &file.sections {
        let used = USED
            .iter()
            .find(|(s, _)| s == section)
            .map_or(&[][..], |(_, k)| *k);
        let (delivery, bus) = if section == "handler" {
            (&DELIVERY_KEYS[..], &BUS_KEYS[..])
        } else {
            (&[][..], &[][..])
        };
        for key in keys.keys() {
            let key_str = key.as_str();
            if !used.contains(&key_str) && !delivery.contains(&key_str) && !bus.contains(&key_str) {
                unused.push(format!("[{section}] {key}"));
            }
        }
    }
    if unused.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{}: keys not used by Holdfast, accepted and ignored: {}",
        path.display(),
        unused.join(", ")
    )]
}

fn bad(section: &str, key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        section: section.into(),
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

fn get<'a>(ini: &'a Ini, section: &str, key: &str) -> &'a str {
    ini.get(section, key).unwrap_or("")
}

/// The bus keys, passed on when set.
pub const BUS_KEYS: [&str; 8] = [
    "bus_url",
    "bus_history_replicas",
    "bus_subject_prefix",
    "bus_credentials_file",
    "bus_token",
    "bus_tls_ca_file",
    "bus_tls_cert_file",
    "bus_tls_key_file",
];

/// The handler keys passed on as `--<key with dashes> <number>`.
const DELIVERY_KEYS: [&str; 9] = [
    "push_in_http_max_body_size",
    "message_hwm",
    "message_wait",
    "id_cache_ttl",
    "connection_subscription_max",
    "subscription_linger",
    "history_size",
    "history_ttl",
    "history_channels",
];

fn number<T: std::str::FromStr>(ini: &Ini, section: &str, key: &str) -> Result<T, ConfigError> {
    let value = get(ini, section, key);
    value
        .parse()
        .map_err(|_| bad(section, key, value, "expected a non-negative whole number"))
}

/// Most processes of one kind: each takes memory and a core's share.
pub const MAX_PROCESSES: usize = 16;

fn process_count(ini: &Ini, key: &str) -> Result<usize, ConfigError> {
    let value = get(ini, "runner", key);
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PROCESSES).contains(&n) => Ok(n),
        _ => Err(bad(
            "runner",
            key,
            value,
            "expected a whole number from 1 to 16",
        )),
    }
}

fn boolean(ini: &Ini, section: &str, key: &str) -> Result<bool, ConfigError> {
    match get(ini, section, key) {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(bad(section, key, other, "expected true or false")),
    }
}

/// `[addr:]port` → listen address (all interfaces when no address).
pub fn parse_listen(text: &str, offset: u16) -> Result<SocketAddr, String> {
    let text = text.trim();
    let with_offset = |port: &str| -> Result<u16, String> {
        let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
        port.checked_add(offset)
            .ok_or_else(|| format!("{text:?} plus port_offset {offset} is past 65535"))
    };
    if let Ok(port) = text.parse::<u16>() {
        let _ = port;
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            with_offset(text)?,
        ));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected [addr:]port, found {text:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("bad address {host:?} in {text:?}"))?;
    Ok(SocketAddr::new(ip, with_offset(port)?))
}

/// Adds `offset` to the port of every `tcp://host:port` in a spec list and
/// expands `{rundir}` and `{ipc_prefix}`.
pub fn resolve_spec(
    spec: &str,
    offset: u16,
    rundir: &Path,
    ipc_prefix: &str,
) -> Result<String, String> {
    let expanded = spec
        .replace("{rundir}", &rundir.display().to_string())
        .replace("{ipc_prefix}", ipc_prefix);
    let mut out = Vec::new();
    for part in expanded.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part
            .strip_prefix("tcp://")
            .and_then(|rest| rest.rsplit_once(':'))
        {
            Some((host, port)) => {
                let port: u16 = port.parse().map_err(|_| format!("bad port in {part:?}"))?;
                let port = port
                    .checked_add(offset)
                    .ok_or_else(|| format!("{part:?} plus port_offset is past 65535"))?;
                out.push(format!("tcp://{host}:{port}"));
            }
            None => out.push(part.to_owned()),
        }
    }
    Ok(out.join(","))
}

fn resolve(ini: &Ini, config_dir: Option<PathBuf>, o: &Overrides) -> Result<Settings, ConfigError> {
    let (port_offset, ipc_prefix) = instance(ini, o)?;
    let (http_addrs, https_addrs) = listen_addrs(ini, o, port_offset)?;
    let relative = |p: &str| relative_to(&config_dir, p);
    let first_port = http_addrs.first().map_or(7999, |a| a.port());
    let rundir_value = ini
        .get("global", "rundir")
        .or(ini.get("runner", "rundir"))
        .filter(|v| !v.is_empty());
    let rundir = match rundir_value {
        Some(dir) => relative(dir),
        None => std::env::temp_dir().join(format!("holdfast-{first_port}")),
    };
    let spec = |key: &str| {
        let value = get(ini, "handler", key);
        resolve_spec(value, port_offset, &rundir, &ipc_prefix)
            .map_err(|e| bad("handler", key, value, e))
    };
    let sub_key = if ini
        .get("handler", "push_in_sub_specs")
        .is_some_and(|v| !v.is_empty())
    {
        "push_in_sub_specs"
    } else {
        "push_in_sub_spec"
    };
    let routes_file = if o.routes.is_empty() {
        Some(relative(get(ini, "proxy", "routesfile"))).filter(|_| config_dir.is_some())
    } else {
        None
    };
    let (client_buffer_size, client_maxconn) = client_limits(ini)?;
    let (connmgr_count, connmgr_bin) = connmgr_of(ini, &config_dir)?;
    Ok(Settings {
        ipc_prefix: ipc_prefix.clone(),
        port_offset,
        http_addrs,
        https_addrs,
        certs_dir: relative("runner/certs"),
        log_levels: log_levels(ini, o)?,
        client_buffer_size,
        client_maxconn,
        client_max_body_size: number(ini, "runner", "client_max_body_size")?,
        client_idle_timeout: number(ini, "runner", "client_idle_timeout")?,
        allow_compression: boolean(ini, "runner", "allow_compression")?,
        shutdown_grace: number(ini, "runner", "shutdown_grace")?,
        connmgr_count,
        connmgr_bin,
        libexec_dir: relative(get(ini, "runner", "libexec_dir")),
        proxy_count: process_count(ini, "proxy_count")?,
        client_max_message_size: number(ini, "runner", "client_max_message_size")?,
        routes_file,
        routes: o.routes.clone(),
        proxy: proxy_settings(ini)?,
        command_spec: spec("command_spec")?,
        stats_spec: spec("stats_spec")?,
        push_in_spec: spec("push_in_spec")?,
        push_in_sub_specs: spec(sub_key)?,
        push_in_sub_connect: boolean(ini, "handler", "push_in_sub_connect")?,
        update_on_first_subscription: boolean(ini, "handler", "update_on_first_subscription")?,
        purge_targets: get(ini, "handler", "purge_targets")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        purge_window_ms: number(ini, "handler", "purge_window_ms")?,
        fastly_api_url: get(ini, "handler", "fastly_api_url").to_owned(),
        fastly_api_token: get(ini, "handler", "fastly_api_token").to_owned(),
        push_in_http_basic_auth: get(ini, "handler", "push_in_http_basic_auth").to_owned(),
        push_in_http_jwt_key: get(ini, "handler", "push_in_http_jwt_key").to_owned(),
        push_in_http_jwt_leeway: number(ini, "handler", "push_in_http_jwt_leeway")?,
        delivery: DELIVERY_KEYS
            .iter()
            .map(|&key| number(ini, "handler", key).map(|n| (key, n)))
            .collect::<Result<_, _>>()?,
        push_in_http: push_in_http(ini, port_offset)?,
        bus: BUS_KEYS
            .iter()
            .map(|&key| (key, get(ini, "handler", key).trim().to_owned()))
            .filter(|(_, value)| !value.is_empty())
            .collect(),
        rundir,
        config_dir,
    })
}

/// A path from the config: relative to the config file's folder, when
/// there is one.
fn relative_to(config_dir: &Option<PathBuf>, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match (config_dir, path.is_relative()) {
        (Some(dir), true) => dir.join(path),
        _ => path,
    }
}

/// The port offset and socket-name prefix. As Pushpin's runner, `--id N`
/// moves every port by 10 N and gives the instance its own socket names.
fn instance(ini: &Ini, o: &Overrides) -> Result<(u16, String), ConfigError> {
    let mut port_offset: u16 = number(ini, "global", "port_offset")?;
    let mut ipc_prefix = get(ini, "global", "ipc_prefix").to_owned();
    if let Some(id) = o.id {
        port_offset = id
            .checked_mul(10)
            .and_then(|n| n.checked_add(port_offset))
            .ok_or_else(|| bad("runner", "--id", &id.to_string(), "too large"))?;
        ipc_prefix = format!("{id}-{ipc_prefix}");
    }
    Ok((port_offset, ipc_prefix))
}

/// The client ports: plain (`--port`, else `http_port`) and TLS.
fn listen_addrs(
    ini: &Ini,
    o: &Overrides,
    port_offset: u16,
) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), ConfigError> {
    let list = |key: &str| {
        get(ini, "runner", key)
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_listen(p, port_offset).map_err(|e| bad("runner", key, p, e)))
            .collect::<Result<Vec<_>, _>>()
    };
    let http = match &o.port {
        Some(port) => vec![parse_listen(port, 0).map_err(|e| bad("runner", "--port", port, e))?],
        None => list("http_port")?,
    };
    Ok((http, list("https_ports")?))
}

/// The HTTP publish input's address, its port moved by the offset.
fn push_in_http(ini: &Ini, port_offset: u16) -> Result<String, ConfigError> {
    let http_port: u16 = number(ini, "handler", "push_in_http_port")?;
    let port = http_port.checked_add(port_offset).ok_or_else(|| {
        bad(
            "handler",
            "push_in_http_port",
            &http_port.to_string(),
            "plus port_offset is past 65535",
        )
    })?;
    Ok(format!(
        "{}:{port}",
        get(ini, "handler", "push_in_http_addr")
    ))
}

/// `log_level` (the file's, then `--loglevel`'s), debug with `--verbose`.
fn log_levels(ini: &Ini, o: &Overrides) -> Result<LogLevels, ConfigError> {
    let mut text = get(ini, "runner", "log_level").to_owned();
    if let Some(cli) = &o.log_level {
        text = format!("{text},{cli}");
    }
    let mut levels = LogLevels::parse(&text).map_err(|e| bad("runner", "log_level", &text, e))?;
    if o.verbose {
        levels.default = levels.default.max(3);
    }
    Ok(levels)
}

/// `client_buffer_size` (at least 1024) and `client_maxconn` (at least 1).
fn client_limits(ini: &Ini) -> Result<(usize, usize), ConfigError> {
    let buffer: usize = number(ini, "runner", "client_buffer_size")?;
    if buffer < 1024 {
        return Err(bad(
            "runner",
            "client_buffer_size",
            &buffer.to_string(),
            "at least 1024",
        ));
    }
    let maxconn: usize = number(ini, "runner", "client_maxconn")?;
    if maxconn == 0 {
        return Err(bad("runner", "client_maxconn", "0", "at least 1"));
    }
    Ok((buffer, maxconn))
}

/// How many connmgrs, and another program in their place, if any (a bare
/// name is looked up on PATH; a path is relative to the config). Pushpin's
/// condure cannot share client ports.
fn connmgr_of(
    ini: &Ini,
    config_dir: &Option<PathBuf>,
) -> Result<(usize, Option<ConnmgrBin>), ConfigError> {
    let count = process_count(ini, "connmgr_count")?;
    let bin = match get(ini, "runner", "connmgr_bin").trim() {
        "" => None,
        name if !name.contains('/') => Some(ConnmgrBin::new(PathBuf::from(name))),
        path => Some(ConnmgrBin::new(relative_to(config_dir, path))),
    };
    if let Some(bin) = &bin {
        if bin.dialect == ConnmgrDialect::Condure && count > 1 {
            return Err(bad(
                "runner",
                "connmgr_bin",
                &bin.program.display().to_string(),
                "condure cannot share client ports with other processes: set connmgr_count=1",
            ));
        }
    }
    Ok((count, bin))
}

/// The `[proxy]` settings.
fn proxy_settings(ini: &Ini) -> Result<ProxySettings, ConfigError> {
    Ok(ProxySettings {
        debug: boolean(ini, "proxy", "debug")?,
        accept_x_forwarded_protocol: boolean(ini, "proxy", "accept_x_forwarded_protocol")?,
        set_x_forwarded_protocol: get(ini, "proxy", "set_x_forwarded_protocol").to_owned(),
        x_forwarded_for: get(ini, "proxy", "x_forwarded_for").to_owned(),
        x_forwarded_for_trusted: get(ini, "proxy", "x_forwarded_for_trusted").to_owned(),
        sig_iss: get(ini, "proxy", "sig_iss").to_owned(),
        sig_key: get(ini, "proxy", "sig_key").to_owned(),
        upstream_key: get(ini, "proxy", "upstream_key").to_owned(),
        cache_size: number(ini, "proxy", "cache_size")?,
        auto_cross_origin: boolean(ini, "proxy", "auto_cross_origin")?,
        orig_headers_need_mark: get(ini, "proxy", "orig_headers_need_mark").to_owned(),
        sockjs_url: get(ini, "proxy", "sockjs_url").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, o: Overrides) -> Result<(Settings, Vec<String>), ConfigError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("holdfast-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pushpin.conf");
        std::fs::write(&path, text).unwrap();
        let loaded = load(&Overrides {
            config: Some(path),
            ..o
        });
        // Everything is read by now; leave nothing in /tmp.
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    /// The service the runner would start under `name`, helpers found in
    /// /opt/holdfast.
    fn service(s: &Settings, name: &str) -> crate::Service {
        crate::services(
            s,
            &crate::Helpers::in_dir(std::path::Path::new("/opt/holdfast")),
        )
        .into_iter()
        .find(|s| &*s.name == name)
        .unwrap()
    }

    #[test]
    fn bus_keys_reach_the_handler_secrets_in_its_environment() {
        let text = "[handler]\nbus_url=nats://u:secret@127.0.0.1:4222\nbus_token=t0k\nbus_tls_ca_file=/etc/ca.pem\n";
        let (s, _) = load_text(text, Overrides::default()).unwrap();
        let handler = service(&s, "handler");
        let args = handler.args.join(" ");
        assert!(args.contains("--bus-tls-ca-file /etc/ca.pem"), "{args}");
        assert!(args.contains("--bus-subject-prefix holdfast"), "{args}");
        assert!(!args.contains("secret") && !args.contains("t0k"), "{args}");
        let env = |name: &str| {
            handler
                .env
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            env("HOLDFAST_BUS_URL"),
            Some("nats://u:secret@127.0.0.1:4222")
        );
        assert_eq!(env("HOLDFAST_BUS_TOKEN"), Some("t0k"));
        // Unset: no bus at all.
        let (s, _) = load_text("[runner]\n", Overrides::default()).unwrap();
        assert!(s.bus.iter().all(|(k, _)| *k != "bus_url"));
    }

    #[test]
    fn condure_as_the_connection_manager() {
        let text = "[runner]\nconnmgr_bin=condure\nhttp_port=127.0.0.1:8000\nhttps_ports=8443\nclient_maxconn=900\nallow_compression=true\n";
        let (s, _) = load_text(text, Overrides::default()).unwrap();
        let connmgr = service(&s, "connmgr");
        assert_eq!(connmgr.program, PathBuf::from("condure"), "found on PATH");
        assert!(!connmgr.announces_ready);
        for arg in [
            "--id=connmgr",
            "--listen=127.0.0.1:8000,stream",
            // No default_8443.crt in the (missing) certificates folder.
            "--listen=0.0.0.0:8443,stream,tls,default-cert=default",
            "--stream-maxconn=900",
            "--compression",
            "--log-level=2",
        ] {
            assert!(
                connmgr.args.iter().any(|a| a == arg),
                "{arg}: {:?}",
                connmgr.args
            );
        }
        assert!(
            !connmgr
                .args
                .iter()
                .any(|a| a.starts_with("--shutdown-grace")),
            "no Holdfast-only flag: {:?}",
            connmgr.args
        );
        let handler = service(&s, "handler");
        let at = handler
            .args
            .iter()
            .position(|a| a == "--health-requires")
            .unwrap();
        assert_eq!(handler.args[at + 1], "proxy", "condure reports no metrics");

        // Another program keeps Holdfast's command line; a path is taken
        // relative to the config file.
        let (s, _) = load_text(
            "[runner]\nconnmgr_bin=bin/my-connmgr\n",
            Overrides::default(),
        )
        .unwrap();
        let bin = s.connmgr_bin.unwrap();
        assert_eq!(bin.dialect, ConnmgrDialect::Holdfast);
        assert!(bin.program.ends_with("bin/my-connmgr") && bin.program.is_absolute());

        let err = load_text(
            "[runner]\nconnmgr_bin=/usr/bin/condure\nconnmgr_count=2\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("connmgr_count=1"), "{err}");
    }

    #[test]
    fn built_in_defaults() {
        let (s, warnings) = load(&Overrides::default()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(s.http_addrs, vec!["0.0.0.0:7999".parse().unwrap()]);
        assert_eq!(s.command_spec, "tcp://127.0.0.1:5563");
        assert_eq!(s.shutdown_grace, 5);
        assert_eq!((s.connmgr_count, s.proxy_count), (1, 1));
        let text = "[runner]\nconnmgr_count=2\nproxy_count=3\nclient_maxconn=1001\n";
        let (many, _) = load_text(text, Overrides::default()).unwrap();
        let services =
            crate::services(&many, &crate::Helpers::in_dir(std::path::Path::new("/bin")));
        let names: Vec<&str> = services.iter().map(|s| &*s.name).collect();
        assert_eq!(
            names,
            [
                "handler",
                "proxy",
                "proxy-2",
                "proxy-3",
                "connmgr",
                "connmgr-2"
            ]
        );
        let arg = |service: &crate::service::Service, flag: &str| {
            let at = service.args.iter().position(|a| a == flag)?;
            service.args.get(at + 1).cloned()
        };
        let connmgr2 = &services[5];
        assert_eq!(arg(connmgr2, "--id").as_deref(), Some("connmgr-2"));
        assert!(arg(connmgr2, "--zclient-stream")
            .unwrap()
            .ends_with("connmgr-2"));
        assert_eq!(arg(connmgr2, "--maxconn").as_deref(), Some("501"));
        assert!(connmgr2.args.iter().any(|a| a == "--reuse-port"));
        // Proxies and the handler link to both connmgrs.
        for service in &services[..4] {
            let bases = arg(service, "--connmgr-stream").unwrap();
            assert_eq!(bases.split(',').count(), 2, "{bases}");
        }
        assert_eq!(s.push_in_http, "127.0.0.1:5561");
        assert_eq!(s.proxy.sig_key, "changeme");
        assert_eq!(s.routes_file, None);
        assert_eq!(s.client_buffer_size, 8192);
    }

    #[test]
    fn pushpin_conf_with_offset_and_unused_keys() {
        let text = "[global]\ninclude={libdir}/internal.conf\nrundir=run\nport_offset=100\n[runner]\nservices=condure,zurl,pushpin-proxy,pushpin-handler\nhttp_port=127.0.0.1:8000\ncondure_bin=condure\n[proxy]\nroutesfile=routes\nsig_key=secret\nzurl_out_specs=ipc://x\n[handler]\ncommand_spec=tcp://127.0.0.1:5563\n";
        let (s, warnings) = load_text(text, Overrides::default()).unwrap();
        assert_eq!(s.http_addrs, vec!["127.0.0.1:8100".parse().unwrap()]);
        assert_eq!(s.command_spec, "tcp://127.0.0.1:5663");
        assert_eq!(s.push_in_spec, "tcp://127.0.0.1:5660");
        assert_eq!(s.proxy.sig_key, "secret");
        let dir = s.config_dir.clone().unwrap();
        assert_eq!(s.rundir, dir.join("run"));
        assert_eq!(s.routes_file, Some(dir.join("routes")));
        assert_eq!(warnings.len(), 1);
        for key in [
            "[global] include",
            "[runner] services",
            "[runner] condure_bin",
            "[proxy] zurl_out_specs",
        ] {
            assert!(warnings[0].contains(key), "{key} in {}", warnings[0]);
        }
    }

    #[test]
    fn overrides() {
        let o = Overrides {
            port: Some("127.0.0.1:9000".into()),
            id: Some(2),
            log_level: Some("proxy:3".into()),
            routes: vec!["* h:1".into()],
            ..Overrides::default()
        };
        let (s, _) = load(&o).unwrap();
        assert_eq!(s.http_addrs, vec!["127.0.0.1:9000".parse().unwrap()]);
        assert_eq!(s.port_offset, 20);
        assert_eq!(s.ipc_prefix, "2-pushpin-");
        assert_eq!(s.command_spec, "tcp://127.0.0.1:5583");
        assert_eq!(s.log_levels.for_process("proxy"), 3);
        assert_eq!(s.log_levels.for_process("connmgr"), 2);
        assert_eq!(s.routes_file, None);
    }

    #[test]
    fn bad_values_are_named() {
        let err = load_text("[runner]\nclient_maxconn=lots\n", Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[runner] client_maxconn=\"lots\": expected a non-negative whole number"
        );
        let err = load_text("[runner]\nhttp_port=nope\n", Overrides::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("[runner] http_port=\"nope\""),
            "{err}"
        );
        let err = load_text("[runner]\nshutdown_grace=-1\n", Overrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[runner] shutdown_grace=\"-1\": expected a non-negative whole number"
        );
        for bad_count in ["0", "17", "two"] {
            let text = format!("[runner]\nconnmgr_count={bad_count}\n");
            let err = load_text(&text, Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("from 1 to 16"), "{err}");
        }
        let err = load_text("[proxy]\ndebug=maybe\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("expected true or false"));
        let err = load_text("[global\n", Overrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }));
        let err = load(&Overrides {
            config: Some("/nonexistent/pushpin.conf".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        let err = load_text("[global]\nport_offset=70000\n", Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("port_offset"));
    }

    #[test]
    fn log_levels() {
        assert_eq!(LogLevels::parse("3").unwrap().default, 3);
        let l = LogLevels::parse("2,condure:4").unwrap();
        assert_eq!(l.for_process("connmgr"), 4);
        assert!(LogLevels::parse("x").is_err());
        assert!(LogLevels::parse("proxy:x").is_err());
    }
}
