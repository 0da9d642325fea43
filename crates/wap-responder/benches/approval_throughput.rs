//! Approval throughput on loopback: the served responder (Basic auth, JSON parsing, idempotency cache, decision)
//! against a bare hyper server that reads the body and answers 204, measured in the same run by the same
//! keep-alive load generator at concurrency 1, 16 and 64, in alternating rounds (so that a change in machine load
//! hits both alike). Reports approvals/s, p50/p99 latency, the ratio to the bare server, and requests per
//! CPU-second of the process (client included), which does not depend on what other processes take. Everything is
//! measured twice: on Tokio's default runtime (one worker per core) and on a runtime with one worker, where no
//! thread waits for another and the ratio shows the responder's own work per request.
//!
//! `cargo bench -p wap-responder --bench approval_throughput` (5 s per point and server; `BENCH_SECONDS` changes
//! it). Without `--bench` (as `cargo test --benches` runs it) it makes a short smoke run.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use wap_responder::{serve, BasicCredentials, Decision, FnApprover, Responder, ResponderConfig, ServerConfig};

const PLAN: &str = "Silverq7k2d9w";

/// Alternating rounds per point.
const ROUNDS: u32 = 10;

fn body(event_id: i64) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"{{"EventId":{},"State":2,"Method":"POST","Entity":{{"SubscriptionID":"bb81c3c1-8a81-4b27-a355-{:012}","#,
            r#""SubscriptionName":"Silver Hosting","AccountAdminLiveEmailId":"lena.vogel@northwind.test","#,
            r#""ServiceAdminLiveEmailId":null,"CoAdminNames":[],"AddOnReferences":[],"AddOns":[],"State":0,"#,
            r#""QuotaSyncState":0,"ActivationSyncState":0,"PlanId":"{}","Services":[],"LastErrorMessage":null,"#,
            r#""Features":null,"OfferFriendlyName":null,"OfferCategory":null,"Created":"0001-01-01T00:00:00"}},"#,
            r#""EntityParentId":null,"NotificationEventTimeCreated":"2015-06-03T10:31:05.4423178Z"}}"#
        ),
        event_id, event_id, PLAN
    ))
}

/// A bare hyper HTTP/1.1 server: reads the body, answers 204.
async fn bare_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut response = http::Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = http::StatusCode::NO_CONTENT;
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Point {
    rate: f64,
    per_cpu_second: Option<f64>,
    p50: Duration,
    p99: Duration,
    requests: usize,
}

/// Latencies, wall time and process CPU time of some load runs, summed.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
    cpu: Duration,
}

/// CPU time used by all threads of this process (Linux: `/proc/self/task/*/schedstat`), to report requests per
/// CPU-second: unlike the wall-clock rate, it does not depend on how much of the machine other processes take.
fn process_cpu() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

impl Samples {
    /// Requests and wall time so far (to take one round's rate).
    fn rate_parts(&self) -> (usize, Duration) {
        (self.latencies.len(), self.elapsed)
    }

    fn point(mut self) -> Point {
        self.latencies.sort_unstable();
        let all = &self.latencies;
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        Point {
            rate: all.len() as f64 / self.elapsed.as_secs_f64(),
            per_cpu_second: (!self.cpu.is_zero()).then(|| all.len() as f64 / self.cpu.as_secs_f64()),
            p50: pct(0.50),
            p99: pct(0.99),
            requests: all.len(),
        }
    }
}

