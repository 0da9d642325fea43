//! Usage ledger throughput, SQLite beside the in-memory ledger in the same run:
//!
//! * records/s served by `GET /usage?lastID=&batchSize=1000` over real HTTP (keep-alive, loopback), draining a
//!   ledger of `SERVE_RECORDS` records page by page with acknowledgement;
//! * records/s appended durably, one record per call and in batches of 1,000.
//!
//! Run: `cargo bench -p wap-resource-provider --bench usage_ledger` (release). Set `RP_BENCH_RECORDS` to change
//! the size of the served ledger (default 200,000).
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use wap_resource_provider::{EndpointAuth, RpServer, UsageLedger};
use wap_types::{RpUsageRecord, StringMap, WapDateTime};

fn record(i: u64) -> RpUsageRecord {
    RpUsageRecord {
        subscription_id: format!("b4a1ea4d-1f3b-4a9f-9d85-{:012}", i % 1000),
        resource_id: Some(format!("share-{}", i % 5000)),
        start_time: WapDateTime::parse("2015-06-02T08:00:00.0000000Z").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00.0000000Z").unwrap(),
        service_type: Some("Default".into()),
        properties: Some([("Tier", "standard")].into_iter().collect::<StringMap>()),
        resources: [("StorageGB".to_owned(), (i % 512).to_string()), ("Operations".to_owned(), (i * 3).to_string())]
            .into_iter()
            .collect::<StringMap>(),
        ..Default::default()
    }
}

async fn fill(ledger: &UsageLedger, n: u64) {
    let mut i = 0;
    while i < n {
        let k = 10_000.min(n - i);
        ledger.append_all((i..i + k).map(record).collect()).await.unwrap();
        i += k;
    }
}

/// The highest `"EventId":` of a page (the page is ascending: the last one).
fn last_event_id(body: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.rfind("\"EventId\":")? + "\"EventId\":".len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Drains the ledger through `/usage` and returns (records, elapsed).
async fn serve(ledger: UsageLedger) -> (u64, Duration) {
    let server = RpServer::builder("bench")
        .usage("/", EndpointAuth::none(), ledger)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut last = String::new();
    let mut records = 0u64;
    let started = Instant::now();
    loop {
        let req = Request::get(format!("/usage?lastID={last}&batchSize=1000"))
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let Some(id) = last_event_id(&body) else { break };
        records += body.windows(10).filter(|w| *w == b"\"EventId\":").count() as u64;
        last = id.to_string();
    }
    let elapsed = started.elapsed();
    server.shutdown().await;
    (records, elapsed)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list.
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let default_records = if full { 200_000 } else { 2_000 };
    let n: u64 = std::env::var("RP_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_records);
    let (single, batched, per_task) = if full { (2_000u64, 100_000u64, 100u64) } else { (20, 2_000, 2) };
    let dir = tempfile::tempdir().unwrap();

    println!("== /usage served at batchSize=1000 over HTTP ({n} records, drained with acknowledgement)");
    let memory = UsageLedger::in_memory();
    fill(&memory, n).await;
    let (m_records, m_time) = serve(memory).await;
    assert_eq!(m_records, n);
    let sqlite = UsageLedger::open(dir.path().join("serve.db")).await.unwrap();
    fill(&sqlite, n).await;
    let (s_records, s_time) = serve(sqlite).await;
    assert_eq!(s_records, n);
    let (m_rate, s_rate) = (rate(m_records, m_time), rate(s_records, s_time));
    println!("memory  : {m_rate:>12.0} records/s ({m_time:.2?})");
    println!("sqlite  : {s_rate:>12.0} records/s ({s_time:.2?})");
    println!("sqlite / memory = {:.2}", s_rate / m_rate);

    println!("== durable appends");
    let memory = UsageLedger::in_memory();
    let t = Instant::now();
    for i in 0..single {
        memory.append(record(i)).await.unwrap();
    }
    let m_single = rate(single, t.elapsed());
    let t = Instant::now();
    fill_batches(&memory, batched).await;
    let m_batch = rate(batched, t.elapsed());
    let sqlite = UsageLedger::open(dir.path().join("append.db")).await.unwrap();
    let t = Instant::now();
    for i in 0..single {
        sqlite.append(record(i)).await.unwrap();
    }
    let s_single = rate(single, t.elapsed());
    let t = Instant::now();
    fill_batches(&sqlite, batched).await;
    let s_batch = rate(batched, t.elapsed());
    let m_concurrent = concurrent_singles(&memory, 32, per_task).await;
    let s_concurrent = concurrent_singles(&sqlite, 32, per_task).await;
    println!("memory  one per call  : {m_single:>12.0} records/s");
    println!("sqlite  one per call  : {s_single:>12.0} records/s (each a committed transaction, synchronous=FULL)");
    println!("memory  batches of 1000: {m_batch:>12.0} records/s");
    println!("sqlite  batches of 1000: {s_batch:>12.0} records/s");
    println!("memory  one per call, 32 tasks: {m_concurrent:>12.0} records/s");
    println!("sqlite  one per call, 32 tasks: {s_concurrent:>12.0} records/s (group commit)");
    println!(
        "sqlite / memory: one per call {:.4}, 32 tasks {:.4}, batches {:.2}",
        s_single / m_single,
        s_concurrent / m_concurrent,
        s_batch / m_batch
    );
}

async fn fill_batches(ledger: &UsageLedger, n: u64) {
    let mut i = 0;
    while i < n {
        let k = 1000.min(n - i);
        ledger.append_all((i..i + k).map(record).collect()).await.unwrap();
        i += k;
    }
}

/// `tasks` tasks each appending `per_task` records one call at a time; returns records/s.
async fn concurrent_singles(ledger: &UsageLedger, tasks: u64, per_task: u64) -> f64 {
    let t = Instant::now();
    let mut handles = Vec::new();
    for k in 0..tasks {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                ledger.append(record(k * per_task + i)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    rate(tasks * per_task, t.elapsed())
}
