//! [`NotificationHandler`]: the eight notification operations WAP calls (docs/protocol/resource-provider.md §4), with typed
//! inputs and outcomes that map onto the status codes of the spec.

use async_trait::async_trait;
use wap_types::rp::{QuotaUpdateBatch, QuotaUpdateResultBatch, ServiceUsageSummary, Subscription};
use wap_types::{ResourceProviderError, ServiceQuotaSetting};

use crate::context::CallContext;

/// What Create Subscription did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CreateOutcome {
    /// Provisioned synchronously: **201** with the subscription (`LifecycleState` 0 is filled in when absent).
    Created(Subscription),
    /// Provisioning continues in the background: **202** with the subscription (`LifecycleState` 1 Provisioning
    /// is filled in when absent). WAP then polls Get Subscription until `LifecycleState` is 0 or 5.
    Accepted(Subscription),
}

/// What Update Subscription did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UpdateOutcome {
    /// Applied: **200** with the subscription (`LifecycleState` 0 filled in when absent).
    Updated(Subscription),
    /// Being applied in the background (opt-in): **202** with the subscription (`LifecycleState` 2 Updating
    /// filled in when absent).
    Accepted(Subscription),
    /// The id is unknown: **404** + `ResourceProviderError` (`SubscriptionNotFound`).
    NotFound,
}

/// What Delete Subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteOutcome {
    /// Deleted: **200**, no body.
    Deleted,
    /// Deleting in the background: **202**, no body; Get then answers `LifecycleState` 3 Deleting until it is
    /// gone (404) or `LifecycleState` 4 Deleted.
    Accepted,
    /// The id was unknown: **200** as well (deleting is idempotent).
    NotFound,
}

/// A failed notification call: an HTTP status (4xx/5xx) and the `ResourceProviderError` body WAP shows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{status} {error}")]
#[non_exhaustive]
pub struct NotificationError {
    /// The status answered (400..=599).
    pub status: u16,
    /// The body (`Code`, `Message` localized per `Accept-Language`, …); boxed to keep `Result`s small.
    pub error: Box<ResourceProviderError>,
}

impl NotificationError {
    /// An error with a status (clamped to 400..=599; anything else becomes 500).
    pub fn new(status: u16, error: ResourceProviderError) -> Self {
        let status = if (400..=599).contains(&status) { status } else { 500 };
        NotificationError { status, error: Box::new(error) }
    }

    /// **400**: the request is not acceptable (e.g. an invalid quota value on Validate Quota).
    pub fn bad_request(error: ResourceProviderError) -> Self {
        Self::new(400, error)
    }

    /// **404**: the subscription is unknown.
    pub fn not_found(error: ResourceProviderError) -> Self {
        Self::new(404, error)
    }

    /// **409**: conflicts with the subscription's current state.
    pub fn conflict(error: ResourceProviderError) -> Self {
        Self::new(409, error)
    }

    /// **500**: the provider failed.
    pub fn internal(error: ResourceProviderError) -> Self {
        Self::new(500, error)
    }

    /// **503**: a dependency is unavailable; WAP may retry.
    pub fn unavailable(error: ResourceProviderError) -> Self {
        Self::new(503, error)
    }

    /// Whether the caller may retry the same call (5xx other than 501).
    pub fn is_retryable(&self) -> bool {
        self.status >= 500 && self.status != 501
    }
}

/// `?` on an I/O error in a [`NotificationHandler`]: **500** `InternalError` with a generic message (the error's
/// text, which may name paths, is logged at `warn`, not shown in the WAP portal).
impl From<std::io::Error> for NotificationError {
    fn from(error: std::io::Error) -> Self {
        internal_error(&error)
    }
}

/// `?` on any boxed error in a [`NotificationHandler`]: **500** `InternalError`, as for an I/O error.
impl From<Box<dyn std::error::Error + Send + Sync + 'static>> for NotificationError {
    fn from(error: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        internal_error(&*error)
    }
}

