//! Fencing in the billing system: the ledger keeps the highest lease generation each feed's writer carried and
//! refuses a write with a lower one ([`HandlerError::Deposed`]); the engine takes that refusal as a lost lease,
//! never as a billing failure. Paused Tokio time, SQLite files.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use wap_billing_engine::{
    ElectionMode, EngineConfig, EntityChange, EventContext, EventHandler, EventProcessor, FeedItem, Fence,
    HandlerError, IdempotencyKey, MemorySource, Phase, ProcessorHandle, ProcessorKind, SqliteStore, StateStore,
    UsageBatch, UsageHandler,
};
use wap_billing_ledger::SqliteLedger;
use wap_types::{EventMethod, FeedKind, NotificationState, Plan, UsageEvent, UsageRecord};

const LONG: Duration = Duration::from_secs(30 * 86_400);

fn plan_event(id: i64, plan_id: &str) -> FeedItem {
    let entity = Plan { id: plan_id.into(), display_name: Some(format!("Plan {id}")), ..Default::default() };
    FeedItem::Plan(UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, entity))
}

fn config(instance: &str, mode: ElectionMode) -> EngineConfig {
    EngineConfig::builder()
        .instance_id(instance)
        .election_mode(mode)
        .lease_ttl(Duration::from_secs(60))
        .handler_timeout(Duration::from_secs(10))
        .sync_interval(Duration::from_secs(1))
        .build()
        .unwrap()
}

async fn wait(handle: &ProcessorHandle, what: &str, pred: impl FnMut(&wap_billing_engine::ProcessorStatus) -> bool) {
    if tokio::time::timeout(LONG, handle.wait_for(pred)).await.is_err() {
        panic!("timed out waiting for: {what}; status {:#?}", handle.status());
    }
}

/// A billing client whose first call hands the write to background work that outlives the engine's cut (a
/// request already on the wire, a blocking thread) and then hangs; later calls go straight to the ledger.
struct LateWriter {
    ledger: Arc<SqliteLedger>,
    gate: Arc<tokio::sync::Notify>,
    late: Mutex<Option<tokio::task::JoinHandle<Result<(), HandlerError>>>>,
    entered: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl EventHandler for LateWriter {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let first = self.late.lock().unwrap().is_none();
        if first {
            let (ledger, gate) = (Arc::clone(&self.ledger), Arc::clone(&self.gate));
            let (key, generation, entity) = (ctx.key, ctx.generation, change.entity().clone());
            let work = tokio::spawn(async move {
                gate.notified().await;
                let ctx = EventContext {
                    key,
                    method: &EventMethod::Post,
                    state: NotificationState::Acknowledged,
                    entity_parent_id: None,
                    time_created: None,
                    raw_entity: "{}",
                    attempt: 1,
                    billing_id: None,
                    identity: None,
                    generation,
                    deadline: tokio::time::Instant::now() + Duration::from_secs(10),
                };
                ledger.plan(&ctx, EntityChange::Updated(&entity)).await
            });
            *self.late.lock().unwrap() = Some(work);
            self.entered.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_deposed_leaders_late_write_is_refused_and_nothing_is_billed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
    let source = MemorySource::new();
    source.extend([plan_event(1, "gold"), plan_event(2, "gold")]);

    // engine-a leads (generation 1) and is inside its billing call for event 1.
    let late = Arc::new(LateWriter {
        ledger: Arc::clone(&ledger),
        gate: Arc::default(),
        late: Mutex::default(),
        entered: Arc::default(),
    });
    let a = EventProcessor::new(
        &config("engine-a", ElectionMode::Elect),
        Arc::new(source.clone()),
        Arc::clone(&store),
        late.clone(),
    );
    let a_handle = a.handle();
    let a_task = tokio::spawn(a.run());
    tokio::time::timeout(LONG, late.entered.notified()).await.unwrap();
    let generation_a = a_handle.status().leader_generation.unwrap();

    // engine-b takes the lease over (a new generation) and bills events 1 and 2 itself.
    let b = EventProcessor::new(
        &config("engine-b", ElectionMode::SingleInstance),
        Arc::new(source.clone()),
        Arc::clone(&store),
        Arc::clone(&ledger) as Arc<dyn EventHandler>,
    );
    let b_handle = b.handle();
    let b_task = tokio::spawn(b.run());
    wait(&b_handle, "b caught up", |s| s.phase == Phase::CaughtUp).await;
    let generation_b = b_handle.status().leader_generation.unwrap();
    assert!(generation_b > generation_a);
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1, 2]);

