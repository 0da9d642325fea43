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
//! the body, or else the Basic user name. Bodies are limited to 16 KiB (`413`) and 10 s; errors are
//! `{"error": "..."}` with `400`, `404`, `405`, `409` (not halted, or halted on another event than the one
//! named) or `503` (state store).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use wap_types::{BasicCredentials, FeedKind};

use super::report::halt_json;
use super::Shared;
use crate::journal::InDoubtResolution;
use crate::store::{HaltTarget, ProcessorKind, StoreError};

const MAX_BODY: usize = 16 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const REALM: &str = "Basic realm=\"wap-billing-admin\"";

type Reply = Response<Full<Bytes>>;

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

pub(crate) fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    credentials: Option<BasicCredentials>,
) -> std::io::Result<AdminServer> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let credentials = Arc::new(credentials);
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let shared = Arc::clone(&shared);
                        let credentials = Arc::clone(&credentials);
                        let service = hyper::service::service_fn(move |req| {
                            let shared = Arc::clone(&shared);
                            let credentials = Arc::clone(&credentials);
                            async move { Ok::<_, Infallible>(handle(&shared, credentials.as_ref().as_ref(), req).await) }
                        });
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
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
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
        }
        connections.abort_all();
    });
    tracing::info!(%local_addr, "admin endpoint listening (health, status, metrics, operator)");
    Ok(AdminServer { local_addr, stop: Some(stop), task })
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

async fn handle(shared: &Shared, credentials: Option<&BasicCredentials>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["health"] => {
            if req.method() != Method::GET && req.method() != Method::HEAD {
                return method_not_allowed("GET");
            }
            let health = shared.health().await;
            let status = StatusCode::from_u16(health.http_status()).unwrap_or(StatusCode::OK);
            reply(status, &health.to_json())
        }
        ["status"] => {
            if req.method() != Method::GET {
                return method_not_allowed("GET");
            }
            reply(StatusCode::OK, &shared.status().await.to_json())
        }
        ["metrics"] => metrics(shared, &req).await,
        ["operator", rest @ ..] => {
            let Some(credentials) = credentials else {
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
            operator(shared, rest, user, req).await
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    }
}

#[cfg(feature = "metrics")]
async fn metrics(shared: &Shared, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let text = super::metrics::render(&shared.status().await);
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(super::metrics::CONTENT_TYPE));
    r
}

#[cfg(not(feature = "metrics"))]
async fn metrics(_shared: &Shared, _req: &Request<Incoming>) -> Reply {
    error(StatusCode::NOT_FOUND, "metrics are not compiled in (enable the `metrics` feature)")
}

async fn read_json(req: Request<Incoming>) -> Result<Value, Reply> {
    let body = Limited::new(req.into_body(), MAX_BODY);
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
        Err(_) => return Err(error(StatusCode::REQUEST_TIMEOUT, "request body not received in time")),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body larger than {MAX_BODY} bytes")))
        }
        Ok(Err(e)) => return Err(error(StatusCode::BAD_REQUEST, format!("request body unreadable: {e}"))),
        Ok(Ok(collected)) => collected.to_bytes(),
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

async fn operator(shared: &Shared, rest: &[&str], user: String, req: Request<Incoming>) -> Reply {
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
            let body = match read_json(req).await {
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
            let body = match read_json(req).await {
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
