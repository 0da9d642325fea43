//! WAP → WHMCS on one machine, with nothing installed:
//!
//! ```sh
//! cargo run -p wap-billing-whmcs --example whmcs
//! ```
//!
//! 1. starts a simulated WAP (`wap-sim`) with two plans and an add-on, and a WHMCS double prepared as the README
//!    asks the administrator to (a product per plan, a product add-on, an API credential);
//! 2. reads WHMCS's version and checks it against the expected one;
//! 3. starts the engine's adapter with `WhmcsBilling` as the event handler (usage billing goes through the
//!    engine's intent journal and is not part of this example yet);
//! 4. performs a tenant's life in WAP (purchase, add-on, suspend, resume, delete), syncing after each step, with
//!    WHMCS losing an answer after committing an order: nothing is created twice;
//! 5. prints what WHMCS holds.

use std::error::Error;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig};
use wap_billing_whmcs::double::{Fault, FaultKind, WhmcsDouble};
use wap_billing_whmcs::{
    check_version, detect_version, Credentials, VersionSource, WhmcsBilling, WhmcsBillingConfig, WhmcsClient,
    WhmcsVersion,
};
use wap_sim::{CreateSubscription, DatasetSpec, SubscriptionUpdate, WapSim};
use wap_types::AdminSubscriptionState;

const LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let sim = WapSim::builder().seed(1).dataset(spec).start().await?;
    let (plan, addon) = (sim.plans()[0].id.clone(), sim.add_ons()[0].id.clone());

    let whmcs = WhmcsDouble::builder()
        .api_credential("wap-adapter", "api-secret")
        .product(1, 1, "WAP Gold")
        .product(2, 1, "WAP Silver")
        .addon_definition(5, "Extra IPs")
        .start()
        .await?;
    println!("WAP Usage Service at {}, WHMCS at {}", sim.usage_service_url(), whmcs.api_url());

    let client = WhmcsClient::builder()
        .url(whmcs.url())
        .credentials(Credentials::api_credential("wap-adapter", "api-secret"))
        .timeout(Duration::from_secs(2))
        .build()?;
    let (version, source) = detect_version(&client, None).await?;
    let expected: WhmcsVersion = "8.13".parse()?;
    check_version(Some(&expected), &version, source, false)?;
    assert_eq!(source, VersionSource::WhmcsDetails);
    println!("WHMCS {version} (expected {expected}): ok");

    let billing = WhmcsBilling::new(client, WhmcsBillingConfig::new("mailin").plan(&plan, 1).addon(&addon, 5));
    let dir = std::env::temp_dir().join(format!("wap-whmcs-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = EngineConfig::builder()
        .instance_id("whmcs-example")
        .election_mode(ElectionMode::SingleInstance)
        .usage_processor_enabled(false)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(100))
        .retry_sleep(Duration::from_millis(50))
        .state_database_url(format!("sqlite://{}", dir.join("state.db").display()))
        .build()?;
    let adapter = Adapter::builder(config)
        .usage_service(
            UsageClient::builder().base_url(sim.usage_service_url().as_str()).basic_credentials(sim.credentials()),
        )
        .event_handler(billing.clone())
        .store_identity_map()
        .billing_system_version(version.to_string())
        .start()
        .await?;
    adapter.sync(LIMIT).await?;
    println!("catalogue synced; not propagated until mapped: {:?}", billing.not_propagated());

    let sub = "3f9a4c1e-1111-4222-8333-444455556666";
    whmcs.inject(Fault::on("AddOrder", FaultKind::TimeoutAfterCommit));
    sim.create_subscription(CreateSubscription {
        subscription_id: Some(sub.into()),
        ..CreateSubscription::new("tenant@example.com", &plan)
    })
    .await;
    adapter.sync(LIMIT).await?;
    println!("purchased (AddOrder's answer was lost once): {} service(s)", whmcs.services().len());
    sim.add_subscription_addon(sub, &addon).await;
    adapter.sync(LIMIT).await?;
    let state = |s| SubscriptionUpdate { state: Some(s), ..Default::default() };
    sim.update_subscription(sub, state(AdminSubscriptionState::Suspended)).await;
    adapter.sync(LIMIT).await?;
    println!("suspended: {}", whmcs.services()[0].status);
    sim.update_subscription(sub, state(AdminSubscriptionState::Active)).await;
    adapter.sync(LIMIT).await?;
    println!("resumed: {}", whmcs.services()[0].status);
    sim.delete_subscription(sub).await;
    adapter.sync(LIMIT).await?;
    adapter.shutdown().await;

    println!("\nWHMCS now holds:");
    for c in whmcs.clients() {
        println!("  client {} {} ({})", c.id, c.email, c.status);
    }
    for s in whmcs.services() {
        println!("  service {} product {} for WAP subscription {} ({})", s.id, s.pid, s.domain, s.status);
    }
    for a in whmcs.service_addons() {
        println!("  service add-on {} (add-on {}) on service {} ({})", a.id, a.addonid, a.serviceid, a.status);
    }
    println!("  {} WHMCS API calls: {:?}", whmcs.calls().len(), whmcs.calls());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
