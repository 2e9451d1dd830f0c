//! Holdfast's runner.
//!
//! Reads the configuration (built-in defaults, an optional `pushpin.conf`,
//! command-line overrides), derives each process's arguments and socket
//! addresses, starts `holdfast-connmgr`, `holdfast-proxy` and
//! `holdfast-handler`, merges their output, restarts any that crash, passes
//! SIGHUP on to the proxy, and shuts everything down on SIGTERM/SIGINT.
//!
//! # Layout
//! - [`config`]: INI parsing, defaults, settings resolution.
//! - [`service`]: one child: its command line and output.
//! - [`supervisor`]: start, restart with back-off, stop.
//! - [`logs`]: merged output with process-name prefixes.
//! - [`helpers`]: where the programs it starts are found.
//! - [`broker`]: `holdfast broker`, the XSUB/XPUB forwarder for scale-out.

pub mod broker;
pub mod config;
pub mod helpers;
pub mod logs;
pub mod service;
pub mod supervisor;

use config::{ConnmgrDialect, Settings, DEFAULT_ROUTE};
use helpers::Helpers;
use service::Service;
use std::path::PathBuf;
use std::time::Duration;

/// Longest path a unix socket address can hold (`sun_path`, less the NUL).
const IPC_PATH_MAX: usize = 107;

/// The ZHTTP spec base shared by connmgr and proxy.
pub fn connmgr_base(settings: &Settings) -> String {
    format!(
        "ipc://{}",
        settings
            .rundir
            .join(format!("{}connmgr", settings.ipc_prefix))
            .display()
    )
}

/// Where proxies hand held sessions to the handler.
pub fn accept_spec(settings: &Settings) -> String {
    format!(
        "ipc://{}",
        settings
            .rundir
            .join(format!("{}accept", settings.ipc_prefix))
            .display()
    )
}

/// Where proxies report WebSocket sessions' subscriptions to the handler,
/// and where the handler sends them published messages.
pub fn ws_control_specs(settings: &Settings) -> (String, String) {
    let base = accept_spec(settings);
    (format!("{base}-ws-in"), format!("{base}-ws-out"))
}

/// Where proxies ask the handler for requests' client sessions.
pub fn inspect_spec(settings: &Settings) -> String {
    format!("{}-inspect", accept_spec(settings))
}

/// The handler's metrics socket (connmgr and proxy report to it).
pub fn metrics_spec(settings: &Settings) -> String {
    format!(
        "ipc://{}",
        settings
            .rundir
            .join(format!("{}metrics-in", settings.ipc_prefix))
            .display()
    )
}

/// Checks the ipc socket paths fit in a unix socket address.
pub fn check_ipc_paths(settings: &Settings) -> Result<(), String> {
    let longest = settings
        .rundir
        .join(format!("{}connmgr-16-out-stream", settings.ipc_prefix));
    let len = longest.as_os_str().len();
    if len > IPC_PATH_MAX {
        return Err(format!(
            "rundir {} is too long for ipc sockets ({len} > {IPC_PATH_MAX} bytes); set [global] rundir to a shorter path",
            settings.rundir.display()
        ));
    }
    Ok(())
}

/// Name (and ZeroMQ id) of the `n`th process of a kind: `connmgr`,
/// `connmgr-2`, ... Ids stay the same across restarts.
fn nth(kind: &str, n: usize) -> String {
    if n == 1 {
        kind.to_owned()
    } else {
        format!("{kind}-{n}")
    }
}

/// The helper programs `settings` needs (not connmgr when another
/// program serves clients).
pub fn needed_helpers(settings: &Settings) -> Vec<&'static str> {
    helpers::HELPERS
        .into_iter()
        .filter(|name| settings.connmgr_bin.is_none() || *name != "holdfast-connmgr")
        .collect()
}

