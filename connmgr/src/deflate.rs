//! permessage-deflate (RFC 7692) for client WebSockets.
//!
//! tungstenite has no extension support, so compression lives in a layer
//! under it: [`Deflated`] wraps the upgraded connection, inflates the
//! client's compressed messages into plain frames before tungstenite reads
//! them, and compresses the plain data frames tungstenite writes. Owners
//! never see compression, as with Pushpin's connmgr.
//!
//! Both directions are negotiated without context takeover, so every
//! message is compressed on its own: one compressor and one decompressor per
//! thread serve every connection, and an idle connection holds no zlib
//! state (a compressor's window alone is 256 KiB).

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::cell::RefCell;
use std::io::Cursor;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// The extension as connmgr accepts it (plus `server_max_window_bits`
/// when the client asked for a smaller window, see [`Agreement`]).
const RESPONSE: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Messages shorter than this go out uncompressed (the deflate block
/// overhead would make them longer).
const MIN_COMPRESSED: usize = 64;

/// Bytes from the client's side read per call.
const READ_CHUNK: usize = 4096;

/// Compressed bytes waiting for the client beyond which writes wait.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// The tail every sender strips from a compressed message (RFC 7692 7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// permessage-deflate as agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The window the client allows connmgr's compressor, when under 15
    /// bits. The compressor's window is fixed (15 bits), so messages to
    /// such a client go uncompressed, which RFC 7692 allows.
    server_max_window_bits: Option<u8>,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the `101`.
    pub fn response(&self) -> String {
        match self.server_max_window_bits {
            Some(bits) => format!("{RESPONSE}; server_max_window_bits={bits}"),
            None => RESPONSE.to_owned(),
        }
    }

    /// Whether messages to the client are compressed.
    pub fn compresses(&self) -> bool {
        self.server_max_window_bits.is_none()
    }
}

/// The first of the client's `Sec-WebSocket-Extensions` offers connmgr can
/// take: `permessage-deflate` with any valid parameters (the
/// no-context-takeover flags, `client_max_window_bits` with or without a
/// value, `server_max_window_bits` 8 to 15); an offer with an unknown,
/// repeated or invalid parameter is declined.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .find_map(acceptable)
}

fn acceptable(offer: &str) -> Option<Agreement> {
    let mut parts = offer.split(';').map(str::trim);
    if parts.next() != Some("permessage-deflate") {
        return None;
    }
    let bits = |value: Option<&str>| value?.parse::<u8>().ok().filter(|b| (8..=15).contains(b));
    let mut seen = Vec::new();
    let mut agreement = Agreement {
        server_max_window_bits: None,
    };
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match name {
            "server_no_context_takeover" | "client_no_context_takeover" if value.is_none() => {}
            "client_max_window_bits" if value.is_none() || bits(value).is_some() => {}
            "server_max_window_bits" => {
                let bits = bits(value)?;
                agreement.server_max_window_bits = (bits < 15).then_some(bits);
            }
            _ => return None,
        }
    }
    Some(agreement)
}

/// A connection whose messages are compressed on the wire.
pub struct Deflated<S> {
    inner: S,
    max_message: usize,
    /// Bytes from the client not yet made into frames.
    wire_in: BytesMut,
    /// Plain frames for tungstenite.
    plain_in: BytesMut,
    /// A compressed message arriving in fragments: its first header and
    /// the unmasked payload so far.
    inflating: Option<(FrameHeader, Vec<u8>)>,
    /// Frames that could not be parsed go to tungstenite as they are (it
    /// closes the connection with the right code).
    raw: bool,
    /// Frames from tungstenite not yet processed.
    plain_out: BytesMut,
    /// Bytes for the client.
    wire_out: BytesMut,
    /// tungstenite is sending a fragmented message (sent uncompressed).
    fragmented_out: bool,
    /// Messages to the client are compressed (see [`Agreement`]).
    compress: bool,
}

