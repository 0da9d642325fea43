//! Shared test helpers: event builders, scriptable recording handlers, store constructors.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use wap_billing_engine::{
    EngineConfig, EngineConfigBuilder, EntityChange, EventContext, EventHandler, FeedItem, HandlerError, StateStore,
    UsageBatch, UsageHandler,
};
use wap_types::{
    AdminSubscription, EventMethod, FeedKind, NotificationState, Plan, PlanAddon, PlanAddonReference,
    ResourceProviderReference, StringMap, UsageEvent, UsageRecord, WapDateTime,
};

// ---------- items ----------

pub fn plan(id: i64, state: NotificationState, method: EventMethod, plan_id: &str) -> FeedItem {
    let entity = Plan { id: plan_id.into(), display_name: Some(format!("Plan {plan_id}")), ..Default::default() };
    FeedItem::Plan(UsageEvent::new(id, state, method, entity))
}

pub fn addon(id: i64, addon_id: &str) -> FeedItem {
    let entity = PlanAddon { id: addon_id.into(), ..Default::default() };
    FeedItem::Addon(UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, entity))
}

pub fn plan_addon(id: i64, plan_id: &str, addon_id: &str) -> FeedItem {
    let entity = PlanAddonReference { add_on_id: addon_id.into(), ..Default::default() };
    FeedItem::PlanAddon(
        UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, entity).with_parent(plan_id),
    )
}

pub fn plan_service(id: i64, plan_id: &str, rp: &str) -> FeedItem {
    let entity = ResourceProviderReference { name: rp.into(), ..Default::default() };
    FeedItem::PlanService(
        UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, entity).with_parent(plan_id),
    )
}

pub fn subscription(id: i64, state: NotificationState, method: EventMethod, sub_id: &str) -> FeedItem {
    let entity = AdminSubscription { plan_id: Some("gold".into()), ..AdminSubscription::with_id(sub_id) };
    FeedItem::Subscription(UsageEvent::new(id, state, method, entity))
}

pub fn subscription_addon(id: i64, sub_id: &str, instance: &str) -> FeedItem {
    let entity = PlanAddonReference {
        add_on_id: "backup".into(),
        add_on_instance_id: Some(instance.into()),
        ..Default::default()
    };
    FeedItem::SubscriptionAddon(
        UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, entity).with_parent(sub_id),
    )
}

pub fn ack_plan(id: i64) -> FeedItem {
    plan(id, NotificationState::Acknowledged, EventMethod::Post, &format!("plan-{id}"))
}

pub fn usage(id: i64, sub_id: &str) -> FeedItem {
    let mut resources = StringMap::new();
    resources.0.insert("DatabaseCount".into(), "1".into());
    FeedItem::Usage(UsageRecord {
        event_id: id,
        external_record_id: Some(id.to_string()),
        start_time: WapDateTime::parse("2015-06-02T08:00:00").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00").unwrap(),
        provider_name: Some("mysqlservers".into()),
        subscription_id: sub_id.into(),
        resources,
        ..Default::default()
    })
}

// ---------- scriptable handlers ----------

/// What a scripted call answers.
#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    Fail(&'static str),
    NotReady(&'static str),
    /// Fails naming a usage record.
    FailRecord(i64),
}

/// One handler call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub feed: FeedKind,
    pub event_id: i64,
    pub verb: &'static str,
    pub attempt: u32,
    pub billing_id: Option<String>,
    pub ok: bool,
    pub at: tokio::time::Instant,
}

