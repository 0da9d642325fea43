//! Mocking WAP's Usage Service in your own wiremock tests (feature `testing`).
//!
//! [`FeedResponder`] answers a feed with WAP's paging rules: `startId` inclusive (or exclusive, as configured),
//! `batchSize` (default 100, capped at 10,000; `0`, negative or not a number → 400 with WAP's error body), `[]` past
//! the end, query names in any case. [`mount_feed`] mounts one behind Basic authentication (401 with
//! `WWW-Authenticate: Basic` otherwise), and [`wap_error`] gives WAP's other error shapes. Values come from
//! [`wap_types::testing`]. `wap-sim` remains the faithful option (live feeds, approvals, faults, a collector).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use wap_types::testing::usage_record;
//! use wap_types::{BasicCredentials, FeedKind, StartId};
//! use wap_usage_client::testing::mount_feed;
//! use wap_usage_client::UsageClient;
//!
//! let server = wiremock::MockServer::start().await;
//! let credentials = BasicCredentials::new("UsageClient", "test-password");
//! let records: Vec<_> = (1..=250).map(|id| usage_record(id, "2f6d1c0e-5a4b-4f1e-9c6b-0c8f2d3e4a51")).collect();
//! mount_feed(&server, FeedKind::Usage, &records, &credentials).await;
//!
//! let client = UsageClient::builder().base_url(server.uri()).basic_credentials(credentials).batch_size(100).build().unwrap();
//! let first = client.usage().page(StartId::new(0), 100).await.unwrap();
//! assert_eq!(first.items.len(), 100);
//! let last = client.usage().page(StartId::new(201), 100).await.unwrap();
//! assert_eq!(last.items.len(), 50);
//! assert!(client.usage().page(StartId::new(251), 100).await.unwrap().caught_up);
//! # }
//! ```

use serde::Serialize;
use serde_json::{json, Value};
use wap_types::{BasicCredentials, FeedKind, StartIdMode};
use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

/// WAP's largest `batchSize`.
pub const MAX_BATCH_SIZE: i64 = 10_000;

/// Serves one feed's items with WAP's paging rules.
#[derive(Debug, Clone)]
pub struct FeedResponder {
    items: Vec<(i64, Value)>,
    mode: StartIdMode,
}

impl FeedResponder {
    /// Serves `items` (usage records or events), sorted by their `EventId`.
    pub fn new<T: Serialize>(items: &[T]) -> Self {
        let mut items: Vec<(i64, Value)> = items
            .iter()
            .map(|i| {
                let v = serde_json::to_value(i).expect("wire values serialize");
                let id = v.get("EventId").and_then(Value::as_i64).unwrap_or(0);
                (id, v)
            })
            .collect();
        items.sort_by_key(|(id, _)| *id);
        FeedResponder { items, mode: StartIdMode::Inclusive }
    }

    /// `startId` exclusive (an older WAP build; see `StartIdInclusive`).
    pub fn start_id_exclusive(mut self) -> Self {
        self.mode = StartIdMode::Exclusive;
        self
    }
}

fn query(request: &Request, name: &str) -> Option<String> {
    request.url.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.into_owned())
}

impl Respond for FeedResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let start = match query(request, "startId").filter(|s| !s.is_empty()) {
            None => 0,
            Some(s) => match s.parse::<i64>() {
                Ok(v) => v,
                Err(_) => return wap_error(400, "startId"),
            },
        };
        let batch = match query(request, "batchSize").filter(|s| !s.is_empty()) {
            None => 100,
            Some(s) => match s.parse::<i64>() {
                Ok(v) if v > 0 => v.min(MAX_BATCH_SIZE),
                _ => return wap_error(400, "batchSize"),
            },
        };
        let page: Vec<&Value> = self
            .items
            .iter()
            .filter(|(id, _)| match self.mode {
                StartIdMode::Inclusive => *id >= start,
                StartIdMode::Exclusive => *id > start,
            })
            .take(usize::try_from(batch).unwrap_or(usize::MAX))
            .map(|(_, v)| v)
            .collect();
        ResponseTemplate::new(200).set_body_json(page)
    }
}

