//! [`RpApp`]: the request handler behind the server (routing, auth, limits, dispatch).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use tracing::Instrument;
use wap_types::rp::{LifecycleState, QuotaUpdateBatch, Subscription};
use wap_types::{same_id, OrEmpty, ResourceProviderError};

use super::respond::{self, closing, code_for, error};
use super::routes::{is_usage, strip_base, NotificationPath};
use super::{BoxError, ResponseBody};
use crate::auth::{AuthFailure, EndpointAuth};
use crate::context::{CallContext, REQUEST_ID_HEADER, SESSION_ID_HEADER};
use crate::handler::{CreateOutcome, DeleteOutcome, NotificationError, NotificationHandler, UpdateOutcome};
use crate::usage::{serve_usage_with, GapHoldBack, UsageQuery, UsageSource};

/// A response that ends the request early (boxed: responses are large).
type Rejection = Box<Response<ResponseBody>>;

/// The future of a mounted service call.
type MountFuture = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, BoxError>> + Send>>;

/// A type-erased mounted service.
pub(crate) type MountFn = Arc<dyn Fn(Request<Full<Bytes>>) -> MountFuture + Send + Sync>;

/// Wraps a tower service for mounting.
pub(crate) fn mount_fn<S, B>(service: S) -> MountFn
where
    S: tower_service::Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Arc::new(move |req| {
        let svc = service.clone();
        Box::pin(async move {
            let resp = tower::ServiceExt::oneshot(svc, req).await.map_err(Into::into)?;
            Ok(resp.map(|b| b.map_err(Into::into).boxed_unsync()))
        })
    })
}

/// The prefix under which a mounted service matched, inserted into its request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPrefix(pub String);

pub(crate) struct NotificationEndpoint {
    pub(crate) base: String,
    pub(crate) auth: EndpointAuth,
    pub(crate) handler: Arc<dyn NotificationHandler>,
}

pub(crate) struct UsageEndpoint {
    pub(crate) base: String,
    pub(crate) auth: EndpointAuth,
    pub(crate) source: Arc<dyn UsageSource>,
    /// Holds back records after young gaps in ids (sources without visibility in id order).
    pub(crate) gaps: GapHoldBack,
}

pub(crate) struct Mount {
    /// Normalized, with a trailing `/`.
    pub(crate) prefix: String,
    pub(crate) auth: EndpointAuth,
    pub(crate) service: MountFn,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_usage_page: usize,
}

pub(crate) struct AppInner {
    pub(crate) provider_name: Arc<str>,
    pub(crate) notification: Option<NotificationEndpoint>,
    pub(crate) usage: Option<UsageEndpoint>,
    /// Longest prefix first.
    pub(crate) mounts: Vec<Mount>,
    pub(crate) limits: Limits,
    pub(crate) require_principal_id: bool,
}

/// The resource provider's HTTP application: routes a request to the notification handler, the usage source or
/// a mounted service, after authentication and limits. [`RpServer`](crate::RpServer) serves it; call
/// [`RpApp::handle`] to embed it in another server.
#[derive(Clone)]
pub struct RpApp {
    pub(crate) inner: Arc<AppInner>,
}

impl std::fmt::Debug for RpApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpApp")
            .field("provider_name", &self.inner.provider_name)
            .field("notification_base", &self.inner.notification.as_ref().map(|n| &n.base))
            .field("usage_base", &self.inner.usage.as_ref().map(|u| &u.base))
            .field("mounts", &self.inner.mounts.iter().map(|m| &m.prefix).collect::<Vec<_>>())
            .finish()
    }
}

