// The fuzzing entry points, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the bounded
// property-based run in `cargo test` (`tests/fuzz_entry_points.rs`). Each function takes arbitrary bytes and
// panics only when an invariant is broken: a parser panicking, a round trip that is not exact, a server answering
// outside its documented statuses.

use wap_types::cursor::{parse_batch_size, LastId};
use wap_types::{
    AdminSubscription, BasicCredentials, EventMethod, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference,
    RpUsageRecord, UsageEvent, UsageRecord, WapDateTime,
};

/// Parses, writes back and parses again: the typed values must be equal.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(first) = wap_types::json::from_slice::<T>(bytes) {
        let written = serde_json::to_vec(&first).expect("a parsed value serializes");
        let again: T = wap_types::json::from_slice(&written)
            .unwrap_or_else(|e| panic!("written form does not parse: {e}\n{}", String::from_utf8_lossy(&written)));
        assert_eq!(first, again, "round trip changed the value");
    }
}

/// Every wire parser of `wap-types`: pages of each feed, single events, approval bodies, RP records, dates,
/// methods, Basic headers, cursors.
pub(crate) fn wire(bytes: &[u8]) {
    round_trip::<Vec<UsageRecord>>(bytes);
    round_trip::<Vec<UsageEvent<Plan>>>(bytes);
    round_trip::<Vec<UsageEvent<PlanAddon>>>(bytes);
    round_trip::<Vec<UsageEvent<PlanAddonReference>>>(bytes);
    round_trip::<Vec<UsageEvent<ResourceProviderReference>>>(bytes);
    round_trip::<Vec<UsageEvent<AdminSubscription>>>(bytes);
    round_trip::<Vec<RpUsageRecord>>(bytes);
    // The single-pass readers must agree with the serde path.
    let single = UsageEvent::<AdminSubscription>::from_slice(bytes);
    let serde = wap_types::json::from_slice::<UsageEvent<AdminSubscription>>(bytes);
    assert_eq!(single.is_ok(), serde.is_ok(), "single-pass and serde readers disagree on acceptance");
    if let (Ok(a), Ok(b)) = (single, serde) {
        assert_eq!(a, b, "single-pass and serde readers disagree on the value");
        assert_eq!(a.raw_entity(), b.raw_entity());
    }
    let _ = UsageEvent::<PlanAddonReference>::try_from_slice(bytes);

    let text = String::from_utf8_lossy(bytes);
    if let Ok(t) = WapDateTime::parse(&text) {
        let written = t.to_string();
        let again = WapDateTime::parse(&written).unwrap_or_else(|e| panic!("{written:?} does not parse: {e}"));
        assert_eq!(again.to_string(), written, "a date is written back exactly");
    }
    let method = EventMethod::parse(&text);
    let _ = method.with_numeric_ordinals();
    if let Some(c) = BasicCredentials::parse_header(&text) {
        let header = c.header_value();
        assert_eq!(BasicCredentials::parse_header(&header).as_ref(), Some(&c), "Basic header round trip");
    }
    for part in text.split('&') {
        let _ = LastId::parse_query(Some(part));
        let _ = parse_batch_size(Some(part), 100);
    }
}

/// An approver that denies everything and counts the decisions asked of it.
#[derive(Debug, Default)]
struct DenyAll(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl wap_responder::SubscriptionApprover for DenyAll {
    type Error = std::convert::Infallible;

    async fn create_subscription(
        &self,
        _: wap_responder::SubscriptionApproval,
    ) -> Result<wap_responder::Decision, Self::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(wap_responder::Decision::deny("fuzz: everything is denied"))
    }
    async fn delete_subscription(
        &self,
        _: wap_responder::SubscriptionApproval,
    ) -> Result<wap_responder::Decision, Self::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(wap_responder::Decision::deny("fuzz: everything is denied"))
    }
    async fn create_subscription_addon(
        &self,
        _: wap_responder::AddOnApproval,
    ) -> Result<wap_responder::Decision, Self::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(wap_responder::Decision::deny("fuzz: everything is denied"))
    }
    async fn delete_subscription_addon(
        &self,
        _: wap_responder::AddOnApproval,
    ) -> Result<wap_responder::Decision, Self::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(wap_responder::Decision::deny("fuzz: everything is denied"))
    }
}

/// The statuses the responder documents.
const RESPONDER_STATUSES: [u16; 9] = [200, 204, 400, 401, 403, 404, 405, 408, 413];