/// Records every call; answers from a per-event script (default `Ok`), or `Fail` forever for ids in `always_fail`.
#[derive(Debug, Default)]
pub struct Recorder {
    calls: Mutex<Vec<Call>>,
    script: Mutex<HashMap<(FeedKind, i64), VecDeque<Answer>>>,
    always_fail: Mutex<Vec<(FeedKind, i64)>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Recorder::default())
    }

    pub fn script(&self, feed: FeedKind, event_id: i64, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().entry((feed, event_id)).or_default().extend(answers);
    }

    pub fn fail_always(&self, feed: FeedKind, event_id: i64) {
        self.always_fail.lock().unwrap().push((feed, event_id));
    }

    pub fn stop_failing(&self) {
        self.always_fail.lock().unwrap().clear();
        self.script.lock().unwrap().clear();
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, feed: FeedKind, event_id: i64) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.feed == feed && c.event_id == event_id).collect()
    }

    /// Successful calls, in order, as `(feed, event_id)`.
    pub fn applied(&self) -> Vec<(FeedKind, i64)> {
        self.calls().into_iter().filter(|c| c.ok).map(|c| (c.feed, c.event_id)).collect()
    }

    fn has_script(&self, feed: FeedKind, event_id: i64) -> bool {
        self.always_fail.lock().unwrap().contains(&(feed, event_id))
            || self.script.lock().unwrap().get(&(feed, event_id)).is_some_and(|q| !q.is_empty())
    }

    fn answer(&self, feed: FeedKind, event_id: i64) -> Answer {
        if self.always_fail.lock().unwrap().contains(&(feed, event_id)) {
            return Answer::Fail("billing system refused");
        }
        self.script.lock().unwrap().get_mut(&(feed, event_id)).and_then(VecDeque::pop_front).unwrap_or(Answer::Ok)
    }

    fn call(
        &self,
        feed: FeedKind,
        event_id: i64,
        verb: &'static str,
        attempt: u32,
        billing_id: Option<String>,
    ) -> Result<(), HandlerError> {
        let answer = self.answer(feed, event_id);
        let result = match answer {
            Answer::Ok => Ok(()),
            Answer::Fail(m) => Err(HandlerError::failed(m)),
            Answer::NotReady(m) => Err(HandlerError::dependency_not_ready(m)),
            Answer::FailRecord(id) => Err(HandlerError::failed(format!("record {id} refused")).for_record(id)),
        };
        self.calls.lock().unwrap().push(Call {
            feed,
            event_id,
            verb,
            attempt,
            billing_id,
            ok: result.is_ok(),
            at: tokio::time::Instant::now(),
        });
        result
    }

    fn event<T>(&self, ctx: &EventContext<'_>, change: EntityChange<'_, T>) -> Result<(), HandlerError> {
        self.call(ctx.key.feed, ctx.key.event_id, change.verb(), ctx.attempt, ctx.billing_id.clone())
    }
}

#[async_trait]
impl EventHandler for Recorder {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.event(ctx, change)
    }
}

/// Usage: one `Call` per batch (event_id = first record); `batches()` gives each batch's ids.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    pub inner: Recorder,
    batches: Mutex<Vec<(Vec<i64>, bool)>>,
}

impl UsageRecorder {
    pub fn new() -> Arc<Self> {
        Arc::new(UsageRecorder::default())
    }

    /// Every batch handed over: record ids and whether it succeeded.
    pub fn batches(&self) -> Vec<(Vec<i64>, bool)> {
        self.batches.lock().unwrap().clone()
    }

    /// Ids of records in successful batches, in order.
    pub fn applied_records(&self) -> Vec<i64> {
        self.batches().into_iter().filter(|(_, ok)| *ok).flat_map(|(ids, _)| ids).collect()
    }
}

#[async_trait]
impl UsageHandler for UsageRecorder {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        // The first record of the batch with a scripted answer answers for the batch.
        let ids: Vec<i64> = batch.records.iter().map(|r| r.event_id).collect();
        let scripted = ids.iter().copied().find(|id| self.inner.has_script(FeedKind::Usage, *id));
        let id = scripted.unwrap_or(batch.first_event_id());
        let result = self.inner.call(FeedKind::Usage, id, "batch", batch.attempt, None);
        self.batches.lock().unwrap().push((ids, result.is_ok()));
        result
    }
}