enum Route<'a> {
    Notification(&'a NotificationEndpoint, NotificationPath),
    Usage(&'a UsageEndpoint),
    Mount(&'a Mount),
}

/// A header value fit for a log line: at most 128 characters, control characters dropped.
fn loggable(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(128).collect())
        .unwrap_or_default()
}

impl RpApp {
    /// The provider's name.
    pub fn provider_name(&self) -> &str {
        &self.inner.provider_name
    }

    /// Handles one request. Never fails: every problem is a 4xx/5xx with a `ResourceProviderError` body; a
    /// panicking handler answers 500.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let span = tracing::info_span!(
            "rp_request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %loggable(req.headers(), REQUEST_ID_HEADER),
            session_id = %loggable(req.headers(), SESSION_ID_HEADER),
            endpoint = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let started = Instant::now();
        let this = self.clone();
        async move {
            let response = match AssertUnwindSafe(this.route_and_handle(req)).catch_unwind().await {
                Ok(r) => r,
                Err(_) => {
                    tracing::error!("request handler panicked");
                    error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The resource provider failed.")
                }
            };
            let status = response.status().as_u16();
            tracing::Span::current().record("status", status);
            let elapsed_ms = started.elapsed().as_millis() as u64;
            if status >= 500 {
                tracing::warn!(status, elapsed_ms, "answered");
            } else {
                tracing::info!(status, elapsed_ms, "answered");
            }
            response
        }
        .instrument(span)
        .await
    }

    fn route(&self, path: &str) -> Option<Route<'_>> {
        let inner = &*self.inner;
        if let Some(u) = &inner.usage {
            if strip_base(path, &u.base).is_some_and(is_usage) {
                return Some(Route::Usage(u));
            }
        }
        if let Some(n) = &inner.notification {
            if let Some(p) = strip_base(path, &n.base).and_then(NotificationPath::parse) {
                return Some(Route::Notification(n, p));
            }
        }
        inner.mounts.iter().find(|m| strip_base(path, &m.prefix).is_some()).map(Route::Mount)
    }

    async fn route_and_handle<B>(&self, req: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let path = req.uri().path().to_owned();
        let Some(route) = self.route(&path) else {
            return error(StatusCode::NOT_FOUND, "NotFound", format!("No resource at {}.", truncate(&path, 200)));
        };
        let (name, auth) = match &route {
            Route::Notification(n, _) => ("notification", &n.auth),
            Route::Usage(u) => ("usage", &u.auth),
            Route::Mount(m) => ("mounted", &m.auth),
        };
        tracing::Span::current().record("endpoint", name);
        let header = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Err(why) = auth.check(header) {
            tracing::warn!(reason = ?why, "authentication failed");
            let message = match why {
                AuthFailure::Missing => "Authentication is required.",
                AuthFailure::Rejected => "The credentials are not valid for this endpoint.",
            };
            let mut r = error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
            for challenge in auth.challenges(&self.inner.provider_name) {
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    r.headers_mut().append(WWW_AUTHENTICATE, v);
                }
            }
            return r;
        }
        let ctx = CallContext::from_headers(Arc::clone(&self.inner.provider_name), req.headers());
        match route {
            Route::Notification(n, p) => {
                if !p.allowed().contains(req.method()) {
                    return method_not_allowed(p.allowed());
                }
                if let Some(r) = self.check_principal(&ctx, &p) {
                    return r;
                }
                let (parts, body) = req.into_parts();
                let body = if matches!(parts.method, Method::POST | Method::PUT | Method::DELETE) {
                    match self.read_body(&parts, body).await {
                        Ok(b) => b,
                        Err(r) => return *r,
                    }
                } else {
                    Bytes::new()
                };
                self.notification(n, &ctx, p, &parts, body).await
            }
            Route::Usage(u) => {
                if req.method() != Method::GET {
                    return method_not_allowed(&[Method::GET]);
                }
                if self.inner.require_principal_id && ctx.principal_id().is_none() {
                    return missing_principal();
                }
                self.usage(u, req.uri().query()).await
            }
            Route::Mount(m) => {
                let (mut parts, body) = req.into_parts();
                let body = match self.read_body(&parts, body).await {
                    Ok(b) => b,
                    Err(r) => return *r,
                };
                parts.extensions.insert(ctx);
                parts.extensions.insert(MountPrefix(m.prefix.clone()));
                mounted(m, Request::from_parts(parts, Full::new(body))).await
            }
        }
    }

    fn check_principal(&self, ctx: &CallContext, p: &NotificationPath) -> Option<Response<ResponseBody>> {
        let required = self.inner.require_principal_id && !matches!(p, NotificationPath::DefaultQuota);
        (required && ctx.principal_id().is_none()).then(missing_principal)
    }

    /// Reads a request body under the size and time limits.
    async fn read_body<B>(&self, parts: &Parts, body: B) -> Result<Bytes, Rejection>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let limits = self.inner.limits;
        let too_large = || {
            Box::new(closing(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                format!("The request body exceeds {} bytes.", limits.max_body_bytes),
            )))
        };
        let declared =
            parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
            return Err(too_large());
        }
        // One buffer bounded by the limit whatever the chunking (frames are copied and dropped), under one
        // deadline for the whole body.
        let read = wap_types::body::read_bounded(body, limits.max_body_bytes);
        match tokio::time::timeout(limits.body_read_timeout, read).await {
            Err(_) => Err(Box::new(closing(error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!("The request body did not arrive within {} ms.", limits.body_read_timeout.as_millis()),
            )))),
            Ok(Err(wap_types::body::BodyReadError::TooLarge { .. })) => Err(too_large()),
            Ok(Err(e)) => Err(Box::new(closing(error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                truncate(&format!("The request body could not be read: {e}"), 240),
            )))),
            Ok(Ok(read)) => Ok(read.into_bytes()),
        }
    }

    async fn usage(&self, u: &UsageEndpoint, query: Option<&str>) -> Response<ResponseBody> {
        let q = match UsageQuery::parse(query) {
            Ok(q) => q,
            Err(e) => return error(StatusCode::BAD_REQUEST, "InvalidUsageQuery", e.to_string()),
        };
        match serve_usage_with(&*u.source, q, self.inner.limits.max_usage_page, &u.gaps).await {
            Ok(poll) => {
                tracing::debug!(last_id = %q.last_id, batch_size = q.batch_size, records = poll.page.len(), "usage page");
                respond::json_text(StatusCode::OK, poll.page.to_json())
            }
            Err(e) => {
                tracing::error!(error = %e, "usage source failed");
                let status =
                    if e.is_retryable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
                error(status, "UsageUnavailable", "Usage records could not be read; retry later.")
            }
        }
    }

    async fn notification(
        &self,
        n: &NotificationEndpoint,
        ctx: &CallContext,
        path: NotificationPath,
        parts: &Parts,
        body: Bytes,
    ) -> Response<ResponseBody> {
        let h = &*n.handler;
        let result = match (&parts.method, path) {
            (&Method::POST, NotificationPath::Subscriptions) => {
                match parse_json::<Subscription>(parts, &body, "Subscription") {
                    Ok(sub) => h.create_subscription(ctx, sub).await.map(created),
                    Err(r) => return *r,
                }
            }
            (&Method::GET, NotificationPath::Subscription(id)) => h.get_subscription(ctx, &id).await.map(|s| match s {
                Some(s) => respond::json(StatusCode::OK, &s),
                None => subscription_not_found(&id),
            }),
            (&Method::PUT, NotificationPath::Subscriptions) => {
                match parse_json::<Subscription>(parts, &body, "Subscription") {
                    Ok(sub) => update(h, ctx, sub).await,
                    Err(r) => return *r,
                }
            }
            (&Method::PUT, NotificationPath::Subscription(id)) => {
                match parse_json::<Subscription>(parts, &body, "Subscription") {
                    Ok(sub) if !same_id(&sub.subscription_id, &id) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "SubscriptionIdMismatch",
                            format!(
                                "The path names subscription {} but the body names {}.",
                                truncate(&id, 100),
                                truncate(&sub.subscription_id, 100)
                            ),
                        )
                    }
                    Ok(sub) => update(h, ctx, sub).await,
                    Err(r) => return *r,
                }
            }
            (&Method::DELETE, NotificationPath::Subscription(id)) => h.delete_subscription(ctx, &id).await.map(deleted),
            (&Method::DELETE, NotificationPath::Subscriptions) => match id_from_body(&body) {
                Ok(id) => h.delete_subscription(ctx, &id).await.map(deleted),
                Err(r) => return *r,
            },
            (&Method::GET, NotificationPath::UsageSummary(id)) => h.usage_summary(ctx, &id).await.map(|s| match s {
                Some(s) => respond::json(StatusCode::OK, &s),
                None => subscription_not_found(&id),
            }),
            (&Method::PUT, NotificationPath::Quota) => {
                let batch = match parse_json::<QuotaUpdateBatch>(parts, &body, "QuotaUpdateBatch") {
                    Ok(b) => b,
                    Err(r) => return *r,
                };
                if is_validate_only(parts.uri.query()) {
                    h.validate_quota(ctx, batch).await.map(|()| respond::empty(StatusCode::OK))
                } else {
                    update_quota(h, ctx, batch).await
                }
            }
            (&Method::GET, NotificationPath::DefaultQuota) => {
                h.default_quota(ctx).await.map(|q| respond::json(StatusCode::OK, &q))
            }
            (_, p) => return method_not_allowed(p.allowed()),
        };
        result.unwrap_or_else(|e| handler_error(&e))
    }
}