/// The services with the arguments derived from `settings`: the handler,
/// `proxy_count` proxies and `connmgr_count` connection managers.
pub fn services(settings: &Settings, helpers: &Helpers) -> Vec<Service> {
    // Every connmgr has its own sockets; proxies and the handler link to all.
    let bases: Vec<String> = (1..=settings.connmgr_count)
        .map(|n| format!("{}{}", connmgr_base(settings), &nth("", n)))
        .collect();
    let base = bases.join(",");
    let connmgr = connmgr_args(settings);
    let (proxy, proxy_env) = proxy_args(settings, &base);
    let (handler, handler_env) = handler_args(settings, base);
    let bin = |name: &str| -> PathBuf { helpers.path(name) };
    let grace = settings.shutdown_grace.to_string();
    let stop_grace = Duration::from_secs(settings.shutdown_grace) + supervisor::STOP_MARGIN;
    // Stable ids (`--id` = the service name): a restarted proxy or handler
    // takes its predecessor's identity, so connmgr's sessions owned by the
    // dead process reach the new one at once (which cancels them) instead
    // of waiting out expiry.
    let service =
        |name: String, program: &str, mut args: Vec<String>, env: Vec<(String, String)>| {
            args.splice(0..0, ["--id".to_owned(), name.clone()]);
            args.extend(["--shutdown-grace".to_owned(), grace.clone()]);
            Service {
                name: name.into(),
                program: bin(program),
                args,
                env,
                stop_grace,
                announces_ready: true,
            }
        };
    let mut services = vec![service(
        "handler".into(),
        "holdfast-handler",
        handler,
        handler_env,
    )];
    for n in 1..=settings.proxy_count {
        services.push(service(
            nth("proxy", n),
            "holdfast-proxy",
            proxy.clone(),
            proxy_env.clone(),
        ));
    }
    for (n, base) in (1..=settings.connmgr_count).zip(&bases) {
        let mut args = vec!["--zclient-stream".to_owned(), base.clone()];
        args.extend(connmgr.iter().cloned());
        let mut connmgr = service(nth("connmgr", n), "holdfast-connmgr", args, Vec::new());
        if let Some(other) = &settings.connmgr_bin {
            connmgr.program = other.program.clone();
            if other.dialect == ConnmgrDialect::Condure {
                connmgr.args = condure_args(settings, &connmgr.name, base);
                connmgr.announces_ready = false;
            }
        }
        services.push(connmgr);
    }
    services
}

/// The log level of process `name`.
fn level(settings: &Settings, name: &str) -> String {
    settings.log_levels.for_process(name).to_string()
}

/// What every connmgr is started with (each adds its own
/// `--zclient-stream`).
fn connmgr_args(settings: &Settings) -> Vec<String> {
    let mut connmgr: Vec<String> = vec![
        "--buffer-size".into(),
        settings.client_buffer_size.to_string(),
        "--maxconn".into(),
        // client_maxconn is the instance's total.
        settings
            .client_maxconn
            .div_ceil(settings.connmgr_count.max(1))
            .to_string(),
        "--max-body-size".into(),
        settings.client_max_body_size.to_string(),
        "--idle-timeout".into(),
        settings.client_idle_timeout.to_string(),
        "--metrics-spec".into(),
        metrics_spec(settings),
        "--max-message-size".into(),
        settings.client_max_message_size.to_string(),
        "--loglevel".into(),
        level(settings, "connmgr"),
    ];
    for addr in &settings.http_addrs {
        connmgr.push("--listen".into());
        connmgr.push(addr.to_string());
    }
    for addr in &settings.https_addrs {
        connmgr.push("--tls-listen".into());
        connmgr.push(addr.to_string());
    }
    if settings.allow_compression {
        connmgr.push("--allow-compression".into());
    }
    if !settings.https_addrs.is_empty() {
        connmgr.push("--certs".into());
        connmgr.push(settings.certs_dir.display().to_string());
    }
    if settings.connmgr_count > 1 {
        // The kernel spreads new connections over the processes.
        connmgr.push("--reuse-port".into());
    }
    connmgr
}

