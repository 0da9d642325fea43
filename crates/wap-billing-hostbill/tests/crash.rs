//! Crash test: the adapter with `HostBillBilling` (`wap-billing-hostbill-crash-harness`) is killed with SIGKILL at
//! 22 points while it syncs subscription lifecycles and usage into the HostBill double, and restarted each time.
//! The double's `addClient`, `addOrder`, `addAddonToAccount` and `meteredAddUsageBulk` are not idempotent.
//!
//! Kill points: every third run is armed with the engine's fail point `WAP_BILLING_FAIL_POINT=after_billing_call@N`
//! and killed **inside the window** between a usage call HostBill committed and the engine's commit (the test checks
//! that the state holds the open intent and HostBill its lines, and counts it); the others are killed after a
//! number of new HostBill calls, which lands anywhere (often in the middle of a usage batch's calls: a partly
//! applied batch, counted). Afterwards HostBill must hold one client per account, one account per subscription
//! in its final state, one add-on per purchase, and every usage line exactly once: per subscription and meter
//! the quantities equal WAP's records, no marker twice, every batch complete.
//!
//! Size: 200 subscriptions and 20,000 usage records by default (CI); `HOSTBILL_CRASH_FULL=1` runs the issue's
//! 1,000 subscription lifecycles and 100,000 usage records:
//! `HOSTBILL_CRASH_FULL=1 cargo test -p wap-billing-hostbill --test crash -- --nocapture`.

#![cfg(unix)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{prepared, API_ID, API_KEY};
use wap_billing_engine::{ProcessorKind, SqliteStore, StateStore};
use wap_billing_hostbill::double::HostBillDouble;
use wap_sim::{CreateSubscription, DatasetSpec, SubscriptionUpdate, WapSim};
use wap_types::testing::UsageRecordBuilder;
use wap_types::AdminSubscriptionState;

const KILLS: usize = 22;
const MIN_WINDOW_HITS: usize = 5;
/// New HostBill calls between a (re)start and an unarmed kill.
const CALLS_PER_RUN: usize = 120;
const ACCOUNTS: usize = 40;
/// Subscriptions that get usage.
const USAGE_SUBSCRIPTIONS: usize = 40;

struct Run {
    child: Child,
    lines: mpsc::Receiver<String>,
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    sim: &WapSim,
    double: &HostBillDouble,
    state: &std::path::Path,
    plans: &[String],
    addon: &str,
    exit: bool,
    fail_point: Option<usize>,
) -> Run {
    let creds = sim.credentials();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wap-billing-hostbill-crash-harness"));
    cmd.args(["--url", sim.usage_service_url().as_str(), "--user", &creds.username])
        .args(["--state", state.to_str().unwrap(), "--hostbill", &double.url(), "--api-id", API_ID])
        .args(["--plan", &format!("{}=10", plans[0]), "--plan", &format!("{}=11", plans[1])])
        .args(["--addon", &format!("{addon}=20"), "--batch", "500"])
        .env("WAP_PASSWORD", creds.password.expose())
        .env("HOSTBILL_API_KEY", API_KEY)
        .env_remove("WAP_BILLING_FAIL_POINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(n) = fail_point {
        cmd.env("WAP_BILLING_FAIL_POINT", format!("after_billing_call@{n}"));
    }
    if exit {
        cmd.arg("--exit-when-caught-up");
    }
    let mut child = cmd.spawn().expect("start the harness");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Run { child, lines }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "known bug: a CI run found 40 usage lines billed twice (5,304 lines, 5,264 markers); see the HostBill section of CHANGELOG/issue 14"]
