//! WAP (`wap-sim`), the engine, the responder with HostBill prices, and the HostBill double, all in one process:
//! a tenant buys a plan (the price shown comes from HostBill), adds an add-on, uses a database, is suspended and
//! resumed; the example prints what HostBill holds afterwards. Runs with nothing installed:
//! `cargo run -p wap-billing-hostbill --example hostbill`.

use std::convert::Infallible;
use std::time::Duration;

use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig};
use wap_billing_hostbill::double::HostBillDouble;
use wap_billing_hostbill::{
    check_version, HostBillBilling, HostBillBillingConfig, HostBillClient, HostBillPricing, HostBillPricingConfig,
};
use wap_responder::{serve, BasicCredentials, Decision, FnApprover, Responder, ResponderConfig, ServerConfig};
use wap_sim::{CreateSubscription, DatasetSpec, NotificationSubscriber, SubscriptionUpdate, WapSim};
use wap_types::{PlanPriceQuery, UsageRecord};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // WAP with two plans and an add-on.
    let spec =
        DatasetSpec { plans: 2, add_ons: 1, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let wap = WapSim::builder().seed(1).dataset(spec).start().await?;
    let (plan, addon) = (wap.plans()[0].id.clone(), wap.add_ons()[0].id.clone());

    // HostBill as its administrator prepared it.
    let hostbill = HostBillDouble::builder()
        .api_key("wap-adapter", "api-key")
        .product(10, 1, "WAP Gold", "25.00")
        .addon(20, "Extra IPs", "4.00")
        .start()
        .await?;
    let client = HostBillClient::builder()
        .url(hostbill.url())
        .credentials("wap-adapter", "api-key")
        .timeout(Duration::from_secs(5))
        .build()?;
    let version = check_version(&client, "2025.1", false).await?.reported().to_owned();
    println!("HostBill {version}");

    // The responder: approve everything, prices from HostBill (refreshed every minute).
    let pricing = HostBillPricing::new(client.clone(), HostBillPricingConfig::new().plan(&plan, 10).addon(&addon, 20));
    pricing.refresh().await?;
    let refresher = pricing.spawn_refresh(Duration::from_secs(60));
    let credentials = BasicCredentials::new("wapbilling", "example-password");
    let approver = FnApprover::new(
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
    );
    let responder = Responder::with_pricing(approver, pricing, ResponderConfig::basic(credentials.clone()));
    let server = serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?, responder, ServerConfig::default())?;
    wap.register_subscriber(
        NotificationSubscriber::billing("wap-billing", url::Url::parse(&server.url())?).with_auth(credentials),
    );

    // The engine with HostBill as the billing system.
    let dir = tempfile::tempdir()?;
    let config = EngineConfig::builder()
        .instance_id("hostbill-example")
        .election_mode(ElectionMode::SingleInstance)
        .subscription_responder_enabled(false)
        .pricing_responder_enabled(false)
        .sync_interval(Duration::from_millis(100))
        .billing_system_expected_version(version.as_str())
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .build()?;
    let billing = HostBillBilling::new(client, HostBillBillingConfig::new().plan(&plan, 10).addon(&addon, 20));
    let adapter = Adapter::builder(config)
        .usage_service(
            UsageClient::builder().base_url(wap.usage_service_url().as_str()).basic_credentials(wap.credentials()),
        )
        .billing_system(billing)
        .store_identity_map()
        .billing_system_version(version)
        .start()
        .await?;

    // The tenant's actions.
    let price = wap.plan_price(PlanPriceQuery { id: plan.clone(), region: None, username: None }).await?;
    println!("the portal shows: {}", price.as_str());
    let sub = "6f1d3b2a-0000-4000-8000-000000000001";
    wap.create_subscription(CreateSubscription {
        subscription_id: Some(sub.into()),
        ..CreateSubscription::new("tenant@example.com", &plan)
    })
    .await;
    wap.add_subscription_addon(sub, &addon).await;
    let usage: Vec<UsageRecord> =
        vec![wap_types::testing::UsageRecordBuilder::new(1, sub).meter("DatabaseCount", "2").build()];
    wap.append_usage(usage);
    wap.update_subscription(sub, SubscriptionUpdate::suspend()).await;
    adapter.sync(Duration::from_secs(30)).await?;

    for a in hostbill.accounts() {
        println!(
            "account {} of client {}: product {}, {}, domain {}",
            a.id, a.client_id, a.product_id, a.status, a.domain
        );
    }
    for a in hostbill.account_addons() {
        println!("add-on {} on account {}: {}", a.addon_id, a.account_id, a.status);
    }
    for u in hostbill.usage() {
        println!("metered {} = {} on account {} ({})", u.variable, u.qty, u.account_id, u.output);
    }
    adapter.shutdown().await;
    refresher.abort();
    server.shutdown().await;
    Ok(())
}
