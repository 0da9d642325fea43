//! Durable engine state behind the [`StateStore`] trait: cursors, processed events, halts, leases, the identity map
//! and the audit log (docs/protocol/adapter-engine.md §4, §5, §8).
//!
//! Two backends: [`SqliteStore`] (feature `sqlite`, default: one file, no setup, one machine) and
//! `PostgresStore` (feature `postgres`: several instances on several machines). [`open`] picks one from a
//! `StateDatabaseUrl`. Both create and upgrade their schema at open through the versioned migrations of
//! [`migrations`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wap_types::FeedKind;

use crate::journal::{InDoubtResolution, Intent};

pub mod migrations;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;
mod url;

#[cfg(feature = "postgres")]
pub use self::postgres::{PostgresStore, SslMode};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) use self::types::{from_millis, identity_key, to_millis};
pub use self::types::{
    AuditAction, AuditEntry, EventCommit, FeedCursor, FeedHold, Fence, HaltReason, HaltStatus, HaltTarget,
    IdentityKind, IdentityMapping, LeaseRecord, ProcessedEvent, ProcessedOutcome, ProcessorKind, UnitAttempts,
};
pub use self::url::{redact_url, SqliteSync, StateDatabaseUrl};

/// Why a state store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The `StateDatabaseUrl` is not valid.
    #[error("invalid state database URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, password removed.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The URL names a backend this build does not include.
    #[error("state database backend `{scheme}` is not compiled in: enable the `{feature}` feature")]
    BackendNotEnabled {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature that adds it.
        feature: &'static str,
    },
    /// A fenced write was refused: the lease row no longer carries this instance's generation. The instance has been
    /// deposed and must stop (nothing was written).
    #[error(
        "lease of the {processor} processor lost: generation {generation} held by {holder:?} is no longer current"
    )]
    Fenced {
        /// The processor.
        processor: ProcessorKind,
        /// The holder that tried to write.
        holder: String,
        /// The generation it carried.
        generation: i64,
    },
    /// An in-doubt resolution needs a processor halted in doubt with an open intent.
    #[error("the {processor} processor is not in doubt (no in-doubt halt with an open intent)")]
    NotInDoubt {
        /// The processor.
        processor: ProcessorKind,
    },
    /// An operator command needs a halted processor.
    #[error("the {processor} processor is not halted")]
    NotHalted {
        /// The processor.
        processor: ProcessorKind,
    },
    /// An operator command named another event than the one the processor is halted on (a stale view, or a
    /// retried request after the first one went through). Nothing was changed.
    #[error("the {processor} processor is not halted on {expected}: {halted}")]
    HaltMismatch {
        /// The processor.
        processor: ProcessorKind,
        /// The event the command named.
        expected: String,
        /// The halt there is.
        halted: String,
    },
    /// The database was written by a newer engine.
    #[error(
        "state database schema version {found} is newer than this build supports ({supported}); upgrade the engine"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The database holds a value this build cannot read.
    #[error("state database holds an unreadable value: {0}")]
    Corrupt(String),
    /// The database failed (I/O, connection, lock timeout, SQL error).
    #[error("state database error ({backend}): {message}")]
    Database {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What failed (no credentials).
        message: String,
        /// Whether retrying can help (connection lost, busy, serialization failure).
        retryable: bool,
    },
}

impl StoreError {
    /// Whether retrying the operation later can succeed. The processors retry retryable errors with back-off and
    /// re-read their position; other errors (a bad URL, a newer schema) stop them.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Database { retryable, .. } => *retryable,
            StoreError::Fenced { .. }
            | StoreError::NotHalted { .. }
            | StoreError::NotInDoubt { .. }
            | StoreError::HaltMismatch { .. } => false,
            StoreError::InvalidUrl { .. }
            | StoreError::BackendNotEnabled { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Corrupt(_) => false,
        }
    }

    /// Whether this is a fencing refusal ([`StoreError::Fenced`]).
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }
}

