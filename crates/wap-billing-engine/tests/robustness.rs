//! The faults of issue 19, each made on purpose: a panicking handler, a failing identity-map lookup, a hung
//! billing call, two processes with one `InstanceId`, a term lost in the middle of an event's attempts, and a
//! leader whose state store stops answering while its billing call is in flight. Paused Tokio time unless the test
//! needs the store's clock to move (lease expiry), then short real-time TTLs with ordering asserts only.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use wap_billing_engine::{AuditEntry, EventCommit, InDoubtResolution, Intent, SourceError, SourceErrorKind};
use wap_billing_engine::{
    ElectionMode, EngineConfig, EntityChange, EventContext, EventHandler, EventProcessor, FeedCursor, FeedHold, Fence,
    HaltReason, HaltStatus, HaltTarget, HandlerError, IdentityKind, IdentityMap, IdentityMapping, LeaseRecord,
    MemorySource, Phase, ProcessedEvent, ProcessorKind, StateStore, StoreError, UnitAttempts,
};
use wap_types::{FeedKind, Plan};

const LONG: Duration = Duration::from_secs(30 * 86_400);

fn cfg() -> EngineConfig {
    config().build().unwrap()
}

// ---------- finding 1: a panicking handler ----------

/// Panics on plan event 2, records the others.
#[derive(Debug, Default)]
struct Panicker {
    calls: Mutex<Vec<i64>>,
}

#[async_trait]
impl EventHandler for Panicker {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.calls.lock().unwrap().push(ctx.key.event_id);
        if ctx.key.event_id == 2 {
            panic!("index out of bounds in the billing client");
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_halts_on_its_event_with_the_panic_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    let handler = Arc::new(Panicker::default());
    let running = spawn_events(&cfg(), &source, &store, handler.clone());

    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.expect("halt in status");
    assert_eq!((halt.feed, halt.event_id, halt.reason.clone()), (FeedKind::Plans, 2, HaltReason::HandlerPanicked));
    assert!(halt.error.contains("index out of bounds in the billing client"), "{}", halt.error);
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), Some(halt), "the halt is stored");
    assert_eq!(store.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(1));
    assert!(running.handle.is_running(), "the processor task survives the panic");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(handler.calls.lock().unwrap().clone(), vec![1, 2], "not retried while halted");

    // An operator skip passes over it; the rest is applied by the same task.
    running.handle.skip("ops", "billing client bug, entered by hand").await.unwrap();
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(handler.calls.lock().unwrap().clone(), vec![1, 2, 3]);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dead_processor_task_is_reported_as_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    let running = spawn_events(&cfg(), &source, &store, Recorder::new());
    let handle = running.handle.clone();
    wait_status(&handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert!(handle.is_running());
    running.kill().await;
    assert!(!handle.is_running(), "a task that ended without stopping is seen as not running");
    assert_eq!(handle.status().phase, Phase::CaughtUp, "its last status says nothing about it");
}

// ---------- finding 3: a failing identity-map lookup ----------

/// An identity map whose lookups fail with a transient store error `failures` times.
#[derive(Debug)]
struct FlakyIdentity {
    failures: AtomicU32,
    lookups: AtomicU32,
}

fn transient() -> StoreError {
    StoreError::Database { backend: "postgres", message: "connection reset".into(), retryable: true }
}

