//! Holdfast's handler.
//!
//! Owns held sessions: the proxy hands a session over when the origin asks
//! for a hold; the handler subscribes it to its channels, talks to connmgr
//! for it directly, and delivers publishes to it. When a session may have
//! missed items it asks the origin again itself (long-poll retries, next
//! links, reading answers with `holdfast_grip`, as the proxy does). Publishes
//! arrive over HTTP (`POST /publish/`, `POST /recover`), ZeroMQ PULL and
//! ZeroMQ SUB; the command socket answers `conncheck`, `get-zmq-uris`,
//! `publish`, `recover` and `refresh`.
//!
//! # Layout
//! - [`config`]: command line and settings.
//! - [`error`]: the handler's errors and whose fault they are.
//! - [`engine`]: the event loop owning sessions, subscriptions and timers.
//! - [`session`]: one held session's state.
//! - [`client_sessions`]: Pushpin's session feature (last ids per client session id).
//! - [`fetch`]: requests to the origin for a session (retries, links).
//! - [`filters`]: subscription filters (skip-self, build-id, ...).
//! - [`ws`]: WebSocket sessions' subscriptions (GRIP over WebSocket).
//! - [`sequencing`]: item order (prev-id) and duplicate ids per channel.
//! - [`history`]: the last items of each channel, for clients coming back.
//! - [`metrics`]: `/metrics` (every process's reports) and `/health`.
//! - [`stats`]: Pushpin's stats socket (conn, sub, message, report events).
//! - [`status`]: the live status page and its SSE stream.
//! - [`publish`]: the publish inputs (HTTP, ZeroMQ PULL and SUB).
//! - [`bus`]: the NATS bus between instances (`bus_url`).
//! - [`command`]: the ZRPC command socket.
//! - [`purge`]: purge + publish (items naming cache objects), paced per channel.
//! - [`publisher`]: the `holdfast-publish` command-line publisher.

pub mod bus;
pub mod client_sessions;
pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod fetch;
pub mod filters;
pub mod history;
pub mod metrics;
pub mod publish;
pub mod publisher;
pub mod purge;
pub mod sequencing;
pub mod session;
pub mod stats;
pub mod status;
pub mod ws;

pub use config::Config;

