//! [`UsageLedger`]: where a provider appends usage records as they happen and from which `/usage` serves them.
//!
//! Ids are assigned on append (≥ 1, strictly increasing, never reused even after compaction); an append returns
//! only once the record is durable (SQLite: committed in WAL mode with `synchronous=FULL`). Records become visible
//! in id order (ids are assigned and committed under one lock, all at once). A record is served until a `lastID`
//! covers it, then deleted; across restarts nothing unacknowledged is lost.
//!
//! What a `lastID` may delete (docs/protocol/resource-provider.md §5 as revised): the ledger keeps, durably, the highest id it
//! has **served** (handed to a collector in a page). A `lastID` acknowledges only up to that mark: anything above
//! acknowledges nothing (a warning, and [`LedgerStats::acknowledgements_above_served`]); the records never served at
//! or below that `lastID` get new ids above the highest issued (WAP's collector drops ids at or below its `lastID`,
//! and nobody saw the old ones) and are served after it. A `lastID` above every id ever issued (the ledger was lost,
//! recreated or restored) moves the id counter past it and gives the records never served new ids above it
//! ([`LastIdBeyondIssued::AdvanceIds`], the default), or is refused until an operator calls
//! [`UsageLedger::advance_ids_past`] ([`LastIdBeyondIssued::Refuse`]); it never deletes anything.
//!
//! An append may carry a client key ([`UsageLedger::append_with_key`]): a retry with the same key (after a timeout
//! whose first attempt did commit) returns the first ids and stores nothing. The keys of the most recent
//! [`DEFAULT_CLIENT_KEY_RETENTION`] keyed appends are kept (SQLite: in the file, so across restarts); older keys
//! are forgotten, oldest first.

use std::ops::RangeInclusive;
use std::sync::Arc;

use async_trait::async_trait;
use wap_types::{LastId, RpUsageRecord};

use crate::usage::{UsageEntry, UsagePage, UsagePoll, UsageQuery, UsageSource, UsageSourceError};

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

/// The former name of [`UsageLedgerError`], kept so that existing code compiles (the reference billing ledger's
/// error, `wap_billing_ledger::LedgerError`, had the same name).
#[deprecated(since = "0.1.0", note = "renamed `UsageLedgerError`")]
pub type LedgerError = UsageLedgerError;

/// A usage ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageLedgerError {
    /// The storage failed (the path names the file; no credentials).
    #[error("usage ledger {location}: {message}")]
    Storage {
        /// The file, or `memory`.
        location: String,
        /// What failed.
        message: String,
        /// Whether retrying later may succeed (database busy or locked).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// A record could not be serialized.
    #[error("cannot serialize usage record: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A record is not acceptable (the message says which member).
    #[error("invalid usage record: {0}")]
    InvalidRecord(String),
    /// The next id would overflow `i64`.
    #[error("usage ledger EventId space exhausted")]
    IdsExhausted,
    /// The blocking storage task panicked or was cancelled.
    #[error("usage ledger task failed: {0}")]
    Task(String),
    /// A `lastID` above every id ever issued (the ledger was lost, recreated or restored), refused by
    /// [`LastIdBeyondIssued::Refuse`]: nothing was acknowledged. An operator decides, then calls
    /// [`UsageLedger::advance_ids_past`] with the collector's `lastID`.
    #[error(
        "lastID {last_id} is above the highest EventId this ledger ever issued ({highest_issued}): the ledger was \
         lost, recreated or restored; refused until an operator advances the ids past it"
    )]
    LastIdBeyondIssued {
        /// The collector's `lastID`.
        last_id: i64,
        /// The highest id the ledger issued.
        highest_issued: i64,
    },
    /// A client key already used for an append of another size.
    #[error("client key {key:?} was already used for an append of {stored} record(s), not {given}")]
    ClientKeyReused {
        /// The key.
        key: String,
        /// Records stored under it.
        stored: usize,
        /// Records given now.
        given: usize,
    },
}

impl UsageLedgerError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, UsageLedgerError::Storage { retryable: true, .. })
    }
}

impl From<UsageLedgerError> for UsageSourceError {
    fn from(e: UsageLedgerError) -> Self {
        let retryable = e.is_retryable();
        UsageSourceError::with_source(e.to_string(), retryable, e)
    }
}

/// How many client keys of keyed appends a ledger remembers (the oldest are forgotten first).
pub const DEFAULT_CLIENT_KEY_RETENTION: usize = 100_000;

/// What a `lastID` above every id ever issued does (the ledger was lost, recreated or restored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LastIdBeyondIssued {
    /// Move the id counter past it, and give the records never served new ids above it, so that none is born
    /// already acknowledged (default). Nothing is deleted.
    #[default]
    AdvanceIds,
    /// Refuse the request with an error (HTTP 500) and acknowledge nothing, until an operator calls
    /// [`UsageLedger::advance_ids_past`].
    Refuse,
}

