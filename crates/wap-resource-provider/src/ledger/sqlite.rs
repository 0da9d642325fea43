//! The SQLite ledger backend: one connection behind a mutex, used from `spawn_blocking`.
//!
//! Schema: `wap_usage_record(event_id INTEGER PRIMARY KEY, record TEXT)` (the record's JSON, `EventId`
//! included) and `wap_usage_ledger(name, value)` holding `highest_issued` and `acknowledged_through`, so ids
//! are never reused even when every record has been acknowledged and deleted.
//!
//! Durability: appends commit with `synchronous=FULL` (the WAL is synced before `append` returns).
//! Acknowledgements commit with `synchronous=NORMAL`: losing one to a power cut only brings back records the
//! collector's next `lastID` acknowledges again before anything is served, so it costs no sync per page.
//! Concurrent appends are group-committed: whoever holds the connection commits every queued append in one
//! transaction (one sync), and each caller gets its own ids.

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use wap_types::{LastId, RpUsageRecord};

use super::{LedgerError, LedgerStats};
use crate::usage::{UsageEntry, UsagePage, UsagePoll, UsageQuery};

/// Free pages above which an acknowledgement also returns space to the file system (4 KiB pages: 16 MiB).
const VACUUM_FREE_PAGES: i64 = 4096;

/// An append waiting for the next group commit, and where its ids go.
type PendingAppend = (Vec<RpUsageRecord>, std::sync::mpsc::Sender<Result<RangeInclusive<i64>, LedgerError>>);

#[derive(Debug)]
pub(super) struct SqliteLedger {
    conn: Mutex<Connection>,
    queue: Mutex<Vec<PendingAppend>>,
    location: String,
}

