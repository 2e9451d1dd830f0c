#![no_main]
//! Shim: see holdfast_connmgr::fuzzing::websocket_deflate.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_connmgr::fuzzing::websocket_deflate(data));
