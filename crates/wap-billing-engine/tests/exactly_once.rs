//! Exactly-once across crashes: processors are killed at random points and restarted on the same SQLite state file.
//! The billing side is a ledger in its own SQLite file whose commit is a separate transaction from the engine's, so
//! a crash between the two re-delivers an event; the ledger's idempotency (unique key per `(feed, EventId)`)
//! absorbs it. At the end every event and record is in the ledger exactly once and committed exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use rusqlite::{params, Connection};
use wap_billing_engine::{
    ElectionMode, EngineConfig, EntityChange, EventContext, EventHandler, HandlerError, MemorySource, Phase,
    StateStore, UsageBatch, UsageHandler,
};
use wap_types::{
    AdminSubscription, EventMethod, FeedKind, NotificationState, Plan, PlanAddon, PlanAddonReference,
    ResourceProviderReference,
};

/// The billing system: one SQLite file, `applied` keyed by (feed, event_id) and a delivery counter.
#[derive(Debug)]
struct Ledger {
    path: PathBuf,
    /// When set: after committing this key for the first time, the handler never returns (a crash "right after the
    /// billing commit" is then provoked by the test).
    park_after: Mutex<Option<(String, i64)>>,
    parked: Arc<tokio::sync::Notify>,
    parked_once: AtomicBool,
}

impl Ledger {
    fn create(path: &Path) -> Arc<Self> {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS applied (feed TEXT NOT NULL, event_id INTEGER NOT NULL,
                                                 PRIMARY KEY (feed, event_id));
             CREATE TABLE IF NOT EXISTS deliveries (feed TEXT NOT NULL, event_id INTEGER NOT NULL,
                                                    n INTEGER NOT NULL, PRIMARY KEY (feed, event_id));",
        )
        .unwrap();
        Arc::new(Ledger {
            path: path.to_owned(),
            park_after: Mutex::new(None),
            parked: Arc::new(tokio::sync::Notify::new()),
            parked_once: AtomicBool::new(false),
        })
    }

    /// Applies keys idempotently in one ledger transaction.
    async fn apply(&self, feed: FeedKind, ids: Vec<i64>) -> Result<(), HandlerError> {
        let path = self.path.clone();
        let name = feed.name().to_owned();
        let keys = ids.clone();
        tokio::task::spawn_blocking(move || -> rusqlite::Result<()> {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let tx = conn.transaction()?;
            for id in &keys {
                tx.execute("INSERT OR IGNORE INTO applied (feed, event_id) VALUES (?1, ?2)", params![name, id])?;
                tx.execute(
                    "INSERT INTO deliveries (feed, event_id, n) VALUES (?1, ?2, 1)
                     ON CONFLICT (feed, event_id) DO UPDATE SET n = n + 1",
                    params![name, id],
                )?;
            }
            tx.commit()
        })
        .await
        .map_err(|e| HandlerError::failed(e.to_string()))?
        .map_err(HandlerError::from_error)?;
        let park = self.park_after.lock().unwrap().clone();
        if let Some((f, id)) = park {
            if f == feed.name() && ids.contains(&id) && !self.parked_once.swap(true, Ordering::SeqCst) {
                self.parked.notify_one();
                std::future::pending::<()>().await;
            }
        }
        Ok(())
    }

    fn rows(&self, sql: &str) -> Vec<(String, i64, i64)> {
        let conn = Connection::open(&self.path).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }

    fn applied(&self) -> Vec<(String, i64)> {
        self.rows("SELECT feed, event_id, 0 FROM applied ORDER BY feed, event_id")
            .into_iter()
            .map(|(f, id, _)| (f, id))
            .collect()
    }

    fn redelivered(&self) -> Vec<(String, i64, i64)> {
        self.rows("SELECT feed, event_id, n FROM deliveries WHERE n > 1")
    }
}

#[async_trait]
impl EventHandler for Ledger {
    async fn plan(&self, ctx: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
    async fn addon(&self, ctx: &EventContext<'_>, _: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        _: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        _: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        _: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        _: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.apply(ctx.key.feed, vec![ctx.key.event_id]).await
    }
}

#[async_trait]
impl UsageHandler for Ledger {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        self.apply(FeedKind::Usage, batch.records.iter().map(|r| r.event_id).collect()).await
    }
}

/// Events on all six feeds (one id sequence, 1..=240) and usage records 1..=3000.
fn fill(source: &MemorySource) -> Vec<(String, i64)> {
    let mut expected = Vec::new();
    for id in 1..=240i64 {
        let item = match id % 6 {
            0 => ack_plan(id),
            1 => addon(id, &format!("addon-{id}")),
            2 => plan_addon(id, "gold", "backup"),
            3 => plan_service(id, "gold", "sqlservers"),
            4 => subscription(id, NotificationState::Acknowledged, EventMethod::Post, &format!("sub-{id}")),
            _ => subscription_addon(id, "sub-4", &format!("inst-{id}")),
        };
        expected.push((item.feed().name().to_owned(), id));
        source.push(item);
    }
    source.extend((1..=3000).map(|id| usage(id, "sub-4")));
    expected.extend((1..=3000).map(|id| ("usage".to_owned(), id)));
    expected.sort();
    expected
}