impl SqliteLedger {
    pub(super) fn open(path: &Path) -> Result<Self, LedgerError> {
        let location = path.display().to_string();
        let err = |e: rusqlite::Error| storage_error(&location, "cannot open", e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // auto_vacuum only takes effect before the first table is created; harmless afterwards.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(err)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(LedgerError::Storage {
                location,
                message: format!("cannot switch to WAL journal mode (got {mode})"),
                retryable: false,
                source: None,
            });
        }
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS wap_usage_record (
                 event_id INTEGER PRIMARY KEY,
                 record   TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS wap_usage_ledger (
                 name  TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             ) WITHOUT ROWID;
             INSERT OR IGNORE INTO wap_usage_ledger (name, value) VALUES ('highest_issued', 0);
             INSERT OR IGNORE INTO wap_usage_ledger (name, value) VALUES ('acknowledged_through', 0);
             UPDATE wap_usage_ledger
                SET value = max(value, (SELECT coalesce(max(event_id), 0) FROM wap_usage_record))
              WHERE name = 'highest_issued';",
        )
        .map_err(err)?;
        Ok(SqliteLedger { conn: Mutex::new(conn), queue: Mutex::new(Vec::new()), location })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock dropped its transaction (rolled back): the connection is usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        let what = what.to_owned();
        move |e| storage_error(&self.location, &what, e)
    }

    /// Appends with group commit: queue the records, take the connection, commit everything queued.
    pub(super) fn append_all(&self, records: Vec<RpUsageRecord>) -> Result<RangeInclusive<i64>, LedgerError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).push((records, tx));
        {
            let mut conn = self.lock();
            let batch = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
            if !batch.is_empty() {
                self.commit_appends(&mut conn, batch);
            }
        }
        // Our append was committed by us or by the holder of the connection before us.
        rx.recv().unwrap_or_else(|_| Err(LedgerError::Task("append was dropped before its commit".into())))
    }

    /// Commits queued appends in one transaction and answers each.
    fn commit_appends(&self, conn: &mut Connection, batch: Vec<PendingAppend>) {
        let (records, senders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.insert_batches(conn, records) {
            Ok(ranges) => {
                for (tx, range) in senders.into_iter().zip(ranges) {
                    let _ = tx.send(Ok(range));
                }
            }
            Err(e) => {
                let message = e.to_string();
                let retryable = e.is_retryable();
                let mut first = Some(e);
                for tx in senders {
                    let err = first.take().unwrap_or_else(|| LedgerError::Storage {
                        location: self.location.clone(),
                        message: message.clone(),
                        retryable,
                        source: None,
                    });
                    let _ = tx.send(Err(err));
                }
            }
        }
    }

    fn insert_batches(
        &self,
        conn: &mut Connection,
        batches: Vec<Vec<RpUsageRecord>>,
    ) -> Result<Vec<RangeInclusive<i64>>, LedgerError> {
        let err = self.err("cannot append");
        conn.execute_batch("PRAGMA synchronous = FULL;").map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let mut highest = read_value(&tx, "highest_issued").map_err(&err)?;
        let mut ranges = Vec::with_capacity(batches.len());
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO wap_usage_record (event_id, record) VALUES (?1, ?2)").map_err(&err)?;
            for records in batches {
                let first = highest.checked_add(1).ok_or(LedgerError::IdsExhausted)?;
                let count = i64::try_from(records.len()).map_err(|_| LedgerError::IdsExhausted)?;
                if count == 0 {
                    ranges.push(first..=highest);
                    continue;
                }
                let last = first.checked_add(count - 1).ok_or(LedgerError::IdsExhausted)?;
                for (id, mut record) in (first..).zip(records) {
                    record.event_id = id;
                    let json = serde_json::to_string(&record)?;
                    insert.execute(params![id, json]).map_err(&err)?;
                }
                highest = last;
                ranges.push(first..=last);
            }
        }
        tx.execute("UPDATE wap_usage_ledger SET value = ?1 WHERE name = 'highest_issued'", params![highest])
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(ranges)
    }

    pub(super) fn advance_ids_past(&self, id: i64) -> Result<(), LedgerError> {
        let conn = self.lock();
        conn.execute_batch("PRAGMA synchronous = FULL;").map_err(self.err("cannot advance ids"))?;
        conn.execute("UPDATE wap_usage_ledger SET value = max(value, ?1) WHERE name = 'highest_issued'", params![id])
            .map_err(self.err("cannot advance ids"))?;
        Ok(())
    }

    pub(super) fn stats(&self) -> Result<LedgerStats, LedgerError> {
        let conn = self.lock();
        let err = self.err("cannot read counters");
        let pending: i64 = conn.query_row("SELECT count(*) FROM wap_usage_record", [], |r| r.get(0)).map_err(&err)?;
        Ok(LedgerStats {
            highest_issued: read_value(&conn, "highest_issued").map_err(&err)?,
            acknowledged_through: read_value(&conn, "acknowledged_through").map_err(&err)?,
            pending: pending.max(0) as u64,
        })
    }

    fn acknowledge_in(conn: &Connection, up_to: i64) -> rusqlite::Result<u64> {
        let removed = conn.execute("DELETE FROM wap_usage_record WHERE event_id <= ?1", params![up_to])?;
        conn.execute(
            "UPDATE wap_usage_ledger
                SET value = max(value, min(?1, (SELECT value FROM wap_usage_ledger WHERE name = 'highest_issued')))
              WHERE name = 'acknowledged_through'",
            params![up_to],
        )?;
        Ok(removed as u64)
    }

    fn records_after_in(conn: &Connection, after: LastId, limit: usize) -> rusqlite::Result<UsagePage> {
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, record FROM wap_usage_record WHERE event_id > ?1 ORDER BY event_id LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![after.get().unwrap_or(0), limit], |r| {
            Ok(UsageEntry::from_trusted_json(r.get(0)?, r.get(1)?))
        })?;
        Ok(UsagePage::from_entries(rows.collect::<rusqlite::Result<Vec<_>>>()?))
    }

    /// Returns free pages to the file system once enough accumulated.
    fn vacuum_if_needed(conn: &Connection) -> rusqlite::Result<()> {
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free > VACUUM_FREE_PAGES {
            conn.execute_batch("PRAGMA incremental_vacuum;")?;
        }
        Ok(())
    }

    pub(super) fn acknowledge(&self, up_to: i64) -> Result<u64, LedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot acknowledge");
        conn.execute_batch("PRAGMA synchronous = NORMAL;").map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let removed = Self::acknowledge_in(&tx, up_to).map_err(&err)?;
        tx.commit().map_err(&err)?;
        if removed > 0 {
            Self::vacuum_if_needed(&conn).map_err(&err)?;
        }
        Ok(removed)
    }

    pub(super) fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, LedgerError> {
        Self::records_after_in(&self.lock(), after, limit).map_err(self.err("cannot read records"))
    }

    pub(super) fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, LedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot serve usage");
        conn.execute_batch("PRAGMA synchronous = NORMAL;").map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let highest = read_value(&tx, "highest_issued").map_err(&err)?;
        let mut removed = 0;
        if let Some(last) = query.last_id.get() {
            if last > highest {
                return Ok(UsagePoll {
                    page: UsagePage::empty(),
                    last_id_beyond_issued: true,
                    highest_issued: highest,
                });
            }
            removed = Self::acknowledge_in(&tx, last).map_err(&err)?;
        }
        let limit = (query.batch_size as usize).min(max_page);
        let page = if limit == 0 {
            UsagePage::empty()
        } else {
            Self::records_after_in(&tx, query.last_id, limit).map_err(&err)?
        };
        tx.commit().map_err(&err)?;
        if removed > 0 {
            Self::vacuum_if_needed(&conn).map_err(&err)?;
        }
        Ok(UsagePoll { page, last_id_beyond_issued: false, highest_issued: highest })
    }

    pub(super) fn compact(&self) -> Result<(), LedgerError> {
        let conn = self.lock();
        let err = self.err("cannot compact");
        conn.execute_batch("PRAGMA incremental_vacuum;").map_err(&err)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(&err)?;
        Ok(())
    }
}

fn read_value(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row("SELECT value FROM wap_usage_ledger WHERE name = ?1", params![name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn storage_error(location: &str, what: &str, e: rusqlite::Error) -> LedgerError {
    let retryable =
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    LedgerError::Storage {
        location: location.to_owned(),
        message: format!("{what}: {e}"),
        retryable,
        source: Some(Box::new(e)),
    }
}
