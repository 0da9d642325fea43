//! A tenant's whole life through the engine: wap-sim's Usage Service → the engine's event and usage processors →
//! `HostBillBilling` → the HostBill double. Faults after HostBill committed must not duplicate anything; usage goes
//! through the intent journal and is reconciled through `meteredGetUsage`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, client_with_timeout, prepared};
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase};
use wap_billing_hostbill::double::{Fault, FaultKind, HostBillDouble, Profile};
use wap_billing_hostbill::{check_version, HostBillBilling, HostBillBillingConfig, UsageCalls};
use wap_sim::{CreateSubscription, DatasetSpec, SubscriptionUpdate, WapSim};
use wap_types::testing::UsageRecordBuilder;
use wap_types::AdminSubscriptionState;

const LIMIT: Duration = Duration::from_secs(60);
const SUB: &str = "3f9a4c1e-1111-4222-8333-444455556666";

async fn sim() -> WapSim {
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    WapSim::builder().seed(5).dataset(spec).start().await.unwrap()
}

async fn adapter(sim: &WapSim, billing: Arc<HostBillBilling>, version: String, dir: &tempfile::TempDir) -> Adapter {
    let config = EngineConfig::builder()
        .instance_id("hostbill-1")
        .election_mode(ElectionMode::SingleInstance)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(50))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(100))
        .handler_timeout(Duration::from_secs(5))
        .billing_system_expected_version(version.as_str())
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .build()
        .unwrap();
    let usage = wap_billing_engine::usage_client::UsageClient::builder()
        .base_url(sim.usage_service_url().as_str())
        .basic_credentials(sim.credentials());
    Adapter::builder(config)
        .usage_service(usage)
        .billing_system(billing)
        .store_identity_map()
        .billing_system_version(version)
        .start()
        .await
        .unwrap()
}

async fn sync(adapter: &Adapter) {
    let statuses = adapter.sync(LIMIT).await.unwrap();
    assert!(statuses.iter().all(|s| s.phase != Phase::Halted), "{statuses:#?}");
}

fn usage(sub: &str, n: i64, meters: &[(&str, &str)]) -> Vec<wap_types::UsageRecord> {
    (1..=n)
        .map(|i| {
            let mut b = UsageRecordBuilder::new(i, sub).resource(&format!("db{}", i % 2));
            for (m, v) in meters {
                b = b.meter(m, v);
            }
            b.build()
        })
        .collect()
}

