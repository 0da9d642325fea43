//! The RP usage ledger under an arbitrary sequence of appends and `/usage` polls (arbitrary `lastID` and
//! `batchSize`): nothing deleted unserved, ids increasing, nothing served under two ids. See `docs/fuzzing.md`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::ledger(data));
