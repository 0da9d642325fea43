//! Adapter throughput and peak memory: usage records/s from an in-process `wap-sim` through the `Adapter`
//! (`UsageServiceSource` → usage processor → reference ledger, `synchronous = FULL` on both the ledger and the
//! state store: every batch is two durable commits), beside the pure pull rate of `wap-usage-client` (a typed
//! stream of the same records, nothing stored) in the same run, at the same batch size.
//!
//! `cargo bench -p wap-billing-engine --bench adapter_throughput` (`BENCH_RECORDS`, default 1,000,000;
//! `BENCH_BATCHES`, default `1000,10000`).
//!
//! Each case runs in a fresh child process (Linux): the simulator is started, `/proc/self/clear_refs` resets the
//! peak, the case runs, and the peak growth is `VmHWM − VmRSS` before the case, read from `/proc/self/status`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wap_billing_engine::usage_client::{RetryPolicy, UsageClient};
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, SqliteStore};
use wap_billing_ledger::SqliteLedger;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::StartId;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn case(kind: &str, records: u64, batch: u32) -> (u64, f64, u64, u64) {
    let sim = WapSim::builder().seed(3).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let client = || {
        UsageClient::builder()
            .base_url(sim.usage_service_url().as_str())
            .basic_credentials(sim.credentials())
            .batch_size(batch)
    };
    reset_peak();
    let base = status_kib("VmRSS:");
    let started = Instant::now();
    let done = match kind {
        "pull" => {
            let client = client().retry_policy(RetryPolicy::disabled()).build().unwrap();
            let mut stream = client.usage().stream_from(StartId::BEGINNING);
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                let item = item.unwrap();
                std::hint::black_box(&item.item);
                n += 1;
            }
            n
        }
        "adapter" => {
            let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
            let store = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
            let config = EngineConfig::builder()
                .instance_id("bench")
                .election_mode(ElectionMode::SingleInstance)
                .batch_size(batch)
                .sync_interval(Duration::from_millis(50))
                .retry_sleep(Duration::from_millis(10))
                .build()
                .unwrap();
            let adapter = Adapter::builder(config)
                .usage_service(client())
                .state_store(store)
                .billing_system(Arc::clone(&ledger))
                .start()
                .await
                .unwrap();
            adapter.wait_caught_up(Duration::from_secs(3_600)).await.unwrap();
            let n = ledger.usage_count().await.unwrap();
            adapter.shutdown().await;
            n
        }
        other => panic!("unknown case {other}"),
    };
    let rate = done as f64 / started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    assert_eq!(done, records, "{kind}: every record");
    sim.shutdown().await;
    (done, rate, base, peak)
}

fn run_child(kind: &str, records: u64, batch: u32) -> (f64, u64, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--case", kind, &records.to_string(), &batch.to_string()])
        .output()
        .expect("run the case in a child process");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| {
        panic!("case {kind} {records} {batch} failed: {text}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let v: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[1], v[2] as u64, v[3] as u64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let (kind, records, batch) = (args[i + 1].clone(), args[i + 2].parse().unwrap(), args[i + 3].parse().unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (done, rate, base, peak) = rt.block_on(case(&kind, records, batch));
        println!("RESULT {done} {rate} {base} {peak}");
        return;
    }
    let records: u64 = std::env::var("BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let batches: Vec<u32> = std::env::var("BENCH_BATCHES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    println!("wap-billing adapter: {records} usage records from an in-process wap-sim (fresh process per case)");
    println!(
        "{:>7} | {:>36} | {:>13} | {:>8} | {:>11} | {:>11}",
        "batch", "case", "records/s", "ratio", "RSS before", "peak growth"
    );
    for batch in batches {
        let (pull, pull_base, pull_peak) = run_child("pull", records, batch);
        let (adapter, base, peak) = run_child("adapter", records, batch);
        let row = |name: &str, rate: f64, base: u64, peak: u64| {
            println!(
                "{batch:>7} | {name:>36} | {rate:>13.0} | {:>8.3} | {:>8} KiB | {:>7} KiB",
                rate / pull,
                base,
                peak.saturating_sub(base)
            );
        };
        row("pull only (wap-usage-client stream)", pull, pull_base, pull_peak);
        row("adapter → ledger, SQLite FULL", adapter, base, peak);
    }
}