/// The engine's durable state. Implementations must make every method atomic; fenced methods (taking a
/// [`Fence`]) must check, **in the same transaction** as their writes, that the lease row of the fence's processor
/// still has the fence's holder and generation, and otherwise write nothing and return [`StoreError::Fenced`].
///
/// Times passed in (`at`) come from the engine; lease expiry is computed with the store's own clock (the server's
/// `clock_timestamp()` on PostgreSQL, the machine's clock on SQLite).
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// `sqlite` or `postgres` (for logs and status).
    fn backend(&self) -> &'static str;

    /// The schema version of the database (the highest applied migration).
    async fn schema_version(&self) -> Result<i64, StoreError>;

    // ---- cursors and processed events ----

    /// The stored position of a feed ([`FeedCursor::empty`] when nothing is stored).
    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError>;

    /// Records a successful poll of a feed (not fenced: it only feeds the retention warning).
    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Fenced. In one transaction: checks the fence, inserts the `processed_event` row, moves the cursor to
    /// `last_event_id` (never backwards) and drops a hold on an event at or below it.
    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError>;

    /// The `processed_event` rows of a feed that overlap `from..=to`, ascending.
    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError>;

    /// Fenced. Sets (or with `None` clears) the PendingApproval hold of a feed.
    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError>;

    // ---- halts (operator commands are not fenced: a halted processor writes nothing) ----

    /// The stored halt of a processor.
    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError>;

    /// Fenced. Stores a halt (replacing any) and writes an audit entry (actor = the fence's holder).
    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError>;

    /// Operator `resume`: deletes the halt (a PendingApproval timeout also drops the feed's hold, so the wait starts
    /// again) and writes an audit entry. [`StoreError::NotHalted`] when there is no halt;
    /// [`StoreError::HaltMismatch`] when `expected` is given and the halt is on another event.
    async fn resume(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError>;

    /// Operator `skip`: in one transaction records the halted event (or usage range) as `skipped_by_operator`, moves
    /// the cursor past it, drops the hold, deletes the halt and writes an audit entry with `reason`.
    /// [`StoreError::NotHalted`] when there is no halt; [`StoreError::HaltMismatch`] when `expected` is given and
    /// the halt is on another event.
    async fn skip(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError>;

    // ---- identity map ----

    /// The mapping of a WAP id (matched ignoring ASCII case).
    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError>;

    /// The mapping whose billing id is `billing_id` (exact match).
    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError>;

    /// Sets or changes a mapping and writes an audit entry.
    async fn set_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Deletes a mapping (writing an audit entry); whether one existed.
    async fn delete_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Fenced [`StateStore::set_identity`] (actor = the fence's holder): refused with [`StoreError::Fenced`] once
    /// the fence's lease is lost, so a deposed leader's handler cannot change the map.
    async fn set_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Fenced [`StateStore::delete_identity`] (actor = the fence's holder).
    async fn delete_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// All mappings of a kind, by WAP id.
    async fn identities(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError>;

    // ---- audit ----

    /// The newest `limit` audit entries, oldest first.
    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError>;

    // ---- housekeeping ----

    /// Deletes `processed_event` rows committed before `processed_before` that lie wholly below their feed's
    /// cursor (the rows the next fetches are checked against are kept), and audit entries written before
    /// `audit_before`; `None` keeps that table whole. Returns how many rows of each were deleted.
    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError>;

    // ---- leases ----

    /// Tries to acquire a processor's lease for `holder`: succeeds when the row is free, released or expired (or,
    /// with `steal`, always), bumping the generation and setting the expiry to store-now + `ttl`. `None` when
    /// the lease is live — also when its holder has the same name as `holder` (a second process with the same
    /// `InstanceId` must not depose the first).
    async fn try_acquire_lease(
        &self,
        processor: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError>;

    /// Extends a live lease still held under `fence` to store-now + `ttl`; `false` when it was lost (another
    /// generation, or already expired).
    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError>;

    /// Releases a lease held under `fence` so another instance can take over at once (no-op if lost).
    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError>;

    /// The lease row of a processor.
    async fn lease(&self, processor: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError>;

    // ---- retry state of failing units ----

    /// The stored [`UnitAttempts`] of the feeds of `processor`. The default (a store that does not keep them)
    /// answers none: attempts are then counted in memory only, per process.
    async fn unit_attempts(&self, processor: ProcessorKind) -> Result<Vec<UnitAttempts>, StoreError> {
        let _ = processor;
        Ok(Vec::new())
    }

    /// Fenced. Stores (replacing) the retry state of one unit. The default keeps nothing.
    async fn set_unit_attempts(&self, fence: &Fence, unit: &UnitAttempts) -> Result<(), StoreError> {
        let _ = (fence, unit);
        Ok(())
    }

    /// Fenced. Deletes the retry state of one unit (applied or halted). The default keeps nothing.
    async fn clear_unit_attempts(&self, fence: &Fence, feed: FeedKind, event_id: i64) -> Result<(), StoreError> {
        let _ = (fence, feed, event_id);
        Ok(())
    }

    // ---- the intent journal (the journaled delivery path, see crate::journal) ----

    /// Fenced. Stores the open intent of `intent.processor` (replacing any), durably, before the billing call.
    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError>;

    /// The open intent of a processor.
    async fn intent(&self, processor: ProcessorKind) -> Result<Option<Intent>, StoreError>;

    /// Fenced. [`StateStore::commit`] and the removal of the fence's processor's open intent, in one transaction.
    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError>;

    /// Fenced. Removes the fence's processor's open intent (reconciled as not applied).
    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError>;

    /// Operator: resolves the open intent of a processor halted [`HaltReason::InDoubt`], in one transaction:
    /// `Applied` records its range as applied and moves the cursor past it, `Skip` records it as
    /// `skipped_by_operator` and moves the cursor, `SendAgain` only drops it; the intent and the halt are deleted
    /// and an audit entry (action `resolve`) names the intent, the resolution and `reason`. Returns the intent.
    /// [`StoreError::NotInDoubt`] when the processor is not halted in doubt or has no open intent.
    async fn resolve_intent(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError>;
}

/// Opens the state store named by a `StateDatabaseUrl`: `sqlite://path` (relative or absolute; `sqlite::memory:`
/// for a private in-memory database) or `postgres://…` / `postgresql://…` (libpq URL syntax). The schema is
/// created or upgraded before it returns.
pub async fn open(url: &str) -> Result<Arc<dyn StateStore>, StoreError> {
    open_with_ca_file(url, None).await
}

/// [`open`] with a CA file (PEM) for TLS to PostgreSQL (`sslmode=verify-ca` / `verify-full`; see
/// `PostgresStore::connect_with_ca_file`); ignored for SQLite.
pub async fn open_with_ca_file(
    url: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<dyn StateStore>, StoreError> {
    #[cfg(not(feature = "postgres"))]
    let _ = ca_file;
    match StateDatabaseUrl::parse(url)? {
        #[cfg(feature = "sqlite")]
        StateDatabaseUrl::Sqlite { path, sync } => {
            Ok(Arc::new(SqliteStore::open_with(path, sync).await?) as Arc<dyn StateStore>)
        }
        #[cfg(not(feature = "sqlite"))]
        StateDatabaseUrl::Sqlite { .. } => {
            Err(StoreError::BackendNotEnabled { scheme: "sqlite".into(), feature: "sqlite" })
        }
        #[cfg(feature = "postgres")]
        StateDatabaseUrl::Postgres { url } => {
            Ok(Arc::new(PostgresStore::connect_with_ca_file(&url, ca_file).await?) as Arc<dyn StateStore>)
        }
        #[cfg(not(feature = "postgres"))]
        StateDatabaseUrl::Postgres { .. } => {
            Err(StoreError::BackendNotEnabled { scheme: "postgres".into(), feature: "postgres" })
        }
    }
}
