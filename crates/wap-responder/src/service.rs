//! [`Responder`]: the HTTP request handler, as a `tower::Service` and a `hyper::service::Service`.
//!
//! Order of checks for every request: route (404) → method (405) → credentials (401, before any body byte is
//! read, so an `Expect: 100-continue` caller is refused without sending its body) → body size (413) and read time
//! (408) → JSON (400 naming the bad member) → decision.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Body;
use tokio::time::Instant;
use wap_types::{AddonPriceQuery, ApprovalOperation, Decision, PlanPriceQuery, PriceAnswer};

use crate::approver::{AddOnApproval, SubscriptionApproval, SubscriptionApprover};
use crate::auth::BasicCheck;
use crate::cache::{DecisionCache, Lookup, RequestIdentity};
use crate::config::{AuthMode, FailureMode, ResponderConfig, ResponderConfigError, UnknownPriceStatus};
use crate::pricing::{NoPricing, PricingResponder};
use crate::request::{parse_approval, ParsedApproval};
use crate::routing::Route;

/// The `WWW-Authenticate` challenge sent with a 401.
pub const WWW_AUTHENTICATE_VALUE: &str = "Basic realm=\"wap-billing\"";

/// Longest deny reason sent to WAP, in characters.
const MAX_REASON_CHARS: usize = 256;

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The response type of the responder.
pub type ResponderResponse = Response<Full<Bytes>>;

/// The future returned by [`Responder`]'s `call`.
pub type ResponderFuture = Pin<Box<dyn Future<Output = Result<ResponderResponse, Infallible>> + Send>>;

struct Inner<A, P> {
    approver: A,
    pricing: P,
    has_pricing: bool,
    config: ResponderConfig,
    base: Vec<String>,
    cache: DecisionCache,
    /// `None` without authentication.
    basic: Option<BasicCheck>,
    /// Why the configuration must not serve (a blank password): every call is refused with 401.
    misconfigured: Option<ResponderConfigError>,
    /// `MethodNumericOrdinals`: starts as configured; the adapter sets it to the engine's setting.
    numeric_ordinals: AtomicBool,
}

/// Answers WAP's approval and pricing calls. Cheap to clone (shared state); serve it with [`serve`](crate::serve)
/// or any server that takes a `tower::Service` / `hyper::service::Service`.
pub struct Responder<A, P = NoPricing> {
    inner: Arc<Inner<A, P>>,
}

impl<A, P> Clone for Responder<A, P> {
    fn clone(&self) -> Self {
        Responder { inner: self.inner.clone() }
    }
}

