//! The admin endpoint (`GET /health /status /metrics`, `POST /operator/...`) as a `tower::Service` and as the
//! adapter's own server: health, status and metrics answer from a snapshot (a burst of requests costs the state
//! store nothing), bodies are bounded, operator routes need credentials, and connections past the limit are refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use wap_billing_engine::{
    Adapter, AdminConfig, AdminService, AuditEntry, EngineConfig, EventCommit, FeedCursor, FeedHold, Fence, HaltReason,
    HaltStatus, HaltTarget, IdentityKind, IdentityMapping, InDoubtResolution, Intent, LeaseRecord, ProcessedEvent,
    ProcessorKind, SqliteStore, StateStore, StoreError,
};
use wap_types::{BasicCredentials, FeedKind};

/// A state store that counts every call.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn StateStore>,
    calls: AtomicU64,
}

impl Counting {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl StateStore for Counting {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.schema_version().await
    }
    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.cursor(feed).await
    }
    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.record_poll(feed, at).await
    }
    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.commit(fence, commit).await
    }
    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.processed(feed, from, to).await
    }
    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.set_hold(fence, feed, hold).await
    }
    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.halt(processor).await
    }
    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.set_halt(fence, halt).await
    }
    async fn resume(
        &self,
        p: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.resume(p, expected, actor, at).await
    }
    async fn skip(
        &self,
        p: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.skip(p, expected, actor, reason, at).await
    }
    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.identity(kind, wap_id).await
    }
    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.identity_by_billing_id(kind, billing_id).await
    }
    async fn set_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.set_identity(kind, wap_id, billing_id, actor, at).await
    }
    async fn delete_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_identity(kind, wap_id, actor, at).await
    }
    async fn identities(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.identities(kind).await
    }
    async fn set_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.set_identity_fenced(fence, kind, wap_id, billing_id, at).await
    }
    async fn delete_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_identity_fenced(fence, kind, wap_id, at).await
    }
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.audit_log(limit).await
    }
    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.prune(processed_before, audit_before).await
    }
    async fn try_acquire_lease(
        &self,
        p: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.try_acquire_lease(p, holder, ttl, steal).await
    }
    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.renew_lease(fence, ttl).await
    }
    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.release_lease(fence).await
    }
    async fn lease(&self, p: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.lease(p).await
    }
    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.open_intent(fence, intent).await
    }
    async fn intent(&self, p: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.intent(p).await
    }
    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.commit_intent(fence, commit).await
    }
    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.close_intent(fence).await
    }
    async fn resolve_intent(
        &self,
        p: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.resolve_intent(p, resolution, actor, reason, at).await
    }
}

fn credentials() -> BasicCredentials {
    BasicCredentials::new("operator", "s3cret-admin")
}

/// An adapter with no processor (nothing but the admin endpoint touches the store after start).
async fn start_adapter(store: Arc<Counting>, admin: AdminConfig, listen: bool) -> Adapter {
    let config = EngineConfig::builder()
        .instance_id("admin-test")
        .notification_processor_enabled(false)
        .usage_processor_enabled(false)
        .subscription_responder_enabled(false)
        .build()
        .unwrap();
    let mut builder = Adapter::builder(config).state_store(store).admin_credentials(credentials()).admin_config(admin);
    if listen {
        builder = builder.admin("127.0.0.1:0".parse().unwrap());
    }
    builder.start().await.unwrap()
}

async fn store() -> (tempfile::TempDir, Arc<Counting>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(dir.path().join("state.db")).await.unwrap());
    (dir, Arc::new(Counting { inner, calls: AtomicU64::new(0) }))
}

