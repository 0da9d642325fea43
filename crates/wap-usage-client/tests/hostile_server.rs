//! What a broken or hostile server can send, over real HTTP on loopback (a raw server for header edge cases,
//! wiremock for the rest), in virtual time: no answer makes the client spin, loop, panic or leak a credential.
//! Each test fails without the fix it guards (issue: edge cases a broken or hostile server reaches).

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use support::{json_ok, response, usage_json, RecordedRequest, Reply, TestServer};
use wap_usage_client::{Error, PageHalt, RetryPolicy, StartId, StartIdMode, UsageClient};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(url: &str, policy: RetryPolicy) -> UsageClient {
    UsageClient::builder()
        .base_url(url)
        .credentials("usagereader", "Us4ge-Read")
        .retry_policy(policy)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A server answering every request with `503` and this `Retry-After`.
async fn always_503(retry_after: &'static str) -> TestServer {
    TestServer::with_handler(Arc::new(move |_: &RecordedRequest| {
        Reply::Raw(response(503, &[("Retry-After", retry_after)], b"busy"))
    }))
    .await
}

/// How many requests a `page` call sends within `window` of virtual time (the call is then dropped).
async fn requests_within(server: &TestServer, c: &UsageClient, window: Duration) -> usize {
    let _ = tokio::time::timeout(window, c.usage().page(StartId::BEGINNING, 10)).await;
    server.requests().len()
}

#[tokio::test(start_paused = true)]
async fn retry_after_zero_or_in_the_past_never_shortens_the_backoff() {
    // 1 s, 2 s, 4 s, 8 s without jitter: attempts at 0, 1, 3, 7 and 15 s; within 10 s, 4 requests. Without the
    // floor the client retried at once: the attempt limit (1000) was spent at t = 0.
    let policy =
        RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(60)).without_jitter().max_attempts(1000);
    for retry_after in ["0", "Sun, 06 Nov 1994 08:49:37 GMT", "Wed, 01 Jan 1000 00:00:00 GMT"] {
        let server = always_503(retry_after).await;
        let c = client(&server.url(), policy.clone());
        assert_eq!(requests_within(&server, &c, Duration::from_secs(10)).await, 4, "Retry-After: {retry_after}");
    }
    // unlimited retries too: no spin
    let server = always_503("0").await;
    let c = client(&server.url(), RetryPolicy::unlimited().without_jitter());
    // the default back-off starts at 1 s: attempts at 0, 1, 3, 7 s
    assert_eq!(requests_within(&server, &c, Duration::from_secs(10)).await, 4);
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_with_no_cap_waits_instead_of_panicking() {
    // `max_retry_after(Duration::MAX)` and a Retry-After of 10^23 s once panicked ("overflow when adding
    // durations") in the elapsed-time check.
    // (a first 503 without the header lets 1 s elapse: `1 s + 10^23 s` overflowed)
    let server = TestServer::scripted(vec![
        Reply::Raw(response(503, &[], b"")),
        Reply::Raw(response(503, &[("Retry-After", "99999999999999999999999")], b"")),
    ])
    .await;
    let policy = RetryPolicy::exponential(Duration::from_secs(1), Duration::from_secs(60))
        .without_jitter()
        .max_retry_after(Duration::MAX)
        .max_elapsed(Duration::from_secs(900));
    let c = client(&server.url(), policy);
    let task = tokio::spawn(async move { c.usage().page(StartId::BEGINNING, 10).await });
    let result = task.await.expect("the client must not panic");
    // the wait asked for is past the elapsed limit: the policy gives up after the second answer
    assert_eq!(result.unwrap_err().status(), Some(503));
    assert_eq!(server.requests().len(), 2);

    // without an elapsed limit it waits (virtual years); one request within a day
    let server = always_503("99999999999999999999999").await;
    let policy = RetryPolicy::exponential(Duration::from_secs(1), Duration::MAX).max_retry_after(Duration::MAX);
    let c = client(&server.url(), policy);
    assert_eq!(requests_within(&server, &c, Duration::from_secs(86_400)).await, 1);
}

fn page_of(ids: &[i64]) -> Reply {
    let v: Vec<_> = ids.iter().map(|&i| usage_json(i)).collect();
    Reply::Raw(json_ok(serde_json::to_string(&v).unwrap().as_bytes()))
}

/// A server that answers every request with the records of `ids` at or above `startId`, ignoring the batch.
async fn feed_server(ids: &'static [i64]) -> TestServer {
    TestServer::with_handler(Arc::new(move |req: &RecordedRequest| {
        let start: i64 = req.query("startId").and_then(|v| v.parse().ok()).unwrap_or(0);
        let on_page: Vec<i64> = ids.iter().copied().filter(|&i| i >= start).collect();
        page_of(&on_page)
    }))
    .await
}

#[tokio::test(start_paused = true)]
async fn an_event_id_of_i64_max_ends_the_feed_with_an_error_naming_it() {
    const IDS: &[i64] = &[i64::MAX - 1, i64::MAX];
    let server = feed_server(IDS).await;
    let c = client(&server.url(), RetryPolicy::disabled());
    // Before the fix: [MAX-1, MAX, MAX, MAX, …] forever; `take` bounds the test.
    let got: Vec<Result<i64, Error>> =
        c.usage().stream_from(StartId::new(i64::MAX - 1)).take(10).map(|r| r.map(|i| i.event_id())).collect().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap(), &(i64::MAX - 1));
    match &got[1] {
        Err(e @ Error::CursorCannotAdvance { event_id, .. }) => {
            assert_eq!(*event_id, i64::MAX);
            assert!(e.to_string().contains("9223372036854775807"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("expected CursorCannotAdvance, got {other:?}"),
    }
    // a single page shows why it stopped
    let page = c.usage().page(StartId::new(i64::MAX - 1), 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.halt, Some(PageHalt::CursorCannotAdvance { event_id: i64::MAX }));
    assert_eq!(page.next_start, StartId::new(i64::MAX));
    assert!(!page.caught_up);

    // follow: the error every interval, never a loop of the same record
    let mut follow = c.usage().follow(StartId::new(i64::MAX), Duration::from_secs(60));
    for _ in 0..3 {
        assert!(matches!(follow.next().await, Some(Err(Error::CursorCannotAdvance { .. }))));
    }
    drop(follow);

    // an exclusive cursor can hold i64::MAX: caught up, the record is not repeated
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .start_id_inclusive(false)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();
    let got: Vec<i64> =
        c.usage().stream_from(StartId::new(i64::MAX - 2)).take(10).map(|r| r.unwrap().event_id()).collect().await;
    assert_eq!(got, [i64::MAX - 1, i64::MAX]);
    let page = c.usage().page(StartId::new(i64::MAX), 10).await.unwrap();
    assert!(page.caught_up && page.is_empty(), "{page:?}");
}

/// Usage records as JSON text, one of them malformed.
fn page_with_a_bad_record() -> String {
    let mut bad = usage_json(2);
    bad["StartTime"] = serde_json::json!(5);
    let mut nested = usage_json(3);
    nested["Resources"] = serde_json::json!({"Cpu": {"Cores": 2}, "Disks": ["1"]});
    serde_json::to_string(&vec![usage_json(1), bad, nested, usage_json(4)]).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_malformed_record_stops_the_feed_at_its_position_with_its_id_and_raw_json() {
    let body = page_with_a_bad_record();
    let server = TestServer::with_handler(Arc::new(move |req: &RecordedRequest| {
        let start: i64 = req.query("startId").and_then(|v| v.parse().ok()).unwrap_or(0);
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let page: Vec<_> = all.into_iter().filter(|r| r["EventId"].as_i64().unwrap() >= start).collect();
        Reply::Raw(json_ok(serde_json::to_string(&page).unwrap().as_bytes()))
    }))
    .await;
    let c = client(&server.url(), RetryPolicy::disabled());
    // Before the fix: one `Decode { WrongType }` error for the whole page, record 1 never delivered.
    let got: Vec<_> = c.usage().stream_from(StartId::BEGINNING).take(10).collect().await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].as_ref().unwrap().event_id(), 1);
    let Err(e @ Error::MalformedRecord { record, .. }) = &got[1] else { panic!("{:?}", got[1]) };
    assert_eq!(record.event_id, Some(2));
    assert_eq!(record.path, "[0].StartTime", "the request started at the record");
    assert!(record.raw.contains("\"EventId\":2") && record.raw.contains("\"StartTime\":5"), "{}", record.raw);
    assert!(!e.is_retryable() && !e.is_wap_side());
    assert_eq!(e.json_path(), Some("[0].StartTime"));
    assert!(e.to_string().contains("EventId 2"), "{e}");

    // the page view: record 1, then the halt at 2 with the cursor on it
    let page = c.usage().page(StartId::BEGINNING, 100).await.unwrap();
    assert_eq!(page.items.iter().map(|r| r.event_id).collect::<Vec<_>>(), [1]);
    assert_eq!(page.next_start, StartId::new(2));
    let Some(PageHalt::Malformed(m)) = &page.halt else { panic!("{:?}", page.halt) };
    assert_eq!((m.event_id, m.index, m.path.as_str()), (Some(2), 1, "[1].StartTime"));

    // an operator skips it: the feed goes on, nested meter values kept as their JSON text
    let skip = record.skip_start(StartIdMode::Inclusive).unwrap();
    assert_eq!(skip, StartId::new(3));
    let rest: Vec<_> = c.usage().stream_from(skip).map(|r| r.unwrap().item).collect().await;
    assert_eq!(rest.iter().map(|r| r.event_id).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(rest[0].resources.get("Cpu").map(String::as_str), Some(r#"{"Cores":2}"#));
    assert_eq!(rest[0].resources.get("Disks").map(String::as_str), Some(r#"["1"]"#));
}

#[tokio::test(start_paused = true)]
async fn a_record_without_a_readable_id_stops_the_page_at_the_cursor() {
    let body = r#"[{"EventId": 7, "StartTime": "2015-06-02T08:00:00", "EndTime": "2015-06-02T08:03:00",
        "SubscriptionId": "s"}, {"EventId": {"n": 8}, "SubscriptionId": "s"}]"#;
    let server = TestServer::scripted(vec![Reply::Raw(json_ok(body.as_bytes()))]).await;
    let c = client(&server.url(), RetryPolicy::disabled());
    match c.usage().page(StartId::new(7), 100).await {
        Err(Error::MalformedRecord { record, .. }) => {
            assert_eq!(record.event_id, None);
            assert_eq!(record.index, 1);
            assert_eq!(record.skip_start(StartIdMode::Inclusive), None);
            assert!(record.raw.contains(r#""n": 8"#), "raw JSON exactly as received: {}", record.raw);
        }
        other => panic!("expected a malformed record, got {other:?}"),
    }
}

#[tokio::test]
async fn only_200_and_204_are_pages() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/usage")).respond_with(ResponseTemplate::new(202)).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/billing/plans"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/billing/addons"))
        .respond_with(ResponseTemplate::new(206).set_body_string("[]"))
        .mount(&server)
        .await;
    let c = client(&format!("{}/", server.uri()), RetryPolicy::disabled());
    // Before the fix: the 202's empty body was an empty page, "caught up".
    let err = c.usage().page(StartId::new(5), 10).await.unwrap_err();
    assert_eq!(err.status(), Some(202), "{err}");
    assert!(err.is_retryable() && err.is_wap_side());
    assert!(err.to_string().contains("only 200 and 204 are pages"), "{err}");
    let err = c.addons().page(StartId::new(5), 10).await.unwrap_err();
    assert_eq!(err.status(), Some(206));
    let page = c.plans().page(StartId::new(5), 10).await.unwrap();
    assert!(page.caught_up && page.is_empty());
    assert!(matches!(
        c.raw_page(wap_usage_client::FeedKind::Usage, StartId::new(1), 1).await,
        Err(Error::Status { status: 202, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn follow_with_a_zero_interval_waits_the_poll_interval() {
    let server = feed_server(&[]).await;
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .poll_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = tokio::time::Instant::now();
    // Before the fix a zero interval polled an empty feed in a tight loop (no time passed between polls).
    let pages: Vec<_> = c.usage().follow(StartId::BEGINNING, Duration::ZERO).pages().take(5).collect().await;
    assert!(pages.iter().all(|p| p.as_ref().unwrap().caught_up));
    assert_eq!(t0.elapsed(), Duration::from_secs(4 * 60));
    assert_eq!(server.requests().len(), 5);
}
