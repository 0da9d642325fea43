//! The approval and pricing caller: tenant actions that WAP sends to blocking notification subscribers before
//! committing them (docs/protocol/approval-and-pricing.md §1–4).
//!
//! Each action takes an id from the shared event sequence, sends one [`UsageEvent`] with `State: 2` to every
//! enabled blocking subscriber (`BillingService`, `MandatoryService`; `OptionalService` is not called), in
//! registration order, and commits the event to the pull feed under the same id with `State: 0` only when every
//! subscriber approved (status < 400). A status ≥ 400, a timeout or a connection error denies; a denied event
//! leaves a gap in the sequence. With no blocking subscriber the action is approved.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, EXPECT};
use http::{HeaderValue, Method};
use serde_json::Value;
use url::Url;
use wap_types::{
    AddonPriceQuery, AdminSubscription, AdminSubscriptionState, ApprovalOperation, BasicCredentials, EventMethod,
    FeedKind, NotificationState, PlanAddonReference, PlanPriceQuery, PriceAnswer, SyncState, UsageEvent, WapDateTime,
};

use crate::client::{send, OutRequest};
use crate::error::{redact_url, snippet, SimError};
use crate::ids::guid_from;
use crate::sim::Inner;
use crate::time::feed_now;

/// `-SubscriberType` of `Set-MgmtSvcNotificationSubscriber`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubscriberType {
    /// A billing system: blocking; also asked for prices.
    #[default]
    BillingService,
    /// Another blocking subscriber.
    MandatoryService,
    /// Non-blocking (semantics undocumented): never called by the simulator.
    OptionalService,
}

impl SubscriberType {
    /// Whether the tenant's action waits for this subscriber.
    pub fn is_blocking(self) -> bool {
        !matches!(self, SubscriberType::OptionalService)
    }
}

/// A registered notification subscriber (`Set-MgmtSvcNotificationSubscriber`).
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSubscriber {
    /// `-Name`: registering a name again replaces the subscriber.
    pub name: String,
    /// `-Endpoint`: WAP appends `subscriptions`, `subscriptionAddons`, `planPrice`, `addonPrice` with exactly one
    /// `/` between (so `…/wap` and `…/wap/` both give `…/wap/subscriptions`).
    pub endpoint: Url,
    /// `-SubscriberType`.
    pub subscriber_type: SubscriberType,
    /// `-Enabled`.
    pub enabled: bool,
    /// `-AuthenticationMode Basic` credentials; `None` = mode `None` (no `Authorization` header).
    pub auth: Option<BasicCredentials>,
    /// How long WAP waits for this subscriber; `None` = the simulator's approval timeout (default 120 s).
    pub timeout: Option<Duration>,
}

impl NotificationSubscriber {
    /// An enabled `BillingService` subscriber without credentials.
    pub fn billing(name: impl Into<String>, endpoint: Url) -> Self {
        NotificationSubscriber {
            name: name.into(),
            endpoint,
            subscriber_type: SubscriberType::BillingService,
            enabled: true,
            auth: None,
            timeout: None,
        }
    }

    /// Sets Basic credentials.
    pub fn with_auth(mut self, credentials: BasicCredentials) -> Self {
        self.auth = Some(credentials);
        self
    }

    /// Sets the subscriber type.
    pub fn with_type(mut self, subscriber_type: SubscriberType) -> Self {
        self.subscriber_type = subscriber_type;
        self
    }

    /// Sets the timeout for this subscriber.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets `-Enabled`.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

/// Where add-on approvals are sent: the documentation's table and example disagree
/// (docs/protocol/approval-and-pricing.md §3, operation C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddOnApprovalRoute {
    /// `POST subscriptionAddons` (default).
    #[default]
    PostSubscriptionAddons,
    /// `PUT subscriptionAddons` (the table's method for create; delete stays `POST`).
    PutSubscriptionAddons,
    /// `POST subscriptions` (the documented example).
    PostSubscriptions,
}

