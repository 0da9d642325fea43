//! The reference ledger: idempotent events and usage, its dependency and failure policies, the approval rules and
//! prices it answers, and its invoices.

use std::sync::Arc;

use wap_billing_engine::responder::{AddOnApproval, PricingResponder, SubscriptionApproval, SubscriptionApprover};
use wap_billing_engine::{
    EntityChange, EventContext, EventHandler, HandlerError, IdempotencyKey, UsageBatch, UsageHandler,
};
use wap_billing_ledger::{AccountStanding, SqliteLedger};
use wap_types::{
    AddonPriceQuery, AdminSubscription, AdminSubscriptionState, Decision, EventMethod, FeedKind, NotificationState,
    Plan, PlanAddon, PlanAddonReference, PlanPriceQuery, StringMap, UsageEvent, UsageRecord, WapDateTime,
};

async fn ledger() -> (SqliteLedger, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap(), dir)
}

fn raw() -> &'static str {
    "{}"
}

fn ctx<'a>(feed: FeedKind, event_id: i64, parent: Option<&'a str>, raw: &'a str) -> EventContext<'a> {
    EventContext {
        key: IdempotencyKey { feed, event_id },
        method: &EventMethod::Post,
        state: NotificationState::Acknowledged,
        entity_parent_id: parent,
        time_created: None,
        raw_entity: raw,
        attempt: 1,
        billing_id: None,
        identity: None,
        generation: 1,
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(3600),
    }
}

fn plan(id: &str, name: Option<&str>) -> Plan {
    Plan { id: id.into(), display_name: name.map(Into::into), ..Default::default() }
}

fn subscription(id: &str, plan: &str, account: &str) -> AdminSubscription {
    AdminSubscription {
        plan_id: Some(plan.into()),
        account_admin_live_email_id: Some(account.into()),
        subscription_name: Some("Gold".into()),
        state: Some(AdminSubscriptionState::Active),
        ..AdminSubscription::with_id(id)
    }
}

fn record(id: i64, sub: &str, dbs: &str) -> UsageRecord {
    let mut resources = StringMap::new();
    resources.insert("DatabaseCount".into(), dbs.into());
    resources.insert("TotalAllottedSpace".into(), "1024".into());
    UsageRecord {
        event_id: id,
        start_time: WapDateTime::parse("2015-06-02T08:00:00").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00").unwrap(),
        provider_name: Some("mysqlservers".into()),
        subscription_id: sub.into(),
        resources,
        ..Default::default()
    }
}

/// A catalogue with plan `gold` and add-on `backup`, and subscription `SUB-1` of `ana@contoso.test`.
async fn seeded() -> (SqliteLedger, tempfile::TempDir) {
    let (l, dir) = ledger().await;
    let r = raw();
    l.plan(&ctx(FeedKind::Plans, 1, None, r), EntityChange::Created(&plan("Gold", Some("Gold Hosting"))))
        .await
        .unwrap();
    let addon = PlanAddon { id: "backup".into(), display_name: Some("Backup".into()), ..Default::default() };
    l.addon(&ctx(FeedKind::Addons, 2, None, r), EntityChange::Created(&addon)).await.unwrap();
    l.subscription(
        &ctx(FeedKind::Subscriptions, 3, None, r),
        EntityChange::Created(&subscription("SUB-1", "gold", "ana@contoso.test")),
    )
    .await
    .unwrap();
    (l, dir)
}

#[tokio::test]
async fn a_repeated_event_changes_nothing_and_a_patch_keeps_absent_members() {
    let (l, _dir) = seeded().await;
    let r = raw();
    // The same key again, even with another entity: already applied, nothing changes.
    let renamed = plan("gold", Some("Renamed"));
    l.plan(&ctx(FeedKind::Plans, 1, None, r), EntityChange::Updated(&renamed)).await.unwrap();
    let stats = l.stats();
    assert_eq!((stats.events_applied, stats.events_repeated), (3, 1));
    assert_eq!(l.repeated_deliveries().await.unwrap(), (1, 0), "kept in the database too");
    let invoice = l.invoice("sub-1").await.unwrap().unwrap();
    assert_eq!(invoice.plan_name.as_deref(), Some("Gold Hosting"));

    // A Patch without DisplayName keeps it; a new key applies.
    let patch = Plan { state: Some(wap_types::PlanState::Public), ..plan("GOLD", None) };
    l.plan(&ctx(FeedKind::Plans, 10, None, r), EntityChange::Patched(&patch)).await.unwrap();
    let invoice = l.invoice("SUB-1").await.unwrap().unwrap();
    assert_eq!(invoice.plan_name.as_deref(), Some("Gold Hosting"), "absent member unchanged");
    assert_eq!(l.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1, 10]);

    // A deleted subscription is kept for its invoice, marked deleted.
    let sub = AdminSubscription::with_id("sub-1");
    l.subscription(&ctx(FeedKind::Subscriptions, 11, None, r), EntityChange::Deleted(&sub)).await.unwrap();
    let subs = l.subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert!(subs[0].deleted);
    assert_eq!(l.invoice("sub-1").await.unwrap().unwrap().status, "deleted");
}

