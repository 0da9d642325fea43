//! The usage collector and the notification caller against small in-test resource providers.

mod common;

use std::sync::{Arc, Mutex};

use common::{Recorded, Reply, TestServer};
use serde_json::Value;
use wap_sim::{CollectorAnomaly, RpRegistration, WapSim};
use wap_types::{BasicCredentials, LastId, RpUsageRecord};

fn rp_record(id: i64) -> RpUsageRecord {
    RpUsageRecord {
        event_id: id,
        resource_id: Some(format!("vault{id}")),
        start_time: "2015-06-02T08:00:00.0000000Z".parse().unwrap(),
        end_time: "2015-06-02T09:00:00.0000000Z".parse().unwrap(),
        service_type: Some("Default".into()),
        subscription_id: "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796".into(),
        resources: [("StoredGB", format!("{id}.5"))].into_iter().collect(),
        ..Default::default()
    }
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    let q = r.path_and_query.split_once('?').map(|x| x.1).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn param(r: &Recorded, name: &str) -> Option<String> {
    query(r).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// An RP that honours `lastID` and `batchSize` over records `1..=n`.
async fn honest_rp(n: i64) -> TestServer {
    TestServer::start(move |r| {
        let last: i64 = param(r, "lastID").filter(|v| !v.is_empty()).map(|v| v.parse().unwrap()).unwrap_or(0);
        let batch: usize = param(r, "batchSize").unwrap().parse().unwrap();
        let page: Vec<RpUsageRecord> = (last + 1..=n).take(batch).map(rp_record).collect();
        Reply::json(200, serde_json::to_vec(&page).unwrap())
    })
    .await
}

fn rp_creds() -> BasicCredentials {
    BasicCredentials::new("rpadmin", "R3source#Key")
}

#[tokio::test]
async fn the_collector_acknowledges_with_last_id_and_stores_records_as_wap_does() {
    let rp = honest_rp(25).await;
    let sim = WapSim::builder().empty().start().await.unwrap();
    sim.register_resource_provider(
        RpRegistration::new("backup").usage(rp.url.clone(), Some(rp_creds())).batch_size(10),
    );
    let report = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!((report.pages, report.records), (4, 25));
    assert_eq!(report.last_id, LastId::new(25));
    assert!(report.anomalies.is_empty());
    let got = rp.received();
    let sent: Vec<(Option<String>, Option<String>)> =
        got.iter().map(|r| (param(r, "lastID"), param(r, "batchSize"))).collect();
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        sent,
        vec![(s(""), s("10")), (s("10"), s("10")), (s("20"), s("10")), (s("25"), s("10"))],
        "empty lastID first, then the last EventId received"
    );
    assert!(got.iter().all(|r| r.path_and_query.starts_with("/usage?")));
    assert_eq!(got[0].header("authorization").unwrap(), rp_creds().header_value());

    let stored = sim.usage_records();
    assert_eq!(stored.len(), 25);
    assert_eq!(stored.iter().map(|r| r.event_id).collect::<Vec<_>>(), report.stored_ids);
    for (i, r) in stored.iter().enumerate() {
        assert_eq!(r.provider_name.as_deref(), Some("backup"));
        assert_eq!(r.external_record_id.as_deref(), Some((i as i64 + 1).to_string().as_str()));
        assert_eq!(r.resources.get("StoredGB").unwrap(), &format!("{}.5", i + 1));
    }
    // Caught up: one call, nothing new.
    let again = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!((again.pages, again.records), (1, 0));
    assert_eq!(param(rp.received().last().unwrap(), "lastID").as_deref(), Some("25"));

    // A collector re-sending an old lastID gets the unacknowledged records again (at-least-once).
    sim.set_collector_last_id("backup", LastId::new(20));
    let resent = sim.collect_usage_once("backup").await.unwrap();
    assert_eq!(resent.records, 5);
    assert_eq!(sim.collector_last_id("backup"), Some(LastId::new(25)));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_oversize_page_is_rejected_and_bad_ids_are_reported() {
    let oversize = TestServer::start(|r| {
        let batch: i64 = param(r, "batchSize").unwrap().parse().unwrap();
        let page: Vec<RpUsageRecord> = (1..=batch + 1).map(rp_record).collect();
        Reply::json(200, serde_json::to_vec(&page).unwrap())
    })
    .await;
    let sim = WapSim::builder().empty().start().await.unwrap();
    sim.register_resource_provider(RpRegistration::new("big").usage(oversize.url.clone(), None).batch_size(5));
    let report = sim.collect_usage_once("big").await.unwrap();
    assert_eq!(report.anomalies, vec![CollectorAnomaly::OversizePage { asked: 5, got: 6 }]);
    assert_eq!(report.records, 0);
    assert_eq!(sim.usage_count(), 0, "nothing stored");
    assert_eq!(sim.collector_last_id("big"), Some(LastId::NONE), "nothing acknowledged");
    assert!(oversize.received()[0].header("authorization").is_none());

    // Duplicates and ids going backwards; then an RP that ignores lastID (no progress).
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let messy = TestServer::start(move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        let ids: Vec<i64> = if *n == 1 { vec![5, 5, 3, 6] } else { vec![6] };
        Reply::json(200, serde_json::to_vec(&ids.into_iter().map(rp_record).collect::<Vec<_>>()).unwrap())
    })
    .await;
    sim.register_resource_provider(RpRegistration::new("messy").usage(messy.url.clone(), None));
    let report = sim.collect_usage_once("messy").await.unwrap();
    assert_eq!(report.records, 2, "5 and 6 stored once each");
    assert_eq!(
        report.anomalies,
        vec![
            CollectorAnomaly::DuplicateId { id: 5 },
            CollectorAnomaly::NonIncreasingId { id: 3, after: Some(5) },
            CollectorAnomaly::NonIncreasingId { id: 6, after: Some(6) },
            CollectorAnomaly::NoProgress { last_id: LastId::new(6) },
        ]
    );
    let providers: Vec<String> = sim.usage_records().iter().filter_map(|r| r.external_record_id.clone()).collect();
    assert_eq!(providers, ["5", "6"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn collector_errors_are_reported_with_context() {
    let failing = TestServer::start(|_| Reply::json(500, "{\"Code\":\"Boom\",\"Message\":\"down\"}")).await;
    let garbage = TestServer::start(|_| Reply::json(200, "[{\"EventId\": \"x\"}]")).await;
    let sim = WapSim::builder().empty().start().await.unwrap();
    assert!(matches!(sim.collect_usage_once("nope").await, Err(wap_sim::SimError::UnknownResourceProvider(_))));
    sim.register_resource_provider(RpRegistration::new("f").usage(failing.url.clone(), None));
    let err = sim.collect_usage_once("f").await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.is_retryable());
    assert!(err.to_string().contains("Boom"), "{err}");
    sim.register_resource_provider(RpRegistration::new("g").usage(garbage.url.clone(), None));
    let err = sim.collect_usage_once("g").await.unwrap_err();
    assert!(err.to_string().contains("EventId"), "names the bad member: {err}");
    sim.register_resource_provider(RpRegistration::new("h"));
    assert!(matches!(sim.collect_usage_once("h").await, Err(wap_sim::SimError::NoEndpoint { .. })));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_background_collector_keeps_polling() {
    let rp = honest_rp(12).await;
    let sim = WapSim::builder().empty().start().await.unwrap();
    sim.register_resource_provider(RpRegistration::new("bg").usage(rp.url.clone(), None).batch_size(5));
    sim.start_collector("bg", std::time::Duration::from_millis(20));
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        while sim.usage_count() < 12 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    sim.stop_collector("bg");
    assert_eq!(sim.usage_count(), 12);
    sim.shutdown().await;
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(common::fixtures().join("resource-provider").join(name)).unwrap()
}

#[tokio::test]
async fn the_eight_notification_calls_carry_wap_headers() {
    let rp = TestServer::start(|r| {
        let f = |n: &str| Reply::json(200, fixture(n));
        match (r.method.as_str(), r.path_and_query.as_str()) {
            ("POST", _) => Reply::json(202, fixture("subscription-create-accepted.json")),
            ("GET", p) if p.ends_with("/usagesummary") => f("usage-summary.json"),
            ("GET", p) if p.ends_with("/defaultquota") => f("default-quota.json"),
            ("GET", _) => f("subscription-get-out-of-sync.json"),
            ("PUT", p) if p.contains("validateOnly=true") => Reply::json(400, fixture("quota-validate-error.json")),
            ("PUT", p) if p.ends_with("/quota") => f("quota-update-result.json"),
            ("PUT", _) => Reply::json(200, r.body.clone()),
            _ => Reply::status(200),
        }
    })
    .await;
    let sim = WapSim::builder().empty().admin_api_base("https://wapadmin01.corp.test:30004").start().await.unwrap();
    sim.register_resource_provider(
        RpRegistration::new("backup").notification(rp.url.join("admin/").unwrap(), Some(rp_creds())),
    );
    let caller = sim.notifications("backup").for_plan("Silverq7k2d9w");
    let create: wap_types::Subscription = serde_json::from_slice(&fixture("subscription-create.json")).unwrap();
    let suspend: wap_types::Subscription =
        serde_json::from_slice(&fixture("subscription-update-suspend.json")).unwrap();
    let quota: wap_types::QuotaUpdateBatch = serde_json::from_slice(&fixture("quota-update-batch.json")).unwrap();
    let id = "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796";

    let r = caller.create_subscription(&create).await.unwrap();
    assert_eq!(r.status, 202);
    assert_eq!(r.json::<wap_types::Subscription>().unwrap().lifecycle_state.map(|s| s.code()), Some(1));
    assert_eq!(caller.get_subscription(id).await.unwrap().status, 200);
    let summary = caller.usage_summary(id).await.unwrap().json::<wap_types::ServiceUsageSummary>().unwrap();
    assert!(summary.retrieved_successfully);
    let r = caller.update_subscription(&suspend).await.unwrap();
    assert_eq!(r.json::<wap_types::Subscription>().unwrap(), suspend);
    assert_eq!(caller.delete_subscription("f7b608be-7ef0-45f6-9fc3-63b524a1e1f4").await.unwrap().status, 200);
    let result = caller.update_quota(&quota).await.unwrap().json::<wap_types::QuotaUpdateResultBatch>().unwrap();
    assert!(result.error.is_some());
    let invalid = caller.validate_quota(&quota).await.unwrap();
    assert_eq!(invalid.status, 400);
    assert!(!invalid.is_success());
    assert!(invalid.json::<wap_types::ResourceProviderError>().unwrap().message.len() > 3);
    let defaults = caller.default_quota().await.unwrap().json::<Vec<wap_types::ServiceQuotaSetting>>().unwrap();
    assert!(!defaults.is_empty());

    // Method and path as in the fixture's requests.json.
    let cases: Value = serde_json::from_slice(&fixture("requests.json")).unwrap();
    let want: Vec<(String, String)> = [
        "Create Subscription",
        "Get Subscription",
        "Get Subscription Usage Summary",
        "Update Subscription (suspend: RP State 1)",
        "Delete Subscription",
        "Update Quota",
        "Validate Quota (valid)",
        "Get Default Quota (x-ms-client-principal-id instead of x-ms-principal-id)",
    ]
    .iter()
    .map(|op| {
        let c = cases["cases"].as_array().unwrap().iter().find(|c| c["operation"] == *op).unwrap();
        (c["method"].as_str().unwrap().to_owned(), c["path"].as_str().unwrap().to_owned())
    })
    .collect();
    let got = rp.received();
    let seen: Vec<(String, String)> = got.iter().map(|r| (r.method.clone(), r.path_and_query.clone())).collect();
    assert_eq!(seen, want);

    let common_headers = &cases["commonHeaders"];
    let session = got[0].header("x-ms-client-session-id").unwrap();
    assert_eq!(session, caller.session_id());
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.header("authorization").unwrap(), common_headers["Authorization"].as_str().unwrap());
        assert_eq!(r.header("accept-language").unwrap(), "en-US");
        assert_eq!(r.header("x-ms-client-session-id").unwrap(), session, "one session per caller");
        let request_id = r.header("x-ms-client-request-id").unwrap();
        let (guid, time) = request_id.split_at(36);
        assert_eq!(guid.len(), 36, "{request_id}");
        assert!(time.starts_with('-') && time.ends_with('Z') && time.contains(' '), "GUID-timestamp: {request_id}");
        let principal = if i == 7 { "x-ms-client-principal-id" } else { "x-ms-principal-id" };
        assert_eq!(r.header(principal).unwrap(), common_headers["x-ms-principal-id"].as_str().unwrap());
        if r.body.is_empty() {
            assert!(r.header("content-type").is_none());
        } else {
            assert_eq!(r.header("content-type").unwrap(), "application/json; charset=utf-8");
        }
    }
    assert!(got[7].header("x-ms-principal-id").is_none());
    let create_case =
        cases["cases"].as_array().unwrap().iter().find(|c| c["operation"] == "Create Subscription").unwrap();
    assert_eq!(got[0].header("referer").unwrap(), create_case["headers"]["Referer"].as_str().unwrap());
    assert_eq!(got[5].header("referer").unwrap(), "https://wapadmin01.corp.test:30004/plans/Silverq7k2d9w/quota");
    let sent: wap_types::Subscription = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(sent, create);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_new_subscription_fans_out_to_every_resource_provider() {
    let a = TestServer::start(|_| Reply::json(201, "{}")).await;
    let b = TestServer::start(|_| Reply::json(201, "{}")).await;
    let sim = WapSim::builder().empty().start().await.unwrap();
    sim.register_resource_provider(RpRegistration::new("a").notification(a.url.clone(), None));
    sim.register_resource_provider(RpRegistration::new("b").notification(b.url.clone(), Some(rp_creds())));
    sim.register_resource_provider(RpRegistration::new("usage-only").usage(b.url.clone(), None));
    let s = wap_types::Subscription { subscription_id: "0f0f".into(), ..Default::default() };
    let results = sim.fan_out_subscription(&s).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|(_, r)| r.as_ref().unwrap().status == 201));
    assert_eq!(a.received()[0].path_and_query, "/subscriptions");
    assert_eq!(b.received().len(), 1);
    assert!(matches!(
        sim.notifications("usage-only").default_quota().await,
        Err(wap_sim::SimError::NoEndpoint { endpoint: "notification", .. })
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_registration_object_gives_endpoints_and_credentials() {
    let reg: wap_types::ResourceProvider = serde_json::from_slice(&fixture("registration.json")).unwrap();
    let r = RpRegistration::from_resource_provider(&reg).unwrap();
    assert_eq!(r.name, reg.name);
    assert_eq!(
        r.usage_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()),
        reg.usage_endpoint.as_ref().map(|e| e.forwarding_address.trim_end_matches('/').to_owned())
    );
    assert!(r.notification_auth.is_some());
    assert!(!format!("{r:?}").contains(reg.notification_endpoint.unwrap().authentication_password.unwrap().expose()));
}
