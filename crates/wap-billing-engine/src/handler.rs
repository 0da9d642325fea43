//! The billing-system side: the traits a system-specific part implements (docs/protocol/adapter-engine.md §2, §4).
//!
//! # Why handlers must be idempotent
//!
//! The engine commits its cursor only **after** a handler returned `Ok`, in its own database transaction. Between
//! the billing system's commit (inside the handler) and that transaction there is always a gap: a crash, a lost
//! lease or a failing state database in that gap means the engine never recorded the event, so it delivers it
//! **again** after the restart or on the next leader. Failed attempts are also retried: a handler may be called up
//! to `RetryMaxAttempts` (5) times for one event, plus any number of `DependencyNotReady` answers, plus once more
//! after each crash. A handler must therefore make a repeated call harmless:
//!
//! * key the billing-side change on the [`IdempotencyKey`] (`(feed, EventId)`) or on the WAP id of the entity, and
//!   check the billing system's current state before changing it (e.g. "subscription already exists" = done);
//! * finish or clean up half-done work from an earlier attempt;
//! * for usage, store each record under its `(usage, EventId)` key: a batch may come again with **different
//!   boundaries** (pages are re-fetched), so deduplicate per record, not per batch.
//!
//! A billing system that **cannot** make a call harmless (every call appends a line) declares
//! [`Delivery::Journaled`] instead and implements `reconcile`: the engine then journals each call and reconciles
//! before sending anything again, see [`journal`](crate::journal).
//!
//! What the engine guarantees in return: an event it has committed is never delivered again; events of one feed
//! arrive one at a time in ascending `EventId`; Rejected events (NotificationState 1) never arrive; a handler call
//! is dropped (cancelled at its next `.await`) the moment the instance loses its lease, and at its deadline
//! ([`EventContext::deadline`]), which ends before the lease could expire; a new leader that took over a lease
//! its holder did not release waits for that deadline before its first call. A panicking handler halts its
//! processor on the event (the panic message is in the halt). The call carries the lease generation
//! ([`EventContext::generation`]): a billing system that keeps it can refuse a deposed leader outright (see
//! docs/operations.md, "Fencing").

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use wap_types::{
    AdminSubscription, EventMethod, FeedKind, NotificationState, Plan, PlanAddon, PlanAddonReference,
    ResourceProviderReference, UsageRecord, WapDateTime,
};

use crate::identity::IdentityMap;
use crate::journal::{Delivery, Intent, Reconciliation};
use crate::usage_lines::{UsageLines, UsageShape};

/// The idempotency key of an event: its feed and `EventId` (ids are unique within a feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey {
    /// The feed.
    pub feed: FeedKind,
    /// The `EventId`.
    pub event_id: i64,
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.feed, self.event_id)
    }
}