async fn mounted(m: &Mount, req: Request<Full<Bytes>>) -> Response<ResponseBody> {
    match (m.service)(req).await {
        Ok(resp) => {
            let status = resp.status();
            if (status.is_client_error() || status.is_server_error()) && resp.body().size_hint().exact() == Some(0) {
                // The provider's own route answered an error without a body: give it the contract's body.
                let (mut parts, _) = resp.into_parts();
                parts.headers.remove(CONTENT_LENGTH);
                let fresh = error(status, code_for(status), status.canonical_reason().unwrap_or("Error").to_owned());
                let (fresh_parts, body) = fresh.into_parts();
                for (k, v) in &fresh_parts.headers {
                    parts.headers.insert(k, v.clone());
                }
                return Response::from_parts(parts, body);
            }
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, prefix = %m.prefix, "mounted service failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "The resource provider failed.")
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn missing_principal() -> Response<ResponseBody> {
    error(StatusCode::BAD_REQUEST, "MissingPrincipalId", "The x-ms-principal-id header is required.")
}

fn method_not_allowed(allowed: &[Method]) -> Response<ResponseBody> {
    let list = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", format!("Allowed methods: {list}."));
    if let Ok(v) = HeaderValue::from_str(&list) {
        r.headers_mut().insert(ALLOW, v);
    }
    r
}

fn subscription_not_found(id: &str) -> Response<ResponseBody> {
    error(StatusCode::NOT_FOUND, "SubscriptionNotFound", format!("Subscription {} does not exist.", truncate(id, 100)))
}

fn handler_error(e: &NotificationError) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(status = e.status, code = %e.error.code, "handler failed");
    }
    respond::rp_error(status, &e.error)
}

/// Whether the body's media type is JSON (or absent: WAP always sends JSON).
fn is_json_media_type(parts: &Parts) -> bool {
    let Some(v) = parts.headers.get(CONTENT_TYPE) else { return true };
    let Ok(v) = v.to_str() else { return false };
    let media = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media.is_empty() || media.ends_with("/json") || media.ends_with("+json")
}

fn parse_json<T: serde::de::DeserializeOwned>(parts: &Parts, body: &[u8], what: &str) -> Result<T, Rejection> {
    if !is_json_media_type(parts) {
        return Err(Box::new(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The request body must be JSON (application/json).",
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            format!("The request body is empty; a {what} JSON object is expected."),
        )));
    }
    wap_types::json::from_slice::<T>(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            format!("{what}: {}", truncate(&e.to_string(), 400)),
        ))
    })
}

