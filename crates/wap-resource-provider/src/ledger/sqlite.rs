//! The SQLite ledger backend: one connection behind a mutex, used from `spawn_blocking`.
//!
//! Schema: `wap_usage_record(event_id INTEGER PRIMARY KEY, record TEXT)` (the record's JSON, `EventId`
//! included), `wap_usage_ledger(name, value)` holding `highest_issued`, `acknowledged_through` and
//! `served_through` (the highest id handed to a collector: no acknowledgement deletes above it), so ids are never
//! reused even when every record has been acknowledged and deleted, and `wap_usage_append_key(key, first_id,
//! last_id, count)`: the client keys of the most recent appends (bounded, oldest dropped first), so that a retried
//! append stores once.
//!
//! Space: the file uses `auto_vacuum = INCREMENTAL`; every page freed by acknowledgements is returned once enough
//! accumulated (the whole free list, not one page), and [`SqliteLedger::compact`] also truncates the WAL. A file
//! created before incremental auto-vacuum is converted once, with a full `VACUUM`, when opened.
//!
//! Durability: appends commit with `synchronous=FULL` (the WAL is synced before `append` returns).
//! Acknowledgements commit with `synchronous=NORMAL`: losing one to a power cut only brings back records the
//! collector's next `lastID` acknowledges again before anything is served, so it costs no sync per page.
//! Concurrent appends are group-committed: whoever holds the connection commits every queued append in one
//! transaction (one sync), and each caller gets its own ids.

use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use wap_types::{LastId, RpUsageRecord};

use super::{check_key_reuse, renumbered, LastIdBeyondIssued, LedgerOptions, LedgerStats, UsageLedgerError};
use crate::usage::{UsageEntry, UsagePage, UsagePoll, UsageQuery};

/// Free pages above which an acknowledgement also returns space to the file system (4 KiB pages: 16 MiB).
const VACUUM_FREE_PAGES: i64 = 4096;

/// How many times the committer yields, at most, for the previous group's appenders to queue again.
const GATHER_YIELDS: usize = 64;

/// Where an append's ids (or its error) go.
type AppendReply = tokio::sync::oneshot::Sender<Result<RangeInclusive<i64>, UsageLedgerError>>;

/// What an append gets back: its ids once they are durable, or its error.
pub(super) type AppendResult = tokio::sync::oneshot::Receiver<Result<RangeInclusive<i64>, UsageLedgerError>>;

/// An append waiting for the next group commit: its records, its client key, and where its ids go.
type PendingAppend = (Vec<RpUsageRecord>, Option<String>, AppendReply);

/// The appends waiting for the next commit, and whether a committer is running.
#[derive(Debug, Default)]
struct AppendQueue {
    pending: Vec<PendingAppend>,
    committing: bool,
}

/// The connection and the `synchronous` level it is set to (so that it is set only when it changes).
#[derive(Debug)]
struct Db {
    conn: Connection,
    full_sync: Option<bool>,
}

impl Db {
    /// Sets `synchronous` to FULL (`true`) or NORMAL (`false`) unless it already is.
    fn synchronous(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.full_sync != Some(full) {
            self.full_sync = None;
            self.conn.execute_batch(if full {
                "PRAGMA synchronous = FULL;"
            } else {
                "PRAGMA synchronous = NORMAL;"
            })?;
            self.full_sync = Some(full);
        }
        Ok(())
    }
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

#[derive(Debug)]
pub(super) struct SqliteLedger {
    conn: Mutex<Db>,
    queue: Mutex<AppendQueue>,
    location: String,
    /// Metrics since the process started: `lastID`s above the served mark, and above every issued id.
    acks_above_served: AtomicU64,
    last_ids_beyond_issued: AtomicU64,
    /// Durable append transactions committed since the process started (one per group).
    append_commits: AtomicU64,
}

/// Clears the committer flag when the committer ends, and fails what it left queued if it panicked.
struct CommitterGuard<'a>(&'a SqliteLedger);

