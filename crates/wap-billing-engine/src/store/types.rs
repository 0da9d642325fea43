//! The records kept in the state database (docs/protocol/adapter-engine.md §4, §5, §8).

use std::fmt;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
use chrono::TimeZone;
use chrono::{DateTime, Utc};
use wap_types::FeedKind;

/// The two pull processors. Each has its own lease, halt status and loop (docs/protocol/adapter-engine.md §1, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProcessorKind {
    /// The notification (event) processor: the six `/billing/*` feeds.
    Notification,
    /// The usage processor: `/usage`.
    Usage,
}

impl ProcessorKind {
    /// Both processors.
    pub const ALL: [ProcessorKind; 2] = [ProcessorKind::Notification, ProcessorKind::Usage];

    /// The stable name used as a key in the state database: `notification` or `usage`.
    pub fn name(self) -> &'static str {
        match self {
            ProcessorKind::Notification => "notification",
            ProcessorKind::Usage => "usage",
        }
    }

    /// The processor for a name written by [`ProcessorKind::name`] (any ASCII case).
    pub fn from_name(name: &str) -> Option<Self> {
        ProcessorKind::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The processor that owns a feed.
    pub fn for_feed(feed: FeedKind) -> Self {
        if feed.is_event_feed() {
            ProcessorKind::Notification
        } else {
            ProcessorKind::Usage
        }
    }

    /// The feeds this processor drains, in the order of a cycle.
    pub fn feeds(self) -> &'static [FeedKind] {
        const USAGE: [FeedKind; 1] = [FeedKind::Usage];
        match self {
            ProcessorKind::Notification => &FeedKind::EVENT_FEEDS,
            ProcessorKind::Usage => &USAGE,
        }
    }
}

impl fmt::Display for ProcessorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PendingApproval event a feed is held at (docs/protocol/usage-service.md §3.3), kept so the wait survives restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedHold {
    /// The held event.
    pub event_id: i64,
    /// When the engine first saw it pending.
    pub since: DateTime<Utc>,
}

/// The retry state of one unit (an event, or a usage batch by its first `EventId`) the billing side failed or
/// answered `DependencyNotReady` for, kept in the state store so that a restarted process (not only a new term of
/// the same process) goes on counting toward the halt and a dependency wait keeps its start time. Deleted when
/// the unit is applied or halts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitAttempts {
    /// The feed.
    pub feed: FeedKind,
    /// The unit's (first) `EventId`.
    pub event_id: i64,
    /// Failed attempts so far (toward `RetryMaxAttempts`).
    pub attempts: u32,
    /// Since when the billing side answers `DependencyNotReady` (toward `DependencyWaitMaxSeconds`).
    pub dependency_since: Option<DateTime<Utc>>,
}

/// The stored position of one feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedCursor {
    /// The feed.
    pub feed: FeedKind,
    /// The last committed `EventId` (`None`: nothing committed yet, the feed starts at `InitialStartId`).
    pub last_event_id: Option<i64>,
    /// The last successful poll of the feed.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// The PendingApproval event the feed is held at, if any.
    pub hold: Option<FeedHold>,
}

impl FeedCursor {
    /// A feed with nothing stored.
    pub fn empty(feed: FeedKind) -> Self {
        FeedCursor { feed, last_event_id: None, last_poll_at: None, hold: None }
    }
}

/// What happened to a processed event (the `outcome` column of `processed_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessedOutcome {
    /// The billing side reported success.
    Applied,
    /// NotificationState 1 (Rejected): never delivered, recorded and passed.
    SkippedRejected,
    /// An operator skipped it after a halt (audited).
    SkippedByOperator,
}

impl ProcessedOutcome {
    /// The stored name: `applied`, `skipped_rejected`, `skipped_by_operator`.
    pub fn name(self) -> &'static str {
        match self {
            ProcessedOutcome::Applied => "applied",
            ProcessedOutcome::SkippedRejected => "skipped_rejected",
            ProcessedOutcome::SkippedByOperator => "skipped_by_operator",
        }
    }

    /// The outcome for a stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        [ProcessedOutcome::Applied, ProcessedOutcome::SkippedRejected, ProcessedOutcome::SkippedByOperator]
            .into_iter()
            .find(|o| o.name() == name)
    }
}

impl fmt::Display for ProcessedOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `processed_event` row. An event feed writes one row per event (`event_id == last_event_id`); the usage
/// processor writes one row per committed batch, covering the id range `event_id..=last_event_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedEvent {
    /// The feed.
    pub feed: FeedKind,
    /// The first `EventId` covered.
    pub event_id: i64,
    /// The last `EventId` covered (equal to `event_id` for events).
    pub last_event_id: i64,
    /// What happened.
    pub outcome: ProcessedOutcome,
    /// When it was committed.
    pub processed_at: DateTime<Utc>,
}