async fn sigkill_at_twenty_two_points_leaves_no_duplicate_and_loses_nothing() {
    let full = std::env::var_os("HOSTBILL_CRASH_FULL").is_some();
    let (subscriptions, records) = if full { (1_000, 100_000) } else { (200, 20_000) };
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let sim = WapSim::builder().seed(9).dataset(spec).start().await.unwrap();
    let plans: Vec<String> = sim.plans().iter().map(|p| p.id.clone()).collect();
    let addon = sim.add_ons()[0].id.clone();
    let double = prepared().per_page(100).start().await.unwrap();

    // The tenants' actions, all on the feeds before the adapter first runs; the expected final HostBill state.
    let mut expected: BTreeMap<String, (String, &str, bool)> = BTreeMap::new();
    let state = |s| SubscriptionUpdate { state: Some(s), ..Default::default() };
    let mut subs = Vec::new();
    for i in 0..subscriptions {
        let sub = format!("00000000-0000-4000-8000-{i:012}");
        let email = format!("tenant{}@example.com", i % ACCOUNTS);
        let create =
            CreateSubscription { subscription_id: Some(sub.clone()), ..CreateSubscription::new(&email, &plans[i % 2]) };
        assert!(sim.create_subscription(create).await.is_approved());
        assert!(sim.add_subscription_addon(&sub, &addon).await.is_approved());
        let mut status = "Active";
        if i % 3 == 0 {
            assert!(sim.update_subscription(&sub, state(AdminSubscriptionState::Suspended)).await.is_approved());
            status = "Suspended";
            if i % 6 == 0 {
                assert!(sim.update_subscription(&sub, state(AdminSubscriptionState::Active)).await.is_approved());
                status = "Active";
            }
        }
        let mut live_addon = true;
        if i % 5 == 0 && i >= USAGE_SUBSCRIPTIONS {
            assert!(sim.delete_subscription(&sub).await.is_approved());
            (status, live_addon) = ("Terminated", false);
        }
        expected.insert(sub.clone(), (email, status, live_addon));
        subs.push(sub);
    }
    // Usage of the first subscriptions (whole numbers: sums compare exactly).
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut batch = Vec::new();
    for i in 0..records {
        let sub = &subs[i % USAGE_SUBSCRIPTIONS];
        let (dbs, space) = (1 + i % 5, 10 * (1 + i % 3));
        let r = UsageRecordBuilder::new(1 + i as i64, sub)
            .resource(&format!("db{}", i % 2))
            .meter("DatabaseCount", &dbs.to_string())
            .meter("TotalAllottedSpace", &space.to_string())
            .build();
        *want.entry((sub.clone(), "databasecount".into())).or_default() += dbs as f64;
        *want.entry((sub.clone(), "totalallottedspace".into())).or_default() += space as f64;
        batch.push(r);
        if batch.len() == 10_000 {
            sim.append_usage(std::mem::take(&mut batch));
        }
    }
    sim.append_usage(batch);

    let dir = tempfile::tempdir().unwrap();
    let state_db = dir.path().join("state.db");
    let started = Instant::now();
    let (mut kills, mut window_hits, mut partial_seen) = (0, 0, 0);
    let mut run_no = 0;
    while kills < KILLS {
        run_no += 1;
        let from = double.total_calls();
        let usage_from = double.usage().len();
        let armed = (run_no % 3 == 0).then_some(1 + run_no % 4);
        // Every third run is killed a few usage lines after it started sending: usually inside a batch's calls.
        let mid_usage = (run_no % 3 == 1).then_some(3 + (run_no * 7) % 40);
        let mut last_growth = (usage_from, Instant::now());
        let mut run = spawn(&sim, &double, &state_db, &plans, &addon, false, armed);
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut parked = None;
        loop {
            assert!(Instant::now() < deadline, "run {run_no} made no progress");
            assert!(run.child.try_wait().unwrap().is_none(), "the harness exited on its own");
            if armed.is_some() {
                if let Ok(line) = run.lines.try_recv() {
                    if let Some(range) = line.strip_prefix("FAIL POINT after_billing_call ") {
                        parked = Some(range.to_owned());
                        break;
                    }
                }
            } else if let Some(lines) = mid_usage {
                let now = double.usage().len();
                if now >= usage_from + lines {
                    break;
                }
                if now != last_growth.0 {
                    last_growth = (now, Instant::now());
                } else if last_growth.1.elapsed() > Duration::from_secs(5)
                    && double.total_calls() >= from + CALLS_PER_RUN
                {
                    break; // no usage left to send
                }
            } else if double.total_calls() >= from + CALLS_PER_RUN {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        run.child.kill().unwrap(); // SIGKILL
        run.child.wait().unwrap();
        kills += 1;
        if let Some(range) = parked {
            // Inside the window: HostBill holds the lines, the engine's state the open intent.
            let store = SqliteStore::open(&state_db).await.unwrap();
            let intent = store.intent(ProcessorKind::Usage).await.unwrap().expect("the intent is open");
            assert_eq!(format!("{}..={}", intent.first_event_id, intent.last_event_id), range);
            let prefix = format!("{}#", intent.token);
            assert!(double.usage().iter().any(|u| u.rawoutput.starts_with(&prefix)), "HostBill holds {range}");
            window_hits += 1;
        }
        partial_seen += partial_batches(&double);
    }
    let mut last = spawn(&sim, &double, &state_db, &plans, &addon, true, None);
    let status = tokio::task::spawn_blocking(move || last.child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the last run ends caught up: {status:?}");
    println!(
        "{kills} SIGKILLs ({window_hits} inside the call→commit window; partly applied batches seen right after a \
         kill: {partial_seen}) in {:?}; {subscriptions} subscriptions, {records} usage records, {} HostBill calls",
        started.elapsed(),
        double.total_calls()
    );
    assert!(window_hits >= MIN_WINDOW_HITS, "{window_hits} kills landed in the window");

    // One client per account.
    let clients = double.clients();
    let mut by_email: BTreeMap<String, usize> = BTreeMap::new();
    for c in &clients {
        *by_email.entry(c.email.to_ascii_lowercase()).or_default() += 1;
    }
    assert_eq!(by_email.len(), ACCOUNTS);
    assert!(by_email.values().all(|n| *n == 1), "duplicate clients: {by_email:?}");

    // One account per subscription, on the right client, in its final state; one add-on per purchase.
    let accounts = double.accounts();
    assert_eq!(accounts.len(), subscriptions, "no duplicate and no missing account");
    let email_of: BTreeMap<u64, String> = clients.iter().map(|c| (c.id, c.email.clone())).collect();
    let addons = double.account_addons();
    for a in &accounts {
        let (email, status, live_addon) = expected.get(&a.domain).unwrap_or_else(|| panic!("unexpected account {a:?}"));
        assert_eq!(&email_of[&a.client_id], email, "{a:?}");
        assert_eq!(a.status, *status, "{a:?}");
        let mine: Vec<_> = addons.iter().filter(|x| x.account_id == a.id).collect();
        if *live_addon {
            assert_eq!(mine.len(), 1, "{a:?}: {mine:?}");
            assert_eq!((mine[0].addon_id, mine[0].status.as_str()), (20, "Active"), "{a:?}");
        } else {
            assert!(mine.len() <= 1 && mine.iter().all(|x| x.status == "Terminated"), "{a:?}: {mine:?}");
        }
    }
    let domains: BTreeSet<&str> = accounts.iter().map(|a| a.domain.as_str()).collect();
    assert_eq!(domains.len(), subscriptions);

    // Every usage line exactly once.
    let usage = double.usage();
    let markers: BTreeSet<&str> = usage.iter().map(|u| u.rawoutput.as_str()).collect();
    assert_eq!(markers.len(), usage.len(), "a usage line is in HostBill twice");
    assert_eq!(partial_batches(&double), 0, "every batch complete");
    let domain_of: BTreeMap<u64, String> = accounts.iter().map(|a| (a.id, a.domain.clone())).collect();
    let mut got: BTreeMap<(String, String), f64> = BTreeMap::new();
    for u in &usage {
        *got.entry((domain_of[&u.account_id].clone(), u.variable.clone())).or_default() += u.qty;
    }
    assert_eq!(got, want, "per subscription and meter, HostBill holds exactly WAP's usage");
}

/// Batches (intent tokens) of which HostBill holds some lines but not all.
fn partial_batches(double: &HostBillDouble) -> usize {
    let mut seen: BTreeMap<String, (usize, BTreeSet<usize>)> = BTreeMap::new();
    for u in double.usage() {
        let Some((token, rest)) = u.rawoutput.split_once('#') else { continue };
        let Some((i, n)) = rest.split_once('/') else { continue };
        let (i, n): (usize, usize) = (i.parse().unwrap(), n.parse().unwrap());
        seen.entry(token.to_owned()).or_insert((n, BTreeSet::new())).1.insert(i);
    }
    seen.values().filter(|(n, present)| present.len() < *n).count()
}
