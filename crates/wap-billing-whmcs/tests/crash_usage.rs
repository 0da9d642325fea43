//! Crash test of usage into WHMCS: the adapter with `WhmcsBilling` (`wap-billing-whmcs-crash-harness --usage`:
//! events and usage, usage lines through the engine's intent journal, SQLite state) syncs wap-sim's small catalogue
//! and 100,000 usage records into the WHMCS double — whose `AddBillableItem` appends on every call — and is
//! killed with SIGKILL 21 times and restarted each time.
//!
//! Kill points: every third run is armed with the named fail point `WAP_BILLING_FAIL_POINT=after_billing_call@N`
//! and killed **there**, after WHMCS committed a batch's lines and before the engine's commit; the test checks
//! that each such kill landed inside that window (the state holds the open intent, WHMCS holds each of its lines
//! once) and counts it. After every other such kill WHMCS's daily cron runs during the outage (the lines are
//! invoiced: the restart reconciles the intent as applied by itself); after the rest it does not (the restart
//! halts in doubt). The other runs are killed as WHMCS receives the lines of a batch past a random usage
//! `EventId` (mostly in the middle of the batch: the restart halts in doubt).
//!
//! An in-doubt halt is resolved the documented operator way (README, "Usage in doubt"): look in WHMCS's Billing →
//! Billable Items for the intent's marker; every line there → `applied`; none → `send_again`; some → delete those
//! (uninvoiced) items, then `send_again`. Each resolution is counted. At the end: every usage line is in WHMCS
//! exactly once (0 lost, 0 duplicated: each marker once, every batch complete, batch ranges disjoint, totals per
//! subscription and meter equal to the simulator's records), the engine committed every usage id once and left no
//! intent open. `WAP_BILLING_CRASH_SEED` picks another seed.

#![cfg(unix)]

mod common;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::{assert_usage_billed_once, prepared_for_dataset, IDENTIFIER, SECRET};
use wap_billing_engine::{HaltReason, InDoubtResolution, Operator, ProcessorKind, SqliteStore, StateStore};
use wap_billing_whmcs::double::WhmcsDouble;
use wap_billing_whmcs::parse_usage_marker;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::FeedKind;

const RECORDS: u64 = 100_000;
const KILLS: usize = 21;
const BATCH: &str = "1000";
/// At least this many kills must land between WHMCS's commit of a batch and the engine's.
const MIN_WINDOW_HITS: usize = 5;
/// The most one run may take to reach its kill point, and the final run to catch up.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

struct Harness<'a> {
    sim: &'a WapSim,
    double: &'a WhmcsDouble,
    state: std::path::PathBuf,
    log: std::path::PathBuf,
}

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Harness<'_> {
    fn spawn(&self, exit_when_caught_up: bool, fail_point: Option<u64>) -> Run {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("harness log");
        let creds = self.sim.credentials();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wap-billing-whmcs-crash-harness"));
        cmd.args(["--url", self.sim.usage_service_url().as_str(), "--user", &creds.username])
            .args(["--state", self.state.to_str().unwrap(), "--whmcs", &self.double.url()])
            .args(["--identifier", IDENTIFIER, "--usage", "--batch", BATCH])
            .env("WAP_PASSWORD", creds.password.expose())
            .env("WHMCS_SECRET", SECRET)
            .env_remove("WAP_BILLING_FAIL_POINT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (i, plan) in self.sim.plans().iter().enumerate() {
            cmd.args(["--plan", &format!("{}={}", plan.id, 1 + i)]);
        }
        for (i, addon) in self.sim.add_ons().iter().enumerate() {
            cmd.args(["--addon", &format!("{}={}", addon.id, 5 + i)]);
        }
        if exit_when_caught_up {
            cmd.arg("--exit-when-caught-up");
        }
        if let Some(n) = fail_point {
            cmd.env("WAP_BILLING_FAIL_POINT", format!("after_billing_call@{n}"));
        }
        let mut child = cmd.spawn().expect("start the harness");
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
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    async fn in_doubt(&self) -> bool {
        let store = SqliteStore::open(&self.state).await.unwrap();
        store.halt(ProcessorKind::Usage).await.unwrap().is_some_and(|h| h.reason == HaltReason::InDoubt)
    }

    /// The operator's way out of an in-doubt halt (the harness is not running). Returns the resolution.
    async fn resolve(&self) -> InDoubtResolution {
        let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&self.state).await.unwrap());
        let operator = Operator::new(store);
        let intent = operator.intent(ProcessorKind::Usage).await.unwrap().expect("an in-doubt halt has its intent");
        // Billing → Billable Items, searched for the marker.
        let mine: Vec<_> = self
            .double
            .billable_items()
            .into_iter()
            .filter(|b| parse_usage_marker(&b.description).is_some_and(|(t, ..)| t == intent.token))
            .collect();
        let lines = mine.first().and_then(|b| parse_usage_marker(&b.description)).map(|(_, _, n)| n);
        let resolution = match lines {
            Some(n) if mine.len() == n => InDoubtResolution::Applied,
            None => InDoubtResolution::SendAgain,
            Some(_) => {
                for b in &mine {
                    assert!(self.double.delete_billable_item(b.id), "the partial line {b:?} is uninvoiced");
                }
                InDoubtResolution::SendAgain
            }
        };
        operator.resolve_in_doubt(ProcessorKind::Usage, resolution, "crash-test", "checked WHMCS").await.unwrap();
        resolution
    }
}