#[async_trait]
impl IdentityMap for FlakyIdentity {
    async fn billing_id(&self, _: IdentityKind, _: &str) -> Result<Option<String>, StoreError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(transient());
        }
        Ok(Some("billing-7".into()))
    }
    async fn wap_id(&self, _: IdentityKind, _: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    async fn set(&self, _: IdentityKind, _: &str, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
    async fn remove(&self, _: IdentityKind, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn list(&self, _: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        Ok(Vec::new())
    }
}

#[tokio::test(start_paused = true)]
async fn identity_lookup_store_errors_are_retried_and_never_count_as_billing_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Recorder::new();
    // Twice RetryMaxAttempts: before the fix the fifth failure halted the processor.
    let map = Arc::new(FlakyIdentity { failures: AtomicU32::new(10), lookups: AtomicU32::new(0) });
    let config = cfg();
    let p = EventProcessor::new(&config, Arc::new(source.clone()), Arc::clone(&store), handler.clone())
        .with_identity_map(map.clone());
    let handle = p.handle();
    let mut seen_error = false;
    let task = tokio::spawn(p.run());
    let status = wait_status(&handle, LONG, "applied", |s| {
        seen_error |= s.last_store_error.as_deref().is_some_and(|e| e.contains("connection reset"));
        s.phase == Phase::CaughtUp || s.phase == Phase::Halted
    })
    .await;
    assert_eq!(status.phase, Phase::CaughtUp, "no halt: {:?}", status.halt);
    assert!(seen_error, "the store error is reported as one");
    assert_eq!(map.lookups.load(Ordering::SeqCst), 11);
    let calls = handler.calls();
    assert_eq!(calls.len(), 1, "the billing system is called once, after the lookups pass: {calls:?}");
    assert_eq!(calls[0].billing_id.as_deref(), Some("billing-7"));
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), None);
    task.abort();
}

// ---------- finding 5: a hung billing call ----------

/// Never answers the first `hang` calls.
#[derive(Debug)]
struct Hang {
    hang: AtomicU32,
    calls: AtomicU32,
    deadlines: Mutex<Vec<(i64, tokio::time::Instant, tokio::time::Instant)>>,
}

#[async_trait]
impl EventHandler for Hang {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.deadlines.lock().unwrap().push((ctx.generation, tokio::time::Instant::now(), ctx.deadline));
        if self.hang.load(Ordering::SeqCst) > 0 {
            self.hang.fetch_sub(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_billing_call_is_cut_at_its_deadline_and_spends_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler =
        Arc::new(Hang { hang: AtomicU32::new(u32::MAX), calls: AtomicU32::new(0), deadlines: Mutex::default() });
    let config = config().handler_timeout(Duration::from_secs(10)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.attempts, halt.reason), (1, 5, HaltReason::HandlerFailed));
    assert!(halt.error.contains("deadline"), "{}", halt.error);
    assert_eq!(handler.calls.load(Ordering::SeqCst), 5);
    let generation = store.lease(ProcessorKind::Notification).await.unwrap().unwrap().generation;
    for (g, at, deadline) in handler.deadlines.lock().unwrap().iter() {
        assert_eq!(*g, generation, "the call carries the lease generation");
        assert_eq!(*deadline - *at, Duration::from_secs(10), "HandlerTimeoutMilliseconds, inside the lease");
    }
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_deadline_never_ends_after_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Arc::new(Hang { hang: AtomicU32::new(0), calls: AtomicU32::new(0), deadlines: Mutex::default() });
    // A call timeout longer than the lease: the deadline is the lease's end instead.
    let config = config().lease_ttl(Duration::from_secs(60)).handler_timeout(Duration::from_secs(600)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    let (_, at, deadline) = handler.deadlines.lock().unwrap()[0];
    assert!(deadline - at <= Duration::from_secs(60), "deadline {:?} after the call began", deadline - at);
    running.stop().await;
}

// ---------- finding 4: duplicate InstanceId; attempts across terms ----------

#[tokio::test(start_paused = true)]
async fn a_second_process_with_the_same_instance_id_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    let config = config().instance_id("billing-1").lease_ttl(Duration::from_secs(3600)).build().unwrap();
    let first = spawn_events(&config, &source, &store, Recorder::new());
    wait_status(&first.handle, LONG, "leader", |s| s.phase == Phase::CaughtUp).await;
    let generation = store.lease(ProcessorKind::Notification).await.unwrap().unwrap().generation;

    let twin = spawn_events(&config, &source, &store, Recorder::new());
    let status = wait_status(&twin.handle, LONG, "conflict", |s| s.lease_conflict.is_some()).await;
    let conflict = status.lease_conflict.unwrap();
    assert!(conflict.contains("billing-1") && conflict.contains("InstanceId"), "{conflict}");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!twin.handle.status().is_leader(), "the twin never leads");
    assert!(first.handle.status().is_leader(), "the first keeps the lease");
    assert_eq!(store.lease(ProcessorKind::Notification).await.unwrap().unwrap().generation, generation);
    twin.stop().await;
    first.stop().await;
}

