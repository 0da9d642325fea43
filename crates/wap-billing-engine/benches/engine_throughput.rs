//! Engine throughput with durable SQLite commits, beside the raw page rate of the same in-memory source.
//!
//! `cargo bench -p wap-billing-engine --bench engine_throughput` (`BENCH_RECORDS`, default 100000; `BENCH_ROUNDS`,
//! default 5).
//!
//! Every round measures every case once (the order rotating between rounds), each processor on a fresh state file
//! opened before the timed part; ratios are taken within each round, and the median and range are printed, with a
//! `RESULT` line per ratio for `scripts/bench`.
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

/// Median, lowest and highest of `values`.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (median, v[0], v[v.len() - 1])
}

fn report(key: &str, what: &str, values: &[f64]) {
    let (median, min, max) = summary(values);
    let precision = if median >= 100.0 { 0 } else { 4 };
    println!(
        "{what}: median {median:.precision$} (range {min:.precision$}-{max:.precision$}, {} rounds)",
        values.len()
    );
    println!("RESULT {key} median={median:.4} min={min:.4} max={max:.4} rounds={}", values.len());
}

fn main() {
    let full_run = std::env::args().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let n: u64 = env("BENCH_RECORDS").unwrap_or(if full_run { 100_000 } else { 2_000 });
    let rounds = env("BENCH_ROUNDS").unwrap_or(if full_run { 5 } else { 1 }).max(1) as usize;
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
        println!("records: {n}, batch {batch}; events: {events}; {rounds} rounds");
        // [baseline, FULL, NORMAL, event baseline, events FULL]
        let mut rates: [Vec<f64>; 5] = Default::default();
        for round in 0..rounds {
            for k in 0..5 {
                let case = (k + round) % 5;
                let file = format!("r{round}-c{case}.db");
                let rate = match case {
                    0 => baseline(&source, FeedKind::Usage, n, batch).await,
                    1 => usage_rate(&source, store(&dir, &file, SqliteSync::Full).await, n, batch).await,
                    2 => usage_rate(&source, store(&dir, &file, SqliteSync::Normal).await, n, batch).await,
                    3 => baseline(&source, FeedKind::Plans, events, batch).await,
                    _ => event_rate(&source, store(&dir, &file, SqliteSync::Full).await, events).await,
                };
                rates[case].push(rate);
            }
            println!(
                "round {round}: baseline {:.0}, FULL {:.0}, NORMAL {:.0} records/s; events baseline {:.0}, FULL {:.0} events/s",
                rates[0][round], rates[1][round], rates[2][round], rates[3][round], rates[4][round]
            );
        }
        let ratio = |a: usize, b: usize| rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect::<Vec<_>>();
        report("engine_baseline_rate", "baseline page rate (usage), records/s", &rates[0]);
        report("engine_usage_full_rate", "usage processor, SQLite FULL, records/s", &rates[1]);
        report("engine_usage_normal_rate", "usage processor, SQLite NORMAL, records/s", &rates[2]);
        report("engine_event_full_rate", "event processor, SQLite FULL, events/s", &rates[4]);
        report("engine_usage_full_vs_baseline", "usage processor FULL / baseline", &ratio(1, 0));
        report("engine_usage_normal_vs_baseline", "usage processor NORMAL / baseline", &ratio(2, 0));
        report("engine_event_full_vs_baseline", "event processor FULL / baseline", &ratio(4, 3));
    });
}
