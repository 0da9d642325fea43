//! Usage ledger throughput, SQLite beside the in-memory ledger, in alternating rounds inside one process:
//!
//! * records/s served by `GET /usage?lastID=&batchSize=1000` over real HTTP (keep-alive, loopback), draining a
//!   ledger of `RP_BENCH_RECORDS` records page by page with acknowledgement;
//! * records/s appended durably: one record per call, 32 tasks appending one record per call (group commit), and
//!   batches of 1,000.
//!
//! Each round measures every case on both backends (the order alternates between rounds); filling the ledgers,
//! opening files and binding the server are outside the timed part. The ratio is taken within each round; the
//! median and the range over the rounds are printed, and one `RESULT` line per figure for `scripts/bench`.
//!
//! Run: `cargo bench -p wap-resource-provider --bench usage_ledger` (release). `RP_BENCH_RECORDS` sets the size of
//! the served ledger (default 200,000), `BENCH_ROUNDS` the rounds (default 5).
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
    let precision = if median >= 100.0 { 0 } else { 4 };
    println!(
        "{what}: median {median:.precision$} (range {min:.precision$}-{max:.precision$}, {} rounds)",
        values.len()
    );
    println!("RESULT {key} median={median:.4} min={min:.4} max={max:.4} rounds={}", values.len());
}

/// One backend's figures in one round.
#[derive(Default)]
struct Figures {
    serve: f64,
    single: f64,
    concurrent: f64,
    batched: f64,
}

struct Sizes {
    served: u64,
    single: u64,
    batched: u64,
    per_task: u64,
}

/// Every case on one backend (`None`: memory; `Some(dir)`: SQLite files in it, fresh for this round).
async fn measure(sqlite: Option<&std::path::Path>, round: usize, sizes: &Sizes) -> Figures {
    let open = |name: &str| {
        let path = sqlite.map(|dir| dir.join(format!("{name}-{round}.db")));
        async move {
            match path {
                Some(path) => UsageLedger::open(path).await.unwrap(),
                None => UsageLedger::in_memory(),
            }
        }
    };
    let served = open("serve").await;
    fill(&served, sizes.served).await;
    let (records, time) = serve(served).await;
    assert_eq!(records, sizes.served);
    let serve_rate = rate(records, time);

    let ledger = open("single").await;
    let t = Instant::now();
    for i in 0..sizes.single {
        ledger.append(record(i)).await.unwrap();
    }
    let single = rate(sizes.single, t.elapsed());

    let ledger = open("concurrent").await;
    let concurrent = concurrent_singles(&ledger, 32, sizes.per_task).await;
    if sqlite.is_some() {
        let stats = ledger.stats().await.unwrap();
        assert_eq!(stats.pending, 32 * sizes.per_task);
        println!(
            "  sqlite, 32 tasks: {} appends in {} commits ({:.1} appends per sync)",
            32 * sizes.per_task,
            stats.append_commits,
            (32 * sizes.per_task) as f64 / stats.append_commits.max(1) as f64
        );
    }

    let ledger = open("batches").await;
    let t = Instant::now();
    fill_batches(&ledger, sizes.batched).await;
    let batched = rate(sizes.batched, t.elapsed());
    Figures { serve: serve_rate, single, concurrent, batched }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list`: nothing to list.
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a quick smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let sizes = if full {
        Sizes { served: env("RP_BENCH_RECORDS", 200_000), single: 1_000, batched: 100_000, per_task: 100 }
    } else {
        Sizes { served: 2_000, single: 20, batched: 2_000, per_task: 2 }
    };
    let rounds = env("BENCH_ROUNDS", if full { 5 } else { 1 }).max(1) as usize;
    let dir = tempfile::tempdir().unwrap();
    println!(
        "usage ledger: {} records served at batchSize=1000, {} single appends, 32 tasks x {}, {} in batches of \
         1000; {rounds} alternating rounds",
        sizes.served, sizes.single, sizes.per_task, sizes.batched
    );
    let (mut memory, mut sqlite) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (m, s) = if round % 2 == 0 {
            let m = measure(None, round, &sizes).await;
            (m, measure(Some(dir.path()), round, &sizes).await)
        } else {
            let s = measure(Some(dir.path()), round, &sizes).await;
            (measure(None, round, &sizes).await, s)
        };
        println!(
            "round {round}: /usage memory {:.0} sqlite {:.0} rec/s ({:.2}); one per call {:.0} / {:.0}; 32 tasks \
             {:.0} / {:.0}; batches {:.0} / {:.0}",
            m.serve,
            s.serve,
            s.serve / m.serve,
            m.single,
            s.single,
            m.concurrent,
            s.concurrent,
            m.batched,
            s.batched
        );
        memory.push(m);
        sqlite.push(s);
    }
    let ratio = |f: fn(&Figures) -> f64| memory.iter().zip(&sqlite).map(|(m, s)| f(s) / f(m)).collect::<Vec<_>>();
    let rates = |v: &[Figures], f: fn(&Figures) -> f64| v.iter().map(f).collect::<Vec<_>>();
    report("rp_usage_memory_rate", "/usage from memory, records/s", &rates(&memory, |f| f.serve));
    report("rp_usage_sqlite_rate", "/usage from SQLite, records/s", &rates(&sqlite, |f| f.serve));
    report("rp_usage_sqlite_vs_memory", "/usage SQLite / memory", &ratio(|f| f.serve));
    report(
        "rp_append_single_sqlite_rate",
        "SQLite durable append, one per call, records/s",
        &rates(&sqlite, |f| f.single),
    );
    report(
        "rp_append_32_tasks_sqlite_rate",
        "SQLite durable append, 32 tasks one record per call (group commit), records/s",
        &rates(&sqlite, |f| f.concurrent),
    );
    report("rp_append_32_tasks_memory_rate", "memory append, 32 tasks, records/s", &rates(&memory, |f| f.concurrent));
    report(
        "rp_append_batch_sqlite_rate",
        "SQLite durable append, batches of 1000, records/s",
        &rates(&sqlite, |f| f.batched),
    );
    report("rp_append_batch_sqlite_vs_memory", "batches of 1000, SQLite / memory", &ratio(|f| f.batched));
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
