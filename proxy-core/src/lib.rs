//! Holdfast's proxy.
//!
//! Takes each client request connmgr passes over ZHTTP, picks its route,
//! forwards it to the origin (pooled hyper client, TLS where the target asks,
//! failover between targets), signs it with `Grip-Sig`, and streams the
//! response back within connmgr's credits. GRIP instructions in responses
//! are read with `holdfast_grip` (shared with the handler, which asks
//! origins too) and applied; holding connections is the handler's work.
//!
//! # Layout
//! - [`config`]: command line and settings.
//! - [`routes`]: routes file parser and route selection.
//! - [`shared`]: what every session shares.
//! - [`prepare`]: a request as read from connmgr's first packet (its route).
//! - [`session`]: one request as a ZHTTP session (the data path), one type
//!   per kind: plain HTTP, WebSocket, SockJS.
//! - [`origin`]: sending to a route's targets, the headers sent to origins,
//!   answer bodies, target addresses.
//! - [`cache`]: the edge cache (route option `cache`), its whole request flow.
//! - [`inspect`]: asks the handler for a request's client session (`session` routes).
//! - [`metrics`]: requests, origin latency, cache; reported to the handler.
//! - [`error`]: request errors and whose fault they are.

pub mod cache;
pub mod config;
pub mod error;
pub mod inspect;
pub mod metrics;
pub mod origin;
pub mod prepare;
pub mod routes;
pub mod session;
pub mod shared;

pub use config::Config;

use holdfast_grip::sign::{Signer, Verifier};
use holdfast_protocol::wscontrol;
use holdfast_protocol::zmq::connect_push;
use holdfast_protocol::zmq::link::Link;
use holdfast_runtime::metrics::spawn_reporter;
use holdfast_runtime::{reload_on_sighup, Shutdown};
use origin::headers::{ForwardRules, SetProto};
use routes::{parse_routes, RouteTable};
use session::sockjs::registry::Registry as SockJsSessions;
use session::ws::routes::WsRoutes;
use shared::Shared;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Loads the routes: `--route` lines when given, else the routes file.
pub fn load_routes(config: &Config) -> anyhow::Result<RouteTable> {
    let text = if !config.routes.is_empty() {
        config.routes.join("\n")
    } else if let Some(path) = &config.routes_file {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read routes file {}: {e}", path.display()))?
    } else {
        String::new()
    };
    let routes = parse_routes(&text).map_err(|e| match &config.routes_file {
        Some(path) if config.routes.is_empty() => anyhow::anyhow!("{}: {e}", path.display()),
        _ => anyhow::anyhow!("--route: {e}"),
    })?;
    for route in &routes {
        if route.targets.iter().any(|t| t.insecure) {
            tracing::warn!(
                line = route.line,
                "target property insecure is not supported yet: certificates are verified"
            );
        }
    }
    if routes.is_empty() {
        tracing::warn!("no routes: every request will get 502");
    }
    Ok(RouteTable::new(routes))
}

/// Runs the proxy until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let id = config.instance_id();
    let routes = load_routes(&config)?;
    tracing::info!(routes = routes.len(), "routes loaded");
    let ctx = zmq::Context::new();
    let (sockets, mut inputs) = Link::start(
        &ctx,
        &id,
        &config.connmgr_stream,
        config.daemon.format,
        true,
        None,
    )?;
    let mut requests = inputs
        .requests
        .take()
        .ok_or_else(|| anyhow::anyhow!("request socket missing"))?;
    let shared = share(&config, &ctx, &id, sockets.clone(), routes, &shutdown)?;
    if let Some(spec) = &config.metrics_spec {
        let out = connect_push(&ctx, spec, "metrics")?;
        spawn_reporter(shared.metrics.registry.clone(), out, config.daemon.format);
    }
    if let Some(spec) = &config.handler_ws_control_out_spec {
        let heard = take_deliveries(&ctx, spec, &id, &shared)?;
        greet_handler(&shared, &id, config.daemon.format, heard).await?;
    }
    let mut reloads = reload_on_sighup()?;
    if !inputs
        .wait_ready(sockets.clone(), shutdown.token.clone())
        .await
    {
        return Ok(());
    }
    tracing::info!(target: holdfast_runtime::LIFECYCLE, phase = "ready", "proxy ready");
    loop {
        tokio::select! {
            msg = requests.recv() => match msg {
                Some(msg) => {
                    if let Some(frame) = msg.first() {
                        session::start(&shared, frame);
                    }
                }
                None => break,
            },
            Some(()) = reloads.recv() => match load_routes(&config) {
                Ok(table) => {
                    tracing::info!(routes = table.len(), "routes reloaded");
                    shared.set_routes(table);
                }
                Err(err) => tracing::error!("routes not reloaded, keeping the previous ones: {err:#}"),
            },
            _ = shutdown.token.cancelled() => break,
        }
    }
    finish(&config, &sockets, shutdown).await;
    Ok(())
}

