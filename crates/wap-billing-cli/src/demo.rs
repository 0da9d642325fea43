//! `wap-billing demo`: the whole flow on loopback with nothing installed — a simulated WAP, the adapter started
//! from a settings file exactly as `run` starts it (SQLite state, the reference ledger, the responder), tenant
//! purchases approved and denied, a sync and an invoice per subscription.

use std::error::Error;
use std::time::{Duration, Instant};

use wap_billing_ledger::AccountStanding;
use wap_sim::{CreateSubscription, DatasetSpec, NotificationSubscriber, WapSim};
use wap_types::{BasicCredentials, FeedKind, PlanPriceQuery, StringMap, UsageRecord, WapDateTime};

use crate::compose;
use crate::settings::Settings;

const LIMIT: Duration = Duration::from_secs(60);
const PLAN_PRICES: [f64; 4] = [25.0, 45.0, 12.5, 99.0];
const ADDON_PRICES: [f64; 3] = [4.0, 9.5, 2.0];
const METER_RATES: [(&str, &str, f64); 4] = [
    ("sqlservers", "DatabaseCount", 0.01),
    ("mysqlservers", "DatabaseCount", 0.008),
    ("mysqlservers", "TotalAllottedSpace", 0.000_01),
    ("systemcenter", "CPUAllocationCount", 0.02),
];

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

/// The settings file the demo runs with: what an operator would write for this simulated WAP.
pub fn demo_settings_toml(sim: &WapSim, dir: &std::path::Path, responder_secret: &str) -> String {
    let creds = sim.credentials();
    format!(
        r#"# Written by `wap-billing demo` (secrets inline only because this is a throw-away demo)
[usage_service]
endpoint = "{endpoint}"
username = "{user}"
password = "{password}"
batch_size = 1000

[state]
url = "sqlite://{state}"

[engine]
leader_election_mode = "single-instance"
sync_interval_ms = 2000
retry_sleep_ms = 200

[responder]
listen = "127.0.0.1:0"
base_path = "/wap/"
username = "wapcaller"
password = "{responder_secret}"
pricing_enabled = true

[admin]
listen = "127.0.0.1:0"

[billing]
system = "ledger"
[billing.ledger]
path = "{ledger}"

[log]
level = "error"
"#,
        endpoint = sim.usage_service_url(),
        user = creds.username,
        password = creds.password.expose(),
        state = dir.join("state.db").display(),
        ledger = dir.join("ledger.db").display(),
    )
}

/// Runs the demo, printing to stdout.
pub async fn run() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    println!("wap-billing demo: a simulated WAP, the adapter started from a settings file, the reference ledger\n");
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

    let dir = tempfile::tempdir()?;
    let responder_secret = format!("demo-{:016x}", std::process::id() as u64 * 0x9E37_79B9);
    let text = demo_settings_toml(&sim, dir.path(), &responder_secret);
    let settings = Settings::from_toml_with_env(&text, std::iter::empty())?;
    let running = compose::start(&settings).await?;
    let adapter = &running.adapter;
    let ledger = &running.ledger;
    let endpoint = adapter.responder_endpoint().ok_or("the responder is enabled")?.to_owned();
    sim.register_subscriber(
        NotificationSubscriber::billing("wap-billing", endpoint.parse()?)
            .with_auth(BasicCredentials::new("wapcaller", responder_secret.as_str())),
    );
    println!("\n2. Adapter started from a settings file (what `wap-billing run --config FILE` does)");
    println!("   state database  {}", running.state);
    println!("   billing system  reference ledger {}", ledger.path().display());
    println!("   responder       {endpoint}  (registered with WAP as subscriber 'wap-billing')");
    if let Some(admin) = adapter.admin_addr() {
        println!("   admin endpoint  http://{admin}/status  /health  /metrics");
    }

    let t = Instant::now();
    adapter.wait_caught_up(LIMIT).await?;
    let mut events = 0;
    for feed in FeedKind::EVENT_FEEDS {
        events += ledger.applied_event_ids(feed).await?.len();
    }
    println!(
        "\n3. First run (backfill from startId 0) caught up in {:.1?}: {events} events, {} usage records",
        t.elapsed(),
        ledger.usage_count().await?
    );

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

    println!("\n4. Tenant actions (WAP asks the adapter's responder before committing each one)");
    let plan = plans.first().ok_or("the catalogue has plans")?;
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
    adapter.sync(LIMIT).await?;
    let add_on = sim.add_ons().into_iter().next().ok_or("the catalogue has add-ons")?;
    let add_on_name = add_on.display_name.clone().unwrap_or_else(|| add_on.id.clone());
    let extra = sim.add_subscription_addon(&alice_sub, &add_on.id).await;
    println!("   {alice} adds {add_on_name:?}: {}", extra);
    let ids = sim.append_usage(usage_for(&alice_sub));
    println!("   WAP's collector stores {} usage records for {alice}'s new subscription", ids.len());

    adapter.sync(LIMIT).await?;
    let status = adapter.status().await;
    println!(
        "\n5. Synced: {} halted feed(s), health {}",
        status.halted_feeds().len(),
        adapter.health().await.state.name()
    );
    println!("\nInvoices (reference ledger; demo prices)\n");
    for invoice in ledger.invoices().await? {
        if invoice.to_string().contains(&alice_sub) {
            println!("{invoice}\n");
        }
    }
    let Running { adapter, .. } = running;
    adapter.shutdown().await;
    sim.shutdown().await;
    println!(
        "Done in {:.1?}. Next: `wap-billing config example > wap-billing.toml`, then `wap-billing run`.",
        started.elapsed()
    );
    Ok(())
}

use compose::Running;
