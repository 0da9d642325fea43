//! Retry and back-off over real HTTP on loopback, in virtual time (`tokio::time::pause()`): waits are checked
//! exactly, without sleeping for real.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use support::{json_ok, response, usage_json, Reply, TestServer};
use tokio::time::Instant;
use wap_usage_client::{Clock, Error, RetryPolicy, StartId, TokioClock, TransportErrorKind, UsageClient};

fn page(ids: &[i64]) -> Vec<u8> {
    let v: Vec<_> = ids.iter().map(|&i| usage_json(i)).collect();
    json_ok(serde_json::to_string(&v).unwrap().as_bytes())
}

fn client(url: &str, policy: RetryPolicy) -> UsageClient {
    UsageClient::builder()
        .base_url(url)
        .credentials("usagereader", "Us4ge-Read")
        .retry_policy(policy)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn waits_double_and_retry_after_only_lengthens_the_wait() {
    let server = TestServer::scripted(vec![
        Reply::Raw(response(503, &[], b"")),
        Reply::Raw(response(503, &[("Retry-After", "7")], b"busy")),
        // a body cut short: the connection closes before Content-Length bytes arrived
        Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n[{\"EventId\": 1".to_vec()),
        Reply::Raw(response(502, &[], b"<html>Bad Gateway</html>")),
        Reply::Raw(page(&[1, 2])),
    ])
    .await;
    let policy = RetryPolicy::exponential(Duration::from_secs(10), Duration::from_secs(1000)).without_jitter();
    let c = client(&server.url(), policy);
    let t0 = Instant::now();
    let page = c.usage().page(StartId::BEGINNING, 100).await.unwrap();
    // 10 s (1st retry) + 20 s (a Retry-After of 7 s never shortens the back-off) + 40 s (3rd) + 80 s (4th)
    assert_eq!(t0.elapsed(), Duration::from_secs(150));
    assert_eq!(page.items.len(), 2);
    assert_eq!(server.requests().len(), 5);
}

/// A clock whose wall-clock time is fixed, to check a `Retry-After` HTTP-date.
#[derive(Debug)]
struct FixedWallClock(SystemTime);

impl Clock for FixedWallClock {
    fn now(&self) -> Instant {
        TokioClock.now()
    }
    fn wall_clock(&self) -> SystemTime {
        self.0
    }
    fn sleep(&self, d: Duration) -> wap_usage_client::Sleep {
        TokioClock.sleep(d)
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_uses_the_injected_wall_clock() {
    let server = TestServer::scripted(vec![
        Reply::Raw(response(429, &[("Retry-After", "Sun, 06 Nov 1994 08:50:07 GMT")], b"")),
        Reply::Raw(page(&[5])),
    ])
    .await;
    // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT: the date is 30 s later
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .retry_policy(RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(2)).without_jitter())
        .clock(Arc::new(FixedWallClock(wall)))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let page = c.usage().page(StartId::BEGINNING, 10).await.unwrap();
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
    assert_eq!(page.items[0].event_id, 5);
}

#[tokio::test(start_paused = true)]
async fn client_errors_are_never_retried() {
    for status in [400u16, 401, 403, 404] {
        let server =
            TestServer::scripted(vec![Reply::Raw(response(status, &[], b"nope")), Reply::Raw(page(&[1]))]).await;
        let c = client(&server.url(), RetryPolicy::unlimited().without_jitter());
        let t0 = Instant::now();
        let err = c.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
        assert_eq!(err.status(), Some(status));
        assert!(!err.is_retryable());
        assert_eq!(t0.elapsed(), Duration::ZERO);
        assert_eq!(server.requests().len(), 1, "status {status} must not be retried");
    }
}

#[tokio::test(start_paused = true)]
async fn max_attempts_and_max_elapsed_end_the_retries() {
    let five_503 = || (0..5).map(|_| Reply::Raw(response(503, &[], b""))).collect::<Vec<_>>();

    let server = TestServer::scripted(five_503()).await;
    let policy = RetryPolicy::exponential(Duration::from_secs(10), Duration::from_secs(1000)).without_jitter();
    let c = client(&server.url(), policy.clone().max_attempts(3));
    let t0 = Instant::now();
    let err = c.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(t0.elapsed(), Duration::from_secs(30));

    let server = TestServer::scripted(five_503()).await;
    let c = client(&server.url(), policy.max_elapsed(Duration::from_secs(60)));
    let t0 = Instant::now();
    let err = c.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    // waits 10 + 20 = 30 s; the next wait (40 s) would end at 70 s > 60 s
    assert_eq!(server.requests().len(), 3);
    assert_eq!(t0.elapsed(), Duration::from_secs(30));

    let server = TestServer::scripted(five_503()).await;
    let c = client(&server.url(), RetryPolicy::disabled());
    assert!(c.usage().page(StartId::BEGINNING, 10).await.is_err());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_server_times_out_and_is_retried() {
    let server = TestServer::scripted(vec![Reply::Stall, Reply::Raw(page(&[9]))]).await;
    let policy = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(10)).without_jitter();
    let c = client(&server.url(), policy);
    let t0 = Instant::now();
    let page = c.usage().page(StartId::BEGINNING, 10).await.unwrap();
    assert_eq!(page.items[0].event_id, 9);
    // 5 s timeout + 1 s back-off
    assert_eq!(t0.elapsed(), Duration::from_secs(6));

    let server = TestServer::scripted(vec![Reply::Stall]).await;
    let c = client(&server.url(), RetryPolicy::disabled());
    match c.usage().page(StartId::BEGINNING, 10).await {
        Err(Error::Timeout { after, url }) => {
            assert_eq!(after, Duration::from_secs(5));
            assert_eq!(url.path(), "/usage");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn connect_errors_are_retried() {
    // A port with no listener: bind, note the port, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = client(
        &format!("http://{addr}/"),
        RetryPolicy::exponential(Duration::from_secs(2), Duration::from_secs(10)).without_jitter().max_attempts(3),
    );
    let t0 = Instant::now();
    match c.usage().page(StartId::BEGINNING, 10).await {
        Err(e @ Error::Transport { kind: TransportErrorKind::Connect, .. }) => assert!(e.is_retryable()),
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(t0.elapsed(), Duration::from_secs(6), "two waits: 2 s + 4 s");
}
