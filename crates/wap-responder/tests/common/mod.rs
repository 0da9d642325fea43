//! Shared helpers: a raw hyper client, raw TCP exchanges, and an approver with the spec's default decisions.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wap_responder::{
    serve, AddOnApproval, Decision, PricingResponder, Responder, ResponderConfig, ResponderServer, ServerConfig,
    SubscriptionApproval, SubscriptionApprover,
};

/// Every network step of a test is bounded by this.
pub const STEP: Duration = Duration::from_secs(20);

pub const USER: &str = "wapcaller";
pub const PASSWORD: &str = "S3cure!pass";

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/spec/fixtures/approval")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn credentials() -> wap_responder::BasicCredentials {
    wap_responder::BasicCredentials::new(USER, PASSWORD)
}

pub fn auth_header() -> String {
    credentials().header_value()
}

/// An approver with the default decisions of docs/protocol/approval-and-pricing.md §3.3: a create needs a mapped plan (and a known or creatable
/// account: always creatable here), an add-on needs a mapped add-on and a known subscription, deletes are
/// approved. Counts its calls and remembers the event ids it was asked about.
#[derive(Debug, Default)]
pub struct CatalogApprover {
    pub mapped_plans: HashSet<String>,
    pub mapped_add_ons: HashSet<String>,
    pub known_subscriptions: HashSet<String>,
    pub calls: AtomicUsize,
    pub asked: Mutex<Vec<i64>>,
}

impl CatalogApprover {
    pub fn new<'a>(
        plans: impl IntoIterator<Item = &'a str>,
        add_ons: impl IntoIterator<Item = &'a str>,
        subscriptions: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let lower = |it: &mut dyn Iterator<Item = &'a str>| it.map(str::to_ascii_lowercase).collect();
        CatalogApprover {
            mapped_plans: lower(&mut plans.into_iter()),
            mapped_add_ons: lower(&mut add_ons.into_iter()),
            known_subscriptions: lower(&mut subscriptions.into_iter()),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn record(&self, event_id: i64) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(event_id);
    }
}

#[async_trait::async_trait]
impl SubscriptionApprover for CatalogApprover {
    type Error = Infallible;

    async fn create_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Infallible> {
        self.record(a.event_id());
        Ok(match a.plan_id() {
            Some(plan) if self.mapped_plans.contains(&plan.to_ascii_lowercase()) => Decision::Approve,
            Some(plan) => Decision::deny(format!("plan {plan} is not mapped to a billing product")),
            None => Decision::deny("no plan"),
        })
    }

    async fn delete_subscription(&self, a: SubscriptionApproval) -> Result<Decision, Infallible> {
        self.record(a.event_id());
        Ok(Decision::Approve)
    }

    async fn create_subscription_addon(&self, a: AddOnApproval) -> Result<Decision, Infallible> {
        self.record(a.event_id());
        if !self.mapped_add_ons.contains(&a.add_on_id().to_ascii_lowercase()) {
            return Ok(Decision::deny(format!("add-on {} is not mapped", a.add_on_id())));
        }
        match a.subscription_id() {
            Some(s) if self.known_subscriptions.contains(&s.to_ascii_lowercase()) => Ok(Decision::Approve),
            _ => Ok(Decision::deny("unknown subscription")),
        }
    }

    async fn delete_subscription_addon(&self, a: AddOnApproval) -> Result<Decision, Infallible> {
        self.record(a.event_id());
        Ok(Decision::Approve)
    }
}

/// Serves a responder on a fresh loopback port.
pub async fn start<A: SubscriptionApprover, P: PricingResponder>(responder: Responder<A, P>) -> ResponderServer {
    start_with(responder, ServerConfig::default()).await
}

pub async fn start_with<A: SubscriptionApprover, P: PricingResponder>(
    responder: Responder<A, P>,
    config: ServerConfig,
) -> ResponderServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve(listener, responder, config).unwrap()
}

pub fn basic_config() -> ResponderConfig {
    ResponderConfig::basic(credentials())
}

/// A response as seen by a raw client.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request over a new connection with hyper's low-level client.
pub async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let stream = tokio::time::timeout(STEP, TcpStream::connect(addr)).await.expect("connect timed out").unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder().method(method).uri(path).header("Host", addr.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let response = tokio::time::timeout(STEP, sender.send_request(request)).await.expect("response timed out").unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(STEP, response.into_body().collect()).await.unwrap().unwrap().to_bytes();
    Answer { status, headers, body }
}

/// An approval POST with the right credentials and WAP's headers.
pub async fn approve(addr: SocketAddr, path: &str, body: &[u8]) -> Answer {
    let auth = auth_header();
    send(addr, "POST", path, &[("Content-Type", "application/json; charset=utf-8"), ("Authorization", &auth)], body)
        .await
}

/// Writes raw bytes and reads until the server closes the connection (or `STEP` passes).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_to_close(&mut stream).await
}

/// Reads everything until the peer closes; panics if it does not within `STEP`.
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `needle` has arrived (within `STEP`).
pub async fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(STEP, async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&out).contains(needle) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{needle:?} did not arrive; got {:?}", String::from_utf8_lossy(&out)));
    String::from_utf8_lossy(&out).into_owned()
}

/// A create-subscription event body.
pub fn create_subscription_body(event_id: i64, subscription_id: &str, plan_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "EventId": event_id, "State": 2, "Method": "POST",
        "Entity": {"SubscriptionID": subscription_id, "AccountAdminLiveEmailId": "ana.ribeiro@fabrikam.test",
                   "PlanId": plan_id, "State": 0, "Created": "0001-01-01T00:00:00"},
        "EntityParentId": null, "NotificationEventTimeCreated": "2015-06-03T10:31:05.4423178Z"
    }))
    .unwrap()
}

/// Shares a value between tests of one file.
pub fn shared<T>(value: T) -> Arc<T> {
    Arc::new(value)
}