/// What happened to an entity, with the entity as received.
///
/// `Patched` carries a **partial** entity: a member that is `None` (missing or `null` on the wire) is unchanged,
/// not cleared (docs/protocol/usage-service.md §4). The engine does not merge a Patch into earlier state. An unrecognised
/// `Method` arrives as `Updated` (its text is in [`EventContext::method`]); a `Post` for a WAP id that the
/// [`IdentityMap`] already maps arrives as `Updated` too (docs/protocol/adapter-engine.md §8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EntityChange<'a, T> {
    /// `Post`: created (for links: linked; for subscription add-ons: bought).
    Created(&'a T),
    /// `Put` or an unknown method: the full entity after the change.
    Updated(&'a T),
    /// `Patch`: only the changed members are `Some`.
    Patched(&'a T),
    /// `Delete`: removed.
    Deleted(&'a T),
}

impl<'a, T> EntityChange<'a, T> {
    /// The entity.
    pub fn entity(&self) -> &'a T {
        match *self {
            EntityChange::Created(e)
            | EntityChange::Updated(e)
            | EntityChange::Patched(e)
            | EntityChange::Deleted(e) => e,
        }
    }

    /// `created`, `updated`, `patched` or `deleted`.
    pub fn verb(&self) -> &'static str {
        match self {
            EntityChange::Created(_) => "created",
            EntityChange::Updated(_) => "updated",
            EntityChange::Patched(_) => "patched",
            EntityChange::Deleted(_) => "deleted",
        }
    }
}

/// Everything about an event besides its entity.
#[derive(Clone)]
pub struct EventContext<'a> {
    /// `(feed, EventId)`: the idempotency key.
    pub key: IdempotencyKey,
    /// The wire `Method` as parsed.
    pub method: &'a EventMethod,
    /// The `NotificationState` (0 Acknowledged or 3 Approved: only these are applied).
    pub state: NotificationState,
    /// `EntityParentId`: the plan of a plan link, the subscription of a subscription add-on.
    pub entity_parent_id: Option<&'a str>,
    /// `NotificationEventTimeCreated`.
    pub time_created: Option<&'a WapDateTime>,
    /// The entity's JSON exactly as received (the `planAddons`/`planServices` shapes are guesses: look here).
    pub raw_entity: &'a str,
    /// Which call this is for the event in this run: 1, 2, … (`DependencyNotReady` answers count too).
    pub attempt: u32,
    /// The billing id the identity map holds for the entity's WAP id (plans, add-ons, subscriptions, add-on
    /// instances), when an identity map is configured.
    pub billing_id: Option<String>,
    /// The identity map, when configured (to map users, parents, or to record a new mapping after a create).
    /// Writes through it are fenced: they are refused ([`StoreError::Fenced`](crate::StoreError::Fenced)) once
    /// this instance has lost the lease it holds under [`EventContext::generation`].
    pub identity: Option<Arc<dyn IdentityMap>>,
    /// The lease generation (fencing token) this call runs under. A billing system that can store it should
    /// refuse a write carrying a lower generation than one it has seen: that writer was deposed.
    pub generation: i64,
    /// When this call is cut (dropped at its next `.await`): the earlier of `HandlerTimeoutMilliseconds` and the
    /// end of the lease as this instance knows it. Pass it on to the billing system's client as its timeout;
    /// blocking work spawned by the handler is not stopped by the engine and must honour it itself.
    pub deadline: tokio::time::Instant,
}