impl<A, P> std::fmt::Debug for Responder<A, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("config", &self.inner.config)
            .field("pricing", &self.inner.has_pricing)
            .field("cached_answers", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

impl<A: SubscriptionApprover> Responder<A, NoPricing> {
    /// A responder that answers approval calls; the pricing paths answer 404.
    pub fn new(approver: A, config: ResponderConfig) -> Self {
        Responder::build(approver, NoPricing, false, config)
    }
}

impl<A: SubscriptionApprover, P: PricingResponder> Responder<A, P> {
    /// A responder that answers approval calls and pricing queries (pricing requires approval, docs/protocol/approval-and-pricing.md §4).
    pub fn with_pricing(approver: A, pricing: P, config: ResponderConfig) -> Self {
        Responder::build(approver, pricing, true, config)
    }

    fn build(approver: A, pricing: P, has_pricing: bool, config: ResponderConfig) -> Self {
        let cache = DecisionCache::new(config.idempotency_window, config.idempotency_capacity);
        let base = config.base_segments();
        let basic = match &config.auth {
            AuthMode::Basic(credentials) => Some(BasicCheck::new(credentials)),
            AuthMode::None => None,
        };
        let misconfigured = config.validate().err();
        if let Some(e) = &misconfigured {
            tracing::error!(error = %e, "responder misconfigured: every call will be refused (401)");
        }
        let numeric_ordinals = AtomicBool::new(config.method_numeric_ordinals);
        Responder {
            inner: Arc::new(Inner {
                approver,
                pricing,
                has_pricing,
                config,
                base,
                cache,
                basic,
                misconfigured,
                numeric_ordinals,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ResponderConfig {
        &self.inner.config
    }

    /// Why this responder refuses to serve (its configuration fails [`ResponderConfig::validate`]), if it does.
    pub fn config_error(&self) -> Option<&ResponderConfigError> {
        self.inner.misconfigured.as_ref()
    }

    /// Whether the body's `Method` `"1"`, `"2"`, `"3"` are read as Put, Patch, Delete (`MethodNumericOrdinals`).
    pub fn method_numeric_ordinals(&self) -> bool {
        self.inner.numeric_ordinals.load(Ordering::Relaxed)
    }

    /// Sets `MethodNumericOrdinals` for this responder and its clones, from now on: the billing adapter calls it
    /// with the engine's setting, so that approval calls and feeds read `Method` alike.
    pub fn set_method_numeric_ordinals(&self, enabled: bool) {
        self.inner.numeric_ordinals.store(enabled, Ordering::Relaxed);
    }

    /// How many answers the idempotency cache holds.
    pub fn cached_answers(&self) -> usize {
        self.inner.cache.len()
    }

    /// [`Responder::handle`] as a future that owns what it needs (a clone of the shared state): what
    /// [`serve`](crate::serve) gives hyper, which keeps it inline in the connection rather than boxed per request.
    pub(crate) fn handle_owned<B>(
        &self,
        request: Request<B>,
    ) -> impl Future<Output = ResponderResponse> + Send + 'static
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        Inner::handle(self.inner.clone(), request)
    }

    /// Handles one request. Never fails: every problem is an HTTP answer.
    pub async fn handle<B>(&self, request: Request<B>) -> ResponderResponse
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        Inner::handle(self.inner.clone(), request).await
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> ResponderResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, TEXT_PLAIN);
    response
}

fn decision_response(decision: &Decision) -> ResponderResponse {
    match decision {
        Decision::Approve => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Decision::Deny { reason } => {
            let reason: String = reason.chars().filter(|c| !c.is_control()).take(MAX_REASON_CHARS).collect();
            text(StatusCode::FORBIDDEN, reason)
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// Where a decision came from (logged).
#[derive(Debug, Clone, Copy)]
enum Source {
    Approver,
    Automatic,
    Repeated,
    FailureMode,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Approver => "approver",
            Source::Automatic => "automatic",
            Source::Repeated => "repeated",
            Source::FailureMode => "failure-mode",
        }
    }
}

fn log_decision(event_id: i64, operation: ApprovalOperation, decision: &Decision, source: Source) {
    match decision {
        Decision::Approve => {
            tracing::info!(event_id, %operation, source = source.as_str(), "approval call approved")
        }
        Decision::Deny { reason } => {
            tracing::info!(event_id, %operation, source = source.as_str(), reason = %reason, "approval call denied")
        }
    }
}

impl<A: SubscriptionApprover, P: PricingResponder> Inner<A, P> {
    async fn handle<B>(self: Arc<Self>, request: Request<B>) -> ResponderResponse
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Some(route) = Route::resolve(request.uri().path(), &self.base, self.config.any_path_prefix) else {
            return text(
                StatusCode::NOT_FOUND,
                "no such path: expected subscriptions, subscriptionAddons, planPrice or addonPrice",
            );
        };
        let enabled = if route.is_approval() {
            self.config.approval_enabled
        } else {
            self.config.pricing_enabled && self.has_pricing
        };
        if !enabled {
            return text(StatusCode::NOT_FOUND, format!("the {} responder is not enabled", route.segment()));
        }
        if !route.allows(request.method()) {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "method {} is not allowed on {}; use {}",
                    request.method(),
                    route.segment(),
                    route.allow_header()
                ),
            );
            response.headers_mut().insert(ALLOW, HeaderValue::from_static(route.allow_header()));
            return response;
        }
        if let Some(problem) = &self.misconfigured {
            tracing::error!(path = request.uri().path(), error = %problem, "refused a call: the responder is misconfigured");
            let mut response = text(StatusCode::UNAUTHORIZED, "valid Basic credentials are required");
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE_VALUE));
            return response;
        }
        if let Some(basic) = &self.basic {
            let header = request.headers().get(AUTHORIZATION);
            if !basic.verify(header) {
                tracing::warn!(
                    path = request.uri().path(),
                    authorization_present = header.is_some(),
                    "refused a call without valid credentials"
                );
                let mut response = text(StatusCode::UNAUTHORIZED, "valid Basic credentials are required");
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(WWW_AUTHENTICATE_VALUE));
                return response;
            }
        }
        if route.is_approval() {
            self.approval(route, request).await
        } else {
            self.price(route, request.uri().query().unwrap_or("")).await
        }
    }

    async fn read_body<B>(&self, request: Request<B>, arrived: Instant) -> Result<Bytes, ResponderResponse>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let limit = self.config.max_body_bytes;
        let too_large = || {
            text(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than the limit of {limit} bytes"))
        };
        let declared = request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        // One buffer bounded by the limit whatever the chunking (frames are copied and dropped), under one
        // deadline for the whole body.
        let body = wap_types::body::read_bounded(request.into_body(), limit);
        match tokio::time::timeout_at(arrived + self.config.body_read_timeout, body).await {
            Err(_) => Err(text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body was not received within {} ms", self.config.body_read_timeout.as_millis()),
            )),
            Ok(Err(wap_types::body::BodyReadError::TooLarge { .. })) => Err(too_large()),
            Ok(Err(e)) => Err(text(StatusCode::BAD_REQUEST, e.to_string())),
            Ok(Ok(read)) => Ok(read.into_bytes()),
        }
    }

    async fn approval<B>(self: Arc<Self>, route: Route, request: Request<B>) -> ResponderResponse
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let body = match self.read_body(request, Instant::now()).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        if wap_types::json::strip_bom(&body).iter().all(u8::is_ascii_whitespace) {
            return text(StatusCode::BAD_REQUEST, "the request body is empty: expected one UsageEvent (JSON)");
        }
        let approval = match parse_approval(&body, self.numeric_ordinals.load(Ordering::Relaxed)) {
            Ok(approval) => approval,
            Err(e) => {
                tracing::warn!(path = %e.path, error = %e.message, "refused an approval call with a malformed body");
                return text(StatusCode::BAD_REQUEST, format!("invalid approval request: {e}"));
            }
        };
        let event_id = approval.event_id();
        if let Some(verb) = approval.unknown_verb() {
            // An approval is a gate: a verb that is not create, delete or update is not guessed to be an update.
            tracing::warn!(
                event_id,
                verb,
                numeric_ordinals = self.numeric_ordinals.load(Ordering::Relaxed),
                mode = ?self.config.failure_mode,
                "approval call with an unknown Method: answered with the failure decision"
            );
            let decision = match self.config.failure_mode {
                FailureMode::Deny => Decision::deny(format!("unknown Method {verb:?}: denied")),
                FailureMode::Approve => Decision::Approve,
            };
            log_decision(event_id, approval.operation(), &decision, Source::FailureMode);
            return decision_response(&decision);
        }
        let operation = approval.operation();
        if operation.is_always_approved() {
            log_decision(event_id, operation, &Decision::Approve, Source::Automatic);
            return decision_response(&Decision::Approve);
        }
        let identity = approval.identity(route);
        // One clock reading for the cache's window and the decision budget.
        let decision = self.decide(approval, identity, Instant::now()).await;
        decision_response(&decision)
    }

    async fn decide(self: Arc<Self>, approval: ParsedApproval, identity: RequestIdentity, now: Instant) -> Decision {
        let event_id = identity.event_id;
        let operation = identity.operation;
        let ticket = match self.cache.lookup_at(&identity, now) {
            Lookup::Hit(decision) => {
                log_decision(event_id, operation, &decision, Source::Repeated);
                return decision;
            }
            Lookup::Wait(receiver) => {
                return match receiver.await {
                    Ok(decision) => {
                        log_decision(event_id, operation, &decision, Source::Repeated);
                        decision
                    }
                    Err(_) => {
                        tracing::error!(event_id, %operation, "the first request of this event ended without a decision");
                        let decision = self.failure_decision();
                        log_decision(event_id, operation, &decision, Source::FailureMode);
                        decision
                    }
                };
            }
            Lookup::Miss(ticket) => {
                if ticket.is_conflict() {
                    tracing::warn!(
                        event_id,
                        %operation,
                        route = identity.route.segment(),
                        subscription_id = identity.subscription_id.as_deref().unwrap_or(""),
                        add_on_id = identity.add_on_id.as_deref().unwrap_or(""),
                        plan_id = identity.plan_id.as_deref().unwrap_or(""),
                        "approval conflict: this EventId was already seen with another request; deciding afresh"
                    );
                }
                ticket
            }
        };
        // The decision runs inline; if the caller hangs up first, it is finished in a task of its own, so its
        // answer is still cached for WAP's resend.
        let inner = self.clone();
        DetachOnDrop::new(async move {
            let (decision, source) = inner.evaluate(approval, operation, now).await;
            log_decision(event_id, operation, &decision, source);
            ticket.finish(&decision);
            decision
        })
        .await
    }

    fn failure_decision(&self) -> Decision {
        match self.config.failure_mode {
            FailureMode::Deny => Decision::deny("the billing system could not decide; denied (fail closed)"),
            FailureMode::Approve => Decision::Approve,
        }
    }

    async fn evaluate(
        &self,
        approval: ParsedApproval,
        operation: ApprovalOperation,
        now: Instant,
    ) -> (Decision, Source) {
        let event_id = approval.event_id();
        let call = async {
            match (approval, operation) {
                (ParsedApproval::Subscription(event, ApprovalOperation::CreateSubscription), _) => {
                    self.approver.create_subscription(SubscriptionApproval::new(*event)).await
                }
                (ParsedApproval::Subscription(event, ApprovalOperation::DeleteSubscription), _) => {
                    self.approver.delete_subscription(SubscriptionApproval::new(*event)).await
                }
                (ParsedApproval::AddOn(event, ApprovalOperation::CreateSubscriptionAddOn), _) => {
                    self.approver.create_subscription_addon(AddOnApproval::new(*event)).await
                }
                (ParsedApproval::AddOn(event, ApprovalOperation::DeleteSubscriptionAddOn), _) => {
                    self.approver.delete_subscription_addon(AddOnApproval::new(*event)).await
                }
                // Updates (never sent here: approved before) and impossible pairs.
                _ => Ok(Decision::Approve),
            }
        };
        let budget = self.config.decision_budget;
        match tokio::time::timeout_at(now + budget, AssertUnwindSafe(call).catch_unwind()).await {
            Ok(Ok(Ok(decision))) => (decision, Source::Approver),
            Ok(Ok(Err(error))) => {
                tracing::error!(event_id, %operation, error = %error, mode = ?self.config.failure_mode, "approver failed");
                (self.failure_decision(), Source::FailureMode)
            }
            Ok(Err(panic)) => {
                tracing::error!(
                    event_id,
                    %operation,
                    panic = panic_message(panic.as_ref()),
                    mode = ?self.config.failure_mode,
                    "approver panicked"
                );
                (self.failure_decision(), Source::FailureMode)
            }
            Err(_) => {
                tracing::error!(
                    event_id,
                    %operation,
                    budget_ms = budget.as_millis() as u64,
                    mode = ?self.config.failure_mode,
                    "approver exceeded the decision budget"
                );
                (self.failure_decision(), Source::FailureMode)
            }
        }
    }

    async fn price(&self, route: Route, query: &str) -> ResponderResponse {
        let budget = self.config.decision_budget;
        let lookup = match route {
            Route::PlanPrice => match PlanPriceQuery::from_query(query) {
                Ok(q) => {
                    let id = q.id.clone();
                    let answer = AssertUnwindSafe(async move { self.pricing.plan_price(&q).await }).catch_unwind();
                    (id, tokio::time::timeout(budget, answer).await)
                }
                Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
            },
            _ => match AddonPriceQuery::from_query(query) {
                Ok(q) => {
                    let id = q.id.clone();
                    let answer = AssertUnwindSafe(async move { self.pricing.addon_price(&q).await }).catch_unwind();
                    (id, tokio::time::timeout(budget, answer).await)
                }
                Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
            },
        };
        let (id, outcome) = lookup;
        let price = match outcome {
            Ok(Ok(price)) => price,
            Ok(Err(panic)) => {
                tracing::error!(id = %id, route = route.segment(), panic = panic_message(panic.as_ref()), "pricing responder panicked");
                None
            }
            Err(_) => {
                tracing::error!(id = %id, route = route.segment(), "pricing responder exceeded the budget");
                None
            }
        };
        let encoding = self.config.price_encoding;
        let answer = match price {
            Some(price) => PriceAnswer::new(&price, self.config.price_max_length),
            None if self.config.unknown_price_status == UnknownPriceStatus::NotFound => {
                tracing::debug!(id = %id, route = route.segment(), "no price: 404");
                return text(StatusCode::NOT_FOUND, format!("no price for id {id:?}"));
            }
            None => PriceAnswer::unknown(),
        };
        tracing::debug!(id = %id, route = route.segment(), found = !answer.is_empty(), "price answered");
        let mut response = Response::new(Full::new(Bytes::from(answer.encode(encoding))));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
        response
    }
}