/// A tenant buying a plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateSubscription {
    /// The tenant (`AccountAdminLiveEmailId`).
    pub account_email: String,
    /// The plan bought.
    pub plan_id: String,
    /// The name; default the plan's display name.
    pub subscription_name: Option<String>,
    /// The id; default a new GUID.
    pub subscription_id: Option<String>,
}

impl CreateSubscription {
    /// A subscription of `account_email` to `plan_id`.
    pub fn new(account_email: impl Into<String>, plan_id: impl Into<String>) -> Self {
        CreateSubscription { account_email: account_email.into(), plan_id: plan_id.into(), ..Default::default() }
    }
}

/// Changes of an update (operation E); `None` = unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscriptionUpdate {
    /// New `SubscriptionName`.
    pub subscription_name: Option<String>,
    /// New admin `State` (2 = suspend, 1 = activate).
    pub state: Option<AdminSubscriptionState>,
    /// New `PlanId`.
    pub plan_id: Option<String>,
    /// New `CoAdminNames`.
    pub co_admin_names: Option<Vec<String>>,
}

impl SubscriptionUpdate {
    /// Suspend (admin `State` 2).
    pub fn suspend() -> Self {
        SubscriptionUpdate { state: Some(AdminSubscriptionState::Suspended), ..Default::default() }
    }
    /// Activate (admin `State` 1).
    pub fn activate() -> Self {
        SubscriptionUpdate { state: Some(AdminSubscriptionState::Active), ..Default::default() }
    }
    /// Rename.
    pub fn rename(name: impl Into<String>) -> Self {
        SubscriptionUpdate { subscription_name: Some(name.into()), ..Default::default() }
    }
}

/// What one subscriber answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallResult {
    /// An HTTP status (< 400 approves).
    Status(u16),
    /// No answer within the timeout (denies).
    Timeout,
    /// Connection refused, reset or broken (denies); the message says what happened.
    ConnectionFailed(String),
}

impl CallResult {
    /// Whether this answer approves.
    pub fn approves(&self) -> bool {
        matches!(self, CallResult::Status(s) if *s < 400)
    }
}

/// One approval call made.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberCall {
    /// The subscriber's name.
    pub subscriber: String,
    /// `POST` or `PUT`.
    pub method: String,
    /// The URL called (without credentials).
    pub url: String,
    /// The answer.
    pub result: CallResult,
    /// How long the call took.
    pub elapsed: Duration,
}

/// How a tenant action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionStatus {
    /// Every blocking subscriber approved (or none is registered): the event is on the feed with `State: 0`.
    Approved,
    /// A subscriber denied, timed out or was unreachable: nothing was committed.
    Denied,
    /// WAP itself refused before asking anyone (unknown plan or subscription, …): the reason.
    Refused(String),
}

/// The result of a tenant action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActionOutcome {
    /// What was asked.
    pub operation: ApprovalOperation,
    /// How it ended.
    pub status: ActionStatus,
    /// The event id sent for approval (and used on the feed when approved); `None` when refused.
    pub event_id: Option<i64>,
    /// The subscription concerned.
    pub subscription_id: Option<String>,
    /// The add-on instance created or removed (add-on actions).
    pub add_on_instance_id: Option<String>,
    /// The approval calls made, in order.
    pub calls: Vec<SubscriberCall>,
}

/// `APPROVED (HTTP 204)`, `DENIED (HTTP 403)`, `DENIED (timeout)`, … — the verdict and how the last subscriber
/// call ended (`no subscriber asked` when none was).
impl std::fmt::Display for ActionOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.is_approved() { "APPROVED" } else { "DENIED" };
        match self.calls.last().map(|c| &c.result) {
            Some(CallResult::Status(s)) => write!(f, "{verdict} (HTTP {s})"),
            Some(CallResult::Timeout) => write!(f, "{verdict} (timeout)"),
            Some(other) => write!(f, "{verdict} ({other:?})"),
            None => write!(f, "{verdict} (no subscriber asked)"),
        }
    }
}

