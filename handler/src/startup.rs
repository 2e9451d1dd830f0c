//! What [`crate::run`] starts, in order: the metrics input, the publish
//! inputs (HTTP, ZeroMQ PULL and SUB), and the engine with its sockets
//! (connmgr's link, the proxies' hand-overs, WebSocket control in and
//! deliveries out, the inspect socket, the purger, the stats socket). The
//! order of the binds is kept: a start-up error names the first socket
//! that could not be had.

use crate::bus::Bus;
use crate::config::Config;
use crate::engine::{Engine, Input, Options};
use crate::metrics::Metrics;
use crate::publish::Sink;
use crate::{client_sessions, history, publish, purge, stats};
use holdfast_protocol::zmq::link::Link;
use holdfast_protocol::zmq::CHANNEL_CAPACITY;
use holdfast_protocol::zmq::{apply_specs, new_socket, spawn, Multipart, SocketHandle};
use holdfast_runtime::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A socket of `kind` bound to every spec in `spec`, in its own task.
pub(crate) fn bound(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    spec: &str,
    name: &'static str,
) -> anyhow::Result<SocketHandle> {
    let socket = new_socket(ctx, kind)?;
    apply_specs(&socket, spec, true)?;
    Ok(spawn(socket, name)?)
}

/// Takes the other processes' metrics reports (PULL).
pub(crate) fn take_metrics(
    ctx: &zmq::Context,
    spec: &str,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut reports = bound(ctx, zmq::PULL, spec, "metrics-in")?;
    let metrics = metrics.clone();
    tokio::spawn(async move {
        while let Some(msg) = reports.rx.recv().await {
            if let Some(frame) = msg.first() {
                metrics.receive(frame);
            }
        }
    });
    Ok(())
}

/// What the publish inputs feed.
pub(crate) struct Inputs<'a> {
    /// Where accepted items go (the engine, or the bus).
    pub sink: &'a Sink,
    /// The engine's input, for the SUB input (which follows local interest).
    pub items: &'a mpsc::Sender<Input>,
    /// Counters.
    pub metrics: &'a Arc<Metrics>,
}

/// Starts the publish inputs the settings name; the SUB input's
/// subscription control, when there is one.
pub(crate) async fn publish_inputs(
    ctx: &zmq::Context,
    config: &Config,
    inputs: Inputs<'_>,
    shutdown: &Shutdown,
) -> anyhow::Result<Option<mpsc::Sender<Multipart>>> {
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
        let (sink, metrics) = (inputs.sink.clone(), inputs.metrics.clone());
        publish::http::serve(addr, sink, api, metrics, shutdown.token.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for publishes on {addr}: {e}"))?;
    }
    if let Some(spec) = &config.push_in_spec {
        publish::zmq_pull::start(ctx, spec, inputs.sink.clone())?;
    }
    Ok(match &config.push_in_sub_specs {
        Some(specs) => Some(publish::zmq_sub::start(
            ctx,
            specs,
            config.push_in_sub_connect,
            inputs.items.clone(),
        )?),
        None => None,
    })
}