/// Drives a future inline; if dropped before completion (the caller hung up), spawns the rest on the current Tokio
/// runtime so that the work (a decision and its cache entry) still completes.
struct DetachOnDrop<T: Send + 'static> {
    future: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
}

impl<T: Send + 'static> DetachOnDrop<T> {
    fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        DetachOnDrop { future: Some(Box::pin(future)) }
    }
}

impl<T: Send + 'static> Future for DetachOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.future.as_mut() else { return Poll::Pending };
        match future.as_mut().poll(cx) {
            Poll::Ready(value) => {
                self.future = None;
                Poll::Ready(value)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: Send + 'static> Drop for DetachOnDrop<T> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(future);
            }
        }
    }
}

impl<A, P, B> tower_service::Service<Request<B>> for Responder<A, P>
where
    A: SubscriptionApprover,
    P: PricingResponder,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Response = ResponderResponse;
    type Error = Infallible;
    type Future = ResponderFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        hyper::service::Service::call(self, request)
    }
}

impl<A, P, B> hyper::service::Service<Request<B>> for Responder<A, P>
where
    A: SubscriptionApprover,
    P: PricingResponder,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Response = ResponderResponse;
    type Error = Infallible;
    type Future = ResponderFuture;

    fn call(&self, request: Request<B>) -> Self::Future {
        let answer = self.handle_owned(request);
        Box::pin(async move { Ok(answer.await) })
    }
}