#[tokio::test(start_paused = true)]
async fn attempt_counts_survive_a_lost_and_regained_lease() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Recorder::new();
    handler.fail_always(FeedKind::Plans, 1);
    let config = config().lease_ttl(Duration::from_secs(60)).build().unwrap();
    let running = spawn_events(&config, &source, &store, handler.clone());
    eventually("two attempts", LONG, || handler.calls_for(FeedKind::Plans, 1).len() == 2).await;
    let first_generation = running.handle.status().leader_generation.unwrap();

    // Another holder takes the lease and gives it back: this instance's term ends and a new one starts.
    let intruder = store.try_acquire_lease(ProcessorKind::Notification, "intruder", Duration::from_secs(60), true);
    let lease = intruder.await.unwrap().unwrap();
    let fence =
        Fence { processor: ProcessorKind::Notification, holder: "intruder".into(), generation: lease.generation };
    store.release_lease(&fence).await.unwrap();

    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    assert!(status.leader_generation.unwrap() > first_generation, "a new term");
    assert_eq!(status.halt.unwrap().attempts, 5);
    assert_eq!(handler.calls_for(FeedKind::Plans, 1).len(), 5, "RetryMaxAttempts in all, not 5 per term");
    running.stop().await;
}

// ---------- findings 2 and 6: a leader frozen while its billing call is in flight ----------

/// A state store that can be frozen: every call then waits until thawed (a paused VM, a black-holed connection).
#[derive(Debug)]
struct Freezable {
    inner: Arc<dyn StateStore>,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl Freezable {
    fn new(inner: Arc<dyn StateStore>) -> Arc<Self> {
        Arc::new(Freezable { inner, frozen: tokio::sync::watch::Sender::new(false) })
    }
    fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }
    async fn gate(&self) {
        let mut rx = self.frozen.subscribe();
        let _ = rx.wait_for(|f| !*f).await;
    }
}

#[async_trait]
impl StateStore for Freezable {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.gate().await;
        self.inner.schema_version().await
    }
    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError> {
        self.gate().await;
        self.inner.cursor(feed).await
    }
    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.record_poll(feed, at).await
    }
    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.commit(fence, commit).await
    }
    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError> {
        self.gate().await;
        self.inner.processed(feed, from, to).await
    }
    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.set_hold(fence, feed, hold).await
    }
    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        self.gate().await;
        self.inner.halt(processor).await
    }
    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.set_halt(fence, halt).await
    }
    async fn resume(
        &self,
        p: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        self.gate().await;
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
        self.gate().await;
        self.inner.skip(p, expected, actor, reason, at).await
    }
    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError> {
        self.gate().await;
        self.inner.identity(kind, wap_id).await
    }
    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError> {
        self.gate().await;
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
        self.gate().await;
        self.inner.set_identity(kind, wap_id, billing_id, actor, at).await
    }
    async fn delete_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.gate().await;
        self.inner.delete_identity(kind, wap_id, actor, at).await
    }
    async fn identities(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.gate().await;
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
        self.gate().await;
        self.inner.set_identity_fenced(fence, kind, wap_id, billing_id, at).await
    }
    async fn delete_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.gate().await;
        self.inner.delete_identity_fenced(fence, kind, wap_id, at).await
    }
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.gate().await;
        self.inner.audit_log(limit).await
    }
    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError> {
        self.gate().await;
        self.inner.prune(processed_before, audit_before).await
    }
    async fn try_acquire_lease(
        &self,
        p: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        self.gate().await;
        self.inner.try_acquire_lease(p, holder, ttl, steal).await
    }
    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        self.gate().await;
        self.inner.renew_lease(fence, ttl).await
    }
    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.release_lease(fence).await
    }
    async fn lease(&self, p: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
        self.gate().await;
        self.inner.lease(p).await
    }
    async fn unit_attempts(&self, p: ProcessorKind) -> Result<Vec<UnitAttempts>, StoreError> {
        self.gate().await;
        self.inner.unit_attempts(p).await
    }
    async fn set_unit_attempts(&self, fence: &Fence, unit: &UnitAttempts) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.set_unit_attempts(fence, unit).await
    }
    async fn clear_unit_attempts(&self, fence: &Fence, feed: FeedKind, event_id: i64) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.clear_unit_attempts(fence, feed, event_id).await
    }
    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.open_intent(fence, intent).await
    }
    async fn intent(&self, p: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        self.gate().await;
        self.inner.intent(p).await
    }
    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.gate().await;
        self.inner.commit_intent(fence, commit).await
    }
    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError> {
        self.gate().await;
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
        self.gate().await;
        self.inner.resolve_intent(p, resolution, actor, reason, at).await
    }
}