/// What the engine is wired to besides its own sockets.
pub(crate) struct Wiring {
    /// The engine's input (purges come back through it).
    pub items: mpsc::Sender<Input>,
    /// Its receiving end.
    pub items_rx: mpsc::Receiver<Input>,
    /// The SUB input's subscription control.
    pub sub_control: Option<mpsc::Sender<Multipart>>,
    /// The bus.
    pub bus: Option<Arc<Bus>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

/// How the engine's start went.
pub(crate) enum Started {
    /// Running: its task, and its link to connmgr.
    Running(JoinHandle<()>, Arc<Link>),
    /// Shutdown came while waiting for connmgr.
    ShutDown,
    /// Not configured (no connmgr to talk to).
    Off,
}

/// The engine's settings.
fn options(config: &Config) -> Options {
    Options {
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
    }
}

/// Starts the engine: its link to connmgr (waiting until it is up both
/// ways), the proxies' hand-overs, and what follows its channels.
pub(crate) async fn engine(
    ctx: &zmq::Context,
    config: &Config,
    wiring: Wiring,
    shutdown: &Shutdown,
) -> anyhow::Result<Started> {
    let (Some(base), Some(accept_spec)) = (&config.connmgr_stream, &config.accept_spec) else {
        return Ok(Started::Off);
    };
    let (packets_tx, packets_rx) = mpsc::channel(CHANNEL_CAPACITY);
    let (link, mut link_inputs) = Link::start(
        ctx,
        &config.instance_id(),
        base,
        config.daemon.format,
        false,
        Some(packets_tx),
    )?;
    let accepts = bound(ctx, zmq::PULL, accept_spec, "accept")?;
    drop(accepts.tx);
    if !link_inputs
        .wait_ready(link.clone(), shutdown.token.clone())
        .await
    {
        return Ok(Started::ShutDown);
    }
    let Wiring {
        items,
        items_rx,
        sub_control,
        bus,
        metrics,
    } = wiring;
    let mut interest = Vec::new();
    interest.extend(sub_control);
    let mut lookups = None;
    if let Some(bus) = &bus {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (lookups_tx, lookups_rx) = mpsc::channel(CHANNEL_CAPACITY);
        bus.follow(rx, lookups_rx, items.clone());
        interest.push(tx);
        if bus.keeps_history() {
            lookups = Some(lookups_tx);
        }
    }
    let mut engine = Engine::new(link.clone(), interest, options(config));
    if let Some(lookups) = lookups {
        engine = engine.with_bus_history(lookups);
    }
    let (engine, ws_controls) = outer_sockets(ctx, config, (&items, &metrics), engine)?;
    let task = tokio::spawn(engine.run(
        accepts.rx,
        packets_rx,
        items_rx,
        ws_controls,
        shutdown.token.clone(),
    ));
    Ok(Started::Running(task, link))
}

/// The engine's other sockets: the inspect socket (client sessions),
/// WebSocket control in and deliveries out, the purger, metrics and
/// stats. Returns the engine with them, and WebSocket control's input.
fn outer_sockets(
    ctx: &zmq::Context,
    config: &Config,
    (items, metrics): (&mpsc::Sender<Input>, &Arc<Metrics>),
    mut engine: Engine,
) -> anyhow::Result<(Engine, Option<mpsc::Receiver<Multipart>>)> {
    if let Some(spec) = &config.inspect_spec {
        engine = engine.with_client_sessions(answer_inspections(ctx, spec, config)?);
    }
    let ws_controls = match &config.ws_control_in_spec {
        Some(spec) => {
            let handle = bound(ctx, zmq::PULL, spec, "ws-control-in")?;
            drop(handle.tx);
            Some(handle.rx)
        }
        None => None,
    };
    let mut proxies = None;
    if let Some(spec) = &config.ws_control_out_spec {
        let tx = bound(ctx, zmq::PUB, spec, "ws-control-out")?.tx;
        proxies = Some(tx.clone());
        engine = engine.with_ws_out(tx);
    }
    let purge_settings = purge::Settings {
        targets: config.purge_targets.clone(),
        window: Duration::from_millis(config.purge_window_ms),
        fastly_api: config.fastly_api_url.clone(),
        fastly_token: config.fastly_api_token.clone(),
    };
    let purger = purge::start(
        purge_settings,
        items.clone(),
        proxies,
        config.daemon.format,
        metrics.clone(),
    );
    engine = engine.with_purger(purger).with_metrics(metrics.clone());
    if let Some(spec) = &config.stats_spec {
        let tx = bound(ctx, zmq::PUB, spec, "stats")?.tx;
        engine = engine.with_stats(stats::Stats::new(tx, &config.instance_id()));
    }
    Ok((engine, ws_controls))
}

/// Answers the proxies' questions about client sessions (the inspect
/// socket); the store the engine keeps them in.
fn answer_inspections(
    ctx: &zmq::Context,
    spec: &str,
    config: &Config,
) -> anyhow::Result<client_sessions::Shared> {
    let store = client_sessions::Shared::default();
    let mut inspect = bound(ctx, zmq::ROUTER, spec, "inspect")?;
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
    Ok(store)
}

/// The engine ends held sessions cleanly: it has the grace period to send,
/// and its last packets the time to leave the process.
pub(crate) async fn drain_engine(task: JoinHandle<()>, link: &Link, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let _ = tokio::time::timeout_at(deadline, task).await;
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    if !link.flush(left.max(Duration::from_millis(100))).await {
        tracing::warn!("grace period over with packets to connmgr unsent");
    }
}