impl ActionOutcome {
    /// Whether the action was committed.
    pub fn is_approved(&self) -> bool {
        self.status == ActionStatus::Approved
    }

    fn refused(operation: ApprovalOperation, reason: impl Into<String>) -> Self {
        ActionOutcome {
            operation,
            status: ActionStatus::Refused(reason.into()),
            event_id: None,
            subscription_id: None,
            add_on_instance_id: None,
            calls: Vec::new(),
        }
    }
}

/// `endpoint` + `/` + `segment`, with exactly one `/` between, query dropped (WAP appends the segment).
pub(crate) fn join_endpoint(endpoint: &Url, segment: &str) -> Url {
    let mut u = endpoint.clone();
    u.set_query(None);
    u.set_fragment(None);
    let ok = match u.path_segments_mut() {
        Ok(mut segs) => {
            segs.pop_if_empty();
            for s in segment.split('/') {
                segs.push(s);
            }
            true
        }
        Err(()) => false,
    };
    if ok {
        u
    } else {
        endpoint.join(segment).unwrap_or_else(|_| endpoint.clone())
    }
}

fn auth_header(auth: &Option<BasicCredentials>) -> Option<HeaderValue> {
    auth.as_ref().and_then(|c| HeaderValue::from_str(&c.header_value()).ok()).map(|mut v| {
        v.set_sensitive(true);
        v
    })
}

/// Sends the event to every enabled blocking subscriber; true when all approved.
async fn ask_subscribers<T: serde::Serialize>(
    inner: &Inner,
    segment: &str,
    method: Method,
    event: &UsageEvent<T>,
) -> (bool, Vec<SubscriberCall>) {
    let body = Bytes::from(serde_json::to_vec(event).unwrap_or_default());
    let subscribers: Vec<NotificationSubscriber> = inner
        .subscribers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|s| s.enabled && s.subscriber_type.is_blocking())
        .cloned()
        .collect();
    let mut calls = Vec::new();
    for s in subscribers {
        let url = join_endpoint(&s.endpoint, segment);
        let mut headers = vec![
            (CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8")),
            (EXPECT, HeaderValue::from_static("100-continue")),
        ];
        if let Some(a) = auth_header(&s.auth) {
            headers.push((AUTHORIZATION, a));
        }
        let started = Instant::now();
        let shown = redact_url(&url);
        let timeout = s.timeout.unwrap_or(inner.approval_timeout);
        let result = match send(
            &inner.outbound,
            OutRequest { method: method.clone(), url, headers, body: Some(body.clone()), timeout },
        )
        .await
        {
            Ok(r) => CallResult::Status(r.status),
            Err(SimError::Timeout { .. }) => CallResult::Timeout,
            Err(e) => CallResult::ConnectionFailed(e.to_string()),
        };
        tracing::debug!(subscriber = %s.name, url = %shown, ?result, "approval call");
        calls.push(SubscriberCall {
            subscriber: s.name.clone(),
            method: method.to_string(),
            url: shown,
            result,
            elapsed: started.elapsed(),
        });
    }
    (calls.iter().all(|c| c.result.approves()), calls)
}

fn subscription_from(value: &Value) -> Option<AdminSubscription> {
    serde_json::from_value(value.clone()).ok()
}

fn find_subscription(inner: &Inner, id: &str) -> Option<AdminSubscription> {
    let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
    data.feeds.catalogue.subscriptions.get(&id.to_ascii_lowercase()).and_then(subscription_from)
}

fn new_event_id(inner: &Inner) -> i64 {
    inner.data.lock().unwrap_or_else(|e| e.into_inner()).feeds.store.allocate_id()
}

fn approval_event<T: serde::Serialize>(id: i64, method: EventMethod, entity: T) -> UsageEvent<T> {
    UsageEvent::new(id, NotificationState::PendingApproval, method, entity).with_time_created(WapDateTime::now())
}