/// Splits fuzz input into a request: byte 0 picks the method and whether the right credentials are sent, then
/// the path up to the first `\n`, header lines (`name: value`) up to an empty line, and the rest as the body.
fn request_from(bytes: &[u8], authorization: &str) -> Option<http::Request<http_body_util::Full<bytes::Bytes>>> {
    let (&control, rest) = bytes.split_first()?;
    const METHODS: [&str; 8] = ["POST", "GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "FUZZ"];
    let method = METHODS[usize::from(control & 7)];
    let mut lines = rest.splitn(2, |&b| b == b'\n');
    let path = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut rest = lines.next().unwrap_or_default();
    let mut builder = http::Request::builder().method(method).uri(format!("/{}", path.trim_start_matches('/')));
    if http::Uri::try_from(format!("/{}", path.trim_start_matches('/'))).is_err() {
        builder = http::Request::builder().method(method).uri("/wap/subscriptions");
    }
    if control & 8 != 0 {
        builder = builder.header("authorization", authorization);
    }
    loop {
        let (line, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        if line.is_empty() || tail.is_empty() {
            break;
        }
        rest = tail;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(&line[..colon]),
                http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
            ) {
                builder = builder.header(name, value);
            }
        }
    }
    builder.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(rest))).ok()
}

/// The responder's request handling through its `tower::Service`: arbitrary method, path, headers and body. Fails
/// when it panics, answers a status it does not document, or approves (204) a call that asked the approver (which
/// denies everything) for a decision.
pub(crate) fn responder(bytes: &[u8]) -> Option<u16> {
    use tower::ServiceExt;
    let credentials = wap_types::BasicCredentials::new("fuzzcaller", "Fuzz-Secret-1");
    let authorization = credentials.header_value();
    let request = request_from(bytes, &authorization)?;
    let approver = std::sync::Arc::new(DenyAll::default());
    let responder = wap_responder::Responder::new(
        approver.clone(),
        wap_responder::ResponderConfig::basic(wap_responder::BasicCredentials::new("fuzzcaller", "Fuzz-Secret-1")),
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let response = runtime.block_on(responder.oneshot(request)).expect("infallible");
    let status = response.status().as_u16();
    assert!(RESPONDER_STATUSES.contains(&status), "undocumented status {status}");
    let asked = approver.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(!(status == 204 && asked > 0), "approved a call the approver denied");
    Some(status)
}

/// The RP usage ledger driven by a sequence of operations read from the input: appends and `/usage` polls with
/// arbitrary `lastID` / `batchSize`. Fails when a record is deleted without having been served, an append's id
/// does not increase, a page's ids do not strictly increase past `lastID`, or one record is served under two ids
/// (unless a `lastID` beyond the issued ids made the ledger renumber, as documented).
pub(crate) fn ledger(bytes: &[u8]) {
    use std::collections::{BTreeMap, BTreeSet};
    use wap_resource_provider::{serve_usage, UsageLedger, UsageQuery, UsageSource};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    runtime.block_on(async {
        let ledger = UsageLedger::in_memory();
        let mut appended = BTreeSet::new();
        let mut served: BTreeMap<String, i64> = BTreeMap::new();
        let mut last_appended = 0i64;
        let mut highest_served = 0i64;
        let mut renumbered = false;
        let mut next_marker = 0u32;
        for op in bytes.chunks(4) {
            let arg = |i: usize| i64::from(*op.get(i).unwrap_or(&0));
            if op[0] & 1 == 0 {
                next_marker += 1;
                let marker = format!("r{next_marker}");
                let record = wap_types::RpUsageRecord {
                    subscription_id: "s".into(),
                    start_time: wap_types::WapDateTime::parse("2015-06-02T08:00:00Z").expect("date"),
                    end_time: wap_types::WapDateTime::parse("2015-06-02T09:00:00Z").expect("date"),
                    resource_id: Some(marker.clone()),
                    ..Default::default()
                };
                let id = ledger.append(record).await.expect("an in-memory append succeeds");
                assert!(id > last_appended, "append ids increase: {id} after {last_appended}");
                last_appended = id;
                appended.insert(marker);
                continue;
            }
            let last_id = match (op[0] >> 1) & 3 {
                0 => highest_served,
                1 => highest_served - arg(1),
                2 => last_appended + arg(1) - 2,
                _ => arg(1) * 256 + arg(2),
            };
            let query = format!("lastID={}&batchSize={}", last_id.max(0), arg(3) % 20);
            let Ok(query) = UsageQuery::parse(Some(&query)) else { continue };
            let Ok(poll) = serve_usage(&ledger, query, 10_000).await else { continue };
            renumbered |= poll.last_id_beyond_issued;
            let ids = poll.page.event_ids();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "page ids strictly increase: {ids:?}");
            if !poll.last_id_beyond_issued {
                if let (Some(first), Some(after)) = (ids.first(), query.last_id.get()) {
                    assert!(*first > after, "a page starts after lastID {after}: {ids:?}");
                }
            }
            for entry in poll.page.entries() {
                let record = entry.record().expect("a stored record reads back");
                let marker = record.resource_id.clone().expect("marker");
                let id = entry.event_id();
                if let Some(before) = served.insert(marker.clone(), id) {
                    assert!(before == id || renumbered, "{marker} served as {before} and then as {id}");
                }
                highest_served = highest_served.max(id);
            }
        }
        // Whatever was never served is still in the ledger.
        let left = ledger.records_after(wap_types::LastId::NONE, 1_000_000).await.expect("read back");
        let mut present: BTreeSet<String> = BTreeSet::new();
        for entry in left.entries() {
            present.insert(entry.record().expect("record").resource_id.expect("marker"));
        }
        for marker in &appended {
            assert!(present.contains(marker) || served.contains_key(marker), "{marker} deleted without being served");
        }
    });
}

