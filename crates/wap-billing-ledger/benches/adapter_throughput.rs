//! Adapter throughput: usage records/s from an in-process `wap-sim` through the `Adapter` (`UsageServiceSource` →
//! usage processor → reference ledger, `synchronous = FULL` on both the ledger and the state store), beside the pure
//! pull rate of `wap-usage-client` (a typed stream of the same records, nothing stored), at the same batch size.
//!
//! `cargo bench -p wap-billing-ledger --bench adapter_throughput` (`BENCH_RECORDS`, default 500,000;
//! `BENCH_BATCHES`, default `1000`; `BENCH_ROUNDS`, default 5; `BENCH_PEAK=1` adds the peak-memory cases).
//!
//! Throughput: one simulator serves every round; each round runs the pull and the adapter (order alternating
//! between rounds, fresh files for the adapter), timed from the start of the pull or of the adapter (files already
//! open) to the last record. The ratio adapter / pull is taken within each round; the median and range over the
//! rounds are printed, with a `RESULT` line for `scripts/bench`.
//!
//! Peak memory (`BENCH_PEAK=1`): each case runs in a fresh child process (Linux): the simulator is started,
//! `/proc/self/clear_refs` resets the peak, the case runs, and the peak growth is `VmHWM − VmRSS` before the case,
//! read from `/proc/self/status`.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wap_billing_engine::usage_client::{RetryPolicy, UsageClient};
use wap_billing_engine::{Adapter, ElectionMode, EngineConfig, SqliteStore};
use wap_billing_ledger::{AppendOnlyLedger, SqliteLedger};
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

/// Runs one case against `sim`; returns the records handled and records/s (timed from the start of the pull or
/// of the adapter, files already open, to the last record).
async fn run_case(sim: &WapSim, kind: &str, batch: u32) -> (u64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let client = || {
        UsageClient::builder()
            .base_url(sim.usage_service_url().as_str())
            .basic_credentials(sim.credentials())
            .batch_size(batch)
    };
    match kind {
        "pull" => {
            let client = client().retry_policy(RetryPolicy::disabled()).build().unwrap();
            let started = Instant::now();
            let mut stream = client.usage().stream_from(StartId::BEGINNING);
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                let item = item.unwrap();
                std::hint::black_box(&item.item);
                n += 1;
            }
            (n, n as f64 / started.elapsed().as_secs_f64())
        }
        "adapter" => {
            let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
            let store = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
            let started = Instant::now();
            let adapter = Adapter::builder(adapter_config(batch))
                .usage_service(client())
                .state_store(store)
                .billing_system(Arc::clone(&ledger))
                .start()
                .await
                .unwrap();
            adapter.wait_caught_up(Duration::from_secs(3_600)).await.unwrap();
            let elapsed = started.elapsed();
            let n = ledger.usage_count().await.unwrap();
            adapter.shutdown().await;
            (n, n as f64 / elapsed.as_secs_f64())
        }
        "journal" => {
            let ledger = Arc::new(AppendOnlyLedger::open(dir.path().join("append-only.db")).unwrap());
            let store = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
            let started = Instant::now();
            let adapter = Adapter::builder(adapter_config(batch))
                .usage_service(client())
                .state_store(store)
                .billing_system(Arc::clone(&ledger))
                .billing_system_version(ledger.version())
                .start()
                .await
                .unwrap();
            adapter.wait_caught_up(Duration::from_secs(3_600)).await.unwrap();
            let elapsed = started.elapsed();
            let n = ledger.usage_calls().unwrap().iter().map(|c| c.records).sum::<u64>();
            adapter.shutdown().await;
            (n, n as f64 / elapsed.as_secs_f64())
        }
        other => panic!("unknown case {other}"),
    }
}

fn adapter_config(batch: u32) -> EngineConfig {
    EngineConfig::builder()
        .instance_id("bench")
        .election_mode(ElectionMode::SingleInstance)
        .batch_size(batch)
        .sync_interval(Duration::from_millis(50))
        .retry_sleep(Duration::from_millis(10))
        .build()
        .unwrap()
}

async fn start_sim(records: u64) -> WapSim {
    WapSim::builder().seed(3).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap()
}

/// One case in this (fresh child) process, for its peak memory.
async fn case(kind: &str, records: u64, batch: u32) -> (u64, f64, u64, u64) {
    let sim = start_sim(records).await;
    reset_peak();
    let base = status_kib("VmRSS:");
    let (done, rate) = run_case(&sim, kind, batch).await;
    let peak = status_kib("VmHWM:");
    assert_eq!(done, records, "{kind}: every record");
    sim.shutdown().await;
    (done, rate, base, peak)
}

