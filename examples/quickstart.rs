//! The whole billing flow on one machine, with nothing installed:
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! 1. starts a simulated WAP (`wap-sim`) with a generated catalogue and 5,000 usage records;
//! 2. starts a billing adapter (`wap_billing::engine::Adapter`): SQLite state in a temporary directory, the small
//!    reference ledger as the billing system, the approval and pricing responder registered with the simulator;
//! 3. syncs everything WAP holds (the first-run backfill);
//! 4. performs tenant actions through the simulator: one purchase approved, one denied (an account with an overdue
//!    invoice), an add-on, a price query, some usage;
//! 5. syncs again and prints an invoice per subscription (plan, add-ons, usage per meter).
//!
//! `RUST_LOG=info cargo run --example quickstart` shows the adapter's log as well.

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wap_billing::engine::{Adapter, ElectionMode, EngineConfig, ProcessorKind};
use wap_billing::ledger::{AccountStanding, SqliteLedger};
use wap_billing::responder::{Responder, ResponderConfig, ServerConfig};
use wap_billing::sim::{CreateSubscription, DatasetSpec, NotificationSubscriber, WapSim};
use wap_billing::types::{BasicCredentials, FeedKind, PlanPriceQuery, StringMap, UsageRecord, WapDateTime};
use wap_billing::usage_client::UsageClient;

const LIMIT: Duration = Duration::from_secs(30);

/// Demo prices: monthly per plan / add-on (by catalogue position), and per unit-hour of each meter.
const PLAN_PRICES: [f64; 4] = [25.0, 45.0, 12.5, 99.0];
const ADDON_PRICES: [f64; 3] = [4.0, 9.5, 2.0];
const METER_RATES: [(&str, &str, f64); 9] = [
    ("sqlservers", "DatabaseCount", 0.01),
    ("sqlservers", "TotalAllottedSpace", 0.000_01),
    ("mysqlservers", "DatabaseCount", 0.008),
    ("mysqlservers", "TotalAllottedSpace", 0.000_01),
    ("webspaces", "TotalIncomingRequestBytes", 0.0005),
    ("webspaces", "TotalNetworkWrittenBytes", 0.001),
    ("systemcenter", "CPUAllocationCount", 0.02),
    ("systemcenter", "MemoryAllocatedMB", 0.000_005),
    ("systemcenter", "DiskAllocatedGB", 0.000_1),
];

