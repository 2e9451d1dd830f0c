//! An origin answer's body: arriving from the origin, or stored by the
//! edge cache.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The body of an origin answer.
#[derive(Debug)]
pub enum OriginBody {
    /// From the origin's connection, as it arrives.
    Live(Incoming),
    /// Whole, from the edge cache (taken once sent).
    Stored(Option<Bytes>),
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            OriginBody::Live(body) => Pin::new(body).poll_frame(cx),
            OriginBody::Stored(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginBody::Live(body) => body.is_end_stream(),
            OriginBody::Stored(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            OriginBody::Live(body) => body.size_hint(),
            OriginBody::Stored(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