/// A billing system that keeps the highest generation it has seen and refuses writes with a lower one (as the
/// reference ledger does), and notes the order in which calls began and ended.
#[derive(Debug, Default)]
struct FencedBilling {
    highest: Mutex<i64>,
    billed: Mutex<Vec<(i64, i64)>>,
    refused: Mutex<Vec<(i64, i64)>>,
    log: Mutex<Vec<String>>,
    gate: tokio::sync::Notify,
    entered: tokio::sync::Notify,
    block_first: AtomicBool,
    blocked_work: Mutex<VecDeque<tokio::task::JoinHandle<()>>>,
}

impl FencedBilling {
    fn bill(&self, generation: i64, event_id: i64) {
        let mut highest = self.highest.lock().unwrap();
        if generation < *highest {
            self.refused.lock().unwrap().push((generation, event_id));
            self.log.lock().unwrap().push(format!("refused g{generation} e{event_id}"));
        } else {
            *highest = generation;
            self.billed.lock().unwrap().push((generation, event_id));
            self.log.lock().unwrap().push(format!("billed g{generation} e{event_id}"));
        }
    }
}

struct Ended<'a>(&'a FencedBilling, i64);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.log.lock().unwrap().push(format!("ended g{}", self.1));
    }
}

/// The handler in front of the shared billing system.
#[derive(Debug)]
struct BillingClient(Arc<FencedBilling>);

#[async_trait]
impl EventHandler for BillingClient {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let this = &self.0;
        let (g, id) = (ctx.generation, ctx.key.event_id);
        this.log.lock().unwrap().push(format!("began g{g} e{id}"));
        let _ended = Ended(this, g);
        if this.block_first.swap(false, Ordering::SeqCst) {
            // Work the handler spawned: it outlives the cancelled call (the limit of cancellation) and bills
            // once let go, carrying the generation it was started under.
            let me = Arc::clone(this);
            let work = tokio::spawn(async move {
                me.gate.notified().await;
                me.bill(g, id);
            });
            this.blocked_work.lock().unwrap().push_back(work);
            this.entered.notify_one();
            std::future::pending::<()>().await;
        }
        this.bill(g, id);
        Ok(())
    }
}