fn finish(
    operation: ApprovalOperation,
    approved: bool,
    id: i64,
    sub: &str,
    instance: Option<String>,
    calls: Vec<SubscriberCall>,
) -> ActionOutcome {
    ActionOutcome {
        operation,
        status: if approved { ActionStatus::Approved } else { ActionStatus::Denied },
        event_id: Some(id),
        subscription_id: Some(sub.to_owned()),
        add_on_instance_id: instance,
        calls,
    }
}

/// Operation A.
pub(crate) async fn create_subscription(inner: &Inner, r: CreateSubscription) -> ActionOutcome {
    let op = ApprovalOperation::CreateSubscription;
    let (plan, sub_id) = {
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        let Some(plan) = data.feeds.catalogue.plans.get(&r.plan_id.to_ascii_lowercase()).cloned() else {
            return ActionOutcome::refused(op, format!("unknown plan {:?}", r.plan_id));
        };
        if let Err(why) = crate::admin::plan_for_sale(&plan) {
            return ActionOutcome::refused(op, format!("plan {:?} {why}: tenants buy only public plans", r.plan_id));
        }
        let sub_id = match &r.subscription_id {
            Some(id) => id.clone(),
            None => guid_from(&mut data.rng),
        };
        if data.feeds.catalogue.subscriptions.contains_key(&sub_id.to_ascii_lowercase()) {
            return ActionOutcome::refused(op, format!("subscription {sub_id} exists"));
        }
        (plan, sub_id)
    };
    let plan_id = plan.get("Id").and_then(Value::as_str).unwrap_or(&r.plan_id).to_owned();
    let name =
        r.subscription_name.clone().or_else(|| plan.get("DisplayName").and_then(Value::as_str).map(str::to_owned));
    let asked = AdminSubscription {
        subscription_id: sub_id.clone(),
        subscription_name: name,
        account_admin_live_email_id: Some(r.account_email.clone()),
        co_admin_names: Some(Vec::new()),
        add_on_references: Some(Vec::new()),
        add_ons: Some(Vec::new()),
        state: Some(AdminSubscriptionState::None),
        quota_sync_state: Some(SyncState::InSync),
        activation_sync_state: Some(SyncState::InSync),
        plan_id: Some(plan_id),
        services: Some(Vec::new()),
        created: Some(WapDateTime::unset()),
        ..Default::default()
    };
    let id = new_event_id(inner);
    let event = approval_event(id, EventMethod::Post, asked.clone());
    let (approved, calls) = ask_subscribers(inner, "subscriptions", Method::POST, &event).await;
    if approved {
        let t = feed_now();
        let committed = AdminSubscription {
            state: Some(AdminSubscriptionState::Active),
            services: Some(crate::dataset::services_of_plan(&plan)),
            created: Some(t),
            ..asked
        };
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        data.feeds.commit_with_id(id, FeedKind::Subscriptions, EventMethod::Post, &committed, None, t);
    }
    finish(op, approved, id, &sub_id, None, calls)
}

/// Operation B.
pub(crate) async fn delete_subscription(inner: &Inner, subscription_id: &str) -> ActionOutcome {
    let op = ApprovalOperation::DeleteSubscription;
    let Some(current) = find_subscription(inner, subscription_id) else {
        return ActionOutcome::refused(op, format!("unknown subscription {subscription_id}"));
    };
    let id = new_event_id(inner);
    let event = approval_event(id, EventMethod::Delete, current.clone());
    let (approved, calls) = ask_subscribers(inner, "subscriptions", Method::POST, &event).await;
    if approved {
        let committed = AdminSubscription {
            subscription_id: current.subscription_id.clone(),
            subscription_name: current.subscription_name.clone(),
            account_admin_live_email_id: current.account_admin_live_email_id.clone(),
            state: Some(AdminSubscriptionState::DeletePending),
            quota_sync_state: current.quota_sync_state,
            activation_sync_state: current.activation_sync_state,
            plan_id: current.plan_id.clone(),
            created: current.created,
            ..Default::default()
        };
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        data.feeds.commit_with_id(id, FeedKind::Subscriptions, EventMethod::Delete, &committed, None, feed_now());
    }
    finish(op, approved, id, &current.subscription_id, None, calls)
}

