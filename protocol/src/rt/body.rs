//! A streaming HTTP body fed from a channel, which counts the bytes hyper
//! pulls out of it. Both connmgr (toward clients) and the proxy (toward
//! origins) use it to turn "bytes actually written" into ZHTTP credits, so a
//! slow reader slows the sender instead of growing a buffer.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, Notify};

/// Bytes taken out of a [`ChannelBody`] since its owner last looked.
#[derive(Default)]
pub struct Drained {
    bytes: AtomicUsize,
    /// The count the waiting owner wants before it is woken (0 and 1 both
    /// mean any byte).
    wake_at: AtomicUsize,
    notify: Notify,
}

impl Drained {
    /// Counts `n` more bytes as drained; wakes the owner only once the
    /// count reaches what it waits for, not on every chunk.
    pub fn add(&self, n: usize) {
        let total = self.bytes.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.wake_at.load(Ordering::Acquire) {
            self.notify.notify_one();
        }
    }

    /// Waits until bytes were drained, then takes the count.
    pub async fn take(&self) -> usize {
        self.take_at_least(1).await
    }

    /// Waits until at least `min` bytes were drained, then takes the count.
    /// Returning credits in such batches spares a packet per small write;
    /// with `min` at most the window, the sender always keeps some credit
    /// (it sends partial chunks), so nothing waits forever.
    pub async fn take_at_least(&self, min: usize) -> usize {
        let min = min.max(1);
        self.wake_at.store(min, Ordering::Release);
        loop {
            if self.bytes.load(Ordering::Acquire) >= min {
                return self.bytes.swap(0, Ordering::AcqRel);
            }
            self.notify.notified().await;
        }
    }
}

/// A body chunk, or the reason the body must be cut short.
pub type Chunk = Result<Bytes, io::Error>;

/// Body whose chunks arrive on a channel; each chunk handed to the reader is
/// counted in `drained`. Ends when the sender is dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Chunk>,
    drained: Arc<Drained>,
}

impl ChannelBody {
    /// A body reading from `rx` and counting into `drained`.
    pub fn new(rx: mpsc::Receiver<Chunk>, drained: Arc<Drained>) -> ChannelBody {
        ChannelBody { rx, drained }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.drained.add(chunk.len());
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An HTTP body that is either complete (made locally, or received whole)
/// or streamed through a [`ChannelBody`].
pub enum HttpBody {
    /// A complete body.
    Full(Option<Bytes>),
    /// Chunks as they arrive.
    Stream(ChannelBody),
}

impl HttpBody {
    /// A complete body of `bytes`.
    pub fn full(bytes: impl Into<Bytes>) -> HttpBody {
        HttpBody::Full(Some(bytes.into()))
    }

    /// No body.
    pub fn empty() -> HttpBody {
        HttpBody::Full(None)
    }
}

impl Body for HttpBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            HttpBody::Full(body) => Poll::Ready(
                body.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            HttpBody::Stream(stream) => Pin::new(stream).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, HttpBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            HttpBody::Full(body) => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
            HttpBody::Stream(stream) => stream.size_hint(),
        }
    }
}
