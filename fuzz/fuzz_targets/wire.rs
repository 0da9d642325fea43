//! Every wire parser of `wap-types` (pages of each feed, single events, RP records, dates, methods, Basic headers,
//! cursors), with exact round trips. See `docs/fuzzing.md`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::wire(data));
