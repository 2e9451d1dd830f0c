//! The live status page (`GET /_holdfast/` on the publish port): small
//! charts of connections, held sessions, channels and publish and delivery
//! rates, fed by Holdfast's own SSE stream (`GET /_holdfast/events`, one
//! JSON snapshot of [`Metrics::snapshot`] a second; `GET
//! /_holdfast/snapshot` is one). With `#once` the page reads two snapshots
//! instead of the stream, so a headless browser can take its picture.

use crate::metrics::Metrics;
use bytes::Bytes;
use http_body::{Body, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The page.
pub const PAGE: &str = include_str!("page.html");

/// How often the stream sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// The SSE stream: a snapshot at once, then one a second, until the
/// client goes.
pub struct Events {
    metrics: Arc<Metrics>,
    tick: tokio::time::Interval,
}

impl Events {
    /// A stream over `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Events {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Events { metrics, tick }
    }
}

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.tick.poll_tick(cx) {
            Poll::Ready(_) => {
                let event = format!("data: {}\n\n", this.metrics.snapshot());
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
