//! Encode → decode equality, and real frames captured from Pushpin 1.36's
//! connection manager (condure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use bytes::Bytes;
use holdfast_protocol::format::{self, split_topic, Format};
use holdfast_protocol::tnetstring;
use holdfast_protocol::value::{self, Value};
use holdfast_protocol::zhttp::{Ext, Header, IdSeq, Ids, Packet, PacketType};
use proptest::prelude::*;
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/zhttp-condure-1.36")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes a fixture, re-encodes it in both formats, and checks the values
/// survive (key order may differ, so bytes are not compared).
fn check_roundtrip(frame: &[u8]) -> Packet {
    let packet: Packet = format::decode(frame).expect("fixture decodes");
    for fmt in [Format::TNetString, Format::MessagePack] {
        let bytes = format::encode(&packet, fmt).unwrap();
        let again: Packet = format::decode(&bytes).unwrap();
        assert_eq!(again, packet, "{fmt:?}");
    }
    // The generic value tree must agree with the typed model too.
    let tree = tnetstring::parse_complete(&frame[1..]).unwrap();
    let typed: Packet = value::from_value(&tree).unwrap();
    assert_eq!(typed, packet);
    packet
}

fn from_connmgr(name: &str) -> Packet {
    check_roundtrip(&fixture(name))
}

fn to_connmgr(name: &str) -> Packet {
    let frame = fixture(name);
    let (topic, body) = split_topic(&frame).expect("addressed frame");
    assert_eq!(topic, b"condure");
    check_roundtrip(body)
}

#[test]
fn condure_request_get() {
    let p = from_connmgr("from-connmgr-request-get.tnet");
    assert_eq!(p.kind(), &PacketType::Data);
    assert_eq!(p.from.as_deref(), Some("condure"));
    assert_eq!(p.single_id(), Some("0-1-3"));
    assert_eq!(p.seq, Some(0));
    assert_eq!(p.ext, Some(Ext { multi: true }));
    assert_eq!(p.method.as_deref(), Some("GET"));
    assert_eq!(p.uri.as_deref(), Some("http://example.test/hello?x=1"));
    assert_eq!(p.header("host").map(|v| &v[..]), Some(&b"example.test"[..]));
    assert_eq!(p.headers.as_ref().map(Vec::len), Some(3));
    assert_eq!(p.credits, Some(8192));
    assert!(p.stream);
    assert!(!p.more);
    assert_eq!(p.peer_address.as_deref(), Some("127.0.0.1"));
    assert_eq!(p.peer_port, Some(55786));
}

#[test]
fn condure_request_post_more() {
    let p = from_connmgr("from-connmgr-request-post-more.tnet");
    assert_eq!(p.method.as_deref(), Some("POST"));
    assert!(p.more);
    assert_eq!(p.header("Content-Length").map(|v| &v[..]), Some(&b"13"[..]));
}

#[test]
fn condure_request_stream_and_websocket() {
    let p = from_connmgr("from-connmgr-request-stream.tnet");
    assert_eq!(p.uri.as_deref(), Some("http://example.test/stream"));
    let ws = from_connmgr("from-connmgr-request-websocket.tnet");
    assert_eq!(ws.uri.as_deref(), Some("ws://example.test/ws"));
    assert!(!ws.stream);
    assert_eq!(
        ws.header("upgrade").map(|v| &v[..]),
        Some(&b"websocket"[..])
    );
}

#[test]
fn condure_control_packets() {
    let credit = from_connmgr("from-connmgr-credit.tnet");
    assert_eq!(credit.kind(), &PacketType::Credit);
    assert_eq!(credit.credits, Some(6));
    assert_eq!(
        from_connmgr("from-connmgr-keep-alive.tnet").kind(),
        &PacketType::KeepAlive
    );
    let cancel = from_connmgr("from-connmgr-cancel.tnet");
    assert_eq!(cancel.kind(), &PacketType::Cancel);
    assert_eq!(cancel.seq, Some(2));
}

#[test]
fn condure_websocket_message() {
    let p = from_connmgr("from-connmgr-websocket-text.tnet");
    assert_eq!(p.kind(), &PacketType::Data);
    assert_eq!(p.content_type.as_deref(), Some("text"));
    assert_eq!(p.body.as_deref(), Some(&b"hi"[..]));
}

