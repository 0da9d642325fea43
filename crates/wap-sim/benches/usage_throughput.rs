//! Records per second the simulated Usage Service emits for `/usage` at batch 1,000 over loopback, beside
//! serialising the same records in-process (the limit), measured in the same run.
//!
//! Run: `cargo bench -p wap-sim --bench usage_throughput` (records: `WAP_SIM_BENCH_RECORDS`, default 200,000).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use wap_sim::{DatasetSpec, WapSim};

const BATCH: usize = 1_000;
const ROUNDS: usize = 3;

async fn over_loopback(sim: &WapSim) -> (u64, u64, Duration) {
    let url = sim.usage_service_url();
    let stream = tokio::net::TcpStream::connect(sim.local_addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let auth = sim.credentials().header_value();
    let ids = sim.usage_ids();
    let (mut records, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let mut start = 0i64;
    loop {
        let req = http::Request::get(format!("/usage?startId={start}&batchSize={BATCH}"))
            .header("Host", url.authority())
            .header("Authorization", &auth)
            .body(Empty::<Bytes>::new())
            .expect("request");
        sender.ready().await.expect("connection ready");
        let body = sender.send_request(req).await.expect("send").into_body().collect().await.expect("body").to_bytes();
        if body.as_ref() == b"[]" {
            break;
        }
        // Count records without parsing: the next startId follows the known id list.
        let n = (ids.partition_point(|id| *id < start) + BATCH).min(ids.len());
        records += (n - ids.partition_point(|id| *id < start)) as u64;
        bytes += body.len() as u64;
        start = ids[n - 1] + 1;
    }
    (records, bytes, started.elapsed())
}

fn in_process(records: &[wap_types::UsageRecord]) -> (u64, u64, Duration) {
    let started = Instant::now();
    let mut bytes = 0u64;
    for chunk in records.chunks(BATCH) {
        let body = serde_json::to_vec(chunk).expect("serialise");
        bytes += std::hint::black_box(body).len() as u64;
    }
    (records.len() as u64, bytes, started.elapsed())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("WAP_SIM_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let sim = WapSim::builder().seed(1).dataset(DatasetSpec::with_usage_records(n)).start().await.expect("start");
        let records = sim.usage_records();
        let (mut https, mut locals, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let mut mb = 0.0;
        for round in 0..ROUNDS {
            // Both sides in every round, the order alternating; the ratio is taken within the round.
            let ((count, bytes, took), (lcount, lbytes, ltook)) = if round % 2 == 0 {
                let http = over_loopback(&sim).await;
                (http, in_process(&records))
            } else {
                let local = in_process(&records);
                (over_loopback(&sim).await, local)
            };
            assert_eq!(count, n, "every record emitted");
            let (h, l) = (rate(count, took), rate(lcount, ltook));
            println!(
                "round {round}: loopback {h:>10.0} records/s ({:.1} MB/s) | in-process serialise {l:>10.0} records/s ({:.1} MB/s)",
                rate(bytes, took) / 1e6,
                rate(lbytes, ltook) / 1e6
            );
            https.push(h);
            locals.push(l);
            ratios.push(h / l);
            mb = bytes as f64 / count as f64;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (http, local) = (median(&mut https), median(&mut locals));
        let ratio = median(&mut ratios);
        let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
        println!(
            "usage_throughput: {n} records, batch {BATCH}, {mb:.0} bytes/record: loopback {http:.0} records/s, \
             in-process {local:.0} records/s (medians of {ROUNDS} rounds), ratio median {ratio:.2} (range \
             {low:.2}-{high:.2})"
        );
        println!("RESULT sim_loopback_vs_serialise median={ratio:.4} min={low:.4} max={high:.4} rounds={ROUNDS}");
        sim.shutdown().await;
    });
}