impl ProcessedEvent {
    /// Whether this row covers `event_id`.
    pub fn covers(&self, event_id: i64) -> bool {
        (self.event_id..=self.last_event_id).contains(&event_id)
    }
}

/// What a processor commits after the billing side succeeded: the `processed_event` row and the new cursor, in one
/// transaction with the lease check (docs/protocol/adapter-engine.md §4 rule 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCommit {
    /// The feed.
    pub feed: FeedKind,
    /// The first `EventId` of the unit (the event, or the usage batch).
    pub first_event_id: i64,
    /// The last `EventId` of the unit; the cursor moves to it (never backwards).
    pub last_event_id: i64,
    /// What happened.
    pub outcome: ProcessedOutcome,
    /// When.
    pub at: DateTime<Utc>,
}

/// Why a processor halted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaltReason {
    /// The billing side failed `RetryMaxAttempts` times (or kept answering `DependencyNotReady` past
    /// `DependencyWaitMaxSeconds` and then failed).
    HandlerFailed,
    /// The item cannot be processed as received: an unknown `NotificationState` or an entity that does not parse.
    InvalidItem,
    /// The event stayed PendingApproval longer than `PendingApprovalMaxWaitSeconds`.
    PendingApprovalTimeout,
    /// A journaled billing call whose outcome nobody knows: the handler's reconcile answered `Unknown` (or kept
    /// failing). The halt names the open [`Intent`](crate::journal::Intent); an operator resolves it with
    /// [`Operator::resolve_in_doubt`](crate::Operator::resolve_in_doubt).
    InDoubt,
    /// The handler panicked on the item (the panic message is in the halt's error). Not retried.
    HandlerPanicked,
    /// WAP answered the fetch at this position with a permanent error (HTTP 400 or 404) or a page whose records
    /// cannot be read, `RetryMaxAttempts` times in a row. `skip` passes over the named id.
    WapRejected,
    /// WAP has purged history the adapter never read: the first id it still serves lies above the cursor + 1.
    /// The halt names the lost range; only an operator's acknowledgement (`skip`) moves past it.
    HistoryLost,
    /// A reason written by a newer version of the engine.
    Other(String),
}

impl HaltReason {
    /// The stored name.
    pub fn name(&self) -> &str {
        match self {
            HaltReason::HandlerFailed => "handler_failed",
            HaltReason::InvalidItem => "invalid_item",
            HaltReason::PendingApprovalTimeout => "pending_approval_timeout",
            HaltReason::InDoubt => "in_doubt",
            HaltReason::HandlerPanicked => "handler_panicked",
            HaltReason::WapRejected => "wap_rejected",
            HaltReason::HistoryLost => "history_lost",
            HaltReason::Other(s) => s,
        }
    }

    /// The reason for a stored name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "handler_failed" => HaltReason::HandlerFailed,
            "invalid_item" => HaltReason::InvalidItem,
            "pending_approval_timeout" => HaltReason::PendingApprovalTimeout,
            "in_doubt" => HaltReason::InDoubt,
            "handler_panicked" => HaltReason::HandlerPanicked,
            "wap_rejected" => HaltReason::WapRejected,
            "history_lost" => HaltReason::HistoryLost,
            other => HaltReason::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for HaltReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A stored halt: the processor waits for an operator's `resume` or `skip` (docs/protocol/adapter-engine.md §3). Survives
/// restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaltStatus {
    /// The halted processor.
    pub processor: ProcessorKind,
    /// The feed of the failing item.
    pub feed: FeedKind,
    /// The failing `EventId` (for a usage batch: its first record).
    pub event_id: i64,
    /// The last `EventId` a `skip` would pass over (equal to `event_id` except for a usage batch whose failing record
    /// the handler did not name).
    pub last_event_id: i64,
    /// Why.
    pub reason: HaltReason,
    /// The last error, as text.
    pub error: String,
    /// Attempts spent.
    pub attempts: u32,
    /// When the processor halted.
    pub halted_at: DateTime<Utc>,
}

impl fmt::Display for HaltStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} processor halted on {} event {}", self.processor, self.feed, self.event_id)?;
        if self.last_event_id != self.event_id {
            write!(f, "..={}", self.last_event_id)?;
        }
        write!(f, " ({}, {} attempts): {}", self.reason, self.attempts, self.error)
    }
}

/// The event an operator command means (the feed and the halted `EventId`, as the operator saw it in the halt).
/// `resume` and `skip` given one act only when the stored halt is on that event, so a stale view or a retried
/// request never acts on a later halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HaltTarget {
    /// The feed of the halted event.
    pub feed: FeedKind,
    /// The halted `EventId` (for a usage range or a lost-history gap: its first id).
    pub event_id: i64,
}

impl fmt::Display for HaltTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} event {}", self.feed, self.event_id)
    }
}