/// The id of `DELETE subscriptions`: a Subscription object or a JSON string.
fn id_from_body(body: &[u8]) -> Result<String, Rejection> {
    let bad = |m: String| Box::new(error(StatusCode::BAD_REQUEST, "InvalidRequestBody", m));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("The request body is empty; the subscription to delete is expected.".into()));
    }
    if let Ok(id) = wap_types::json::from_slice::<String>(body) {
        return if id.trim().is_empty() { Err(bad("The subscription id is empty.".into())) } else { Ok(id) };
    }
    wap_types::json::from_slice::<Subscription>(body)
        .map(|s| s.subscription_id)
        .map_err(|e| bad(format!("Subscription: {}", truncate(&e.to_string(), 400))))
}

fn is_validate_only(query: Option<&str>) -> bool {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k.eq_ignore_ascii_case("validateonly") && v.trim().eq_ignore_ascii_case("true"))
}

fn created(outcome: CreateOutcome) -> Response<ResponseBody> {
    match outcome {
        CreateOutcome::Created(mut s) => {
            s.lifecycle_state.get_or_insert(LifecycleState::Provisioned);
            respond::json(StatusCode::CREATED, &s)
        }
        CreateOutcome::Accepted(mut s) => {
            s.lifecycle_state.get_or_insert(LifecycleState::Provisioning);
            respond::json(StatusCode::ACCEPTED, &s)
        }
    }
}

