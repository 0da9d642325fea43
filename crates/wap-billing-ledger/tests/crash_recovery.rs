//! Crash recovery into a billing system that cannot deduplicate (issue 11): the adapter
//! (`wap-billing-crash-harness --billing append-only`: adapter + [`AppendOnlyLedger`] on the engine's journaled
//! path, SQLite state) syncs 100,000 usage records and the catalogue events from a wap-sim running in this process,
//! and is killed with SIGKILL 24 times and restarted each time. The ledger appends on every call (a repeat would
//! bill twice) and, every 7th usage call, commits and then answers an error.
//!
//! Kill points: every third run is armed with the named fail point `WAP_BILLING_FAIL_POINT=after_billing_call@N`:
//! it parks its N-th journaled billing call after the ledger committed and before the engine's commit, prints a
//! marker line, and is killed **there**; the test then checks that the kill landed inside that window (the state
//! holds the open intent, the ledger holds its token once) and counts it. Of the other runs, every fourth is killed
//! 0–150 ms after start (start-up, lease steal, event feeds), the rest at a random usage `EventId` ahead of the
//! ledger. At the end: every record and event is in the ledger exactly once (0 lost, 0 duplicated: disjoint call
//! ranges covering every id, one line set per call, totals equal to the simulator's), no intent is left open, every
//! intent a kill left open was reconciled into exactly one commit. `WAP_BILLING_CRASH_SEED` picks another seed.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wap_billing_engine::{ProcessorKind, SqliteStore, StateStore};
use wap_billing_ledger::AppendOnlyLedger;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::FeedKind;

const RECORDS: u64 = 100_000;
const KILLS: usize = 24;
const BATCH: &str = "1000";
/// Every 7th usage call of a run commits and then answers an error.
const FAIL_AFTER_COMMIT_EVERY: &str = "7";
/// At least this many kills must land between a billing call and the engine's commit.
const MIN_WINDOW_HITS: usize = 5;
/// The most one run may take to reach its kill point, and the final run to catch up.
const PHASE_LIMIT: Duration = Duration::from_secs(90);