/// What every proxy is started with: its arguments, and its secrets (in
/// the environment, not in `ps` output).
fn proxy_args(settings: &Settings, base: &str) -> (Vec<String>, Vec<(String, String)>) {
    let p = &settings.proxy;
    let mut proxy = vec![
        "--connmgr-stream".into(),
        base.to_owned(),
        "--handler-accept-spec".into(),
        accept_spec(settings),
        "--handler-ws-control-in-spec".into(),
        ws_control_specs(settings).0,
        "--handler-ws-control-out-spec".into(),
        ws_control_specs(settings).1,
        "--handler-inspect-spec".into(),
        inspect_spec(settings),
        "--metrics-spec".into(),
        metrics_spec(settings),
        "--sig-iss".into(),
        p.sig_iss.clone(),
        "--x-forwarded-for".into(),
        p.x_forwarded_for.clone(),
        "--x-forwarded-for-trusted".into(),
        p.x_forwarded_for_trusted.clone(),
        "--set-x-forwarded-protocol".into(),
        p.set_x_forwarded_protocol.clone(),
        "--loglevel".into(),
        level(settings, "proxy"),
    ];
    if p.accept_x_forwarded_protocol {
        proxy.push("--accept-x-forwarded-protocol".into());
    }
    if p.debug {
        proxy.push("--debug".into());
    }
    if !p.sockjs_url.is_empty() {
        proxy.push("--sockjs-url".into());
        proxy.push(p.sockjs_url.clone());
    }
    if p.auto_cross_origin {
        proxy.push("--auto-cross-origin".into());
    }
    if !p.orig_headers_need_mark.is_empty() {
        proxy.push("--orig-headers-need-mark".into());
        proxy.push(p.orig_headers_need_mark.clone());
    }
    proxy.push("--cache-size".into());
    proxy.push(p.cache_size.to_string());
    // One message-size limit, applied on both sides of the proxy.
    proxy.push("--max-message-size".into());
    proxy.push(settings.client_max_message_size.to_string());
    match (&settings.routes_file, settings.routes.is_empty()) {
        (Some(file), true) => {
            proxy.push("--routes-file".into());
            proxy.push(file.display().to_string());
        }
        (None, true) => {
            proxy.push("--route".into());
            proxy.push(DEFAULT_ROUTE.into());
        }
        (_, false) => {
            for route in &settings.routes {
                proxy.push("--route".into());
                proxy.push(route.clone());
            }
        }
    }
    let mut proxy_env = vec![("HOLDFAST_SIG_KEY".to_owned(), p.sig_key.clone())];
    if !p.upstream_key.is_empty() {
        proxy_env.push(("HOLDFAST_UPSTREAM_KEY".to_owned(), p.upstream_key.clone()));
    }
    (proxy, proxy_env)
}

