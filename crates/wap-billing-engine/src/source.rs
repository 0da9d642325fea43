//! The pull side as the engine sees it: [`FeedSource`] fetches one page of one feed.
//!
//! The production implementation sits on `wap-usage-client`; [`MemorySource`](crate::MemorySource) serves tests
//! and examples.

use std::fmt;

use async_trait::async_trait;
use wap_types::{
    AdminSubscription, FeedKind, NotificationState, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference,
    StartId, UsageEvent, UsageRecord,
};

/// One element of a page, typed by its feed.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    /// `/usage`.
    Usage(UsageRecord),
    /// `/billing/plans`.
    Plan(UsageEvent<Plan>),
    /// `/billing/addons`.
    Addon(UsageEvent<PlanAddon>),
    /// `/billing/planAddons`.
    PlanAddon(UsageEvent<PlanAddonReference>),
    /// `/billing/planServices`.
    PlanService(UsageEvent<ResourceProviderReference>),
    /// `/billing/subscriptions`.
    Subscription(UsageEvent<AdminSubscription>),
    /// `/billing/subscriptionAddons`.
    SubscriptionAddon(UsageEvent<PlanAddonReference>),
    /// A record whose `EventId` could be read but which does not parse as its type. The engine treats it as an
    /// adapter-side error for that record (retried, then the processor halts; usage-service.md §2.2). A page whose
    /// ids cannot be read at all is a [`SourceError`] instead.
    Malformed(MalformedItem),
}

/// A record of a page that does not parse as its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedItem {
    /// The feed.
    pub feed: FeedKind,
    /// Its `EventId`.
    pub event_id: i64,
    /// Why it does not parse (with the JSON path of the bad member).
    pub error: String,
    /// The record's JSON text (may be cut by the source).
    pub raw: String,
}

impl FeedItem {
    /// The feed the item belongs to.
    pub fn feed(&self) -> FeedKind {
        match self {
            FeedItem::Usage(_) => FeedKind::Usage,
            FeedItem::Plan(_) => FeedKind::Plans,
            FeedItem::Addon(_) => FeedKind::Addons,
            FeedItem::PlanAddon(_) => FeedKind::PlanAddons,
            FeedItem::PlanService(_) => FeedKind::PlanServices,
            FeedItem::Subscription(_) => FeedKind::Subscriptions,
            FeedItem::SubscriptionAddon(_) => FeedKind::SubscriptionAddons,
            FeedItem::Malformed(m) => m.feed,
        }
    }

    /// The `EventId`.
    pub fn event_id(&self) -> i64 {
        match self {
            FeedItem::Usage(r) => r.event_id,
            FeedItem::Plan(e) => e.event_id,
            FeedItem::Addon(e) => e.event_id,
            FeedItem::PlanAddon(e) => e.event_id,
            FeedItem::PlanService(e) => e.event_id,
            FeedItem::Subscription(e) => e.event_id,
            FeedItem::SubscriptionAddon(e) => e.event_id,
            FeedItem::Malformed(m) => m.event_id,
        }
    }

    /// The `NotificationState` of an event (`None` for usage records and malformed items).
    pub fn state(&self) -> Option<NotificationState> {
        match self {
            FeedItem::Usage(_) | FeedItem::Malformed(_) => None,
            FeedItem::Plan(e) => Some(e.state),
            FeedItem::Addon(e) => Some(e.state),
            FeedItem::PlanAddon(e) => Some(e.state),
            FeedItem::PlanService(e) => Some(e.state),
            FeedItem::Subscription(e) => Some(e.state),
            FeedItem::SubscriptionAddon(e) => Some(e.state),
        }
    }

    /// Sets the `NotificationState` of an event (no effect on usage records and malformed items).
    pub fn set_state(&mut self, state: NotificationState) {
        match self {
            FeedItem::Usage(_) | FeedItem::Malformed(_) => {}
            FeedItem::Plan(e) => e.state = state,
            FeedItem::Addon(e) => e.state = state,
            FeedItem::PlanAddon(e) => e.state = state,
            FeedItem::PlanService(e) => e.state = state,
            FeedItem::Subscription(e) => e.state = state,
            FeedItem::SubscriptionAddon(e) => e.state = state,
        }
    }
}

/// What went wrong fetching a page. Always a **WAP-side** error: the engine retries it with back-off until it
/// succeeds and never skips anything because of it (adapter-engine.md §3) — except a permanent one
/// ([`SourceError::is_permanent`]), which halts the processor after `RetryMaxAttempts` in a row so an operator can
/// decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
#[non_exhaustive]
pub struct SourceError {
    /// The class of failure.
    pub kind: SourceErrorKind,
    /// What happened (URL without credentials, status, body snippet).
    pub message: String,
}

/// The class of a [`SourceError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// Network, DNS, TLS, timeout.
    Transport,
    /// A non-success HTTP status.
    Status(u16),
    /// A body that is not a JSON array of records with readable ids.
    Body,
    /// Anything else.
    Other,
}

impl fmt::Display for SourceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceErrorKind::Transport => f.write_str("transport error"),
            SourceErrorKind::Status(s) => write!(f, "HTTP status {s}"),
            SourceErrorKind::Body => f.write_str("unreadable page"),
            SourceErrorKind::Other => f.write_str("source error"),
        }
    }
}

impl SourceError {
    /// An error of the given kind.
    pub fn new(kind: SourceErrorKind, message: impl Into<String>) -> Self {
        SourceError { kind, message: message.into() }
    }

    /// Whether retrying can help: `false` for [`SourceError::is_permanent`] errors. Transient errors are retried
    /// until they pass; permanent ones `RetryMaxAttempts` times in a row, then the processor halts on the
    /// position (an operator can skip it).
    pub fn is_retryable(&self) -> bool {
        !self.is_permanent()
    }

    /// Whether WAP refuses this request for good: HTTP 400 (bad request) or 404 (not found), or a page whose
    /// records cannot be read (an unreadable `EventId`, an item of another feed).
    pub fn is_permanent(&self) -> bool {
        matches!(self.kind, SourceErrorKind::Status(400 | 404) | SourceErrorKind::Body)
    }

    /// Whether the error points at the adapter's configuration (401/403: wrong Usage Service credentials); logged
    /// as such on each attempt, still retried.
    pub fn is_configuration_error(&self) -> bool {
        matches!(self.kind, SourceErrorKind::Status(401 | 403))
    }
}

/// Fetches pages of the Usage Service feeds (usage-service.md §2.1): the items with `EventId >= start` (inclusive
/// reading; see `StartIdInclusive`), at most `batch_size` of them, in any order. An empty vector means the feed has
/// nothing more for now.
#[async_trait]
pub trait FeedSource: Send + Sync + 'static {
    /// One page of `feed` from `start`. Every item must belong to `feed`.
    async fn fetch(&self, feed: FeedKind, start: StartId, batch_size: u32) -> Result<Vec<FeedItem>, SourceError>;
}
