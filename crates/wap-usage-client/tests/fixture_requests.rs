//! The spec's request table (`fixtures/usage-service/requests.json`) as a table-driven test: each case's request
//! (path, query, headers) and cursor outcome, against a wiremock server answering with the case's fixture.
#![allow(deprecated)] // also exercises UsageClientBuilder::setting, deprecated for UsageServiceSettings

use serde_json::Value;
use wap_types::{Feed, FeedKind, HasEventId, PullAction, UsageEvent, UsageRecord};
use wap_usage_client::{PageItem, RetryPolicy, StartId, UsageClient};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/spec/fixtures/usage-service/");

/// What a pull-feed consumer does with an item (docs/protocol/usage-service.md §3.3): usage records are always applied.
trait PullItem: PageItem {
    fn pull_action(&self) -> PullAction;
}

impl PullItem for UsageRecord {
    fn pull_action(&self) -> PullAction {
        PullAction::Apply
    }
}

impl<T: serde::de::DeserializeOwned + Send + Sync + 'static> PullItem for UsageEvent<T> {
    fn pull_action(&self) -> PullAction {
        self.state.pull_action()
    }
}

#[derive(Debug, PartialEq)]
struct Outcome {
    processed: Vec<i64>,
    skipped: Vec<i64>,
    next_start: i64,
    caught_up: bool,
}

/// Fetches one page and walks it as the engine does: apply, skip (cursor advances), or hold (cursor stays at the
/// held event).
async fn run<F: Feed>(client: &UsageClient, start: StartId, batch: u32) -> Outcome
where
    F::Item: PullItem,
{
    let page = client.feed::<F>().page(start, batch).await.expect("page");
    let mut out =
        Outcome { processed: vec![], skipped: vec![], next_start: page.next_start.get(), caught_up: page.caught_up };
    let mut cursor = start;
    for item in &page.items {
        match item.pull_action() {
            PullAction::Apply => out.processed.push(item.event_id()),
            PullAction::Skip => out.skipped.push(item.event_id()),
            PullAction::Hold | PullAction::Error => {
                out.next_start = cursor.get();
                return out;
            }
        }
        cursor = client.resume_start(Some(item.event_id()));
    }
    assert_eq!(cursor, page.next_start, "the last item's cursor is the page's next start");
    out
}

#[tokio::test]
async fn request_table() {
    let table: Value = serde_json::from_slice(&std::fs::read(format!("{FIXTURES}requests.json")).unwrap()).unwrap();
    let config = &table["config"];
    let user = config["UsageServiceUsername"].as_str().unwrap();
    let password = config["UsageServicePassword"].as_str().unwrap();
    let default_batch = config["UsageServiceBatchSize"].as_u64().unwrap() as u32;
    let cases = table["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let server = MockServer::start().await;
        let expected = case["expectRequest"].as_str().unwrap();
        let (expected_path, expected_query) = expected.split_once('?').unwrap();
        let body = std::fs::read(format!("{FIXTURES}{}", case["responseFile"].as_str().unwrap())).unwrap();
        let mut mock = Mock::given(method("GET")).and(path(expected_path));
        for kv in expected_query.split('&') {
            let (k, v) = kv.split_once('=').unwrap();
            mock = mock.and(query_param(k, v));
        }
        for (k, v) in table["expectedHeaders"].as_object().unwrap() {
            mock = mock.and(header(k.as_str(), v.as_str().unwrap()));
        }
        mock.respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
            .expect(1)
            .mount(&server)
            .await;

        let batch = case.get("batchSize").and_then(Value::as_u64).map(|b| b as u32).unwrap_or(default_batch);
        let client = UsageClient::builder()
            .base_url(server.uri())
            .credentials(user, password)
            .batch_size(batch)
            .retry_policy(RetryPolicy::disabled())
            .build()
            .unwrap();
        let start = client.resume_start(case["cursor"].as_i64());
        let feed = FeedKind::from_path(expected_path).unwrap_or_else(|| panic!("{name}: unknown path"));
        let outcome = match feed {
            FeedKind::Usage => run::<wap_types::UsageFeed>(&client, start, client.batch_size()).await,
            FeedKind::Plans => run::<wap_types::PlansFeed>(&client, start, client.batch_size()).await,
            FeedKind::Addons => run::<wap_types::AddonsFeed>(&client, start, client.batch_size()).await,
            FeedKind::PlanAddons => run::<wap_types::PlanAddonsFeed>(&client, start, client.batch_size()).await,
            FeedKind::PlanServices => run::<wap_types::PlanServicesFeed>(&client, start, client.batch_size()).await,
            FeedKind::Subscriptions => run::<wap_types::SubscriptionsFeed>(&client, start, client.batch_size()).await,
            FeedKind::SubscriptionAddons => {
                run::<wap_types::SubscriptionAddonsFeed>(&client, start, client.batch_size()).await
            }
        };

        // the exact request line: path and query as written in the table, nothing else
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 1, "{name}");
        let sent = format!("{}?{}", requests[0].url.path(), requests[0].url.query().unwrap_or(""));
        assert_eq!(sent, expected, "{name}");
        assert_eq!(requests[0].headers.get("accept").unwrap(), "application/json", "{name}");

        assert_eq!(outcome.next_start, case["expectNextStartId"].as_i64().unwrap(), "{name}: next startId");
        if let Some(order) = case.get("expectProcessedOrder") {
            let order: Vec<i64> = serde_json::from_value(order.clone()).unwrap();
            assert_eq!(outcome.processed, order, "{name}: processed");
        }
        if let Some(skipped) = case.get("expectSkipped") {
            let skipped: Vec<i64> = serde_json::from_value(skipped.clone()).unwrap();
            assert_eq!(outcome.skipped, skipped, "{name}: skipped");
        }
        if let Some(caught_up) = case.get("expectCaughtUp") {
            assert_eq!(outcome.caught_up, caught_up.as_bool().unwrap(), "{name}: caught up");
        }
        server.verify().await;
    }
}

#[tokio::test]
async fn method_numeric_ordinals_setting() {
    let server = MockServer::start().await;
    let events: Vec<Value> = ["0", "1", "2", "3", "POST"]
        .iter()
        .enumerate()
        .map(|(i, m)| serde_json::json!({"EventId": i + 1, "State": 0, "Method": m, "Entity": {"Id": format!("p{i}")}}))
        .collect();
    Mock::given(path("/billing/plans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(events))
        .mount(&server)
        .await;
    let methods = |numeric: bool| {
        let uri = server.uri();
        async move {
            let client = UsageClient::builder()
                .base_url(uri)
                .credentials("u", "p")
                .setting("MethodNumericOrdinals", if numeric { "true" } else { "false" })
                .build()
                .unwrap();
            let page = client.plans().page(StartId::BEGINNING, 100).await.unwrap();
            page.items.into_iter().map(|e| e.method).collect::<Vec<_>>()
        }
    };
    use wap_types::EventMethod::*;
    assert_eq!(methods(true).await, [Post, Put, Patch, Delete, Post]);
    assert_eq!(methods(false).await, [Post, Other("1".into()), Other("2".into()), Other("3".into()), Post]);
}
