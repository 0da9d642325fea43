//! Engine throughput with durable SQLite commits, beside the raw page rate of the same in-memory source.
//!
//! `cargo bench -p wap-billing-engine --bench engine_throughput` (set `BENCH_RECORDS`, default 100000).
//!
//! * baseline: paging the in-memory source alone (fetch, sort, advance): the engine's upper bound here;
//! * usage processor, `synchronous = FULL` and `NORMAL`: one fenced commit (cursor + processed range) per batch;
//! * event processor, `FULL`: one fenced commit per event (the exactly-once unit of the event feeds).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wap_billing_engine::store::SqliteSync;
use wap_billing_engine::{
    EngineConfig, EntityChange, EventContext, EventHandler, EventProcessor, FeedItem, FeedSource, HandlerError,
    MemorySource, SqliteStore, StateStore, UsageBatch, UsageHandler, UsageProcessor,
};
use wap_types::{
    EventMethod, FeedKind, NotificationState, Plan, StartId, StringMap, UsageEvent, UsageRecord, WapDateTime,
};

#[derive(Default)]
struct Count(AtomicU64);

#[async_trait]
impl UsageHandler for Count {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        self.0.fetch_add(batch.records.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[async_trait]
impl EventHandler for Count {
    async fn plan(&self, _: &EventContext<'_>, _: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn record(id: i64) -> FeedItem {
    let mut resources = StringMap::new();
    resources.0.insert("DatabaseCount".into(), "2".into());
    resources.0.insert("TotalAllottedSpace".into(), "2048".into());
    FeedItem::Usage(UsageRecord {
        event_id: id,
        external_record_id: Some(id.to_string()),
        start_time: WapDateTime::parse("2015-06-02T08:00:00").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00").unwrap(),
        provider_name: Some("mysqlservers".into()),
        service_type: Some("Default".into()),
        subscription_id: "90f94f4c-4679-406a-b6f4-4814d281b3fc".into(),
        resources,
        ..Default::default()
    })
}

fn config(batch: u32) -> EngineConfig {
    EngineConfig::builder()
        .batch_size(batch)
        .sync_interval(Duration::from_millis(10))
        .instance_id("bench")
        .build()
        .unwrap()
}

async fn baseline(source: &MemorySource, feed: FeedKind, n: u64, batch: u32) -> f64 {
    let started = Instant::now();
    let mut start = StartId::BEGINNING;
    let mut seen = 0u64;
    loop {
        let mut page = source.fetch(feed, start, batch).await.unwrap();
        if page.is_empty() {
            break;
        }
        page.sort_by_key(FeedItem::event_id);
        seen += page.len() as u64;
        start = start.next_after_page(page.iter().map(FeedItem::event_id));
    }
    assert_eq!(seen, n);
    n as f64 / started.elapsed().as_secs_f64()
}

async fn store(dir: &tempfile::TempDir, name: &str, sync: SqliteSync) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open_with(dir.path().join(name), sync).await.unwrap())
}

async fn usage_rate(source: &MemorySource, store: Arc<dyn StateStore>, n: u64, batch: u32) -> f64 {
    let count = Arc::new(Count::default());
    let p = UsageProcessor::new(&config(batch), Arc::new(source.clone()), store, count.clone());
    let handle = p.handle();
    let started = Instant::now();
    let task = tokio::spawn(p.run());
    handle.wait_for(|s| s.last_committed() == Some(n as i64)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    task.abort();
    assert_eq!(count.0.load(Ordering::Relaxed), n);
    rate
}

async fn event_rate(source: &MemorySource, store: Arc<dyn StateStore>, n: u64) -> f64 {
    let count = Arc::new(Count::default());
    let p = EventProcessor::new(&config(1000), Arc::new(source.clone()), store, count.clone());
    let handle = p.handle();
    let started = Instant::now();
    let task = tokio::spawn(p.run());
    handle.wait_for(|s| s.feed(FeedKind::Plans).and_then(|f| f.last_committed) == Some(n as i64)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    task.abort();
    assert_eq!(count.0.load(Ordering::Relaxed), n);
    rate
}

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let events: u64 = (n / 20).max(100);
    let batch = 1000;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let source = MemorySource::new();
        source.extend((1..=n as i64).map(record));
        source.extend((1..=events as i64).map(|id| {
            let plan = Plan { id: format!("plan-{id}"), ..Default::default() };
            FeedItem::Plan(UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Put, plan))
        }));

        let base = baseline(&source, FeedKind::Usage, n, batch).await;
        let full = usage_rate(&source, store(&dir, "full.db", SqliteSync::Full).await, n, batch).await;
        let normal = usage_rate(&source, store(&dir, "normal.db", SqliteSync::Normal).await, n, batch).await;
        let ev_base = baseline(&source, FeedKind::Plans, events, batch).await;
        let ev_full = event_rate(&source, store(&dir, "events.db", SqliteSync::Full).await, events).await;

        println!("records: {n}, batch {batch}; events: {events}");
        println!("baseline page rate (usage)         {base:>12.0} records/s");
        println!("usage processor, SQLite FULL       {full:>12.0} records/s  ({:.3} of baseline)", full / base);
        println!("usage processor, SQLite NORMAL     {normal:>12.0} records/s  ({:.3} of baseline)", normal / base);
        println!("baseline page rate (plans)         {ev_base:>12.0} events/s");
        println!(
            "event processor, SQLite FULL       {ev_full:>12.0} events/s   ({:.4} of baseline)",
            ev_full / ev_base
        );
    });
}