impl<S> Deflated<S> {
    /// Compression over `inner` as `agreement` says; inflated messages
    /// larger than `max_message` are cut just past it, so tungstenite
    /// refuses them.
    pub fn new(inner: S, max_message: usize, agreement: Agreement) -> Self {
        Deflated {
            inner,
            max_message,
            wire_in: BytesMut::new(),
            plain_in: BytesMut::new(),
            inflating: None,
            raw: false,
            plain_out: BytesMut::new(),
            wire_out: BytesMut::new(),
            fragmented_out: false,
            compress: agreement.compresses(),
        }
    }

    /// Turns the client's complete frames into plain ones; false when more
    /// bytes are needed.
    fn read_frame(&mut self) -> bool {
        if self.raw {
            if self.wire_in.is_empty() {
                return false;
            }
            let bytes = self.wire_in.split();
            self.plain_in.extend_from_slice(&bytes);
            return true;
        }
        let Some((header, start, len)) = parse(&self.wire_in) else {
            if parse_failed(&self.wire_in) {
                self.raw = true;
                return !self.wire_in.is_empty();
            }
            return false;
        };
        let Ok(len) = usize::try_from(len) else {
            self.raw = true;
            return true;
        };
        if len > self.max_message.saturating_add(1024) {
            // Too big either way: tungstenite says so with 1009.
            self.raw = true;
            return true;
        }
        if self.wire_in.len() < start + len {
            return false;
        }
        let frame = self.wire_in.split_to(start + len);
        let compressed_start = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary))
            && header.rsv1
            && self.inflating.is_none();
        let continuing =
            matches!(header.opcode, OpCode::Data(Data::Continue)) && self.inflating.is_some();
        if !compressed_start && !continuing {
            self.plain_in.extend_from_slice(&frame);
            return true;
        }
        let mut payload = frame[start..].to_vec();
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask);
        }
        let (first, mut collected) = match self.inflating.take() {
            Some((first, mut so_far)) => {
                so_far.extend_from_slice(&payload);
                (first, so_far)
            }
            None => (header.clone(), payload),
        };
        if !header.is_final && collected.len() <= self.max_message {
            self.inflating = Some((first, collected));
            return true;
        }
        collected.extend_from_slice(&TAIL);
        let plain = inflate(&collected, self.max_message.saturating_add(1));
        let Some(mut plain) = plain else {
            // Not deflate data: an empty frame with RSV1 still set, which
            // tungstenite refuses with a protocol error.
            let bad = FrameHeader {
                rsv1: true,
                is_final: true,
                ..first
            };
            let mut head = Vec::with_capacity(14);
            if bad.format(0, &mut head).is_ok() {
                self.plain_in.extend_from_slice(&head);
            }
            self.raw = true;
            return true;
        };
        let out = FrameHeader {
            is_final: true,
            rsv1: false,
            rsv2: first.rsv2,
            rsv3: first.rsv3,
            opcode: first.opcode,
            mask: first.mask,
        };
        if let Some(mask) = out.mask {
            apply_mask(&mut plain, mask);
        }
        let mut head = Vec::with_capacity(14);
        if out.format(plain.len() as u64, &mut head).is_err() {
            self.raw = true;
            return true;
        }
        self.plain_in.extend_from_slice(&head);
        self.plain_in.extend_from_slice(&plain);
        true
    }

    /// Compresses tungstenite's complete frames into `wire_out`.
    fn write_frames(&mut self) {
        while let Some((header, start, len)) = parse(&self.plain_out) {
            let Ok(len) = usize::try_from(len) else {
                return;
            };
            if self.plain_out.len() < start + len {
                return;
            }
            let frame = self.plain_out.split_to(start + len);
            let payload = &frame[start..];
            let whole_data = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary))
                && header.is_final
                && !self.fragmented_out;
            match header.opcode {
                OpCode::Data(Data::Text | Data::Binary) if !header.is_final => {
                    self.fragmented_out = true
                }
                OpCode::Data(Data::Continue) if header.is_final => self.fragmented_out = false,
                _ => {}
            }
            let compressed =
                (self.compress && whole_data && header.mask.is_none() && len >= MIN_COMPRESSED)
                    .then(|| deflate(payload))
                    .flatten()
                    .filter(|c| c.len() < len);
            let Some(compressed) = compressed else {
                self.wire_out.extend_from_slice(&frame);
                continue;
            };
            let out = FrameHeader {
                rsv1: true,
                ..header
            };
            let mut head = Vec::with_capacity(10);
            if out.format(compressed.len() as u64, &mut head).is_err() {
                self.wire_out.extend_from_slice(&frame);
                continue;
            }
            self.wire_out.extend_from_slice(&head);
            self.wire_out.extend_from_slice(&compressed);
        }
        if !self.plain_out.is_empty() && parse_failed(&self.plain_out) {
            // Unreachable for tungstenite's own frames; never hold bytes.
            let rest = self.plain_out.split();
            self.wire_out.extend_from_slice(&rest);
        }
    }
}

