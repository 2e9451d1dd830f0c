//! Entry points for connmgr's fuzz targets (`connmgr/fuzz/`, built with
//! `--cfg fuzzing`). Each must never panic, whatever the bytes.

/// Client bytes through the permessage-deflate layer: whatever they are, it
/// hands tungstenite bytes without panicking, and never more than the
/// message limit per inflated message (plus frame headers).
pub fn websocket_deflate(data: &[u8]) {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};
    use tokio::io::{AsyncRead, ReadBuf};
    const LIMIT: usize = 4096;
    let agreement = crate::deflate::negotiate([&b"permessage-deflate"[..]]);
    let Some(agreement) = agreement else { return };
    let mut layer = crate::deflate::Deflated::new(data, LIMIT, agreement);
    let mut cx = Context::from_waker(Waker::noop());
    let mut total = 0usize;
    loop {
        let mut chunk = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut layer).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => break,
            Poll::Ready(Ok(())) => total += buf.filled().len(),
            Poll::Ready(Err(_)) | Poll::Pending => break,
        }
    }
    // Each input frame header is at least 2 bytes and inflates to at most
    // LIMIT + 1 bytes of payload and a 14-byte header.
    assert!(total <= data.len() + (data.len() / 2 + 1) * (LIMIT + 15));
}
