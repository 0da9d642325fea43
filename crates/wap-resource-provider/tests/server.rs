//! The server over real HTTP: auth per endpoint, bad input (404/405/413/400/415/408), slow clients, strict
//! principal mode, panics, mounted routes, tracing and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::{send, RawResponse};
use http::{Method, Response};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wap_resource_provider::{
    CallContext, CreateOutcome, DeleteOutcome, EndpointAuth, MountPrefix, MountedRequest, NotificationError,
    NotificationHandler, RpServer, RunningServer, StaticBearerToken, UpdateOutcome, UsageLedger,
};
use wap_types::rp::{LifecycleState, QuotaUpdateBatch, QuotaUpdateResultBatch, Subscription};
use wap_types::{BasicCredentials, OrEmpty, ResourceProviderError};

/// A handler whose behaviour depends on the subscription id.
#[derive(Debug, Clone, Default)]
struct Probe {
    calls: Arc<AtomicUsize>,
    quota_calls: Arc<AtomicUsize>,
    deleted: Arc<Mutex<Vec<String>>>,
    principals: Arc<Mutex<Vec<Option<String>>>>,
}

#[async_trait]
impl NotificationHandler for Probe {
    async fn create_subscription(
        &self,
        ctx: &CallContext,
        subscription: Subscription,
    ) -> Result<CreateOutcome, NotificationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.principals.lock().unwrap().push(ctx.principal_id().map(|p| p.decoded().to_owned()));
        match subscription.subscription_id.as_str() {
            "panic" => panic!("handler bug"),
            "slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(CreateOutcome::Created(subscription))
            }
            "boom" => Err(NotificationError::unavailable(ResourceProviderError::new("StorageDown", "try later"))),
            "taken" => Err(NotificationError::conflict(ResourceProviderError::new("NameTaken", "taken"))),
            _ => Ok(CreateOutcome::Created(subscription)),
        }
    }

    async fn get_subscription(&self, _: &CallContext, id: &str) -> Result<Option<Subscription>, NotificationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok((id == "known").then(|| Subscription { subscription_id: id.into(), ..Default::default() }))
    }

    async fn update_subscription(
        &self,
        _: &CallContext,
        subscription: Subscription,
    ) -> Result<UpdateOutcome, NotificationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(match subscription.subscription_id.as_str() {
            "known" => UpdateOutcome::Updated(subscription),
            "async" => UpdateOutcome::Accepted(subscription),
            _ => UpdateOutcome::NotFound,
        })
    }

    async fn delete_subscription(&self, _: &CallContext, id: &str) -> Result<DeleteOutcome, NotificationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.deleted.lock().unwrap().push(id.to_owned());
        Ok(DeleteOutcome::Deleted)
    }

    async fn update_quota(
        &self,
        _: &CallContext,
        batch: QuotaUpdateBatch,
    ) -> Result<QuotaUpdateResultBatch, NotificationError> {
        self.quota_calls.fetch_add(1, Ordering::SeqCst);
        // Reports only the first id; the server must report the others failed.
        let first = batch.subscription_ids_to_update.or_empty().first().cloned();
        Ok(QuotaUpdateResultBatch { updated_subscription_ids: first.map(|f| vec![f]), ..Default::default() })
    }
}

fn notif_creds() -> BasicCredentials {
    BasicCredentials::new("rpadmin", "N0tify-Secret")
}

fn usage_creds() -> BasicCredentials {
    BasicCredentials::new("collector", "Us4ge-Secret")
}

async fn start(probe: Probe, configure: impl FnOnce(RpServer) -> RpServer) -> RunningServer {
    let builder = RpServer::builder("backup")
        .notification("/admin", EndpointAuth::basic(notif_creds()), probe)
        .usage("/", EndpointAuth::basic(usage_creds()), UsageLedger::in_memory())
        .max_body_bytes(1024)
        .header_read_timeout(Duration::from_millis(400))
        .body_read_timeout(Duration::from_millis(400));
    configure(builder).bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

async fn call(server: &RunningServer, method: Method, path: &str, body: Option<&str>) -> RawResponse {
    let auth = notif_creds().header_value();
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json; charset=utf-8"),
        ("x-ms-principal-id", "corp%5cwapadmin"),
    ];
    send(server.local_addr(), method, path, &headers, body.map(|b| b.as_bytes().to_vec())).await
}

