//! The adapter's small admin HTTP server (hyper, HTTP/1.1):
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /health` | `200` `{"status":"ok"\|"degraded", "catching_up", "problems"}`; `503` when the state store is unreachable or the adapter stops |
//! | `GET /status` | `200` the [`AdapterStatus`](super::AdapterStatus) as JSON |
//! | `GET /metrics` | Prometheus text (feature `metrics`; `404` without it) |
//! | `POST /operator/{notification\|usage}/resume` | operator `resume`; body optional `{"actor": "...", "feed": "...", "event_id": N}` (when `event_id` is given, only the halt on that event is resumed) |
//! | `POST /operator/{notification\|usage}/skip` | operator `skip`; body `{"event_id": N, "feed": "...", "reason": "...", "actor": "..."}` (`event_id` and `reason` required, `feed` required for `notification`): only the halt on that event is skipped |
//! | `POST /operator/{notification\|usage}/resolve` | resolve an in-doubt intent; body `{"resolution": "applied\|send_again\|skip", "reason": "...", "actor": "..."}` (`resolution` and `reason` required) |
//! | `GET /operator/audit?limit=N` | the newest audit entries |
//!
//! The operator paths exist only when admin credentials are configured, and need them (HTTP Basic; checked before
//! the body is read; `401` + `WWW-Authenticate` otherwise). The actor recorded in the audit log is the `actor` of
//! the body, or else the Basic user name. Bodies are read into one buffer bounded by
//! [`AdminConfig::max_body_bytes`] (16 KiB: `413`, also for a larger `Content-Length` before any byte is read)
//! under one deadline for the whole body ([`AdminConfig::body_read_timeout`], 10 s: `408`); errors are
//! `{"error": "..."}` with `400`, `404`, `405`, `408`, `409` (not halted, or halted on another event than the one
//! named), `413` or `503` (state store).
//!
//! `/health`, `/status` and `/metrics` are unauthenticated, so they never reach the state store per request: they
//! answer from a [`AdapterStatus`](super::AdapterStatus) snapshot refreshed every
//! [`AdminConfig::snapshot_interval`] (1 s) by one background task, and right after an operator command succeeds.
//! A flood of them costs the shared state database nothing more.
//!
//! [`AdminService`] is the handler as a `tower::Service` (and a `hyper::service::Service`), to mount in a user's
//! own server ([`Adapter::admin_service`](super::Adapter::admin_service)); [`AdapterBuilder::admin`](super::AdapterBuilder::admin)
//! serves it on its own HTTP/1.1 listener with a header read timeout and a connection limit
//! ([`AdminConfig::max_connections`]; a connection past it gets `503` + `Retry-After: 1` and is closed).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use wap_types::{BasicCredentials, FeedKind};

use super::report::{halt_json, AdapterStatus};
use super::Shared;
use crate::journal::InDoubtResolution;
use crate::store::{HaltTarget, ProcessorKind, StoreError};

const REALM: &str = "Basic realm=\"wap-billing-admin\"";
/// How long a request waits for the first snapshot after the adapter started.
const FIRST_SNAPSHOT_WAIT: Duration = Duration::from_secs(10);

/// Default [`AdminConfig::max_connections`].
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 64;

/// The admin endpoint's limits and snapshot interval (see [`AdapterBuilder::admin_config`](super::AdapterBuilder::admin_config)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Connections served at once; one past it is answered `503` with `Retry-After: 1` and closed (default 64).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (default 10 s); also bounds idle keep-alive.
    pub header_read_timeout: Duration,
    /// Largest request body in bytes (default 16 KiB); more is `413`.
    pub max_body_bytes: usize,
    /// Deadline for a request's whole body (default 10 s); later is `408`.
    pub body_read_timeout: Duration,
    /// How often the status snapshot behind `/health`, `/status` and `/metrics` is refreshed from the state store
    /// (default 1 s).
    pub snapshot_interval: Duration,
    /// How long a shutdown lets requests in flight finish (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 16 * 1024,
            body_read_timeout: Duration::from_secs(10),
            snapshot_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl AdminConfig {
    /// Sets [`AdminConfig::max_connections`] (at least 1).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`AdminConfig::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`AdminConfig::max_body_bytes`].
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets [`AdminConfig::body_read_timeout`].
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets [`AdminConfig::snapshot_interval`] (at least 10 ms).
    pub fn snapshot_interval(mut self, interval: Duration) -> Self {
        self.snapshot_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Sets [`AdminConfig::shutdown_grace`].
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

/// The status snapshot the unauthenticated routes answer from, refreshed by one task (started on first use).
#[derive(Debug)]
pub(crate) struct StatusSnapshot {
    current: watch::Sender<Option<Arc<AdapterStatus>>>,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

impl Default for StatusSnapshot {
    fn default() -> Self {
        StatusSnapshot { current: watch::Sender::new(None), refresher: Mutex::new(None) }
    }
}

impl StatusSnapshot {
    /// Starts the refresher (once): a status every `interval` while the adapter lives.
    pub(crate) fn start(&self, shared: &Arc<Shared>, interval: Duration) {
        let mut refresher = self.refresher.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if refresher.is_some() {
            return;
        }
        let weak: Weak<Shared> = Arc::downgrade(shared);
        *refresher = Some(tokio::spawn(async move {
            loop {
                let Some(shared) = weak.upgrade() else { return };
                let status = shared.status().await;
                shared.admin_snapshot.current.send_replace(Some(Arc::new(status)));
                drop(shared);
                tokio::time::sleep(interval).await;
            }
        }));
    }

    /// Refreshes now (after an operator command, so its effect shows at once).
    async fn refresh(&self, shared: &Shared) {
        let status = shared.status().await;
        self.current.send_replace(Some(Arc::new(status)));
    }

    /// The newest snapshot (waiting for the first one after a start).
    async fn get(&self) -> Option<Arc<AdapterStatus>> {
        let mut rx = self.current.subscribe();
        let current = tokio::time::timeout(FIRST_SNAPSHOT_WAIT, rx.wait_for(Option::is_some)).await;
        match current {
            Ok(Ok(status)) => status.clone(),
            _ => None,
        }
    }

    /// Stops the refresher.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.refresher.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

/// The admin endpoint as a `tower::Service` / `hyper::service::Service`, to mount in your own server (see the module
/// documentation for the routes). Get it from [`Adapter::admin_service`](super::Adapter::admin_service); cheap to
/// clone. Your server provides its own header timeout and connection limit; the service bounds bodies
/// ([`AdminConfig::max_body_bytes`], [`AdminConfig::body_read_timeout`]).
#[derive(Clone)]
pub struct AdminService {
    shared: Arc<Shared>,
    credentials: Arc<Option<BasicCredentials>>,
    config: Arc<AdminConfig>,
}

impl std::fmt::Debug for AdminService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminService")
            .field("instance_id", &self.shared.config.instance_id)
            .field("operator_routes", &self.credentials.is_some())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The response type of [`AdminService`].
pub type AdminResponse = Response<Full<Bytes>>;

/// The future returned by [`AdminService`]'s `call`.
pub type AdminFuture = Pin<Box<dyn Future<Output = Result<AdminResponse, Infallible>> + Send>>;

impl AdminService {
    pub(crate) fn new(shared: Arc<Shared>, credentials: Option<BasicCredentials>, config: AdminConfig) -> Self {
        shared.admin_snapshot.start(&shared, config.snapshot_interval);
        AdminService { shared, credentials: Arc::new(credentials), config: Arc::new(config) }
    }

    /// Answers one request.
    pub async fn handle<B>(&self, request: Request<B>) -> AdminResponse
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        handle(self, request).await
    }
}

impl<B> tower_service::Service<Request<B>> for AdminService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Response = AdminResponse;
    type Error = Infallible;
    type Future = AdminFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        hyper::service::Service::call(self, request)
    }
}

