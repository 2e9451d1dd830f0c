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
//! - [`origin`]: the headers sent to origins, answer bodies, target addresses.
//! - [`cache`]: the edge cache (route option `cache`).
//! - [`session`]: one request as a ZHTTP session (the data path).
//! - [`inspect`]: asks the handler for a request's client session (`session` routes).
//! - [`metrics`]: requests, origin latency, cache; reported to the handler.
//! - [`error`]: request errors and whose fault they are.

pub mod cache;
pub mod config;
pub mod error;
pub mod inspect;
pub mod metrics;
pub mod origin;
pub mod routes;
pub mod session;

pub use config::Config;

use holdfast_grip::sign::{Signer, Verifier};
use holdfast_runtime::{reload_on_sighup, Shutdown};
use origin::headers::{ForwardRules, SetProto};
use routes::{parse_routes, RouteTable};
use std::sync::{Arc, RwLock};

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
    let rules = ForwardRules {
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
    };
    let signer = Signer::new(&config.sig_iss, &config.sig_key)?;
    let upstream = config
        .upstream_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(Verifier::new)
        .transpose()?;
    let ctx = zmq::Context::new();
    let (sockets, mut inputs) = holdfast_protocol::zmq::link::Link::start(
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
    let cache = cache::Cache::new(config.cache_size);
    let shared = Arc::new(session::Shared {
        from: Arc::from(id.as_str()),
        max_message_size: config.max_message_size,
        sockets: sockets.clone(),
        routes: RwLock::new(Arc::new(routes)),
        client: holdfast_grip::client::OriginClient::new(),
        rules,
        signer,
        upstream,
        debug: config.debug,
        auto_cross_origin: config.auto_cross_origin,
        cache: cache.clone(),
        metrics: metrics::Metrics::new(&id, cache),
        tracker: shutdown.tracker.clone(),
        handler: match &config.handler_accept_spec {
            Some(spec) => {
                let push = holdfast_protocol::zmq::new_socket(&ctx, zmq::PUSH)?;
                holdfast_protocol::zmq::apply_specs(&push, spec, false)?;
                let handle = holdfast_protocol::zmq::spawn(push, "handler-accept")?;
                Some(handle.tx)
            }
            None => None,
        },
        ws_control: match &config.handler_ws_control_in_spec {
            Some(spec) => {
                let push = holdfast_protocol::zmq::new_socket(&ctx, zmq::PUSH)?;
                holdfast_protocol::zmq::apply_specs(&push, spec, false)?;
                Some(holdfast_protocol::zmq::spawn(push, "handler-ws-control")?.tx)
            }
            None => None,
        },
        ws_routes: session::WsRoutes::default(),
        sockjs: session::SockJsSessions::default(),
        sockjs_url: config.sockjs_url.clone(),
        inspector: match &config.handler_inspect_spec {
            Some(spec) => Some(inspect::Inspector::connect(
                &ctx,
                spec,
                config.daemon.format,
            )?),
            None => None,
        },
    });
    if let Some(spec) = &config.metrics_spec {
        let push = holdfast_protocol::zmq::new_socket(&ctx, zmq::PUSH)?;
        holdfast_protocol::zmq::apply_specs(&push, spec, false)?;
        let out = holdfast_protocol::zmq::spawn(push, "metrics")?.tx;
        holdfast_runtime::metrics::spawn_reporter(
            shared.metrics.registry.clone(),
            out,
            config.daemon.format,
        );
    }
    if let Some(spec) = &config.handler_ws_control_out_spec {
        let sub = holdfast_protocol::zmq::new_socket(&ctx, zmq::SUB)?;
        sub.set_subscribe(&holdfast_protocol::wscontrol::topic(&id))?;
        sub.set_subscribe(holdfast_protocol::wscontrol::PURGE_TOPIC.as_bytes())?;
        holdfast_protocol::zmq::apply_specs(&sub, spec, false)?;
        let mut handle = holdfast_protocol::zmq::spawn(sub, "handler-ws-deliveries")?;
        let reader = shared.clone();
        let (heard_tx, mut heard_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Some(msg) = handle.rx.recv().await {
                let Some(frame) = msg.get(1) else { continue };
                if msg[0] == holdfast_protocol::wscontrol::PURGE_TOPIC.as_bytes() {
                    reader.cache.purge_named(frame);
                    continue;
                }
                match holdfast_protocol::format::decode::<holdfast_protocol::wscontrol::Deliver>(
                    frame,
                ) {
                    Ok(deliver) if deliver.kind == "hello" => {
                        let _ = heard_tx.send(true);
                    }
                    Ok(deliver) => reader.ws_routes.dispatch(deliver),
                    Err(err) => {
                        tracing::warn!(error = %err, "undecodable WebSocket delivery dropped")
                    }
                }
            }
        });
        // PUB/SUB drops what is published before the subscription arrives:
        // say hello until the handler's answer comes back, so deliveries
        // are known to flow before the proxy says it is ready.
        if let Some(control) = &shared.ws_control {
            let hello = holdfast_protocol::wscontrol::Control {
                kind: "hello".into(),
                proxy: id.clone(),
                ..Default::default()
            };
            let frame = holdfast_protocol::format::encode(&hello, config.daemon.format)?;
            let answered = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                loop {
                    let _ = control.try_send(vec![frame.clone()]);
                    tokio::select! {
                        _ = heard_rx.changed() => return,
                        _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    }
                }
            })
            .await;
            if answered.is_err() {
                tracing::warn!("the handler has not answered on its WebSocket sockets; GRIP over WebSocket may lose early publishes");
            }
        }
    }
    let mut reloads = reload_on_sighup()?;
    if !inputs
        .wait_ready(sockets.clone(), shutdown.token.clone())
        .await
    {
        return Ok(());
    }
    tracing::info!(phase = "ready", "proxy ready");
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
                    if let Ok(mut current) = shared.routes.write() {
                        *current = Arc::new(table);
                    }
                }
                Err(err) => tracing::error!("routes not reloaded, keeping the previous ones: {err:#}"),
            },
            _ = shutdown.token.cancelled() => break,
        }
    }
    let deadline = tokio::time::Instant::now() + config.daemon.grace();
    if !shutdown.drain(config.daemon.grace()).await {
        tracing::warn!(
            sessions = sockets.sessions().len(),
            "grace period over; abandoning requests in flight"
        );
    }
    // The sessions' last packets must leave before the process does.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !sockets
        .flush(left.max(std::time::Duration::from_millis(100)))
        .await
    {
        tracing::warn!("packets to connmgr left unsent at exit");
    }
    Ok(())
}
