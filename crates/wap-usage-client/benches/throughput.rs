//! Records per second pulled end to end from an in-process `wap-sim` over loopback HTTP, at batch 100 / 1,000 /
//! 10,000, beside typed parsing of the very same response bytes in process (the limit). Target at batch 1,000:
//! end to end at least half the in-process rate.
//!
//! `cargo bench -p wap-usage-client --bench throughput` (set `RECORDS` to change the 200,000 records pulled per
//! run, `BATCHES=1000` to measure one batch size). Each of 9 rounds measures every column once, in turn; rates are medians over the rounds, ratios are taken
//! within each round (against that round's in-process rate) and their median reported, with the lowest and highest
//! for the default. End to end is measured with the streams' default prefetching
//! (`Prefetch::NextPage`), with `Prefetch::Speculative`, and strictly one request at a time (`Prefetch::Off`);
//! ratio = end to end (default) / in-process, then the same for the other two. "Server only" is the same requests
//! without parsing (simulator + HTTP), for context: the simulator serialises in the same process, on the same cores.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use wap_sim::{DatasetSpec, WapSim};
use wap_types::{FeedKind, StartId, UsageRecord};
use wap_usage_client::{Prefetch, RetryPolicy, UsageClient};

const RUNS: usize = 9;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` (nothing to list)
    }
    let records: u64 = std::env::var("RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(records));
}

/// A loopback HTTP/1.1 server (keep-alive) answering `GET …?startId=N…` with the body recorded for `N`, `[]` for
/// any other start: no work but a lookup, so the client's own cost shows.
async fn static_server(pages: HashMap<i64, bytes::Bytes>) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pages = std::sync::Arc::new(pages);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let _ = sock.set_nodelay(true);
            let pages = pages.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let start = head
                        .split("startId=")
                        .nth(1)
                        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                        .and_then(|v| v.parse::<i64>().ok())
                        .unwrap_or(-1);
                    let empty = bytes::Bytes::from_static(b"[]");
                    let body = pages.get(&start).unwrap_or(&empty);
                    let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if sock.write_all(response.as_bytes()).await.is_err() || sock.write_all(body).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn run(records: u64) {
    let sim = WapSim::builder().seed(3).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap();
    let total = sim.usage_count();
    println!(
        "wap-usage-client throughput: {total} usage records from wap-sim over loopback HTTP; medians of {RUNS} rounds, ratios taken within each round"
    );
    println!(
        "{:>6} | {:>13} | {:>13} | {:>13} | {:>13} | {:>12} | {:>13} | {:>5} | {:>5} | {:>5} | {:>6} | {:>5} | {:<11}",
        "batch",
        "e2e default/s",
        "e2e specul./s",
        "e2e 1-by-1/s",
        "in-process/s",
        "server only/s",
        "static srv/s",
        "ratio",
        "spec.",
        "1-by-1",
        "static",
        "MiB/p",
        "ratio range"
    );
    let batches: Vec<u32> = match std::env::var("BATCHES") {
        Ok(list) => list.split(',').filter_map(|b| b.trim().parse().ok()).collect(),
        Err(_) => vec![100, 1_000, 10_000],
    };
    for batch in batches {
        let client = UsageClient::builder()
            .base_url(sim.usage_service_url())
            .basic_credentials(sim.credentials())
            .batch_size(batch)
            .retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap();

        // the bytes of every page, fetched once, for the in-process parse and the static server
        let mut bodies = Vec::new();
        let mut starts = Vec::new();
        let mut start = StartId::BEGINNING;
        loop {
            let body = client.raw_page(FeedKind::Usage, start, batch).await.unwrap();
            let page: Vec<UsageRecord> = wap_types::json::page_from_slice(&body).unwrap();
            let Some(last) = page.last() else { break };
            starts.push(start);
            start = StartId::after(last.event_id);
            bodies.push(body);
        }
        let bytes: usize = bodies.iter().map(|b| b.len()).sum();
        let pages: HashMap<i64, bytes::Bytes> = starts.iter().map(|s| s.get()).zip(bodies.iter().cloned()).collect();
        let (addr, server) = static_server(pages).await;
        let static_client = UsageClient::builder()
            .base_url(format!("http://{addr}/"))
            .basic_credentials(sim.credentials())
            .batch_size(batch)
            .retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap();

        // Every round measures everything once, one after the other, so that a change in machine load hits all
        // alike; the ratios are taken within each round and their median reported.
        let mut rounds: Vec<[Duration; 6]> = Vec::new();
        for _ in 0..RUNS {
            let mut round = [Duration::ZERO; 6];
            // the limit: typed parsing of the same bytes in process
            let t = Instant::now();
            let mut n = 0u64;
            for body in &bodies {
                let page: Vec<UsageRecord> = wap_types::json::page_from_slice(body).unwrap();
                n += page.len() as u64;
                std::hint::black_box(&page);
            }
            assert_eq!(n, total);
            round[0] = t.elapsed();
            // end to end: HTTP request, body, typed parse, sort/filter, stream items
            for (slot, prefetch) in [(1, Prefetch::NextPage), (2, Prefetch::Speculative), (3, Prefetch::Off)] {
                let t = Instant::now();
                let mut n = 0u64;
                let mut checksum = 0i64;
                let mut stream = client.usage().with_prefetch(prefetch).stream_from(StartId::BEGINNING);
                while let Some(item) = stream.next().await {
                    let item = item.unwrap();
                    checksum = checksum.wrapping_add(item.item.event_id);
                    n += 1;
                }
                round[slot] = t.elapsed();
                assert_eq!(n, total);
                std::hint::black_box(checksum);
            }
            // the server side alone: the same requests, bodies not parsed (simulator + HTTP, for context)
            let t = Instant::now();
            for (start, body) in starts.iter().zip(&bodies) {
                let fetched = client.raw_page(FeedKind::Usage, *start, batch).await.unwrap();
                assert_eq!(fetched.len(), body.len());
            }
            round[4] = t.elapsed();
            // the client alone: the same bytes served by a minimal loopback server that only looks them up
            let t = Instant::now();
            let mut stream = static_client.usage().stream_from(StartId::BEGINNING);
            let mut n = 0u64;
            while let Some(item) = stream.next().await {
                std::hint::black_box(item.unwrap());
                n += 1;
            }
            assert_eq!(n, total);
            round[5] = t.elapsed();
            rounds.push(round);
        }
        server.abort();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let rate = |d: Duration| total as f64 / d.as_secs_f64();
        let rate_of = |slot: usize| median(rounds.iter().map(|r| rate(r[slot])).collect());
        // per-round ratio to the in-process rate of the same round
        let ratio_of =
            |slot: usize| median(rounds.iter().map(|r| r[0].as_secs_f64() / r[slot].as_secs_f64()).collect());
        let range_of = |slot: usize| {
            let ratios: Vec<f64> = rounds.iter().map(|r| r[0].as_secs_f64() / r[slot].as_secs_f64()).collect();
            (ratios.iter().copied().fold(f64::INFINITY, f64::min), ratios.iter().copied().fold(0.0, f64::max))
        };
        let (low, high) = range_of(1);
        println!(
            "{:>6} | {:>13.0} | {:>13.0} | {:>13.0} | {:>13.0} | {:>12.0} | {:>13.0} | {:>5.2} | {:>5.2} | {:>5.2} | {:>6.2} | {:>5.2} | {low:.2}-{high:.2}",
            batch,
            rate_of(1),
            rate_of(2),
            rate_of(3),
            rate_of(0),
            rate_of(4),
            rate_of(5),
            ratio_of(1),
            ratio_of(2),
            ratio_of(3),
            ratio_of(5),
            bytes as f64 / bodies.len() as f64 / 1_048_576.0
        );
        println!(
            "RESULT client_pull_vs_parse_b{batch} median={:.4} min={low:.4} max={high:.4} rounds={}",
            ratio_of(1),
            rounds.len()
        );
    }
    sim.shutdown().await;
}
