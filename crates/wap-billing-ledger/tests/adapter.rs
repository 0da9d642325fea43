//! The `Adapter` end to end on loopback: a wap-sim Usage Service, the reference ledger, SQLite state, the
//! responder registered with the simulator, and the admin endpoint (health, status, metrics, operator commands)
//! over real HTTP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use wap_billing_engine::responder::{Responder, ResponderConfig, ServerConfig};
use wap_billing_engine::usage_client::UsageClient;
use wap_billing_engine::{
    Adapter, AdapterError, Delivery, ElectionMode, EngineConfig, EngineConfigError, HandlerError, HealthState,
    InDoubtResolution, Intent, Phase, ProcessorKind, Reconciliation, UsageBatch, UsageHandler, UsageLines, UsageShape,
};
use wap_billing_ledger::{AccountStanding, AppendOnlyLedger, SqliteLedger, LEDGER_VERSION};
use wap_sim::{CreateSubscription, DatasetSpec, FaultKind, FaultPlan, NotificationSubscriber, WapSim};
use wap_types::{BasicCredentials, FeedKind, PlanPriceQuery, StringMap, UsageRecord, WapDateTime};

const LIMIT: Duration = Duration::from_secs(60);

fn local() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn config(name: &str) -> wap_billing_engine::EngineConfigBuilder {
    EngineConfig::builder()
        .instance_id(name)
        .election_mode(ElectionMode::SingleInstance)
        .sync_interval(Duration::from_millis(100))
        .retry_sleep(Duration::from_millis(20))
        .wap_retry_initial(Duration::from_millis(10))
        .wap_retry_max(Duration::from_millis(100))
        .batch_size(500)
}

fn client(sim: &WapSim) -> wap_billing_engine::usage_client::UsageClientBuilder {
    UsageClient::builder().base_url(sim.usage_service_url().as_str()).basic_credentials(sim.credentials())
}

