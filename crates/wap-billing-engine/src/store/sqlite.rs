//! The embedded SQLite state store (feature `sqlite`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use wap_types::FeedKind;

use crate::journal::{InDoubtResolution, Intent};

use super::migrations::{LATEST_VERSION, MIGRATIONS};
use super::{
    from_millis, identity_key, to_millis, AuditAction, AuditEntry, EventCommit, FeedCursor, FeedHold, Fence,
    HaltReason, HaltStatus, HaltTarget, IdentityKind, IdentityMapping, LeaseRecord, ProcessedEvent, ProcessedOutcome,
    ProcessorKind, SqliteSync, StateStore, StoreError, UnitAttempts,
};

mod journal;

const BACKEND: &str = "sqlite";

/// The state store in one SQLite file (WAL journal, `synchronous = FULL` by default).
///
/// One connection serves each `SqliteStore`; its blocking calls run on Tokio's blocking pool. Several stores (also
/// in several processes) may open the same file: writes take SQLite's write lock (`BEGIN IMMEDIATE`), so fenced
/// commits and lease changes are serialized. SQLite coordinates **one machine** only: use
/// `PostgresStore` for instances on several machines. Lease expiry uses this machine's
/// clock.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::SystemIoFailure
        )
    );
    StoreError::Database { backend: BACKEND, message: e.to_string(), retryable }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        db_err(e)
    }
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

fn feed_from(name: &str) -> Result<FeedKind, StoreError> {
    FeedKind::from_name(name).ok_or_else(|| StoreError::Corrupt(format!("unknown feed {name:?}")))
}

