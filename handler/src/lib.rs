//! Holdfast's handler.
//!
//! Will own held sessions, channel subscriptions and the publish inputs. For
//! now it binds its command socket and answers `conncheck` and
//! `get-zmq-uris`, so tools that probe a Pushpin handler find it alive.
//!
//! # Layout
//! - [`config`]: command line and settings.
//! - [`command`]: the ZRPC command socket.

pub mod command;
pub mod config;

pub use config::Config;

use holdfast_protocol::rt::Shutdown;
use holdfast_protocol::zmq::{apply_specs, spawn};

/// Runs the handler until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::ROUTER)?;
    apply_specs(&socket, &config.command_spec, true)?;
    let mut handle = spawn(socket, "command")?;
    tracing::info!(command = %config.command_spec, phase = "ready", "handler ready");
    let context = command::Context {
        command_spec: &config.command_spec,
    };
    loop {
        tokio::select! {
            msg = handle.rx.recv() => {
                let Some(msg) = msg else { break };
                if let Some(reply) = command::answer(msg, &context) {
                    if handle.tx.send(reply).await.is_err() {
                        break;
                    }
                }
            }
            _ = shutdown.token.cancelled() => break,
        }
    }
    Ok(())
}