async fn whole_life(double: HostBillDouble, calls: UsageCalls, expected_version: &str) {
    let sim = sim().await;
    let plan = sim.plans()[0].id.clone();
    let addon = sim.add_ons()[0].id.clone();
    let version = check_version(&client(&double), expected_version, false).await.unwrap().reported().to_owned();
    let config = HostBillBillingConfig::new().plan(&plan, 10).addon(&addon, 20).usage_calls(calls);
    let billing = HostBillBilling::new(client_with_timeout(&double, Duration::from_millis(500)), config);
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&sim, billing.clone(), version, &dir).await;
    sync(&adapter).await;
    assert_eq!(billing.not_propagated().len(), 1, "the second plan is not mapped: {:?}", billing.not_propagated());

    // Purchase, with addClient's connection dropped and addOrder's answer lost after HostBill committed each, and
    // the first tag failing: the retries find the client and adopt the untagged account.
    double.inject(Fault::on("addClient", FaultKind::DropAfterCommit));
    double.inject(Fault::on("addOrder", FaultKind::TimeoutAfterCommit));
    double.inject(Fault::on("editAccountDetails", FaultKind::Status(503)));
    let email = "tenant@example.com";
    let created = sim
        .create_subscription(CreateSubscription {
            subscription_id: Some(SUB.into()),
            ..CreateSubscription::new(email, &plan)
        })
        .await;
    assert!(created.is_approved(), "{created:?}");
    sync(&adapter).await;
    let clients = double.clients();
    assert_eq!(clients.len(), 1, "{clients:?}");
    let accounts = double.accounts();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!((accounts[0].product_id, accounts[0].domain.as_str(), accounts[0].status.as_str()), (10, SUB, "Active"));
    assert_eq!((double.call_count("addClient"), double.call_count("addOrder")), (1, 1));

    // Add-on bought; its answer is lost after commit.
    double.inject(Fault::on("addAddonToAccount", FaultKind::ErrorPageAfterCommit));
    assert!(sim.add_subscription_addon(SUB, &addon).await.is_approved());
    sync(&adapter).await;
    let addons = double.account_addons();
    assert_eq!(addons.len(), 1, "{addons:?}");
    assert_eq!((addons[0].addon_id, addons[0].account_id, addons[0].status.as_str()), (20, accounts[0].id, "Active"));

    // Usage: 40 records of two meters on two resources, one batch; the first usage call commits and loses its
    // answer, so the engine reconciles (meteredGetUsage) instead of sending it twice.
    let first = match calls {
        UsageCalls::Single => "meteredAddUsage",
        _ => "meteredAddUsageBulk",
    };
    double.inject(Fault::on(first, FaultKind::ErrorPageAfterCommit));
    sim.append_usage(usage(SUB, 40, &[("DatabaseCount", "2"), ("TotalAllottedSpace", "1.5")]));
    sync(&adapter).await;
    let lines = double.usage();
    let total = |var: &str| lines.iter().filter(|u| u.variable == var).map(|u| u.qty).sum::<f64>();
    assert_eq!((total("databasecount"), total("totalallottedspace")), (80.0, 60.0), "{lines:#?}");
    assert!(lines.iter().all(|u| u.account_id == accounts[0].id && u.rawoutput.starts_with("wap-usage-")));
    let mut markers: Vec<_> = lines.iter().map(|u| u.rawoutput.as_str()).collect();
    markers.dedup();
    assert_eq!(markers.len(), lines.len(), "no line twice");
    assert!(double.call_count("meteredGetUsage") >= 1, "the failed call was reconciled");

    let state = |s: AdminSubscriptionState| SubscriptionUpdate { state: Some(s), ..Default::default() };
    assert!(sim.update_subscription(SUB, state(AdminSubscriptionState::Suspended)).await.is_approved());
    sync(&adapter).await;
    assert_eq!(double.accounts()[0].status, "Suspended");
    assert!(sim.update_subscription(SUB, state(AdminSubscriptionState::Active)).await.is_approved());
    sync(&adapter).await;
    assert_eq!(double.accounts()[0].status, "Active");

    // Removing the add-on has no HostBill call: it is reported for the administrator.
    assert!(sim.remove_subscription_addon(SUB, &addon).await.is_approved());
    sync(&adapter).await;
    assert_eq!(billing.manual_actions().len(), 1, "{:?}", billing.manual_actions());

    assert!(sim.delete_subscription(SUB).await.is_approved());
    sync(&adapter).await;
    let accounts = double.accounts();
    assert_eq!((accounts.len(), accounts[0].status.as_str()), (1, "Terminated"));
    assert_eq!(double.account_addons()[0].status, "Terminated");
    assert_eq!(double.clients().len(), 1);
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_whole_life_with_bulk_usage_and_faults_after_commit() {
    whole_life(prepared().start().await.unwrap(), UsageCalls::Bulk, "2025.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_whole_life_on_4_9_8_with_single_usage_calls_ignored_filters_and_paging_from_one() {
    let double = prepared()
        .profile(Profile::v4_9_8())
        .page_base(wap_billing_hostbill::double::PageBase::One)
        .per_page(2)
        .start()
        .await
        .unwrap();
    whole_life(double, UsageCalls::Single, "4.9.8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_for_an_unknown_subscription_waits_and_an_unmapped_plan_is_not_propagated() {
    let sim = sim().await;
    let plan = sim.plans()[1].id.clone();
    let double = prepared().start().await.unwrap();
    let billing = HostBillBilling::new(client(&double), HostBillBillingConfig::new());
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&sim, billing.clone(), "2025.1.3".into(), &dir).await;
    sync(&adapter).await;
    assert_eq!(billing.not_propagated().len(), 3, "neither plan nor the add-on is mapped");
    assert!(sim
        .create_subscription(CreateSubscription {
            subscription_id: Some(SUB.into()),
            ..CreateSubscription::new("u@example.com", &plan)
        })
        .await
        .is_approved());
    sim.append_usage(usage(SUB, 5, &[("DatabaseCount", "1")]));
    let statuses = adapter.sync(LIMIT).await.unwrap();
    assert!(statuses.iter().any(|s| s.phase != Phase::CaughtUp), "waits on the mapping: {statuses:#?}");
    assert!(double.accounts().is_empty() && double.usage().is_empty());

    use wap_billing_engine::IdentityMap;
    let map = adapter.operator().identity_map();
    map.set(wap_billing_engine::store::IdentityKind::Plan, &plan, "11", "ops").await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while double.usage().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the subscription and its usage never synced");
        adapter.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(double.accounts()[0].product_id, 11);
    assert_eq!(double.usage().iter().map(|u| u.qty).sum::<f64>(), 5.0);
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_usage_intent_of_an_ended_period_halts_in_doubt() {
    // reconcile straight against the double: the intent's period has ended, meteredGetUsage cannot see it.
    use wap_billing_engine::{Intent, ProcessorKind, Reconciliation, UsageHandler};
    let double = prepared().start().await.unwrap();
    let billing = HostBillBilling::new(client(&double), HostBillBillingConfig::new());
    let intent = |opened_at| Intent {
        processor: ProcessorKind::Usage,
        feed: wap_types::FeedKind::Usage,
        first_event_id: 1,
        last_event_id: 9,
        records: 9,
        operation: "usage_lines".into(),
        token: Intent::default_token(wap_types::FeedKind::Usage, 1, 9),
        generation: 1,
        opened_at,
    };
    let now = chrono::Utc::now();
    assert_eq!(billing.reconcile(&intent(now)).await.unwrap(), Reconciliation::NotApplied);
    let old = now - chrono::TimeDelta::days(40);
    assert!(matches!(billing.reconcile(&intent(old)).await.unwrap(), Reconciliation::Unknown { .. }));
}
