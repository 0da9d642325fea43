//! A tenant's life through the engine: wap-sim's Usage Service → the engine's event processor → `WhmcsBilling` →
//! the WHMCS double. Faults after WHMCS committed must not duplicate anything.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, prepared};
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, Phase};
use wap_billing_whmcs::double::{Fault, FaultKind, WhmcsDouble};
use wap_billing_whmcs::{detect_version, WhmcsBilling, WhmcsBillingConfig, WhmcsClient};
use wap_sim::{CreateSubscription, DatasetSpec, SubscriptionUpdate, WapSim};
use wap_types::AdminSubscriptionState;

const LIMIT: Duration = Duration::from_secs(60);
const SUB: &str = "3f9a4c1e-1111-4222-8333-444455556666";

async fn sim() -> WapSim {
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    WapSim::builder().seed(5).dataset(spec).start().await.unwrap()
}

async fn adapter(sim: &WapSim, billing: Arc<WhmcsBilling>, version: String, dir: &tempfile::TempDir) -> Adapter {
    let config = EngineConfig::builder()
        .instance_id("whmcs-1")
        .election_mode(ElectionMode::SingleInstance)
        .usage_processor_enabled(false)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(50))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(100))
        .billing_system_expected_version("8.13.1")
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .build()
        .unwrap();
    let usage = wap_billing_engine::usage_client::UsageClient::builder()
        .base_url(sim.usage_service_url().as_str())
        .basic_credentials(sim.credentials());
    Adapter::builder(config)
        .usage_service(usage)
        .event_handler(billing)
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

fn short_timeout_client(double: &WhmcsDouble) -> WhmcsClient {
    WhmcsClient::builder()
        .url(double.url())
        .credentials(wap_billing_whmcs::Credentials::api_credential(common::IDENTIFIER, common::SECRET))
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_addon_suspend_resume_delete_with_faults_after_commit() {
    let sim = sim().await;
    let plan = sim.plans()[0].id.clone();
    let addon = sim.add_ons()[0].id.clone();
    let double = prepared().start().await.unwrap();
    let (version, _) = detect_version(&client(&double), None).await.unwrap();
    let config = WhmcsBillingConfig::new("mailin").plan(&plan, 1).addon(&addon, 5);
    let billing = WhmcsBilling::new(short_timeout_client(&double), config);
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&sim, billing.clone(), version.to_string(), &dir).await;
    sync(&adapter).await;
    assert!(
        billing.not_propagated().iter().all(|(_, id)| !id.eq_ignore_ascii_case(&plan)),
        "{:?}",
        billing.not_propagated()
    );
    assert_eq!(billing.not_propagated().len(), 1, "the second plan is not mapped: {:?}", billing.not_propagated());

    // Purchase, with AddClient's connection dropped and AddOrder's answer lost after WHMCS committed each, and
    // the first AcceptOrder failing: the retries find what was made.
    double.inject(Fault::on("AddClient", FaultKind::DropAfterCommit));
    double.inject(Fault::on("AddOrder", FaultKind::TimeoutAfterCommit));
    double.inject(Fault::on("AcceptOrder", FaultKind::Status(503)));
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
    assert_eq!(clients[0].email, email);
    let services = double.services();
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!((services[0].pid, services[0].domain.as_str(), services[0].status.as_str()), (1, SUB, "Active"));
    assert_eq!(double.call_count("AddClient"), 1);
    assert_eq!(double.call_count("AddOrder"), 1);

    // Add-on bought; the add-on order's answer is lost after commit.
    double.inject(Fault::on("AddOrder", FaultKind::ErrorPageAfterCommit));
    assert!(sim.add_subscription_addon(SUB, &addon).await.is_approved());
    sync(&adapter).await;
    let addons = double.service_addons();
    assert_eq!(addons.len(), 1, "{addons:?}");
    assert_eq!((addons[0].addonid, addons[0].serviceid, addons[0].status.as_str()), (5, services[0].id, "Active"));

    let state = |s: AdminSubscriptionState| SubscriptionUpdate { state: Some(s), ..Default::default() };
    assert!(sim.update_subscription(SUB, state(AdminSubscriptionState::Suspended)).await.is_approved());
    sync(&adapter).await;
    assert_eq!(double.services()[0].status, "Suspended");
    assert!(sim.update_subscription(SUB, state(AdminSubscriptionState::Active)).await.is_approved());
    sync(&adapter).await;
    assert_eq!(double.services()[0].status, "Active");

    assert!(sim.remove_subscription_addon(SUB, &addon).await.is_approved());
    sync(&adapter).await;
    assert_eq!(double.service_addons()[0].status, "Cancelled");
    // Bought again: a new service add-on (the cancelled one stays as it is).
    assert!(sim.add_subscription_addon(SUB, &addon).await.is_approved());
    sync(&adapter).await;
    let addons = double.service_addons();
    assert_eq!(addons.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(), ["Cancelled", "Active"]);

    assert!(sim.delete_subscription(SUB).await.is_approved());
    sync(&adapter).await;
    let services = double.services();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].status, "Terminated");
    assert_eq!(double.clients().len(), 1);
    let addons = double.service_addons();
    assert_eq!(
        addons.iter().map(|a| a.status.as_str()).collect::<Vec<_>>(),
        ["Cancelled", "Terminated"],
        "a deleted subscription's add-ons end too"
    );
    assert_eq!(double.orders().len(), 3);
    adapter.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_plan_waits_then_syncs_once_mapped_in_the_identity_map() {
    let sim = sim().await;
    let plan = sim.plans()[1].id.clone();
    let double = prepared().start().await.unwrap();
    let billing = WhmcsBilling::new(client(&double), WhmcsBillingConfig::new("mailin"));
    let dir = tempfile::tempdir().unwrap();
    let adapter = adapter(&sim, billing.clone(), "8.13.1".into(), &dir).await;
    sync(&adapter).await;
    assert_eq!(billing.not_propagated().len(), 3, "neither plan nor the add-on is mapped");
    assert!(sim
        .create_subscription(CreateSubscription {
            subscription_id: Some(SUB.into()),
            ..CreateSubscription::new("u@example.com", &plan)
        })
        .await
        .is_approved());
    let statuses = adapter.sync(LIMIT).await.unwrap();
    assert!(statuses.iter().any(|s| s.phase != Phase::CaughtUp), "waits on the mapping: {statuses:#?}");
    assert!(double.services().is_empty());

    use wap_billing_engine::IdentityMap;
    let map = adapter.operator().identity_map();
    map.set(wap_billing_engine::store::IdentityKind::Plan, &plan, "2", "ops").await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while double.services().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the subscription never synced");
        adapter.wake();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(double.services()[0].pid, 2);
    assert_eq!(double.services()[0].status, "Active");
    adapter.shutdown().await;
}
