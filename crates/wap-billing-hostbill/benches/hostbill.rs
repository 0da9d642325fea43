//! HostBill calls per 1,000 usage records (bulk and single calls), and pricing answers per second from
//! `HostBillPricing`'s cache beside the bare responder (`PriceTable`), in alternating rounds in one process.
//!
//! `cargo bench -p wap-billing-hostbill --bench hostbill` (`HOSTBILL_BENCH_ROUNDS`, default 5).

use std::convert::Infallible;
use std::time::{Duration, Instant};

use wap_billing_engine::usage_lines::{aggregate, UsageLines, UsagePeriod};
use wap_billing_engine::UsageHandler;
use wap_billing_hostbill::double::HostBillDouble;
use wap_billing_hostbill::{
    HostBillBilling, HostBillBillingConfig, HostBillClient, HostBillPricing, HostBillPricingConfig, UsageCalls,
};
use wap_responder::{
    serve, BasicCredentials, Decision, FnApprover, PriceTable, PricingResponder, Responder, ResponderConfig,
    ServerConfig,
};
use wap_sim::{DatasetSpec, NotificationSubscriber, WapSim};
use wap_types::testing::UsageRecordBuilder;
use wap_types::PlanPriceQuery;

const SUBSCRIPTIONS: usize = 40;
const RECORDS: usize = 10_000;
const BATCH: usize = 1_000;
const PRICE_CALLS: usize = 2_000;

async fn double_with_accounts() -> (HostBillDouble, HostBillClient, Vec<String>) {
    let double =
        HostBillDouble::builder().api_key("id", "key").product(10, 1, "WAP Gold", "25.00").start().await.unwrap();
    let client = HostBillClient::builder().url(double.url()).credentials("id", "key").build().unwrap();
    let mut subs = Vec::new();
    for i in 0..SUBSCRIPTIONS {
        let sub = format!("00000000-0000-4000-8000-{i:012}");
        let c = client
            .add_client(&wap_billing_hostbill::NewClient::from_email(&format!("t{i}@example.com")))
            .await
            .unwrap();
        client.add_order(c, 10, "m").await.unwrap();
        let account = client.get_client_accounts(c).await.unwrap()[0].id;
        client.edit_account_details(account, &[("domain", sub.clone()), ("status", "Active".into())]).await.unwrap();
        subs.push(sub);
    }
    (double, client, subs)
}

/// (HostBill calls per 1,000 records, records per second) for one mode.
async fn usage_round(calls: UsageCalls) -> (f64, f64) {
    let (double, client, subs) = double_with_accounts().await;
    let billing = HostBillBilling::new(client, HostBillBillingConfig::new().usage_calls(calls));
    let records: Vec<_> = (0..RECORDS)
        .map(|i| {
            UsageRecordBuilder::new(1 + i as i64, &subs[i % SUBSCRIPTIONS])
                .resource(&format!("db{}", i % 2))
                .meter("DatabaseCount", "2")
                .meter("TotalAllottedSpace", "10")
                .build()
        })
        .collect();
    // Warm the account lookups (once per subscription and process), then count.
    let first = aggregate(&records[..BATCH], UsagePeriod::Month).unwrap();
    let lines = UsageLines {
        lines: &first,
        records: &records[..BATCH],
        attempt: 1,
        generation: 0,
        deadline: tokio::time::Instant::now() + Duration::from_secs(600),
    };
    billing.apply_usage_lines(lines).await.unwrap();
    let before = double.total_calls();
    let started = Instant::now();
    for chunk in records[BATCH..].chunks(BATCH) {
        let agg = aggregate(chunk, UsagePeriod::Month).unwrap();
        let lines = UsageLines {
            lines: &agg,
            records: chunk,
            attempt: 1,
            generation: 0,
            deadline: tokio::time::Instant::now() + Duration::from_secs(600),
        };
        billing.apply_usage_lines(lines).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = (RECORDS - BATCH) as f64;
    ((double.total_calls() - before) as f64 * 1000.0 / n, n / elapsed)
}

async fn price_round<P: PricingResponder>(pricing: P, plan: &str) -> f64 {
    let credentials = BasicCredentials::new("wapbilling", "bench-password");
    let approver = FnApprover::new(
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
        |_| async { Ok::<_, Infallible>(Decision::Approve) },
    );
    let responder = Responder::with_pricing(approver, pricing, ResponderConfig::basic(credentials.clone()));
    let server =
        serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(), responder, ServerConfig::default()).unwrap();
    let spec =
        DatasetSpec { plans: 1, add_ons: 0, accounts: 0, subscriptions: 0, usage_records: 0, ..DatasetSpec::small() };
    let sim = WapSim::builder().seed(1).dataset(spec).start().await.unwrap();
    sim.register_subscriber(
        NotificationSubscriber::billing("b", url::Url::parse(&server.url()).unwrap()).with_auth(credentials),
    );
    let q = PlanPriceQuery { id: plan.into(), region: None, username: None };
    assert!(!sim.plan_price(q.clone()).await.unwrap().is_empty());
    let started = Instant::now();
    for _ in 0..PRICE_CALLS {
        sim.plan_price(q.clone()).await.unwrap();
    }
    let rate = PRICE_CALLS as f64 / started.elapsed().as_secs_f64();
    server.shutdown().await;
    sim.shutdown().await;
    rate
}

fn range(v: &[f64]) -> String {
    let (min, max) = v.iter().fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(*x), b.max(*x)));
    format!("{min:.2}–{max:.2}")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("HOSTBILL_BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let (mut bulk_calls, mut single_calls, mut speed_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let (double, client, _) = double_with_accounts().await;
    let pricing = HostBillPricing::new(client, HostBillPricingConfig::new().plan("GoldPlan", 10));
    pricing.refresh().await.unwrap();
    let table = PriceTable::new().plan("GoldPlan", "WAP Gold: $25.00 per month");
    let mut price_ratio = Vec::new();
    let (mut cached_rates, mut bare_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (bc, bs) = usage_round(UsageCalls::Bulk).await;
        let (sc, ss) = usage_round(UsageCalls::Single).await;
        bulk_calls.push(bc);
        single_calls.push(sc);
        speed_ratio.push(bs / ss);
        let cached = price_round(pricing.clone(), "GoldPlan").await;
        let bare = price_round(table.clone(), "GoldPlan").await;
        cached_rates.push(cached);
        bare_rates.push(bare);
        price_ratio.push(cached / bare);
    }
    drop(double);
    println!("usage: {RECORDS} records over {SUBSCRIPTIONS} subscriptions, 2 resources, 2 meters, batches of {BATCH}; {rounds} alternating rounds");
    println!("  HostBill calls per 1,000 records: bulk {} | single {}", range(&bulk_calls), range(&single_calls));
    println!("  records per second, bulk / single: {}", range(&speed_ratio));
    println!("pricing: {PRICE_CALLS} planPrice calls through wap-sim's caller per round");
    println!("  answers per second: HostBill cache {} | bare PriceTable {}", range(&cached_rates), range(&bare_rates));
    println!("  ratio cache / bare: {}", range(&price_ratio));
}
