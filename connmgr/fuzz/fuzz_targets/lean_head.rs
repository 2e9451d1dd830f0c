#![no_main]
//! Shim: see holdfast_connmgr::fuzzing::lean_head.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_connmgr::fuzzing::lean_head(data));