/// `concurrency` keep-alive connections, each sending approval calls back to back for `duration`.
async fn load(addr: SocketAddr, concurrency: usize, duration: Duration, next_id: Arc<AtomicI64>, into: &mut Samples) {
    let auth = BasicCredentials::new("wapcaller", "S3cure!pass").header_value();
    let mut connections = Vec::new();
    for _ in 0..concurrency {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        connections.push(sender);
    }
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for mut sender in connections {
        let auth = auth.clone();
        let next_id = next_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let request = http::Request::post("/wap/subscriptions")
                    .header("Host", "billing")
                    .header("Content-Type", "application/json; charset=utf-8")
                    .header("Authorization", &auth)
                    .body(Full::new(body(id)))
                    .unwrap();
                let t = Instant::now();
                sender.ready().await.unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 204, "every call is approved");
                let _ = response.into_body().collect().await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    for t in tasks {
        into.latencies.extend(t.await.unwrap());
    }
    into.elapsed += started.elapsed();
    if let (Some(before), Some(after)) = (cpu_before, process_cpu()) {
        into.cpu += after.saturating_sub(before);
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// The worst ratios of one configuration: (rate, requests per CPU-second).
struct Worst {
    rate: f64,
    cpu: f64,
}

/// Measures the three concurrencies on `runtime` and prints one table.
fn measure(runtime: &tokio::runtime::Runtime, label: &str, key: &str, duration: Duration) -> Worst {
    runtime.block_on(async move {
        let bare = bare_server().await;
        let approver = FnApprover::new(
            |s| async move {
                Ok::<_, Infallible>(if s.plan_id() == Some(PLAN) { Decision::Approve } else { Decision::deny("no") })
            },
            |_| async { Ok(Decision::Approve) },
        );
        let config = ResponderConfig::basic(BasicCredentials::new("wapcaller", "S3cure!pass")).base_path("/wap/");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = serve(listener, Responder::new(approver, config), ServerConfig::default()).unwrap();
        let next_id = Arc::new(AtomicI64::new(1));

        // Warm both up.
        load(bare, 4, Duration::from_millis(200), next_id.clone(), &mut Samples::default()).await;
        load(server.local_addr(), 4, Duration::from_millis(200), next_id.clone(), &mut Samples::default()).await;

        println!();
        println!(
            "{label}: {} s per point per server in {ROUNDS} alternating rounds",
            duration.as_secs_f64()
        );
        println!(
            "| concurrency | bare 204 req/s | bare p50 ms | bare p99 ms | responder req/s | responder p50 ms | responder p99 ms | ratio | bare req/CPU-s | responder req/CPU-s | CPU ratio |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut worst = Worst { rate: f64::INFINITY, cpu: f64::INFINITY };
        for concurrency in [1, 16, 64] {
            // Alternate short rounds so that a change in machine load hits both servers alike.
            let (mut bare_samples, mut responder_samples) = (Samples::default(), Samples::default());
            let mut round_ratios = Vec::new();
            for _ in 0..ROUNDS {
                let (bare_before, responder_before) = (bare_samples.rate_parts(), responder_samples.rate_parts());
                load(bare, concurrency, duration / ROUNDS, next_id.clone(), &mut bare_samples).await;
                load(server.local_addr(), concurrency, duration / ROUNDS, next_id.clone(), &mut responder_samples).await;
                let round_rate = |s: &Samples, (n, t): (usize, Duration)| {
                    (s.latencies.len() - n) as f64 / (s.elapsed - t).as_secs_f64()
                };
                round_ratios.push(
                    round_rate(&responder_samples, responder_before) / round_rate(&bare_samples, bare_before),
                );
            }
            round_ratios.sort_by(f64::total_cmp);
            let n = round_ratios.len();
            let round_median =
                if n % 2 == 1 { round_ratios[n / 2] } else { (round_ratios[n / 2 - 1] + round_ratios[n / 2]) / 2.0 };
            println!(
                "RESULT responder_{key}_c{concurrency} median={round_median:.4} min={:.4} max={:.4} rounds={n}",
                round_ratios[0],
                round_ratios[n - 1]
            );
            let (b, r) = (bare_samples.point(), responder_samples.point());
            let ratio = r.rate / b.rate;
            worst.rate = worst.rate.min(ratio);
            let per_cpu = |p: &Point| p.per_cpu_second.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into());
            let cpu_ratio = match (b.per_cpu_second, r.per_cpu_second) {
                (Some(b), Some(r)) => {
                    worst.cpu = worst.cpu.min(r / b);
                    format!("{:.0}%", r / b * 100.0)
                }
                _ => "-".into(),
            };
            println!(
                "| {concurrency} | {:.0} | {} | {} | {:.0} | {} | {} | {:.0}% | {} | {} | {cpu_ratio} |",
                b.rate,
                ms(b.p50),
                ms(b.p99),
                r.rate,
                ms(r.p50),
                ms(r.p99),
                ratio * 100.0,
                per_cpu(&b),
                per_cpu(&r),
            );
            assert!(b.requests > 0 && r.requests > 0);
        }
        server.shutdown().await;
        worst
    })
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let duration = if full { Duration::from_secs_f64(seconds) } else { Duration::from_millis(200) };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // The default: a runtime with one worker per core, servers and load generator on it together.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let default =
        measure(&runtime, &format!("{cores} worker threads (Tokio's default)"), &format!("{cores}w"), duration);
    drop(runtime);
    // One worker: no thread ever waits for another, so the ratio is the servers' own work per request, without
    // the cost of waking a parked worker (which, at concurrency 1, grows faster than the work that causes it).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let single = measure(&runtime, "1 worker thread", "1w", duration);
    println!();
    if full {
        println!(
            "worst ratio with {cores} worker threads {:.0}% (target >= 80%): {}; worst requests-per-CPU-second ratio {:.0}%",
            default.rate * 100.0,
            if default.rate >= 0.8 { "met" } else { "NOT met" },
            default.cpu * 100.0
        );
        println!(
            "worst ratio with 1 worker thread {:.0}% (target >= 80%): {}",
            single.rate * 100.0,
            if single.rate >= 0.8 { "met" } else { "NOT met" }
        );
    } else {
        println!("smoke run (no --bench): the numbers above are not a measurement");
    }
}
