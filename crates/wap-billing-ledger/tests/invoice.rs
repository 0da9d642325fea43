//! Invoices a billing engineer reads: invoice number, period and currency; units per meter as the provider reports
//! them (whole numbers where the meter is whole); a suspended or deleted subscription's charge explained; unpriced
//! lines named with the reason. Each test reads the rendered invoice.

use wap_billing_engine::{EntityChange, EventContext, EventHandler, IdempotencyKey, UsageBatch, UsageHandler};
use wap_billing_ledger::{MeterUnit, SqliteLedger, DEFAULT_CURRENCY};
use wap_types::{
    AdminSubscription, AdminSubscriptionState, EventMethod, FeedKind, NotificationState, Plan, StringMap, UsageRecord,
    WapDateTime,
};

fn ctx(feed: FeedKind, event_id: i64) -> EventContext<'static> {
    EventContext {
        key: IdempotencyKey { feed, event_id },
        method: &EventMethod::Post,
        state: NotificationState::Acknowledged,
        entity_parent_id: None,
        time_created: None,
        raw_entity: "{}",
        attempt: 1,
        billing_id: None,
        identity: None,
        generation: 1,
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(3600),
    }
}

fn record(id: i64, hour: u32, provider: &str, meters: &[(&str, &str)]) -> UsageRecord {
    let mut resources = StringMap::new();
    for (k, v) in meters {
        resources.insert((*k).into(), (*v).into());
    }
    UsageRecord {
        event_id: id,
        start_time: WapDateTime::parse(&format!("2015-06-02T{hour:02}:00:00")).unwrap(),
        end_time: WapDateTime::parse(&format!("2015-06-02T{:02}:00:00", hour + 1)).unwrap(),
        provider_name: Some(provider.into()),
        subscription_id: "6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17".into(),
        resources,
        ..Default::default()
    }
}

/// Plan `gold` (priced 25), subscription `6f1a93c2-…` in `state`, and three hours of SQL and web-site usage.
async fn ledger_with(state: AdminSubscriptionState) -> (SqliteLedger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let l = SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap();
    let plan = Plan { id: "gold".into(), display_name: Some("Gold Hosting".into()), ..Default::default() };
    l.plan(&ctx(FeedKind::Plans, 1), EntityChange::Created(&plan)).await.unwrap();
    let sub = AdminSubscription {
        plan_id: Some("gold".into()),
        account_admin_live_email_id: Some("ana@contoso.test".into()),
        subscription_name: Some("Ana's hosting".into()),
        state: Some(state),
        ..AdminSubscription::with_id("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17")
    };
    l.subscription(&ctx(FeedKind::Subscriptions, 2), EntityChange::Created(&sub)).await.unwrap();
    l.set_plan_price("gold", 25.0).await.unwrap();
    l.set_meter_rate("mysqlservers", "DatabaseCount", 0.5).await.unwrap();
    l.set_meter_rate("webspaces", "TotalNetworkWrittenBytes", 0.01).await.unwrap();
    let records = vec![
        record(10, 8, "mysqlservers", &[("DatabaseCount", "2"), ("TotalAllottedSpace", "2048")]),
        record(11, 9, "mysqlservers", &[("DatabaseCount", "2"), ("TotalAllottedSpace", "2048")]),
        record(12, 10, "mysqlservers", &[("DatabaseCount", "2"), ("TotalAllottedSpace", "2048")]),
        record(13, 8, "webspaces", &[("TotalNetworkWrittenBytes", "12.25"), ("CPUPercentUtilization", "40")]),
        record(14, 9, "webspaces", &[("TotalNetworkWrittenBytes", "0.5"), ("CPUPercentUtilization", "20")]),
    ];
    l.apply_usage(UsageBatch::new(&records, 1)).await.unwrap();
    (l, dir)
}

fn line<'a>(text: &'a str, starts: &str) -> &'a str {
    text.lines().find(|l| l.trim_start().starts_with(starts)).unwrap_or_else(|| panic!("no {starts:?} line:\n{text}"))
}

#[tokio::test]
async fn an_invoice_shows_its_number_period_currency_and_units() {
    let (l, _dir) = ledger_with(AdminSubscriptionState::Active).await;
    let invoice = l.invoice("6F1A93C2-0B7E-4D51-9A3E-5C2B8E0D4F17").await.unwrap().unwrap();
    let text = invoice.to_string();
    println!("{text}");

    assert_eq!(invoice.invoice_number, "INV-20150602-6F1A93C2");
    assert!(line(&text, "Invoice").contains("INV-20150602-6F1A93C2"), "{text}");
    assert!(line(&text, "Period").contains("2015-06-02 08:00 to 2015-06-02 11:00 UTC"), "{text}");
    assert_eq!(invoice.currency, DEFAULT_CURRENCY);
    assert!(line(&text, "Currency").contains("USD"), "{text}");
    assert!(line(&text, "5 usage record").contains("Total USD"), "{text}");

    // Units as the provider reports them; whole numbers for whole meters, no decimals.
    let space = line(&text, "Usage   mysqlservers TotalAllottedSpace");
    assert!(space.contains(" 6144 ") && space.contains(" MB "), "{space}");
    assert!(!space.contains("6144.00"), "{space}");
    let dbs = line(&text, "Usage   mysqlservers DatabaseCount");
    assert!(dbs.contains(" 6 ") && dbs.contains("databases") && dbs.ends_with("3.00"), "{dbs}");
    // The web-site "…Bytes" meters are reported in MB, with decimals (never fractional bytes).
    let written = line(&text, "Usage   webspaces TotalNetworkWrittenBytes");
    assert!(written.contains("12.75") && written.contains(" MB "), "{written}");
    assert!(!text.contains("bytes "), "no unit in bytes with decimals:\n{text}");
    // A percentage is averaged, not summed.
    let cpu = line(&text, "Usage   webspaces CPUPercentUtilization");
    assert!(cpu.contains(" 30 ") && cpu.contains("% (avg)"), "{cpu}");
    assert!(text.contains("Quantities are the sum of each meter"), "{text}");
    // 25 + 6 × 0.5 + 12.75 × 0.01
    assert!((invoice.total() - 28.1275).abs() < 1e-9, "{}", invoice.total());
    assert!(line(&text, "5 usage record").ends_with("28.13"), "{text}");

    l.set_currency("eur").await.unwrap();
    let text = l.invoice("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17").await.unwrap().unwrap().to_string();
    assert!(line(&text, "Currency").contains("EUR") && text.contains("Total EUR"), "{text}");
}