fn failover_config(name: &str) -> EngineConfig {
    config()
        .instance_id(name)
        .lease_ttl(Duration::from_millis(600))
        .handler_timeout(Duration::from_millis(400))
        .election_mode(ElectionMode::Elect)
        .sync_interval(Duration::from_millis(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_leader_frozen_past_its_ttl_during_a_billing_call_cannot_bill_after_its_successor_started() {
    let dir = tempfile::tempdir().unwrap();
    let shared = sqlite_store(&dir, "shared.db").await;
    let frozen = Freezable::new(Arc::clone(&shared));
    let frozen_store: Arc<dyn StateStore> = frozen.clone();
    let other = sqlite_store(&dir, "shared.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2)]);
    let billing = Arc::new(FencedBilling::default());
    billing.block_first.store(true, Ordering::SeqCst);

    let a =
        spawn_events(&failover_config("engine-a"), &source, &frozen_store, Arc::new(BillingClient(billing.clone())));
    tokio::time::timeout(Duration::from_secs(60), billing.entered.notified()).await.expect("a is billing event 1");
    let generation_a = a.handle.status().leader_generation.unwrap();
    // engine-a's store connection goes silent while its billing call hangs: no renewal reaches the store.
    frozen.freeze(true);
    let b = spawn_events(&failover_config("engine-b"), &source, &other, Arc::new(BillingClient(billing.clone())));
    wait_status(&b.handle, Duration::from_secs(60), "b caught up", |s| s.phase == Phase::CaughtUp).await;
    let generation_b = b.handle.status().leader_generation.unwrap();
    assert!(generation_b > generation_a);

    // Now engine-a's spawned billing work wakes up: the billing system refuses its old generation.
    billing.gate.notify_one();
    let work = billing.blocked_work.lock().unwrap().pop_front().unwrap();
    work.await.unwrap();
    frozen.freeze(false);

    let log = billing.log.lock().unwrap().clone();
    let a_ended = log.iter().position(|l| *l == format!("ended g{generation_a}")).expect("a's call was cut");
    let b_began = log.iter().position(|l| l.starts_with(&format!("began g{generation_b}"))).unwrap();
    assert!(a_ended < b_began, "a's billing call ended before b's first call began: {log:?}");
    assert_eq!(billing.billed.lock().unwrap().clone(), vec![(generation_b, 1), (generation_b, 2)], "{log:?}");
    assert_eq!(billing.refused.lock().unwrap().clone(), vec![(generation_a, 1)], "{log:?}");
    assert_eq!(shared.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(2));
    b.stop().await;
    a.kill().await;
}

// ---------- finding 8: a usage halt names its record ----------

#[tokio::test(start_paused = true)]
async fn a_usage_batch_failing_without_a_named_record_halts_on_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend((1..=5).map(|id| usage(id, "sub-a")));
    let handler = UsageRecorder::new();
    // Every batch holding record 3 fails, without saying which record is at fault.
    handler.inner.fail_always(FeedKind::Usage, 3);
    let running = spawn_usage(&cfg(), &source, &store, handler.clone());
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.event_id, halt.last_event_id), (3, 3), "the halt names one record: {halt}");
    assert_eq!(handler.applied_records(), vec![1, 2]);

    // The skip names it; a stale one naming another record is refused.
    let stale = HaltTarget { feed: FeedKind::Usage, event_id: 1 };
    let refused = running.handle.skip_event(stale, "ops", "stale").await;
    assert!(matches!(refused, Err(StoreError::HaltMismatch { .. })), "{refused:?}");
    running.handle.skip_event(halt.target(), "ops", "meter reset; billed by hand").await.unwrap();
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(handler.applied_records(), vec![1, 2, 4, 5]);
    running.stop().await;
}

// ---------- finding 7: history purged by WAP ----------

#[tokio::test(start_paused = true)]
async fn purged_history_halts_the_feed_and_only_an_acknowledgement_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;

    // Within one term: new events arrive and WAP's retention job deletes everything up to 6 before the next poll.
    source.extend((4..=9).map(ack_plan));
    for id in 1..=6 {
        source.remove(FeedKind::Plans, id);
    }
    running.handle.wake();
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.clone().unwrap();
    assert_eq!((halt.feed, halt.event_id, halt.last_event_id), (FeedKind::Plans, 4, 6));
    assert_eq!(halt.reason, HaltReason::HistoryLost);
    assert!(halt.error.contains("history lost between ids 4 and 6"), "{}", halt.error);
    assert_eq!(status.feed(FeedKind::Plans).unwrap().history_lost, Some((4, 6)), "reported in the status");
    assert_eq!(handler.applied().len(), 3, "nothing after the gap was billed");

    // A resume does not pass it: the gap is found again.
    running.handle.resume("ops").await.unwrap();
    running.handle.sync_once().await;
    let status = wait_status(&running.handle, LONG, "halt again", |s| s.phase == Phase::Halted).await;
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap().map(|h| h.event_id), Some(4));
    assert_eq!(status.halt.as_ref().map(|h| h.reason.clone()), Some(HaltReason::HistoryLost));
    assert_eq!(handler.applied().len(), 3);

    // The operator's skip names the gap and acknowledges it (audited); then the rest is billed.
    let target = HaltTarget { feed: FeedKind::Plans, event_id: 4 };
    running
        .handle
        .skip_event(target, "ops-ana", "purged while the adapter was down; billed from WAP reports")
        .await
        .unwrap();
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(status.feed(FeedKind::Plans).unwrap().history_lost, None);
    let applied: Vec<i64> = handler.applied().into_iter().map(|(_, id)| id).collect();
    assert_eq!(applied, vec![1, 2, 3, 7, 8, 9]);
    let rows = store.processed(FeedKind::Plans, 4, 6).await.unwrap();
    assert_eq!((rows[0].event_id, rows[0].last_event_id), (4, 6), "the lost range is recorded as skipped");
    let audit = store.audit_log(20).await.unwrap();
    assert!(audit.iter().any(|e| e.actor == "ops-ana" && e.detail.contains("purged while the adapter was down")));
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_id_gap_with_older_records_retained_is_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2)]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    // Ids 3..=5 never appear on this feed (another feed's ids, a shared sequence); 1 and 2 are still retained.
    source.extend([ack_plan(6)]);
    running.handle.sync_once().await;
    let status = wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert!(status.halt.is_none());
    assert_eq!(handler.applied().len(), 3);
    running.stop().await;
}

