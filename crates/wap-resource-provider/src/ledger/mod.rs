//! [`UsageLedger`]: where a provider appends usage records as they happen and from which `/usage` serves them.
//!
//! Ids are assigned on append (≥ 1, strictly increasing, never reused even after compaction); an append returns
//! only once the record is durable (SQLite: committed in WAL mode with `synchronous=FULL`). A record is served
//! until a `lastID` covers it, then deleted; across restarts nothing unacknowledged is lost.

use std::ops::RangeInclusive;
use std::sync::Arc;

use async_trait::async_trait;
use wap_types::{LastId, RpUsageRecord};

use crate::usage::{UsagePage, UsagePoll, UsageQuery, UsageSource, UsageSourceError};

mod memory;
#[cfg(feature = "sqlite")]
mod sqlite;

/// A usage ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
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
}

impl LedgerError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LedgerError::Storage { retryable: true, .. })
    }
}

impl From<LedgerError> for UsageSourceError {
    fn from(e: LedgerError) -> Self {
        let retryable = e.is_retryable();
        UsageSourceError::with_source(e.to_string(), retryable, e)
    }
}

/// Checks a record before it is stored.
fn check_record(record: &RpUsageRecord) -> Result<(), LedgerError> {
    if record.subscription_id.trim().is_empty() {
        return Err(LedgerError::InvalidRecord("SubscriptionId is empty".into()));
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
}

impl UsageLedger {
    /// A ledger in memory: for tests and examples (records do not survive the process).
    pub fn in_memory() -> Self {
        UsageLedger { backend: Backend::Memory(Arc::new(memory::MemoryLedger::default())) }
    }

    /// Opens (or creates) the SQLite ledger at `path`: WAL journal, `synchronous=FULL`. Records appended by an
    /// earlier process and not yet acknowledged are served again; ids continue above the highest ever issued.
    #[cfg(feature = "sqlite")]
    pub async fn open(path: impl AsRef<std::path::Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_owned();
        let ledger = run_blocking(move || sqlite::SqliteLedger::open(&path)).await?;
        Ok(UsageLedger { backend: Backend::Sqlite(Arc::new(ledger)) })
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
    pub async fn append(&self, record: RpUsageRecord) -> Result<i64, LedgerError> {
        let ids = self.append_all(vec![record]).await?;
        Ok(*ids.start())
    }

    /// Appends records in one transaction and returns their `EventId`s (consecutive, in input order; an empty
    /// input gives an empty range). Durable on return; all or nothing.
    pub async fn append_all(&self, records: Vec<RpUsageRecord>) -> Result<RangeInclusive<i64>, LedgerError> {
        for r in &records {
            check_record(r)?;
        }
        match &self.backend {
            Backend::Memory(m) => m.append_all(records),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                run_blocking(move || s.append_all(records)).await
            }
        }
    }

    /// Makes the next id at least `id + 1` (never lowers it): for a provider moving from another store whose
    /// collector has already seen ids up to `id`.
    pub async fn advance_ids_past(&self, id: i64) -> Result<(), LedgerError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.advance_ids_past(id);
                Ok(())
            }
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                run_blocking(move || s.advance_ids_past(id)).await
            }
        }
    }

    /// Counters: highest issued id, highest acknowledged id, pending records.
    pub async fn stats(&self) -> Result<LedgerStats, LedgerError> {
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
    pub async fn compact(&self) -> Result<(), LedgerError> {
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
        match &self.backend {
            Backend::Memory(m) => Ok(m.poll(query, max_page)),
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(s) => {
                let s = Arc::clone(s);
                Ok(run_blocking(move || s.poll(query, max_page)).await?)
            }
        }
    }
}

/// Runs blocking storage work off the async threads.
#[cfg(feature = "sqlite")]
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| LedgerError::Task(e.to_string()))?
}
