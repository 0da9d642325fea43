//! End to end against `wap-sim`: WAP's notification caller fans subscriptions out to providers built with the
//! SDK, validates quotas, and WAP's usage collector polls `/usage` while records are appended, across a
//! provider restart and a collector that re-sends an old `lastID`.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BackupVaults, PASSWORD, USER};
use url::Url;
use wap_resource_provider::{EndpointAuth, RegistrationBuilder, RpServer, RunningServer, UsageLedger};
use wap_sim::{CollectReport, RpRegistration, WapSim};
use wap_types::rp::{
    LifecycleState, QuotaUpdateBatch, QuotaUpdateResultBatch, RpSubscriptionState, RpUsageRecord, Subscription,
};
use wap_types::{BasicCredentials, LastId, ResourceProviderError, ServiceQuotaSetting, StringMap, WapDateTime};

fn creds() -> BasicCredentials {
    BasicCredentials::new(USER, PASSWORD)
}

async fn sim() -> WapSim {
    WapSim::builder().empty().start().await.expect("sim starts")
}

async fn start_provider(name: &str, handler: BackupVaults, ledger: UsageLedger, addr: SocketAddr) -> RunningServer {
    RpServer::builder(name)
        .notification("/admin", EndpointAuth::basic(creds()), handler)
        .usage("/", EndpointAuth::basic(BasicCredentials::new("collector", "C0llect!")), ledger)
        .bind(addr)
        .await
        .expect("provider starts")
}