/// What every session shares, from the settings.
fn share(
    config: &Config,
    ctx: &zmq::Context,
    id: &str,
    sockets: Arc<Link>,
    routes: RouteTable,
    shutdown: &Shutdown,
) -> anyhow::Result<Arc<Shared>> {
    let cache = cache::Cache::new(config.cache_size);
    let push = |spec: &Option<String>, name| {
        spec.as_deref()
            .map(|s| connect_push(ctx, s, name))
            .transpose()
    };
    Ok(Arc::new(Shared {
        from: Arc::from(id),
        max_message_size: config.max_message_size,
        sockets,
        routes: RwLock::new(Arc::new(routes)),
        client: holdfast_grip::client::OriginClient::new(),
        rules: forward_rules(config)?,
        signer: Signer::new(&config.sig_iss, &config.sig_key)?,
        upstream: config
            .upstream_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(Verifier::new)
            .transpose()?,
        debug: config.debug,
        auto_cross_origin: config.auto_cross_origin,
        cache: cache.clone(),
        metrics: metrics::Metrics::new(id, cache),
        tracker: shutdown.tracker.clone(),
        handler: push(&config.handler_accept_spec, "handler-accept")?,
        ws_control: push(&config.handler_ws_control_in_spec, "handler-ws-control")?,
        ws_routes: WsRoutes::default(),
        sockjs: SockJsSessions::default(),
        sockjs_url: config.sockjs_url.clone(),
        inspector: match &config.handler_inspect_spec {
            Some(spec) => Some(inspect::Inspector::connect(
                ctx,
                spec,
                config.daemon.format,
            )?),
            None => None,
        },
    }))
}

/// The `X-Forwarded-*` and original-headers policy, from the settings.
fn forward_rules(config: &Config) -> anyhow::Result<ForwardRules> {
    Ok(ForwardRules {
        xff: config.x_forwarded_for.parse().map_err(anyhow::Error::msg)?,
        xff_trusted: config
            .x_forwarded_for_trusted
            .parse()
            .map_err(anyhow::Error::msg)?,
        set_proto: SetProto::from_setting(&config.set_x_forwarded_protocol),
        accept_proto: config.accept_x_forwarded_protocol,
        orig_need_mark: config
            .orig_headers_need_mark
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect(),
    })
}

/// Takes the handler's deliveries for WebSocket sessions and its purges of
/// the edge cache; the receiver learns when the handler's `hello` came
/// back (deliveries flow).
fn take_deliveries(
    ctx: &zmq::Context,
    spec: &str,
    id: &str,
    shared: &Arc<Shared>,
) -> anyhow::Result<watch::Receiver<bool>> {
    let sub = holdfast_protocol::zmq::new_socket(ctx, zmq::SUB)?;
    sub.set_subscribe(&wscontrol::topic(id))?;
    sub.set_subscribe(wscontrol::PURGE_TOPIC.as_bytes())?;
    holdfast_protocol::zmq::apply_specs(&sub, spec, false)?;
    let mut handle = holdfast_protocol::zmq::spawn(sub, "handler-ws-deliveries")?;
    let reader = shared.clone();
    let (heard_tx, heard_rx) = watch::channel(false);
    tokio::spawn(async move {
        while let Some(msg) = handle.rx.recv().await {
            let Some(frame) = msg.get(1) else { continue };
            if msg[0] == wscontrol::PURGE_TOPIC.as_bytes() {
                reader.cache.purge_named(frame);
                continue;
            }
            match holdfast_protocol::format::decode::<wscontrol::Deliver>(frame) {
                Ok(deliver) if deliver.kind == "hello" => {
                    let _ = heard_tx.send(true);
                }
                Ok(deliver) => reader.ws_routes.dispatch(deliver),
                Err(err) => tracing::warn!(error = %err, "undecodable WebSocket delivery dropped"),
            }
        }
    });
    Ok(heard_rx)
}

/// PUB/SUB drops what is published before the subscription arrives: says
/// hello until the handler's answer comes back, so deliveries are known to
/// flow before the proxy says it is ready.
async fn greet_handler(
    shared: &Shared,
    id: &str,
    format: holdfast_protocol::Format,
    mut heard: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(control) = &shared.ws_control else {
        return Ok(());
    };
    let hello = wscontrol::Control {
        kind: "hello".into(),
        proxy: id.to_owned(),
        ..Default::default()
    };
    let frame = holdfast_protocol::format::encode(&hello, format)?;
    let answered = tokio::time::timeout(HELLO_TIMEOUT, async {
        loop {
            let _ = control.try_send(vec![frame.clone()]);
            tokio::select! {
                _ = heard.changed() => return,
                _ = tokio::time::sleep(HELLO_INTERVAL) => {}
            }
        }
    })
    .await;
    if answered.is_err() {
        tracing::warn!("the handler has not answered on its WebSocket sockets; GRIP over WebSocket may lose early publishes");
    }
    Ok(())
}

/// How long the proxy says hello to the handler before it starts anyway.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often it says hello meanwhile.
const HELLO_INTERVAL: Duration = Duration::from_millis(100);

/// After the last request was taken: the sessions finish within the grace
/// period, and their last packets leave before the process does.
async fn finish(config: &Config, sockets: &Link, shutdown: Shutdown) {
    let deadline = tokio::time::Instant::now() + config.daemon.grace();
    if !shutdown.drain(config.daemon.grace()).await {
        tracing::warn!(
            sessions = sockets.sessions().len(),
            "grace period over; abandoning requests in flight"
        );
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !sockets.flush(left.max(Duration::from_millis(100))).await {
        tracing::warn!("packets to connmgr left unsent at exit");
    }
}
