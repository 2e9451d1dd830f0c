//! A streaming HTTP body fed from a queue, which counts the bytes hyper
//! pulls out of it. Both connmgr (toward clients) and the proxy (toward
//! origins) use it to turn "bytes actually written" into ZHTTP credits, so a
//! slow reader slows the sender instead of growing a buffer. Pushing never
//! waits (the session task that pushes must stay free to read its other
//! packets); the bytes waiting are bounded by the credits granted, and
//! small chunks are merged, so their number is bounded too.

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

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

/// A queued body larger than this in one piece is not merged with its
/// neighbours; smaller pieces are, so a queue holds few chunks however
/// small the packets that fed it (its bytes are bounded by credits, its
/// chunk count by this).
const MERGE_BELOW: usize = 4096;

/// Why a chunk was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// More than the queue's bound is waiting: the sender ignored credits.
    #[error("more body waiting than its credits allow")]
    Full,
    /// The reader went away.
    #[error("the body's reader is gone")]
    Closed,
}

/// A streamed body's queue: chunks pushed without waiting (their bytes are
/// bounded by the credits the receiving side granted, checked here too),
/// taken by the body's reader, which counts them in [`Drained`].
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes [`BodySender::closed`] when the reader goes.
    reader_gone: Notify,
}

struct QueueState {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    max_bytes: usize,
    /// The body must end with this error once the queue is empty.
    error: Option<io::Error>,
    senders: usize,
    reader: bool,
    waker: Option<Waker>,
}

/// The sending end of a [`ChannelBody`]. The body ends (cleanly) once
/// every clone is dropped.
pub struct BodySender {
    queue: Arc<Queue>,
}

/// A streamed body and its sender: at most `max_bytes` may wait in it.
pub fn body_channel(max_bytes: usize, drained: Arc<Drained>) -> (BodySender, ChannelBody) {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState {
            chunks: VecDeque::new(),
            bytes: 0,
            max_bytes,
            error: None,
            senders: 1,
            reader: true,
            waker: None,
        }),
        reader_gone: Notify::new(),
    });
    (
        BodySender {
            queue: queue.clone(),
        },
        ChannelBody { queue, drained },
    )
}

impl Queue {
    /// The state; a poisoned lock (a panic elsewhere while holding it) is
    /// taken as it is, since every update leaves it consistent.
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BodySender {
    /// Queues `chunk` for the reader; never waits.
    pub fn push(&self, chunk: Bytes) -> Result<(), QueueError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut state = self.queue.lock();
        if !state.reader {
            return Err(QueueError::Closed);
        }
        if state.bytes + chunk.len() > state.max_bytes {
            return Err(QueueError::Full);
        }
        state.bytes += chunk.len();
        match state.chunks.back_mut() {
            Some(back) if back.len() + chunk.len() < MERGE_BELOW => {
                let mut merged = BytesMut::with_capacity(back.len() + chunk.len());
                merged.extend_from_slice(back);
                merged.extend_from_slice(&chunk);
                *back = merged.freeze();
            }
            _ => state.chunks.push_back(chunk),
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Ends the body with `error` once what is queued has been read (the
    /// client sees the response cut short, not a clean end).
    pub fn fail(&self, error: io::Error) {
        let mut state = self.queue.lock();
        state.error = Some(error);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Bytes waiting for the reader.
    pub fn queued(&self) -> usize {
        self.queue.lock().bytes
    }

    /// Resolves once the reader is gone (the client went away).
    pub async fn closed(&self) {
        loop {
            let notified = self.queue.reader_gone.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.queue.lock().reader {
                return;
            }
            notified.await;
        }
    }
}

impl Clone for BodySender {
    fn clone(&self) -> Self {
        self.queue.lock().senders += 1;
        BodySender {
            queue: self.queue.clone(),
        }
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.senders -= 1;
        if state.senders == 0 {
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        }
    }
}

/// Body whose chunks come from a [`BodySender`]; each chunk handed to the
/// reader is counted in `drained`. Ends when every sender is dropped.
pub struct ChannelBody {
    queue: Arc<Queue>,
    drained: Arc<Drained>,
}

impl Drop for ChannelBody {
    fn drop(&mut self) {
        self.queue.lock().reader = false;
        self.queue.reader_gone.notify_waiters();
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let mut state = self.queue.lock();
        if let Some(chunk) = state.chunks.pop_front() {
            state.bytes -= chunk.len();
            drop(state);
            self.drained.add(chunk.len());
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(error) = state.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn chunks_flow_merge_and_end() {
        let drained = Arc::new(Drained::default());
        let (tx, mut body) = body_channel(10_000, drained.clone());
        for _ in 0..1000 {
            tx.push(Bytes::from_static(b"ab")).unwrap();
        }
        let big = Bytes::from(vec![b'z'; 5000]);
        tx.push(big.clone()).unwrap();
        assert_eq!(tx.queued(), 7000);
        // 2,000 bytes of tiny chunks come out as one; the big one alone.
        assert_eq!(tx.push(Bytes::from(vec![0; 3001])), Err(QueueError::Full));
        let mut frames = Vec::new();
        let other = tx.clone();
        drop(tx);
        while let Some(Ok(frame)) = poll_once(&mut body).await {
            frames.push(frame.into_data().unwrap().len());
        }
        assert_eq!(frames, vec![2000, 5000]);
        assert_eq!(drained.take().await, 7000);
        drop(other);
        assert!(
            body.frame().await.is_none(),
            "ends when every sender is gone"
        );
    }

    /// The next frame if one is ready now.
    async fn poll_once(body: &mut ChannelBody) -> Option<Result<Frame<Bytes>, io::Error>> {
        std::future::poll_fn(|cx| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => Poll::Ready(None),
            ready => ready,
        })
        .await
    }

    #[tokio::test]
    async fn failure_and_a_reader_that_goes() {
        let (tx, mut body) = body_channel(100, Arc::new(Drained::default()));
        tx.push(Bytes::from_static(b"x")).unwrap();
        tx.fail(io::Error::other("cut"));
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.unwrap().is_err());
        drop(body);
        tx.closed().await;
        assert_eq!(tx.push(Bytes::from_static(b"y")), Err(QueueError::Closed));
    }
}