fn internal_error(error: &(dyn std::error::Error + 'static)) -> NotificationError {
    tracing::warn!(%error, "notification handler failed");
    NotificationError::internal(ResourceProviderError::new(
        "InternalError",
        "The resource provider failed to process the request.",
    ))
}

/// The notification side of a resource provider: one method per operation of docs/protocol/resource-provider.md §4.
///
/// The server parses and checks the request (auth, path, method, body), calls the method with a typed input and
/// the [`CallContext`], and writes the spec's status code and body for the outcome. Every `Err` becomes its status
/// with the `ResourceProviderError` as body.
///
/// Defaults (override as needed): [`usage_summary`](NotificationHandler::usage_summary) answers a summary with
/// `RetrievedSuccessfully: false` (the portal shows "not available" rather than an error);
/// [`validate_quota`](NotificationHandler::validate_quota) accepts every quota;
/// [`default_quota`](NotificationHandler::default_quota) answers `[]`.
#[async_trait]
pub trait NotificationHandler: Send + Sync + 'static {
    /// `POST subscriptions`: a subscription of a plan that includes this provider was created.
    ///
    /// A create for an id that already exists must answer as the first time did (the stored subscription, 201,
    /// or 202 while still provisioning): WAP retries.
    async fn create_subscription(
        &self,
        ctx: &CallContext,
        subscription: Subscription,
    ) -> Result<CreateOutcome, NotificationError>;

    /// `GET subscriptions/{id}`: the subscription as the provider holds it (WAP polls this after a 202).
    /// `None` answers 404.
    async fn get_subscription(&self, ctx: &CallContext, id: &str) -> Result<Option<Subscription>, NotificationError>;

    /// `PUT subscriptions/{id}`: name, state (RP numbering: 1 = suspended), admins or quota changed.
    async fn update_subscription(
        &self,
        ctx: &CallContext,
        subscription: Subscription,
    ) -> Result<UpdateOutcome, NotificationError>;

    /// `DELETE subscriptions/{id}`: remove the subscription's resources. Unknown ids answer 200.
    async fn delete_subscription(&self, ctx: &CallContext, id: &str) -> Result<DeleteOutcome, NotificationError>;

    /// `GET subscriptions/{id}/usagesummary`: the subscription's usage against its quota. `None` answers 404.
    ///
    /// Default: a summary named after the provider with `RetrievedSuccessfully: false` and an explanation.
    async fn usage_summary(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<Option<ServiceUsageSummary>, NotificationError> {
        let _ = id;
        Ok(Some(ServiceUsageSummary {
            service_name: ctx.provider_name().to_owned(),
            retrieved_successfully: false,
            error_message: Some("This resource provider does not report a usage summary.".to_owned()),
            usages: Some(Vec::new()),
            ..Default::default()
        }))
    }

    /// `PUT quota`: apply a plan's quota (`BaseQuota` plus one list per add-on) to the listed subscriptions.
    ///
    /// Called only with a non-empty `SubscriptionIdsToUpdate` (an empty list is answered 200 by the server).
    /// Put each id in `UpdatedSubscriptionIds` or `FailedSubscriptionIds` ([`QuotaResults`] helps); an id left out
    /// of both is reported failed. `Error` = one representative error.
    async fn update_quota(
        &self,
        ctx: &CallContext,
        batch: QuotaUpdateBatch,
    ) -> Result<QuotaUpdateResultBatch, NotificationError>;

    /// `PUT quota?validateOnly=true`: check the quota values only. `Err(NotificationError::bad_request(..))`
    /// answers 400 with a message in the caller's language ([`CallContext::preferred_language`]).
    ///
    /// Default: every quota is valid.
    async fn validate_quota(&self, ctx: &CallContext, batch: QuotaUpdateBatch) -> Result<(), NotificationError> {
        let _ = (ctx, batch);
        Ok(())
    }

    /// `GET defaultquota`: the quota a plan gets when an administrator adds this service.
    ///
    /// Default: `[]`.
    async fn default_quota(&self, ctx: &CallContext) -> Result<Vec<ServiceQuotaSetting>, NotificationError> {
        let _ = ctx;
        Ok(Vec::new())
    }
}

/// Builds a [`QuotaUpdateResultBatch`]: one call per subscription id.
#[derive(Debug, Clone, Default)]
pub struct QuotaResults {
    updated: Vec<String>,
    failed: Vec<String>,
    error: Option<ResourceProviderError>,
}

impl QuotaResults {
    /// No results yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The quota was applied to `subscription_id`.
    pub fn updated(&mut self, subscription_id: impl Into<String>) -> &mut Self {
        self.updated.push(subscription_id.into());
        self
    }

    /// The quota was not applied to `subscription_id`; the first error is kept as the representative one.
    pub fn failed(&mut self, subscription_id: impl Into<String>, error: ResourceProviderError) -> &mut Self {
        self.failed.push(subscription_id.into());
        self.error.get_or_insert(error);
        self
    }

    /// The wire answer (`Error` is `null` when nothing failed).
    pub fn finish(self) -> QuotaUpdateResultBatch {
        QuotaUpdateResultBatch {
            updated_subscription_ids: Some(self.updated),
            failed_subscription_ids: Some(self.failed),
            error: self.error,
            ..Default::default()
        }
    }
}

#[async_trait]
impl<H: NotificationHandler + ?Sized> NotificationHandler for std::sync::Arc<H> {
    async fn create_subscription(
        &self,
        ctx: &CallContext,
        subscription: Subscription,
    ) -> Result<CreateOutcome, NotificationError> {
        (**self).create_subscription(ctx, subscription).await
    }

    async fn get_subscription(&self, ctx: &CallContext, id: &str) -> Result<Option<Subscription>, NotificationError> {
        (**self).get_subscription(ctx, id).await
    }

    async fn update_subscription(
        &self,
        ctx: &CallContext,
        subscription: Subscription,
    ) -> Result<UpdateOutcome, NotificationError> {
        (**self).update_subscription(ctx, subscription).await
    }

    async fn delete_subscription(&self, ctx: &CallContext, id: &str) -> Result<DeleteOutcome, NotificationError> {
        (**self).delete_subscription(ctx, id).await
    }

    async fn usage_summary(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<Option<ServiceUsageSummary>, NotificationError> {
        (**self).usage_summary(ctx, id).await
    }

    async fn update_quota(
        &self,
        ctx: &CallContext,
        batch: QuotaUpdateBatch,
    ) -> Result<QuotaUpdateResultBatch, NotificationError> {
        (**self).update_quota(ctx, batch).await
    }

    async fn validate_quota(&self, ctx: &CallContext, batch: QuotaUpdateBatch) -> Result<(), NotificationError> {
        (**self).validate_quota(ctx, batch).await
    }

    async fn default_quota(&self, ctx: &CallContext) -> Result<Vec<ServiceQuotaSetting>, NotificationError> {
        (**self).default_quota(ctx).await
    }
}