impl<B> hyper::service::Service<Request<B>> for AdminService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Response = AdminResponse;
    type Error = Infallible;
    type Future = AdminFuture;

    fn call(&self, request: Request<B>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move { Ok(handle(&service, request).await) })
    }
}

type Reply = AdminResponse;

/// A running admin server.
#[derive(Debug)]
pub(crate) struct AdminServer {
    pub(crate) local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AdminServer {
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

pub(crate) fn serve(listener: TcpListener, service: AdminService) -> std::io::Result<AdminServer> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let config = Arc::clone(&service.config);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if connections.len() >= config.max_connections.max(1) {
                            tracing::warn!(%peer, limit = config.max_connections, "admin connection refused: at the connection limit");
                            tokio::spawn(refuse_connection(stream, config.max_connections));
                            continue;
                        }
                        let conn = builder.serve_connection(TokioIo::new(stream), service.clone());
                        let conn = graceful.watch(conn);
                        connections.spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "admin connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin server: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(config.shutdown_grace) => {}
        }
        connections.abort_all();
    });
    tracing::info!(%local_addr, "admin endpoint listening (health, status, metrics, operator)");
    Ok(AdminServer { local_addr, stop: Some(stop), task })
}

/// Answers a connection past [`AdminConfig::max_connections`]: `503` with `Retry-After: 1` and a JSON error body,
/// then closes it after reading (and discarding) what the client already sent, so the answer is not lost to a
/// reset. The whole exchange is bounded by one second and 64 KiB.
async fn refuse_connection(mut stream: TcpStream, limit: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body =
        json!({ "error": format!("the admin endpoint is serving its limit of {limit} connections; retry later") })
            .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

fn reply(status: StatusCode, body: &Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Reply {
    reply(status, &json!({ "error": message.into() }))
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed; use {allow}"));
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    r
}

fn store_error(e: &StoreError) -> Reply {
    match e {
        StoreError::NotHalted { .. } | StoreError::NotInDoubt { .. } | StoreError::HaltMismatch { .. } => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn no_snapshot() -> Reply {
    error(StatusCode::SERVICE_UNAVAILABLE, "no status yet: the first snapshot of the state store is not taken")
}

async fn handle<B>(service: &AdminService, req: Request<B>) -> Reply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let shared = &*service.shared;
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["health"] => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return method_not_allowed("GET");
            }
            let Some(status) = shared.admin_snapshot.get().await else { return no_snapshot() };
            let health = status.health(shared.shutting_down.load(std::sync::atomic::Ordering::Relaxed));
            let code = StatusCode::from_u16(health.http_status()).unwrap_or(StatusCode::OK);
            reply(code, &health.to_json())
        }
        ["status"] => {
            if req.method() != Method::GET {
                return method_not_allowed("GET");
            }
            let Some(status) = shared.admin_snapshot.get().await else { return no_snapshot() };
            reply(StatusCode::OK, &status.to_json())
        }
        ["metrics"] => metrics(shared, req.method()).await,
        ["operator", rest @ ..] => {
            let Some(credentials) = service.credentials.as_ref() else {
                return error(
                    StatusCode::NOT_FOUND,
                    "operator endpoints are disabled (no admin credentials configured)",
                );
            };
            let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if !credentials.verify_header(header) {
                let mut r = error(StatusCode::UNAUTHORIZED, "admin credentials required");
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static(REALM));
                return r;
            }
            let user = header.and_then(BasicCredentials::parse_header).map(|c| c.username).unwrap_or_default();
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            let answer = operator(shared, &service.config, &rest, user, req).await;
            if answer.status().is_success() && rest.last() != Some(&"audit") {
                shared.admin_snapshot.refresh(shared).await;
            }
            answer
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    }
}

