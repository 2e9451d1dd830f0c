#![no_main]
//! Shim: see holdfast_protocol::fuzzing::internal_frames.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::internal_frames(data));