#[tokio::test]
async fn unpriced_lines_are_listed_as_unpriced_with_the_reason() {
    let (l, _dir) = ledger_with(AdminSubscriptionState::Active).await;
    let text = l.invoice("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17").await.unwrap().unwrap().to_string();
    let space = line(&text, "Usage   mysqlservers TotalAllottedSpace");
    assert!(space.contains("unpriced") && space.trim_end().ends_with('-'), "{space}");
    assert!(
        text.contains(
            "Usage mysqlservers TotalAllottedSpace not charged: no rate for mysqlservers TotalAllottedSpace in the \
             price list (set one with SqliteLedger::set_meter_rate)."
        ),
        "{text}"
    );
    assert!(!text.contains("DatabaseCount not charged"), "priced meters carry no note:\n{text}");
}

#[tokio::test]
async fn a_suspended_subscriptions_full_fee_is_explained() {
    let (l, _dir) = ledger_with(AdminSubscriptionState::Suspended).await;
    let invoice = l.invoice("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17").await.unwrap().unwrap();
    let text = invoice.to_string();
    assert!(line(&text, "Account").contains("(suspended)"), "{text}");
    assert!(line(&text, "Plan    Gold Hosting").ends_with("25.00"), "{text}");
    assert!(text.contains("Suspended subscription: WAP keeps its resources"), "{text}");
    assert!(text.contains("not prorated"), "{text}");

    let (l, _dir) = ledger_with(AdminSubscriptionState::Active).await;
    let text = l.invoice("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17").await.unwrap().unwrap().to_string();
    assert!(!text.contains("prorated"), "an active subscription needs no note:\n{text}");
}

#[tokio::test]
async fn a_deleted_subscriptions_charge_is_explained() {
    let (l, _dir) = ledger_with(AdminSubscriptionState::Active).await;
    let sub = AdminSubscription::with_id("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17");
    l.subscription(&ctx(FeedKind::Subscriptions, 3), EntityChange::Deleted(&sub)).await.unwrap();
    let text = l.invoice("6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17").await.unwrap().unwrap().to_string();
    assert!(line(&text, "Account").contains("(deleted)"), "{text}");
    assert!(text.contains("Deleted subscription: the monthly fees are charged in full"), "{text}");
    assert!(text.contains("usage up to the deletion is charged"), "{text}");
}

#[tokio::test]
async fn a_subscription_without_usage_has_an_open_invoice_and_no_period() {
    let dir = tempfile::tempdir().unwrap();
    let l = SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap();
    let sub = AdminSubscription {
        plan_id: Some("silver".into()),
        state: Some(AdminSubscriptionState::Active),
        ..AdminSubscription::with_id("a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d")
    };
    l.subscription(&ctx(FeedKind::Subscriptions, 1), EntityChange::Created(&sub)).await.unwrap();
    let invoice = l.invoice("a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d").await.unwrap().unwrap();
    assert_eq!(invoice.invoice_number, "INV-OPEN-A0B1C2D3");
    assert_eq!(invoice.period, None);
    let text = invoice.to_string();
    assert!(line(&text, "Period").contains("no usage recorded"), "{text}");
    assert!(line(&text, "Plan").contains("unpriced"), "{text}");
    assert!(text.contains("Plan not charged: it has no price in the price list"), "{text}");
}

#[test]
fn meter_units_follow_the_provider() {
    assert_eq!(MeterUnit::of("MySqlServers", "totalallottedspace").unit, "MB");
    assert!(MeterUnit::of("sqlservers", "DatabaseCount").whole);
    assert_eq!(MeterUnit::of("webspaces", "TotalIncomingRequestBytes").unit, "MB");
    assert!(!MeterUnit::of("webspaces", "TotalIncomingRequestBytes").whole);
    assert_eq!(MeterUnit::of("systemcenter", "MemoryAllocatedMB").unit, "MB");
    assert_eq!(MeterUnit::of("systemcenter", "DiskAllocatedGB").unit, "GB");
    assert!(MeterUnit::of("systemcenter", "CPUPercentUtilization").averaged);
    let bytes = MeterUnit::of("backup", "StoredBytes");
    assert!(bytes.unit == "bytes" && bytes.whole, "bytes are whole: {bytes:?}");
    assert_eq!(MeterUnit::of("custom", "Widgets").unit, "units");
}
