#![no_main]
//! Shim: see holdfast_protocol::fuzzing::websocket_events.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::websocket_events(data));