// ---------- finding 10: permanent WAP-side errors ----------

#[tokio::test(start_paused = true)]
async fn a_page_wap_refuses_for_good_halts_with_a_position_an_operator_can_skip() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2)]);
    let handler = Recorder::new();
    let running = spawn_events(&cfg(), &source, &store, handler.clone());
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;

    // The page at startId 3 cannot be read (an element whose EventId is unreadable), every time.
    source.extend([ack_plan(3), ack_plan(4)]);
    let unreadable = SourceError::new(SourceErrorKind::Body, "element 0: EventId is not a number");
    source.fail_next(Some(FeedKind::Plans), 1_000, unreadable);
    running.handle.wake();
    let status = wait_status(&running.handle, LONG, "halt", |s| s.phase == Phase::Halted).await;
    let halt = status.halt.unwrap();
    assert_eq!((halt.feed, halt.event_id, halt.reason.clone()), (FeedKind::Plans, 3, HaltReason::WapRejected));
    assert!(halt.error.contains("EventId is not a number"), "{}", halt.error);
    let fetches = source.requests_for(FeedKind::Plans).iter().filter(|r| r.returned.is_none()).count();
    assert_eq!(fetches, 5, "RetryMaxAttempts fetches, then the halt");

    // WAP serves the page again; the operator resumes the named position.
    source.clear_failures();
    running.handle.resume_event(halt.target(), "ops").await.unwrap();
    wait_status(&running.handle, LONG, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(handler.applied().len(), 4);
    running.stop().await;
}

#[test]
fn permanent_wap_errors_are_classified() {
    for (kind, permanent) in [
        (SourceErrorKind::Status(400), true),
        (SourceErrorKind::Status(404), true),
        (SourceErrorKind::Body, true),
        (SourceErrorKind::Status(401), false),
        (SourceErrorKind::Status(500), false),
        (SourceErrorKind::Status(503), false),
        (SourceErrorKind::Transport, false),
    ] {
        let e = SourceError::new(kind, "x");
        assert_eq!((e.is_permanent(), e.is_retryable()), (permanent, !permanent), "{kind}");
    }
}

// ---------- finding 12: a page that takes the processor's thread ----------

/// A source whose fetch holds its thread (a huge page being parsed) once, for longer than the lease TTL.
struct SlowParse {
    inner: MemorySource,
    block: AtomicBool,
}

