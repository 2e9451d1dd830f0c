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
//! - `startup`: the sockets and tasks [`run`] starts, in order.

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
mod startup;
pub mod stats;
pub mod status;
pub mod ws;

pub use config::Config;

use holdfast_runtime::Shutdown;
use startup::{bound, Started};
use tokio::sync::mpsc;

/// Runs the handler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let mut command = bound(&ctx, zmq::ROUTER, &config.command_spec, "command")?;
    let metrics = metrics::Metrics::new(&config.instance_id(), config.health_requires.clone());
    if let Some(spec) = &config.metrics_in_spec {
        startup::take_metrics(&ctx, spec, &metrics)?;
    }
    // Publishers wait (HTTP) or are not read (ZeroMQ) while it is full.
    let (items_tx, items_rx) = mpsc::channel(config.message_hwm.max(1));
    let bus = match config.bus() {
        Some(settings) => Some(bus::Bus::connect(&settings, metrics.clone()).await?),
        None => None,
    };
    let sink = publish::Sink::new(items_tx.clone(), bus.clone());
    let inputs = startup::Inputs {
        sink: &sink,
        items: &items_tx,
        metrics: &metrics,
    };
    let sub_control = startup::publish_inputs(&ctx, &config, inputs, &shutdown).await?;
    let wiring = startup::Wiring {
        items: items_tx,
        items_rx,
        sub_control,
        bus,
        metrics,
    };
    let engine = match startup::engine(&ctx, &config, wiring, &shutdown).await? {
        Started::Running(task, link) => Some((task, link)),
        Started::ShutDown => return Ok(()),
        Started::Off => None,
    };
    tracing::info!(target: holdfast_runtime::LIFECYCLE, command = %config.command_spec, phase = "ready", "handler ready");
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
    if let Some((task, link)) = engine {
        startup::drain_engine(task, &link, config.daemon.grace()).await;
    }
    Ok(())
}
