//! The Usage Service over real HTTP with a plain hyper client: paging, auth, parameters, purge, live mode,
//! loaded fixtures, TLS.

mod common;

use common::{get_once, Conn, TEST_TIMEOUT};
use serde_json::Value;
use wap_sim::{DatasetSpec, LiveConfig, WapSim};
use wap_types::{FeedKind, UsageRecord};

async fn small_sim(records: u64) -> WapSim {
    WapSim::builder().seed(11).dataset(DatasetSpec::with_usage_records(records)).start().await.unwrap()
}

/// Pages through one feed: `startId` = highest id + 1 until `[]`. Returns the items in order.
async fn drain(sim: &WapSim, feed: FeedKind, batch: u32) -> Vec<Value> {
    let mut conn = Conn::open(&sim.usage_service_url()).await.unwrap();
    let auth = sim.credentials().header_value();
    let mut start = 0i64;
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let a = conn.get(&format!("{}?startId={start}&batchSize={batch}", feed.path()), Some(&auth)).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "application/json; charset=utf-8");
        let page = a.json();
        let page = page.as_array().expect("a bare JSON array");
        assert!(page.len() <= batch as usize, "page larger than batchSize");
        if page.is_empty() {
            return out;
        }
        let ids: Vec<i64> = page.iter().map(|v| v["EventId"].as_i64().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending ids");
        assert!(ids[0] >= start, "startId is inclusive");
        start = ids[ids.len() - 1] + 1;
        out.extend(page.iter().cloned());
    }
    panic!("feed never ended");
}

#[tokio::test]
async fn paging_covers_every_record_exactly_once_for_every_batch_size() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sim = small_sim(600).await;
        let expected_usage = sim.usage_records();
        assert_eq!(expected_usage.len(), 600);
        let ids = sim.usage_ids();
        assert!(ids.windows(2).any(|w| w[1] - w[0] > 1), "the generated /usage sequence has gaps");
        for batch in [1u32, 7, 100, 10_000] {
            let got = drain(&sim, FeedKind::Usage, batch).await;
            let records: Vec<UsageRecord> = got.iter().map(|v| serde_json::from_value(v.clone()).unwrap()).collect();
            assert_eq!(records, expected_usage, "batch {batch}");
            for feed in FeedKind::EVENT_FEEDS {
                let got = drain(&sim, feed, batch).await;
                assert_eq!(got, sim.events_json(feed), "{feed} batch {batch}");
                assert!(!got.is_empty(), "{feed} has events");
            }
        }
        // The six event feeds share one id sequence: no id appears in two feeds.
        let mut all: Vec<i64> = FeedKind::EVENT_FEEDS.iter().flat_map(|f| sim.event_ids(*f)).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        sim.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn wire_forms_match_wap() {
    let sim = small_sim(50).await;
    let auth = sim.credentials().header_value();
    let a = get_once(&sim.usage_service_url(), "/usage?startId=0&batchSize=3", Some(&auth)).await.unwrap();
    let page = a.json();
    let first = &page[0];
    let start = first["StartTime"].as_str().unwrap();
    assert_eq!(start.len(), 19, "usage dates carry no fraction and no offset: {start}");
    assert!(first["Resources"].as_object().unwrap().values().all(Value::is_string), "meters are strings");
    assert!(first["ExternalRecordId"].is_string());
    let providers: std::collections::BTreeSet<String> =
        sim.usage_records().iter().filter_map(|r| r.provider_name.clone()).collect();
    assert!(providers.len() >= 2, "several providers: {providers:?}");
    let a = get_once(&sim.usage_service_url(), "/billing/subscriptions?startId=0&batchSize=100", Some(&auth))
        .await
        .unwrap();
    let events = a.json();
    let e = &events[0];
    assert_eq!(e["State"], 0);
    assert!(e["Entity"]["SubscriptionID"].is_string(), "capital ID");
    let t = e["NotificationEventTimeCreated"].as_str().unwrap();
    assert_eq!(t.len(), 23, "feed dates carry 3 fraction digits and no offset: {t}");
    let states: Vec<i64> = sim.subscriptions().iter().filter_map(|s| s.state.map(|st| st.code())).collect();
    assert!(states.contains(&2), "some subscriptions are suspended");
    sim.shutdown().await;
}

