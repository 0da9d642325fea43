//! Peak memory of a full `/usage` pull from an in-process `wap-sim`: 100,000 vs 1,000,000 records. A streaming pull
//! keeps only one page in memory, so the peak grows with the batch, not with the total. The baseline in the same
//! run is the same 100,000 records collected into a `Vec` (what a non-streaming client holds).
//!
//! `cargo bench -p wap-usage-client --bench peak_rss`
//!
//! Each case runs in a fresh child process; peak = `VmHWM` (from `/proc/self/status`, reset through
//! `/proc/self/clear_refs` after the simulator started) minus `VmRSS` before the pull. Linux only.

use std::process::Command;

use futures::StreamExt;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::StartId;
use wap_usage_client::{RetryPolicy, UsageClient};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let records: u64 = args[i + 1].parse().unwrap();
        let batch: u32 = args[i + 2].parse().unwrap();
        let collect = args[i + 3] == "collect";
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (pulled, base_kib, peak_kib) = rt.block_on(case(records, batch, collect));
        println!("RESULT {pulled} {base_kib} {peak_kib}");
        return;
    }

    println!("wap-usage-client peak memory of a full /usage pull (in-process wap-sim, fresh process per case)");
    println!("{:>10} | {:>6} | {:>10} | {:>12} | {:>13}", "records", "batch", "mode", "RSS before", "peak growth");
    let exe = std::env::current_exe().unwrap();
    let mut growth = std::collections::HashMap::new();
    let cases: [(u64, u32, &str); 5] = [
        (100_000, 1_000, "stream"),
        (1_000_000, 1_000, "stream"),
        (100_000, 10_000, "stream"),
        (1_000_000, 10_000, "stream"),
        (100_000, 1_000, "collect"),
    ];
    for (records, batch, mode) in cases {
        let out = Command::new(&exe)
            .args(["--case", &records.to_string(), &batch.to_string(), mode])
            .output()
            .expect("run the case");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("RESULT ")).unwrap_or_else(|| {
            panic!("case failed: {}\n{}", text, String::from_utf8_lossy(&out.stderr));
        });
        let v: Vec<u64> = line[7..].split(' ').map(|x| x.parse().unwrap()).collect();
        let (pulled, base, peak) = (v[0], v[1], v[2]);
        let grown = peak.saturating_sub(base);
        growth.insert((records, batch, mode), grown);
        let mib = grown as f64 / 1024.0;
        println!("RESULT client_peak_{mode}_{records}_b{batch}_mib median={mib:.1} min={mib:.1} max={mib:.1} rounds=1");
        println!(
            "{:>10} | {:>6} | {:>10} | {:>9} MiB | {:>9.1} MiB   ({pulled} records pulled)",
            records,
            batch,
            mode,
            base / 1024,
            grown as f64 / 1024.0
        );
    }
    let r = |batch| growth[&(1_000_000, batch, "stream")] as f64 / growth[&(100_000, batch, "stream")].max(1) as f64;
    println!(
        "peak growth 1,000,000 / 100,000 records: {:.2}x at batch 1,000, {:.2}x at batch 10,000 (10x more records)",
        r(1_000),
        r(10_000)
    );
    println!(
        "streaming 100,000 records at batch 1,000 vs collecting them: {:.1} MiB vs {:.1} MiB ({:.1}%)",
        growth[&(100_000, 1_000, "stream")] as f64 / 1024.0,
        growth[&(100_000, 1_000, "collect")] as f64 / 1024.0,
        100.0 * growth[&(100_000, 1_000, "stream")] as f64 / growth[&(100_000, 1_000, "collect")].max(1) as f64
    );
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn case(records: u64, batch: u32, collect: bool) -> (u64, u64, u64) {
    let sim = WapSim::builder().seed(3).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap();
    let client = UsageClient::builder()
        .base_url(sim.usage_service_url())
        .basic_credentials(sim.credentials())
        .batch_size(batch)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();
    // "5" resets the peak resident set size (VmHWM) to the current RSS (Linux >= 4.0)
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let base = status_kib("VmRSS:");
    let mut pulled = 0u64;
    let mut stream = client.usage().stream_from(StartId::BEGINNING);
    if collect {
        let mut all = Vec::new();
        while let Some(item) = stream.next().await {
            all.push(item.unwrap());
        }
        pulled = all.len() as u64;
        std::hint::black_box(&all);
    } else {
        let mut meters = 0.0f64;
        while let Some(item) = stream.next().await {
            let item = item.unwrap();
            meters += item.item.resources.iter().count() as f64;
            pulled += 1;
        }
        std::hint::black_box(meters);
    }
    let peak = status_kib("VmHWM:");
    sim.shutdown().await;
    (pulled, base, peak)
}