#[test]
fn responses_condure_accepted() {
    let whole = to_connmgr("to-connmgr-response-whole.tnet");
    assert_eq!(whole.code, Some(200));
    assert_eq!(whole.reason.as_deref(), Some("OK"));
    assert_eq!(whole.body.as_deref(), Some(&b"hello\n"[..]));
    assert!(!whole.more);

    let head = to_connmgr("to-connmgr-response-stream-head.tnet");
    assert!(head.more);
    assert_eq!(head.body.as_deref(), Some(&b"start\n"[..]));
    let data = to_connmgr("to-connmgr-response-stream-data.tnet");
    assert_eq!((data.seq, data.more, data.code), (Some(1), true, None));
    let end = to_connmgr("to-connmgr-response-stream-end.tnet");
    assert_eq!((end.seq, end.more), (Some(2), false));
    assert_eq!(end.body.as_deref(), Some(&b""[..]));

    let accept = to_connmgr("to-connmgr-websocket-accept.tnet");
    assert_eq!(accept.code, Some(101));
    assert_eq!(accept.headers, Some(vec![]));
    let text = to_connmgr("to-connmgr-websocket-text.tnet");
    assert_eq!(text.body.as_deref(), Some(&b"hello back"[..]));
    let close = to_connmgr("to-connmgr-websocket-close.tnet");
    assert_eq!(close.kind(), &PacketType::Close);
    assert_eq!(close.code, Some(1000));
}

#[test]
fn string_ints_are_accepted() {
    // Pushpin's C++ components write peer-port as a string.
    let frame = b"T38:2:id,1:a,3:seq,1:0,9:peer-port,4:8080,}";
    let p: Packet = format::decode(frame).unwrap();
    assert_eq!(p.peer_port, Some(8080));
    assert_eq!(p.seq, Some(0));
}

#[test]
fn batched_ids() {
    let frame = b"T105:4:from,9:proxy_812,2:id,56:24:2:id,6:0-5-2f,3:seq,1:7#}24:2:id,6:1-9-30,3:seq,1:3#}]4:type,10:keep-alive,}";
    let p: Packet = format::decode(frame).unwrap();
    assert_eq!(
        p.id,
        Some(Ids::Many(vec![
            IdSeq {
                id: "0-5-2f".into(),
                seq: Some(7)
            },
            IdSeq {
                id: "1-9-30".into(),
                seq: Some(3)
            },
        ]))
    );
    assert_eq!(p.kind(), &PacketType::KeepAlive);
}

#[test]
fn unknown_keys_and_types_are_tolerated() {
    let frame = b"T42:2:id,1:a,4:type,7:mystery,7:novelty,3:yes,}";
    let p: Packet = format::decode(frame).unwrap();
    assert_eq!(p.kind(), &PacketType::Unknown("mystery".into()));
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..8), inner), 0..8)
                .prop_map(Value::Map),
        ]
    })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        "[a-z_0-9]{1,16}",
        "[0-9a-f-]{1,24}",
        any::<u32>(),
        prop_oneof![
            Just(PacketType::Data),
            Just(PacketType::Credit),
            Just(PacketType::Cancel),
            Just(PacketType::KeepAlive),
            Just(PacketType::Close),
        ],
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(
            (
                "[A-Za-z-]{1,12}",
                proptest::collection::vec(any::<u8>(), 0..16),
            ),
            0..6,
        )),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        proptest::option::of(100u16..600),
        proptest::option::of(arb_value().prop_filter("null means absent", |v| *v != Value::Null)),
    )
        .prop_map(
            |(from, id, seq, kind, credits, more, headers, body, code, user_data)| Packet {
                from: Some(from),
                id: Some(Ids::One(id)),
                seq: Some(seq),
                kind,
                credits,
                more,
                headers: headers.map(|hs| {
                    hs.into_iter()
                        .map(|(n, v)| Header(n, Bytes::from(v)))
                        .collect()
                }),
                body: body.map(Bytes::from),
                code,
                user_data,
                ..Packet::default()
            },
        )
}

proptest! {
    #[test]
    fn tnetstring_value_roundtrip(v in arb_value()) {
        let bytes = tnetstring::to_vec(&v);
        prop_assert_eq!(tnetstring::parse_complete(&bytes), Ok(v.clone()));
        // Any strict prefix asks for more or is an error, never a wrong value.
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                prop_assert!(!matches!(tnetstring::parse(&bytes[..cut]), Ok(Some(_))));
            }
        }
    }

    #[test]
    fn packet_roundtrip_both_formats(p in arb_packet()) {
        for fmt in [Format::TNetString, Format::MessagePack] {
            let bytes = format::encode(&p, fmt).unwrap();
            let back: Packet = format::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &p);
        }
    }
}