fn processor_from(name: &str) -> Result<ProcessorKind, StoreError> {
    ProcessorKind::from_name(name).ok_or_else(|| StoreError::Corrupt(format!("unknown processor {name:?}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file with `synchronous = FULL` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref().to_path_buf(), SqliteSync::Full).await
    }

    /// Opens the database file with the given `synchronous` setting.
    pub async fn open_with(path: impl Into<PathBuf>, sync: SqliteSync) -> Result<Self, StoreError> {
        let path = path.into();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, StoreError> {
            let mut conn = sync.open_wal(&p)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(join_err)??;
        Ok(SqliteStore { conn: Arc::new(Mutex::new(conn)), path })
    }

    /// A private in-memory database (tests and examples; nothing survives the process).
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        Self::open_with(":memory:", SqliteSync::Full).await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `f` rolled its transaction back when the `Transaction` dropped, so the connection is
            // usable even if the mutex was poisoned.
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(join_err)?
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database { backend: BACKEND, message: format!("blocking task failed: {e}"), retryable: true }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version       INTEGER PRIMARY KEY,
            description   TEXT NOT NULL,
            applied_at_ms INTEGER NOT NULL
        );",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
    if current > LATEST_VERSION {
        return Err(StoreError::SchemaTooNew { found: current, supported: LATEST_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sqlite)?;
        tx.execute(
            "INSERT INTO schema_version (version, description, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.description, now_ms()],
        )?;
        tracing::info!(version = m.version, description = m.description, "state database migrated");
    }
    tx.commit()?;
    Ok(())
}

fn check_fence(tx: &Transaction<'_>, fence: &Fence) -> Result<(), StoreError> {
    let row: Option<(Option<String>, i64)> = tx
        .query_row("SELECT holder, generation FROM lease WHERE processor = ?1", [fence.processor.name()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    match row {
        Some((Some(holder), generation)) if holder == fence.holder && generation == fence.generation => Ok(()),
        _ => Err(StoreError::Fenced {
            processor: fence.processor,
            holder: fence.holder.clone(),
            generation: fence.generation,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
fn audit(
    tx: &Transaction<'_>,
    at: DateTime<Utc>,
    actor: &str,
    action: &AuditAction,
    processor: Option<ProcessorKind>,
    feed: Option<FeedKind>,
    event_id: Option<i64>,
    detail: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO audit_log (at_ms, actor, action, processor, feed, event_id, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            to_millis(at),
            actor,
            action.name(),
            processor.map(|p| p.name()),
            feed.map(|f| f.name()),
            event_id,
            detail
        ],
    )?;
    Ok(())
}

const ADVANCE_CURSOR: &str = "INSERT INTO cursor (feed, last_event_id) VALUES (?1, ?2)
     ON CONFLICT (feed) DO UPDATE SET last_event_id =
        CASE WHEN cursor.last_event_id IS NULL OR cursor.last_event_id < excluded.last_event_id
             THEN excluded.last_event_id ELSE cursor.last_event_id END";

const DROP_HOLD_UP_TO: &str =
    "UPDATE cursor SET hold_event_id = NULL, hold_since_ms = NULL WHERE feed = ?1 AND hold_event_id <= ?2";

type HaltRow = (String, String, i64, i64, String, String, i64, i64);

fn read_halt(tx: &Connection, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
    let row: Option<HaltRow> = tx
        .query_row(
            "SELECT processor, feed, event_id, last_event_id, reason, error, attempts, halted_at_ms
             FROM halt WHERE processor = ?1",
            [processor.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
        )
        .optional()?;
    row.map(|(p, feed, event_id, last_event_id, reason, error, attempts, at)| {
        Ok(HaltStatus {
            processor: processor_from(&p)?,
            feed: feed_from(&feed)?,
            event_id,
            last_event_id,
            reason: HaltReason::from_name(&reason),
            error,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            halted_at: from_millis(at),
        })
    })
    .transpose()
}

fn read_identity(
    conn: &Connection,
    sql: &str,
    kind: IdentityKind,
    key: &str,
) -> Result<Option<IdentityMapping>, StoreError> {
    let row: Option<(String, String, i64)> =
        conn.query_row(sql, params![kind.name(), key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
    Ok(row.map(|(wap_id, billing_id, at)| IdentityMapping { kind, wap_id, billing_id, updated_at: from_millis(at) }))
}

fn read_lease(conn: &Connection, processor: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
    let row: Option<(Option<String>, i64, i64)> = conn
        .query_row(
            "SELECT holder, generation, expires_at_ms FROM lease WHERE processor = ?1",
            [processor.name()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.map(|(holder, generation, exp)| LeaseRecord { processor, holder, generation, expires_at: from_millis(exp) }))
}

fn row_to_processed(feed: FeedKind, r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, String, i64, FeedKind)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, feed))
}

#[async_trait]
impl StateStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        self.run(|c| Ok(c.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?)).await
    }

    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError> {
        self.run(move |c| {
            let row: Option<(Option<i64>, Option<i64>, Option<i64>, Option<i64>)> = c
                .query_row(
                    "SELECT last_event_id, last_poll_at_ms, hold_event_id, hold_since_ms FROM cursor WHERE feed = ?1",
                    [feed.name()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            Ok(match row {
                None => FeedCursor::empty(feed),
                Some((last, poll, hold_id, hold_since)) => FeedCursor {
                    feed,
                    last_event_id: last,
                    last_poll_at: poll.map(from_millis),
                    hold: match (hold_id, hold_since) {
                        (Some(event_id), Some(since)) => Some(FeedHold { event_id, since: from_millis(since) }),
                        _ => None,
                    },
                },
            })
        })
        .await
    }

    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.run(move |c| {
            // The poll time only feeds the retention warning: it is committed without its own sync
            // (`synchronous=NORMAL` for this statement; WAL keeps it atomic, and the next synced commit or
            // checkpoint makes it durable). With several event feeds polled every sync interval, a sync each would
            // queue the usage processor's durable commits behind them on this one connection.
            let level: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            if level > 1 {
                c.execute_batch("PRAGMA synchronous = NORMAL;")?;
            }
            let written = c
                .prepare_cached(
                    "INSERT INTO cursor (feed, last_poll_at_ms) VALUES (?1, ?2)
                     ON CONFLICT (feed) DO UPDATE SET last_poll_at_ms = excluded.last_poll_at_ms",
                )
                .and_then(|mut stmt| stmt.execute(params![feed.name(), to_millis(at)]));
            if level > 1 {
                c.execute_batch(&format!("PRAGMA synchronous = {level};"))?;
            }
            written?;
            Ok(())
        })
        .await
    }

    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        let fence = fence.clone();
        let commit = commit.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_fence(&tx, &fence)?;
            tx.execute(
                "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (feed, event_id) DO NOTHING",
                params![
                    commit.feed.name(),
                    commit.first_event_id,
                    commit.last_event_id,
                    commit.outcome.name(),
                    to_millis(commit.at),
                    fence.generation
                ],
            )?;
            tx.execute(ADVANCE_CURSOR, params![commit.feed.name(), commit.last_event_id])?;
            tx.execute(DROP_HOLD_UP_TO, params![commit.feed.name(), commit.last_event_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError> {
        self.run(move |c| {
            const COLS: &str = "SELECT event_id, last_event_id, outcome, processed_at_ms FROM processed_event";
            let mut rows = Vec::new();
            // Rows of one feed never overlap, so only the last row starting before `from` can reach into the range.
            let before = c
                .query_row(
                    &format!("{COLS} WHERE feed = ?1 AND event_id < ?2 ORDER BY event_id DESC LIMIT 1"),
                    params![feed.name(), from],
                    |r| row_to_processed(feed, r),
                )
                .optional()?;
            rows.extend(before.filter(|(_, last, ..)| *last >= from));
            let mut stmt = c.prepare_cached(&format!(
                "{COLS} WHERE feed = ?1 AND event_id >= ?2 AND event_id <= ?3 ORDER BY event_id"
            ))?;
            for r in stmt.query_map(params![feed.name(), from, to], |r| row_to_processed(feed, r))? {
                rows.push(r?);
            }
            rows.into_iter()
                .map(|(event_id, last_event_id, outcome, at, feed)| {
                    Ok(ProcessedEvent {
                        feed,
                        event_id,
                        last_event_id,
                        outcome: ProcessedOutcome::from_name(&outcome)
                            .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome {outcome:?}")))?,
                        processed_at: from_millis(at),
                    })
                })
                .collect()
        })
        .await
    }

    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_fence(&tx, &fence)?;
            tx.execute(
                "INSERT INTO cursor (feed, hold_event_id, hold_since_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (feed) DO UPDATE SET hold_event_id = excluded.hold_event_id,
                                                  hold_since_ms = excluded.hold_since_ms",
                params![feed.name(), hold.map(|h| h.event_id), hold.map(|h| to_millis(h.since))],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        self.run(move |c| read_halt(c, processor)).await
    }

    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError> {
        let fence = fence.clone();
        let halt = halt.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_fence(&tx, &fence)?;
            tx.execute(
                "INSERT INTO halt (processor, feed, event_id, last_event_id, reason, error, attempts, halted_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (processor) DO UPDATE SET feed = excluded.feed, event_id = excluded.event_id,
                    last_event_id = excluded.last_event_id, reason = excluded.reason, error = excluded.error,
                    attempts = excluded.attempts, halted_at_ms = excluded.halted_at_ms",
                params![
                    halt.processor.name(),
                    halt.feed.name(),
                    halt.event_id,
                    halt.last_event_id,
                    halt.reason.name(),
                    halt.error,
                    halt.attempts,
                    to_millis(halt.halted_at)
                ],
            )?;
            audit(
                &tx,
                halt.halted_at,
                &fence.holder,
                &AuditAction::Halt,
                Some(halt.processor),
                Some(halt.feed),
                Some(halt.event_id),
                &halt.to_string(),
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn resume(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        let actor = actor.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let halt = read_halt(&tx, processor)?.ok_or(StoreError::NotHalted { processor })?;
            halt.check(expected)?;
            tx.execute("DELETE FROM halt WHERE processor = ?1", [processor.name()])?;
            if halt.reason == HaltReason::PendingApprovalTimeout {
                tx.execute(DROP_HOLD_UP_TO, params![halt.feed.name(), halt.last_event_id])?;
            }
            audit(
                &tx,
                at,
                &actor,
                &AuditAction::Resume,
                Some(processor),
                Some(halt.feed),
                Some(halt.event_id),
                &format!("resumed; was: {halt}"),
            )?;
            tx.commit()?;
            Ok(halt)
        })
        .await
    }

    async fn skip(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        let actor = actor.to_owned();
        let reason = reason.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let halt = read_halt(&tx, processor)?.ok_or(StoreError::NotHalted { processor })?;
            halt.check(expected)?;
            tx.execute(
                "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0) ON CONFLICT (feed, event_id) DO NOTHING",
                params![
                    halt.feed.name(),
                    halt.event_id,
                    halt.last_event_id,
                    ProcessedOutcome::SkippedByOperator.name(),
                    to_millis(at)
                ],
            )?;
            tx.execute(ADVANCE_CURSOR, params![halt.feed.name(), halt.last_event_id])?;
            tx.execute(DROP_HOLD_UP_TO, params![halt.feed.name(), halt.last_event_id])?;
            tx.execute("DELETE FROM halt WHERE processor = ?1", [processor.name()])?;
            audit(
                &tx,
                at,
                &actor,
                &AuditAction::Skip,
                Some(processor),
                Some(halt.feed),
                Some(halt.event_id),
                &format!("skipped {}..={} ({reason}); was: {halt}", halt.event_id, halt.last_event_id),
            )?;
            tx.commit()?;
            Ok(halt)
        })
        .await
    }

    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError> {
        let key = identity_key(wap_id);
        self.run(move |c| {
            read_identity(
                c,
                "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = ?1 AND wap_key = ?2",
                kind,
                &key,
            )
        })
        .await
    }

    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError> {
        let billing_id = billing_id.to_owned();
        self.run(move |c| {
            read_identity(
                c,
                "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = ?1 AND billing_id = ?2
                 ORDER BY wap_key LIMIT 1",
                kind,
                &billing_id,
            )
        })
        .await
    }

    async fn set_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_identity_with(None, kind, wap_id, billing_id, actor, at).await
    }

    async fn set_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.set_identity_with(Some(fence), kind, wap_id, billing_id, &fence.holder, at).await
    }

    async fn delete_identity(
        &self,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.delete_identity_with(None, kind, wap_id, actor, at).await
    }

    async fn delete_identity_fenced(
        &self,
        fence: &Fence,
        kind: IdentityKind,
        wap_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.delete_identity_with(Some(fence), kind, wap_id, &fence.holder, at).await
    }

    async fn identities(&self, kind: IdentityKind) -> Result<Vec<IdentityMapping>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = ?1 ORDER BY wap_key",
            )?;
            let rows = stmt.query_map([kind.name()], |r| {
                Ok(IdentityMapping {
                    kind,
                    wap_id: r.get(0)?,
                    billing_id: r.get(1)?,
                    updated_at: from_millis(r.get(2)?),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError> {
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let processed = match processed_before {
                Some(t) => tx.execute(
                    "DELETE FROM processed_event WHERE processed_at_ms < ?1 AND last_event_id <
                       COALESCE((SELECT c.last_event_id FROM cursor c WHERE c.feed = processed_event.feed), -1)",
                    [to_millis(t)],
                )?,
                None => 0,
            };
            let audit = match audit_before {
                Some(t) => tx.execute("DELETE FROM audit_log WHERE at_ms < ?1", [to_millis(t)])?,
                None => 0,
            };
            tx.commit()?;
            Ok((processed as u64, audit as u64))
        })
        .await
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, at_ms, actor, action, processor, feed, event_id, detail FROM
                   (SELECT * FROM audit_log ORDER BY id DESC LIMIT ?1) ORDER BY id",
            )?;
            type Row = (i64, i64, String, String, Option<String>, Option<String>, Option<i64>, String);
            let rows = stmt.query_map([limit], |r| -> rusqlite::Result<Row> {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, at, actor, action, processor, feed, event_id, detail) = row?;
                out.push(AuditEntry {
                    id,
                    at: from_millis(at),
                    actor,
                    action: AuditAction::from_name(&action),
                    processor: processor.as_deref().map(processor_from).transpose()?,
                    feed: feed.as_deref().map(feed_from).transpose()?,
                    event_id,
                    detail,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn try_acquire_lease(
        &self,
        processor: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        let holder = holder.to_owned();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO lease (processor, holder, generation, expires_at_ms) VALUES (?1, NULL, 0, 0)
                 ON CONFLICT (processor) DO NOTHING",
                [processor.name()],
            )?;
            let current = read_lease(&tx, processor)?
                .ok_or_else(|| StoreError::Corrupt("lease row vanished inside its transaction".into()))?;
            let now = now_ms();
            let free = current.holder.is_none() || to_millis(current.expires_at) <= now;
            // A live lease is not taken even when its holder has this holder's name: that is another process
            // with the same InstanceId (or this one's previous process), and taking it would depose it.
            if !(steal || free) {
                return Ok(None);
            }
            let generation = current.generation + 1;
            let expires = now.saturating_add(ttl_ms(ttl));
            tx.execute(
                "UPDATE lease SET holder = ?2, generation = ?3, expires_at_ms = ?4 WHERE processor = ?1",
                params![processor.name(), holder, generation, expires],
            )?;
            tx.commit()?;
            Ok(Some(LeaseRecord { processor, holder: Some(holder), generation, expires_at: from_millis(expires) }))
        })
        .await
    }

    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        let fence = fence.clone();
        self.run(move |c| {
            let now = now_ms();
            let n = c.execute(
                "UPDATE lease SET expires_at_ms = ?4
                 WHERE processor = ?1 AND holder = ?2 AND generation = ?3 AND expires_at_ms > ?5",
                params![fence.processor.name(), fence.holder, fence.generation, now.saturating_add(ttl_ms(ttl)), now],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.run(move |c| {
            c.execute(
                "UPDATE lease SET holder = NULL, expires_at_ms = ?4
                 WHERE processor = ?1 AND holder = ?2 AND generation = ?3",
                params![fence.processor.name(), fence.holder, fence.generation, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    async fn lease(&self, processor: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
        self.run(move |c| read_lease(c, processor)).await
    }

    async fn unit_attempts(&self, processor: ProcessorKind) -> Result<Vec<UnitAttempts>, StoreError> {
        self.run(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT feed, event_id, attempts, dependency_since_ms FROM unit_attempt ORDER BY feed, event_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (feed, event_id, attempts, since) = row?;
                let feed = feed_from(&feed)?;
                if processor.feeds().contains(&feed) {
                    out.push(UnitAttempts {
                        feed,
                        event_id,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        dependency_since: since.map(from_millis),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn set_unit_attempts(&self, fence: &Fence, unit: &UnitAttempts) -> Result<(), StoreError> {
        let (fence, unit) = (fence.clone(), *unit);
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_fence(&tx, &fence)?;
            tx.execute(
                "INSERT INTO unit_attempt (feed, event_id, attempts, dependency_since_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (feed, event_id) DO UPDATE SET attempts = excluded.attempts,
                    dependency_since_ms = excluded.dependency_since_ms",
                params![unit.feed.name(), unit.event_id, unit.attempts, unit.dependency_since.map(to_millis)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn clear_unit_attempts(&self, fence: &Fence, feed: FeedKind, event_id: i64) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_fence(&tx, &fence)?;
            tx.execute("DELETE FROM unit_attempt WHERE feed = ?1 AND event_id = ?2", params![feed.name(), event_id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
        let (fence, intent) = (fence.clone(), intent.clone());
        self.run(move |c| journal::open_intent(c, &fence, &intent)).await
    }

    async fn intent(&self, processor: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        self.run(move |c| journal::read_intent(c, processor)).await
    }

    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        let (fence, commit) = (fence.clone(), commit.clone());
        self.run(move |c| journal::commit_intent(c, &fence, &commit)).await
    }

    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError> {
        let fence = fence.clone();
        self.run(move |c| journal::close_intent(c, &fence)).await
    }

    async fn resolve_intent(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError> {
        let (actor, reason) = (actor.to_owned(), reason.to_owned());
        self.run(move |c| journal::resolve_intent(c, processor, resolution, &actor, &reason, at)).await
    }
}

/// Identity-map writes, fenced (by a handler) or not (by an operator).
impl SqliteStore {
    async fn set_identity_with(
        &self,
        fence: Option<&Fence>,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let fence = fence.cloned();
        let (wap_id, billing_id, actor) = (wap_id.to_owned(), billing_id.to_owned(), actor.to_owned());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(f) = &fence {
                check_fence(&tx, f)?;
            }
            let key = identity_key(&wap_id);
            let old: Option<String> = tx
                .query_row(
                    "SELECT billing_id FROM identity_map WHERE kind = ?1 AND wap_key = ?2",
                    params![kind.name(), key],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "INSERT INTO identity_map (kind, wap_key, wap_id, billing_id, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (kind, wap_key) DO UPDATE SET wap_id = excluded.wap_id,
                    billing_id = excluded.billing_id, updated_at_ms = excluded.updated_at_ms",
                params![kind.name(), key, wap_id, billing_id, to_millis(at)],
            )?;
            let detail = match old {
                Some(old) => format!("{kind} {wap_id} -> {billing_id} (was {old})"),
                None => format!("{kind} {wap_id} -> {billing_id}"),
            };
            audit(&tx, at, &actor, &AuditAction::IdentitySet, None, None, None, &detail)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn delete_identity_with(
        &self,
        fence: Option<&Fence>,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let fence = fence.cloned();
        let (wap_id, actor) = (wap_id.to_owned(), actor.to_owned());
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(f) = &fence {
                check_fence(&tx, f)?;
            }
            let old: Option<String> = tx
                .query_row(
                    "DELETE FROM identity_map WHERE kind = ?1 AND wap_key = ?2 RETURNING billing_id",
                    params![kind.name(), identity_key(&wap_id)],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(old) = &old {
                let detail = format!("{kind} {wap_id} (was {old})");
                audit(&tx, at, &actor, &AuditAction::IdentityDelete, None, None, None, &detail)?;
            }
            tx.commit()?;
            Ok(old.is_some())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(store: &SqliteStore) -> i64 {
        store.run(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)).await.unwrap()
    }

    /// The poll time is written without its own sync, and the connection's level is back where it was for the
    /// durable commits that follow.
    #[tokio::test]
    async fn recording_a_poll_keeps_the_store_synchronous_level() {
        let dir = tempfile::tempdir().unwrap();
        let at = from_millis(1_700_000_000_000);
        for (sync, level) in [(SqliteSync::Full, 2), (SqliteSync::Normal, 1)] {
            let path = dir.path().join(format!("state-{level}.db"));
            let store = SqliteStore::open_with(path.clone(), sync).await.unwrap();
            assert_eq!(synchronous(&store).await, level);
            store.record_poll(FeedKind::Plans, at).await.unwrap();
            assert_eq!(synchronous(&store).await, level, "{sync:?}");
            assert_eq!(store.cursor(FeedKind::Plans).await.unwrap().last_poll_at, Some(at));
            drop(store);
            let reopened = SqliteStore::open(&path).await.unwrap();
            assert_eq!(reopened.cursor(FeedKind::Plans).await.unwrap().last_poll_at, Some(at));
        }
    }
}
