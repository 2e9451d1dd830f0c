#![no_main]
//! Shim: see holdfast_protocol::fuzzing::publish_items.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::publish_items(data));