fn admin_credentials() -> BasicCredentials {
    BasicCredentials::new("operator", "0per-at0r")
}

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&BasicCredentials>,
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path).header("Host", addr.to_string());
    if let Some(c) = auth {
        req = req.header("Authorization", c.header_value());
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn json(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, _, body) = http(addr, "GET", path, None, "").await;
    (status, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")))
}

/// `GET path` until `done` holds (the admin endpoint answers from a snapshot refreshed every second), bounded.
async fn json_when(addr: std::net::SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let (code, v) = json(addr, path).await;
        if done(&v) || tokio::time::Instant::now() >= deadline {
            return (code, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn feed_json<'a>(status: &'a Value, feed: &str) -> &'a Value {
    status["processors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["feeds"].as_array().unwrap())
        .find(|f| f["feed"] == feed)
        .unwrap_or_else(|| panic!("feed {feed} in {status}"))
}

/// Sums of the simulator's usage per (subscription, provider, meter).
fn expected_totals(records: &[UsageRecord]) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    for r in records {
        for (meter, value) in r.resources.iter() {
            if let Ok(v) = value.trim().parse::<f64>() {
                let key = (
                    r.subscription_id.to_ascii_lowercase(),
                    r.provider_name.clone().unwrap_or_default(),
                    meter.clone(),
                );
                *out.entry(key).or_insert(0.0) += v;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_the_simulator_into_the_ledger_and_reports_it_over_http() {
    let sim = WapSim::builder().seed(11).dataset(DatasetSpec::with_usage_records(3_000)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let state_url = format!("sqlite://{}", dir.path().join("state.db").display());
    let adapter = Adapter::builder(config("sync-1").state_database_url(state_url).build().unwrap())
        .usage_service(client(&sim))
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .admin(local())
        .start()
        .await
        .unwrap();
    let statuses = adapter.wait_caught_up(LIMIT).await.unwrap();
    assert!(statuses.iter().all(|s| s.phase == Phase::CaughtUp), "{statuses:?}");

    // The ledger holds exactly what the simulator served.
    assert_eq!(ledger.usage_event_ids().await.unwrap(), sim.usage_ids());
    for feed in FeedKind::EVENT_FEEDS {
        assert_eq!(ledger.applied_event_ids(feed).await.unwrap(), sim.event_ids(feed), "{feed}");
    }
    let expected = expected_totals(&sim.usage_records());
    let totals = ledger.usage_totals().await.unwrap();
    assert_eq!(totals.len(), expected.len());
    for t in totals {
        let e = expected[&(t.subscription_id.clone(), t.provider.clone(), t.meter.clone())];
        assert!((t.quantity - e).abs() < 1e-6 * e.abs().max(1.0), "{t:?} vs {e}");
    }
    let subscriptions = ledger.subscriptions().await.unwrap();
    assert_eq!(subscriptions.iter().filter(|s| !s.deleted).count(), sim.subscriptions().len());
    let invoices = ledger.invoices().await.unwrap();
    assert_eq!(invoices.len(), subscriptions.len());
    let text = invoices.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    assert!(text.contains("Usage   "), "usage lines printed:\n{text}");

    // Admin endpoint: status with lag 0, leaders, no halts; health ok.
    let admin = adapter.admin_addr().unwrap();
    let last = *sim.usage_ids().last().unwrap();
    let (code, status) = json_when(admin, "/status", |s| feed_json(s, "usage")["committed"] == last).await;
    assert_eq!(code, 200);
    assert_eq!(status["instance_id"], "sync-1");
    assert_eq!(status["catching_up"], false);
    assert_eq!(status["halted_feeds"], Value::Array(vec![]));
    for p in status["processors"].as_array().unwrap() {
        assert_eq!(p["is_leader"], true, "{p}");
        assert_eq!(p["leader"], "sync-1", "{p}");
        assert_eq!(p["phase"], "caught_up", "{p}");
    }
    let usage = feed_json(&status, "usage");
    assert_eq!(usage["committed"], *sim.usage_ids().last().unwrap());
    assert_eq!(usage["lag"], 0);
    // Pages fetched again after `DependencyNotReady` (usage before its subscription was synced) count again.
    assert!(usage["records_fetched"].as_u64().unwrap() >= sim.usage_ids().len() as u64, "{usage}");
    let plans = feed_json(&status, "plans");
    assert_eq!(plans["committed"], *sim.event_ids(FeedKind::Plans).last().unwrap());
    assert_eq!(plans["lag"], 0);
    let (code, health) = json(admin, "/health").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")), "{health}");

    // Prometheus metrics in OpenMetrics text (the test suite enables the `metrics` feature).
    let (code, headers, metrics) = http(admin, "GET", "/metrics", None, "").await;
    assert_eq!(code, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text; version=1.0.0"));
    let last = *sim.usage_ids().last().unwrap();
    assert!(metrics.contains(&format!("wap_billing_feed_committed_event_id{{feed=\"usage\"}} {last}")), "{metrics}");
    assert!(metrics.contains("wap_billing_processor_leader{processor=\"usage\"} 1"), "{metrics}");
    assert!(metrics.contains("wap_billing_processor_phase{processor=\"notification\",phase=\"caught_up\"} 1"));
    assert!(metrics.contains("# TYPE wap_billing_feed_fetches counter"), "{metrics}");
    assert!(metrics.contains("wap_billing_feed_fetches_total{feed=\"usage\"} "), "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");

    // Unknown paths and methods; operator endpoints are off without credentials.
    assert_eq!(http(admin, "GET", "/nope", None, "").await.0, 404);
    let (code, headers, _) = http(admin, "POST", "/status", None, "").await;
    assert_eq!((code, headers["allow"].to_str().unwrap()), (405, "GET"));
    assert_eq!(http(admin, "POST", "/operator/usage/resume", None, "").await.0, 404);

    // A graceful stop releases the leases and answers nothing more.
    let store = Arc::clone(adapter.state_store());
    adapter.shutdown().await;
    for kind in ProcessorKind::ALL {
        assert_eq!(store.lease(kind).await.unwrap().unwrap().holder, None, "{kind} lease released");
    }
    assert!(tokio::net::TcpStream::connect(admin).await.is_err(), "admin endpoint closed");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_purchases_are_approved_or_denied_by_the_ledger_and_then_synced() {
    let sim = WapSim::builder().seed(12).dataset(DatasetSpec::with_usage_records(200)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let wap_caller = BasicCredentials::new("wapcaller", "Appr0ve-me");
    let responder =
        Responder::with_pricing(ledger.approver(), Arc::clone(&ledger), ResponderConfig::basic(wap_caller.clone()));
    let adapter = Adapter::builder(config("tenant-1").build().unwrap())
        .usage_service(client(&sim))
        .state_store(Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap()))
        .billing_system(Arc::clone(&ledger))
        .responder(local(), responder, ServerConfig::default())
        .start()
        .await
        .unwrap();
    let endpoint = adapter.responder_endpoint().unwrap().to_owned();
    sim.register_subscriber(
        NotificationSubscriber::billing("wap-billing", endpoint.parse().unwrap()).with_auth(wap_caller),
    );
    adapter.wait_caught_up(LIMIT).await.unwrap();

    let plan = sim.plans().into_iter().next().unwrap();
    ledger.set_plan_price(&plan.id, 25.0).await.unwrap();
    let price = sim.plan_price(PlanPriceQuery { id: plan.id.clone(), region: None, username: None }).await.unwrap();
    assert!(price.as_str().contains("$25.00 per month"), "{price:?}");

    // Approved: a synced plan, an account in good standing.
    let ok = sim.create_subscription(CreateSubscription::new("alice@contoso.test", plan.id.as_str())).await;
    assert!(ok.is_approved(), "{ok:?}");
    // Denied: an account with an overdue invoice.
    ledger.set_account_standing("mallory@fabrikam.test", AccountStanding::Overdue).await.unwrap();
    let denied = sim.create_subscription(CreateSubscription::new("mallory@fabrikam.test", plan.id.as_str())).await;
    assert!(!denied.is_approved(), "{denied:?}");
    assert_eq!(denied.calls[0].result, wap_sim::CallResult::Status(403));

    adapter.sync(LIMIT).await.unwrap();
    let subs = ledger.subscriptions().await.unwrap();
    let alice = ok.subscription_id.clone().unwrap();
    assert!(subs
        .iter()
        .any(|s| s.id.eq_ignore_ascii_case(&alice) && s.account.as_deref() == Some("alice@contoso.test")));
    assert!(!subs.iter().any(|s| s.account.as_deref() == Some("mallory@fabrikam.test")), "denied = never committed");

    // An add-on bought by the new subscription (synced first, so it is known) is approved and synced too.
    let add_on = sim.add_ons().into_iter().next().unwrap();
    let bought = sim.add_subscription_addon(&alice, &add_on.id).await;
    assert!(bought.is_approved(), "{bought:?}");
    adapter.sync(LIMIT).await.unwrap();
    let invoice = ledger.invoice(&alice).await.unwrap().unwrap();
    assert_eq!(invoice.add_ons.len(), 1, "{invoice}");
    assert_eq!(invoice.plan_price, Some(25.0));
    adapter.shutdown().await;
    sim.shutdown().await;
}

fn bad_record(subscription: &str) -> UsageRecord {
    let mut resources = StringMap::new();
    resources.0.insert("DatabaseCount".into(), "lots".into());
    UsageRecord {
        event_id: 0,
        start_time: WapDateTime::parse("2015-06-02T08:00:00").unwrap(),
        end_time: WapDateTime::parse("2015-06-02T09:00:00").unwrap(),
        provider_name: Some("mysqlservers".into()),
        subscription_id: subscription.into(),
        resources,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_halt_is_reported_and_skipped_through_the_operator_endpoint() {
    let sim = WapSim::builder().seed(13).dataset(DatasetSpec::with_usage_records(300)).start().await.unwrap();
    let subscription = sim.subscriptions()[0].subscription_id.clone();
    let bad = sim.append_usage(vec![bad_record(&subscription)])[0];
    let good = sim.generate_usage(20);
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let adapter = Adapter::builder(config("halt-1").retry_max_attempts(2).build().unwrap())
        .usage_service(client(&sim))
        .state_store(Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap()))
        .billing_system(Arc::clone(&ledger))
        .admin(local())
        .admin_credentials(admin_credentials())
        .start()
        .await
        .unwrap();
    let usage = adapter.processor(ProcessorKind::Usage).unwrap().clone();
    let halted = tokio::time::timeout(LIMIT, usage.wait_for(|s| s.phase == Phase::Halted)).await.unwrap();
    let halt = halted.halt.unwrap();
    assert_eq!((halt.feed, halt.event_id, halt.last_event_id), (FeedKind::Usage, bad, bad), "the record alone");
    assert!(halt.error.contains("not a number"), "{halt}");
    assert_eq!(ledger.usage_count().await.unwrap(), sim.usage_ids().len() as u64 - 21, "all records before it");

    let admin = adapter.admin_addr().unwrap();
    let (_, status) =
        json_when(admin, "/status", |s| s["halted_feeds"].as_array().is_some_and(|h| !h.is_empty())).await;
    let halted_feeds = status["halted_feeds"].as_array().unwrap();
    assert_eq!(halted_feeds.len(), 1, "{status}");
    assert_eq!(halted_feeds[0]["feed"], "usage");
    assert_eq!(halted_feeds[0]["event_id"], bad);
    assert_eq!(halted_feeds[0]["attempts"], 2);
    assert!(feed_json(&status, "usage")["lag"].as_i64().unwrap() >= 20, "records seen but not committed: {status}");
    let (code, health) = json(admin, "/health").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("degraded")), "{health}");
    assert!(health["problems"][0].as_str().unwrap().contains(&format!("usage event {bad}")), "{health}");
    assert_eq!(adapter.health().await.state, HealthState::Degraded);

    // Operator commands: credentials first, then a reason for a skip; resume of a running processor conflicts.
    let path = "/operator/usage/skip";
    let (code, headers, _) = http(admin, "POST", path, None, r#"{"reason":"x"}"#).await;
    assert_eq!(code, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"wap-billing-admin\"");
    let wrong = BasicCredentials::new("operator", "guess");
    assert_eq!(http(admin, "POST", path, Some(&wrong), r#"{"reason":"x"}"#).await.0, 401);
    let creds = admin_credentials();
    let (code, _, body) = http(admin, "POST", path, Some(&creds), "{}").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("reason"), "{body}");
    assert_eq!(http(admin, "POST", path, Some(&creds), "not json").await.0, 400);
    assert_eq!(http(admin, "POST", path, Some(&creds), &"x".repeat(20_000)).await.0, 413);
    assert_eq!(http(admin, "POST", "/operator/nope/skip", Some(&creds), "{}").await.0, 404);
    assert_eq!(http(admin, "GET", path, Some(&creds), "").await.0, 405);
    let (code, _, body) = http(admin, "POST", path, Some(&creds), r#"{"reason":"x","actor":"ana"}"#).await;
    assert_eq!(code, 400, "the halted event must be named: {body}");
    assert!(body.contains("event_id"), "{body}");
    let stale = format!(r#"{{"reason":"x","actor":"ana","event_id":{}}}"#, bad - 1);
    let (code, _, body) = http(admin, "POST", path, Some(&creds), &stale).await;
    assert_eq!(code, 409, "another event than the halted one: {body}");
    let named = format!(r#"{{"reason":"meter unreadable; billed by hand","actor":"ana","event_id":{bad}}}"#);
    let (code, _, body) = http(admin, "POST", path, Some(&creds), &named).await;
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["cleared"]["event_id"], bad);

    // The processor goes on past the skipped record.
    adapter.sync(LIMIT).await.unwrap();
    assert_eq!(ledger.usage_count().await.unwrap(), sim.usage_ids().len() as u64 - 1);
    assert!(!ledger.usage_event_ids().await.unwrap().contains(&bad));
    assert!(ledger.usage_event_ids().await.unwrap().contains(good.end()));
    let (code, _, body) = http(admin, "POST", "/operator/usage/resume", Some(&creds), "").await;
    assert_eq!(code, 409, "not halted: {body}");
    let (code, _, body) = http(admin, "GET", "/operator/audit?limit=5", Some(&creds), "").await;
    assert_eq!(code, 200);
    let audit: Value = serde_json::from_str(&body).unwrap();
    let skip = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "skip").expect("skip audited");
    assert_eq!(skip["actor"], "ana");
    assert_eq!(skip["event_id"], bad);
    assert!(skip["detail"].as_str().unwrap().contains("billed by hand"));
    adapter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wap_side_failures_are_retried_until_they_pass() {
    let faults =
        FaultPlan::seeded(5).rate(0.5).kinds(&[FaultKind::Status500Html, FaultKind::Status503Empty]).max_faults(12);
    let sim = WapSim::builder()
        .seed(14)
        .dataset(DatasetSpec::with_usage_records(1_500))
        .faults(faults)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let adapter = Adapter::builder(config("faults-1").batch_size(100).build().unwrap())
        .usage_service(client(&sim))
        .state_store(Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap()))
        .billing_system(Arc::clone(&ledger))
        .start()
        .await
        .unwrap();
    adapter.wait_caught_up(LIMIT).await.unwrap();
    assert_eq!(ledger.usage_event_ids().await.unwrap(), sim.usage_ids(), "nothing lost or skipped");
    let status = adapter.status().await;
    let errors: u64 = status.processors.iter().flat_map(|p| &p.feeds).map(|f| f.fetch_errors).sum();
    // Every fault the engine saw was counted. A fault can also land on a usage page fetched ahead while the ledger
    // took the previous one and answered "dependency not ready" (subscriptions not synced yet): that fetch is
    // dropped unread, and the page is asked for again in the next cycle.
    assert!(errors > 0 && errors <= sim.fault_stats().total(), "{errors} of {:?}", sim.fault_stats());
    // Every faulted request was retried until the same page was answered.
    let log = sim.request_log();
    for (i, faulted) in log.iter().enumerate().filter(|(_, e)| e.fault.is_some()) {
        assert!(
            log[i + 1..].iter().any(|e| e.path_and_query == faulted.path_and_query && e.status == 200),
            "{} was not fetched again successfully",
            faulted.path_and_query
        );
    }
    adapter.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn start_refuses_an_unexpected_billing_system_version_and_missing_parts() {
    let sim = WapSim::builder().empty().start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let state = format!("sqlite://{}", dir.path().join("state.db").display());
    let strict =
        config("version-1").state_database_url(&state).billing_system_expected_version("5.2.7").build().unwrap();
    let err = Adapter::builder(strict.clone())
        .usage_service(client(&sim))
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AdapterError::Config(EngineConfigError::UnexpectedBillingSystemVersion { found, .. }) if found == LEDGER_VERSION),
        "{err}"
    );
    let err = Adapter::builder(strict).usage_service(client(&sim)).billing_system(Arc::clone(&ledger)).start().await;
    assert!(matches!(err, Err(AdapterError::Config(_))), "a version that is not reported does not match");
    let lax = config("version-2")
        .state_database_url(&state)
        .billing_system_expected_version("5.2.7")
        .allow_unexpected_billing_system_version(true)
        .build()
        .unwrap();
    let adapter = Adapter::builder(lax)
        .usage_service(client(&sim))
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version())
        .start()
        .await
        .expect("AllowUnexpectedBillingSystemVersion lets it run");
    adapter.shutdown().await;

    let err = Adapter::builder(config("missing").state_database_url(&state).build().unwrap())
        .usage_service(client(&sim))
        .usage_handler(ledger.clone())
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no event handler"), "{err}");
    let err = Adapter::builder(config("no-source").state_database_url(&state).build().unwrap())
        .billing_system(Arc::clone(&ledger))
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no Usage Service"), "{err}");
    let err = Adapter::builder(config("bad-url").state_database_url(&state).build().unwrap())
        .usage_service(UsageClient::builder().base_url("not a url").credentials("u", "p"))
        .billing_system(Arc::clone(&ledger))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, AdapterError::UsageClient(_)), "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_the_wrong_type_halts_on_that_record_alone() {
    // A Usage Service page whose second event is JSON but not a plan event (State is not a number).
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("plans.json"),
        r#"[
            {"EventId": 1, "State": 0, "Method": "POST", "Entity": {"Id": "gold", "DisplayName": "Gold"}},
            {"EventId": 2, "State": 0, "Method": "POST", "Entity": {"Id": "silver", "State": "not a number"}},
            {"EventId": 3, "State": 0, "Method": "POST", "Entity": {"Id": "bronze", "DisplayName": "Bronze"}}
        ]"#,
    )
    .unwrap();
    let sim = WapSim::builder().load_json_dir(data.path()).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open(dir.path().join("ledger.db")).await.unwrap());
    let adapter =
        Adapter::builder(config("malformed-1").retry_max_attempts(2).usage_processor_enabled(false).build().unwrap())
            .usage_service(client(&sim))
            .state_store(Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap()))
            .event_handler(ledger.clone())
            .start()
            .await
            .unwrap();
    let events = adapter.processor(ProcessorKind::Notification).unwrap().clone();
    let halted = tokio::time::timeout(LIMIT, events.wait_for(|s| s.phase == Phase::Halted)).await.unwrap();
    let halt = halted.halt.unwrap();
    assert_eq!((halt.feed, halt.event_id, halt.reason.name()), (FeedKind::Plans, 2, "invalid_item"), "{halt}");
    assert!(halt.error.contains(".Entity.State"), "names the bad member: {halt}");
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1], "the record before it applied");
    assert!(adapter.processor(ProcessorKind::Usage).is_none(), "usage processor disabled");

    adapter.skip(ProcessorKind::Notification, "ana", "malformed plan event; recreated by hand").await.unwrap();
    adapter.sync(LIMIT).await.unwrap();
    assert_eq!(ledger.applied_event_ids(FeedKind::Plans).await.unwrap(), vec![1, 3], "the record after it applied");
    adapter.shutdown().await;
    sim.shutdown().await;
}

/// The append-only ledger, but its lines cannot be searched: every reconcile answers `Unknown`.
struct Unsearchable(AppendOnlyLedger);

#[async_trait::async_trait]
impl UsageHandler for Unsearchable {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        self.0.apply_usage(batch).await
    }
    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }
    fn usage_shape(&self) -> UsageShape {
        self.0.usage_shape()
    }
    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        self.0.apply_usage_lines(lines).await
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(Reconciliation::unknown(format!("cannot search the billing API for {}", intent.token)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_doubt_intent_is_resolved_through_the_operator_endpoint() {
    let sim = WapSim::builder().seed(17).dataset(DatasetSpec::with_usage_records(300)).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Every 2nd usage call commits and then fails; the system cannot say whether it holds the call.
    let ledger = AppendOnlyLedger::open(dir.path().join("ledger.db")).unwrap().fail_after_commit_every(2);
    let adapter = Adapter::builder(config("in-doubt-1").batch_size(100).build().unwrap())
        .usage_service(client(&sim))
        .state_store(Arc::new(wap_billing_engine::SqliteStore::open(dir.path().join("state.db")).await.unwrap()))
        .event_handler(Arc::new(ledger.clone()))
        .usage_handler(Arc::new(Unsearchable(ledger.clone())))
        .admin(local())
        .admin_credentials(admin_credentials())
        .start()
        .await
        .unwrap();
    let usage = adapter.processor(ProcessorKind::Usage).unwrap().clone();
    let halted = tokio::time::timeout(LIMIT, usage.wait_for(|s| s.phase == Phase::Halted)).await.unwrap();
    assert!(halted.is_in_doubt(), "{halted:?}");
    let halt = halted.halt.unwrap();
    let calls = ledger.usage_calls().unwrap();
    assert_eq!(calls.len(), 2, "the second call committed, then failed: {calls:?}");
    assert_eq!((halt.event_id, halt.last_event_id), (calls[1].first_event_id, calls[1].last_event_id));
    assert!(halt.error.contains(&calls[1].token), "the halt names the intent: {halt}");

    let admin = adapter.admin_addr().unwrap();
    let (_, status) = json_when(admin, "/status", |s| s["halted_feeds"][0]["reason"] == "in_doubt").await;
    assert_eq!(status["halted_feeds"][0]["reason"], "in_doubt", "{status}");
    let creds = admin_credentials();
    let path = "/operator/usage/resolve";
    assert_eq!(http(admin, "POST", path, None, r#"{"resolution":"applied","reason":"x"}"#).await.0, 401);
    let (code, _, body) = http(admin, "POST", path, Some(&creds), r#"{"reason":"x"}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("resolution"), "{body}");
    let (code, _, body) = http(admin, "POST", path, Some(&creds), r#"{"resolution":"maybe","reason":"x"}"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("maybe"), "{body}");
    assert_eq!(http(admin, "POST", path, Some(&creds), r#"{"resolution":"applied"}"#).await.0, 400);
    assert_eq!(
        http(admin, "POST", "/operator/notification/resolve", Some(&creds), r#"{"resolution":"applied","reason":"x"}"#)
            .await
            .0,
        409
    );
    let (code, _, body) = http(
        admin,
        "POST",
        path,
        Some(&creds),
        r#"{"resolution":"applied","reason":"lines found on invoice 2231","actor":"ana"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["intent"]["token"], calls[1].token.as_str());
    assert_eq!(answer["resolution"], "applied");

    // Every later 2nd call halts in doubt again; resolve each as applied until caught up.
    let mut resolved = 1;
    loop {
        let s = tokio::time::timeout(LIMIT, usage.sync_once()).await.unwrap();
        if s.phase == Phase::CaughtUp {
            break;
        }
        assert!(s.is_in_doubt(), "{s:?}");
        adapter.resolve_in_doubt(ProcessorKind::Usage, InDoubtResolution::Applied, "ana", "found").await.unwrap();
        resolved += 1;
    }
    let calls = ledger.usage_calls().unwrap();
    assert_eq!(calls.iter().map(|c| c.records).sum::<u64>(), sim.usage_ids().len() as u64, "billed exactly once");
    assert_eq!(calls.len() / 2, resolved, "one resolution per failed call");
    let (_, _, body) = http(admin, "GET", "/operator/audit?limit=50", Some(&creds), "").await;
    let audit: Value = serde_json::from_str(&body).unwrap();
    let resolves: Vec<_> = audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "resolve").collect();
    assert_eq!(resolves.len(), resolved);
    assert_eq!(resolves[0]["actor"], "ana");
    assert!(resolves[0]["detail"].as_str().unwrap().contains("invoice 2231"), "{:?}", resolves[0]);
    adapter.shutdown().await;
    sim.shutdown().await;
}
