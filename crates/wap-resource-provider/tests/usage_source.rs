//! Providers with their own store: a `UsageSource` of three primitives gets the spec's `/usage` rules from the
//! SDK (the `usage-queries.json` table again, over HTTP), and a misbehaving source is contained.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use common::{fixture_bytes, fixture_json, send};
use http::Method;
use wap_resource_provider::{
    async_trait, EndpointAuth, RpServer, RunningServer, UsageEntry, UsagePage, UsageSource, UsageSourceError,
};
use wap_types::{LastId, RpUsageRecord};

/// "The provider's own database": records in a map, the highest id kept apart.
#[derive(Debug, Default)]
struct OwnStore {
    rows: Mutex<(i64, BTreeMap<i64, RpUsageRecord>)>,
}

impl OwnStore {
    fn with_ids(ids: impl IntoIterator<Item = i64>) -> Self {
        let page: Vec<RpUsageRecord> = wap_types::json::page_from_slice(&fixture_bytes("usage-page.json")).unwrap();
        let store = OwnStore::default();
        {
            let mut rows = store.rows.lock().unwrap();
            for id in ids {
                rows.1.insert(id, RpUsageRecord { event_id: id, ..page[0].clone() });
                rows.0 = rows.0.max(id);
            }
        }
        store
    }

    fn remaining(&self) -> Vec<i64> {
        self.rows.lock().unwrap().1.keys().copied().collect()
    }
}

#[async_trait]
impl UsageSource for OwnStore {
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError> {
        Ok(self.rows.lock().unwrap().0)
    }

    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError> {
        let mut rows = self.rows.lock().unwrap();
        let keep = rows.1.split_off(&(up_to + 1));
        let removed = rows.1.len() as u64;
        rows.1 = keep;
        Ok(removed)
    }

    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError> {
        let rows = self.rows.lock().unwrap();
        let from = after.get().unwrap_or(0) + 1;
        let records: Vec<RpUsageRecord> = rows.1.range(from..).take(limit).map(|(_, r)| r.clone()).collect();
        UsagePage::from_records(&records).map_err(|e| UsageSourceError::with_source("serialize", false, e))
    }
}

async fn serve(source: impl UsageSource) -> RunningServer {
    RpServer::builder("backup")
        .usage("/", EndpointAuth::none(), source)
        .max_usage_page(3)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

fn ids_of(resp: &common::RawResponse) -> Vec<i64> {
    resp.json().as_array().unwrap().iter().map(|r| r["EventId"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn a_custom_source_gets_the_spec_rules() {
    let spec = fixture_json("usage-queries.json");
    for case in spec["cases"].as_array().unwrap() {
        let store = std::sync::Arc::new(OwnStore::with_ids(23450..=23453));
        let server = RpServer::builder("backup")
            .usage("/", EndpointAuth::none(), store.clone())
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let query = case["query"].as_str().unwrap();
        let resp = send(server.local_addr(), Method::GET, &format!("/usage?{query}"), &[], None).await;
        assert_eq!(resp.status.as_u16() as u64, case["expectStatus"].as_u64().unwrap(), "{query}");
        if resp.status == 200 {
            let want: Vec<i64> =
                case["expectEventIds"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(ids_of(&resp), want, "{query}");
            let acked = case["expectAcknowledgedUpTo"].as_i64();
            let remaining: Vec<i64> = (23450..=23453).filter(|id| acked.is_none_or(|a| *id > a)).collect();
            assert_eq!(store.remaining(), remaining, "{query}");
        } else {
            assert_eq!(store.remaining().len(), 4, "{query}");
            resp.rp_error();
        }
        server.shutdown().await;
    }
    // The server's page cap applies whatever batchSize asks.
    let server = serve(OwnStore::with_ids(1..=10)).await;
    let resp = send(server.local_addr(), Method::GET, "/usage?batchSize=100", &[], None).await;
    assert_eq!(ids_of(&resp), [1, 2, 3]);
    server.shutdown().await;
}

/// A source that answers whatever it was built with, and fails on demand.
struct Misbehaving {
    page: Vec<i64>,
    fail: Option<bool>,
}

#[async_trait]
impl UsageSource for Misbehaving {
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError> {
        Ok(100)
    }
    async fn acknowledge(&self, _: i64) -> Result<u64, UsageSourceError> {
        match self.fail {
            Some(retryable) => Err(UsageSourceError::new("database at /srv/usage is locked", retryable)),
            None => Ok(0),
        }
    }
    async fn records_after(&self, _: LastId, _: usize) -> Result<UsagePage, UsageSourceError> {
        let entries =
            self.page.iter().map(|id| UsageEntry::from_record(&RpUsageRecord { event_id: *id, ..Default::default() }));
        Ok(UsagePage::from_entries(entries.collect::<Result<_, _>>().unwrap()))
    }
}

#[tokio::test]
async fn a_misbehaving_source_is_contained() {
    // Records at or below lastID are dropped, the page is cut to batchSize.
    let server = serve(Misbehaving { page: vec![4, 5, 6, 7, 8], fail: None }).await;
    let resp = send(server.local_addr(), Method::GET, "/usage?lastID=5&batchSize=2", &[], None).await;
    assert_eq!(ids_of(&resp), [6, 7]);
    server.shutdown().await;
    // Out of order or repeated: 500, nothing sent the collector could mis-acknowledge.
    for page in [vec![7, 6], vec![6, 6]] {
        let server = serve(Misbehaving { page, fail: None }).await;
        let resp = send(server.local_addr(), Method::GET, "/usage?lastID=5", &[], None).await;
        assert_eq!(resp.status, 500);
        assert_eq!(resp.rp_error().code, "UsageUnavailable");
        server.shutdown().await;
    }
    // Storage errors: 503 when retryable, 500 otherwise; the details stay in the log.
    for (retryable, status) in [(true, 503), (false, 500)] {
        let server = serve(Misbehaving { page: vec![], fail: Some(retryable) }).await;
        let resp = send(server.local_addr(), Method::GET, "/usage?lastID=5", &[], None).await;
        assert_eq!(resp.status, status);
        let e = resp.rp_error();
        assert!(!e.message.contains("/srv/usage"), "{}", e.message);
        server.shutdown().await;
    }
}