/// Operation E.
pub(crate) async fn update_subscription(
    inner: &Inner,
    subscription_id: &str,
    update: SubscriptionUpdate,
) -> ActionOutcome {
    let op = ApprovalOperation::UpdateSubscription;
    let Some(mut entity) = find_subscription(inner, subscription_id) else {
        return ActionOutcome::refused(op, format!("unknown subscription {subscription_id}"));
    };
    if let Some(plan_id) = &update.plan_id {
        let known = inner
            .data
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .feeds
            .catalogue
            .plans
            .contains_key(&plan_id.to_ascii_lowercase());
        if !known {
            return ActionOutcome::refused(op, format!("unknown plan {plan_id:?}"));
        }
        entity.plan_id = Some(plan_id.clone());
    }
    if let Some(n) = update.subscription_name {
        entity.subscription_name = Some(n);
    }
    if let Some(s) = update.state {
        entity.state = Some(s);
    }
    if let Some(c) = update.co_admin_names {
        entity.co_admin_names = Some(c);
    }
    let id = new_event_id(inner);
    let event = approval_event(id, EventMethod::Put, entity.clone());
    let (approved, calls) = ask_subscribers(inner, "subscriptions", Method::POST, &event).await;
    if approved {
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        data.feeds.commit_with_id(id, FeedKind::Subscriptions, EventMethod::Put, &entity, None, feed_now());
    }
    finish(op, approved, id, &entity.subscription_id, None, calls)
}

fn add_on_route(inner: &Inner, create: bool) -> (&'static str, Method) {
    match inner.add_on_route {
        AddOnApprovalRoute::PostSubscriptionAddons => ("subscriptionAddons", Method::POST),
        AddOnApprovalRoute::PutSubscriptionAddons if create => ("subscriptionAddons", Method::PUT),
        AddOnApprovalRoute::PutSubscriptionAddons => ("subscriptionAddons", Method::POST),
        AddOnApprovalRoute::PostSubscriptions => ("subscriptions", Method::POST),
    }
}

/// Operation C.
pub(crate) async fn add_subscription_addon(inner: &Inner, subscription_id: &str, add_on_id: &str) -> ActionOutcome {
    let op = ApprovalOperation::CreateSubscriptionAddOn;
    let Some(sub) = find_subscription(inner, subscription_id) else {
        return ActionOutcome::refused(op, format!("unknown subscription {subscription_id}"));
    };
    let (add_on_id, instance) = {
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        let Some(a) = data.feeds.catalogue.add_ons.get(&add_on_id.to_ascii_lowercase()) else {
            return ActionOutcome::refused(op, format!("unknown add-on {add_on_id:?}"));
        };
        if let Err(why) = crate::admin::plan_for_sale(a) {
            return ActionOutcome::refused(op, format!("add-on {add_on_id:?} {why}: tenants buy only public add-ons"));
        }
        let id = a.get("Id").and_then(Value::as_str).unwrap_or(add_on_id).to_owned();
        (id, guid_from(&mut data.rng))
    };
    let asked = PlanAddonReference { add_on_id: add_on_id.clone(), ..Default::default() };
    let id = new_event_id(inner);
    let event = approval_event(id, EventMethod::Post, asked).with_parent(sub.subscription_id.clone());
    let (segment, method) = add_on_route(inner, true);
    let (approved, calls) = ask_subscribers(inner, segment, method, &event).await;
    if approved {
        let t = feed_now();
        let committed = PlanAddonReference {
            add_on_id,
            add_on_instance_id: Some(instance.clone()),
            acquisition_time: Some(t),
            extra: Default::default(),
        };
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        data.feeds.commit_with_id(
            id,
            FeedKind::SubscriptionAddons,
            EventMethod::Post,
            &committed,
            Some(&sub.subscription_id),
            t,
        );
    }
    finish(op, approved, id, &sub.subscription_id, Some(instance), calls)
}

