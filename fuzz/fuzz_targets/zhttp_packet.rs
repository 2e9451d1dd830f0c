#![no_main]
//! Shim: see holdfast_protocol::fuzzing::zhttp_packet.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_protocol::fuzzing::zhttp_packet(data));
