//! Crash recovery on the idempotent path: the adapter (`wap-billing-crash-harness`: adapter + reference ledger, SQLite state)
//! syncs 100,000 usage records and the catalogue events from a wap-sim running in this process, and is killed with
//! SIGKILL at 20 seeded random points and restarted each time. At the end the ledger holds every record and every
//! event exactly once, the usage totals equal the sum of the simulator's records, and the engine's state shows
//! each id committed exactly once.
//!
//! Kill points: most are chosen by progress (a random usage `EventId` ahead of what the ledger holds, so the kill
//! lands mid-sync), every fourth one by time (0–150 ms after the start: during start-up, the lease steal or the
//! event feeds). `WAP_BILLING_CRASH_SEED` picks another seed; the seed is printed.

#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wap_billing_engine::{ProcessorKind, SqliteStore, StateStore};
use wap_billing_ledger::SqliteLedger;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::FeedKind;

const RECORDS: u64 = 100_000;
const KILLS: usize = 20;
const BATCH: &str = "1000";
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

impl Harness {
    fn spawn(&self, run: usize, exit_when_caught_up: bool) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("harness log");
        let mut cmd = Command::new(self.exe);
        cmd.args(["--url", &self.url, "--user", &self.user, "--password", &self.password])
            .args(["--state", &self.state, "--ledger", &self.ledger, "--batch", BATCH])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if exit_when_caught_up {
            cmd.arg("--exit-when-caught-up");
        }
        cmd.spawn().unwrap_or_else(|e| panic!("run {run}: cannot start {}: {e}", self.exe))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The highest usage `EventId` the ledger holds (read while the harness writes: WAL readers do not block).
fn ledger_progress(ledger: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open(ledger) else { return 0 };
    let _ = conn.busy_timeout(Duration::from_secs(1));
    conn.query_row("SELECT COALESCE(MAX(event_id), 0) FROM usage_record", [], |r| r.get(0)).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_twenty_times_the_ledger_still_holds_every_record_once() {
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
    let usage_ids = sim.usage_ids();
    assert_eq!(usage_ids.len() as u64, RECORDS);
    let last_id = *usage_ids.last().unwrap();

    // ---- 20 runs, each killed with SIGKILL ----
    let mut kill_points = Vec::new();
    for run in 0..KILLS {
        let before = ledger_progress(&ledger_path);
        let mut child = harness.spawn(run, false);
        let spawned = Instant::now();
        let point = if run % 4 == 1 {
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
                if let Some(status) = child.try_wait().unwrap() {
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
        child.kill().expect("SIGKILL"); // std's Child::kill sends SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(!status.success(), "run {run} was killed, not finished: {status}");
        let after = ledger_progress(&ledger_path);
        kill_points.push(format!("run {run}: killed at {point} (ledger {before} -> {after})"));
    }
    println!("{}", kill_points.join("\n"));
    let progress_before_final = ledger_progress(&ledger_path);
    assert!(progress_before_final > 0, "the killed runs made progress");
    assert!(progress_before_final < last_id, "the final run still had work to do");

    // ---- the final run catches up and exits ----
    let mut child = harness.spawn(KILLS, true);
    let spawned = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if spawned.elapsed() > PHASE_LIMIT {
            let _ = child.kill();
            panic!("the final run did not catch up in {PHASE_LIMIT:?}:\n{}", harness.log_text());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut summary = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut summary);
    }
    assert!(status.success(), "final run failed ({status}): {summary}\n{}", harness.log_text());
    println!("final run: {}", summary.trim());

    // ---- the ledger holds every record and every event exactly once ----
    let ledger = SqliteLedger::open(&ledger_path).await.unwrap();
    assert_eq!(ledger.usage_event_ids().await.unwrap(), usage_ids, "every usage record exactly once");
    for feed in FeedKind::EVENT_FEEDS {
        assert_eq!(ledger.applied_event_ids(feed).await.unwrap(), sim.event_ids(feed), "every {feed} event once");
    }
    let (events_repeated, usage_repeated) = ledger.repeated_deliveries().await.unwrap();
    println!("deliveries the ledger recognised as repeats (crash between its commit and the engine's): {events_repeated} events, {usage_repeated} usage records");
    // Totals: a record applied twice would be counted twice here.
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
    let totals = ledger.usage_totals().await.unwrap();
    assert_eq!(totals.len(), expected.len(), "one total per subscription, provider and meter");
    for t in &totals {
        let (sum, records) = expected[&(t.subscription_id.clone(), t.provider.clone(), t.meter.clone())];
        assert_eq!(t.records, records, "record count of {t:?}");
        assert!((t.quantity - sum).abs() <= 1e-6 * sum.abs().max(1.0), "total of {t:?}: expected {sum}");
    }

    // ---- the engine committed each id exactly once ----
    let store = SqliteStore::open(dir.path().join("state.db")).await.unwrap();
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
    // Every run killed mid-sync and the final one took the usage lease (SingleInstance steals it: a new generation
    // each time); a run killed within its first 150 ms may have died before taking it.
    let lease = store.lease(ProcessorKind::Usage).await.unwrap().unwrap();
    let syncing_runs = (0..KILLS).filter(|run| run % 4 != 1).count() + 1;
    assert!(lease.generation >= syncing_runs as i64, "usage lease generation {}", lease.generation);
    println!("crash recovery verified in {:?}", started.elapsed());
    sim.shutdown().await;
}