    // engine-a's write arrives late, under its old generation: refused, nothing changes.
    late.gate.notify_one();
    let work = late.late.lock().unwrap().take().unwrap();
    let refused = work.await.unwrap().unwrap_err();
    assert!(
        matches!(refused, HandlerError::Deposed { feed: FeedKind::Plans, generation, seen } if generation == generation_a && seen == generation_b),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("deposed"), "{refused}");
    let stats = ledger.stats();
    assert_eq!(
        (stats.events_applied, stats.events_repeated),
        (2, 0),
        "billed once; the late write not even as a repeat"
    );
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1, 2]);
    assert_eq!(ledger.writer_generations().await.unwrap(), vec![("plans".to_owned(), generation_b)]);

    // engine-a learns it was deposed at its next renewal and never halts or commits.
    wait(&a_handle, "a standby", |s| s.phase == Phase::Standby).await;
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), None);
    a_task.abort();
    b_task.abort();
}

#[tokio::test(start_paused = true)]
async fn generation_zero_is_not_checked_and_usage_is_fenced_too() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap();
    let records: Vec<UsageRecord> = Vec::new();
    let at = |generation: i64| UsageBatch { generation, ..UsageBatch::new(&records, 1) };
    ledger.apply_usage(at(4)).await.unwrap();
    let refused = ledger.apply_usage(at(3)).await.unwrap_err();
    assert!(refused.is_deposed(), "{refused:?}");
    ledger.apply_usage(at(0)).await.expect("outside the engine: not checked");
    ledger.apply_usage(at(4)).await.expect("the current leader again");
    ledger.apply_usage(at(5)).await.unwrap();
    assert!(ledger.apply_usage(at(4)).await.unwrap_err().is_deposed());
    assert_eq!(ledger.writer_generations().await.unwrap(), vec![("usage".to_owned(), 5)]);
    ledger.reset_writer_generations().await.unwrap();
    ledger.apply_usage(at(1)).await.expect("after a reset (a replaced state database)");
}

/// Counts the calls that reach the ledger.
struct Counting {
    ledger: Arc<SqliteLedger>,
    calls: Mutex<Vec<i64>>,
}

#[async_trait]
impl EventHandler for Counting {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.calls.lock().unwrap().push(ctx.generation);
        self.ledger.plan(ctx, change).await
    }
}

#[tokio::test(start_paused = true)]
async fn the_engine_takes_a_deposed_refusal_as_a_lost_lease_not_as_a_billing_failure() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    // The ledger has seen generation 5 on the plans feed (a newer leader billed through it).
    let seen = EventContext {
        key: IdempotencyKey { feed: FeedKind::Plans, event_id: 100 },
        method: &EventMethod::Post,
        state: NotificationState::Acknowledged,
        entity_parent_id: None,
        time_created: None,
        raw_entity: "{}",
        attempt: 1,
        billing_id: None,
        identity: None,
        generation: 5,
        deadline: tokio::time::Instant::now() + Duration::from_secs(10),
    };
    let silver = Plan { id: "silver".into(), ..Default::default() };
    ledger.plan(&seen, EntityChange::Created(&silver)).await.unwrap();

    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
    let source = MemorySource::new();
    source.push(plan_event(1, "gold"));
    let handler = Arc::new(Counting { ledger: Arc::clone(&ledger), calls: Mutex::default() });
    let config = EngineConfig::builder()
        .instance_id("engine-a")
        .lease_ttl(Duration::from_secs(60))
        .retry_max_attempts(2)
        .sync_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let p = EventProcessor::new(&config, Arc::new(source.clone()), Arc::clone(&store), handler.clone());
    let handle = p.handle();
    let task = tokio::spawn(p.run());
    wait(&handle, "refused as deposed", |s| s.last_store_error.as_deref().is_some_and(|e| e.contains("deposed"))).await;
    // Many lease lifetimes: refused again and again, never counted toward RetryMaxAttempts (2), never halted.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(handler.calls.lock().unwrap().len() > 2, "retried each term: {:?}", handler.calls.lock().unwrap());
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), None, "a refusal is not a billing failure");
    assert_ne!(handle.status().phase, Phase::Halted);
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![100]);

    // The state store's generation passes the ledger's (other holders came and went): billing resumes.
    for _ in 0..5 {
        let lease = store.try_acquire_lease(ProcessorKind::Notification, "intruder", Duration::from_secs(60), true);
        let lease = lease.await.unwrap().unwrap();
        let fence =
            Fence { processor: ProcessorKind::Notification, holder: "intruder".into(), generation: lease.generation };
        store.release_lease(&fence).await.unwrap();
    }
    wait(&handle, "caught up", |s| s.phase == Phase::CaughtUp).await;
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1, 100]);
    assert!(*handler.calls.lock().unwrap().last().unwrap() > 5);
    assert_eq!(store.halt(ProcessorKind::Notification).await.unwrap(), None);
    task.abort();
}
