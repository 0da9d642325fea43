//! Crash test: the adapter with `WhmcsBilling` (`wap-billing-whmcs-crash-harness`) is killed with SIGKILL at 20+
//! points while it syncs the lifecycles of 150 subscriptions into the WHMCS double, and restarted each time. The
//! double's creates are not idempotent; afterwards WHMCS must hold exactly one client per account, one service per
//! subscription and one add-on per purchase, each in its final state, and no order left Pending.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{prepared, IDENTIFIER, SECRET};
use wap_billing_whmcs::double::WhmcsDouble;
use wap_sim::{CreateSubscription, DatasetSpec, SubscriptionUpdate, WapSim};
use wap_types::AdminSubscriptionState;

const SUBSCRIPTIONS: usize = 150;
const ACCOUNTS: usize = 40;
const KILLS: usize = 22;
/// New WHMCS calls between a (re)start and the kill.
const CALLS_PER_RUN: usize = 40;

fn spawn(
    sim: &WapSim,
    double: &WhmcsDouble,
    state: &std::path::Path,
    plans: &[String],
    addon: &str,
    exit: bool,
) -> Child {
    let creds = sim.credentials();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wap-billing-whmcs-crash-harness"));
    cmd.args(["--url", sim.usage_service_url().as_str(), "--user", &creds.username])
        .args(["--state", state.to_str().unwrap(), "--whmcs", &double.url(), "--identifier", IDENTIFIER])
        .args(["--plan", &format!("{}=1", plans[0]), "--plan", &format!("{}=2", plans[1])])
        .args(["--addon", &format!("{addon}=5")])
        .env("WAP_PASSWORD", creds.password.expose())
        .env("WHMCS_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if exit {
        cmd.arg("--exit-when-caught-up");
    }
    cmd.spawn().expect("start the harness")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_twenty_points_leaves_no_duplicate_and_loses_nothing() {
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let sim = WapSim::builder().seed(9).dataset(spec).start().await.unwrap();
    let plans: Vec<String> = sim.plans().iter().map(|p| p.id.clone()).collect();
    let addon = sim.add_ons()[0].id.clone();
    let double = prepared().start().await.unwrap();

    // The tenants' actions, all on the feeds before the adapter first runs; the expected final WHMCS state.
    let mut expected: BTreeMap<String, (String, &str, Option<&str>)> = BTreeMap::new();
    let state = |s| SubscriptionUpdate { state: Some(s), ..Default::default() };
    for i in 0..SUBSCRIPTIONS {
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
        // The subscriptions feed is drained before the add-ons feed: a deleted subscription's add-on purchase
        // reaches WHMCS after the service is terminated and is not ordered any more.
        let mut addon_status = Some("Active");
        if i % 5 == 0 {
            assert!(sim.delete_subscription(&sub).await.is_approved());
            (status, addon_status) = ("Terminated", None);
        }
        expected.insert(sub, (email, status, addon_status));
    }

    let dir = tempfile::tempdir().unwrap();
    let state_db = dir.path().join("state.db");
    let started = Instant::now();
    let mut kills = 0;
    let mut pending_seen = 0;
    while kills < KILLS {
        let from = double.calls().len();
        let mut child = spawn(&sim, &double, &state_db, &plans, &addon, false);
        let deadline = Instant::now() + Duration::from_secs(60);
        while double.calls().len() < from + CALLS_PER_RUN {
            assert!(Instant::now() < deadline, "the harness made no progress");
            assert!(child.try_wait().unwrap().is_none(), "the harness exited on its own");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        pending_seen += double.orders().iter().filter(|o| o.status == "Pending").count();
    }
    let mut last = spawn(&sim, &double, &state_db, &plans, &addon, true);
    let status = tokio::task::spawn_blocking(move || last.wait()).await.unwrap().unwrap();
    assert!(status.success(), "the last run ends caught up: {status:?}");
    println!(
        "{kills} SIGKILLs in {:?}; {} WHMCS calls; orders seen Pending right after a kill: {pending_seen}",
        started.elapsed(),
        double.calls().len()
    );

    // One client per account.
    let clients = double.clients();
    let mut by_email: BTreeMap<String, usize> = BTreeMap::new();
    for c in &clients {
        *by_email.entry(c.email.to_ascii_lowercase()).or_default() += 1;
    }
    assert_eq!(by_email.len(), ACCOUNTS);
    assert!(by_email.values().all(|n| *n == 1), "duplicate clients: {by_email:?}");

    // One service per subscription, on the right client, in its final state; one add-on each.
    let services = double.services();
    assert_eq!(services.len(), SUBSCRIPTIONS, "no duplicate and no missing service");
    let addons = double.service_addons();
    let live = expected.values().filter(|(_, _, a)| a.is_some()).count();
    assert_eq!(addons.len(), live, "no duplicate and no missing add-on");
    let email_of: BTreeMap<u64, String> = clients.iter().map(|c| (c.id, c.email.clone())).collect();
    for s in &services {
        let (email, status, addon_status) =
            expected.get(&s.domain).unwrap_or_else(|| panic!("unexpected service {s:?}"));
        assert_eq!(&email_of[&s.clientid], email, "{s:?}");
        assert_eq!(s.status, *status, "{s:?}");
        let mine: Vec<_> = addons.iter().filter(|a| a.serviceid == s.id).collect();
        match addon_status {
            Some(a) => {
                assert_eq!(mine.len(), 1, "{s:?}: {mine:?}");
                assert_eq!((mine[0].addonid, mine[0].status.as_str()), (5, *a), "{s:?}");
            }
            None => assert!(mine.is_empty(), "{s:?}: {mine:?}"),
        }
    }
    let mut domains: Vec<&str> = services.iter().map(|s| s.domain.as_str()).collect();
    domains.dedup();
    assert_eq!(domains.len(), SUBSCRIPTIONS);
    assert!(double.orders().iter().all(|o| o.status == "Active"), "no order left Pending");
}