/// The statuses the RP server documents (`docs/protocol/resource-provider.md`).
const RP_STATUSES: [u16; 11] = [200, 201, 202, 400, 401, 404, 405, 408, 413, 415, 500];

/// The RP server's request handling ([`wap_resource_provider::RpApp::handle`], its usage endpoint over an
/// in-memory ledger, Basic credentials): arbitrary method, path, headers and body. Fails when it panics or answers
/// a status it does not document.
pub(crate) fn rp_server(bytes: &[u8]) -> Option<u16> {
    use wap_resource_provider::{EndpointAuth, RpServer, UsageLedger};
    let credentials = wap_types::BasicCredentials::new("fuzzrp", "Fuzz-Secret-2");
    let request = request_from(bytes, &credentials.header_value())?;
    let app = RpServer::builder("backup")
        .usage("/usage-base", EndpointAuth::basic(credentials), UsageLedger::in_memory())
        .max_body_bytes(4096)
        .build()
        .expect("a valid RP server");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let status = runtime.block_on(app.handle(request)).status().as_u16();
    assert!(RP_STATUSES.contains(&status), "undocumented status {status}");
    Some(status)
}

/// The statuses the admin endpoint documents.
const ADMIN_STATUSES: [u16; 9] = [200, 400, 401, 404, 405, 408, 409, 413, 503];

/// The adapter's admin endpoint through its `tower::Service` (an adapter without processors over an in-memory
/// SQLite state store, with admin credentials): arbitrary method, path, headers and body. Fails when it panics or
/// answers a status it does not document.
pub(crate) fn admin(bytes: &[u8]) -> Option<u16> {
    use std::sync::OnceLock;
    use tower::ServiceExt;
    static ADMIN: OnceLock<(tokio::runtime::Runtime, wap_billing_engine::AdminService)> = OnceLock::new();
    let credentials = wap_types::BasicCredentials::new("fuzzadmin", "Fuzz-Secret-3");
    let request = request_from(bytes, &credentials.header_value())?;
    let (runtime, service) = ADMIN.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
        let service = runtime.block_on(async {
            let config = wap_billing_engine::EngineConfig::builder()
                .state_database_url("sqlite::memory:")
                .notification_processor_enabled(false)
                .usage_processor_enabled(false)
                .subscription_responder_enabled(false)
                .build()
                .expect("config");
            let adapter = wap_billing_engine::Adapter::builder(config)
                .admin_credentials(credentials.clone())
                .admin_config(wap_billing_engine::AdminConfig::default().max_body_bytes(4096))
                .start()
                .await
                .expect("adapter");
            let service = adapter.admin_service();
            // Kept running for the whole fuzz run.
            std::mem::forget(adapter);
            service
        });
        (runtime, service)
    });
    let response = runtime.block_on(service.clone().oneshot(request)).expect("infallible");
    let status = response.status().as_u16();
    assert!(ADMIN_STATUSES.contains(&status), "undocumented status {status}");
    Some(status)
}
