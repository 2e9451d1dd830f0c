//! Publish inputs. Each turns what publishers send into [`Input`]s for the
//! engine ([`crate::engine::Input`]), over one bounded channel: when the engine falls behind, inputs
//! wait (HTTP requests are answered later, the ZeroMQ socket stops reading
//! and its high-water mark applies). With a bus, items go through the
//! [`Sink`] to NATS instead, and reach every instance's engine from there.

pub mod auth;
pub mod http;
pub mod zmq_pull;
pub mod zmq_sub;

use crate::bus::{Bus, BusError};
use crate::engine::Input;
use holdfast_protocol::publish::Item;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Publish requests waiting for the engine.
pub const QUEUE: usize = 1024;

/// Where accepted items go: the local engine, or the bus (which brings
/// them back to every instance's engine, this one's too).
#[derive(Clone)]
pub struct Sink {
    engine: mpsc::Sender<Input>,
    bus: Option<Arc<Bus>>,
}

/// Why items were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The engine is gone: the handler is shutting down.
    #[error("the handler is shutting down; nothing was published")]
    Closed,
    /// The bus did not confirm.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Longest wait between attempts of an input that cannot answer.
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Sink {
    /// Items to `engine`, or through `bus` when there is one.
    pub fn new(engine: mpsc::Sender<Input>, bus: Option<Arc<Bus>>) -> Sink {
        Sink { engine, bus }
    }

    /// Accepts `items`: done once the engine has them (waiting while its
    /// queue is full) or the bus has confirmed them.
    pub async fn publish(&self, items: Vec<Item>) -> Result<(), Refused> {
        match &self.bus {
            Some(bus) => Ok(bus.publish(&items).await?),
            None => self
                .engine
                .send(Input::Items(items))
                .await
                .map_err(|_| Refused::Closed),
        }
    }

    /// As [`Sink::publish`], for inputs with nobody to answer (ZeroMQ):
    /// while the bus is away the items wait and are tried again, and the
    /// input is not read meanwhile.
    pub async fn publish_patiently(&self, items: Vec<Item>) -> Result<(), Refused> {
        let Some(bus) = &self.bus else {
            return self.publish(items).await;
        };
        let mut delay = Duration::from_millis(100);
        loop {
            match bus.publish(&items).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    tracing::warn!("publish input waiting: {err}; trying again in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// Asks this instance's engine (recover, refresh: not on the bus).
    pub async fn local(&self, input: Input) -> Result<(), Refused> {
        self.engine.send(input).await.map_err(|_| Refused::Closed)
    }
}
