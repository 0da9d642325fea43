//! A bounded, property-based fuzz of the same entry points as the cargo-fuzz targets in `fuzz/` (see
//! `docs/fuzzing.md`), so every `cargo test` runs them: the spec fixtures as seeds, mutated (bytes flipped,
//! inserted, deleted, truncated, spliced), plus arbitrary bytes. `PROPTEST_CASES` raises the count.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;

/// 512 per property, or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
}

fn fixtures() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec/fixtures")];
        while let Some(dir) = dirs.pop() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|e| e == "json") {
                    out.push(std::fs::read(&p).unwrap());
                }
            }
        }
        assert!(out.len() >= 40, "the fixtures are the seeds ({} found)", out.len());
        out
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop::sample::select(vec![
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\"\"".to_vec(),
        b"-1".to_vec(),
        b"9223372036854775807".to_vec(),
        b"1e400".to_vec(),
        b"\"\\ud800\"".to_vec(),
        b"{\"Cpu\":{\"a\":[1]}}".to_vec(),
        b"\"-00:00\"".to_vec(),
        b",".to_vec(),
        b"\xef\xbb\xbf".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), prop_oneof![token, prop::collection::vec(any::<u8>(), 1..8)])
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
    ]
}

fn apply(seed: &[u8], other: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in mutations {
        let len = v.len().max(1);
        match m {
            Mutation::Flip(i, b) if !v.is_empty() => {
                let i = i % v.len();
                v[i] ^= b | 1;
            }
            Mutation::Insert(i, bytes) => {
                let i = i % (v.len() + 1);
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if !v.is_empty() => {
                let i = i % v.len();
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Mutation::Truncate(i) => v.truncate(i % len),
            Mutation::Splice(at, from, n) if !other.is_empty() => {
                let at = at % (v.len() + 1);
                let from = from % other.len();
                let end = (from + n % 256).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            _ => {}
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn wire_parsers_survive_mutated_fixtures(
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let seeds = fixtures();
        let input = apply(pick.get::<Vec<u8>>(seeds), other.get::<Vec<u8>>(seeds), &mutations);
        harness::wire(&input);
    }

    #[test]
    fn wire_parsers_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        harness::wire(&bytes);
    }
}

/// Approval calls as the responder entry point reads them: byte 0 = POST with the right credentials, the path,
/// no headers, the fixture body.
fn responder_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spec/fixtures/approval");
    let mut seeds = Vec::new();
    for (file, path) in [
        ("create-subscription.json", "subscriptions"),
        ("delete-subscription.json", "subscriptions"),
        ("update-subscription.json", "subscriptions"),
        ("create-subscription-addon.json", "subscriptionAddons"),
        ("delete-subscription-addon.json", "subscriptionAddons"),
    ] {
        let mut seed = vec![0x08u8];
        seed.extend_from_slice(format!("{path}\ncontent-type: application/json\n\n").as_bytes());
        seed.extend_from_slice(&std::fs::read(dir.join(file)).unwrap());
        seeds.push(seed);
    }
    seeds
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (cases() / 4).max(1),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn responder_survives_mutated_approval_calls(
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let seeds = responder_seeds();
        let input = apply(pick.get::<Vec<u8>>(&seeds), other.get::<Vec<u8>>(fixtures()), &mutations);
        let _ = harness::responder(&input);
    }

    #[test]
    fn the_usage_ledger_keeps_its_promises_under_arbitrary_appends_and_polls(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        harness::ledger(&bytes);
    }

    #[test]
    fn responder_survives_arbitrary_requests(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = harness::responder(&bytes);
    }
}

/// Requests to the RP server's usage endpoint and the admin endpoint as their entry points read them (see
/// `harness::request_from`): byte 0 = method (0 POST, 1 GET) + 8 for the right credentials, the path, headers, body.
fn server_seeds(which: &str) -> Vec<Vec<u8>> {
    let seeds: &[(u8, &str, &str)] = match which {
        "rp" => &[
            (0x09, "usage-base/usage?lastID=0&batchSize=10", ""),
            (0x09, "usage-base/usage?lastID=5&batchSize=1", ""),
            (0x01, "usage-base/usage?lastID=0&batchSize=10", ""),
            (0x08, "usage-base/usage", "{}"),
        ],
        _ => &[
            (0x01, "health", ""),
            (0x01, "status", ""),
            (0x01, "metrics", ""),
            (0x09, "operator/audit?limit=5", ""),
            (0x08, "operator/usage/resume", r#"{"actor":"ana"}"#),
            (0x08, "operator/usage/skip", r#"{"event_id":1,"reason":"x","actor":"ana"}"#),
            (0x08, "operator/notification/skip", r#"{"event_id":1,"feed":"plans","reason":"x"}"#),
            (0x08, "operator/usage/resolve", r#"{"resolution":"applied","reason":"x"}"#),
        ],
    };
    seeds
        .iter()
        .map(|(control, path, body)| {
            let mut seed = vec![*control];
            seed.extend_from_slice(format!("{path}\ncontent-type: application/json\n\n{body}").as_bytes());
            seed
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: (cases() / 4).max(1),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn rp_server_survives_mutated_requests(
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let seeds = server_seeds("rp");
        let input = apply(pick.get::<Vec<u8>>(&seeds), other.get::<Vec<u8>>(fixtures()), &mutations);
        let _ = harness::rp_server(&input);
    }

    #[test]
    fn admin_endpoint_survives_mutated_requests(
        pick in any::<prop::sample::Index>(),
        other in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let seeds = server_seeds("admin");
        let input = apply(pick.get::<Vec<u8>>(&seeds), other.get::<Vec<u8>>(fixtures()), &mutations);
        let _ = harness::admin(&input);
    }
}

#[test]
fn the_server_seeds_reach_their_handlers() {
    let rp: Vec<Option<u16>> = server_seeds("rp").iter().map(|s| harness::rp_server(s)).collect();
    assert_eq!(rp, vec![Some(200), Some(200), Some(401), Some(405)], "usage served, credentials checked");
    let admin: Vec<Option<u16>> = server_seeds("admin").iter().map(|s| harness::admin(s)).collect();
    // `/metrics` is 404 unless the engine's `metrics` feature is on in this build.
    assert_eq!((admin[0], admin[1], admin[3]), (Some(200), Some(200), Some(200)), "{admin:?}");
    assert!(matches!(admin[2], Some(200 | 404)), "{admin:?}");
    assert!(admin[4..].iter().all(|s| *s == Some(409) || *s == Some(400)), "operator commands answered: {admin:?}");
}

#[test]
fn the_responder_denies_every_unmutated_create_and_delete() {
    // create-subscription, delete-subscription, (update), create-addon, delete-addon: each asks the approver.
    let statuses: Vec<Option<u16>> = responder_seeds().iter().map(|s| harness::responder(s)).collect();
    for i in [0, 1, 3, 4] {
        assert_eq!(statuses[i], Some(403), "seed {i}: {statuses:?}");
    }
}

#[test]
fn the_ledger_entry_point_serves_and_acknowledges() {
    // append, append, poll (lastID 0, batch 5), poll acknowledging what was served, append, poll.
    harness::ledger(&[0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 5, 1, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 5]);
}

#[test]
fn every_fixture_passes_the_harness_unchanged() {
    for seed in fixtures() {
        harness::wire(seed);
    }
}
