//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing`).
//! Each must never panic, whatever the bytes.

#![allow(clippy::expect_used)] // a fuzz target reports a bug by panicking

use crate::zhttp::Packet;
use crate::{format, msgpack, tnetstring, value};

/// Arbitrary bytes through the TNetString parser; what parses must re-encode
/// to bytes that parse to the same value.
pub fn tnetstring_raw(data: &[u8]) {
    if let Ok(Some((v, _))) = tnetstring::parse(data) {
        let again = tnetstring::parse_complete(&tnetstring::to_vec(&v));
        assert!(matches!(again, Ok(ref w) if values_equal(w, &v)));
    }
}

/// Arbitrary bytes through the MessagePack decoder into the packet model.
pub fn msgpack_raw(data: &[u8]) {
    let _ = msgpack::from_slice::<Packet>(data);
    let _ = msgpack::from_slice::<value::Value>(data);
}

/// Arbitrary tagged frames into the packet model; what decodes must encode
/// in both formats and decode back equal.
pub fn zhttp_packet(data: &[u8]) {
    if let Ok(packet) = format::decode::<Packet>(data) {
        for fmt in [format::Format::TNetString, format::Format::MessagePack] {
            let bytes = format::encode(&packet, fmt).expect("a decoded packet encodes");
            let back: Packet = format::decode(&bytes).expect("an encoded packet decodes");
            assert_eq!(back, packet);
        }
    }
}

/// NaN is the one value that is not equal to itself.
fn values_equal(a: &value::Value, b: &value::Value) -> bool {
    use value::Value::*;
    match (a, b) {
        (Float(x), Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (List(x), List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Map(x), Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && values_equal(va, vb))
        }
        _ => a == b,
    }
}

/// Arbitrary bytes as an HTTP publish body and as a TNetString item: an
/// error or items, never a panic.
pub fn publish_items(data: &[u8]) {
    let _ = crate::publish::parse_items_json(data);
    let _ = crate::publish::parse_item_tnetstring(data);
}

/// WebSocket-over-HTTP event bodies: parse never panics, and what parses
/// encodes back to something that parses the same.
pub fn websocket_events(data: &[u8]) {
    if let Ok(events) = crate::wsevents::parse(data) {
        let again = crate::wsevents::parse(&crate::wsevents::encode(&events));
        assert_eq!(again.as_ref(), Ok(&events));
    }
}

/// Arbitrary tagged frames as the messages Holdfast's own processes send
/// each other (hand-overs, WebSocket control and deliveries, inspect
/// requests and answers): what decodes must encode and decode back equal.
pub fn internal_frames(data: &[u8]) {
    fn roundtrip<T>(data: &[u8])
    where
        T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        if let Ok(decoded) = format::decode::<T>(data) {
            for fmt in [format::Format::TNetString, format::Format::MessagePack] {
                let bytes = format::encode(&decoded, fmt).expect("a decoded frame encodes");
                let back: T = format::decode(&bytes).expect("an encoded frame decodes");
                assert_eq!(back, decoded);
            }
        }
    }
    roundtrip::<crate::handoff::Accept>(data);
    roundtrip::<crate::wscontrol::Control>(data);
    roundtrip::<crate::wscontrol::Deliver>(data);
    roundtrip::<crate::inspect::InspectRequest>(data);
    roundtrip::<crate::inspect::InspectReply>(data);
}