// ---------- config and stores ----------

/// Test defaults: 1 s cycles, 30 s retry sleep (spec), a long lease (paused-time tests), one instance id per call.
pub fn config() -> EngineConfigBuilder {
    EngineConfig::builder()
        .sync_interval(Duration::from_secs(60))
        .lease_ttl(Duration::from_secs(3600))
        .instance_id(format!("test-{:08x}", fastrand::u32(..)))
}

pub async fn sqlite_store(dir: &tempfile::TempDir, name: &str) -> Arc<dyn StateStore> {
    Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join(name)).await.expect("open sqlite store"))
}

/// The PostgreSQL test URL. Tests that call it carry `#[cfg_attr(not(wap_billing_postgres_tests), ignore = ...)]`
/// (see `build.rs`): they are only run when the variable was set at build time, and then a missing URL is a failure.
pub fn postgres_url() -> String {
    std::env::var("WAP_BILLING_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .or_else(|| option_env!("WAP_BILLING_TEST_POSTGRES_URL").map(str::to_owned))
        .expect("WAP_BILLING_TEST_POSTGRES_URL: set when these tests were built, but not now")
}

/// A fresh schema name for one test.
pub fn fresh_schema(test: &str) -> String {
    format!("t_{}_{:08x}", &test[..test.len().min(40)], fastrand::u32(..))
}

/// Waits (bounded) until `f` holds, polling every 10 ms of Tokio time.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------- running processors ----------

/// A processor running in a task.
pub struct Running {
    pub handle: wap_billing_engine::ProcessorHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Graceful stop (releases the lease).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(600), &mut self.task).await.expect("processor stops").unwrap();
    }

    /// A crash: the task is aborted (nothing released).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

fn spawn_with(
    handle: wap_billing_engine::ProcessorHandle,
    run: impl FnOnce(tokio::sync::oneshot::Receiver<()>) -> futures_util::future::BoxFuture<'static, ()>,
) -> Running {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(run(rx));
    Running { handle, stop: Some(tx), task }
}

pub fn spawn_events(
    config: &EngineConfig,
    source: &wap_billing_engine::MemorySource,
    store: &Arc<dyn StateStore>,
    handler: Arc<dyn EventHandler>,
) -> Running {
    let p = wap_billing_engine::EventProcessor::new(config, Arc::new(source.clone()), Arc::clone(store), handler);
    spawn_with(p.handle(), move |rx| {
        Box::pin(p.run_until(async move {
            let _ = rx.await;
        }))
    })
}

pub fn spawn_usage(
    config: &EngineConfig,
    source: &wap_billing_engine::MemorySource,
    store: &Arc<dyn StateStore>,
    handler: Arc<dyn UsageHandler>,
) -> Running {
    let p = wap_billing_engine::UsageProcessor::new(config, Arc::new(source.clone()), Arc::clone(store), handler);
    spawn_with(p.handle(), move |rx| {
        Box::pin(p.run_until(async move {
            let _ = rx.await;
        }))
    })
}

/// Waits (bounded by `limit` of Tokio time) for a status predicate.
pub async fn wait_status(
    handle: &wap_billing_engine::ProcessorHandle,
    limit: Duration,
    what: &str,
    pred: impl FnMut(&wap_billing_engine::ProcessorStatus) -> bool,
) -> wap_billing_engine::ProcessorStatus {
    match tokio::time::timeout(limit, handle.wait_for(pred)).await {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for: {what}; status: {:#?}", handle.status()),
    }
}

pub async fn sqlite_store_fast(dir: &tempfile::TempDir, name: &str) -> Arc<dyn StateStore> {
    Arc::new(
        wap_billing_engine::SqliteStore::open_with(
            dir.path().join(name),
            wap_billing_engine::store::SqliteSync::Normal,
        )
        .await
        .expect("open sqlite store"),
    )
}
