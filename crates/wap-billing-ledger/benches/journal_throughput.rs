//! The journaled path beside the idempotent path, in the same process: usage records/s through the usage processor
//! into the [`AppendOnlyLedger`] (one durable SQLite commit per call, lines per meter), state in SQLite with
//! `synchronous = FULL`, batch 1,000. The two paths send the same lines to the same kind of ledger; only the
//! delivery path differs (journaled: intent commit + call + outcome commit; idempotent: call + commit). Rounds
//! alternate (idempotent, journaled, idempotent, …), each on fresh files; the ratio is taken per pair of rounds and
//! reported as the median with its range.
//!
//! `cargo bench -p wap-billing-ledger --bench journal_throughput` (`BENCH_RECORDS`, default 100,000;
//! `BENCH_ROUNDS`, default 5 pairs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use wap_billing_engine::{
    Delivery, EngineConfig, FeedItem, HandlerError, Intent, MemorySource, Reconciliation, SqliteStore, UsageBatch,
    UsageHandler, UsageLines, UsageProcessor, UsageShape,
};
use wap_billing_ledger::AppendOnlyLedger;
use wap_types::{StringMap, UsageRecord, WapDateTime};

/// The same ledger declared idempotent (the comparison only: it does not deduplicate).
struct AsIdempotent(AppendOnlyLedger);

#[async_trait]
impl UsageHandler for AsIdempotent {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        self.0.apply_usage(batch).await
    }
    fn delivery(&self) -> Delivery {
        Delivery::IdempotentByKey
    }
    fn usage_shape(&self) -> UsageShape {
        self.0.usage_shape()
    }
    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        self.0.apply_usage_lines(lines).await
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        self.0.reconcile(intent).await
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
        subscription_id: format!("90f94f4c-4679-406a-b6f4-{:012x}", id % 50),
        resources,
        ..Default::default()
    })
}

async fn round(source: &MemorySource, journaled: bool, n: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
    let ledger = AppendOnlyLedger::open(dir.path().join("ledger.db")).unwrap();
    let handler: Arc<dyn UsageHandler> =
        if journaled { Arc::new(ledger.clone()) } else { Arc::new(AsIdempotent(ledger.clone())) };
    assert_eq!(handler.delivery() == Delivery::Journaled, journaled);
    let config = EngineConfig::builder()
        .batch_size(1000)
        .sync_interval(Duration::from_millis(10))
        .instance_id("bench")
        .build()
        .unwrap();
    let p = UsageProcessor::new(&config, Arc::new(source.clone()), store, handler);
    let handle = p.handle();
    let started = Instant::now();
    let task = tokio::spawn(p.run());
    handle.wait_for(|s| s.last_committed() == Some(n as i64)).await;
    let rate = n as f64 / started.elapsed().as_secs_f64();
    task.abort();
    let calls = ledger.usage_calls().unwrap();
    assert_eq!(calls.iter().map(|c| c.records).sum::<u64>(), n);
    rate
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    let n: u64 = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let source = MemorySource::new();
        source.extend((1..=n as i64).map(record));
        let (mut idem, mut jour, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let i = round(&source, false, n).await;
            let j = round(&source, true, n).await;
            println!("round: idempotent {i:>9.0} records/s, journaled {j:>9.0} records/s, ratio {:.3}", j / i);
            idem.push(i);
            jour.push(j);
            ratios.push(j / i);
        }
        let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        println!("records: {n}, batch 1000, SQLite FULL (state and ledger), {rounds} alternating pairs");
        println!("idempotent path (median)   {:>10.0} records/s", median(&mut idem));
        println!("journaled path (median)    {:>10.0} records/s", median(&mut jour));
        let m = median(&mut ratios);
        println!("journaled / idempotent     median {m:.3} (range {lo:.3}–{hi:.3})");
        println!("RESULT journal_vs_idempotent median={m:.4} min={lo:.4} max={hi:.4} rounds={rounds}");
    });
}