impl fmt::Debug for EventContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventContext")
            .field("key", &self.key)
            .field("method", &self.method)
            .field("state", &self.state)
            .field("entity_parent_id", &self.entity_parent_id)
            .field("attempt", &self.attempt)
            .field("billing_id", &self.billing_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A failed handler call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// Something the change needs is not in the billing system yet (e.g. usage for a subscription not yet synced,
    /// an add-on bought in a subscription still pending approval). Retried every `RetrySleepMilliseconds` without
    /// spending attempts until `DependencyWaitMaxSeconds` have passed since the first such answer for the event;
    /// after that each one spends an attempt. The event processor moves on to later feeds meanwhile and drains the
    /// earlier ones again before retrying.
    #[error("dependency not ready: {reason}")]
    DependencyNotReady {
        /// What is missing.
        reason: String,
    },
    /// The billing system refused or failed. Spends one of `RetryMaxAttempts` attempts; then the processor halts.
    #[error("{message}")]
    Failed {
        /// What failed (no credentials).
        message: String,
        /// For a usage batch: the `EventId` of the record that failed. The engine then applies the records before
        /// it as their own batch and retries the failing record alone, so a halt (and an operator `skip`) names
        /// that one record.
        record_event_id: Option<i64>,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// The billing system refused the call because it has already seen a higher lease generation
    /// ([`EventContext::generation`]) for this feed: the calling instance was deposed by a newer leader. Permanent
    /// for this term, and **not** a billing failure: the engine spends no attempt, halts nothing, ends its term as
    /// if a fenced state-store write had been refused, and lets the elector find out that the lease is lost.
    #[error("deposed leader: the billing system has seen lease generation {seen} for {feed}; this call carried {generation}")]
    Deposed {
        /// The feed of the refused call.
        feed: FeedKind,
        /// The generation the call carried.
        generation: i64,
        /// The highest generation the billing system has seen for the feed.
        seen: i64,
    },
}

impl HandlerError {
    /// A [`HandlerError::DependencyNotReady`].
    pub fn dependency_not_ready(reason: impl Into<String>) -> Self {
        HandlerError::DependencyNotReady { reason: reason.into() }
    }

    /// A [`HandlerError::Failed`] with a message.
    pub fn failed(message: impl Into<String>) -> Self {
        HandlerError::Failed { message: message.into(), record_event_id: None, source: None }
    }

    /// A [`HandlerError::Failed`] wrapping an error.
    pub fn from_error(error: impl StdError + Send + Sync + 'static) -> Self {
        HandlerError::Failed { message: error.to_string(), record_event_id: None, source: Some(Box::new(error)) }
    }

    /// Names the usage record that failed (see [`HandlerError::Failed::record_event_id`]). No effect on
    /// `DependencyNotReady`.
    pub fn for_record(mut self, event_id: i64) -> Self {
        if let HandlerError::Failed { record_event_id, .. } = &mut self {
            *record_event_id = Some(event_id);
        }
        self
    }

    /// A [`HandlerError::Deposed`]: a billing system that stores lease generations refuses `generation` because it
    /// has seen `seen` (higher) for `feed`.
    pub fn deposed(feed: FeedKind, generation: i64, seen: i64) -> Self {
        HandlerError::Deposed { feed, generation, seen }
    }

    /// Whether this is [`HandlerError::Deposed`].
    pub fn is_deposed(&self) -> bool {
        matches!(self, HandlerError::Deposed { .. })
    }

    /// Whether this is `DependencyNotReady`.
    pub fn is_dependency_not_ready(&self) -> bool {
        matches!(self, HandlerError::DependencyNotReady { .. })
    }

    /// The failing usage record named by [`HandlerError::for_record`].
    pub fn record_event_id(&self) -> Option<i64> {
        match self {
            HandlerError::Failed { record_event_id, .. } => *record_event_id,
            HandlerError::DependencyNotReady { .. } | HandlerError::Deposed { .. } => None,
        }
    }
}

/// `?` on an I/O error inside a handler: a [`HandlerError::Failed`] wrapping it (one attempt spent).
impl From<std::io::Error> for HandlerError {
    fn from(error: std::io::Error) -> Self {
        HandlerError::from_error(error)
    }
}

/// `?` on any boxed error (`Box<dyn Error + Send + Sync>`, what `anyhow`-free code and many clients return): a
/// [`HandlerError::Failed`] wrapping it.
impl From<Box<dyn StdError + Send + Sync>> for HandlerError {
    fn from(error: Box<dyn StdError + Send + Sync>) -> Self {
        HandlerError::Failed { message: error.to_string(), record_event_id: None, source: Some(error) }
    }
}

/// `?` on a state-store error (an [`IdentityMap`] call inside a handler): a [`HandlerError::Failed`] wrapping it.
impl From<crate::store::StoreError> for HandlerError {
    fn from(error: crate::store::StoreError) -> Self {
        HandlerError::from_error(error)
    }
}

/// `?` on a JSON error (e.g. parsing [`EventContext::raw_entity`]): a [`HandlerError::Failed`] wrapping it.
impl From<serde_json::Error> for HandlerError {
    fn from(error: serde_json::Error) -> Self {
        HandlerError::from_error(error)
    }
}

/// A [`HandlerError::Failed`] with this message (`Err("no such customer")?`, `Err(format!(…))?`).
impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::failed(message)
    }
}

/// A [`HandlerError::Failed`] with this message.
impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::failed(message)
    }
}