#[cfg(feature = "metrics")]
async fn metrics(shared: &Shared, method: &Method) -> Reply {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let Some(status) = shared.admin_snapshot.get().await else { return no_snapshot() };
    let text = super::metrics::render(&status);
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(super::metrics::CONTENT_TYPE));
    r
}

#[cfg(not(feature = "metrics"))]
async fn metrics(_shared: &Shared, _method: &Method) -> Reply {
    error(StatusCode::NOT_FOUND, "metrics are not compiled in (enable the `metrics` feature)")
}

async fn read_json<B>(config: &AdminConfig, req: Request<B>) -> Result<Value, Reply>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let limit = config.max_body_bytes;
    let too_large = || error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {limit} bytes"));
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // One buffer bounded by the limit whatever the chunking, under one deadline for the whole body.
    let body = wap_types::body::read_bounded(req.into_body(), limit);
    let bytes = match tokio::time::timeout(config.body_read_timeout, body).await {
        Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
        Ok(Err(wap_types::body::BodyReadError::TooLarge { .. })) => return Err(too_large()),
        Ok(Err(e)) => return Err(error(StatusCode::BAD_REQUEST, format!("request body unreadable: {e}"))),
        Ok(Ok(read)) => read.into_bytes(),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    match wap_types::json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(error(StatusCode::BAD_REQUEST, "request body must be a JSON object")),
        Err(e) => Err(error(StatusCode::BAD_REQUEST, format!("request body is not JSON: {e}"))),
    }
}

/// A string member of the body (`None` when absent, `null` or blank); the error names the member.
fn text_member(body: &Value, name: &str) -> Result<Option<String>, String> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

/// The event an operator command names: `event_id` and `feed` (the usage processor's feed is implied).
fn halt_target(body: &Value, kind: ProcessorKind) -> Result<Option<HaltTarget>, String> {
    let event_id = match body.get("event_id") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_i64().ok_or("`event_id` must be an integer")?,
    };
    let feed = match text_member(body, "feed")? {
        Some(name) => FeedKind::from_name(&name).ok_or_else(|| format!("`feed`: unknown feed {name:?}"))?,
        None if kind == ProcessorKind::Usage => FeedKind::Usage,
        None => return Err("`feed` is required with `event_id` for the notification processor".to_owned()),
    };
    if ProcessorKind::for_feed(feed) != kind {
        return Err(format!("`feed`: {feed} does not belong to the {kind} processor"));
    }
    Ok(Some(HaltTarget { feed, event_id }))
}

