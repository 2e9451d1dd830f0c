#![no_main]
//! Shim: see holdfast_protocol::fuzzing::websocket_deflate.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::websocket_deflate(data));
