#![no_main]
//! Shim: see holdfast_connmgr::fuzzing::http1_request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| holdfast_connmgr::fuzzing::http1_request(data));
