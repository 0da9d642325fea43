//! Failover between two engines sharing one state database (one SQLite file; PostgreSQL when
//! `WAP_BILLING_TEST_POSTGRES_URL` is set): only the leader processes; when it dies the other takes over after the
//! lease expires; nothing is committed twice; a deposed leader cannot commit; losing the lease cancels the billing
//! call in flight; on the journaled path, with a billing system that cannot deduplicate and the leader killed
//! between its billing call and its commit, every record is billed exactly once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use wap_billing_engine::{
    Delivery, ElectionMode, EngineConfig, EntityChange, EventContext, EventHandler, HandlerError, Intent, MemorySource,
    Phase, ProcessorKind, Reconciliation, StateStore, UsageBatch, UsageHandler,
};
use wap_types::{FeedKind, Plan};

const LIMIT: Duration = Duration::from_secs(60);

/// Counts deliveries per record, shared by both engines (the billing system they both write to).
#[derive(Debug, Default)]
struct SharedLedger {
    deliveries: Mutex<HashMap<i64, u32>>,
}

#[async_trait]
impl UsageHandler for SharedLedger {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut d = self.deliveries.lock().unwrap();
        for r in batch.records {
            *d.entry(r.event_id).or_default() += 1;
        }
        Ok(())
    }
}

fn engine_config(name: &str, ttl: Duration) -> EngineConfig {
    config()
        .instance_id(name)
        .lease_ttl(ttl)
        .election_mode(ElectionMode::Elect)
        .sync_interval(Duration::from_millis(20))
        .batch_size(10)
        .build()
        .unwrap()
}

type Pair = (Arc<dyn StateStore>, Arc<dyn StateStore>, Option<tempfile::TempDir>);

async fn sqlite_pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite_store(&dir, "shared.db").await;
    let b = sqlite_store(&dir, "shared.db").await;
    (a, b, Some(dir))
}

async fn postgres_pair(test: &str) -> Pair {
    let url = postgres_url();
    let schema = fresh_schema(test);
    let a = wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap();
    let b = wap_billing_engine::PostgresStore::connect_in_schema(&url, &schema).await.unwrap();
    (Arc::new(a), Arc::new(b), None)
}

async fn the_standby_takes_over_when_the_leader_dies((a, b, _dir): Pair) {
    let source = MemorySource::new();
    source.extend((1..=600).map(|id| usage(id, "sub-a")));
    let ledger = Arc::new(SharedLedger::default());
    let ttl = Duration::from_millis(800);

    let engine_a = spawn_usage(&engine_config("engine-a", ttl), &source, &a, ledger.clone());
    let leader = wait_status(&engine_a.handle, LIMIT, "a leads", |s| s.is_leader()).await;
    let engine_b = spawn_usage(&engine_config("engine-b", ttl), &source, &b, ledger.clone());
    wait_status(&engine_a.handle, LIMIT, "a made progress", |s| s.applied() >= 100).await;
    let standby = engine_b.handle.status();
    assert!(!standby.is_leader(), "only one leader: {standby:?}");
    assert_eq!(standby.applied(), 0, "the standby processed nothing");

    // The leader dies without releasing its lease.
    engine_a.kill().await;
    let took_over = wait_status(&engine_b.handle, LIMIT, "b takes over", |s| s.is_leader()).await;
    assert!(took_over.leader_generation > leader.leader_generation, "a new generation fences the old leader");
    let done = wait_status(&engine_b.handle, LIMIT, "b finishes", |s| {
        s.phase == Phase::CaughtUp && s.last_committed() == Some(600)
    })
    .await;
    assert!(done.applied() > 0 && done.applied() < 600, "both engines did part of the work: {}", done.applied());
    let lease = a.lease(ProcessorKind::Usage).await.unwrap().unwrap();
    assert_eq!(lease.holder.as_deref(), Some("engine-b"));

    // Committed exactly once: disjoint ranges covering 1..=600.
    let rows = a.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    let covered: Vec<i64> = rows.iter().flat_map(|r| r.event_id..=r.last_event_id).collect();
    assert_eq!(covered, (1..=600).collect::<Vec<_>>());
    // Delivered to the billing side once each, except at most the one batch in flight when the leader died.
    let deliveries = ledger.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 600, "every record reached the billing side");
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    assert!(twice.len() <= 10, "only the batch in flight at the crash may come again: {twice:?}");

    // A graceful stop hands the lease over at once (release).
    engine_b.stop().await;
    let released = a.lease(ProcessorKind::Usage).await.unwrap().unwrap();
    assert_eq!(released.holder, None);
}

