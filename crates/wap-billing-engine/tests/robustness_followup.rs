//! The rest of issue 19's faults: a restarted process that must go on counting attempts and dependency waits, a
//! Usage Service call that never answers, a state store whose lease renewals are slow, and clocks that disagree.
//! Paused Tokio time and SQLite files (PostgreSQL too when `WAP_BILLING_TEST_POSTGRES_URL` is set).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use wap_billing_engine::{
    ElectionMode, EngineConfig, FeedItem, FeedSource, HaltReason, MemorySource, Phase, ProcessorKind, SourceError,
    StateStore,
};
use wap_types::{FeedKind, StartId};

const LONG: Duration = Duration::from_secs(30 * 86_400);

// ---------- attempts and dependency waits survive a restarted process ----------

/// A process's config: `SingleInstance`, so a restart takes the lease its crashed predecessor held.
fn restart_config() -> EngineConfig {
    restart_config_with(Duration::from_secs(30))
}

fn restart_config_with(retry_sleep: Duration) -> EngineConfig {
    config()
        .instance_id("billing-1")
        .election_mode(ElectionMode::SingleInstance)
        .retry_sleep(retry_sleep)
        .build()
        .unwrap()
}

/// `retry_sleep`: 30 s under paused time; short in real time (PostgreSQL needs the clock to run).
async fn attempts_survive_a_restarted_process(
    store_a: Arc<dyn StateStore>,
    store_b: Arc<dyn StateStore>,
    retry_sleep: Duration,
) {
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Recorder::new();
    handler.fail_always(FeedKind::Plans, 1);
    let first = spawn_events(&restart_config_with(retry_sleep), &source, &store_a, handler.clone());
    eventually("two failed attempts", LONG, || handler.calls_for(FeedKind::Plans, 1).len() == 2).await;
    // Let the second failure be counted (and saved) before the crash.
    tokio::time::sleep(retry_sleep / 3).await;
    first.kill().await;
    let stored = store_b.unit_attempts(ProcessorKind::Notification).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!((stored[0].feed, stored[0].event_id, stored[0].attempts), (FeedKind::Plans, 1, 2));

    // A new process (new memory) on the same state database.
    let second = spawn_events(&restart_config_with(retry_sleep), &source, &store_b, handler.clone());
    let status = wait_status(&second.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.attempts, halt.reason), (1, 5, HaltReason::HandlerFailed));
    assert_eq!(handler.calls_for(FeedKind::Plans, 1).len(), 5, "RetryMaxAttempts in all, not 5 more after a restart");
    assert!(store_b.unit_attempts(ProcessorKind::Notification).await.unwrap().is_empty(), "cleared by the halt");
    second.stop().await;
}

#[tokio::test(start_paused = true)]
async fn attempt_counts_survive_a_restarted_process_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite_store(&dir, "state.db").await;
    let b = sqlite_store(&dir, "state.db").await;
    attempts_survive_a_restarted_process(a, b, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn attempt_counts_survive_a_restarted_process_postgres() {
    let Some(url) = postgres_url() else { return };
    let schema = fresh_schema("attempts_restart");
    let a = wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap();
    let b = wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap();
    attempts_survive_a_restarted_process(Arc::new(a), Arc::new(b), Duration::from_millis(300)).await;
}

#[tokio::test(start_paused = true)]
async fn a_dependency_wait_keeps_its_start_across_a_restarted_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Recorder::new();
    handler.script(FeedKind::Plans, 1, std::iter::repeat_n(Answer::NotReady("plan not synced"), 1_000));
    let first = spawn_events(&restart_config(), &source, &store, handler.clone());
    let waiting =
        wait_status(&first.handle, LONG, "waiting", |s| s.feed(FeedKind::Plans).is_some_and(|f| f.waiting.is_some()))
            .await;
    let since = waiting.feed(FeedKind::Plans).unwrap().waiting.as_ref().unwrap().since;
    tokio::time::sleep(Duration::from_secs(600)).await;
    first.kill().await;

    let second = spawn_events(&restart_config(), &source, &store, handler.clone());
    let again = wait_status(&second.handle, LONG, "waiting again", |s| {
        s.leader_generation.is_some() && s.feed(FeedKind::Plans).is_some_and(|f| f.waiting.is_some())
    })
    .await;
    let waiting = again.feed(FeedKind::Plans).unwrap().waiting.clone().unwrap();
    assert_eq!(waiting.since, since, "the wait keeps its start: {waiting:?}");
    let stored = store.unit_attempts(ProcessorKind::Notification).await.unwrap();
    assert_eq!(stored[0].dependency_since, Some(since));
    assert_eq!(stored[0].attempts, 0, "a dependency wait spends no attempt");
    second.stop().await;
}

// ---------- a Usage Service call that never answers ----------

/// A source whose first `hang` fetches never answer (a black-holed connection), then serves from memory.
struct HangingSource {
    inner: MemorySource,
    hang: AtomicU32,
}

#[async_trait]
impl FeedSource for HangingSource {
    async fn fetch(&self, feed: FeedKind, start: StartId, batch_size: u32) -> Result<Vec<FeedItem>, SourceError> {
        if self.hang.load(Ordering::SeqCst) > 0 {
            self.hang.fetch_sub(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.inner.fetch(feed, start, batch_size).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_usage_service_call_is_cut_at_its_timeout_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let memory = MemorySource::new();
    memory.push(ack_plan(1));
    let source = Arc::new(HangingSource { inner: memory, hang: AtomicU32::new(2) });
    let handler = Recorder::new();
    let config = config().wap_fetch_timeout(Duration::from_secs(20)).build().unwrap();
    let p = wap_billing_engine::EventProcessor::new(&config, source.clone(), Arc::clone(&store), handler.clone());
    let handle = p.handle();
    let task = tokio::spawn(p.run());

    let failing = wait_status(&handle, LONG, "fetch failure reported", |s| {
        s.feed(FeedKind::Plans).is_some_and(|f| f.wap_failures > 0)
    })
    .await;
    let feed = failing.feed(FeedKind::Plans).unwrap();
    let error = feed.last_wap_error.clone().unwrap();
    assert!(error.contains("WapFetchTimeoutMilliseconds") && error.contains("20000 ms"), "{error}");
    // Health would say so (a failing feed degrades it), and the feed goes on once WAP answers again.
    let status = wait_status(&handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(status.feed(FeedKind::Plans).unwrap().wap_failures, 0);
    assert_eq!(handler.applied(), vec![(FeedKind::Plans, 1)]);
    assert_eq!(source.hang.load(Ordering::SeqCst), 0, "both hung fetches were cut");
    task.abort();
}

#[test]
fn a_zero_fetch_timeout_is_refused_with_its_key() {
    let mut b = EngineConfig::builder();
    assert!(b.set("WapFetchTimeoutMilliseconds", "0").unwrap());
    let e = b.build().unwrap_err();
    assert!(e.to_string().contains("WapFetchTimeoutMilliseconds"), "{e}");
    let mut b = EngineConfig::builder();
    assert!(b.set("WapFetchTimeoutMilliseconds", "1500").unwrap());
    assert_eq!(b.build().unwrap().wap_fetch_timeout, Duration::from_millis(1500));
}
