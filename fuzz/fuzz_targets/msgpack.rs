#![no_main]
//! Shim: see holdfast_protocol::fuzzing::msgpack_raw.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::msgpack_raw(data));