async fn update(
    h: &dyn NotificationHandler,
    ctx: &CallContext,
    sub: Subscription,
) -> Result<Response<ResponseBody>, NotificationError> {
    let id = sub.subscription_id.clone();
    Ok(match h.update_subscription(ctx, sub).await? {
        UpdateOutcome::Updated(mut s) => {
            s.lifecycle_state.get_or_insert(LifecycleState::Provisioned);
            respond::json(StatusCode::OK, &s)
        }
        UpdateOutcome::Accepted(mut s) => {
            s.lifecycle_state.get_or_insert(LifecycleState::Updating);
            respond::json(StatusCode::ACCEPTED, &s)
        }
        UpdateOutcome::NotFound => subscription_not_found(&id),
    })
}

fn deleted(outcome: DeleteOutcome) -> Response<ResponseBody> {
    match outcome {
        DeleteOutcome::Deleted | DeleteOutcome::NotFound => respond::empty(StatusCode::OK),
        DeleteOutcome::Accepted => respond::empty(StatusCode::ACCEPTED),
    }
}

async fn update_quota(
    h: &dyn NotificationHandler,
    ctx: &CallContext,
    batch: QuotaUpdateBatch,
) -> Result<Response<ResponseBody>, NotificationError> {
    let requested: Vec<String> = batch.subscription_ids_to_update.or_empty().to_vec();
    if requested.is_empty() {
        let empty = crate::handler::QuotaResults::new().finish();
        return Ok(respond::json(StatusCode::OK, &empty));
    }
    let mut result = h.update_quota(ctx, batch).await?;
    let updated = result.updated_subscription_ids.get_or_insert_with(Vec::new).clone();
    let failed = result.failed_subscription_ids.get_or_insert_with(Vec::new);
    let mut missing = 0usize;
    for id in &requested {
        if !updated.iter().chain(failed.iter()).any(|x| same_id(x, id)) {
            failed.push(id.clone());
            missing += 1;
        }
    }
    if missing > 0 {
        tracing::warn!(missing, "update_quota left subscriptions out of both lists; reported them failed");
    }
    if !failed.is_empty() && result.error.is_none() {
        let n = failed.len();
        result.error = Some(ResourceProviderError::new(
            "QuotaUpdateFailed",
            format!("The quota could not be applied to {n} subscription(s)."),
        ));
    }
    Ok(respond::json(StatusCode::OK, &result))
}