#[tokio::test]
async fn usage_is_stored_once_per_record_whatever_the_batch_boundaries() {
    let (l, _dir) = seeded().await;
    let records: Vec<UsageRecord> = (100..110).map(|id| record(id, "sub-1", "2")).collect();
    l.apply_usage(UsageBatch::new(&records[..6], 1)).await.unwrap();
    // Re-delivered with other boundaries (a crash before the engine's commit, then a new page).
    l.apply_usage(UsageBatch::new(&records[3..], 1)).await.unwrap();
    l.apply_usage(UsageBatch::new(&records, 2)).await.unwrap();
    assert_eq!(l.usage_event_ids().await.unwrap(), (100..110).collect::<Vec<_>>());
    let stats = l.stats();
    assert_eq!((stats.usage_records_stored, stats.usage_records_repeated), (10, 13));
    let totals = l.usage_totals().await.unwrap();
    let dbs = totals.iter().find(|t| t.meter == "DatabaseCount").unwrap();
    assert_eq!((dbs.quantity, dbs.records), (20.0, 10), "each record counted once");
    assert_eq!(dbs.subscription_id, "sub-1");
}

#[tokio::test]
async fn unknown_subscriptions_wait_and_unreadable_meters_name_their_record() {
    let (l, _dir) = seeded().await;
    let early = [record(200, "sub-2", "1")];
    let err = l.apply_usage(UsageBatch::new(&early, 1)).await.unwrap_err();
    assert!(err.is_dependency_not_ready(), "{err}");
    assert!(l.usage_event_ids().await.unwrap().is_empty(), "nothing half-stored");

    let batch = [record(201, "sub-1", "1"), record(202, "sub-1", "many")];
    let err = l.apply_usage(UsageBatch::new(&batch, 1)).await.unwrap_err();
    assert!(matches!(err, HandlerError::Failed { .. }));
    assert_eq!(err.record_event_id(), Some(202), "{err}");
    assert!(err.to_string().contains("\"many\""), "{err}");

    let r = raw();
    let addon =
        PlanAddonReference { add_on_id: "backup".into(), add_on_instance_id: Some("i-1".into()), ..Default::default() };
    let err = l
        .subscription_addon(&ctx(FeedKind::SubscriptionAddons, 20, Some("sub-2"), r), EntityChange::Created(&addon))
        .await
        .unwrap_err();
    assert!(err.is_dependency_not_ready(), "{err}");
    let err = l
        .subscription_addon(&ctx(FeedKind::SubscriptionAddons, 21, None, r), EntityChange::Created(&addon))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("EntityParentId"), "{err}");
}

fn create_subscription(plan: &str, account: &str) -> SubscriptionApproval {
    let entity = subscription("new-sub", plan, account);
    SubscriptionApproval::new(UsageEvent::new(50, NotificationState::PendingApproval, EventMethod::Post, entity))
}

fn create_addon(addon: &str, subscription: &str) -> AddOnApproval {
    let entity = PlanAddonReference { add_on_id: addon.into(), ..Default::default() };
    AddOnApproval::new(
        UsageEvent::new(51, NotificationState::PendingApproval, EventMethod::Post, entity).with_parent(subscription),
    )
}