fn fail_point_range(line: &str) -> Option<(i64, i64)> {
    let range = line.strip_prefix("FAIL POINT after_billing_call ")?;
    let (a, b) = range.split_once("..=")?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The last usage `EventId` of the batch WHMCS's newest billable item belongs to (0 before any).
fn progress(double: &WhmcsDouble) -> i64 {
    double
        .with_state(|s| {
            let last = s.billable_items.values().next_back()?;
            let (token, ..) = parse_usage_marker(&last.description)?;
            token.rsplit('-').next()?.parse().ok()
        })
        .unwrap_or(0)
}

fn kill(run: &mut Run) {
    run.child.kill().expect("SIGKILL"); // std's Child::kill sends SIGKILL on Unix
    let status = run.child.wait().unwrap();
    assert!(!status.success(), "killed, not finished: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_while_billing_usage_whmcs_holds_every_line_once() {
    let seed: u64 = std::env::var("WAP_BILLING_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1313);
    println!("crash seed: {seed} (set WAP_BILLING_CRASH_SEED to reproduce another run)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let sim = WapSim::builder().seed(seed).dataset(DatasetSpec::with_usage_records(RECORDS)).start().await.unwrap();
    let double = prepared_for_dataset().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let harness =
        Harness { sim: &sim, double: &double, state: dir.path().join("state.db"), log: dir.path().join("harness.log") };
    let last_id = *sim.usage_ids().last().unwrap();

    let mut window_hits = Vec::new();
    let mut crons = 0;
    let mut resolutions = Vec::new();
    let mut kill_points = Vec::new();
    let mut run_no = 0;
    while kill_points.len() < KILLS {
        run_no += 1;
        let before = progress(&double);
        let armed = kill_points.len() % 3 == 2;
        let fail_point = armed.then(|| rng.u64(1..=3));
        let mut run = harness.spawn(false, fail_point);
        let spawned = Instant::now();
        let mut parked = None;
        // An EventId ahead of the current position, leaving room for the remaining runs.
        let remaining = (last_id - before).max(1);
        let step = (remaining * 2 / (KILLS - kill_points.len()) as i64).clamp(1, remaining);
        let target = (before + 1 + rng.i64(0..step)).min(last_id - 2_500);
        // Runs until its kill point, or until it halts in doubt (then the operator steps in).
        let halted = loop {
            if let Some(n) = fail_point {
                if let Some(range) = run.lines.try_iter().find_map(|l| fail_point_range(&l)) {
                    parked = Some((n, range));
                    break false;
                }
            } else if progress(&double) >= target {
                break false;
            }
            if harness.in_doubt().await {
                break true;
            }
            if let Some(status) = run.child.try_wait().unwrap() {
                panic!("run {run_no} exited by itself ({status}):\n{}", harness.log_text());
            }
            assert!(spawned.elapsed() < PHASE_LIMIT, "run {run_no} made no progress:\n{}", harness.log_text());
            tokio::time::sleep(Duration::from_millis(3)).await;
        };
        kill(&mut run);
        if halted {
            let resolution = harness.resolve().await;
            resolutions.push(resolution);
            continue;
        }
        let after = progress(&double);
        if let Some((n, (a, b))) = parked {
            // In the window: the intent is open and uncommitted, and WHMCS holds each of its lines once.
            let store = SqliteStore::open(&harness.state).await.unwrap();
            let intent = store.intent(ProcessorKind::Usage).await.unwrap().expect("the parked call's intent");
            assert_eq!((intent.first_event_id, intent.last_event_id), (a, b), "run {run_no}");
            assert!(store.processed(FeedKind::Usage, a, b).await.unwrap().is_empty(), "run {run_no}: uncommitted");
            let mine: Vec<_> = double
                .billable_items()
                .into_iter()
                .filter_map(|i| parse_usage_marker(&i.description).map(|(t, k, n)| (t.to_owned(), k, n)))
                .filter(|(t, ..)| *t == intent.token)
                .collect();
            let lines = mine.first().map(|m| m.2).expect("the parked batch's lines are in WHMCS");
            let mut ks: Vec<usize> = mine.iter().map(|m| m.1).collect();
            ks.sort_unstable();
            assert_eq!(ks, (1..=lines).collect::<Vec<_>>(), "run {run_no}: each line of {} once", intent.token);
            window_hits.push(intent.token.clone());
            if window_hits.len() % 2 == 1 {
                double.run_cron();
                crons += 1;
            }
            kill_points.push(format!("run {run_no}: fail point @{n}, parked in {a}..={b} ({lines} lines)"));
        } else {
            kill_points.push(format!("run {run_no}: billing usage id >= {target} ({before} -> {after})"));
        }
    }
    println!("{}", kill_points.join("\n"));
    assert!(window_hits.len() >= MIN_WINDOW_HITS, "only {} kills landed in the window", window_hits.len());
    assert!(progress(&double) < last_id, "the kills left work for the final run");

    // The final run catches up (an in-doubt halt on the way is resolved like the others).
    let mut finals = 0;
    loop {
        finals += 1;
        assert!(finals <= 4, "the final run kept halting");
        let mut run = harness.spawn(true, None);
        let spawned = Instant::now();
        let status = loop {
            if let Some(status) = run.child.try_wait().unwrap() {
                break status;
            }
            assert!(spawned.elapsed() < PHASE_LIMIT, "the final run did not catch up:\n{}", harness.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if status.success() {
            break;
        }
        assert!(harness.in_doubt().await, "the final run failed ({status}):\n{}", harness.log_text());
        resolutions.push(harness.resolve().await);
    }

    let lines = assert_usage_billed_once(&double, &sim.usage_records());
    let store = SqliteStore::open(&harness.state).await.unwrap();
    assert_eq!(store.intent(ProcessorKind::Usage).await.unwrap(), None, "no intent left open");
    let rows = store.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    for id in sim.usage_ids() {
        assert_eq!(rows.iter().filter(|r| r.covers(id)).count(), 1, "usage {id} committed exactly once");
    }
    let count = |r: InDoubtResolution| resolutions.iter().filter(|x| **x == r).count();
    println!(
        "{} SIGKILLs ({} in the window, {crons} followed by WHMCS's cron); in-doubt halts resolved by the operator: \
         {} (applied {}, send again {}); {lines} usage lines, {} AddBillableItem calls, {} WHMCS calls; {:?}",
        kill_points.len(),
        window_hits.len(),
        resolutions.len(),
        count(InDoubtResolution::Applied),
        count(InDoubtResolution::SendAgain),
        double.call_count("AddBillableItem"),
        double.calls().len(),
        started.elapsed()
    );
    sim.shutdown().await;
}