#[async_trait]
impl wap_billing_engine::FeedSource for SlowParse {
    async fn fetch(
        &self,
        feed: FeedKind,
        start: wap_types::StartId,
        batch: u32,
    ) -> Result<Vec<wap_billing_engine::FeedItem>, SourceError> {
        let page = self.inner.fetch(feed, start, batch).await?;
        if !page.is_empty() && self.block.swap(false, Ordering::SeqCst) {
            // Three lease lifetimes: without renewals on another thread the lease would be lost.
            std::thread::sleep(Duration::from_millis(4_500));
        }
        Ok(page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_renewals_go_on_while_the_processor_thread_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir, "state.db").await;
    let source = MemorySource::new();
    let slow = Arc::new(SlowParse { inner: source.clone(), block: AtomicBool::new(true) });
    let config =
        config().lease_ttl(Duration::from_millis(1_500)).sync_interval(Duration::from_millis(20)).build().unwrap();
    let handler = Recorder::new();
    let p = EventProcessor::new(&config, slow, Arc::clone(&store), handler.clone());
    let handle = p.handle();
    let task = tokio::spawn(p.run());
    wait_status(&handle, Duration::from_secs(30), "leader", |s| s.phase == Phase::CaughtUp).await;
    let generation = handle.status().leader_generation.unwrap();
    source.push(ack_plan(1));
    handle.wake();
    eventually("applied", Duration::from_secs(30), || handler.applied().len() == 1).await;
    assert_eq!(handle.status().leader_generation, Some(generation), "the lease was kept: no new term");
    assert_eq!(store.lease(ProcessorKind::Notification).await.unwrap().unwrap().generation, generation);
    task.abort();
}

// ---------- finding 5: lease renewals do not queue behind other store work (PostgreSQL) ----------

#[tokio::test]
#[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
async fn postgres_lease_renewals_do_not_wait_behind_a_blocked_data_operation() {
    let url = postgres_url();
    let schema = fresh_schema("renewal_lane");
    let store: Arc<dyn StateStore> =
        Arc::new(wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap());
    let lease = store
        .try_acquire_lease(ProcessorKind::Usage, "engine-a", Duration::from_secs(60), false)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence { processor: ProcessorKind::Usage, holder: "engine-a".into(), generation: lease.generation };

    // Another session locks the halt table: the store's next halt read (a status probe) blocks on it.
    let (mut locker, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute(&format!("LOCK TABLE \"{schema}\".halt IN ACCESS EXCLUSIVE MODE")).await.unwrap();
    let probe = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.halt(ProcessorKind::Usage).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!probe.is_finished(), "the probe waits for the lock");

    // The renewal goes through on its own connection while the probe is still blocked.
    let renewed = tokio::time::timeout(Duration::from_secs(20), store.renew_lease(&fence, Duration::from_secs(60)))
        .await
        .expect("the renewal is not queued behind the blocked probe");
    assert!(renewed.unwrap());
    assert!(!probe.is_finished(), "the probe was still blocked during the renewal");
    tx.rollback().await.unwrap();
    assert_eq!(probe.await.unwrap().unwrap(), None);
}

// ---------- finding 2: identity-map writes by handlers are fenced ----------

/// Creates the billing-side plan and records the mapping, after waiting at a gate.
#[derive(Debug, Default)]
struct Mapper {
    entered: tokio::sync::Notify,
    gate: tokio::sync::Notify,
    results: Mutex<Vec<Result<(), String>>>,
}

#[async_trait]
impl EventHandler for Mapper {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.entered.notify_one();
        self.gate.notified().await;
        let map = ctx.identity.as_ref().expect("identity map configured");
        let result = map.set(IdentityKind::Plan, &change.entity().id, "B-1", "handler").await;
        let failed = result.is_err();
        self.results.lock().unwrap().push(result.map_err(|e| e.to_string()));
        if failed {
            return Err(HandlerError::failed("mapping refused"));
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_deposed_leaders_handler_cannot_write_the_identity_map() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store_fast(&dir, "state.db").await;
    let source = MemorySource::new();
    source.push(ack_plan(1));
    let handler = Arc::new(Mapper::default());
    let config = cfg();
    let map = Arc::new(wap_billing_engine::StoreIdentityMap::new(Arc::clone(&store)));
    let p = EventProcessor::new(&config, Arc::new(source.clone()), Arc::clone(&store), handler.clone())
        .with_identity_map(map);
    let task = tokio::spawn(p.run());
    tokio::time::timeout(LONG, handler.entered.notified()).await.unwrap();

    // Another instance takes the lease while the handler is inside its call; the handler then writes the map.
    store.try_acquire_lease(ProcessorKind::Notification, "intruder", Duration::from_secs(3600), true).await.unwrap();
    handler.gate.notify_one();
    eventually("handler wrote", LONG, || !handler.results.lock().unwrap().is_empty()).await;
    let result = handler.results.lock().unwrap()[0].clone();
    assert!(result.as_ref().is_err_and(|e| e.contains("lease")), "{result:?}");
    assert_eq!(store.identity(IdentityKind::Plan, "plan-1").await.unwrap(), None, "nothing written");
    task.abort();
}
