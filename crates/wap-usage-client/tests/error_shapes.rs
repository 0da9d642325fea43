//! Every error shape of a Usage Service answer (wiremock, plus a raw server for a connection cut mid-body): the
//! error variant, its context (status, URL without credentials, body snippet, JSON path) and its classification.

mod support;

use std::time::Duration;

use wap_usage_client::{DecodeErrorKind, Error, RetryPolicy, StartId, TransportErrorKind, UsageClient};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PASSWORD: &str = "Us4ge-Read";

/// A client whose URL carries the credentials (they must not leak into errors).
fn client(server: &MockServer, policy: RetryPolicy) -> UsageClient {
    let url = server.uri().replace("http://", &format!("http://usagereader:{PASSWORD}@"));
    UsageClient::builder().base_url(format!("{url}/")).retry_policy(policy).build().unwrap()
}

async fn one_shot(template: ResponseTemplate) -> Error {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/usage")).respond_with(template).mount(&server).await;
    let err = client(&server, RetryPolicy::disabled()).usage().page(StartId::new(17), 100).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains(PASSWORD), "credentials leaked: {text}");
    assert!(!text.contains("dXNhZ2VyZWFkZXI6"), "authorization header leaked: {text}");
    let url = err.url().expect("request errors carry the URL");
    assert_eq!(url.username(), "");
    assert_eq!(url.password(), None);
    assert_eq!(url.path(), "/usage");
    assert_eq!(url.query(), Some("startId=17&batchSize=100"));
    err
}

#[tokio::test]
async fn html_500_is_a_retryable_status_with_a_snippet() {
    let html =
        format!("<html>\r\n<head><title>Runtime Error</title></head>\r\n<body>{}</body></html>", "x".repeat(4000));
    let err = one_shot(ResponseTemplate::new(500).set_body_raw(html, "text/html")).await;
    match &err {
        Error::Status { status: 500, body_snippet, retry_after: None, .. } => {
            assert!(body_snippet.starts_with("<html> <head><title>Runtime Error</title></head>"), "{body_snippet}");
            assert!(body_snippet.len() <= 512);
        }
        other => panic!("expected status 500, got {other:?}"),
    }
    assert!(err.is_retryable() && err.is_wap_side());
    assert!(err.to_string().contains("HTTP 500"));
}

#[tokio::test]
async fn empty_503_is_retryable_and_keeps_retry_after() {
    let err = one_shot(ResponseTemplate::new(503).insert_header("Retry-After", "30")).await;
    match &err {
        Error::Status { status: 503, body_snippet, retry_after, .. } => {
            assert_eq!(body_snippet, "");
            assert_eq!(*retry_after, Some(wap_usage_client::RetryAfter::Delay(Duration::from_secs(30))));
        }
        other => panic!("expected status 503, got {other:?}"),
    }
    assert!(err.is_retryable());
}

#[tokio::test]
async fn unauthorized_401_is_a_configuration_error_and_not_retried() {
    let err = one_shot(
        ResponseTemplate::new(401).insert_header("WWW-Authenticate", "Basic realm=\"Usage\"").set_body_string("denied"),
    )
    .await;
    assert_eq!(err.status(), Some(401));
    assert!(err.is_auth_error() && !err.is_retryable() && err.is_wap_side());
    assert!(err.to_string().contains("UsageServiceUsername"));
}

