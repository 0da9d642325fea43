//! The rest of issue 19's faults: a restarted process that must go on counting attempts and dependency waits, a
//! Usage Service call that never answers, a state store whose lease renewals are slow, and clocks that disagree.
//! Paused Tokio time and SQLite files (PostgreSQL too when `WAP_BILLING_TEST_POSTGRES_URL` is set).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use wap_billing_engine::{
    AuditEntry, ElectionMode, EngineConfig, EventCommit, FeedCursor, FeedHold, FeedItem, FeedSource, Fence, HaltReason,
    HaltStatus, HaltTarget, IdentityKind, IdentityMapping, InDoubtResolution, Intent, LeaseRecord, MemorySource, Phase,
    ProcessedEvent, ProcessorKind, SourceError, StateStore, StoreError, UnitAttempts,
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
#[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
async fn attempt_counts_survive_a_restarted_process_postgres() {
    let url = postgres_url();
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
#[allow(deprecated)]
fn a_zero_fetch_timeout_is_refused_with_its_key() {
    let mut b = EngineConfig::builder();
    assert!(b.set("WapFetchTimeoutMilliseconds", "0").unwrap());
    let e = b.build().unwrap_err();
    assert!(e.to_string().contains("WapFetchTimeoutMilliseconds"), "{e}");
    let mut b = EngineConfig::builder();
    assert!(b.set("WapFetchTimeoutMilliseconds", "1500").unwrap());
    assert_eq!(b.build().unwrap().wap_fetch_timeout, Duration::from_millis(1500));
}

// ---------- finding 6: renewals slower than half the TTL ----------

/// A state store whose lease renewals take `delay` (a congested link, a store under load); everything else is
/// immediate.
#[derive(Debug)]
struct SlowRenewals {
    inner: Arc<dyn StateStore>,
    delay: Duration,
    renewals: AtomicU32,
    acquisitions: AtomicU32,
}

#[async_trait]
impl StateStore for SlowRenewals {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.inner.schema_version().await
    }
    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError> {
        self.inner.cursor(feed).await
    }
    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.record_poll(feed, at).await
    }
    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.inner.commit(fence, commit).await
    }
    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError> {
        self.inner.processed(feed, from, to).await
    }
    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError> {
        self.inner.set_hold(fence, feed, hold).await
    }
    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        self.inner.halt(processor).await
    }
    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError> {
        self.inner.set_halt(fence, halt).await
    }
    async fn resume(
        &self,
        p: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        self.inner.resume(p, expected, actor, at).await
    }
    async fn skip(
        &self,
        p: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        self.inner.skip(p, expected, actor, reason, at).await
    }
    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError> {
        self.inner.identity(kind, wap_id).await
    }
    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError> {
        self.inner.identity_by_billing_id(kind, billing_id).await
    }
    async fn set_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.set_identity(kind, wap_id, billing_id, actor, at).await
    }
    async fn delete_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.delete_identity(kind, wap_id, actor, at).await
    }
    async fn identities(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.inner.identities(kind).await
    }
    async fn set_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.set_identity_fenced(fence, kind, wap_id, billing_id, at).await
    }
    async fn delete_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.delete_identity_fenced(fence, kind, wap_id, at).await
    }
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit_log(limit).await
    }
    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError> {
        self.inner.prune(processed_before, audit_before).await
    }
    async fn try_acquire_lease(
        &self,
        p: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        self.acquisitions.fetch_add(1, Ordering::SeqCst);
        self.inner.try_acquire_lease(p, holder, ttl, steal).await
    }
    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        // Half the delay on the way there, half on the way back.
        tokio::time::sleep(self.delay / 2).await;
        let renewed = self.inner.renew_lease(fence, ttl).await;
        tokio::time::sleep(self.delay / 2).await;
        renewed
    }
    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.inner.release_lease(fence).await
    }
    async fn lease(&self, p: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
        self.inner.lease(p).await
    }
    async fn unit_attempts(&self, p: ProcessorKind) -> Result<Vec<UnitAttempts>, StoreError> {
        self.inner.unit_attempts(p).await
    }
    async fn set_unit_attempts(&self, fence: &Fence, unit: &UnitAttempts) -> Result<(), StoreError> {
        self.inner.set_unit_attempts(fence, unit).await
    }
    async fn clear_unit_attempts(&self, fence: &Fence, feed: FeedKind, event_id: i64) -> Result<(), StoreError> {
        self.inner.clear_unit_attempts(fence, feed, event_id).await
    }
    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
        self.inner.open_intent(fence, intent).await
    }
    async fn intent(&self, p: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        self.inner.intent(p).await
    }
    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.inner.commit_intent(fence, commit).await
    }
    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError> {
        self.inner.close_intent(fence).await
    }
    async fn resolve_intent(
        &self,
        p: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError> {
        self.inner.resolve_intent(p, resolution, actor, reason, at).await
    }
}

async fn leadership_holds_with_renewals_taking(delay: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let inner = sqlite_store_fast(&dir, "state.db").await;
    let slow = Arc::new(SlowRenewals { inner, delay, renewals: AtomicU32::new(0), acquisitions: AtomicU32::new(0) });
    let store: Arc<dyn StateStore> = slow.clone();
    let source = MemorySource::new();
    let handler = Recorder::new();
    let config = config().lease_ttl(TTL).sync_interval(Duration::from_secs(5)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "leader", |s| s.phase == Phase::CaughtUp).await;
    let generation = running.handle.status().leader_generation.unwrap();
    // Count every end of a term (leader_generation going away) from here on.
    let mut rx = running.handle.subscribe();
    let terms_ended = Arc::new(AtomicU32::new(0));
    let watcher = tokio::spawn({
        let terms_ended = Arc::clone(&terms_ended);
        async move {
            while rx.changed().await.is_ok() {
                if rx.borrow_and_update().leader_generation.is_none() {
                    terms_ended.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    });
    // Twenty lease lifetimes, an event every 10 s.
    for id in 1..=120 {
        source.push(ack_plan(id));
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    wait_status(&running.handle, LONG, "all applied", |s| s.last_committed() == Some(120)).await;
    assert_eq!(terms_ended.load(Ordering::SeqCst), 0, "leadership never flapped");
    assert_eq!(running.handle.status().leader_generation, Some(generation));
    assert_eq!(store.lease(ProcessorKind::Notification).await.unwrap().unwrap().generation, generation);
    assert_eq!(slow.acquisitions.load(Ordering::SeqCst), 1, "acquired once, renewed ever since");
    assert!(slow.renewals.load(Ordering::SeqCst) >= 20, "renewed all along: {}", slow.renewals.load(Ordering::SeqCst));
    assert_eq!(handler.applied().len(), 120, "progress: every event applied once");
    watcher.abort();
    running.stop().await;
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn renewals_slower_than_half_the_ttl_do_not_make_leadership_flap() {
    leadership_holds_with_renewals_taking(TTL * 6 / 10).await;
}

#[tokio::test(start_paused = true)]
async fn renewals_taking_three_quarters_of_the_ttl_do_not_make_leadership_flap() {
    leadership_holds_with_renewals_taking(TTL * 3 / 4).await;
}
