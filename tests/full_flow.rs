//! Cross-crate: every data flow of wap-billing at once, over real HTTP on loopback.
//!
//! A tenant buys a plan through WAP (`wap-sim`), which asks the adapter's responder (`wap-responder`); a custom
//! resource provider (`wap-resource-provider`) meters usage durably while WAP's collector polls it; the adapter
//! (`wap-billing-engine` over `wap-usage-client`) pulls the feeds into a billing ledger. Every record metered by the
//! provider must be billed exactly once, under the subscription WAP approved, and a denied purchase never.

use std::collections::BTreeSet;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wap_billing::engine::{Adapter, ElectionMode, EngineConfig};
use wap_billing::ledger::{AccountStanding, SqliteLedger};
use wap_billing::resource_provider::{EndpointAuth, RpServer, UsageLedger};
use wap_billing::responder::{Responder, ResponderConfig, ServerConfig};
use wap_billing::sim::{CreateSubscription, DatasetSpec, NotificationSubscriber, RpRegistration, WapSim};
use wap_billing::types::{BasicCredentials, RpUsageRecord, StringMap, WapDateTime};
use wap_billing::usage_client::UsageClient;

const LIMIT: Duration = Duration::from_secs(60);
const PROVIDER: &str = "fileshares";
const BATCHES: i64 = 20;
const PER_BATCH: i64 = 100;

fn metered(subscription_id: &str, n: i64) -> RpUsageRecord {
    let start = chrono::DateTime::from_timestamp(1_433_232_000 + n * 3600, 0).expect("valid time");
    RpUsageRecord {
        start_time: WapDateTime::from_utc(start),
        end_time: WapDateTime::from_utc(start + chrono::Duration::hours(1)),
        service_type: Some("Default".into()),
        subscription_id: subscription_id.to_owned(),
        resource_id: Some(format!("share-{}", n % 3)),
        resources: [("StorageGB", (n % 7 + 1).to_string()), ("Shares", "1".to_owned())]
            .into_iter()
            .collect::<StringMap>(),
        ..Default::default()
    }
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < LIMIT, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metered_usage_is_billed_exactly_once_under_the_approved_subscription() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;

    // WAP with a catalogue and no usage yet.
    let sim =
        WapSim::builder().seed(17).dataset(DatasetSpec { usage_records: 0, ..DatasetSpec::small() }).start().await?;

    // The adapter: SQLite state, the reference ledger, the responder registered with WAP as billing subscriber.
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await?);
    let wap_caller = BasicCredentials::new("wapcaller", "full-flow-secret");
    let responder = Responder::with_pricing(
        ledger.approver(),
        Arc::clone(&ledger),
        ResponderConfig::basic(wap_caller.clone()).base_path("/wap/"),
    );
    let config = EngineConfig::builder()
        .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
        .election_mode(ElectionMode::SingleInstance)
        .sync_interval(Duration::from_millis(100))
        .retry_sleep(Duration::from_millis(50))
        .batch_size(250)
        .build()?;
    let adapter = Adapter::builder(config)
        .usage_service(
            UsageClient::builder().base_url(sim.usage_service_url().as_str()).basic_credentials(sim.credentials()),
        )
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .responder(SocketAddr::from(([127, 0, 0, 1], 0)), responder, ServerConfig::default())
        .start()
        .await?;
    let endpoint = adapter.responder_endpoint().expect("the responder is served").to_owned();
    sim.register_subscriber(NotificationSubscriber::billing("wap-billing", endpoint.parse()?).with_auth(wap_caller));
    adapter.wait_caught_up(LIMIT).await?;

    // A purchase by an account in good standing is approved; one by an account with an overdue invoice in the
    // billing system is denied by the responder.
    let plan = sim.plans().into_iter().next().expect("the catalogue has plans");
    let bought = sim.create_subscription(CreateSubscription::new("erin@contoso.test", plan.id.as_str())).await;
    assert!(bought.is_approved(), "{bought:?}");
    let subscription = bought.subscription_id.clone().expect("an approved purchase has a subscription id");
    ledger.set_account_standing("mallory@fabrikam.test", AccountStanding::Overdue).await?;
    let refused = sim.create_subscription(CreateSubscription::new("mallory@fabrikam.test", plan.id.as_str())).await;
    assert!(!refused.is_approved(), "{refused:?}");
    assert_eq!(refused.calls.len(), 1, "WAP asked the billing subscriber");

    // The resource provider: a durable usage ledger behind its /usage endpoint, registered with WAP.
    let usage_auth = BasicCredentials::new("wapusage", "Rp-Us4ge!");
    let rp_ledger = UsageLedger::open(dir.path().join("rp-usage.db")).await?;
    let rp = RpServer::builder(PROVIDER)
        .usage("/", EndpointAuth::basic(usage_auth.clone()), rp_ledger.clone())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await?;
    sim.register_resource_provider(
        RpRegistration::new(PROVIDER).usage(rp.base_url().parse()?, Some(usage_auth)).batch_size(150),
    );
    sim.start_collector(PROVIDER, Duration::from_millis(10));

    // Metering while WAP's collector polls and the adapter syncs.
    let mut expected_storage = 0.0;
    for batch in 0..BATCHES {
        let records: Vec<RpUsageRecord> =
            (0..PER_BATCH).map(|i| metered(&subscription, batch * PER_BATCH + i)).collect();
        expected_storage += records.iter().filter_map(|r| r.resources.get_f64("StorageGB")).sum::<f64>();
        rp_ledger.append_all(records).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let total = (BATCHES * PER_BATCH) as u64;
    until("WAP's collector stored every metered record", async || sim.usage_count() >= total).await;
    sim.stop_collector(PROVIDER);
    until("the ledger billed every record", async || ledger.usage_count().await.unwrap_or(0) >= total).await;
    adapter.sync(LIMIT).await?;

    // On WAP: each provider record exactly once, attributed to the provider.
    let wap_records = sim.usage_records();
    assert_eq!(wap_records.len() as u64, total);
    let external: BTreeSet<i64> =
        wap_records.iter().map(|r| r.external_record_id.as_deref().unwrap_or("").parse().unwrap_or(-1)).collect();
    assert_eq!(external, (1..=total as i64).collect(), "every provider EventId exactly once");
    assert!(wap_records.iter().all(|r| r.provider_name.as_deref() == Some(PROVIDER)));

    // In the billing ledger: exactly WAP's usage, under the approved subscription, and never the denied purchase.
    assert_eq!(ledger.usage_event_ids().await?, sim.usage_ids());
    assert_eq!(ledger.usage_count().await?, total);
    let storage: f64 = ledger
        .usage_totals()
        .await?
        .iter()
        .filter(|t| t.subscription_id.eq_ignore_ascii_case(&subscription) && t.meter == "StorageGB")
        .map(|t| t.quantity)
        .sum();
    assert_eq!(storage, expected_storage, "each record's meter counted once");
    assert!(ledger.has_subscription(&subscription).await?);
    let in_ledger = ledger.subscriptions().await?;
    assert_eq!(in_ledger.iter().filter(|s| s.account.as_deref() == Some("erin@contoso.test")).count(), 1);
    assert!(
        !in_ledger.iter().any(|s| s.account.as_deref() == Some("mallory@fabrikam.test")),
        "the denied purchase never reached the billing system"
    );

    adapter.shutdown().await;
    rp.shutdown().await;
    sim.shutdown().await;
    Ok(())
}