/// Registers the provider with the sim from the SDK's own registration object.
fn register(sim: &WapSim, name: &str, server: &RunningServer) {
    let base = server.base_url();
    let registration = RegistrationBuilder::new(name)
        .allow_http(true)
        .notification_endpoint(format!("{base}admin"), &EndpointAuth::basic(creds()))
        .usage_endpoint(base, &EndpointAuth::basic(BasicCredentials::new("collector", "C0llect!")))
        .build()
        .unwrap();
    let rp = RpRegistration::from_resource_provider(registration.resource_provider()).unwrap().batch_size(2000);
    sim.register_resource_provider(rp);
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn subscription(id: &str, max_vaults: &str) -> Subscription {
    Subscription {
        subscription_id: id.into(),
        subscription_name: Some("Backup Basic".into()),
        state: RpSubscriptionState::Active,
        quota_settings: Some(vec![ServiceQuotaSetting::new("MaxVaults", max_vaults)]),
        admin_id: Some("ana.ribeiro@fabrikam.test".into()),
        co_admin_ids: Some(vec![]),
        ..Default::default()
    }
}

#[tokio::test]
async fn subscription_fan_out_creates_updates_and_deletes_through_the_handlers() {
    let sim = sim().await;
    let backup = BackupVaults::new(10);
    let archive = BackupVaults::new(10);
    let s1 = start_provider("backup", backup.clone(), UsageLedger::in_memory(), loopback()).await;
    let s2 = start_provider("archive", archive.clone(), UsageLedger::in_memory(), loopback()).await;
    register(&sim, "backup", &s1);
    register(&sim, "archive", &s2);

    let id = "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796";
    let answers = sim.fan_out_subscription(&subscription(id, "2")).await;
    assert_eq!(answers.len(), 2);
    for (name, answer) in &answers {
        let r = answer.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status, 202, "{name}: asynchronous create");
        let s: Subscription = r.json().unwrap();
        assert_eq!(s.lifecycle_state, Some(LifecycleState::Provisioning));
    }
    for (name, provider) in [("backup", &backup), ("archive", &archive)] {
        let n = sim.notifications(name);
        // WAP polls until provisioned.
        let r = n.get_subscription(id).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json::<Subscription>().unwrap().lifecycle_state, Some(LifecycleState::Provisioned));
        // Suspend: RP state 1.
        let mut suspended = subscription(id, "2");
        suspended.state = RpSubscriptionState::Suspended;
        let r = n.update_subscription(&suspended).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(provider.subscription(id).unwrap().state, RpSubscriptionState::Suspended);
        // Delete: 202, Deleting while it runs, 404 once done.
        assert_eq!(n.delete_subscription(id).await.unwrap().status, 202);
        let pending: Subscription = n.get_subscription(id).await.unwrap().json().unwrap();
        assert_eq!(
            (pending.state, pending.lifecycle_state),
            (RpSubscriptionState::DeletePending, Some(LifecycleState::Deleting))
        );
        provider.finish_deletions();
        let gone = n.get_subscription(id).await.unwrap();
        assert_eq!(gone.status, 404);
        assert_eq!(gone.json::<ResourceProviderError>().unwrap().code, "SubscriptionNotFound");
        // A second delete of the now unknown id: 200.
        assert_eq!(n.delete_subscription(id).await.unwrap().status, 200);
        // Every call carried WAP's headers, decoded.
        let seen = provider.seen();
        assert!(seen.len() >= 6);
        for call in seen {
            assert_eq!(call.principal.as_deref(), Some("corp\\wapadmin"), "{call:?}");
            assert!(call.request_id.is_some() && call.session_id.is_some(), "{call:?}");
        }
        // Default quota comes with the alias header only.
        let r = n.default_quota().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json::<Vec<ServiceQuotaSetting>>().unwrap()[0].key, "MaxVaults");
    }
    // A provisioning that fails is reported OutOfSync with the reason.
    let n = sim.notifications("backup");
    let big = subscription("ac4579dd-cfd3-4762-92cb-78ca11cead00", "50");
    assert_eq!(n.create_subscription(&big).await.unwrap().status, 202);
    let failed: Subscription = n.get_subscription(&big.subscription_id).await.unwrap().json().unwrap();
    assert_eq!(failed.lifecycle_state, Some(LifecycleState::OutOfSync));
    assert!(failed.last_error_message.unwrap().contains("storage cluster"));
    s1.shutdown().await;
    s2.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn quota_validation_rejects_with_a_message_in_the_callers_language() {
    let sim = sim().await;
    let provider = BackupVaults::new(10);
    let server = start_provider("backup", provider.clone(), UsageLedger::in_memory(), loopback()).await;
    register(&sim, "backup", &server);
    let bad = QuotaUpdateBatch {
        base_quota: Some(vec![ServiceQuotaSetting::new("MaxVaults", "many")]),
        subscription_ids_to_update: Some(vec!["s1".into()]),
        ..Default::default()
    };
    let r = sim.notifications("backup").validate_quota(&bad).await.unwrap();
    assert_eq!(r.status, 400);
    let e: ResourceProviderError = r.json().unwrap();
    assert_eq!(e.code, "InvalidQuota");
    assert_eq!(e.message, "MaxVaults must be a whole number between 0 and 50; the value 'many' is not valid.");
    let r = sim.notifications("backup").accept_language("pt-PT,en;q=0.5").validate_quota(&bad).await.unwrap();
    assert_eq!(r.status, 400);
    let e: ResourceProviderError = r.json().unwrap();
    assert!(e.message.starts_with("MaxVaults tem de ser"), "{}", e.message);
    // A valid quota validates with 200 and no body, and an update applies it per subscription.
    provider.seed(subscription("s1", "2"));
    let good = QuotaUpdateBatch {
        base_quota: Some(vec![ServiceQuotaSetting::new("MaxVaults", "5")]),
        subscription_ids_to_update: Some(vec!["s1".into(), "missing".into()]),
        ..Default::default()
    };
    let n = sim.notifications("backup").for_plan("Silverq7k2d9w");
    let r = n.validate_quota(&good).await.unwrap();
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = n.update_quota(&good).await.unwrap();
    assert_eq!(r.status, 200);
    let result: QuotaUpdateResultBatch = r.json().unwrap();
    assert_eq!(result.updated_subscription_ids, Some(vec!["s1".to_owned()]));
    assert_eq!(result.failed_subscription_ids, Some(vec!["missing".to_owned()]));
    assert_eq!(provider.subscription("s1").unwrap().quota_settings.unwrap()[0].value, "5");
    let referer = provider.seen().last().unwrap().referer.clone().unwrap();
    assert!(referer.ends_with("plans/Silverq7k2d9w/quota"), "{referer}");
    server.shutdown().await;
    sim.shutdown().await;
}

fn usage_record(i: u64) -> RpUsageRecord {
    RpUsageRecord {
        subscription_id: format!("00000000-0000-0000-0000-{:012}", i % 97),
        resource_id: Some(format!("vault-{i}")),
        start_time: WapDateTime::parse("2015-06-02T08:00:00.0000000Z").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00.0000000Z").unwrap(),
        service_type: Some("Default".into()),
        resources: [("ProtectedDataMB".to_owned(), (i * 7).to_string()), ("Seq".to_owned(), i.to_string())]
            .into_iter()
            .collect::<StringMap>(),
        ..Default::default()
    }
}

