//! Lean HTTP/1: plain-TCP connections served without hyper while their
//! requests are the common kind, so that a held stream costs its socket and
//! its response body, not hyper's per-connection buffers (a read buffer
//! and a write buffer of 8 KiB each, which hyper neither shrinks nor lets a
//! caller size).
//!
//! A request head is read into a buffer that exists only while a head is
//! arriving, and parsed with httparse (hyper's own parser). A `GET` over
//! HTTP/1.1 with no body, no upgrade and no `Expect` is answered here:
//! [`crate::session::respond`] as for hyper, then the response written as
//! hyper writes it (`Date`, `Content-Length` for a complete body, chunked
//! for a stream, `Connection: close` when the client asked for it).
//! Anything else (a body, a WebSocket handshake, HTTP/1.0, a head hyper
//! would refuse) hands the connection, with the bytes already read, to
//! hyper for the rest of its life ([`Replay`]).
//!
//! While a response is awaited or streams, the socket is watched for the
//! client going away (end of stream or an error): the response is dropped,
//! so the session cancels its owner, as with hyper. Bytes a client
//! pipelines are kept for the next head, up to the head limit; past it the
//! socket is not read until the response is done.

use crate::servers::serve_http1;
use crate::session::respond;
use crate::shared::Shared;
use bytes::{Buf, Bytes, BytesMut};
use holdfast_runtime::body::HttpBody as ResponseBody;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{request, response, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http::{StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Headers parsed per request: hyper's own limit, so a head past it goes
/// to hyper and gets the answer it always got.
const MAX_PARSED_HEADERS: usize = 100;

/// What a read reserves in the head buffer at a time.
const READ_CHUNK: usize = 2048;

/// A head at the start of a buffer.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not all there yet.
    Partial,
    /// One the lean path answers, and its length in bytes.
    Lean(Box<request::Parts>, usize),
    /// One for hyper (or malformed: hyper says what is wrong with it).
    Hyper,
}

/// Serves a plain-TCP client connection until it closes or `token` is
/// cancelled (after the response in flight).
pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: &http1::Builder,
    token: CancellationToken,
) {
    let _open = shared.metrics.open(crate::metrics::Transport::Http1);
    let limit = shared.config.buffer_size.max(1024);
    let timeout = shared.config.idle_timeout();
    let mut buf = BytesMut::new();
    loop {
        let head = tokio::select! {
            head = tokio::time::timeout(timeout, read_head(&stream, &mut buf, limit)) => head,
            _ = token.cancelled() => return,
        };
        let parts = match head {
            Ok(Ok(Parsed::Lean(parts, len))) => {
                buf.advance(len);
                if buf.is_empty() {
                    // A held response keeps no read buffer.
                    buf = BytesMut::new();
                }
                parts
            }
            Ok(Ok(Parsed::Hyper)) => {
                let io = Replay {
                    first: buf.freeze(),
                    stream,
                };
                // Boxed: the task is sized for the lean path, which is
                // what a held stream pays for.
                Box::pin(serve_http1(io, peer, false, shared, builder, token)).await;
                return;
            }
            Ok(Ok(Parsed::Partial)) => return,
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "client connection failed");
                return;
            }
            // No complete head within the idle timeout: closed, as hyper does.
            Err(_) => return,
        };
        let close = wants_close(&parts.headers);
        let resp = {
            let responding = Box::pin(respond(*parts, None, shared.clone(), peer, false));
            tokio::select! {
                resp = responding => resp,
                () = until_gone(&stream, &mut buf, limit) => return,
            }
        };
        let reusable = write_response(&mut stream, &mut buf, limit, resp, close).await;
        if !reusable || token.is_cancelled() {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads until `buf` starts with a complete head, the client closes
/// ([`Parsed::Partial`]: nothing more will come) or the head is past
/// `limit` ([`Parsed::Hyper`], which answers 431).
async fn read_head(stream: &TcpStream, buf: &mut BytesMut, limit: usize) -> io::Result<Parsed> {
    loop {
        if !buf.is_empty() {
            match parse_head(buf, limit) {
                Parsed::Partial if buf.len() < limit => {}
                Parsed::Partial => return Ok(Parsed::Hyper),
                parsed => return Ok(parsed),
            }
        }
        // Readiness first: an idle keep-alive connection holds no buffer.
        stream.readable().await?;
        buf.reserve(READ_CHUNK.min(limit + 1 - buf.len().min(limit)));
        match stream.try_read_buf(buf) {
            Ok(0) => return Ok(Parsed::Partial),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if buf.is_empty() {
                    // A stale readiness: wait without a buffer.
                    *buf = BytesMut::new();
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// The request head at the start of `bytes`, if complete, and whether the
/// lean path answers it: a `GET` over HTTP/1.1 without a body, an upgrade
/// or an expectation, within `limit` bytes and hyper's header count, that
/// hyper would parse the same way.
pub(crate) fn parse_head(bytes: &[u8], limit: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_PARSED_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) if len <= limit => len,
        Ok(httparse::Status::Complete(_)) | Err(_) => return Parsed::Hyper,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Parsed::Hyper;
    }
    let Ok(uri) = req.path.unwrap_or_default().parse::<http::Uri>() else {
        return Parsed::Hyper;
    };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for header in req.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Parsed::Hyper;
        };
        map.append(name, value);
    }
    if [CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE, EXPECT]
        .iter()
        .any(|name| map.contains_key(name))
    {
        return Parsed::Hyper;
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = Method::GET;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = map;
    Parsed::Lean(Box::new(parts), len)
}

fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    })
}