#[tokio::test]
async fn malformed_json_is_not_a_page() {
    let err = one_shot(ResponseTemplate::new(200).set_body_raw(r#"[{"EventId": 1,, }]"#, "application/json")).await;
    match &err {
        Error::Decode { kind: DecodeErrorKind::NotAPage, source, .. } => {
            assert_eq!(source.line, 1);
            assert!(source.column > 1);
        }
        other => panic!("expected NotAPage, got {other:?}"),
    }
    assert!(err.is_retryable(), "a WAP-side fault (docs/protocol/usage-service.md §2.2)");
}

#[tokio::test]
async fn truncated_json_is_retryable() {
    let full = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/spec/fixtures/usage-service/usage-page.json"
    ))
    .unwrap();
    let cut = &full[..full.len() / 2];
    let err = one_shot(ResponseTemplate::new(200).set_body_raw(cut, "application/json")).await;
    assert!(matches!(err, Error::Decode { kind: DecodeErrorKind::Truncated, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn non_array_bodies_are_not_pages() {
    for body in [r#"{"EventId": 1}"#, r#""text""#, "42", "<html>Sign in</html>"] {
        let err = one_shot(ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
        assert!(matches!(err, Error::Decode { kind: DecodeErrorKind::NotAPage, .. }), "{body}: {err:?}");
        assert_eq!(err.json_path(), Some("."));
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn wrong_types_name_the_json_path_and_are_not_retried() {
    // A nested meter value is no longer a wrong type (kept as its JSON text); a date sent as a number is. The page
    // starts at the bad record (`startId=17`), so the request fails with it: its id, path and raw JSON.
    let body = serde_json::json!([
        support::usage_json(18),
        {"EventId": 17, "StartTime": 5, "EndTime": "2015-06-02T08:03:00",
         "SubscriptionId": "s", "Resources": {"DatabaseCount": ["2"]}}
    ]);
    let err = one_shot(ResponseTemplate::new(200).set_body_json(body)).await;
    match &err {
        Error::MalformedRecord { record, .. } => {
            assert_eq!(record.path, "[1].StartTime", "{record}");
            assert_eq!(record.event_id, Some(17));
            assert!(record.raw.contains(r#""StartTime":5"#), "{}", record.raw);
        }
        other => panic!("expected MalformedRecord, got {other:?}"),
    }
    assert!(!err.is_retryable() && !err.is_wap_side());
    assert!(err.to_string().contains("[1].StartTime"));

    // a wrong type inside an event entity
    let server = MockServer::start().await;
    let events =
        serde_json::json!([{"EventId": 7, "State": 0, "Method": "POST", "Entity": {"Id": "p1", "State": "open"}}]);
    Mock::given(path("/billing/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(events))
        .mount(&server)
        .await;
    let err = client(&server, RetryPolicy::disabled()).plans().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert!(matches!(&err, Error::MalformedRecord { record, .. } if record.event_id == Some(7)), "{err:?}");
    assert!(err.json_path().unwrap().starts_with("[0]"), "{err}");
    assert!(err.to_string().contains("Entity.State"), "{err}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let err = one_shot(ResponseTemplate::new(302).insert_header("Location", "http://elsewhere.test/usage")).await;
    assert_eq!(err.status(), Some(302));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_connection_cut_mid_body_is_an_incomplete_body() {
    use support::{Reply, TestServer};
    let server = TestServer::scripted(vec![Reply::RawThenClose(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n[{\"EventId\": 1, \"Start".to_vec(),
    )])
    .await;
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();
    let err = c.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert!(matches!(err, Error::Transport { kind: TransportErrorKind::IncompleteBody, .. }), "{err:?}");
    assert!(err.is_retryable());

    let server = TestServer::scripted(vec![Reply::RawThenClose(Vec::new())]).await;
    let c = UsageClient::builder()
        .base_url(server.url())
        .credentials("u", "p")
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();
    let err = c.usage().page(StartId::BEGINNING, 10).await.unwrap_err();
    assert!(matches!(err, Error::Transport { kind: TransportErrorKind::Reset, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let server = MockServer::start().await;
    let big = serde_json::Value::Array((0..200).map(support::usage_json).collect());
    Mock::given(path("/usage")).respond_with(ResponseTemplate::new(200).set_body_json(big)).mount(&server).await;
    let c = UsageClient::builder()
        .base_url(server.uri())
        .credentials("u", "p")
        .max_body_bytes(10_000)
        .retry_policy(RetryPolicy::disabled())
        .build()
        .unwrap();
    let err = c.usage().page(StartId::BEGINNING, 200).await.unwrap_err();
    assert!(matches!(err, Error::BodyTooLarge { limit: 10_000, .. }), "{err:?}");
}

#[tokio::test]
async fn transient_errors_are_retried_until_a_page_arrives() {
    let server = MockServer::start().await;
    Mock::given(path("/usage"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(path("/usage"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(path("/usage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([support::usage_json(3)])))
        .with_priority(3)
        .mount(&server)
        .await;
    let policy = RetryPolicy::exponential(Duration::from_millis(1), Duration::from_millis(5)).max_attempts(10);
    let page = client(&server, policy).usage().page(StartId::BEGINNING, 10).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}