/// Appends `range` in seeded random batch sizes, yielding between batches so the collector interleaves.
async fn append_range(ledger: &UsageLedger, range: std::ops::Range<u64>, rng: &mut fastrand::Rng) {
    let mut next = range.start;
    while next < range.end {
        let n = rng.u64(1..=600).min(range.end - next);
        let records: Vec<RpUsageRecord> = (next..next + n).map(usage_record).collect();
        let ids = ledger.append_all(records).await.unwrap();
        assert_eq!(*ids.end() - *ids.start() + 1, n as i64);
        next += n;
        tokio::task::yield_now().await;
    }
}

/// Runs `collect_usage_once` in a loop until stopped, keeping every report (errors are expected while the
/// provider is down).
fn spawn_collector(
    sim: &WapSim,
    stop: Arc<AtomicBool>,
    reports: Arc<Mutex<Vec<CollectReport>>>,
) -> tokio::task::JoinHandle<u32> {
    let sim = sim.clone();
    tokio::spawn(async move {
        let mut errors = 0;
        while !stop.load(Ordering::SeqCst) {
            match sim.collect_usage_once("backup").await {
                Ok(r) => reports.lock().unwrap().push(r),
                Err(_) => errors += 1,
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        errors
    })
}

async fn wait_for_collected(sim: &WapSim, count: usize) {
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if sim.usage_count() as usize >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the collector did not reach {count} records; it has {}", sim.usage_count()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_records_arrive_exactly_once_across_a_restart_and_an_old_last_id() {
    const TOTAL: u64 = 100_000;
    const BEFORE_RESTART: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usage.db");
    let sim = sim().await;
    let mut rng = fastrand::Rng::with_seed(2015);

    // Phase 1: append 50,000 while the collector polls.
    let ledger = UsageLedger::open(&path).await.unwrap();
    let server = start_provider("backup", BackupVaults::default(), ledger.clone(), loopback()).await;
    let addr = server.local_addr();
    register(&sim, "backup", &server);
    let stop = Arc::new(AtomicBool::new(false));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let collector = spawn_collector(&sim, stop.clone(), reports.clone());
    append_range(&ledger, 0..BEFORE_RESTART / 2, &mut rng).await;
    // An early lastID the collector will later re-send.
    let old_last_id = sim.collector_last_id("backup").unwrap();
    append_range(&ledger, BEFORE_RESTART / 2..BEFORE_RESTART, &mut rng).await;

    // The provider goes down without a graceful stop, mid-collection, and comes back on the same address
    // with the ledger reopened from its file.
    drop(server);
    drop(ledger);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ledger = UsageLedger::open(&path).await.unwrap();
    assert_eq!(ledger.stats().await.unwrap().highest_issued, BEFORE_RESTART as i64, "every append survived");
    let server = start_provider("backup", BackupVaults::default(), ledger.clone(), addr).await;

    // Once the collector has acknowledged what it holds, it re-sends an old lastID.
    stop.store(true, Ordering::SeqCst);
    collector.await.unwrap();
    sim.collect_usage_once("backup").await.expect("collection after the restart");
    let acknowledged = sim.collector_last_id("backup").unwrap();
    assert!(old_last_id < acknowledged, "{old_last_id:?} < {acknowledged:?}");
    sim.set_collector_last_id("backup", old_last_id);

    // Phase 2: the other 50,000, collector running again.
    stop.store(false, Ordering::SeqCst);
    let collector = spawn_collector(&sim, stop.clone(), reports.clone());
    append_range(&ledger, BEFORE_RESTART..TOTAL, &mut rng).await;
    wait_for_collected(&sim, TOTAL as usize).await;
    stop.store(true, Ordering::SeqCst);
    let errors = collector.await.unwrap();
    let last = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!(last.records, 0, "nothing left");

    // Exactly once: every provider EventId 1..=100,000 appears once on WAP's /usage feed, with its meters.
    let stored = sim.usage_records();
    assert_eq!(stored.len(), TOTAL as usize, "no duplicates");
    let mut by_external: BTreeMap<i64, &wap_types::UsageRecord> = BTreeMap::new();
    for r in &stored {
        let ext: i64 = r.external_record_id.as_deref().unwrap().parse().unwrap();
        assert!(by_external.insert(ext, r).is_none(), "EventId {ext} arrived twice");
        assert_eq!(r.provider_name.as_deref(), Some("backup"));
    }
    assert_eq!(by_external.keys().copied().collect::<Vec<_>>(), (1..=TOTAL as i64).collect::<Vec<_>>());
    for (ext, r) in by_external.iter().step_by(997) {
        let i = (*ext - 1) as u64;
        assert_eq!(r.resources.get("Seq").map(String::as_str), Some(i.to_string().as_str()), "record {ext}");
        assert_eq!(r.subscription_id, usage_record(i).subscription_id);
    }
    for r in reports.lock().unwrap().iter() {
        assert!(r.anomalies.is_empty(), "collector anomalies: {:?}", r.anomalies);
    }
    let stats = ledger.stats().await.unwrap();
    assert_eq!((stats.pending, stats.acknowledged_through), (0, TOTAL as i64), "all acknowledged and compacted");
    // Some collections failed while the provider was down; none lost or repeated anything.
    let _ = errors;
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_input_end_to_end() {
    let sim = sim().await;
    let ledger = UsageLedger::in_memory();
    let provider = BackupVaults::new(10);
    let server = start_provider("backup", provider.clone(), ledger.clone(), loopback()).await;
    register(&sim, "backup", &server);
    ledger.append_all((0..5).map(usage_record).collect()).await.unwrap();

    // A collector with a lastID beyond anything issued (a lost or recreated ledger) acknowledges nothing: the ids
    // move past it and the five records, never served, arrive with new ids above it.
    sim.set_collector_last_id("backup", LastId::new(99_999));
    let r = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!(r.records, 5);
    // (The collection goes on until an empty page, whose lastID acknowledges them.)
    let stats = ledger.stats().await.unwrap();
    assert_eq!((stats.pending, stats.highest_issued, stats.last_ids_beyond_issued), (0, 100_004, 1));
    assert_eq!(stats.acknowledged_through, 100_004);
    // New appends continue above.
    assert_eq!(sim.collect_usage_once("backup").await.unwrap().records, 0);
    assert_eq!(ledger.append(usage_record(5)).await.unwrap(), 100_005);
    assert_eq!(sim.collect_usage_once("backup").await.unwrap().records, 1);

    // Wrong credentials registered for both endpoints: 401 with an error body, nothing reaches the handler.
    let base = Url::parse(&server.base_url()).unwrap();
    let wrong = BasicCredentials::new(USER, "not-the-password");
    sim.register_resource_provider(
        RpRegistration::new("backup")
            .notification(base.join("admin").unwrap(), Some(wrong.clone()))
            .usage(base.clone(), Some(wrong)),
    );
    let before = provider.seen().len();
    let r = sim.notifications("backup").create_subscription(&subscription("x", "1")).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json::<ResourceProviderError>().unwrap().code, "Unauthorized");
    assert!(sim.collect_usage_once("backup").await.is_err(), "the collector is refused");
    assert_eq!(provider.seen().len(), before);

    // A notification endpoint registered at the wrong path: 404 with an error body.
    sim.register_resource_provider(
        RpRegistration::new("backup").notification(base.join("nope").unwrap(), Some(creds())),
    );
    let r = sim.notifications("backup").get_subscription("x").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.json::<ResourceProviderError>().is_ok());
    server.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_collector_last_id_above_what_was_served_gets_the_unserved_records() {
    let sim = sim().await;
    let ledger = UsageLedger::in_memory();
    let server = start_provider("backup", BackupVaults::new(10), ledger.clone(), loopback()).await;
    register(&sim, "backup", &server);
    ledger.append_all((0..10).map(usage_record).collect()).await.unwrap();
    // The review's probe over WAP's own collector: its cursor says 8, but nothing was ever served.
    sim.set_collector_last_id("backup", LastId::new(8));
    let r = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!(r.records, 10, "every record arrives; none is deleted unserved");
    let stats = ledger.stats().await.unwrap();
    // 1..=8 were renumbered 11..=18 (WAP's collector drops ids at or below its lastID), then acknowledged.
    assert_eq!((stats.pending, stats.acknowledged_through, stats.acknowledgements_above_served), (0, 18, 1));
    assert!(r.anomalies.is_empty(), "{:?}", r.anomalies);
    server.shutdown().await;
    sim.shutdown().await;
}