fn crash_config() -> EngineConfig {
    config()
        .election_mode(ElectionMode::SingleInstance)
        .sync_interval(Duration::from_millis(20))
        .batch_size(50)
        .build()
        .unwrap()
}

async fn open_state(path: &Path) -> Arc<dyn StateStore> {
    Arc::new(wap_billing_engine::SqliteStore::open(path).await.unwrap())
}

/// Every committed unit is recorded once and the units of a feed are disjoint and cover everything.
async fn assert_committed_once(store: &Arc<dyn StateStore>, expected: &[(String, i64)]) {
    for feed in FeedKind::ALL {
        let rows = store.processed(feed, 0, i64::MAX).await.unwrap();
        let mut covered = Vec::new();
        for r in &rows {
            assert!(r.last_event_id >= r.event_id);
            covered.extend(r.event_id..=r.last_event_id);
        }
        let want: Vec<i64> = expected.iter().filter(|(f, _)| f == feed.name()).map(|(_, id)| *id).collect();
        assert_eq!(covered, want, "{feed}: committed exactly once, in order");
        assert_eq!(store.cursor(feed).await.unwrap().last_event_id, want.last().copied());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_applied_exactly_once_across_random_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.db");
    let ledger = Ledger::create(&dir.path().join("ledger.db"));
    let source = MemorySource::new();
    let expected = fill(&source);
    let config = crash_config();

    let mut crashes = 0;
    for round in 0..40 {
        let store = open_state(&state_path).await;
        let ev = spawn_events(&config, &source, &store, ledger.clone());
        let us = spawn_usage(&config, &source, &store, ledger.clone());
        // Crash somewhere between "just started" and "well into the backlog".
        tokio::time::sleep(Duration::from_millis(fastrand::u64(1..40))).await;
        ev.kill().await;
        us.kill().await;
        crashes += 1;
        if ledger.applied().len() == expected.len() && round > 10 {
            break;
        }
    }

    // A last run without crashes finishes the work.
    let store = open_state(&state_path).await;
    let ev = spawn_events(&config, &source, &store, ledger.clone());
    let us = spawn_usage(&config, &source, &store, ledger.clone());
    let limit = Duration::from_secs(120);
    wait_status(&ev.handle, limit, "events caught up", |s| {
        s.phase == Phase::CaughtUp && s.last_committed() == Some(240)
    })
    .await;
    wait_status(&us.handle, limit, "usage caught up", |s| {
        s.phase == Phase::CaughtUp && s.last_committed() == Some(3000)
    })
    .await;
    ev.stop().await;
    us.stop().await;

    assert_eq!(ledger.applied(), expected, "the ledger holds every event and record exactly once");
    assert_committed_once(&store, &expected).await;
    println!(
        "{crashes} crashes, {} keys delivered more than once (absorbed by the ledger)",
        ledger.redelivered().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_billing_commit_and_the_state_commit_redelivers_and_idempotency_absorbs_it() {
    let dir = tempfile::tempdir().unwrap();
    let state_path = dir.path().join("state.db");
    let ledger = Ledger::create(&dir.path().join("ledger.db"));
    let source = MemorySource::new();
    source.extend([ack_plan(1), ack_plan(2), ack_plan(3)]);
    *ledger.park_after.lock().unwrap() = Some(("plans".into(), 2));
    let config = crash_config();

    let store = open_state(&state_path).await;
    let ev = spawn_events(&config, &source, &store, ledger.clone());
    tokio::time::timeout(Duration::from_secs(30), ledger.parked.notified()).await.expect("event 2 reached the ledger");
    ev.kill().await; // the ledger committed event 2; the engine never did
    assert_eq!(store.cursor(FeedKind::Plans).await.unwrap().last_event_id, Some(1));
    assert!(ledger.applied().contains(&("plans".into(), 2)));

    let store = open_state(&state_path).await;
    let ev = spawn_events(&config, &source, &store, ledger.clone());
    wait_status(&ev.handle, Duration::from_secs(30), "caught up", |s| s.last_committed() == Some(3)).await;
    ev.stop().await;
    assert_eq!(ledger.redelivered(), vec![("plans".to_owned(), 2, 2)], "event 2 was delivered again after the crash");
    assert_eq!(
        ledger.applied(),
        vec![("plans".to_owned(), 1), ("plans".to_owned(), 2), ("plans".to_owned(), 3)],
        "and is in the ledger once"
    );
    let rows = store.processed(FeedKind::Plans, 0, 10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.event_id).collect::<Vec<_>>(), vec![1, 2, 3], "committed once each");
}
