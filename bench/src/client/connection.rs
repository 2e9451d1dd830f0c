//! One held connection: the request (an HTTP stream, or a WebSocket to a
//! GRIP origin), the head of its answer, then the item markers (`m<k>`) it
//! finds in what arrives, whatever frames them.

use super::{wall_us, Args, Shared};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// One held connection: opens it, waits for its answer's head (then
/// lets the next connection start), and notes each item as it arrives.
pub(crate) async fn connection(
    args: Arc<Args>,
    shared: Arc<Shared>,
    source: Option<IpAddr>,
    permit: tokio::sync::OwnedSemaphorePermit,
    index: usize,
) -> anyhow::Result<()> {
    let mut permit = Some(permit);
    let mut stream = open(&args, source, index).await?;
    let expected = if args.websocket {
        "HTTP/1.1 101"
    } else {
        "HTTP/1.1 200"
    };
    // Small: 10,000 connections' buffers should not crowd the proxy out of
    // the CPU caches it shares with this process.
    let mut buf = [0u8; 512];
    // Bytes not yet consumed: the head until it is complete, then at most
    // a partial marker line.
    let mut seen: Vec<u8> = Vec::new();
    let mut head_done = false;
    let mut next = 0;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            anyhow::bail!("connection closed by the proxy");
        }
        seen.extend_from_slice(&buf[..n]);
        if !head_done {
            if let Some(end) = find(&seen, b"\r\n\r\n") {
                if !seen.starts_with(expected.as_bytes()) {
                    let line = String::from_utf8_lossy(&seen);
                    anyhow::bail!("unexpected answer: {}", line.lines().next().unwrap_or(""));
                }
                head_done = true;
                // Connecting is done: let the next connection start.
                permit.take();
                seen.drain(..end + 4);
                shared.ready.fetch_add(1, Ordering::SeqCst);
                shared.notify.notify_waiters();
            }
            continue;
        }
        if args.rate > 0.0 || args.listen_only {
            count_arrivals(&args, &shared, &mut seen, index);
            continue;
        }
        // Items arrive in order; note each marker as it appears.
        for k in take_markers(&mut seen) {
            if k == next && next < args.messages {
                note_delivery(&shared, next);
                next += 1;
            }
        }
        if next == args.messages {
            // Stay connected until the run ends: closing now would load the
            // proxy while other subscribers still wait for this item.
            std::future::pending::<()>().await;
        }
    }
}

/// Connects (from `source`, when given) to the index-th target, in turn,
/// and sends the request.
async fn open(args: &Args, source: Option<IpAddr>, index: usize) -> anyhow::Result<TcpStream> {
    let target = args.target[index % args.target.len()];
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let mut stream = socket.connect(target).await?;
    let request = if args.websocket {
        format!(
            "GET {} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            args.path
        )
    } else {
        format!("GET {} HTTP/1.1\r\nHost: bench\r\n\r\n", args.path)
    };
    stream.write_all(request.as_bytes()).await?;
    Ok(stream)
}

/// A storm or a listener: counts the markers in `seen`, and notes each
/// item's first and last arrival here and the last item's.
fn count_arrivals(args: &Args, shared: &Shared, seen: &mut Vec<u8>, index: usize) {
    let mut received = 0;
    let mut last_at = None;
    for k in take_markers(seen) {
        received += 1;
        if let Ok(mut arrivals) = shared.arrivals.lock() {
            if let Some(item) = arrivals.get_mut(k) {
                let now = wall_us();
                if item.count == 0 {
                    item.first_us = now;
                }
                item.count += 1;
                item.last_us = now;
            }
        }
        if k + 1 == args.messages {
            last_at = Some(Instant::now());
        }
    }
    if received > 0 {
        if let Ok(mut storm) = shared.storm.lock() {
            let entry = &mut storm[index];
            entry.0 += received;
            entry.1 = entry.1.or(last_at);
        }
        shared.notify.notify_waiters();
    }
}

/// Item `k` reached this connection: its latency, and the publisher woken
/// once it reached everyone.
fn note_delivery(shared: &Shared, k: usize) {
    let now = Instant::now();
    let published = shared.published.lock().map(|p| p[k]).unwrap_or(None);
    if let (Some(published), Ok(mut latencies)) = (published, shared.latencies.lock()) {
        latencies[k].push(now.duration_since(published).as_micros() as u64);
    }
    let delivered = shared.delivered[k].fetch_add(1, Ordering::SeqCst) + 1;
    if delivered >= shared.ready.load(Ordering::SeqCst) {
        shared.notify.notify_waiters();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Takes the complete lines out of `seen` and returns the item numbers of
/// those that are markers (`m<k>`, whatever framing surrounds them: chunk
/// sizes, SSE fields, WebSocket frame headers); a partial last line stays
/// (its last 64 bytes, enough for any marker, if it grows long).
pub(crate) fn take_markers(seen: &mut Vec<u8>) -> Vec<usize> {
    let Some(last_newline) = seen.iter().rposition(|&b| b == b'\n') else {
        if seen.len() > 1024 {
            seen.drain(..seen.len() - 64);
        }
        return Vec::new();
    };
    let markers = seen[..=last_newline]
        .split(|&b| b == b'\n')
        .filter_map(marker)
        .collect();
    seen.drain(..=last_newline);
    markers
}

/// `k` if `line` ends with `m<k>` (a trailing `\r` aside).
fn marker(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || line.len() <= digits || line[line.len() - digits - 1] != b'm' {
        return None;
    }
    std::str::from_utf8(&line[line.len() - digits..])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_whatever_frames_them() {
        // HTTP chunks, a WebSocket text frame header, a partial line.
        let mut seen = b"3\r\nm0\n\r\n4\r\nm12\n\r\n\x81\x03m7\nm1".to_vec();
        assert_eq!(take_markers(&mut seen), vec![0, 12, 7]);
        assert_eq!(seen, b"m1");
        seen.extend_from_slice(b"3\n");
        assert_eq!(take_markers(&mut seen), vec![13]);
        assert!(seen.is_empty());
    }

    #[test]
    fn lines_that_are_not_markers_are_skipped() {
        for line in [&b""[..], b"m", b"12", b"mx1", b"stream open", b"m1x"] {
            assert_eq!(marker(line), None, "{:?}", String::from_utf8_lossy(line));
        }
        assert_eq!(marker(b"m99999999999999999999999"), None);
        let mut seen = b"no newline yet".to_vec();
        assert!(take_markers(&mut seen).is_empty());
        assert_eq!(seen, b"no newline yet");
        // Content without newlines does not pile up.
        let mut seen = vec![b'x'; 5000];
        seen.extend_from_slice(b"m42");
        assert!(take_markers(&mut seen).is_empty());
        assert_eq!(seen.len(), 64);
        seen.push(b'\n');
        assert_eq!(take_markers(&mut seen), vec![42]);
    }
}