use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::{apply_specs, spawn};
use holdfast_runtime::Shutdown;
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs the handler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let socket = holdfast_protocol::zmq::new_socket(&ctx, zmq::ROUTER)?;
    apply_specs(&socket, &config.command_spec, true)?;
    let mut command = spawn(socket, "command")?;

    let metrics = metrics::Metrics::new(&config.instance_id(), config.health_requires.clone());
    if let Some(spec) = &config.metrics_in_spec {
        let pull = holdfast_protocol::zmq::new_socket(&ctx, zmq::PULL)?;
        apply_specs(&pull, spec, true)?;
        let mut reports = spawn(pull, "metrics-in")?;
        let metrics = metrics.clone();
        tokio::spawn(async move {
            while let Some(msg) = reports.rx.recv().await {
                if let Some(frame) = msg.first() {
                    metrics.receive(frame);
                }
            }
        });
    }

    // Publishers wait (HTTP) or are not read (ZeroMQ) while it is full.
    let (items_tx, items_rx) = mpsc::channel(config.message_hwm.max(1));
    let bus = match config.bus() {
        Some(settings) => Some(bus::Bus::connect(&settings, metrics.clone()).await?),
        None => None,
    };
    let sink = publish::Sink::new(items_tx.clone(), bus.clone());
    if let Some(addr) = config.push_in_http {
        let auth = publish::auth::Auth::new(
            config.push_in_http_basic_auth.as_deref(),
            config.push_in_http_jwt_key.as_deref(),
            config.push_in_http_jwt_leeway,
        )?;
        let api = publish::http::Api {
            auth,
            max_body: config.push_in_http_max_body_size,
        };
        publish::http::serve(
            addr,
            sink.clone(),
            api,
            metrics.clone(),
            shutdown.token.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for publishes on {addr}: {e}"))?;
    }
    if let Some(spec) = &config.push_in_spec {
        publish::zmq_pull::start(&ctx, spec, sink.clone())?;
    }
    let sub_control = match &config.push_in_sub_specs {
        Some(specs) => Some(publish::zmq_sub::start(
            &ctx,
            specs,
            config.push_in_sub_connect,
            items_tx.clone(),
        )?),
        None => None,
    };
    let purge_items = items_tx.clone();

    let engine_task = match (&config.connmgr_stream, &config.accept_spec) {
        (Some(base), Some(accept_spec)) => {
            let (packets_tx, packets_rx) = mpsc::channel(holdfast_protocol::zmq::CHANNEL_CAPACITY);
            let (link, mut inputs) = Link::start(
                &ctx,
                &config.instance_id(),
                base,
                config.daemon.format,
                false,
                Some(packets_tx),
            )?;
            let accept = holdfast_protocol::zmq::new_socket(&ctx, zmq::PULL)?;
            apply_specs(&accept, accept_spec, true)?;
            let accepts = spawn(accept, "accept")?;
            drop(accepts.tx);
            if !inputs
                .wait_ready(link.clone(), shutdown.token.clone())
                .await
            {
                return Ok(());
            }
            let options = engine::Options {
                update_on_first_subscription: config.update_on_first_subscription,
                subscription_max: config.connection_subscription_max,
                subscription_linger: Duration::from_secs(config.subscription_linger),
                id_cache_ttl: Duration::from_secs(config.id_cache_ttl),
                message_wait: Duration::from_millis(config.message_wait),
                history: history::Limits {
                    size: config.history_size,
                    ttl: Duration::from_secs(config.history_ttl),
                    channels: config.history_channels,
                },
            };
            let mut interest = Vec::new();
            interest.extend(sub_control);
            let mut lookups = None;
            if let Some(bus) = &bus {
                let (tx, rx) = mpsc::channel(holdfast_protocol::zmq::CHANNEL_CAPACITY);
                let (lookups_tx, lookups_rx) =
                    mpsc::channel(holdfast_protocol::zmq::CHANNEL_CAPACITY);
                bus.follow(rx, lookups_rx, items_tx.clone());
                interest.push(tx);
                if bus.keeps_history() {
                    lookups = Some(lookups_tx);
                }
            }
            let engine_link = link.clone();
            let mut engine = engine::Engine::new(engine_link, interest, options);
            if let Some(lookups) = lookups {
                engine = engine.with_bus_history(lookups);
            }
            if let Some(spec) = &config.inspect_spec {
                let store = client_sessions::Shared::default();
                let router = holdfast_protocol::zmq::new_socket(&ctx, zmq::ROUTER)?;
                apply_specs(&router, spec, true)?;
                let mut inspect = spawn(router, "inspect")?;
                let answers = store.clone();
                let format = config.daemon.format;
                tokio::spawn(async move {
                    while let Some(msg) = inspect.rx.recv().await {
                        if let Some(reply) = client_sessions::answer(msg, &answers, format) {
                            if inspect.tx.send(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                engine = engine.with_client_sessions(store);
            }
            let ws_controls = match &config.ws_control_in_spec {
                Some(spec) => {
                    let pull = holdfast_protocol::zmq::new_socket(&ctx, zmq::PULL)?;
                    apply_specs(&pull, spec, true)?;
                    let handle = spawn(pull, "ws-control-in")?;
                    drop(handle.tx);
                    Some(handle.rx)
                }
                None => None,
            };
            let mut proxies = None;
            if let Some(spec) = &config.ws_control_out_spec {
                let publisher = holdfast_protocol::zmq::new_socket(&ctx, zmq::PUB)?;
                apply_specs(&publisher, spec, true)?;
                let tx = spawn(publisher, "ws-control-out")?.tx;
                proxies = Some(tx.clone());
                engine = engine.with_ws_out(tx);
            }
            let purge_settings = purge::Settings {
                targets: config.purge_targets.clone(),
                window: std::time::Duration::from_millis(config.purge_window_ms),
                fastly_api: config.fastly_api_url.clone(),
                fastly_token: config.fastly_api_token.clone(),
            };
            engine = engine
                .with_purger(purge::start(
                    purge_settings,
                    purge_items.clone(),
                    proxies,
                    config.daemon.format,
                    metrics.clone(),
                ))
                .with_metrics(metrics.clone());
            if let Some(spec) = &config.stats_spec {
                let publisher = holdfast_protocol::zmq::new_socket(&ctx, zmq::PUB)?;
                apply_specs(&publisher, spec, true)?;
                let tx = spawn(publisher, "stats")?.tx;
                engine = engine.with_stats(stats::Stats::new(tx, &config.instance_id()));
            }
            Some((
                tokio::spawn(engine.run(
                    accepts.rx,
                    packets_rx,
                    items_rx,
                    ws_controls,
                    shutdown.token.clone(),
                )),
                link,
            ))
        }
        _ => None,
    };
    tracing::info!(command = %config.command_spec, phase = "ready", "handler ready");
    let context = command::Context {
        command_spec: &config.command_spec,
        publish_pull: config.push_in_spec.as_deref(),
        publish_sub: config.push_in_sub_specs.as_deref(),
        items: Some(&sink),
    };
    loop {
        tokio::select! {
            msg = command.rx.recv() => {
                let Some(msg) = msg else { break };
                if let Some(reply) = command::answer(msg, &context).await {
                    if command.tx.send(reply).await.is_err() {
                        break;
                    }
                }
            }
            _ = shutdown.token.cancelled() => break,
        }
    }
    if let Some((task, link)) = engine_task {
        // The engine ends held sessions cleanly; give it the grace period
        // to send, and its last packets the time to leave the process.
        let deadline = tokio::time::Instant::now() + config.daemon.grace();
        let _ = tokio::time::timeout_at(deadline, task).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !link
            .flush(left.max(std::time::Duration::from_millis(100)))
            .await
        {
            tracing::warn!("grace period over with packets to connmgr unsent");
        }
    }
    Ok(())
}