impl<S: AsyncWrite + Unpin> Deflated<S> {
    /// Writes what is waiting for the client; Ready once all of it went.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.wire_out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.wire_out))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.wire_out.advance(n);
        }
        if self.wire_out.capacity() > WRITE_HIGH_WATER {
            self.wire_out = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflated<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.plain_in.is_empty() {
                let n = this.plain_in.len().min(buf.remaining());
                buf.put_slice(&this.plain_in.split_to(n));
                if this.plain_in.is_empty() {
                    this.plain_in = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_frame() {
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // End of stream: whatever partial frame is left goes as is.
                let rest = this.wire_in.split();
                if rest.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                this.plain_in.extend_from_slice(&rest);
                continue;
            }
            this.wire_in.extend_from_slice(read.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflated<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.wire_out.len() >= WRITE_HIGH_WATER {
            ready!(this.drain(cx))?;
        }
        this.plain_out.extend_from_slice(data);
        this.write_frames();
        if let Poll::Ready(Err(err)) = this.drain(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A complete frame header at the start of `bytes`: the header, where the
/// payload starts and its length.
fn parse(bytes: &[u8]) -> Option<(FrameHeader, usize, u64)> {
    let mut cursor = Cursor::new(bytes);
    let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
    let start = usize::try_from(cursor.position()).ok()?;
    Some((header, start, len))
}

/// Whether the bytes start with something that is not a frame header.
fn parse_failed(bytes: &[u8]) -> bool {
    FrameHeader::parse(&mut Cursor::new(bytes)).is_err()
}

fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Inflates one message (its tail appended), stopping past `limit` bytes;
/// None if it is not valid deflate data.
fn inflate(compressed: &[u8], limit: usize) -> Option<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut d = cell.borrow_mut();
        d.reset(false);
        let mut out = Vec::with_capacity((compressed.len() * 4).min(limit));
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len().max(1024).min(limit + 1 - out.len()));
            }
            let consumed = usize::try_from(d.total_in()).ok()?;
            let before = d.total_out();
            let status = d
                .decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync)
                .ok()?;
            if out.len() >= limit {
                out.truncate(limit);
                return Some(out);
            }
            // Done once everything is in and a call gives nothing more: the
            // decompressor may hold output back while there is room for it
            // (miniz returns early), so "room left" alone does not say so.
            let all_in = usize::try_from(d.total_in()).ok()? >= compressed.len();
            if status == Status::StreamEnd || (all_in && d.total_out() == before) {
                return Some(out);
            }
        }
    })
}