#[tokio::test]
async fn each_endpoint_checks_its_own_credentials() {
    let server = start(Probe::default(), |b| b).await;
    let addr = server.local_addr();
    let n = notif_creds().header_value();
    let u = usage_creds().header_value();
    // Right credentials on the right endpoint.
    assert_eq!(send(addr, Method::GET, "/usage", &[("authorization", &u)], None).await.status, 200);
    assert_eq!(send(addr, Method::GET, "/admin/defaultquota", &[("authorization", &n)], None).await.status, 200);
    // User names ignore case, the scheme too.
    let upper = n.replacen("Basic", "BASIC", 1);
    assert_eq!(send(addr, Method::GET, "/admin/defaultquota", &[("authorization", &upper)], None).await.status, 200);
    let other_case = BasicCredentials::new("RPADMIN", "N0tify-Secret").header_value();
    assert_eq!(
        send(addr, Method::GET, "/admin/defaultquota", &[("authorization", &other_case)], None).await.status,
        200
    );
    // Crossed credentials, none, a wrong password case, Bearer where not configured: 401 + challenge + body.
    for (path, header) in [
        ("/usage", Some(n.clone())),
        ("/admin/defaultquota", Some(u.clone())),
        ("/admin/defaultquota", None),
        ("/admin/defaultquota", Some(BasicCredentials::new("rpadmin", "n0tify-secret").header_value())),
        ("/usage", Some("Bearer abc".to_owned())),
        ("/usage", Some("Basic !!!not-base64".to_owned())),
    ] {
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
        let resp = send(addr, Method::GET, path, &headers, None).await;
        assert_eq!(resp.status, 401, "{path} {header:?}");
        let challenge = resp.headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Basic realm=\"backup\""), "{challenge}");
        assert_eq!(resp.rp_error().code, "Unauthorized");
        let body = String::from_utf8_lossy(&resp.body);
        assert!(!body.contains("Secret"), "{body}");
    }
    server.shutdown().await;

    // Bearer is accepted only where configured; mode None accepts anything.
    let server = RpServer::builder("backup")
        .usage(
            "/meter",
            EndpointAuth::basic(usage_creds()).with_bearer(StaticBearerToken::new("t0ken")),
            UsageLedger::in_memory(),
        )
        .notification("/", EndpointAuth::none(), Probe::default())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_eq!(send(addr, Method::GET, "/meter/usage", &[("authorization", "Bearer t0ken")], None).await.status, 200);
    let resp = send(addr, Method::GET, "/meter/usage", &[("authorization", "Bearer t0kem")], None).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.headers.get_all("www-authenticate").iter().count(), 2);
    assert_eq!(send(addr, Method::GET, "/defaultquota", &[], None).await.status, 200);
    assert_eq!(send(addr, Method::GET, "/usage", &[], None).await.status, 404, "usage lives under /meter/");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_wrong_methods_and_bad_queries() {
    let server = start(Probe::default(), |b| b).await;
    let resp = call(&server, Method::GET, "/admin/plans", None).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.rp_error().code, "NotFound");
    assert_eq!(call(&server, Method::GET, "/nothing/here", None).await.status, 404);
    assert_eq!(call(&server, Method::GET, "/admin/subscriptions/x/y", None).await.status, 404);

    let resp = call(&server, Method::GET, "/admin/quota", None).await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.headers.get("allow").unwrap(), "PUT");
    assert_eq!(resp.rp_error().code, "MethodNotAllowed");
    let resp = call(&server, Method::PATCH, "/admin/subscriptions/known", None).await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.headers.get("allow").unwrap(), "GET, PUT, DELETE");
    let u = usage_creds().header_value();
    let resp = send(server.local_addr(), Method::POST, "/usage", &[("authorization", &u)], None).await;
    assert_eq!(resp.status, 405);
    resp.rp_error();
    let resp = send(server.local_addr(), Method::GET, "/usage?lastID=1.5", &[("authorization", &u)], None).await;
    assert_eq!(resp.status, 400);
    assert!(resp.rp_error().message.contains("lastID"));
    let resp = send(server.local_addr(), Method::GET, "/usage?lastID=1&lastid=2", &[("authorization", &u)], None).await;
    assert_eq!(resp.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_name_what_is_wrong() {
    let probe = Probe::default();
    let server = start(probe.clone(), |b| b).await;
    let cases = [
        (r#"{"SubscriptionId": 5}"#, "SubscriptionId"),
        (r#"{"SubscriptionId":"a","QuotaSettings":[{"Key":"k","Value":"1"},{"Value":"2"}]}"#, "QuotaSettings[1]"),
        (r#"{"SubscriptionName":"no id"}"#, "SubscriptionId"),
        (r#"{"SubscriptionId":"a","State":"#, "EOF"),
        (r#"[1,2]"#, "Subscription"),
        ("   ", "empty"),
        ("{\"SubscriptionId\":\"a\"} trailing", "trailing"),
    ];
    for (body, needle) in cases {
        let resp = call(&server, Method::POST, "/admin/subscriptions", Some(body)).await;
        assert_eq!(resp.status, 400, "{body}");
        let e = resp.rp_error();
        assert_eq!(e.code, "InvalidRequestBody");
        assert!(e.message.contains(needle), "{body}: {}", e.message);
    }
    let resp = call(&server, Method::PUT, "/admin/quota", Some(r#"{"BaseQuota":[{"Key":1}]}"#)).await;
    assert_eq!(resp.status, 400);
    assert!(resp.rp_error().message.contains("BaseQuota[0].Key"));
    // Not JSON at all.
    let auth = notif_creds().header_value();
    let resp = send(
        server.local_addr(),
        Method::POST,
        "/admin/subscriptions",
        &[("authorization", &auth), ("content-type", "application/xml")],
        Some(b"<Subscription/>".to_vec()),
    )
    .await;
    assert_eq!(resp.status, 415);
    resp.rp_error();
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0, "no bad request reached the handler");
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_declared_or_streamed() {
    let server = start(Probe::default(), |b| b).await;
    let big = format!(r#"{{"SubscriptionId":"a","SubscriptionName":"{}"}}"#, "x".repeat(4096));
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(&big)).await;
    assert_eq!(resp.status, 413);
    assert_eq!(resp.rp_error().code, "PayloadTooLarge");
    // Chunked, no Content-Length: the limit applies while reading.
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let auth = notif_creds().header_value();
    let head = format!(
        "POST /admin/subscriptions HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..8 {
        let chunk = "y".repeat(256);
        stream.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes()).await.unwrap();
    }
    let text = read_response(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PayloadTooLarge"), "{text}");
    server.shutdown().await;
}

/// Reads what the server sends until it closes the connection (bounded).
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await.expect("server closes");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let server = start(Probe::default(), |b| b).await;
    // A body that never completes: 408 with an error body, then the connection closes.
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let auth = notif_creds().header_value();
    let head = format!(
        "POST /admin/subscriptions HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-length: 100\r\n\r\n{{\"Sub"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let text = read_response(&mut stream).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("RequestTimeout"), "{text}");
    // Headers that never complete: the connection is closed.
    let mut stream = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(b"GET /usage HTTP/1.1\r\nhost: x\r\nx-slow: ").await.unwrap();
    let text = read_response(&mut stream).await;
    assert!(!text.contains("200 OK"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn subscription_routes_and_outcomes() {
    let probe = Probe::default();
    let server = start(probe.clone(), |b| b).await;
    // Synchronous create: 201 with LifecycleState 0 filled in.
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(r#"{"SubscriptionId":"s1","State":0}"#)).await;
    assert_eq!(resp.status, 201);
    assert_eq!(resp.json()["LifecycleState"], 0);
    // Handler errors keep their status and body.
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(r#"{"SubscriptionId":"boom"}"#)).await;
    assert_eq!(resp.status, 503);
    assert_eq!(resp.rp_error(), ResourceProviderError::new("StorageDown", "try later"));
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(r#"{"SubscriptionId":"taken"}"#)).await;
    assert_eq!(resp.status, 409);
    // Get/Update of an unknown id: 404 + SubscriptionNotFound.
    let resp = call(&server, Method::GET, "/admin/subscriptions/nope", None).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.rp_error().code, "SubscriptionNotFound");
    assert_eq!(call(&server, Method::GET, "/admin/Subscriptions/known/", None).await.status, 200);
    let resp = call(&server, Method::PUT, "/admin/subscriptions/nope", Some(r#"{"SubscriptionId":"nope"}"#)).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.rp_error().code, "SubscriptionNotFound");
    // Update: path id and body id must agree (ignoring case); 202 with LifecycleState 2 when asynchronous.
    let resp = call(&server, Method::PUT, "/admin/subscriptions/known", Some(r#"{"SubscriptionId":"other"}"#)).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.rp_error().code, "SubscriptionIdMismatch");
    let resp = call(&server, Method::PUT, "/admin/subscriptions/KNOWN", Some(r#"{"SubscriptionId":"known"}"#)).await;
    assert_eq!(resp.status, 200);
    let resp = call(&server, Method::PUT, "/admin/subscriptions", Some(r#"{"SubscriptionId":"async"}"#)).await;
    assert_eq!(resp.status, 202);
    assert_eq!(resp.json()["LifecycleState"], LifecycleState::Updating.code());
    // Delete with the id in the path, in a body object, or as a JSON string.
    assert_eq!(call(&server, Method::DELETE, "/admin/subscriptions/d1", None).await.status, 200);
    assert_eq!(
        call(&server, Method::DELETE, "/admin/subscriptions", Some(r#"{"SubscriptionID":"d2"}"#)).await.status,
        200
    );
    assert_eq!(call(&server, Method::DELETE, "/admin/subscriptions", Some(r#""d3""#)).await.status, 200);
    assert_eq!(call(&server, Method::DELETE, "/admin/subscriptions", None).await.status, 400);
    assert_eq!(*probe.deleted.lock().unwrap(), ["d1", "d2", "d3"]);
    // Usage summary default: 200, not retrieved, named after the provider.
    let resp = call(&server, Method::GET, "/admin/subscriptions/known/usagesummary", None).await;
    assert_eq!(resp.status, 200);
    let summary = resp.json();
    assert_eq!(
        (summary["ServiceName"].as_str(), summary["RetrievedSuccessfully"].as_bool()),
        (Some("backup"), Some(false))
    );
    // Default quota default: [].
    assert_eq!(call(&server, Method::GET, "/admin/defaultquota", None).await.json(), serde_json::json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn quota_updates_are_completed_by_the_server() {
    let probe = Probe::default();
    let server = start(probe.clone(), |b| b).await;
    for body in [r#"{"BaseQuota":[]}"#, r#"{"SubscriptionIdsToUpdate":null}"#, r#"{"SubscriptionIdsToUpdate":[]}"#] {
        let resp = call(&server, Method::PUT, "/admin/quota", Some(body)).await;
        assert_eq!(resp.status, 200, "{body}");
        assert_eq!(
            resp.json(),
            serde_json::json!({"UpdatedSubscriptionIds": [], "FailedSubscriptionIds": [], "Error": null})
        );
    }
    assert_eq!(probe.quota_calls.load(Ordering::SeqCst), 0, "empty batches never reach the handler");
    let resp = call(
        &server,
        Method::PUT,
        "/admin/quota?validateOnly=false",
        Some(r#"{"SubscriptionIdsToUpdate":["a","b","c"]}"#),
    )
    .await;
    assert_eq!(resp.status, 200);
    let v = resp.json();
    assert_eq!(v["UpdatedSubscriptionIds"], serde_json::json!(["a"]));
    assert_eq!(v["FailedSubscriptionIds"], serde_json::json!(["b", "c"]));
    assert_eq!(v["Error"]["Code"], "QuotaUpdateFailed");
    // validateOnly in any case; the default validation accepts.
    let resp = call(&server, Method::PUT, "/admin/quota?VALIDATEONLY=TRUE", Some(r#"{"BaseQuota":[]}"#)).await;
    assert_eq!((resp.status.as_u16(), resp.body.len()), (200, 0));
    assert_eq!(probe.quota_calls.load(Ordering::SeqCst), 1, "validation is not an update");
    server.shutdown().await;
}

#[tokio::test]
async fn principal_id_is_tolerated_unless_strict_mode_is_on() {
    let probe = Probe::default();
    let server = start(probe.clone(), |b| b).await;
    let auth = notif_creds().header_value();
    let body = br#"{"SubscriptionId":"p1"}"#.to_vec();
    let resp = send(
        server.local_addr(),
        Method::POST,
        "/admin/subscriptions",
        &[("authorization", &auth)],
        Some(body.clone()),
    )
    .await;
    assert_eq!(resp.status, 201, "the spec tolerates a missing x-ms-principal-id");
    assert_eq!(*probe.principals.lock().unwrap(), [None]);
    server.shutdown().await;

    let probe = Probe::default();
    let server = start(probe.clone(), |b| b.require_principal_id(true)).await;
    let addr = server.local_addr();
    let resp = send(addr, Method::POST, "/admin/subscriptions", &[("authorization", &auth)], Some(body.clone())).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.rp_error().code, "MissingPrincipalId");
    assert_eq!(probe.calls.load(Ordering::SeqCst), 0);
    // Get Default Quota is exempt; the alias counts.
    assert_eq!(send(addr, Method::GET, "/admin/defaultquota", &[("authorization", &auth)], None).await.status, 200);
    let headers = [("authorization", auth.as_str()), ("x-ms-client-principal-id", "corp%5cops")];
    assert_eq!(send(addr, Method::POST, "/admin/subscriptions", &headers, Some(body)).await.status, 201);
    assert_eq!(*probe.principals.lock().unwrap(), [Some("corp\\ops".to_owned())]);
    let u = usage_creds().header_value();
    assert_eq!(send(addr, Method::GET, "/usage", &[("authorization", &u)], None).await.status, 400);
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_lives_on() {
    let server = start(Probe::default(), |b| b).await;
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(r#"{"SubscriptionId":"panic"}"#)).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.rp_error().code, "InternalError");
    let resp = call(&server, Method::POST, "/admin/subscriptions", Some(r#"{"SubscriptionId":"fine"}"#)).await;
    assert_eq!(resp.status, 201);
    server.shutdown().await;
}

#[tokio::test]
async fn mounted_routes_sit_behind_their_own_auth_and_limits() {
    let tenant_creds = BasicCredentials::new("tenantapi", "T3nant-Secret");
    let service = tower::service_fn(|req: MountedRequest| async move {
        let ctx = req.extensions().get::<CallContext>().cloned().expect("context");
        let prefix = req.extensions().get::<MountPrefix>().cloned().expect("prefix");
        let path = req.uri().path().to_owned();
        if path.ends_with("/missing") {
            return Ok::<_, std::convert::Infallible>(
                Response::builder().status(404).body(Full::new(Bytes::new())).unwrap(),
            );
        }
        if path.ends_with("/fail") {
            return Ok(Response::builder().status(502).body(Full::new(Bytes::from_static(b"upstream"))).unwrap());
        }
        let body = serde_json::json!({
            "path": path,
            "prefix": prefix.0,
            "principal": ctx.principal_id().map(|p| p.decoded().to_owned()),
            "bodyLength": http_body_util::BodyExt::collect(req.into_body()).await.unwrap().to_bytes().len(),
        });
        Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
    });
    let server =
        start(Probe::default(), |b| b.mount("/subscriptions", EndpointAuth::basic(tenant_creds.clone()), service))
            .await;
    let addr = server.local_addr();
    let t = tenant_creds.header_value();
    let headers = [("authorization", t.as_str()), ("x-ms-principal-id", "ana%40fabrikam.test")];
    let resp = send(addr, Method::POST, "/subscriptions/s1/vaults", &headers, Some(b"{\"a\":1}".to_vec())).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json(),
        serde_json::json!({"path": "/subscriptions/s1/vaults", "prefix": "/subscriptions/", "principal": "ana@fabrikam.test", "bodyLength": 7})
    );
    // The notification credentials do not open the tenant routes.
    let n = notif_creds().header_value();
    assert_eq!(send(addr, Method::GET, "/subscriptions/s1/vaults", &[("authorization", &n)], None).await.status, 401);
    // An empty error from the provider's route gets the contract's body; a non-empty one is kept.
    let resp = send(addr, Method::GET, "/subscriptions/s1/missing", &headers, None).await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.rp_error().code, "NotFound");
    let resp = send(addr, Method::GET, "/subscriptions/s1/fail", &headers, None).await;
    assert_eq!((resp.status.as_u16(), &resp.body[..]), (502, &b"upstream"[..]));
    // Limits apply to mounted routes too.
    let resp = send(addr, Method::POST, "/subscriptions/s1/vaults", &headers, Some(vec![b'x'; 4096])).await;
    assert_eq!(resp.status, 413);
    server.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let probe = Probe::default();
    let server = start(probe.clone(), |b| b).await;
    let addr = server.local_addr();
    let auth = notif_creds().header_value();
    let in_flight = tokio::spawn(async move {
        send(
            addr,
            Method::POST,
            "/admin/subscriptions",
            &[("authorization", &auth)],
            Some(br#"{"SubscriptionId":"slow"}"#.to_vec()),
        )
        .await
    });
    // Shut down once the request is inside the handler (which takes 300 ms).
    tokio::time::timeout(Duration::from_secs(10), async {
        while probe.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request reaches the handler");
    tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await.expect("shutdown completes");
    let resp = in_flight.await.unwrap();
    assert_eq!(resp.status, 201, "the request in flight completed");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Collects every span field and event of the test into one string.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut s = self.0.lock().unwrap();
        s.push_str(&format!("span {} ", attrs.metadata().name()));
        attrs.record(&mut Fields(&mut s));
        s.push('\n');
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut s = self.0.lock().unwrap();
        event.record(&mut Fields(&mut s));
        s.push('\n');
    }
}

#[tokio::test]
async fn request_and_session_ids_reach_the_spans_and_credentials_never_do() {
    use tracing_subscriber::layer::SubscriberExt;
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = start(Probe::default(), |b| b).await;
    let auth = notif_creds().header_value();
    let wrong = BasicCredentials::new("rpadmin", "Wr0ng-Guess").header_value();
    let addr = server.local_addr();
    let ids = [("x-ms-client-request-id", "req-42 2015-06-02 08:14:09Z"), ("x-ms-client-session-id", "sess-7")];
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend(ids);
    assert_eq!(send(addr, Method::GET, "/admin/defaultquota", &headers, None).await.status, 200);
    headers[0] = ("authorization", wrong.as_str());
    assert_eq!(send(addr, Method::GET, "/admin/defaultquota", &headers, None).await.status, 401);
    server.shutdown().await;
    let log = capture.0.lock().unwrap().clone();
    assert!(log.contains("request_id=req-42 2015-06-02 08:14:09Z"), "{log}");
    assert!(log.contains("session_id=sess-7"), "{log}");
    assert!(log.contains("status=401"), "{log}");
    for secret in ["N0tify-Secret", "Wr0ng-Guess", auth.as_str(), wrong.as_str()] {
        assert!(!log.contains(secret), "{secret} leaked into\n{log}");
    }
}
