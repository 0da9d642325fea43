//! See `harness::rp_server` and `docs/fuzzing.md`: arbitrary requests, no panic, only documented statuses.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::rp_server(data);
});