struct Harness {
    exe: &'static str,
    url: String,
    user: String,
    password: String,
    state: String,
    ledger: String,
    log: std::path::PathBuf,
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Harness {
    fn spawn(&self, run: usize, exit_when_caught_up: bool, fail_point: Option<u64>) -> Run {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("harness log");
        let mut cmd = Command::new(self.exe);
        cmd.args(["--url", &self.url, "--user", &self.user, "--password", &self.password])
            .args(["--state", &self.state, "--ledger", &self.ledger, "--batch", BATCH])
            .args(["--billing", "append-only", "--fail-after-commit-every", FAIL_AFTER_COMMIT_EVERY])
            .env_remove("WAP_BILLING_FAIL_POINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if exit_when_caught_up {
            cmd.arg("--exit-when-caught-up");
        }
        if let Some(n) = fail_point {
            cmd.env("WAP_BILLING_FAIL_POINT", format!("after_billing_call@{n}"));
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {run}: cannot start {}: {e}", self.exe));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run { child, lines }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The highest usage `EventId` the ledger's calls covered (read while the harness writes: WAL readers do not block).
fn ledger_progress(ledger: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(ledger) else { return 0 };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    conn.query_row("SELECT COALESCE(MAX(last_event_id), 0) FROM usage_call", [], |r| r.get(0)).unwrap_or(0)
}

/// Parses `FAIL POINT after_billing_call <first>..=<last>`.
fn fail_point_range(line: &str) -> Option<(i64, i64)> {
    let range = line.strip_prefix("FAIL POINT after_billing_call ")?;
    let (a, b) = range.split_once("..=")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_in_the_window_the_append_only_ledger_still_holds_every_record_once() {
    let seed: u64 = std::env::var("WAP_BILLING_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2024);
    println!("crash-recovery seed: {seed} (set WAP_BILLING_CRASH_SEED to reproduce another run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();

    let sim = WapSim::builder().seed(seed).dataset(DatasetSpec::with_usage_records(RECORDS)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credentials = sim.credentials();
    let harness = Harness {
        exe: env!("CARGO_BIN_EXE_wap-billing-crash-harness"),
        url: sim.usage_service_url().to_string(),
        user: credentials.username.clone(),
        password: credentials.password.expose().to_owned(),
        state: dir.path().join("state.db").to_string_lossy().into_owned(),
        ledger: dir.path().join("ledger.db").to_string_lossy().into_owned(),
        log: dir.path().join("harness.log"),
    };
    let ledger_path = dir.path().join("ledger.db");
    let state_path = dir.path().join("state.db");
    let usage_ids = sim.usage_ids();
    assert_eq!(usage_ids.len() as u64, RECORDS);
    let last_id = *usage_ids.last().unwrap();

    // ---- 24 runs, each killed with SIGKILL ----
    let mut kill_points = Vec::new();
    // Intents a kill left open inside the window: (processor, token, feed, first, last).
    let mut window_hits: Vec<(ProcessorKind, String, FeedKind, i64, i64)> = Vec::new();
    for run in 0..KILLS {
        let before = ledger_progress(&ledger_path);
        let armed = run % 3 == 2;
        let fail_point = armed.then(|| rng.u64(1..=4));
        let mut proc = harness.spawn(run, false, fail_point);
        let spawned = Instant::now();
        let mut parked_at = None;
        let point = if let Some(n) = fail_point {
            loop {
                if let Ok(line) = proc.lines.try_recv() {
                    if let Some(range) = fail_point_range(&line) {
                        parked_at = Some(range);
                        break;
                    }
                }
                if let Some(status) = proc.child.try_wait().unwrap() {
                    panic!("run {run} exited by itself ({status}) before its fail point:\n{}", harness.log_text());
                }
                assert!(
                    spawned.elapsed() < PHASE_LIMIT,
                    "run {run} never reached its fail point:\n{}",
                    harness.log_text()
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let (a, b) = parked_at.unwrap();
            format!("fail point after_billing_call@{n}, parked in {a}..={b}")
        } else if run % 4 == 1 {
            let after = Duration::from_millis(rng.u64(0..=150));
            tokio::time::sleep(after).await;
            format!("{after:?} after start")
        } else {
            // A target ahead of the current position, leaving room for the remaining runs.
            let remaining = (last_id - before).max(1);
            let step = (remaining * 2 / (KILLS - run) as i64).clamp(1, remaining);
            let target = (before + 1 + rng.i64(0..step)).min(last_id - 2_500);
            loop {
                if ledger_progress(&ledger_path) >= target {
                    break;
                }
                if let Some(status) = proc.child.try_wait().unwrap() {
                    panic!("run {run} exited by itself ({status}) before its kill point:\n{}", harness.log_text());
                }
                assert!(
                    spawned.elapsed() < PHASE_LIMIT,
                    "run {run} did not reach id {target}:\n{}",
                    harness.log_text()
                );
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            format!("usage id >= {target}")
        };
        proc.child.kill().expect("SIGKILL"); // std's Child::kill sends SIGKILL on Unix
        let status = proc.child.wait().unwrap();
        assert!(!status.success(), "run {run} was killed, not finished: {status}");
        let after = ledger_progress(&ledger_path);

        // Did the kill land in the window? The engine's state holds the open intent of the parked call, and the
        // billing system holds that call (its token) exactly once: committed there, not in the engine.
        if let Some((a, b)) = parked_at {
            let store = SqliteStore::open(&state_path).await.unwrap();
            let ledger = AppendOnlyLedger::open(&ledger_path).unwrap();
            let mut hit = None;
            for processor in ProcessorKind::ALL {
                if let Some(intent) = store.intent(processor).await.unwrap() {
                    if (intent.first_event_id, intent.last_event_id) == (a, b) {
                        let committed = store.processed(intent.feed, a, b).await.unwrap();
                        assert!(committed.is_empty(), "run {run}: the parked call {a}..={b} was not committed");
                        assert_eq!(ledger.calls_with_token(&intent.token).unwrap(), 1, "run {run}: {intent}");
                        hit = Some((processor, intent.token.clone(), intent.feed, a, b));
                    }
                }
            }
            let hit = hit.unwrap_or_else(|| panic!("run {run}: no open intent for the parked call {a}..={b}"));
            window_hits.push(hit);
        }
        kill_points.push(format!("run {run}: killed at {point} (ledger {before} -> {after})"));
    }
    println!("{}", kill_points.join("\n"));
    println!("{} kills landed between the billing call and the state commit (fail point)", window_hits.len());
    assert!(
        window_hits.len() >= MIN_WINDOW_HITS,
        "only {} kills landed in the window between the billing call and the state commit",
        window_hits.len()
    );
    let progress_before_final = ledger_progress(&ledger_path);
    assert!(progress_before_final > 0, "the killed runs made progress");
    assert!(progress_before_final < last_id, "the final run still had work to do");

    // ---- the final run catches up and exits ----
    let mut proc = harness.spawn(KILLS, true, None);
    let spawned = Instant::now();
    let status = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status;
        }
        if spawned.elapsed() > PHASE_LIMIT {
            let _ = proc.child.kill();
            panic!("the final run did not catch up in {PHASE_LIMIT:?}:\n{}", harness.log_text());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let summary: Vec<String> = proc.lines.try_iter().collect();
    let summary = summary.join("\n");
    assert!(status.success(), "final run failed ({status}): {summary}\n{}", harness.log_text());
    println!("final run: {}", summary.trim());

    // ---- the ledger holds every record and every event exactly once ----
    let ledger = AppendOnlyLedger::open(&ledger_path).unwrap();
    let mut calls = ledger.usage_calls().unwrap();
    let mut tokens: Vec<&str> = calls.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    let before = tokens.len();
    tokens.dedup();
    assert_eq!(tokens.len(), before, "no usage call was appended twice");
    calls.sort_by_key(|c| c.first_event_id);
    for pair in calls.windows(2) {
        assert!(pair[0].last_event_id < pair[1].first_event_id, "usage calls overlap (billed twice): {pair:?}");
    }
    assert_eq!(calls.iter().map(|c| c.records).sum::<u64>(), RECORDS, "0 lost, 0 duplicated: record count");
    let mut next_call = calls.iter().peekable();
    for id in &usage_ids {
        while next_call.peek().is_some_and(|c| c.last_event_id < *id) {
            next_call.next();
        }
        let call = next_call.peek().unwrap_or_else(|| panic!("usage {id} never billed"));
        assert!(call.first_event_id <= *id, "usage {id} never billed");
    }
    for feed in FeedKind::EVENT_FEEDS {
        assert_eq!(ledger.event_ids(feed).unwrap(), sim.event_ids(feed), "every {feed} event once");
    }
    // Totals: a record billed twice would be counted twice here.
    let mut expected: BTreeMap<(String, String, String), (f64, u64)> = BTreeMap::new();
    for r in sim.usage_records() {
        for (meter, value) in r.resources.iter() {
            let Ok(v) = value.trim().parse::<f64>() else { continue };
            let key =
                (r.subscription_id.to_ascii_lowercase(), r.provider_name.clone().unwrap_or_default(), meter.clone());
            let e = expected.entry(key).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    let totals = ledger.line_totals().unwrap();
    assert_eq!(totals.len(), expected.len(), "one total per subscription, provider and meter");
    for t in &totals {
        let (sum, records) = expected[&(t.subscription_id.clone(), t.provider.clone(), t.meter.clone())];
        assert_eq!(t.records, records, "record count of {t:?}");
        assert!((t.quantity - sum).abs() <= 1e-6 * sum.abs().max(1.0), "total of {t:?}: expected {sum}");
    }

    // ---- the engine committed each id exactly once; every open intent was reconciled ----
    let store = SqliteStore::open(&state_path).await.unwrap();
    for processor in ProcessorKind::ALL {
        assert_eq!(store.intent(processor).await.unwrap(), None, "no intent left open for {processor}");
    }
    let rows = store.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    for pair in rows.windows(2) {
        assert!(pair[0].last_event_id < pair[1].event_id, "committed ranges overlap: {pair:?}");
    }
    for id in &usage_ids {
        assert_eq!(rows.iter().filter(|r| r.covers(*id)).count(), 1, "usage {id} committed exactly once");
    }
    for feed in FeedKind::EVENT_FEEDS {
        let ids: Vec<i64> = store.processed(feed, 0, i64::MAX).await.unwrap().iter().map(|r| r.event_id).collect();
        assert_eq!(ids, sim.event_ids(feed), "{feed}: one processed row per event");
    }
    for (processor, token, feed, a, b) in &window_hits {
        let committed = store.processed(*feed, *a, *b).await.unwrap();
        assert!(
            committed.iter().any(|r| r.event_id == *a && r.last_event_id == *b),
            "the {processor} intent {token} left open by a kill was reconciled into its own commit: {committed:?}"
        );
        assert_eq!(ledger.calls_with_token(token).unwrap(), 1, "{token} billed once");
    }
    let lease = store.lease(ProcessorKind::Usage).await.unwrap().unwrap();
    let syncing_runs = (0..KILLS).filter(|run| run % 4 != 1 || run % 3 == 2).count() + 1;
    assert!(lease.generation >= syncing_runs as i64, "usage lease generation {}", lease.generation);
    println!("crash recovery verified in {:?}", started.elapsed());
    sim.shutdown().await;
}