/// Three hours of database usage for a subscription, as WAP's collector would store it.
fn usage_for(subscription: &str) -> Vec<UsageRecord> {
    let now = WapDateTime::now().to_utc();
    (1..=3)
        .map(|h| {
            let mut resources = StringMap::new();
            resources.insert("DatabaseCount".into(), "2".into());
            resources.insert("TotalAllottedSpace".into(), "2048".into());
            UsageRecord {
                start_time: WapDateTime::from_utc(now - Duration::from_secs(3_600 * (h + 1))),
                end_time: WapDateTime::from_utc(now - Duration::from_secs(3_600 * h)),
                provider_name: Some("mysqlservers".into()),
                service_type: Some("Default".into()),
                subscription_id: subscription.to_owned(),
                resources,
                ..Default::default()
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    support::init_logging("error");
    let started = Instant::now();
    println!("wap-billing quickstart: a simulated WAP, a billing adapter and a small ledger, all on loopback\n");

    // ---- 1. a simulated WAP ----
    let dataset = DatasetSpec {
        plans: 3,
        add_ons: 3,
        accounts: 4,
        subscriptions: 5,
        usage_records: 5_000,
        ..DatasetSpec::small()
    };
    let sim = WapSim::builder().seed(2024).dataset(dataset).start().await?;
    println!("1. Simulated WAP Usage Service at {}", sim.usage_service_url());
    println!(
        "   catalogue: {} plans, {} add-ons, {} subscriptions; {} usage records",
        sim.plans().len(),
        sim.add_ons().len(),
        sim.subscriptions().len(),
        sim.usage_count()
    );

    // ---- 2. the adapter: SQLite state, the ledger, the responder ----
    let dir = tempfile::tempdir()?;
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await?);
    let wap_caller = BasicCredentials::new("wapcaller", "quickstart-secret"); // BillingAdapterUsername / Password
    let responder = Responder::with_pricing(
        ledger.approver(), // docs/protocol/approval-and-pricing.md §3.3 rules on the ledger's data
        Arc::clone(&ledger),
        ResponderConfig::basic(wap_caller.clone()).base_path("/wap/"),
    );
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let config = EngineConfig::builder()
        .state_database_url(&state) // StateDatabaseUrl
        .election_mode(ElectionMode::SingleInstance)
        .sync_interval(Duration::from_secs(2)) // SyncIntervalMilliseconds (60 s in production)
        .retry_sleep(Duration::from_millis(200)) // RetrySleepMilliseconds (30 s in production)
        .batch_size(1_000) // UsageServiceBatchSize
        .build()?;
    let adapter = Adapter::builder(config)
        .usage_service(
            UsageClient::builder().base_url(sim.usage_service_url().as_str()).basic_credentials(sim.credentials()),
        )
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .responder("127.0.0.1:0".parse()?, responder, ServerConfig::default())
        .admin("127.0.0.1:0".parse()?)
        .start()
        .await?;
    let endpoint = adapter.responder_endpoint().expect("responder served").to_owned();
    // What Set-MgmtSvcNotificationSubscriber does on a real WAP.
    sim.register_subscriber(
        NotificationSubscriber::billing("wap-billing", endpoint.parse()?).with_auth(wap_caller.clone()),
    );
    println!("\n2. Adapter started");
    println!("   state database  {state}");
    println!("   billing system  reference ledger {}", ledger.path().display());
    println!("   responder       {endpoint}  (registered with WAP as subscriber 'wap-billing', Basic auth)");
    if let Some(admin) = adapter.admin_addr() {
        println!("   admin endpoint  http://{admin}/status  /health  /metrics");
    }

    // ---- 3. first run: backfill from startId 0 ----
    let t = Instant::now();
    adapter.wait_caught_up(LIMIT).await?;
    let synced_events: usize = {
        let mut n = 0;
        for feed in FeedKind::EVENT_FEEDS {
            n += ledger.applied_event_ids(feed).await?.len();
        }
        n
    };
    println!(
        "\n3. First run (backfill from startId 0) caught up in {:.1?}: {synced_events} events, {} usage records",
        t.elapsed(),
        ledger.usage_count().await?
    );

    // Prices in the billing system (what WAP's pricing calls and the invoices show).
    let plans = sim.plans();
    for (plan, price) in plans.iter().zip(PLAN_PRICES) {
        ledger.set_plan_price(&plan.id, price).await?;
    }
    for (add_on, price) in sim.add_ons().iter().zip(ADDON_PRICES) {
        ledger.set_addon_price(&add_on.id, price).await?;
    }
    for (provider, meter, rate) in METER_RATES {
        ledger.set_meter_rate(provider, meter, rate).await?;
    }

    // ---- 4. tenant actions through WAP ----
    println!("\n4. Tenant actions (WAP asks the adapter's responder before committing each one)");
    let plan = &plans[0];
    let plan_name = plan.display_name.clone().unwrap_or_else(|| plan.id.clone());
    let price = sim.plan_price(PlanPriceQuery { id: plan.id.clone(), region: None, username: None }).await?;
    println!("   price shown for {plan_name:?}: {:?}", price.as_str());

    let alice = "alice@contoso.test";
    let bought = sim.create_subscription(CreateSubscription::new(alice, plan.id.as_str())).await;
    println!("   {alice} buys {plan_name:?}: {}", bought);
    let alice_sub = bought.subscription_id.clone().ok_or("the approved purchase has a subscription id")?;

    let mallory = "mallory@fabrikam.test";
    ledger.set_account_standing(mallory, AccountStanding::Overdue).await?;
    let refused = sim.create_subscription(CreateSubscription::new(mallory, plan.id.as_str())).await;
    println!("   {mallory} (overdue invoice in the billing system) buys {plan_name:?}: {}", refused);

    // The add-on needs the subscription in the billing system: sync first (WAP committed it to the feed).
    adapter.sync(LIMIT).await?;
    let add_on = sim.add_ons().into_iter().next().ok_or("the catalogue has add-ons")?;
    let add_on_name = add_on.display_name.clone().unwrap_or_else(|| add_on.id.clone());
    let extra = sim.add_subscription_addon(&alice_sub, &add_on.id).await;
    println!("   {alice} adds {add_on_name:?}: {}", extra);
    let ids = sim.append_usage(usage_for(&alice_sub));
    println!("   WAP's collector stores {} usage records for {alice}'s new subscription", ids.len());

    // ---- 5. sync and invoice ----
    adapter.sync(LIMIT).await?;
    let subs = ledger.subscriptions().await?;
    let in_ledger = |account: &str| subs.iter().any(|s| s.account.as_deref() == Some(account));
    println!(
        "\n5. Synced: {alice}'s subscription in the ledger: {}; {mallory}'s: {} (a denied purchase never reaches the feeds)",
        in_ledger(alice),
        in_ledger(mallory)
    );
    let status = adapter.status().await;
    let lag: i64 = status.processors.iter().flat_map(|p| &p.feeds).filter_map(|f| f.lag).sum();
    let leaders: Vec<String> = ProcessorKind::ALL
        .iter()
        .filter_map(|k| status.processor(*k))
        .map(|p| format!("{}: {}", p.processor, p.leader(status.at).unwrap_or("none")))
        .collect();
    println!(
        "   status: lag {lag} on all feeds, {} halted feed(s), leaders [{}], health {}",
        status.halted_feeds().len(),
        leaders.join(", "),
        adapter.health().await.state.name()
    );

    println!("\nInvoices (reference ledger; demo prices)\n");
    for invoice in ledger.invoices().await? {
        println!("{invoice}\n");
    }

    adapter.shutdown().await;
    sim.shutdown().await;
    println!(
        "Done in {:.1?}. Next: docs/operations.md (deploying, halts, metrics) and the engine's README.",
        started.elapsed()
    );
    Ok(())
}