/// Operation D.
pub(crate) async fn remove_subscription_addon(inner: &Inner, subscription_id: &str, add_on_id: &str) -> ActionOutcome {
    let op = ApprovalOperation::DeleteSubscriptionAddOn;
    let Some(sub) = find_subscription(inner, subscription_id) else {
        return ActionOutcome::refused(op, format!("unknown subscription {subscription_id}"));
    };
    let reference = sub
        .add_on_references
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .find(|r| r.add_on_id.eq_ignore_ascii_case(add_on_id) || r.add_on_instance_id.as_deref() == Some(add_on_id))
        .cloned();
    let Some(reference) = reference else {
        return ActionOutcome::refused(op, format!("subscription {subscription_id} has no add-on {add_on_id:?}"));
    };
    let asked = PlanAddonReference { acquisition_time: None, ..reference.clone() };
    let id = new_event_id(inner);
    let event = approval_event(id, EventMethod::Delete, asked.clone()).with_parent(sub.subscription_id.clone());
    let (segment, method) = add_on_route(inner, false);
    let (approved, calls) = ask_subscribers(inner, segment, method, &event).await;
    if approved {
        let mut data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
        data.feeds.commit_with_id(
            id,
            FeedKind::SubscriptionAddons,
            EventMethod::Delete,
            &reference,
            Some(&sub.subscription_id),
            feed_now(),
        );
    }
    finish(op, approved, id, &sub.subscription_id, reference.add_on_instance_id, calls)
}

/// `GET {endpoint}{segment}?{query}` on the first enabled `BillingService` subscriber.
pub(crate) async fn price(inner: &Inner, segment: &str, query: String) -> Result<PriceAnswer, SimError> {
    let subscriber = inner
        .subscribers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|s| s.enabled && s.subscriber_type == SubscriberType::BillingService)
        .cloned()
        .ok_or(SimError::NoPricingSubscriber)?;
    let mut url = join_endpoint(&subscriber.endpoint, segment);
    url.set_query(Some(&query));
    let mut headers = vec![(ACCEPT, HeaderValue::from_static("application/json"))];
    if let Some(a) = auth_header(&subscriber.auth) {
        headers.push((AUTHORIZATION, a));
    }
    let shown = redact_url(&url);
    let timeout = subscriber.timeout.unwrap_or(inner.approval_timeout);
    let r = send(&inner.outbound, OutRequest { method: Method::GET, url, headers, body: None, timeout }).await?;
    if r.status != 200 {
        return Err(SimError::Status { url: shown, status: r.status, body_snippet: snippet(&r.body) });
    }
    Ok(PriceAnswer::decode(&r.body))
}

/// `planPrice`.
pub(crate) async fn plan_price(inner: &Inner, q: PlanPriceQuery) -> Result<PriceAnswer, SimError> {
    price(inner, "planPrice", q.to_query()).await
}

/// `addonPrice`.
pub(crate) async fn addon_price(inner: &Inner, q: AddonPriceQuery) -> Result<PriceAnswer, SimError> {
    price(inner, "addonPrice", q.to_query()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_joined_with_exactly_one_slash() {
        for (base, want) in [
            ("https://billing01.corp.test:8443/wap/", "https://billing01.corp.test:8443/wap/subscriptions"),
            ("https://billing01.corp.test:8443/wap", "https://billing01.corp.test:8443/wap/subscriptions"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/subscriptions"),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000/subscriptions"),
            ("http://h/usage?x=1", "http://h/usage/subscriptions"),
        ] {
            assert_eq!(join_endpoint(&Url::parse(base).unwrap(), "subscriptions").as_str(), want, "{base}");
        }
        assert!(CallResult::Status(204).approves());
        assert!(CallResult::Status(302).approves());
        assert!(!CallResult::Status(403).approves());
        assert!(!CallResult::Timeout.approves());
    }
}