impl HaltStatus {
    /// The event this halt is on.
    pub fn target(&self) -> HaltTarget {
        HaltTarget { feed: self.feed, event_id: self.event_id }
    }

    /// [`StoreError::HaltMismatch`](super::StoreError::HaltMismatch) unless `expected` (when given) is this
    /// halt's event.
    pub(crate) fn check(&self, expected: Option<HaltTarget>) -> Result<(), super::StoreError> {
        match expected {
            Some(e) if e != self.target() => Err(super::StoreError::HaltMismatch {
                processor: self.processor,
                expected: e.to_string(),
                halted: self.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// One `lease` row: who runs a processor (docs/protocol/adapter-engine.md §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The processor.
    pub processor: ProcessorKind,
    /// The holder's instance id (`None` after a release).
    pub holder: Option<String>,
    /// The fencing token: bumped on every acquisition.
    pub generation: i64,
    /// When the lease expires unless renewed (store clock).
    pub expires_at: DateTime<Utc>,
}

/// Proof of leadership carried by every fenced write: the write succeeds only while the lease row still has this
/// holder and generation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    /// The processor.
    pub processor: ProcessorKind,
    /// This instance's id.
    pub holder: String,
    /// The generation this instance acquired.
    pub generation: i64,
}

/// What an audit log entry records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A processor halted (written by the engine).
    Halt,
    /// An operator resumed a halted processor.
    Resume,
    /// An operator skipped the halted event.
    Skip,
    /// An identity mapping was set or changed.
    IdentitySet,
    /// An identity mapping was deleted.
    IdentityDelete,
    /// An operator resolved an in-doubt intent (applied / send again / skip).
    Resolve,
    /// An action written by a newer version of the engine.
    Other(String),
}

impl AuditAction {
    /// The stored name.
    pub fn name(&self) -> &str {
        match self {
            AuditAction::Halt => "halt",
            AuditAction::Resume => "resume",
            AuditAction::Skip => "skip",
            AuditAction::IdentitySet => "identity_set",
            AuditAction::IdentityDelete => "identity_delete",
            AuditAction::Resolve => "resolve",
            AuditAction::Other(s) => s,
        }
    }

    /// The action for a stored name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "halt" => AuditAction::Halt,
            "resume" => AuditAction::Resume,
            "skip" => AuditAction::Skip,
            "identity_set" => AuditAction::IdentitySet,
            "identity_delete" => AuditAction::IdentityDelete,
            "resolve" => AuditAction::Resolve,
            other => AuditAction::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number (ascending).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: an operator name, or the instance id for engine-written entries.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// The processor concerned, if any.
    pub processor: Option<ProcessorKind>,
    /// The feed concerned, if any.
    pub feed: Option<FeedKind>,
    /// The event concerned, if any.
    pub event_id: Option<i64>,
    /// Free text: the error, the skip reason, the mapping.
    pub detail: String,
}

/// What a WAP id in the identity map names (docs/protocol/adapter-engine.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// A plan (`Plan.Id`).
    Plan,
    /// A catalogue add-on (`PlanAddon.Id`).
    AddOn,
    /// A tenant user (`AccountAdminLiveEmailId`).
    User,
    /// A subscription (`SubscriptionID`).
    Subscription,
    /// An add-on bought by a subscription (`AddOnInstanceId`).
    AddOnInstance,
}

impl IdentityKind {
    /// All kinds.
    pub const ALL: [IdentityKind; 5] = [
        IdentityKind::Plan,
        IdentityKind::AddOn,
        IdentityKind::User,
        IdentityKind::Subscription,
        IdentityKind::AddOnInstance,
    ];

    /// The stored name: `plan`, `addOn`, `user`, `subscription`, `addOnInstance`.
    pub fn name(self) -> &'static str {
        match self {
            IdentityKind::Plan => "plan",
            IdentityKind::AddOn => "addOn",
            IdentityKind::User => "user",
            IdentityKind::Subscription => "subscription",
            IdentityKind::AddOnInstance => "addOnInstance",
        }
    }

    /// The kind for a name (any ASCII case).
    pub fn from_name(name: &str) -> Option<Self> {
        IdentityKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One identity mapping: a WAP id and the billing system's id for the same object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityMapping {
    /// What the ids name.
    pub kind: IdentityKind,
    /// The WAP id as first stored (lookups ignore ASCII case: WAP sends GUIDs in both cases).
    pub wap_id: String,
    /// The billing system's id.
    pub billing_id: String,
    /// When the mapping was last set.
    pub updated_at: DateTime<Utc>,
}

/// Milliseconds since the Unix epoch, the time format of the state database.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn to_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time for stored milliseconds (out-of-range values clamp to the epoch).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// The key under which a WAP id is stored: ASCII lower case.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn identity_key(wap_id: &str) -> String {
    wap_id.to_ascii_lowercase()
}