#[tokio::test]
async fn credentials_are_checked_before_anything_else() {
    let sim = small_sim(10).await;
    let base = sim.usage_service_url();
    let good = sim.credentials().header_value();
    let wrong_password = wap_types::BasicCredentials::new("usagereader", "wrong").header_value();
    let upper_user = wap_types::BasicCredentials::new("USAGEREADER", "Us4ge-Read").header_value();
    for (auth, status) in [
        (None, 401),
        (Some(wrong_password.as_str()), 401),
        (Some("Bearer abc"), 401),
        (Some("Basic !!!"), 401),
        (Some(upper_user.as_str()), 200),
        (Some(good.replacen("Basic", "basic", 1).leak() as &str), 200),
    ] {
        let a = get_once(&base, "/usage?startId=0&batchSize=1", auth).await.unwrap();
        assert_eq!(a.status, status, "{auth:?}");
        if status == 401 {
            let challenge = a.headers["www-authenticate"].to_str().unwrap();
            assert!(challenge.starts_with("Basic realm=\""), "{challenge}");
            assert!(a.json()["Message"].is_string());
        }
    }
    let unknown = get_once(&base, "/nothing/here", None).await.unwrap();
    assert_eq!(unknown.status, 401, "auth comes first");
    let log = sim.request_log();
    assert_eq!(log.iter().filter(|e| !e.authorized).count(), 5);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_paths_methods_and_parameters_get_clear_errors() {
    let sim = WapSim::builder().max_batch_size(50).dataset(DatasetSpec::with_usage_records(200)).start().await.unwrap();
    let base = sim.usage_service_url();
    let auth = sim.credentials().header_value();
    let mut conn = Conn::open(&base).await.unwrap();
    let a = conn.get("/billing/users?startId=0&batchSize=1", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 404);
    assert!(a.json()["Message"].as_str().unwrap().contains("/billing/users"));
    let a = conn.request("POST", "/usage?startId=0&batchSize=1", Some(&auth)).await.unwrap();
    assert_eq!(a.status, 405);
    assert_eq!(a.headers["allow"], "GET");
    for (query, names) in [
        ("startId=abc&batchSize=1", "startId"),
        ("startId=0&batchSize=ten", "batchSize"),
        ("startId=0&batchSize=0", "batchSize"),
        ("startId=0&batchSize=-4", "batchSize"),
        ("startId=9223372036854775808&batchSize=1", "startId"),
    ] {
        let a = conn.get(&format!("/usage?{query}"), Some(&auth)).await.unwrap();
        assert_eq!(a.status, 400, "{query}");
        assert!(a.json()["MessageDetail"].as_str().unwrap().contains(names), "{query}");
    }
    // Cap, defaults, casing, past the end.
    let a = conn.get("/usage?startId=0&batchSize=10000", Some(&auth)).await.unwrap();
    assert_eq!(a.json().as_array().unwrap().len(), 50, "capped at the configured maximum");
    let a = conn.get("/usage", Some(&auth)).await.unwrap();
    assert_eq!(a.json().as_array().unwrap().len(), 50, "default batchSize 100, capped to 50");
    assert_eq!(a.json()[0]["EventId"], sim.usage_ids()[0], "default startId 0");
    let a = conn.get("/Usage/?StartId=0&BatchSize=2", Some(&auth)).await.unwrap();
    assert_eq!(a.json().as_array().unwrap().len(), 2);
    let past = sim.usage_ids().last().unwrap() + 1;
    let a = conn.get(&format!("/usage?startId={past}&batchSize=5"), Some(&auth)).await.unwrap();
    assert_eq!((a.status, a.body.as_ref()), (200, b"[]".as_ref()));
    sim.shutdown().await;
}

#[tokio::test]
async fn purge_drops_old_records_and_a_low_start_id_returns_from_the_oldest() {
    let sim = small_sim(500).await;
    let ids = sim.usage_ids();
    let dropped = sim.purge_before_id(FeedKind::Usage, ids[100]);
    assert_eq!(dropped, 100);
    let auth = sim.credentials().header_value();
    let a = get_once(&sim.usage_service_url(), "/usage?startId=0&batchSize=1", Some(&auth)).await.unwrap();
    assert_eq!(a.json()[0]["EventId"], ids[100]);
    let a = get_once(&sim.usage_service_url(), "/usage?startId=-7&batchSize=1", Some(&auth)).await.unwrap();
    assert_eq!(a.json()[0]["EventId"], ids[100], "negative startId reads from the oldest");
    // Time-based retention: the generated span is 30 days, so keeping 10 days drops about two thirds.
    let before = sim.usage_count();
    let dropped = sim.purge_older_than(10);
    assert!(dropped > before / 2 && dropped < before, "{dropped} of {before}");
    let oldest = sim.usage_records()[0].start_time.to_utc();
    let newest = sim.usage_records().last().unwrap().start_time.to_utc();
    assert!(newest - oldest <= chrono::Duration::days(10));
    sim.shutdown().await;
}

#[tokio::test]
async fn live_mode_keeps_records_and_events_arriving() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sim = small_sim(20).await;
        let before_usage = sim.usage_count();
        let before_events: usize = FeedKind::EVENT_FEEDS.iter().map(|f| sim.event_ids(*f).len()).sum();
        sim.start_live(LiveConfig::new(std::time::Duration::from_millis(10), 5, 2));
        while sim.usage_count() < before_usage + 20 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        sim.stop_live();
        let after_events: usize = FeedKind::EVENT_FEEDS.iter().map(|f| sim.event_ids(*f).len()).sum();
        assert!(after_events > before_events);
        let got = drain(&sim, FeedKind::Usage, 7).await;
        assert_eq!(got.len() as u64, sim.usage_count());
        let range = sim.generate_usage(3);
        assert!(sim.usage_ids().iter().filter(|id| range.contains(id)).count() == 3);
        sim.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn appended_records_get_the_next_ids_and_are_served() {
    let sim = WapSim::builder().empty().start().await.unwrap();
    assert_eq!(sim.usage_count(), 0);
    let rec = UsageRecord {
        event_id: 999,
        subscription_id: "90f94f4c-4679-406a-b6f4-4814d281b3fc".into(),
        start_time: "2015-06-02T08:00:00".parse().unwrap(),
        end_time: "2015-06-02T08:03:00".parse().unwrap(),
        provider_name: Some("mysqlservers".into()),
        resources: [("DatabaseCount", "2")].into_iter().collect(),
        ..Default::default()
    };
    let ids = sim.append_usage(vec![rec.clone(), rec.clone()]);
    assert_eq!(ids, vec![1, 2]);
    let auth = sim.credentials().header_value();
    let a = get_once(&sim.usage_service_url(), "/usage?startId=2&batchSize=10", Some(&auth)).await.unwrap();
    let page: Vec<UsageRecord> = wap_types::json::page_from_slice(&a.body).unwrap();
    assert_eq!(page, vec![UsageRecord { event_id: 2, ..rec }]);
    let a = get_once(&sim.usage_service_url(), "/billing/plans?startId=0&batchSize=10", Some(&auth)).await.unwrap();
    assert_eq!(a.body.as_ref(), b"[]");
    sim.shutdown().await;
}

/// The sim loaded with the usage-service fixtures answers the requests listed in `requests.json` with the
/// records of the response file from `startId` on, up to `batchSize`.
#[tokio::test]
async fn answers_the_fixture_requests_from_loaded_fixture_files() {
    let dir = common::fixtures().join("usage-service");
    let sim = WapSim::builder().load_json_dir(&dir).start().await.unwrap();
    let cases: Value = serde_json::from_slice(&std::fs::read(dir.join("requests.json")).unwrap()).unwrap();
    let expected_auth = cases["expectedHeaders"]["Authorization"].as_str().unwrap();
    assert_eq!(sim.credentials().header_value(), expected_auth, "default credentials are the fixtures'");
    let mut checked = 0;
    for case in cases["cases"].as_array().unwrap() {
        let request = case["expectRequest"].as_str().unwrap();
        let file = case["responseFile"].as_str().unwrap();
        let path = request.split('?').next().unwrap();
        let feed = FeedKind::from_path(path).unwrap();
        let file_items: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        let served = sim.event_ids(feed);
        if file_items.is_empty() || !file_items.iter().all(|v| served.contains(&v["EventId"].as_i64().unwrap())) {
            continue; // a response file the sim does not serve for this feed (unsorted, states)
        }
        let (start, batch) = wap_sim_query(request);
        let mut expected: Vec<Value> =
            file_items.into_iter().filter(|v| v["EventId"].as_i64().unwrap() >= start).collect();
        expected.sort_by_key(|v| v["EventId"].as_i64());
        expected.truncate(batch);
        let a = get_once(&sim.usage_service_url(), request, Some(expected_auth)).await.unwrap();
        assert_eq!(a.status, 200, "{}", case["name"]);
        assert_eq!(a.json(), Value::Array(expected), "{}", case["name"]);
        checked += 1;
    }
    assert!(checked >= 5, "checked {checked} cases");
    // The unknown member of the plans fixture is kept on the wire.
    assert!(sim.events_json(FeedKind::Plans).iter().any(|e| e["Entity"]["MarketingTag"] == "summer-2015"));
    sim.shutdown().await;
}

fn wap_sim_query(request: &str) -> (i64, usize) {
    let q = request.split_once('?').map(|x| x.1).unwrap_or("");
    let mut start = 0;
    let mut batch = 100;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "startId" => start = v.parse().unwrap(),
            "batchSize" => batch = v.parse::<usize>().unwrap().min(10_000),
            _ => {}
        }
    }
    (start, batch)
}

