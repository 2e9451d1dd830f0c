//! Bad input at the frame level: every case is an error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use holdfast_protocol::format::{self, DecodeError};
use holdfast_protocol::tnetstring;
use holdfast_protocol::zhttp::Packet;

fn decode(frame: &[u8]) -> Result<Packet, DecodeError> {
    format::decode(frame)
}

#[test]
fn frame_level_errors() {
    assert!(matches!(decode(b""), Err(DecodeError::Empty)));
    assert!(matches!(
        decode(b"X5:hello,"),
        Err(DecodeError::UnknownTag('X'))
    ));
    assert!(matches!(
        decode(b"{\"id\":1}"),
        Err(DecodeError::UnknownTag('{'))
    ));
}

/// Whether a decode error is the one a case expects.
type ErrorCheck = fn(&tnetstring::Error) -> bool;

#[test]
fn tnetstring_body_errors() {
    let cases: &[(&[u8], ErrorCheck)] = &[
        (b"T", |e| *e == tnetstring::Error::Truncated),
        (b"T12:2:id,1:a,", |e| *e == tnetstring::Error::Truncated),
        (b"T9:2:id,1:a,}extra", |e| {
            matches!(e, tnetstring::Error::Trailing { .. })
        }),
        (b"T3:abc?", |e| {
            matches!(e, tnetstring::Error::BadMarker { .. })
        }),
        (b"T99999999:x,", |e| {
            matches!(e, tnetstring::Error::TooLong { .. })
        }),
        (b"T4:1:a,}", |e| *e == tnetstring::Error::BadKey),
        // Well-formed TNetString, wrong shape for a packet.
        (b"T5:hello,", |e| matches!(e, tnetstring::Error::Shape(_))),
        (b"T11:3:seq,2:-1#}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
        (b"T14:3:seq,5:lots!,}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
        (b"T12:4:code,2:hi,}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
        (b"T12:2:id,4:1:x,]}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
        (b"T13:4:from,3:\xff\xfe\xfd,}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
        (b"T17:7:headers,4:1:a,]}", |e| {
            matches!(e, tnetstring::Error::Shape(_))
        }),
    ];
    for (frame, check) in cases {
        match decode(frame) {
            Err(DecodeError::TNetString(e)) => {
                assert!(check(&e), "{:?}: {e:?}", String::from_utf8_lossy(frame))
            }
            other => panic!(
                "{:?}: expected a TNetString error, got {other:?}",
                String::from_utf8_lossy(frame)
            ),
        }
    }
}

#[test]
fn msgpack_body_errors() {
    for frame in [
        &b"M"[..],
        b"M\xc1",
        b"M\x81\xa2id",
        b"M\xdf\xff\xff\xff\xff",
        b"M\x93\x01\x02\x03",
        b"M\x80\x80",
    ] {
        assert!(
            matches!(decode(frame), Err(DecodeError::MessagePack(_))),
            "{frame:?}"
        );
    }
}

#[test]
fn truncations_of_a_real_frame_never_panic() {
    let frame = b"T95:4:from,7:condure,2:id,5:1-0-1,3:seq,1:1#3:ext,15:5:multi,4:true!}4:type,6:credit,7:credits,1:6#}";
    assert!(decode(frame).is_ok());
    for cut in 0..frame.len() {
        assert!(decode(&frame[..cut]).is_err(), "prefix of {cut} bytes");
    }
}
