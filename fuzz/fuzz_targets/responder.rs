//! The responder's request handling through its `tower::Service` (arbitrary method, path, headers and body, with
//! or without the right credentials): no panic, a documented status, never an approval the approver denied. See
//! `docs/fuzzing.md`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::responder(data);
});