/// Median, lowest and highest of `values`.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (median, v[0], v[v.len() - 1])
}

/// Prints a figure's median and range, and its `RESULT` line.
fn report(key: &str, what: &str, values: &[f64]) {
    let (median, min, max) = summary(values);
    let precision = if median >= 100.0 { 0 } else { 3 };
    println!(
        "{what}: median {median:.precision$} (range {min:.precision$}-{max:.precision$}, {} rounds)",
        values.len()
    );
    println!("RESULT {key} median={median:.4} min={min:.4} max={max:.4} rounds={}", values.len());
}

/// Alternating rounds of the pull, the adapter into the reference ledger (idempotent path) and the adapter into
/// the append-only ledger (journaled path), on one simulator.
async fn alternating(records: u64, batch: u32, rounds: usize) {
    let sim = start_sim(records).await;
    let kinds = ["pull", "adapter", "journal"];
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        // The order rotates: each case runs first, second and last in turn.
        for k in 0..kinds.len() {
            let index = (k + round) % kinds.len();
            let (done, rate) = run_case(&sim, kinds[index], batch).await;
            assert_eq!(done, records, "{}: every record", kinds[index]);
            rates[index].push(rate);
        }
        let [pull, adapter, journal] = [rates[0][round], rates[1][round], rates[2][round]];
        println!(
            "round {round}: pull {pull:>9.0} records/s, adapter → ledger {adapter:>9.0} ({:.3}), journaled → \
             append-only ledger {journal:>9.0} ({:.3})",
            adapter / pull,
            journal / pull
        );
    }
    sim.shutdown().await;
    let ratio = |a: usize, b: usize| rates[a].iter().zip(&rates[b]).map(|(x, y)| x / y).collect::<Vec<_>>();
    report(&format!("adapter_pull_rate_b{batch}"), &format!("batch {batch}: pull, records/s"), &rates[0]);
    report(&format!("adapter_ledger_rate_b{batch}"), &format!("batch {batch}: adapter → ledger, records/s"), &rates[1]);
    report(
        &format!("adapter_journal_rate_b{batch}"),
        &format!("batch {batch}: journaled adapter → append-only ledger, records/s"),
        &rates[2],
    );
    report(&format!("adapter_vs_pull_b{batch}"), &format!("batch {batch}: adapter / pull"), &ratio(1, 0));
    report(
        &format!("adapter_journal_vs_pull_b{batch}"),
        &format!("batch {batch}: journaled adapter / pull"),
        &ratio(2, 0),
    );
}

fn run_child(kind: &str, records: u64, batch: u32) -> (f64, u64, u64) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--case", kind, &records.to_string(), &batch.to_string()])
        .output()
        .expect("run the case in a child process");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("CASE ")).unwrap_or_else(|| {
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
        println!("CASE {done} {rate} {base} {peak}");
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick smoke run.
    let full = args.iter().any(|a| a == "--bench");
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let records: u64 = env("BENCH_RECORDS").and_then(|v| v.parse().ok()).unwrap_or(if full { 500_000 } else { 5_000 });
    let rounds: usize = env("BENCH_ROUNDS").and_then(|v| v.parse().ok()).unwrap_or(if full { 5 } else { 1 }).max(1);
    let batches: Vec<u32> = env("BENCH_BATCHES")
        .unwrap_or_else(|| "1000".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    println!(
        "wap-billing adapter: {records} usage records from an in-process wap-sim, {rounds} alternating rounds per batch \
         size, SQLite synchronous=FULL (ledger and state)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for &batch in &batches {
        rt.block_on(alternating(records, batch, rounds));
    }
    if env("BENCH_PEAK").as_deref() != Some("1") {
        return;
    }
    let records: u64 = env("BENCH_PEAK_RECORDS").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("peak memory: {records} records, each case in a fresh process");
    println!("{:>7} | {:>36} | {:>13} | {:>11} | {:>11}", "batch", "case", "records/s", "RSS before", "peak growth");
    for batch in batches {
        for (kind, name) in
            [("pull", "pull only (wap-usage-client stream)"), ("adapter", "adapter → ledger, SQLite FULL")]
        {
            let (rate, base, peak) = run_child(kind, records, batch);
            let growth = peak.saturating_sub(base);
            println!("{batch:>7} | {name:>36} | {rate:>13.0} | {base:>8} KiB | {growth:>7} KiB");
            println!(
                "RESULT peak_{kind}_b{batch}_mib median={:.1} min={:.1} max={:.1} rounds=1",
                growth as f64 / 1024.0,
                growth as f64 / 1024.0,
                growth as f64 / 1024.0
            );
        }
    }
}