impl Drop for CommitterGuard<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.committing = false;
        if std::thread::panicking() {
            // Their senders drop: each waiting append gets an error instead of waiting forever.
            queue.pending.clear();
        }
    }
}

impl SqliteLedger {
    pub(super) fn open(path: &Path) -> Result<Self, UsageLedgerError> {
        let location = path.display().to_string();
        let err = |e: rusqlite::Error| storage_error(&location, "cannot open", e);
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // auto_vacuum only takes effect before the first table is created; an older file is converted once with a
        // full VACUUM (its free pages could not be returned otherwise).
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(err)?;
        let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(err)?;
        if auto_vacuum != 2 {
            tracing::info!(location = %location, "usage ledger: converting the file to incremental auto-vacuum (one full VACUUM)");
            conn.execute_batch("VACUUM;").map_err(err)?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(UsageLedgerError::Storage {
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
             CREATE TABLE IF NOT EXISTS wap_usage_append_key (
                 seq      INTEGER PRIMARY KEY,
                 key      TEXT NOT NULL UNIQUE,
                 first_id INTEGER NOT NULL,
                 last_id  INTEGER NOT NULL,
                 count    INTEGER NOT NULL
             );
             UPDATE wap_usage_ledger
                SET value = max(value, (SELECT coalesce(max(event_id), 0) FROM wap_usage_record))
              WHERE name = 'highest_issued';
             -- A file from before the served mark: its collector polled until an empty page, so everything issued
             -- counts as served (renumbering it would send WAP what it already has).
             INSERT OR IGNORE INTO wap_usage_ledger (name, value)
                 SELECT 'served_through', value FROM wap_usage_ledger WHERE name = 'highest_issued';",
        )
        .map_err(err)?;
        Ok(SqliteLedger {
            conn: Mutex::new(Db { conn, full_sync: Some(true) }),
            queue: Mutex::new(AppendQueue::default()),
            location,
            acks_above_served: AtomicU64::new(0),
            last_ids_beyond_issued: AtomicU64::new(0),
            append_commits: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock dropped its transaction (rolled back): the connection is usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> UsageLedgerError + '_ {
        let what = what.to_owned();
        move |e| storage_error(&self.location, &what, e)
    }

    /// Appends with group commit: the append joins the queue; when no committer is running, this call starts one
    /// (on the blocking pool). The committer takes the connection, then everything queued by then, commits it in
    /// one transaction (one sync), answers each append, and repeats until the queue is empty: the appends that
    /// arrive while a commit syncs share the next one. Each append's answer is sent only after its commit.
    pub(super) fn enqueue_append(
        self: &Arc<Self>,
        records: Vec<RpUsageRecord>,
        key: Option<String>,
        options: LedgerOptions,
    ) -> AppendResult {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.pending.push((records, key, tx));
            !std::mem::replace(&mut queue.committing, true)
        };
        if start {
            let ledger = Arc::clone(self);
            // Not awaited: the appends wait for their answers; a panic drops them (each gets an error).
            drop(tokio::task::spawn_blocking(move || ledger.commit_queued(&options)));
        }
        rx
    }

    /// The committer: commits the queued appends, group by group, until none is left.
    fn commit_queued(&self, options: &LedgerOptions) {
        let _guard = CommitterGuard(self);
        let mut previous_group = 0;
        loop {
            // The connection first, then the queue: everything that arrived while the previous commit synced, or
            // while a poll held the connection, goes into this commit.
            let mut conn = self.lock();
            // The appenders answered by the previous commit are being woken and will append again: give them a
            // moment (a bounded number of yields, no sleep) to join this group rather than the next one.
            for _ in 0..GATHER_YIELDS {
                if self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending.len() >= previous_group {
                    break;
                }
                std::thread::yield_now();
            }
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if queue.pending.is_empty() {
                    queue.committing = false;
                    return;
                }
                std::mem::take(&mut queue.pending)
            };
            previous_group = batch.len();
            self.commit_appends(&mut conn, batch, options);
        }
    }

    /// Durable append transactions committed since the ledger was opened.
    pub(super) fn append_commits(&self) -> u64 {
        self.append_commits.load(Ordering::Relaxed)
    }

    /// Commits queued appends in one transaction and answers each.
    fn commit_appends(&self, conn: &mut Db, batch: Vec<PendingAppend>, options: &LedgerOptions) {
        let mut appends = Vec::with_capacity(batch.len());
        let mut senders = Vec::with_capacity(batch.len());
        for (records, key, sender) in batch {
            appends.push((records, key));
            senders.push(sender);
        }
        match self.insert_batches(conn, appends, options) {
            Ok(ranges) => {
                for (tx, range) in senders.into_iter().zip(ranges) {
                    let _ = tx.send(range);
                }
            }
            Err(e) => {
                let message = e.to_string();
                let retryable = e.is_retryable();
                let mut first = Some(e);
                for tx in senders {
                    let err = first.take().unwrap_or_else(|| UsageLedgerError::Storage {
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

    /// Inserts every queued append in one transaction. The outer error fails them all (storage); an inner one
    /// fails only its append (a client key reused for another append).
    #[allow(clippy::type_complexity)]
    fn insert_batches(
        &self,
        conn: &mut Db,
        batches: Vec<(Vec<RpUsageRecord>, Option<String>)>,
        options: &LedgerOptions,
    ) -> Result<Vec<Result<RangeInclusive<i64>, UsageLedgerError>>, UsageLedgerError> {
        let err = self.err("cannot append");
        conn.synchronous(true).map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let mut highest = read_value(&tx, "highest_issued").map_err(&err)?;
        let mut ranges = Vec::with_capacity(batches.len());
        let mut keyed = false;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO wap_usage_record (event_id, record) VALUES (?1, ?2)").map_err(&err)?;
            let mut find_key = tx
                .prepare_cached("SELECT first_id, last_id, count FROM wap_usage_append_key WHERE key = ?1")
                .map_err(&err)?;
            let mut insert_key = tx
                .prepare_cached(
                    "INSERT INTO wap_usage_append_key (key, first_id, last_id, count) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(&err)?;
            for (records, key) in batches {
                if let Some(key) = &key {
                    let known = find_key
                        .query_row(params![key], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                        })
                        .optional()
                        .map_err(&err)?;
                    if let Some((first, last, count)) = known {
                        ranges.push(
                            check_key_reuse(key, usize::try_from(count).unwrap_or(0), records.len())
                                .map(|()| first..=last),
                        );
                        continue;
                    }
                }
                let first = highest.checked_add(1).ok_or(UsageLedgerError::IdsExhausted)?;
                let count = i64::try_from(records.len()).map_err(|_| UsageLedgerError::IdsExhausted)?;
                let last = if count == 0 {
                    highest
                } else {
                    first.checked_add(count - 1).ok_or(UsageLedgerError::IdsExhausted)?
                };
                for (id, mut record) in (first..).zip(records) {
                    record.event_id = id;
                    let json = serde_json::to_string(&record)?;
                    insert.execute(params![id, json]).map_err(&err)?;
                }
                if let Some(key) = &key {
                    insert_key.execute(params![key, first, last, count]).map_err(&err)?;
                    keyed = true;
                }
                highest = last;
                ranges.push(Ok(first..=last));
            }
        }
        if keyed {
            let retention = i64::try_from(options.client_key_retention).unwrap_or(i64::MAX);
            tx.execute(
                "DELETE FROM wap_usage_append_key WHERE seq <= (SELECT max(seq) FROM wap_usage_append_key) - ?1",
                params![retention],
            )
            .map_err(&err)?;
        }
        tx.execute("UPDATE wap_usage_ledger SET value = ?1 WHERE name = 'highest_issued'", params![highest])
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        self.append_commits.fetch_add(1, Ordering::Relaxed);
        Ok(ranges)
    }

    /// Moves the id counter to at least `id`; records never served with an id at or below it get new ids above it.
    fn advance_in(conn: &Connection, id: i64) -> Result<u64, UsageLedgerError> {
        let err = |e| storage_error("", "cannot advance ids", e);
        let mut highest = read_value(conn, "highest_issued").map_err(err)?.max(id);
        let served = read_value(conn, "served_through").map_err(err)?;
        let moving: Vec<(i64, String)> = {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT event_id, record FROM wap_usage_record WHERE event_id > ?1 AND event_id <= ?2 ORDER BY event_id",
                )
                .map_err(err)?;
            let rows = stmt.query_map(params![served, id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(err)?
        };
        for (old, json) in &moving {
            let next = highest.checked_add(1).ok_or(UsageLedgerError::IdsExhausted)?;
            let entry = renumbered(&UsageEntry::from_trusted_json(*old, json.clone()), next)?;
            conn.execute(
                "UPDATE wap_usage_record SET event_id = ?1, record = ?2 WHERE event_id = ?3",
                params![next, entry.json(), old],
            )
            .map_err(err)?;
            highest = next;
        }
        conn.execute("UPDATE wap_usage_ledger SET value = ?1 WHERE name = 'highest_issued'", params![highest])
            .map_err(err)?;
        // At or below `id` only served records are left: the mark moves up to it.
        conn.execute("UPDATE wap_usage_ledger SET value = max(value, ?1) WHERE name = 'served_through'", params![id])
            .map_err(err)?;
        Ok(moving.len() as u64)
    }

    pub(super) fn advance_ids_past(&self, id: i64) -> Result<u64, UsageLedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot advance ids");
        conn.synchronous(true).map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let moved = Self::advance_in(&tx, id).map_err(|e| self.relocate(e))?;
        tx.commit().map_err(&err)?;
        Ok(moved)
    }

    /// Puts this ledger's file name into a storage error made without it.
    fn relocate(&self, e: UsageLedgerError) -> UsageLedgerError {
        match e {
            UsageLedgerError::Storage { message, retryable, source, .. } => {
                UsageLedgerError::Storage { location: self.location.clone(), message, retryable, source }
            }
            other => other,
        }
    }

    pub(super) fn stats(&self) -> Result<LedgerStats, UsageLedgerError> {
        let conn = self.lock();
        let err = self.err("cannot read counters");
        let pending: i64 = conn.query_row("SELECT count(*) FROM wap_usage_record", [], |r| r.get(0)).map_err(&err)?;
        Ok(LedgerStats {
            highest_issued: read_value(&conn, "highest_issued").map_err(&err)?,
            acknowledged_through: read_value(&conn, "acknowledged_through").map_err(&err)?,
            pending: pending.max(0) as u64,
            served_through: read_value(&conn, "served_through").map_err(&err)?,
            acknowledgements_above_served: self.acks_above_served.load(Ordering::Relaxed),
            last_ids_beyond_issued: self.last_ids_beyond_issued.load(Ordering::Relaxed),
            append_commits: self.append_commits(),
        })
    }

    /// Deletes the records up to `up_to`, never above the served mark.
    fn acknowledge_in(conn: &Connection, up_to: i64) -> rusqlite::Result<u64> {
        let up_to = up_to.min(read_value(conn, "served_through")?);
        let removed = conn.execute("DELETE FROM wap_usage_record WHERE event_id <= ?1", params![up_to])?;
        conn.execute(
            "UPDATE wap_usage_ledger SET value = max(value, ?1) WHERE name = 'acknowledged_through'",
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

    /// Returns the whole free list to the file system once enough accumulated.
    fn vacuum_if_needed(conn: &Connection) -> rusqlite::Result<()> {
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if free > VACUUM_FREE_PAGES {
            incremental_vacuum(conn)?;
        }
        Ok(())
    }

    pub(super) fn acknowledge(&self, up_to: i64) -> Result<u64, UsageLedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot acknowledge");
        conn.synchronous(false).map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let removed = Self::acknowledge_in(&tx, up_to).map_err(&err)?;
        tx.commit().map_err(&err)?;
        if removed > 0 {
            Self::vacuum_if_needed(&conn).map_err(&err)?;
        }
        Ok(removed)
    }

    /// Records that a page up to `through` was handed to a collector (never lowers the mark).
    pub(super) fn mark_served(&self, through: i64) -> Result<(), UsageLedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot record the served mark");
        // FULL: the mark is durable before the page leaves, so records renumbered later were really never sent.
        conn.synchronous(true).map_err(&err)?;
        Self::raise_served_in(&conn, through).map_err(&err)?;
        Ok(())
    }

    /// Raises the served mark to `through` (never lowers it, never above the highest issued id).
    fn raise_served_in(conn: &Connection, through: i64) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "UPDATE wap_usage_ledger
                SET value = max(value, min(?1, (SELECT value FROM wap_usage_ledger WHERE name = 'highest_issued')))
              WHERE name = 'served_through'",
        )?
        .execute(params![through])?;
        Ok(())
    }

    pub(super) fn served_through(&self) -> Result<i64, UsageLedgerError> {
        read_value(&self.lock(), "served_through").map_err(self.err("cannot read the served mark"))
    }

    pub(super) fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageLedgerError> {
        Self::records_after_in(&self.lock(), after, limit).map_err(self.err("cannot read records"))
    }

    pub(super) fn poll(
        &self,
        query: UsageQuery,
        max_page: usize,
        options: &LedgerOptions,
    ) -> Result<UsagePoll, UsageLedgerError> {
        let mut conn = self.lock();
        let err = self.err("cannot serve usage");
        let highest = read_value(&conn, "highest_issued").map_err(&err)?;
        let served = read_value(&conn, "served_through").map_err(&err)?;
        let moves_ids = query.last_id.get().is_some_and(|last| last > highest || last > served);
        let limit = (query.batch_size as usize).min(max_page);
        // A page with records above the served mark raises the mark in this same transaction, before it leaves.
        let raises_mark = limit > 0 && highest > served;
        // Moving ids and raising the mark are append-like changes (FULL); a plain acknowledgement is not (NORMAL,
        // see the module docs). One commit, so at most one sync per page.
        let full = moves_ids || raises_mark;
        conn.synchronous(full).map_err(&err)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let highest = read_value(&tx, "highest_issued").map_err(&err)?;
        let mut poll = UsagePoll::new(UsagePage::empty(), highest);
        let mut removed = 0;
        if let Some(last) = query.last_id.get() {
            if last > highest {
                self.last_ids_beyond_issued.fetch_add(1, Ordering::Relaxed);
                poll.last_id_beyond_issued = true;
                match options.last_id_beyond_issued {
                    LastIdBeyondIssued::Refuse => {
                        return Err(UsageLedgerError::LastIdBeyondIssued { last_id: last, highest_issued: highest })
                    }
                    LastIdBeyondIssued::AdvanceIds => {
                        // Nothing is acknowledged: the page holds the records that got new ids above `last`.
                        poll.renumbered = Self::advance_in(&tx, last).map_err(|e| self.relocate(e))?;
                        poll.ids_advanced = true;
                        poll.after = query.last_id;
                    }
                }
            } else {
                let served = read_value(&tx, "served_through").map_err(&err)?;
                removed = Self::acknowledge_in(&tx, last.min(served)).map_err(&err)?;
                if last > served {
                    // Acknowledges only what was served; the records never served at or below `last` get new ids
                    // above the highest (a collector drops ids at or below its lastID), and are served after it.
                    self.acks_above_served.fetch_add(1, Ordering::Relaxed);
                    poll.last_id_above_served = true;
                    poll.renumbered = Self::advance_in(&tx, last).map_err(|e| self.relocate(e))?;
                }
                poll.after = query.last_id;
            }
        }
        poll.highest_issued = read_value(&tx, "highest_issued").map_err(&err)?;
        poll.served_through = Some(read_value(&tx, "served_through").map_err(&err)?);
        if limit > 0 {
            poll.page = Self::records_after_in(&tx, poll.after, limit).map_err(&err)?;
        }
        let page_last = poll.page.entries().last().map(UsageEntry::event_id);
        if let (Some(last), true) = (page_last, full) {
            if last > poll.served_through.unwrap_or(0) {
                Self::raise_served_in(&tx, last).map_err(&err)?;
                poll.served_recorded_through = Some(last);
            }
        }
        tx.commit().map_err(&err)?;
        if removed > 0 {
            Self::vacuum_if_needed(&conn).map_err(&err)?;
        }
        Ok(poll)
    }

    /// Returns every free page to the file system and truncates the WAL (the file shrinks at that checkpoint).
    pub(super) fn compact(&self) -> Result<(), UsageLedgerError> {
        let conn = self.lock();
        let err = self.err("cannot compact");
        incremental_vacuum(&conn).map_err(&err)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(&err)?;
        Ok(())
    }
}

/// `PRAGMA incremental_vacuum` frees one page per step: it is stepped to the end, so the whole free list goes.
fn incremental_vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

fn read_value(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM wap_usage_ledger WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

fn storage_error(location: &str, what: &str, e: rusqlite::Error) -> UsageLedgerError {
    let retryable =
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked));
    UsageLedgerError::Storage {
        location: location.to_owned(),
        message: format!("{what}: {e}"),
        retryable,
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wap_types::{StringMap, WapDateTime};

    fn record(gb: u32) -> RpUsageRecord {
        RpUsageRecord {
            subscription_id: "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796".into(),
            start_time: WapDateTime::parse("2015-06-02T08:00:00Z").unwrap(),
            end_time: WapDateTime::parse("2015-06-02T09:00:00Z").unwrap(),
            resources: [("StorageGB".to_owned(), gb.to_string())].into_iter().collect::<StringMap>(),
            ..Default::default()
        }
    }

    fn queued(ledger: &SqliteLedger) -> usize {
        ledger.queue.lock().unwrap().pending.len()
    }

    /// Appends that arrive while the connection is busy (a sync in progress) share the next commit; a retried
    /// key inside that same group stores once; everything is in the file after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_arriving_during_a_commit_share_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.db");
        let ledger = Arc::new(SqliteLedger::open(&path).unwrap());
        let options = LedgerOptions::default();
        // The first append is committed alone.
        let first = ledger.enqueue_append(vec![record(0)], None, options).await.unwrap().unwrap();
        assert_eq!((first, ledger.append_commits()), (1..=1, 1));

        // Hold the connection as a committing append would during its sync; 32 appends arrive meanwhile.
        let held = ledger.lock();
        let mut answers = Vec::new();
        for i in 1..=32u32 {
            // Appends 10 and 20 carry the same key: a retry that arrives before the first attempt committed.
            let key = matches!(i, 10 | 20).then(|| "provider-record-7".to_owned());
            answers.push(ledger.enqueue_append(vec![record(i)], key, options));
        }
        assert_eq!(queued(&ledger), 32, "nothing commits while the connection is held");
        drop(held);
        let mut ids = Vec::new();
        for answer in answers {
            ids.push(*answer.await.unwrap().unwrap().start());
        }
        assert_eq!(ledger.append_commits(), 2, "the 32 appends shared one commit");
        assert_eq!(ids[9], ids[19], "the retried key got the first attempt's id");
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct, (2..=32).collect::<Vec<i64>>(), "31 records stored, ids consecutive");
        // Later appends still commit (the committer ended, or picks them up).
        assert_eq!(ledger.enqueue_append(vec![record(33)], None, options).await.unwrap().unwrap(), 33..=33);
        drop(ledger);

        let reopened = SqliteLedger::open(&path).unwrap();
        let stats = reopened.stats().unwrap();
        assert_eq!((stats.highest_issued, stats.pending), (33, 33));
        let page = reopened.records_after(LastId::NONE, 100).unwrap();
        let gb: Vec<String> = page
            .entries()
            .iter()
            .map(|e| e.record().unwrap().resources.get_ignore_case("StorageGB").unwrap().to_owned())
            .collect();
        assert_eq!(gb.len(), 33);
        assert!(!gb.contains(&"20".to_owned()), "the retry stored nothing");
    }
}