/// Blocks the handler on one event until told to go on; notes whether the call was dropped.
#[derive(Debug, Default)]
struct Gate {
    entered: tokio::sync::Notify,
    open: tokio::sync::Notify,
    cancelled: AtomicBool,
    calls: Mutex<Vec<(i64, bool)>>,
    blocking: Mutex<Option<i64>>,
}

struct DropFlag<'a>(&'a AtomicBool, bool);

impl Drop for DropFlag<'_> {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl EventHandler for Gate {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let id = ctx.key.event_id;
        let blocking = *self.blocking.lock().unwrap() == Some(id);
        if blocking {
            *self.blocking.lock().unwrap() = None;
            let mut flag = DropFlag(&self.cancelled, false);
            self.entered.notify_one();
            self.open.notified().await;
            flag.1 = true;
        }
        self.calls.lock().unwrap().push((id, blocking));
        Ok(())
    }
}

async fn a_deposed_leader_cannot_commit((a, _b, _dir): Pair) {
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    let gate = Arc::new(Gate::default());
    *gate.blocking.lock().unwrap() = Some(2);
    // A long lease: only fencing, not expiry, can stop the old leader here.
    let config = engine_config("engine-a", Duration::from_secs(3600));
    let engine = spawn_events(&config, &source, &a, gate.clone());
    tokio::time::timeout(LIMIT, gate.entered.notified()).await.expect("event 2 is being applied");
    let old = engine.handle.status().leader_generation.unwrap();

    // Another instance takes the lease while engine-a is inside the billing call.
    let intruder =
        a.try_acquire_lease(ProcessorKind::Notification, "intruder", Duration::from_secs(3600), true).await.unwrap();
    assert_eq!(intruder.unwrap().generation, old + 1);
    gate.open.notify_one();

    // engine-a's commit is refused: event 2 stays uncommitted and nothing after it is applied.
    eventually("handler returned", LIMIT, || gate.calls.lock().unwrap().len() == 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(1));
    assert!(a.processed(FeedKind::Plans, 2, 3).await.unwrap().is_empty());
    assert_eq!(gate.calls.lock().unwrap().clone(), vec![(1, false), (2, true)], "event 3 never called");
    engine.kill().await;
}

async fn losing_the_lease_cancels_the_billing_call_in_flight((a, _b, _dir): Pair) {
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2)]);
    let gate = Arc::new(Gate::default());
    *gate.blocking.lock().unwrap() = Some(2);
    let ttl = Duration::from_millis(600);
    let engine = spawn_events(&engine_config("engine-a", ttl), &source, &a, gate.clone());
    tokio::time::timeout(LIMIT, gate.entered.notified()).await.expect("event 2 is being applied");
    a.try_acquire_lease(ProcessorKind::Notification, "intruder", Duration::from_secs(3600), true).await.unwrap();

    // The next renewal fails: the engine drops the call (its future is cancelled) and stands by.
    let status = wait_status(&engine.handle, LIMIT, "standby", |s| !s.is_leader() && s.phase == Phase::Standby).await;
    assert!(status.leader_generation.is_none());
    eventually("call dropped", LIMIT, || gate.cancelled.load(Ordering::SeqCst)).await;
    assert_eq!(a.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(1));
    assert_eq!(gate.calls.lock().unwrap().clone(), vec![(1, false)], "the blocked call never completed");
    engine.stop().await;
}