#[tokio::test]
async fn approvals_follow_the_default_rules_on_the_ledgers_data() {
    let (l, _dir) = seeded().await;
    let approver = l.approver();
    assert_eq!(
        approver.create_subscription(create_subscription("GOLD", "bob@contoso.test")).await.unwrap(),
        Decision::Approve
    );
    let unknown = approver.create_subscription(create_subscription("platinum", "bob@contoso.test")).await.unwrap();
    assert!(matches!(&unknown, Decision::Deny { reason } if reason.contains("platinum")), "{unknown:?}");
    let lenient = l.approver().approve_unknown_plans(true);
    assert_eq!(
        lenient.create_subscription(create_subscription("platinum", "bob@contoso.test")).await.unwrap(),
        Decision::Approve
    );

    l.set_account_standing("Ana@Contoso.test", AccountStanding::Overdue).await.unwrap();
    assert_eq!(l.account_standing("ana@contoso.test").await.unwrap(), Some(AccountStanding::Overdue));
    let overdue = approver.create_subscription(create_subscription("gold", "ana@contoso.test")).await.unwrap();
    assert!(matches!(&overdue, Decision::Deny { reason } if reason.contains("overdue")), "{overdue:?}");
    let overdue = approver.create_subscription_addon(create_addon("backup", "SUB-1")).await.unwrap();
    assert!(!overdue.is_approve(), "the subscription's account is overdue");
    l.set_account_standing("ana@contoso.test", AccountStanding::Good).await.unwrap();
    assert_eq!(approver.create_subscription_addon(create_addon("BACKUP", "sub-1")).await.unwrap(), Decision::Approve);
    assert!(!approver.create_subscription_addon(create_addon("nope", "sub-1")).await.unwrap().is_approve());
    assert!(!approver.create_subscription_addon(create_addon("backup", "sub-9")).await.unwrap().is_approve());
}

#[tokio::test]
async fn prices_and_invoices_come_from_the_price_list() {
    let (l, _dir) = seeded().await;
    let l = Arc::new(l);
    l.set_plan_price("gold", 25.0).await.unwrap();
    l.set_addon_price("backup", 4.0).await.unwrap();
    l.set_meter_rate("MySqlServers", "databasecount", 0.5).await.unwrap();
    let q = PlanPriceQuery { id: "GOLD".into(), region: None, username: None };
    assert_eq!(l.plan_price(&q).await.as_deref(), Some("Gold Hosting: $25.00 per month + usage"));
    let q = AddonPriceQuery { id: "backup".into(), region: None, username: None, subscription_id: None };
    assert_eq!(l.addon_price(&q).await.as_deref(), Some("Backup: $4.00 per month"));
    let q = PlanPriceQuery { id: "unknown".into(), region: None, username: None };
    assert_eq!(l.plan_price(&q).await, None, "unknown id: empty price");

    let r = raw();
    for (id, instance) in [(30, "i-1"), (31, "i-2")] {
        let a = PlanAddonReference {
            add_on_id: "backup".into(),
            add_on_instance_id: Some(instance.into()),
            ..Default::default()
        };
        l.subscription_addon(&ctx(FeedKind::SubscriptionAddons, id, Some("SUB-1"), r), EntityChange::Created(&a))
            .await
            .unwrap();
    }
    let removed =
        PlanAddonReference { add_on_id: "backup".into(), add_on_instance_id: Some("i-2".into()), ..Default::default() };
    l.subscription_addon(&ctx(FeedKind::SubscriptionAddons, 32, Some("sub-1"), r), EntityChange::Deleted(&removed))
        .await
        .unwrap();
    let records: Vec<UsageRecord> = (1..=4).map(|id| record(id, "sub-1", "3")).collect();
    l.apply_usage(UsageBatch::new(&records, 1)).await.unwrap();

    let invoice = l.invoice("sub-1").await.unwrap().unwrap();
    assert_eq!(invoice.add_ons.len(), 2);
    assert_eq!(invoice.add_ons.iter().filter(|a| a.removed).count(), 1);
    assert_eq!(invoice.usage_quantity("mysqlservers", "DatabaseCount"), Some(12.0));
    assert_eq!(invoice.usage_records, 4);
    // 25 (plan) + 4 (one active add-on) + 12 × 0.5 (databases); TotalAllottedSpace has no rate.
    assert!((invoice.total() - 35.0).abs() < 1e-9, "{}", invoice.total());
    let text = invoice.to_string();
    assert!(text.contains("Plan    Gold Hosting"), "{text}");
    assert!(text.contains("Add-on  Backup (removed)"), "{text}");
    assert!(text.contains("Usage   mysqlservers DatabaseCount"), "{text}");
    assert!(text.contains("35.00"), "{text}");
    assert!(text.contains("4 usage record(s)"), "{text}");
}
