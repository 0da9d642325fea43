//! Every fault kind is observable by a client, and counted.

mod common;

use std::time::Duration;

use common::{get_once, Conn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wap_sim::{DatasetSpec, FaultKind, FaultPlan, WapSim};
use wap_types::FeedKind;

async fn sim(plan: FaultPlan) -> WapSim {
    WapSim::builder().seed(2).dataset(DatasetSpec::with_usage_records(300)).faults(plan).start().await.unwrap()
}

/// A raw HTTP/1.1 exchange: what came back before the connection ended, and how it ended.
async fn raw_get(sim: &WapSim, path: &str) -> (Vec<u8>, std::io::Result<()>) {
    let mut tcp = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        sim.usage_service_url().authority(),
        sim.credentials().header_value()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut chunk)).await.expect("bounded") {
            Ok(0) => break Ok(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(e),
        }
    };
    (buf, end)
}

fn split_head(bytes: &[u8]) -> (String, Vec<u8>) {
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("headers were sent") + 4;
    (String::from_utf8_lossy(&bytes[..at]).to_ascii_lowercase(), bytes[at..].to_vec())
}

#[tokio::test]
async fn status_faults_answer_500_html_and_503_empty_then_recover() {
    let sim = sim(FaultPlan::always(FaultKind::Status500Html).max_faults(1)).await;
    let base = sim.usage_service_url();
    let auth = sim.credentials().header_value();
    let mut conn = Conn::open(&base).await.unwrap();
    let a = conn.get("/usage?startId=0&batchSize=5", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 500);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&a.body).contains("<html"));
    let a = conn.get("/usage?startId=0&batchSize=5", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 200, "max_faults(1)");

    sim.set_faults(FaultPlan::always(FaultKind::Status503Empty).max_faults(1));
    let a = conn.get("/billing/plans?startId=0&batchSize=5", Some(&auth)).await.unwrap();
    assert_eq!((a.status, a.body.len()), (503, 0));
    let stats = sim.fault_stats();
    assert_eq!((stats.status_500_html, stats.status_503_empty, stats.total()), (1, 1, 2));
    let faults: Vec<Option<FaultKind>> = sim.request_log().iter().map(|e| e.fault).collect();
    assert_eq!(faults, vec![Some(FaultKind::Status500Html), None, Some(FaultKind::Status503Empty)]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_reset_mid_body_breaks_the_connection() {
    let sim = sim(FaultPlan::always(FaultKind::ResetMidBody).max_faults(1)).await;
    let (bytes, end) = raw_get(&sim, "/usage?startId=0&batchSize=200").await;
    let err = end.expect_err("the connection is reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    if !bytes.is_empty() {
        let (head, _) = split_head(&bytes);
        assert!(head.starts_with("http/1.1 200"));
    }
    assert_eq!(sim.fault_stats().reset_mid_body, 1);
    // A hyper client sees an error, not a page.
    sim.set_faults(FaultPlan::always(FaultKind::ResetMidBody).max_faults(1));
    let auth = sim.credentials().header_value();
    assert!(get_once(&sim.usage_service_url(), "/usage?startId=0&batchSize=200", Some(&auth)).await.is_err());
    assert_eq!(sim.fault_stats().reset_mid_body, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn truncated_json_is_cut_under_a_full_content_length_or_a_chunked_body() {
    let sim = sim(FaultPlan::always(FaultKind::TruncatedJson).max_faults(2)).await;
    // First: full Content-Length, fewer bytes, clean close.
    let (bytes, end) = raw_get(&sim, "/usage?startId=0&batchSize=100").await;
    assert!(end.is_ok(), "closed, not reset: {end:?}");
    let (head, body) = split_head(&bytes);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a Content-Length header")
        .trim()
        .parse()
        .unwrap();
    assert!(body.len() < length, "{} of {length} bytes", body.len());
    let err = wap_types::json::page_from_slice::<wap_types::UsageRecord>(&body).unwrap_err();
    assert!(err.is_eof, "the JSON is cut short: {err}");
    // Second: chunked, no terminating chunk.
    let (bytes, end) = raw_get(&sim, "/usage?startId=0&batchSize=100").await;
    assert!(end.is_ok());
    let (head, body) = split_head(&bytes);
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(!body.ends_with(b"0\r\n\r\n"), "no final chunk");
    assert_eq!(sim.fault_stats().truncated_json, 2);
    // Then normal again.
    let (bytes, _) = raw_get(&sim, "/usage?startId=0&batchSize=100").await;
    let (_, body) = split_head(&bytes);
    assert_eq!(wap_types::json::page_from_slice::<wap_types::UsageRecord>(&body).unwrap().len(), 100);
    sim.shutdown().await;
}

#[tokio::test]
async fn delays_answer_late_and_stalls_never_answer() {
    let sim = sim(FaultPlan::always(FaultKind::Delay(Duration::from_millis(30))).max_faults(1)).await;
    let auth = sim.credentials().header_value();
    let base = sim.usage_service_url();
    let a = get_once(&base, "/usage?startId=0&batchSize=3", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json().as_array().unwrap().len(), 3, "a delayed answer is complete");
    assert_eq!(sim.fault_stats().delays, 1);

    sim.set_faults(FaultPlan::always(FaultKind::Stall).only_paths(&["/billing/plans"]));
    let stalled = tokio::time::timeout(
        Duration::from_millis(300),
        get_once(&base, "/billing/plans?startId=0&batchSize=3", Some(&auth)),
    )
    .await;
    assert!(stalled.is_err(), "no answer: the client gives up");
    let other = get_once(&base, "/usage?startId=0&batchSize=3", Some(&auth)).await.unwrap();
    assert_eq!(other.status, 200, "other paths are not faulted");
    assert_eq!(sim.fault_stats().stalls, 1);
    let entry = sim.request_log().into_iter().find(|e| e.fault == Some(FaultKind::Stall)).unwrap();
    assert_eq!(entry.status, 0);
    // Shutdown does not wait for the stalled request forever.
    tokio::time::timeout(Duration::from_secs(10), sim.shutdown()).await.unwrap();
}

/// A client that retries on faults still reads every record exactly once: what WAP misbehaving is for.
#[tokio::test]
async fn a_retrying_client_gets_every_record_despite_seeded_faults() {
    let plan = FaultPlan::seeded(9)
        .rate(0.4)
        .kinds(&[
            FaultKind::Status500Html,
            FaultKind::Status503Empty,
            FaultKind::TruncatedJson,
            FaultKind::ResetMidBody,
        ])
        .only_paths(&["/usage"]);
    let sim = sim(plan).await;
    let auth = sim.credentials().header_value();
    let base = sim.usage_service_url();
    let mut start = 0i64;
    let mut got = Vec::new();
    let mut failures = 0u64;
    for _ in 0..1000 {
        let page = match get_once(&base, &format!("/usage?startId={start}&batchSize=25"), Some(&auth)).await {
            Ok(a) if a.status == 200 => match wap_types::json::page_from_slice::<wap_types::UsageRecord>(&a.body) {
                Ok(p) => p,
                Err(_) => {
                    failures += 1;
                    continue;
                }
            },
            _ => {
                failures += 1;
                continue;
            }
        };
        if page.is_empty() {
            break;
        }
        start = page.last().unwrap().event_id + 1;
        got.extend(page);
    }
    assert_eq!(got, sim.usage_records());
    let stats = sim.fault_stats();
    assert!(stats.total() > 0);
    assert_eq!(failures, stats.total(), "every fault was seen by the client, and nothing else failed");
    assert!(sim.event_ids(FeedKind::Plans).len() > 1);
    sim.shutdown().await;
}
