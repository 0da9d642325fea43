//! Parsing a 1,000-record usage page: typed (`Vec<UsageRecord>`) beside `serde_json::Value` on the same bytes.
//!
//! `cargo bench -p wap-types --bench parse_usage_page`
//!
//! Criterion measures both; after it, an interleaved run of both on the same bytes prints records/s, MB/s and the
//! typed/Value ratio (target: ≥ 1.0, typed at least as fast as `Value`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use wap_types::{json, UsageRecord};

/// A realistic page: several providers, 2–6 string meters each, some `Properties`, WAP's date form.
fn usage_page(records: usize) -> Vec<u8> {
    let providers: [(&str, &[&str]); 4] = [
        ("mysqlservers", &["TotalAllottedSpace", "DatabaseCount"]),
        ("sqlservers", &["TotalAllottedSpace", "DatabaseCount"]),
        (
            "webspaces",
            &[
                "TotalIncomingRequestBytes",
                "TotalIncomingRequestResponseBytes",
                "TotalLocalReadBytes",
                "TotalLocalWrittenBytes",
                "TotalNetworkReadBytes",
                "TotalNetworkWrittenBytes",
            ],
        ),
        ("systemcenter", &["CpuHours", "MemoryGbHours", "DiskGbHours"]),
    ];
    let mut out = String::from("[");
    for i in 0..records {
        let (provider, meters) = providers[i % providers.len()];
        let minute = (i * 3) % 60;
        let hour = (i * 3 / 60) % 24;
        let resources: Vec<String> =
            meters.iter().enumerate().map(|(k, m)| format!("\"{m}\":\"{}.{}\"", (i * 7 + k) % 4096, i % 100)).collect();
        let properties = if i % 3 == 0 {
            format!("{{\"SiteName\":\"site-{i}\",\"ComputeMode\":\"Shared\"}}")
        } else {
            "null".to_owned()
        };
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"EventId\":{},\"ExternalRecordId\":\"{}\",\"ResourceId\":{},\"StartTime\":\"2015-06-02T{hour:02}:{minute:02}:00\",\
             \"EndTime\":\"2015-06-02T{hour:02}:{minute:02}:59\",\"ProviderName\":\"{provider}\",\"ServiceType\":\"Default\",\
             \"SubscriptionId\":\"{:08x}-8a81-4b27-a355-b1041fe2d084\",\"Properties\":{properties},\"Resources\":{{{}}}}}",
            4101 + i,
            17 + i,
            if i % 2 == 0 { "null".to_owned() } else { format!("\"resource-{i}\"") },
            i % 250,
            resources.join(",")
        ));
    }
    out.push(']');
    out.into_bytes()
}

fn parse_typed(bytes: &[u8]) -> usize {
    json::page_from_slice::<UsageRecord>(bytes).expect("valid page").len()
}

fn parse_value(bytes: &[u8]) -> usize {
    match serde_json::from_slice::<serde_json::Value>(bytes).expect("valid JSON") {
        serde_json::Value::Array(a) => a.len(),
        _ => 0,
    }
}

/// Interleaved rounds (typed, then `Value`, so both see the same machine state): the median seconds per call of
/// each, and the ratio typed / `Value` (records/s) of every round.
fn interleaved(bytes: &[u8], rounds: usize) -> (f64, f64, Vec<f64>) {
    let mut typed = Vec::with_capacity(rounds);
    let mut value = Vec::with_capacity(rounds);
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(parse_typed(black_box(bytes)));
        let typed_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        black_box(parse_value(black_box(bytes)));
        let value_s = t.elapsed().as_secs_f64();
        typed.push(typed_s);
        value.push(value_s);
        ratios.push(value_s / typed_s);
    }
    typed.sort_by(f64::total_cmp);
    value.sort_by(f64::total_cmp);
    ratios.sort_by(f64::total_cmp);
    (typed[rounds / 2], value[rounds / 2], ratios)
}

fn main() {
    let records = 1_000;
    let bytes = usage_page(records);
    assert_eq!(parse_typed(&bytes), records);
    assert_eq!(parse_value(&bytes), records);

    let mut c = Criterion::default().measurement_time(Duration::from_secs(5)).configure_from_args();
    {
        let mut group = c.benchmark_group("parse_usage_page_1000");
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function("typed UsageRecord", |b| b.iter(|| parse_typed(black_box(&bytes))));
        group.bench_function("serde_json::Value", |b| b.iter(|| parse_value(black_box(&bytes))));
        group.finish();
    }
    c.final_summary();

    let rounds = 301;
    let (typed, value, ratios) = interleaved(&bytes, rounds);
    let mb = bytes.len() as f64 / 1e6;
    let (median, min, max) = (ratios[rounds / 2], ratios[0], ratios[rounds - 1]);
    println!();
    println!("page: {records} records, {:.1} KB; {rounds} interleaved rounds", bytes.len() as f64 / 1e3);
    println!("typed UsageRecord : {:>10.0} records/s {:>8.1} MB/s", records as f64 / typed, mb / typed);
    println!("serde_json::Value : {:>10.0} records/s {:>8.1} MB/s", records as f64 / value, mb / value);
    println!("ratio typed/Value : median {median:.2}x (range {min:.2}-{max:.2}; target >= 1.00)");
    println!("RESULT parse_typed_vs_value median={median:.4} min={min:.4} max={max:.4} rounds={rounds}");
}