/// Returns once the client has gone away (end of stream or an error),
/// keeping whatever it sends meanwhile (a pipelined request) up to `limit`.
async fn until_gone(stream: &TcpStream, buf: &mut BytesMut, limit: usize) {
    loop {
        if buf.len() >= limit {
            // Enough waiting: read no more until the response is done.
            return std::future::pending().await;
        }
        if stream.readable().await.is_err() {
            return;
        }
        // Read onto the stack: the socket is often readable only because
        // the head's last read left it marked so (this read then finds
        // nothing), and a held stream should not keep a buffer for that.
        let mut chunk = [0u8; 512];
        let room = chunk.len().min(limit - buf.len());
        match stream.try_read(&mut chunk[..room]) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// Writes `resp`; whether the connection can carry another request.
async fn write_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    limit: usize,
    resp: Response<ResponseBody>,
    close: bool,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    let framing = framing(&parts, &body);
    let mut head = Bytes::from(encode_head(&parts, framing, close));
    // Neither is needed while the body streams, which may be for hours.
    drop(parts);
    if let (Framing::Length(total), ResponseBody::Full(full)) = (framing, &mut body) {
        // A complete body goes out with its head, in one write.
        let mut data = full.take().unwrap_or_default();
        let exact = data.len() as u64 == total;
        data.truncate(usize::try_from(total).unwrap_or(usize::MAX));
        let mut out = head.chain(data);
        return stream.write_all_buf(&mut out).await.is_ok() && exact && !close;
    }
    if stream.write_all_buf(&mut head).await.is_err() {
        return false;
    }
    drop(head);
    if matches!(framing, Framing::None | Framing::Length(0)) {
        return !close;
    }
    let mut written = 0u64;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = until_gone(stream, buf, limit) => return false,
        };
        let data = match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
            // Cut short: the connection closes without the body's end, so
            // the client sees an incomplete response, as hyper leaves it.
            Some(Err(_)) => return false,
        };
        let sent = match framing {
            Framing::Chunked => {
                // The size line is made on the stack: this runs for every
                // delivery to every held stream.
                let (line, len) = chunk_size_line(data.len());
                let mut out = (&line[..len]).chain(data).chain(&b"\r\n"[..]);
                stream.write_all_buf(&mut out).await
            }
            Framing::Length(total) => {
                let mut data = data;
                data.truncate(usize::try_from(total - written).unwrap_or(usize::MAX));
                written += data.len() as u64;
                stream.write_all_buf(&mut data).await
            }
            Framing::None => Ok(()),
        };
        if sent.is_err() {
            return false;
        }
        if matches!(framing, Framing::Length(total) if written >= total) {
            break;
        }
    }
    match framing {
        Framing::Chunked => stream.write_all(b"0\r\n\r\n").await.is_ok() && !close,
        // Fewer bytes than announced: only closing tells the client.
        Framing::Length(total) => written == total && !close,
        Framing::None => !close,
    }
}