/// Compresses one message without the trailing `TAIL`, in one call with a
/// sync flush into a buffer it cannot fill; `None` (the message goes
/// uncompressed) if it did not all fit. miniz (flate2's backend) loses or
/// repeats part of a sync flush that has to continue in a second call
/// (miniz_oxide issue 105; it cut 65,536-byte messages to 61,548), so
/// there must never be one.
fn deflate(plain: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut c = cell.borrow_mut();
        c.reset();
        // Stored blocks cost 5 bytes per 64 KiB; compressed ones are only
        // used when smaller. An eighth more is far beyond either.
        let mut out = Vec::with_capacity(plain.len() + plain.len() / 8 + 128);
        c.compress_vec(plain, &mut out, FlushCompress::Sync).ok()?;
        let all_in = usize::try_from(c.total_in()).ok()? == plain.len();
        if !all_in || out.len() == out.capacity() || !out.ends_with(&TAIL) {
            return None;
        }
        out.truncate(out.len() - TAIL.len());
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers() {
        let compressed = Some(Agreement {
            server_max_window_bits: None,
        });
        let yes: &[(&str, Option<Agreement>)] = &[
            ("permessage-deflate", compressed),
            ("permessage-deflate; client_max_window_bits", compressed),
            ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12; server_no_context_takeover", compressed),
            ("permessage-deflate; server_max_window_bits=15", compressed),
            // A smaller window than the compressor's: accepted, messages
            // to that client go uncompressed.
            (
                "permessage-deflate; server_max_window_bits=9",
                Some(Agreement {
                    server_max_window_bits: Some(9),
                }),
            ),
            // The first acceptable offer wins.
            ("permessage-deflate; mystery, permessage-deflate", compressed),
        ];
        for (offer, expected) in yes {
            assert_eq!(negotiate([offer.as_bytes()]), *expected, "{offer}");
        }
        let no: &[&str] = &[
            "",
            "grip",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflatex",
        ];
        for offer in no {
            assert_eq!(negotiate([offer.as_bytes()]), None, "{offer}");
        }
        assert_eq!(negotiate([&[0xff, 0xfe][..]]), None);
        assert_eq!(
            negotiate([&b"permessage-deflate; server_max_window_bits=10"[..]])
                .unwrap()
                .response(),
            format!("{RESPONSE}; server_max_window_bits=10")
        );
    }

    /// Image-like bytes (a gradient with noise): they compress by about a
    /// fifth, so the output is nearly as long as the input.
    fn image_like(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|i| {
                state = state.wrapping_mul(1103515245).wrapping_add(12345);
                ((i / 7) as u32 + (state >> 28)) as u8
            })
            .collect()
    }

    /// Every size around the ones Autobahn's 12.x cases caught (a sync
    /// flush continued in a second call lost data), checked with a
    /// decompressor of its own.
    #[test]
    fn compressed_messages_inflate_whole_at_every_size() {
        let sizes = (58_000..62_000)
            .step_by(97)
            .chain((128 * 1024..132 * 1024).step_by(251))
            .chain([0, 1, 64, 65_535, 65_536, 262_144]);
        for (n, size) in sizes.enumerate() {
            let plain = image_like(size, n as u32);
            let Some(packed) = deflate(&plain) else {
                continue;
            };
            let mut whole = packed;
            whole.extend_from_slice(&TAIL);
            let mut reference = Decompress::new(false);
            let mut out = Vec::with_capacity(size + 1024);
            reference
                .decompress_vec(&whole, &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out.len(), size, "size {size}");
            assert!(out == plain, "size {size}: content differs");
            assert_eq!(inflate(&whole, 1 << 20).unwrap(), plain, "size {size}");
        }
    }

    #[test]
    fn round_trip() {
        let text = "hello hello hello hello hello hello hello hello hello hello".repeat(20);
        let packed = deflate(text.as_bytes()).unwrap();
        assert!(packed.len() < text.len() / 4);
        let mut with_tail = packed.clone();
        with_tail.extend_from_slice(&TAIL);
        assert_eq!(inflate(&with_tail, 1 << 20).unwrap(), text.as_bytes());
        // A bomb stops at the limit.
        let zeros = deflate(&vec![0u8; 1 << 20]).unwrap();
        let mut bomb = zeros;
        bomb.extend_from_slice(&TAIL);
        assert_eq!(inflate(&bomb, 1000).unwrap().len(), 1000);
        // Garbage is refused.
        assert!(inflate(&[0xff, 0xff, 0xff, 0xff, 0xff], 1000).is_none());
    }
}
