//! The intent journal: exactly once into billing systems that cannot deduplicate.
//!
//! # Three kinds of billing system
//!
//! | Billing system | Delivery path | What reaches it |
//! |---|---|---|
//! | keys each change on the WAP id / `(feed, EventId)` and ignores a repeat (the reference `SqliteLedger`) | [`Delivery::IdempotentByKey`] (default) | at least once; the system makes it exactly once |
//! | appends on every call (WHMCS `AddBillableItem`, HostBill `addOrder` / `meteredAddUsage`) but can be **looked up** afterwards (by a token stored on the line, or by WAP ids) | [`Delivery::Journaled`] | exactly once, or the processor stops **in doubt** and an operator decides |
//! | appends and cannot be looked up | neither path can help | at least once: every crash between its commit and the engine's bills twice |
//!
//! # The journaled path
//!
//! For a unit of work (an event, or a usage batch covering an `EventId` range) the engine:
//!
//! 1. commits an [`Intent`] to its state store — processor, feed, `EventId` range, operation, a token — fenced by
//!    its lease generation, **before** the billing call;
//! 2. calls the handler (which should store the token, or the WAP ids, on what it creates);
//! 3. after the call returned `Ok`, commits the outcome (the `processed_event` row), the cursor and the removal of
//!    the intent in **one** transaction.
//!
//! A crash, lost lease or state-database failure between 2 and 3 leaves the intent open. Whoever runs the
//! processor next (a restart, the standby after a take-over, the same instance after an operator `resume`) first
//! **reconciles** it: it asks the handler's `reconcile` method whether the intent was applied, and
//!
//! * [`Reconciliation::Applied`]: commits the outcome and the cursor (the billing call is not made again);
//! * [`Reconciliation::NotApplied`]: drops the intent and sends the records again;
//! * [`Reconciliation::Unknown`]: halts the processor **in doubt** ([`HaltReason::InDoubt`](crate::HaltReason)),
//!   naming the intent. Nothing is sent until an operator resolves it with
//!   [`Operator::resolve_in_doubt`](crate::Operator::resolve_in_doubt): applied / send again / skip, audited.
//!
//! A billing call that fails (`HandlerError::Failed`) on this path is reconciled too before it is retried, since a
//! system may fail *after* committing. A `DependencyNotReady` answer means "nothing was applied". A usage batch is
//! not split at a failing record on this path (a partial apply must be reconciled as a whole).
//!
//! What the guarantee needs from the handler: the billing call must not land after the engine gave it up. The
//! engine cuts a call at its deadline (`HandlerTimeoutMilliseconds`, or the local end of the lease) and drops it
//! when the lease is lost, and a leader that took over an unreleased lease waits out the previous holder's call
//! deadline before it reconciles; a request already on the wire must therefore time out within
//! `HandlerTimeoutMilliseconds` (set the billing client's timeout below it).

use std::fmt;

use chrono::{DateTime, Utc};
use wap_types::FeedKind;

use crate::store::ProcessorKind;

/// How a handler needs its calls delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Delivery {
    /// The billing system ignores a repeated change keyed by `(feed, EventId)` or the WAP id: the engine delivers
    /// at least once, with no extra state-store write (one commit per unit).
    #[default]
    IdempotentByKey,
    /// The billing system cannot deduplicate: the engine journals an intent before each call and reconciles open
    /// intents before sending anything again (two state-store commits per unit).
    Journaled,
}

impl Delivery {
    /// `idempotent_by_key` or `journaled`.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::IdempotentByKey => "idempotent_by_key",
            Delivery::Journaled => "journaled",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A billing call the engine is about to make (or made, and has not committed): stored before the call, removed in
/// the transaction that commits its outcome. At most one is open per processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The processor that made it.
    pub processor: ProcessorKind,
    /// The feed.
    pub feed: FeedKind,
    /// The first `EventId` the call covers.
    pub first_event_id: i64,
    /// The last `EventId` the call covers (equal to `first_event_id` for an event).
    pub last_event_id: i64,
    /// How many records or events the call covers.
    pub records: u64,
    /// What the call does: `usage` (records), `usage_lines` (aggregated lines), or `<feed>.<Method>` for an
    /// event (e.g. `subscriptions.POST`).
    pub operation: String,
    /// The token the handler stores on what it creates, so that `reconcile` can find it: by default
    /// [`Intent::default_token`]; a handler may choose its own (`intent_token`).
    pub token: String,
    /// The lease generation of the instance that opened it.
    pub generation: i64,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
}

impl Intent {
    /// The default token of a call: `wap-<feed>-<first>-<last>`, e.g. `wap-usage-1001-2000`. The same range gives
    /// the same token, so a handler can compute it from the batch or the event it receives.
    pub fn default_token(feed: FeedKind, first_event_id: i64, last_event_id: i64) -> String {
        format!("wap-{feed}-{first_event_id}-{last_event_id}")
    }

    /// Whether the intent covers `event_id`.
    pub fn covers(&self, event_id: i64) -> bool {
        (self.first_event_id..=self.last_event_id).contains(&event_id)
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "intent {} ({} of {} {}..={}, {} records, generation {}, opened {})",
            self.token,
            self.operation,
            self.feed,
            self.first_event_id,
            self.last_event_id,
            self.records,
            self.generation,
            self.opened_at.to_rfc3339()
        )
    }
}

/// A handler's answer to "was this intent applied?".
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reconciliation {
    /// The billing system holds the change: the engine commits it without calling again.
    Applied,
    /// The billing system does not hold it: the engine sends it again.
    NotApplied,
    /// The handler cannot tell (e.g. partly applied, or the system cannot be searched): the processor halts in
    /// doubt until an operator resolves the intent.
    Unknown {
        /// Why (shown to the operator).
        reason: String,
    },
}

impl Reconciliation {
    /// An [`Reconciliation::Unknown`].
    pub fn unknown(reason: impl Into<String>) -> Self {
        Reconciliation::Unknown { reason: reason.into() }
    }
}

/// An operator's decision on an in-doubt intent, after checking the billing system by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InDoubtResolution {
    /// The billing system holds it: commit it as applied and go on.
    Applied,
    /// The billing system does not hold it: send it again.
    SendAgain,
    /// Never send it: record it as `skipped_by_operator` and go on.
    Skip,
}

impl InDoubtResolution {
    /// `applied`, `send_again` or `skip`.
    pub fn name(self) -> &'static str {
        match self {
            InDoubtResolution::Applied => "applied",
            InDoubtResolution::SendAgain => "send_again",
            InDoubtResolution::Skip => "skip",
        }
    }

    /// The resolution for a name written by [`InDoubtResolution::name`] (any ASCII case; `-` for `_`).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.replace('-', "_");
        [InDoubtResolution::Applied, InDoubtResolution::SendAgain, InDoubtResolution::Skip]
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(&name))
    }
}

impl fmt::Display for InDoubtResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