#[cfg(feature = "rustls")]
#[tokio::test]
async fn tls_serves_a_self_signed_certificate_that_can_be_pinned() {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use sha2::Digest;

    #[derive(Debug)]
    struct Pin([u8; 32], Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for Pin {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            let sha: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
            if sha == self.0 {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General("pin mismatch".into()))
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }

    let sim = WapSim::builder().tls(true).dataset(DatasetSpec::with_usage_records(5)).start().await.unwrap();
    let url = sim.usage_service_url();
    assert_eq!(url.scheme(), "https");
    assert!(sim.tls_certificate_pem().unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    let pin = sim.tls_certificate_sha256().unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pin(pin, provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(sim.local_addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/usage?startId=0&batchSize=10")
        .header("Host", url.authority())
        .header("Authorization", sim.credentials().header_value())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    let page: Vec<UsageRecord> = wap_types::json::page_from_slice(&body).unwrap();
    assert_eq!(page, sim.usage_records());
    sim.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_data() {
    let start = chrono::DateTime::parse_from_rfc3339("2015-06-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let spec = DatasetSpec::with_usage_records(300).start_at(start);
    let a = WapSim::builder().seed(5).dataset(spec.clone()).start().await.unwrap();
    let b = WapSim::builder().seed(5).dataset(spec.clone()).start().await.unwrap();
    let c = WapSim::builder().seed(6).dataset(spec).start().await.unwrap();
    assert_eq!(a.usage_records(), b.usage_records());
    assert_eq!(a.events_json(FeedKind::Subscriptions), b.events_json(FeedKind::Subscriptions));
    assert_ne!(a.usage_records(), c.usage_records());
    assert_eq!(a.usage_records()[0].start_time.to_string(), "2015-06-01T00:00:00");
}