async fn call(service: &AdminService, method: &str, path: &str, auth: bool, body: &str) -> (u16, Value) {
    let mut request = http::Request::builder().method(method).uri(path);
    if auth {
        request = request.header("authorization", credentials().header_value());
    }
    let request = request.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// Puts a halt on the usage feed, as a processor would.
async fn halt_usage(store: &Counting, event_id: i64) {
    let lease = store
        .try_acquire_lease(ProcessorKind::Usage, "elsewhere", Duration::from_secs(600), false)
        .await
        .unwrap()
        .unwrap();
    let fence = Fence { processor: ProcessorKind::Usage, holder: "elsewhere".into(), generation: lease.generation };
    let halt = HaltStatus {
        processor: ProcessorKind::Usage,
        feed: FeedKind::Usage,
        event_id,
        last_event_id: event_id,
        reason: HaltReason::HandlerFailed,
        error: "billing system refused: 500".into(),
        attempts: 5,
        halted_at: Utc::now(),
    };
    store.set_halt(&fence, &halt).await.unwrap();
}

#[tokio::test]
async fn a_burst_of_health_status_and_metrics_requests_does_not_reach_the_state_store() {
    let (_dir, store) = store().await;
    // A snapshot interval longer than the test: only the first snapshot is taken.
    let adapter =
        start_adapter(Arc::clone(&store), AdminConfig::default().snapshot_interval(Duration::from_secs(3600)), false)
            .await;
    let service = adapter.admin_service();
    let (code, health) = call(&service, "GET", "/health", false, "").await;
    assert_eq!((code, health["status"].as_str()), (200, Some("ok")), "{health}");
    let after_first_snapshot = store.calls();
    assert!(after_first_snapshot > 0, "the snapshot reads the store");

    let mut burst = tokio::task::JoinSet::new();
    for i in 0..300 {
        let service = service.clone();
        burst.spawn(async move {
            let path = ["/health", "/status", "/metrics"][i % 3];
            call(&service, "GET", path, false, "").await.0
        });
    }
    while let Some(code) = burst.join_next().await {
        assert_eq!(code.unwrap(), 200);
    }
    assert_eq!(store.calls(), after_first_snapshot, "300 requests, no store call");
    adapter.shutdown().await;
}

#[tokio::test]
async fn the_snapshot_is_refreshed_on_its_timer_and_after_an_operator_command() {
    let (_dir, store) = store().await;
    let adapter =
        start_adapter(Arc::clone(&store), AdminConfig::default().snapshot_interval(Duration::from_millis(20)), false)
            .await;
    let service = adapter.admin_service();
    assert_eq!(call(&service, "GET", "/health", false, "").await.1["status"], "ok");

    // A halt written by another instance shows once the timer refreshed the snapshot.
    halt_usage(&store, 42).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = call(&service, "GET", "/health", false, "").await;
        if health["status"] == "degraded" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the snapshot was never refreshed: {health}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(adapter);

    // With a timer that never fires again, an operator command refreshes it before answering.
    let (_dir2, store) = self::store().await;
    let adapter =
        start_adapter(Arc::clone(&store), AdminConfig::default().snapshot_interval(Duration::from_secs(3600)), false)
            .await;
    let service = adapter.admin_service();
    halt_usage(&store, 7).await;
    // Taken before or after the halt; either way the operator command's own refresh decides what follows.
    let _ = call(&service, "GET", "/status", false, "").await;
    let (code, answer) =
        call(&service, "POST", "/operator/usage/resume", true, r#"{"actor":"ana","event_id":7}"#).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["cleared"]["event_id"], 7);
    let (_, status) = call(&service, "GET", "/status", false, "").await;
    assert_eq!(status["halted_feeds"], Value::Array(vec![]), "{status}");
    adapter.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_an_error_body_and_bodies_are_bounded() {
    let (_dir, store) = store().await;
    let admin = AdminConfig::default().max_body_bytes(1024).body_read_timeout(Duration::from_millis(300));
    let adapter = start_adapter(Arc::clone(&store), admin, false).await;
    let service = adapter.admin_service();
    let path = "/operator/usage/skip";

    // Credentials before the body.
    let (code, body) = call(&service, "POST", path, false, r#"{"reason":"x"}"#).await;
    assert_eq!(code, 401);
    assert_eq!(body["error"], "admin credentials required");
    // Not JSON, not an object, a wrong member type: 400 naming what was wrong.
    let (code, body) = call(&service, "POST", path, true, "{nope").await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("not JSON"), "{body}");
    assert_eq!(call(&service, "POST", path, true, "[1]").await.0, 400);
    let (code, body) = call(&service, "POST", path, true, r#"{"reason":"x","event_id":"seven"}"#).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("event_id"), "{body}");
    // Too large: declared, and sent as 2,000 one-byte frames (refused once past the limit).
    let (code, body) = call(&service, "POST", path, true, &"x".repeat(2000)).await;
    assert_eq!(code, 413, "{body}");
    let frames = futures_util::stream::iter(
        (0..2000).map(|_| Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b" ")))),
    );
    let request = http::Request::post(path)
        .header("authorization", credentials().header_value())
        .body(StreamBody::new(frames))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 413);
    // A body that never ends: 408 after the body deadline.
    let never = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>();
    let request = http::Request::post(path)
        .header("authorization", credentials().header_value())
        .body(StreamBody::new(never))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 408);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"error\""));
    // Unknown paths and methods.
    assert_eq!(call(&service, "GET", "/nope", false, "").await.0, 404);
    assert_eq!(call(&service, "DELETE", "/health", false, "").await.0, 405);
    adapter.shutdown().await;
}

#[tokio::test]
async fn the_served_endpoint_refuses_connections_past_its_limit() {
    let (_dir, store) = store().await;
    let admin = AdminConfig::default().max_connections(2);
    let adapter = start_adapter(Arc::clone(&store), admin, true).await;
    let addr = adapter.admin_addr().unwrap();
    // Two idle connections fill the limit (the header timeout is 10 s).
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them before the third.
    let mut probe = tokio::net::TcpStream::connect(addr).await.unwrap();
    probe.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    probe.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"error\":\"the admin endpoint is serving its limit of 2 connections"), "{answer}");
    // Closing one frees a place.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut probe = tokio::net::TcpStream::connect(addr).await.unwrap();
        probe.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        probe.read_to_string(&mut answer).await.unwrap();
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    adapter.shutdown().await;
}
