//! Failover between two `Adapter`s sharing one state database (one SQLite file; PostgreSQL when
//! `WAP_BILLING_TEST_POSTGRES_URL` is set) and one billing system (the reference ledger): the standby reports the
//! leader and processes nothing; the leader crashes (aborted without releasing its leases); the standby takes over
//! both processors once the leases expire and finishes; every record and event is committed exactly once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{
    Adapter, ElectionMode, EngineConfig, HandlerError, Phase, ProcessorKind, StateStore, UsageBatch, UsageHandler,
};
use wap_billing_ledger::SqliteLedger;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::FeedKind;

const LIMIT: Duration = Duration::from_secs(60);
const TTL: Duration = Duration::from_millis(1_000);

/// The ledger, 20 ms slower per usage batch, so the leader is still busy when it crashes.
struct SlowUsage(Arc<SqliteLedger>);

#[async_trait]
impl UsageHandler for SlowUsage {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.apply_usage(batch).await
    }
}

async fn start(name: &str, sim: &WapSim, store: Arc<dyn StateStore>, ledger: &Arc<SqliteLedger>) -> Adapter {
    let config = EngineConfig::builder()
        .instance_id(name)
        .election_mode(ElectionMode::Elect)
        .lease_ttl(TTL)
        .sync_interval(Duration::from_millis(50))
        .retry_sleep(Duration::from_millis(20))
        .batch_size(200)
        .build()
        .unwrap();
    let client = UsageClient::builder().base_url(sim.usage_service_url().as_str()).basic_credentials(sim.credentials());
    Adapter::builder(config)
        .usage_service(client)
        .state_store(store)
        .event_handler(Arc::clone(ledger) as _)
        .usage_handler(Arc::new(SlowUsage(Arc::clone(ledger))))
        .start()
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn the_standby_adapter_takes_over(a_store: Arc<dyn StateStore>, b_store: Arc<dyn StateStore>) {
    let sim = WapSim::builder().seed(21).dataset(DatasetSpec::with_usage_records(20_000)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());

    let a = start("adapter-a", &sim, Arc::clone(&a_store), &ledger).await;
    wait_until("a leads both processors and has stored usage", async || {
        let s = a.status().await;
        s.processors.iter().all(|p| p.is_leader) && ledger.usage_count().await.unwrap() > 0
    })
    .await;
    let b = start("adapter-b", &sim, Arc::clone(&b_store), &ledger).await;
    tokio::time::sleep(TTL / 2).await;
    let standby = b.status().await;
    for p in &standby.processors {
        assert!(!p.is_leader, "one leader per processor: {p:?}");
        assert_eq!(p.phase(), Some(Phase::Standby));
        assert_eq!(p.leader(standby.at), Some("adapter-a"), "the standby reports who leads");
        assert_eq!(p.local.as_ref().unwrap().applied(), 0, "the standby processed nothing");
    }
    let generation_a = a_store.lease(ProcessorKind::Usage).await.unwrap().unwrap().generation;

    // The leader crashes mid-sync: its leases are not released; the standby takes over once they expire.
    assert!(ledger.usage_count().await.unwrap() < 20_000, "the leader is still syncing");
    a.abort().await;
    wait_until("b leads both processors", async || b.status().await.processors.iter().all(|p| p.is_leader)).await;
    let statuses = b.wait_caught_up(LIMIT).await.unwrap();
    assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp), "{statuses:?}");
    let lease = b_store.lease(ProcessorKind::Usage).await.unwrap().unwrap();
    assert_eq!(lease.holder.as_deref(), Some("adapter-b"));
    assert!(lease.generation > generation_a, "a new generation fences the crashed leader out");

    // Everything in the ledger once; every id committed once in the engine's state.
    assert_eq!(ledger.usage_event_ids().await.unwrap(), sim.usage_ids());
    for feed in FeedKind::EVENT_FEEDS {
        assert_eq!(ledger.applied_event_ids(feed).await.unwrap(), sim.event_ids(feed), "{feed}");
        let rows: Vec<i64> = b_store.processed(feed, 0, i64::MAX).await.unwrap().iter().map(|r| r.event_id).collect();
        assert_eq!(rows, sim.event_ids(feed), "{feed} committed once each");
    }
    let rows = b_store.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    for pair in rows.windows(2) {
        assert!(pair[0].last_event_id < pair[1].event_id, "overlapping commits: {pair:?}");
    }
    assert!(sim.usage_ids().iter().all(|id| rows.iter().any(|r| r.covers(*id))), "every record committed");
    let b_applied = statuses.iter().map(|s| s.applied()).sum::<u64>();
    assert!(b_applied > 0 && b_applied < 20_000 + 1_000, "b did the rest of the work: {b_applied}");
    b.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_one_sqlite_file_the_standby_adapter_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared-state.db");
    let a = Arc::new(wap_billing_engine::SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(wap_billing_engine::SqliteStore::open(&path).await.unwrap());
    the_standby_adapter_takes_over(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
async fn on_postgresql_the_standby_adapter_takes_over() {
    let url = postgres_url();
    let schema = fresh_schema("adapter_failover");
    let a = Arc::new(wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap());
    let b = Arc::new(wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap());
    the_standby_adapter_takes_over(a, b).await;
}

/// The PostgreSQL test URL (the test is ignored unless it was set at build time: see `build.rs`).
fn postgres_url() -> String {
    std::env::var("WAP_BILLING_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .or_else(|| option_env!("WAP_BILLING_TEST_POSTGRES_URL").map(str::to_owned))
        .expect("WAP_BILLING_TEST_POSTGRES_URL: set when these tests were built, but not now")
}

fn fresh_schema(test: &str) -> String {
    format!("t_{}_{:08x}", &test[..test.len().min(40)], fastrand::u32(..))
}