/// A billing system that cannot deduplicate (every call appends), shared by both engines, on the journaled path.
/// Once `park_from` is reached it commits that call and then hangs: the leader is killed right there, between the
/// billing system's commit and its own.
#[derive(Debug, Default)]
struct AppendOnly {
    deliveries: Mutex<HashMap<i64, u32>>,
    tokens: Mutex<Vec<String>>,
    park_from: Mutex<Option<i64>>,
    parked: tokio::sync::Notify,
}

#[async_trait]
impl UsageHandler for AppendOnly {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        {
            let mut d = self.deliveries.lock().unwrap();
            for r in batch.records {
                *d.entry(r.event_id).or_default() += 1;
            }
            let token = Intent::default_token(FeedKind::Usage, batch.first_event_id(), batch.last_event_id());
            self.tokens.lock().unwrap().push(token);
        }
        let park = {
            let mut p = self.park_from.lock().unwrap();
            let park = p.is_some_and(|from| batch.first_event_id() >= from);
            if park {
                *p = None;
            }
            park
        };
        if park {
            self.parked.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(())
    }
    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(match self.tokens.lock().unwrap().iter().filter(|t| **t == intent.token).count() {
            0 => Reconciliation::NotApplied,
            1 => Reconciliation::Applied,
            n => Reconciliation::unknown(format!("{n} calls carry {}", intent.token)),
        })
    }
}

async fn on_the_journaled_path_the_standby_takes_over_exactly_once((a, b, _dir): Pair) {
    let source = MemorySource::new();
    source.extend((1..=600).map(|id| usage(id, "sub-a")));
    let billing = Arc::new(AppendOnly::default());
    *billing.park_from.lock().unwrap() = Some(200);
    let ttl = Duration::from_millis(800);

    let engine_a = spawn_usage(&engine_config("engine-a", ttl), &source, &a, billing.clone());
    wait_status(&engine_a.handle, LIMIT, "a leads", |s| s.is_leader()).await;
    let engine_b = spawn_usage(&engine_config("engine-b", ttl), &source, &b, billing.clone());
    // The leader's billing call at id >= 200 has committed in the billing system and hangs: kill it there.
    tokio::time::timeout(LIMIT, billing.parked.notified()).await.expect("the leader reached the window");
    let open = a.intent(ProcessorKind::Usage).await.unwrap().expect("the parked call's intent is open");
    assert!(a.processed(FeedKind::Usage, open.first_event_id, open.last_event_id).await.unwrap().is_empty());
    engine_a.kill().await;

    let done = wait_status(&engine_b.handle, LIMIT, "b finishes", |s| {
        s.phase == Phase::CaughtUp && s.last_committed() == Some(600)
    })
    .await;
    assert_eq!(done.intents_reconciled, 1, "b reconciled the intent a left open");
    assert_eq!(a.intent(ProcessorKind::Usage).await.unwrap(), None, "no intent left open");
    let rows = a.processed(FeedKind::Usage, 0, i64::MAX).await.unwrap();
    assert!(
        rows.iter().any(|r| (r.event_id, r.last_event_id) == (open.first_event_id, open.last_event_id)),
        "the open intent was committed as applied by b: {rows:?}"
    );
    let covered: Vec<i64> = rows.iter().flat_map(|r| r.event_id..=r.last_event_id).collect();
    assert_eq!(covered, (1..=600).collect::<Vec<_>>());
    // No allowance: every record reached the billing system exactly once.
    let deliveries = billing.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 600, "every record reached the billing side");
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    assert!(twice.is_empty(), "records billed twice: {twice:?}");
    engine_b.stop().await;
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::sqlite_pair().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(wap_billing_postgres_tests), ignore = "set WAP_BILLING_TEST_POSTGRES_URL")]
                async fn $name() {
                    super::$name(super::postgres_pair(stringify!($name)).await).await;
                }
            )*
        }
    };
}

backends!(
    the_standby_takes_over_when_the_leader_dies,
    a_deposed_leader_cannot_commit,
    losing_the_lease_cancels_the_billing_call_in_flight,
    on_the_journaled_path_the_standby_takes_over_exactly_once,
);