/// Applies plan, add-on and subscription events to the billing system: one typed method per entity, receiving
/// the [`EntityChange`] (created / updated / patched / deleted) and the [`EventContext`].
///
/// Every method defaults to accepting and ignoring the change (logged at debug level), so a billing system
/// implements only the entities it keeps; a method it does implement sees every kind of change through an
/// exhaustive `match`. Implementations must be idempotent (see the [module docs](self)).
///
/// ```
/// use wap_billing_engine::wap_types::AdminSubscription;
/// use wap_billing_engine::{async_trait, EntityChange, EventContext, EventHandler, HandlerError};
///
/// struct CsvBilling {
///     path: std::path::PathBuf,
/// }
///
/// #[async_trait] // re-exported: no dependency on async-trait needed
/// impl EventHandler for CsvBilling {
///     async fn subscription(
///         &self,
///         ctx: &EventContext<'_>,
///         change: EntityChange<'_, AdminSubscription>,
///     ) -> Result<(), HandlerError> {
///         let sub = change.entity();
///         let line = format!("{},{},{}\n", ctx.key, change.verb(), sub.subscription_id);
///         // Idempotent: a line already written for this key is not written again.
///         let done = std::fs::read_to_string(&self.path).unwrap_or_default();
///         if !done.lines().any(|l| l.starts_with(&format!("{},", ctx.key))) {
///             std::fs::write(&self.path, done + &line)?; // `?` on an io::Error: a failed attempt
///         }
///         Ok(())
///     }
///     // plan, addon, plan_addon, plan_service, subscription_addon: accepted and ignored by default.
/// }
/// ```
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// `/billing/plans`: plan created, updated (including made Public or Decommissioned), patched, deleted.
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// `/billing/addons`: add-on created, updated, patched, deleted.
    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// `/billing/planAddons`: add-on linked to a plan (`Created`), link updated, unlinked (`Deleted`). The plan is
    /// [`EventContext::entity_parent_id`].
    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// `/billing/planServices`: service (resource provider) added to a plan, link updated, removed. The plan is
    /// [`EventContext::entity_parent_id`].
    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// `/billing/subscriptions`: subscription created, updated (admin `State` 1 Active / 2 Suspended drive
    /// activate / suspend), patched, deleted.
    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// `/billing/subscriptionAddons`: add-on bought by a subscription, instance updated, removed. The subscription
    /// is [`EventContext::entity_parent_id`].
    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        ignored(ctx, change.verb());
        Ok(())
    }

    /// The delivery path this billing system needs (default [`Delivery::IdempotentByKey`]). With
    /// [`Delivery::Journaled`] implement [`EventHandler::reconcile`] too.
    fn delivery(&self) -> Delivery {
        Delivery::IdempotentByKey
    }

    /// The token stored with a journaled call's [`Intent`] (default: [`Intent::default_token`], computable from
    /// [`EventContext::key`]). Store it on what the call creates, so that `reconcile` can find it.
    fn intent_token(&self, intent: &Intent) -> Option<String> {
        let _ = intent;
        None
    }

    /// Journaled path: whether the billing system holds the change of an open intent (looked up by its token or by
    /// WAP ids). The default answers [`Reconciliation::Unknown`], so an open intent halts the processor in doubt. An
    /// `Err` is retried `RetryMaxAttempts` times, then the processor halts in doubt.
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(Reconciliation::unknown(format!("the event handler cannot reconcile {intent}")))
    }
}

fn ignored(ctx: &EventContext<'_>, verb: &str) {
    tracing::debug!(feed = %ctx.key.feed, event_id = ctx.key.event_id, verb, "event not handled by the billing side; accepted");
}

/// A batch of usage records, ascending by `EventId`, none of them committed before.
#[derive(Debug, Clone, Copy)]
pub struct UsageBatch<'a> {
    /// The records.
    pub records: &'a [UsageRecord],
    /// Which call this is for the batch's first record in this run: 1, 2, …
    pub attempt: u32,
    /// The lease generation (fencing token) this call runs under (see [`EventContext::generation`]).
    pub generation: i64,
    /// When this call is cut (see [`EventContext::deadline`]).
    pub deadline: tokio::time::Instant,
}

impl<'a> UsageBatch<'a> {
    /// A batch outside the engine (tests, tools): generation 0, no practical deadline (a year from now).
    pub fn new(records: &'a [UsageRecord], attempt: u32) -> Self {
        UsageBatch {
            records,
            attempt,
            generation: 0,
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(365 * 86_400),
        }
    }

    /// The first record's `EventId`.
    pub fn first_event_id(&self) -> i64 {
        self.records.first().map_or(0, |r| r.event_id)
    }

    /// The last record's `EventId`.
    pub fn last_event_id(&self) -> i64 {
        self.records.last().map_or(0, |r| r.event_id)
    }
}

