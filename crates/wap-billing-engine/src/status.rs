//! What a processor reports while it runs (published on a watch channel).

use chrono::{DateTime, Utc};
use wap_types::FeedKind;

use crate::store::{HaltStatus, ProcessorKind};

/// Where a processor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started yet.
    Starting,
    /// Waiting for the lease (another instance runs the processor, or the lease was lost).
    Standby,
    /// The leader, consuming a backlog: the first run from `startId` 0 (backfill), or a cycle that has not reached
    /// the end of every feed yet. During a backfill tenants' purchases of plans not yet synced may be denied.
    CatchingUp,
    /// The last cycle reached the end (`[]`) or a PendingApproval hold on every feed.
    CaughtUp,
    /// Halted on an event; waits for an operator (see [`ProcessorStatus::halt`]).
    Halted,
    /// Stopped (shutdown).
    Stopped,
}

/// A PendingApproval event a feed is held at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldEvent {
    /// The event.
    pub event_id: i64,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Past `PendingApprovalWarnSeconds`.
    pub overdue: bool,
}

/// An event (or usage batch) whose handler answered `DependencyNotReady`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingEvent {
    /// The event (the batch's first record).
    pub event_id: i64,
    /// What the handler said is missing.
    pub reason: String,
    /// Since the first such answer.
    pub since: DateTime<Utc>,
}

/// Progress of one feed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStatus {
    /// The feed.
    pub feed: FeedKind,
    /// The last committed `EventId`.
    pub last_committed: Option<i64>,
    /// Events (usage: records) applied since the processor started.
    pub applied: u64,
    /// Events skipped as Rejected since the processor started.
    pub skipped_rejected: u64,
    /// Whether the last poll of the feed returned `[]`.
    pub caught_up: bool,
    /// The last successful poll.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// The PendingApproval event the feed is held at.
    pub held: Option<HeldEvent>,
    /// The event waiting on a dependency.
    pub waiting: Option<WaitingEvent>,
    /// Consecutive failed fetches (WAP side) right now.
    pub wap_failures: u32,
    /// The last WAP-side error, while fetches fail.
    pub last_wap_error: Option<String>,
    /// The last successful poll is older than `RetentionWarnDays`: WAP may have purged data the adapter never saw.
    pub retention_warning: bool,
    /// Ids WAP purged before this instance read them (`from..=to`), detected on this feed; cleared once the
    /// cursor is past them (after an operator acknowledged the loss with `skip`).
    pub history_lost: Option<(i64, i64)>,
}

impl FeedStatus {
    pub(crate) fn new(feed: FeedKind) -> Self {
        FeedStatus {
            feed,
            last_committed: None,
            applied: 0,
            skipped_rejected: 0,
            caught_up: false,
            last_poll_at: None,
            held: None,
            waiting: None,
            wap_failures: 0,
            last_wap_error: None,
            retention_warning: false,
            history_lost: None,
        }
    }
}

/// A processor's status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorStatus {
    /// Which processor.
    pub processor: ProcessorKind,
    /// Where it stands.
    pub phase: Phase,
    /// The lease generation while this instance is the leader.
    pub leader_generation: Option<i64>,
    /// The stored halt, while halted.
    pub halt: Option<HaltStatus>,
    /// One entry per feed, in cycle order.
    pub feeds: Vec<FeedStatus>,
    /// Completed cycles since start.
    pub cycles: u64,
    /// Rounds started since start while leader. A round reads the stored halt and, unless halted, runs a cycle
    /// over the feeds.
    pub rounds_started: u64,
    /// The number (in `rounds_started` terms) of the last round that finished (a state-store error ends a round
    /// unfinished); 0 before the first.
    pub last_finished_round: u64,
    /// The last state-store error, while the store fails (prefixed `permanent:` when retrying cannot help).
    pub last_store_error: Option<String>,
    /// Journaled path: open intents this instance found and reconciled (applied or not applied) since start.
    pub intents_reconciled: u64,
    /// Why this instance does not take the lease although it could: another live process holds it under the same
    /// `InstanceId`.
    pub lease_conflict: Option<String>,
}

impl ProcessorStatus {
    pub(crate) fn new(processor: ProcessorKind) -> Self {
        ProcessorStatus {
            processor,
            phase: Phase::Starting,
            leader_generation: None,
            halt: None,
            feeds: processor.feeds().iter().map(|f| FeedStatus::new(*f)).collect(),
            cycles: 0,
            rounds_started: 0,
            last_finished_round: 0,
            last_store_error: None,
            intents_reconciled: 0,
            lease_conflict: None,
        }
    }

    /// The status of one feed.
    pub fn feed(&self, feed: FeedKind) -> Option<&FeedStatus> {
        self.feeds.iter().find(|f| f.feed == feed)
    }

    pub(crate) fn feed_mut(&mut self, feed: FeedKind) -> &mut FeedStatus {
        let idx = self.feeds.iter().position(|f| f.feed == feed).unwrap_or_else(|| {
            self.feeds.push(FeedStatus::new(feed));
            self.feeds.len() - 1
        });
        &mut self.feeds[idx]
    }

    /// Events (usage: records) applied on all feeds since start.
    pub fn applied(&self) -> u64 {
        self.feeds.iter().map(|f| f.applied).sum()
    }

    /// The highest committed `EventId` over the processor's feeds.
    pub fn last_committed(&self) -> Option<i64> {
        self.feeds.iter().filter_map(|f| f.last_committed).max()
    }

    /// Whether the processor is halted in doubt (journaled path: an intent nobody could reconcile).
    pub fn is_in_doubt(&self) -> bool {
        self.halt.as_ref().is_some_and(|h| h.reason == crate::store::HaltReason::InDoubt)
    }

    /// Whether this instance leads the processor.
    pub fn is_leader(&self) -> bool {
        self.leader_generation.is_some()
    }
}