/// Ledger settings that are not stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LedgerOptions {
    pub(crate) last_id_beyond_issued: LastIdBeyondIssued,
    pub(crate) client_key_retention: usize,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            last_id_beyond_issued: LastIdBeyondIssued::default(),
            client_key_retention: DEFAULT_CLIENT_KEY_RETENTION,
        }
    }
}

/// A retried keyed append must have the size of the first.
fn check_key_reuse(key: &str, stored: usize, given: usize) -> Result<(), UsageLedgerError> {
    if stored == given {
        Ok(())
    } else {
        Err(UsageLedgerError::ClientKeyReused { key: key.to_owned(), stored, given })
    }
}

/// The entry with another `EventId` (its JSON rewritten).
fn renumbered(entry: &UsageEntry, id: i64) -> Result<UsageEntry, UsageLedgerError> {
    let mut record = entry.record().map_err(|e| {
        UsageLedgerError::InvalidRecord(format!("stored record {} cannot be read: {e}", entry.event_id()))
    })?;
    record.event_id = id;
    Ok(UsageEntry::from_trusted_json(id, serde_json::to_string(&record)?))
}

/// Checks a record before it is stored.
fn check_record(record: &RpUsageRecord) -> Result<(), UsageLedgerError> {
    if record.subscription_id.trim().is_empty() {
        return Err(UsageLedgerError::InvalidRecord("SubscriptionId is empty".into()));
    }
    Ok(())
}

/// What a ledger holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LedgerStats {
    /// The highest `EventId` ever issued (0 before the first record).
    pub highest_issued: i64,
    /// The highest `lastID` acknowledged so far (0 when none).
    pub acknowledged_through: i64,
    /// Records appended and not yet acknowledged.
    pub pending: u64,
    /// The highest `EventId` handed to a collector (durable with SQLite): no `lastID` deletes above it.
    pub served_through: i64,
    /// Metric: `lastID`s above the served mark (they acknowledged only up to it), since the ledger was opened.
    pub acknowledgements_above_served: u64,
    /// Metric: `lastID`s above every id issued (a lost or restored ledger), since the ledger was opened.
    pub last_ids_beyond_issued: u64,
    /// Metric: durable append transactions committed since the ledger was opened (SQLite: one per group commit,
    /// shared by the appends that arrived while the previous one synced; 0 in memory).
    pub append_commits: u64,
}

#[derive(Debug, Clone)]
enum Backend {
    Memory(Arc<memory::MemoryLedger>),
    #[cfg(feature = "sqlite")]
    Sqlite(Arc<sqlite::SqliteLedger>),
}

/// An append-only, acknowledge-and-compact store of usage records that serves `/usage` (implements
/// [`UsageSource`]). Cheap to clone: clones share the same store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wap_resource_provider::{UsageLedger, UsageQuery, UsageSource, serve_usage};
/// use wap_types::{RpUsageRecord, StringMap, WapDateTime};
///
/// let ledger = UsageLedger::in_memory();
/// let record = RpUsageRecord {
///     subscription_id: "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796".into(),
///     start_time: WapDateTime::now(),
///     end_time: WapDateTime::now(),
///     service_type: Some("Default".into()),
///     resources: [("StorageGB", "12")].into_iter().collect::<StringMap>(),
///     ..Default::default()
/// };
/// let id = ledger.append(record).await?;
/// assert_eq!(id, 1);
/// let first = serve_usage(&ledger, UsageQuery::parse(Some("lastID=&batchSize=10"))?, 10_000).await?;
/// assert_eq!(first.page.event_ids(), [1]);
/// // The collector acknowledges id 1 with its next call: the record is gone.
/// let next = serve_usage(&ledger, UsageQuery::parse(Some("lastID=1&batchSize=10"))?, 10_000).await?;
/// assert!(next.page.is_empty());
/// assert_eq!(ledger.stats().await?.pending, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UsageLedger {
    backend: Backend,
    options: LedgerOptions,
}

impl UsageLedger {
    /// A ledger in memory: for tests and examples (records do not survive the process).
    pub fn in_memory() -> Self {
        UsageLedger {
            backend: Backend::Memory(Arc::new(memory::MemoryLedger::default())),
            options: LedgerOptions::default(),
        }
    }

    /// Opens (or creates) the SQLite ledger at `path`: WAL journal, `synchronous=FULL`. Records appended by an
    /// earlier process and not yet acknowledged are served again; ids continue above the highest ever issued.
    #[cfg(feature = "sqlite")]
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, UsageLedgerError> {
        let path = path.as_ref().to_owned();
        let ledger = run_blocking(move || sqlite::SqliteLedger::open(&path)).await?;
        Ok(UsageLedger { backend: Backend::Sqlite(Arc::new(ledger)), options: LedgerOptions::default() })
    }

    /// Sets what a `lastID` above every issued id does (default [`LastIdBeyondIssued::AdvanceIds`]).
    pub fn last_id_beyond_issued(mut self, policy: LastIdBeyondIssued) -> Self {
        self.options.last_id_beyond_issued = policy;
        self
    }