/// WAP's error answers: 400 names the bad query parameter (ASP.NET Web API's `Message` / `MessageDetail` body),
/// 401 carries `WWW-Authenticate: Basic`, 503 carries `Retry-After: 1`, anything else a plain `Message`.
pub fn wap_error(status: u16, detail: &str) -> ResponseTemplate {
    match status {
        400 => ResponseTemplate::new(400).set_body_json(json!({
            "Message": "The request is invalid.",
            "MessageDetail": format!("The query parameter '{detail}' is not valid."),
        })),
        401 => ResponseTemplate::new(401)
            .insert_header("WWW-Authenticate", "Basic realm=\"Usage\"")
            .set_body_string("401 - Unauthorized: Access is denied due to invalid credentials."),
        503 => ResponseTemplate::new(503)
            .insert_header("Retry-After", "1")
            .set_body_json(json!({ "Message": format!("Service unavailable: {detail}") })),
        s => ResponseTemplate::new(s).set_body_json(json!({ "Message": detail })),
    }
}

/// Matches requests that carry `credentials` with HTTP Basic.
#[derive(Debug, Clone)]
pub struct BasicAuthMatcher(String);

impl BasicAuthMatcher {
    /// Expects `credentials`.
    pub fn new(credentials: &BasicCredentials) -> Self {
        BasicAuthMatcher(credentials.header_value())
    }
}

impl Match for BasicAuthMatcher {
    fn matches(&self, request: &Request) -> bool {
        request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| BasicCredentials::parse_header(v).is_some_and(|c| c.header_value() == self.0))
    }
}

/// Mounts `feed` at its path (WAP's casing; matched ignoring case, as IIS does) serving `items`, behind Basic
/// authentication with `credentials`; any request without them gets WAP's 401.
pub async fn mount_feed<T: Serialize>(
    server: &MockServer,
    feed: FeedKind,
    items: &[T],
    credentials: &BasicCredentials,
) {
    let path = feed.path().to_ascii_lowercase();
    Mock::given(wiremock::matchers::method("GET"))
        .and(move |r: &Request| r.url.path().to_ascii_lowercase().trim_end_matches('/') == path)
        .and(BasicAuthMatcher::new(credentials))
        .respond_with(FeedResponder::new(items))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(wiremock::matchers::any()).respond_with(wap_error(401, "")).with_priority(u8::MAX).mount(server).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use wap_types::testing::usage_record;
    use wap_types::StartId;

    use crate::UsageClient;

    #[tokio::test]
    async fn paging_rules_and_error_shapes() {
        let server = MockServer::start().await;
        let creds = BasicCredentials::new("u", "p");
        let records: Vec<_> = [3, 5, 9].iter().map(|id| usage_record(*id, "s")).collect();
        mount_feed(&server, FeedKind::Usage, &records, &creds).await;
        let get = |q: &str| {
            let url = format!("{}/usage?{q}", server.uri());
            let auth = creds.header_value();
            async move {
                let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
                let req = http::Request::get(url).header("Authorization", auth).body(Default::default()).unwrap();
                let res = client.request(req).await.unwrap();
                let status = res.status().as_u16();
                let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
                (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
            }
        };
        let ids = |v: &Value| v.as_array().unwrap().iter().map(|r| r["EventId"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(ids(&get("startId=5&batchSize=10").await.1), [5, 9], "startId is inclusive");
        assert_eq!(ids(&get("STARTID=0&BatchSize=2").await.1), [3, 5], "names in any case; batchSize honoured");
        assert_eq!(ids(&get("startId=10").await.1), Vec::<i64>::new(), "[] past the end");
        let (status, body) = get("batchSize=0").await;
        assert_eq!(status, 400);
        assert!(body["MessageDetail"].as_str().unwrap().contains("batchSize"));

        let anonymous = UsageClient::builder().base_url(server.uri()).credentials("u", "wrong").build().unwrap();
        let err = anonymous.usage().page(StartId::new(0), 10).await.unwrap_err();
        assert!(err.to_string().contains("401"), "{err}");
    }
}