async fn operator<B>(shared: &Shared, config: &AdminConfig, rest: &[&str], user: String, req: Request<B>) -> Reply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    match rest {
        ["audit"] => {
            if req.method() != Method::GET {
                return method_not_allowed("GET");
            }
            let limit = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("limit=")))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(100)
                .min(10_000);
            match shared.operator.audit_log(limit).await {
                Ok(entries) => {
                    let entries: Vec<Value> = entries
                        .iter()
                        .map(|e| {
                            json!({
                                "id": e.id,
                                "at": e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                                "actor": e.actor,
                                "action": e.action.name(),
                                "processor": e.processor.map(|p| p.name()),
                                "feed": e.feed.map(|f| f.name()),
                                "event_id": e.event_id,
                                "detail": e.detail,
                            })
                        })
                        .collect();
                    reply(StatusCode::OK, &json!({ "entries": entries }))
                }
                Err(e) => store_error(&e),
            }
        }
        [processor, command @ ("resume" | "skip")] => {
            let Some(kind) = ProcessorKind::from_name(processor) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("unknown processor {processor:?} (notification or usage)"),
                );
            };
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let command = *command;
            let body = match read_json(config, req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let actor = match text_member(&body, "actor") {
                Ok(a) => a.unwrap_or(user),
                Err(m) => return error(StatusCode::BAD_REQUEST, m),
            };
            let target = match halt_target(&body, kind) {
                Ok(t) => t,
                Err(m) => return error(StatusCode::BAD_REQUEST, m),
            };
            let result = if command == "resume" {
                shared.resume(kind, target, &actor).await
            } else {
                let reason = match text_member(&body, "reason") {
                    Ok(Some(r)) => r,
                    Ok(None) => return error(StatusCode::BAD_REQUEST, "`reason` is required to skip an event"),
                    Err(m) => return error(StatusCode::BAD_REQUEST, m),
                };
                let Some(target) = target else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "`event_id` (and for the notification processor `feed`) is required to skip: name the \
                         halted event",
                    );
                };
                shared.skip(kind, Some(target), &actor, &reason).await
            };
            match result {
                Ok(halt) => {
                    reply(StatusCode::OK, &json!({ "command": command, "actor": actor, "cleared": halt_json(&halt) }))
                }
                Err(e) => store_error(&e),
            }
        }
        [processor, "resolve"] => {
            let Some(kind) = ProcessorKind::from_name(processor) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("unknown processor {processor:?} (notification or usage)"),
                );
            };
            if req.method() != Method::POST {
                return method_not_allowed("POST");
            }
            let body = match read_json(config, req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let actor = match text_member(&body, "actor") {
                Ok(a) => a.unwrap_or(user),
                Err(m) => return error(StatusCode::BAD_REQUEST, m),
            };
            let resolution = match text_member(&body, "resolution") {
                Ok(Some(r)) => match InDoubtResolution::from_name(&r) {
                    Some(r) => r,
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("`resolution` {r:?} is not one of applied, send_again, skip"),
                        )
                    }
                },
                Ok(None) => {
                    return error(StatusCode::BAD_REQUEST, "`resolution` is required (applied, send_again or skip)")
                }
                Err(m) => return error(StatusCode::BAD_REQUEST, m),
            };
            let reason = match text_member(&body, "reason") {
                Ok(Some(r)) => r,
                Ok(None) => return error(StatusCode::BAD_REQUEST, "`reason` is required to resolve an intent"),
                Err(m) => return error(StatusCode::BAD_REQUEST, m),
            };
            match shared.resolve_in_doubt(kind, resolution, &actor, &reason).await {
                Ok(intent) => reply(
                    StatusCode::OK,
                    &json!({
                        "command": "resolve",
                        "resolution": resolution.name(),
                        "actor": actor,
                        "intent": {
                            "feed": intent.feed.name(),
                            "first_event_id": intent.first_event_id,
                            "last_event_id": intent.last_event_id,
                            "records": intent.records,
                            "operation": intent.operation,
                            "token": intent.token,
                            "generation": intent.generation,
                        },
                    }),
                ),
                Err(e) => store_error(&e),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "unknown operator command"),
    }
}