/// What the handler is started with: its arguments, and its secrets (in
/// the environment, not in `ps` output).
fn handler_args(settings: &Settings, base: String) -> (Vec<String>, Vec<(String, String)>) {
    let mut handler: Vec<String> = vec![
        "--connmgr-stream".into(),
        base,
        "--accept-spec".into(),
        accept_spec(settings),
        "--ws-control-in-spec".into(),
        ws_control_specs(settings).0,
        "--ws-control-out-spec".into(),
        ws_control_specs(settings).1,
        "--inspect-spec".into(),
        inspect_spec(settings),
        "--metrics-in-spec".into(),
        metrics_spec(settings),
        "--health-requires".into(),
        // condure sends no metrics reports.
        if condure(settings) {
            "proxy"
        } else {
            "connmgr,proxy"
        }
        .into(),
        "--stats-spec".into(),
        settings.stats_spec.clone(),
        "--push-in-spec".into(),
        settings.push_in_spec.clone(),
        "--push-in-sub-specs".into(),
        settings.push_in_sub_specs.clone(),
        "--push-in-http".into(),
        settings.push_in_http.clone(),
        "--command-spec".into(),
        settings.command_spec.clone(),
        "--loglevel".into(),
        level(settings, "handler"),
        "--update-on-first-subscription".into(),
        settings.update_on_first_subscription.to_string(),
    ];
    if settings.push_in_sub_connect {
        handler.push("--push-in-sub-connect".into());
    }
    for target in &settings.purge_targets {
        handler.push("--purge-target".into());
        handler.push(target.clone());
    }
    handler.push("--purge-window-ms".into());
    handler.push(settings.purge_window_ms.to_string());
    for (key, value) in &settings.delivery {
        handler.push(format!("--{}", key.replace('_', "-")));
        handler.push(value.to_string());
    }
    handler.push("--push-in-http-jwt-leeway".into());
    handler.push(settings.push_in_http_jwt_leeway.to_string());
    handler.push("--fastly-api-url".into());
    handler.push(settings.fastly_api_url.clone());
    let mut handler_env = Vec::new();
    if !settings.push_in_http_basic_auth.is_empty() {
        handler_env.push((
            "HOLDFAST_PUBLISH_BASIC".to_owned(),
            settings.push_in_http_basic_auth.clone(),
        ));
    }
    if !settings.push_in_http_jwt_key.is_empty() {
        handler_env.push((
            "HOLDFAST_PUBLISH_KEY".to_owned(),
            settings.push_in_http_jwt_key.clone(),
        ));
    }
    if !settings.fastly_api_token.is_empty() {
        handler_env.push((
            "HOLDFAST_FASTLY_TOKEN".to_owned(),
            settings.fastly_api_token.clone(),
        ));
    }
    for (key, value) in &settings.bus {
        match *key {
            "bus_url" => handler_env.push(("HOLDFAST_BUS_URL".to_owned(), value.clone())),
            "bus_token" => handler_env.push(("HOLDFAST_BUS_TOKEN".to_owned(), value.clone())),
            _ => {
                handler.push(format!("--{}", key.replace('_', "-")));
                handler.push(value.clone());
            }
        }
    }
    (handler, handler_env)
}

/// Whether the connection manager is Pushpin's condure.
pub fn condure(settings: &Settings) -> bool {
    settings
        .connmgr_bin
        .as_ref()
        .is_some_and(|bin| bin.dialect == ConnmgrDialect::Condure)
}

/// condure's command line for what it shares with `holdfast-connmgr`, as
/// Pushpin's runner writes it. Holdfast's additions (body size, idle
/// timeout, message size, metrics) have no condure flag: its own apply.
fn condure_args(settings: &Settings, id: &str, base: &str) -> Vec<String> {
    let mut args = vec![
        format!("--id={id}"),
        format!("--zclient-stream={base}"),
        format!("--buffer-size={}", settings.client_buffer_size),
        format!("--stream-maxconn={}", settings.client_maxconn),
        format!("--log-level={}", settings.log_levels.for_process("connmgr")),
    ];
    for addr in &settings.http_addrs {
        args.push(format!("--listen={addr},stream"));
    }
    for addr in &settings.https_addrs {
        // The same default as holdfast-connmgr's: default_<port>, else
        // default (condure takes exactly the name it is given).
        let per_port = format!("default_{}", addr.port());
        let default = if settings.certs_dir.join(format!("{per_port}.crt")).exists() {
            per_port
        } else {
            "default".to_owned()
        };
        args.push(format!("--listen={addr},stream,tls,default-cert={default}"));
    }
    if !settings.https_addrs.is_empty() {
        args.push(format!(
            "--tls-identities-dir={}",
            settings.certs_dir.display()
        ));
    }
    if settings.allow_compression {
        args.push("--compression".into());
    }
    args
}

/// Removes the ipc socket files this instance bound, and the run directory
/// if it is left empty.
pub fn clean_rundir(settings: &Settings) {
    let ours = [
        format!("{}connmgr", settings.ipc_prefix),
        format!("{}accept", settings.ipc_prefix),
        format!("{}metrics-in", settings.ipc_prefix),
        format!("{}stats", settings.ipc_prefix),
    ];
    if let Ok(entries) = std::fs::read_dir(&settings.rundir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ours.iter().any(|prefix| name.starts_with(prefix.as_str())) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(&settings.rundir);
}