/// Applies usage records to the billing system.
///
/// The engine hands over batches (the uncommitted records of one page, or less); on `Ok` it commits the batch's id
/// range and the cursor in one transaction. The handler must store records idempotently **per record**
/// (`(usage, EventId)`), see the [module docs](self).
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Mutex;
/// use wap_billing_engine::wap_types::{StringMap, UsageRecord, WapDateTime};
/// use wap_billing_engine::{async_trait, HandlerError, UsageBatch, UsageHandler};
///
/// /// Keeps each record once, by EventId (a batch may come again with other boundaries).
/// #[derive(Default)]
/// struct Meters(Mutex<BTreeMap<i64, UsageRecord>>);
///
/// #[async_trait]
/// impl UsageHandler for Meters {
///     async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
///         let mut stored = self.0.lock().map_err(|_| "meter store poisoned")?; // a &str converts
///         for record in batch.records {
///             stored.entry(record.event_id).or_insert_with(|| record.clone());
///         }
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let record = UsageRecord {
///     event_id: 7,
///     subscription_id: "6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17".into(),
///     start_time: WapDateTime::parse("2015-06-02T08:00:00").unwrap(),
///     end_time: WapDateTime::parse("2015-06-02T09:00:00").unwrap(),
///     resources: StringMap::new(),
///     ..Default::default()
/// };
/// let meters = Meters::default();
/// let records = [record.clone(), record];
/// meters.apply_usage(UsageBatch::new(&records, 1)).await.unwrap();
/// assert_eq!(meters.0.lock().unwrap().len(), 1, "stored once");
/// # }
/// ```
#[async_trait]
pub trait UsageHandler: Send + Sync + 'static {
    /// Applies a batch. On failure, name the failing record with [`HandlerError::for_record`] when known.
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError>;

    /// The delivery path this billing system needs (default [`Delivery::IdempotentByKey`]). With
    /// [`Delivery::Journaled`] implement [`UsageHandler::reconcile`] too.
    fn delivery(&self) -> Delivery {
        Delivery::IdempotentByKey
    }

    /// How usage is handed over (default [`UsageShape::PerRecord`]: [`UsageHandler::apply_usage`]). With
    /// [`UsageShape::PerMeter`] the engine calls [`UsageHandler::apply_usage_lines`] instead.
    fn usage_shape(&self) -> UsageShape {
        UsageShape::PerRecord
    }

    /// [`UsageShape::PerMeter`]: applies one batch as lines aggregated per (subscription, resource, meter, period),
    /// each with its contributing `EventId` range. The default fails (a handler choosing `PerMeter` implements it).
    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        Err(HandlerError::failed(format!(
            "the usage handler chose UsageShape::PerMeter but does not implement apply_usage_lines ({} lines)",
            lines.lines.len()
        )))
    }

    /// The token stored with a journaled call's [`Intent`] (default: [`Intent::default_token`], computable from
    /// the batch's first and last `EventId`). Store it on what the call creates, so that `reconcile` can find it.
    fn intent_token(&self, intent: &Intent) -> Option<String> {
        let _ = intent;
        None
    }

    /// Journaled path: whether the billing system holds the usage of an open intent (looked up by its token or
    /// its `EventId` range): all of it ([`Reconciliation::Applied`]), none of it ([`Reconciliation::NotApplied`]),
    /// or it cannot tell ([`Reconciliation::Unknown`], e.g. part of it: the processor halts in doubt). An `Err` is
    /// retried `RetryMaxAttempts` times, then the processor halts in doubt.
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        Ok(Reconciliation::unknown(format!("the usage handler cannot reconcile {intent}")))
    }
}

#[async_trait]
impl<T: EventHandler + ?Sized> EventHandler for Arc<T> {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        (**self).plan(ctx, change).await
    }
    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        (**self).addon(ctx, change).await
    }
    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        (**self).plan_addon(ctx, change).await
    }
    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        (**self).plan_service(ctx, change).await
    }
    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        (**self).subscription(ctx, change).await
    }
    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        (**self).subscription_addon(ctx, change).await
    }
    fn delivery(&self) -> Delivery {
        (**self).delivery()
    }
    fn intent_token(&self, intent: &Intent) -> Option<String> {
        (**self).intent_token(intent)
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        (**self).reconcile(intent).await
    }
}

#[async_trait]
impl<T: UsageHandler + ?Sized> UsageHandler for Arc<T> {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        (**self).apply_usage(batch).await
    }
    fn delivery(&self) -> Delivery {
        (**self).delivery()
    }
    fn usage_shape(&self) -> UsageShape {
        (**self).usage_shape()
    }
    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        (**self).apply_usage_lines(lines).await
    }
    fn intent_token(&self, intent: &Intent) -> Option<String> {
        (**self).intent_token(intent)
    }
    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        (**self).reconcile(intent).await
    }
}