    /// Sets how many client keys are remembered (default [`DEFAULT_CLIENT_KEY_RETENTION`], at least 1).
    pub fn client_key_retention(mut self, keys: usize) -> Self {
        self.options.client_key_retention = keys.max(1);
        self
    }

    /// Which backend: `"memory"` or `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Memory(_) => "memory",
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Appends one record and returns its `EventId` (the record's own `event_id` is ignored). Durable on return.
    pub async fn append(&self, record: RpUsageRecord) -> Result<i64, UsageLedgerError> {
        let ids = self.append_all(vec![record]).await?;
        Ok(*ids.start())
    }

    /// Appends records in one transaction and returns their `EventId`s (consecutive, in input order; an empty
    /// input gives an empty range). Durable on return; all or nothing.
    pub async fn append_all(&self, records: Vec<RpUsageRecord>) -> Result<RangeInclusive<i64>, UsageLedgerError> {
        self.append_all_keyed(records, None).await
    }

    /// Appends one record under a client key (an idempotency key, e.g. the provider's own record id): a retry
    /// with the same key (after a timeout whose first attempt did commit) returns the first `EventId` and stores
    /// nothing. Keys are remembered for the most recent [`DEFAULT_CLIENT_KEY_RETENTION`] keyed appends (see
    /// [`UsageLedger::client_key_retention`]); durable with SQLite.
    pub async fn append_with_key(
        &self,
        record: RpUsageRecord,
        key: impl Into<String>,
    ) -> Result<i64, UsageLedgerError> {
        let ids = self.append_all_keyed(vec![record], Some(key.into())).await?;
        Ok(*ids.start())
    }

    /// [`UsageLedger::append_all`] with an optional client key (see [`UsageLedger::append_with_key`]). A key
    /// already used for an append of another size is an error ([`UsageLedgerError::ClientKeyReused`]).
    pub async fn append_all_keyed(
        &self,
        records: Vec<RpUsageRecord>,
        key: Option<String>,
    ) -> Result<RangeInclusive<i64>, UsageLedgerError> {
        for r in &records {
            check_record(r)?;
        }
        let options = self.options;
        match &self.backend {
            Backend::Memory(m) => m.append_all(records, key, &options),
            #[cfg(feature = "sqlite")]
            // Group commit: the append waits for the commit that carries it (no blocking thread per append).
            Backend::Sqlite(s) => s
                .enqueue_append(records, key, options)
                .await
                .unwrap_or_else(|_| Err(UsageLedgerError::Task("the append's commit was abandoned (a panic)".into()))),
        }
    }

    /// Makes the next id at least `id + 1` (never lowers it), and gives the records never served with an id at or
    /// below `id` new ids above it: for a provider moving from another store whose collector has already seen ids
    /// up to `id`, or an operator answering [`UsageLedgerError::LastIdBeyondIssued`] with the collector's `lastID`.
    /// Returns how many records got new ids.
    pub async fn advance_ids_past(&self, id: i64) -> Result<u64, UsageLedgerError> {
        match &self.backend {
            Backend::Memory(m) => m.advance_ids_past(id),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                run_blocking(move || s.advance_ids_past(id)).await
            }
        }
    }

    /// Counters: highest issued id, highest acknowledged id, pending records.
    pub async fn stats(&self) -> Result<LedgerStats, UsageLedgerError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.stats()),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                run_blocking(move || s.stats()).await
            }
        }
    }

    /// Returns the space of deleted records to the file system (SQLite; runs on its own after large
    /// acknowledgements). No-op in memory.
    pub async fn compact(&self) -> Result<(), UsageLedgerError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                run_blocking(move || s.compact()).await
            }
        }
    }
}

#[async_trait]
impl UsageSource for UsageLedger {
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError> {
        Ok(self.stats().await?.highest_issued)
    }

    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.acknowledge(up_to)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(run_blocking(move || s.acknowledge(up_to)).await?)
            }
        }
    }

    async fn highest_served_id(&self) -> Result<Option<i64>, UsageSourceError> {
        match &self.backend {
            Backend::Memory(m) => Ok(Some(m.served_through())),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(Some(run_blocking(move || s.served_through()).await?))
            }
        }
    }

    async fn record_served(&self, through: i64) -> Result<(), UsageSourceError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.mark_served(through);
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(run_blocking(move || s.mark_served(through)).await?)
            }
        }
    }

    fn ids_visible_in_order(&self) -> bool {
        true
    }

    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.records_after(after, limit)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(run_blocking(move || s.records_after(after, limit)).await?)
            }
        }
    }

    async fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, UsageSourceError> {
        let options = self.options;
        match &self.backend {
            Backend::Memory(m) => Ok(m.poll(query, max_page, &options)?),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(run_blocking(move || s.poll(query, max_page, &options)).await?)
            }
        }
    }
}

/// Runs blocking storage work off the async threads.
#[cfg(feature = "sqlite")]
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UsageLedgerError> + Send + 'static,
) -> Result<T, UsageLedgerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| UsageLedgerError::Task(e.to_string()))?
}