/// A chunk's size line (hex digits and CRLF), and its length.
fn chunk_size_line(size: usize) -> ([u8; 18], usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut line = [0u8; 18];
    let digits = (usize::BITS - size.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, at) in line[..digits].iter_mut().rev().enumerate() {
        *at = HEX[(size >> (4 * i)) & 0xf];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (line, digits + 2)
}

/// How hyper would delimit this response: none for statuses without a
/// body, the length the head declares or the complete body has, otherwise
/// chunked.
fn framing(parts: &response::Parts, body: &ResponseBody) -> Framing {
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Framing::None;
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared.or(body.size_hint().exact()) {
        Some(len) => Framing::Length(len),
        None => Framing::Chunked,
    }
}

/// The status line and headers, with what hyper adds: `Date` when absent,
/// the body's framing, `Connection: close` when the client asked to close.
fn encode_head(parts: &response::Parts, framing: Framing, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    let reason = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .map(|reason| reason.as_bytes())
        .or_else(|| parts.status.canonical_reason().map(str::as_bytes))
        .unwrap_or(b"<none>");
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
    let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in &parts.headers {
        // The framing is this writer's to say.
        let ours = name == TRANSFER_ENCODING
            || name == CONNECTION
            || (name == CONTENT_LENGTH && framing != Framing::None);
        if !ours {
            line(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match framing {
        Framing::Length(len) => line(&mut out, b"content-length", len.to_string().as_bytes()),
        Framing::Chunked => line(&mut out, b"transfer-encoding", b"chunked"),
        Framing::None => {}
    }
    if close {
        line(&mut out, b"connection", b"close");
    }
    if !parts.headers.contains_key(DATE) {
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        line(&mut out, b"date", now.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A connection handed to hyper: the bytes already read come first.
struct Replay {
    first: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Replay {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.first.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, out);
        }
        let n = this.first.len().min(out.remaining());
        // Splitting off the last bytes leaves `first` empty and no longer
        // sharing the head buffer (an upgraded WebSocket keeps this for life).
        out.put_slice(&this.first.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Parsed {
        parse_head(bytes, 8192)
    }

    #[test]
    fn plain_gets_are_lean() {
        let Parsed::Lean(parts, len) =
            parse(b"GET /stream?x=1 HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n\r\nGET /next")
        else {
            panic!("a plain GET is lean")
        };
        assert_eq!(len, 55);
        assert_eq!(parts.uri, "/stream?x=1");
        assert_eq!(parts.headers["host"], "a.test");
        assert_eq!(parts.headers.len(), 2);
    }

    #[test]
    fn partial_heads_wait() {
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a"),
            Parsed::Partial
        ));
        assert!(matches!(parse(b"GE"), Parsed::Partial));
    }

    fn assert_for_hyper(heads: &[&[u8]]) {
        for head in heads {
            assert!(
                matches!(parse(head), Parsed::Hyper),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        assert_for_hyper(&[
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"[..],
            b"HEAD / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        ]);
    }

    #[test]
    fn malformed_heads_go_to_hyper_which_answers_them() {
        let many: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_for_hyper(&[
            &b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX: \x01\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"GET http://[::1 HTTP/1.1\r\n\r\n",
            many.as_bytes(),
        ]);
        // Complete but over the limit: hyper answers 431.
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(2000));
        assert!(matches!(parse_head(long.as_bytes(), 1024), Parsed::Hyper));
    }

    #[test]
    fn every_cut_and_every_byte_changed_is_answered_sanely() {
        // The fuzz target's invariant over every prefix of a few heads and
        // every single-byte change to them: no panic, and what the lean
        // path takes is a bodyless GET within the bytes.
        let heads: [&[u8]; 3] = [
            b"GET /s?a=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
            b"GET http://h.test/x HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        ];
        let check = |bytes: &[u8]| {
            if let Parsed::Lean(parts, len) = parse_head(bytes, 8192) {
                assert!(len <= bytes.len());
                assert_eq!(parts.method, Method::GET);
                assert!(!parts.headers.contains_key(CONTENT_LENGTH));
                assert!(!parts.headers.contains_key(TRANSFER_ENCODING));
            }
        };
        for head in heads {
            for cut in 0..=head.len() {
                check(&head[..cut]);
            }
            for at in 0..head.len() {
                for byte in [0u8, b'\r', b'\n', b' ', b':', 0x7f, 0xff, b'G'] {
                    let mut changed = head.to_vec();
                    changed[at] = byte;
                    check(&changed);
                }
            }
        }
    }

    fn head(status: u16, headers: &[(&str, &str)], framing: Framing, close: bool) -> String {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            resp.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let (parts, ()) = resp.into_parts();
        String::from_utf8(encode_head(&parts, framing, close)).unwrap()
    }

    #[test]
    fn heads_say_their_framing() {
        let chunked = head(
            200,
            &[("content-type", "text/plain")],
            Framing::Chunked,
            false,
        );
        assert!(chunked.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"));
        assert!(chunked.contains("\r\ntransfer-encoding: chunked\r\n"));
        assert!(chunked.contains("\r\ndate: "));
        assert!(chunked.ends_with("\r\n\r\n"));
        let fixed = head(404, &[("content-length", "7")], Framing::Length(7), true);
        assert_eq!(fixed.matches("content-length").count(), 1);
        assert!(fixed.contains("\r\ncontent-length: 7\r\n"));
        assert!(fixed.contains("\r\nconnection: close\r\n"));
        let none = head(304, &[("etag", "\"1\"")], Framing::None, false);
        assert!(none.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(!none.contains("transfer-encoding") && !none.contains("content-length"));
        assert!(head(599, &[], Framing::Length(0), false).starts_with("HTTP/1.1 599 <none>\r\n"));
    }

    #[test]
    fn chunk_size_lines_are_hex_with_crlf() {
        for size in [
            0usize,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            65_535,
            1 << 20,
            usize::MAX,
        ] {
            let (line, len) = chunk_size_line(size);
            assert_eq!(&line[..len], format!("{size:X}\r\n").as_bytes());
        }
    }

    #[test]
    fn framing_follows_status_header_and_body() {
        let parts = |status: u16, length: Option<&str>| {
            let mut resp = Response::new(());
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            if let Some(length) = length {
                resp.headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from_str(length).unwrap());
            }
            resp.into_parts().0
        };
        let full = ResponseBody::full("hello");
        let (_tx, rx) = holdfast_runtime::body::body_channel(
            1024,
            Arc::new(holdfast_runtime::body::Drained::default()),
        );
        let stream = ResponseBody::Stream(rx);
        assert_eq!(framing(&parts(200, None), &full), Framing::Length(5));
        assert_eq!(framing(&parts(200, None), &stream), Framing::Chunked);
        assert_eq!(
            framing(&parts(200, Some("10")), &stream),
            Framing::Length(10)
        );
        assert_eq!(framing(&parts(200, Some("x")), &stream), Framing::Chunked);
        assert_eq!(framing(&parts(204, None), &full), Framing::None);
        assert_eq!(framing(&parts(304, Some("5")), &full), Framing::None);
    }

    /// Once the bytes read before the hand-over are replayed, the head
    /// buffer they came from is no longer kept (an upgraded WebSocket keeps
    /// its `Replay` for life).
    #[tokio::test]
    async fn replay_lets_go_of_the_head_buffer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let head = Bytes::from(b"GET / HTTP/1.1\r\n\r\nand more".to_vec());
        let mut replay = Replay {
            first: head.slice(..18),
            stream,
        };
        client.write_all(b"later").await.unwrap();
        let mut got = [0u8; 10];
        replay.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"GET / HTTP");
        assert!(!head.is_unique(), "bytes still to replay keep the buffer");
        let mut rest = [0u8; 8 + 5];
        replay.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"/1.1\r\n\r\nlater");
        assert!(head.is_unique(), "the replayed head buffer is still kept");
    }
}
