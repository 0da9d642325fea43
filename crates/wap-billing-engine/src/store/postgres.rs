//! The PostgreSQL state store (feature `postgres`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, MutexGuard};
use tokio_postgres::{Client, GenericClient, Row, Transaction};
use wap_types::FeedKind;

use crate::journal::{InDoubtResolution, Intent};

use super::migrations::{LATEST_VERSION, MIGRATIONS};
use super::{
    from_millis, identity_key, redact_url, to_millis, AuditAction, AuditEntry, EventCommit, FeedCursor, FeedHold,
    Fence, HaltReason, HaltStatus, HaltTarget, IdentityKind, IdentityMapping, LeaseRecord, ProcessedEvent,
    ProcessedOutcome, ProcessorKind, StateStore, StoreError, UnitAttempts,
};

mod journal;
mod tls;

pub use self::tls::SslMode;

const BACKEND: &str = "postgres";

/// Runs a block on a connection (`c: &mut Client`): the data connection, or with `lease` the connection kept
/// for lease acquisition and renewal (so a renewal never waits behind a commit or a status probe). A block that
/// does not finish within [`OPERATION_TIMEOUT`] is dropped together with its connection (a black-holed
/// connection would otherwise hang for the TCP retransmission time) and fails retryably; a failure that closed
/// the connection drops it too, so the next call reconnects.
macro_rules! with_client {
    ($self:ident, |$c:ident| $body:block) => {
        with_client!($self, data, |$c| $body)
    };
    ($self:ident, $slot:ident, |$c:ident| $body:block) => {{
        let mut guard = $self.client(&$self.$slot).await?;
        let mut timed_out = false;
        let result: Result<_, StoreError> = {
            let $c: &mut Client = guard.as_mut().expect("connected");
            match tokio::time::timeout(OPERATION_TIMEOUT, async { $body }).await {
                Ok(result) => result,
                Err(_) => {
                    timed_out = true;
                    Err(StoreError::Database {
                        backend: BACKEND,
                        message: format!("no answer within {OPERATION_TIMEOUT:?}; connection dropped"),
                        retryable: true,
                    })
                }
            }
        };
        if timed_out || (result.is_err() && guard.as_ref().is_some_and(Client::is_closed)) {
            *guard = None;
        }
        result
    }};
}

/// The longest one store operation may take on the client side before its connection is dropped.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(45);

/// `statement_timeout` set on every connection (unless the URL's `options` set one): the server ends a
/// statement that runs longer.
const STATEMENT_TIMEOUT_MS: u64 = 30_000;

/// The server's clock in milliseconds: lease expiry is computed and compared with it only, so instances on
/// several machines agree whatever their own clocks say.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Key of the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x5741_505f_4249_4c4c; // "WAP_BILL"

/// The state store in a PostgreSQL database, for adapters running on several machines.
///
/// Two connections per store — one for data (cursors, commits, halts, status probes), one for lease
/// acquisition, renewal and release — each re-established after it breaks (the failed operation returns a
/// retryable error). Every connection has TCP keepalives (15 s idle, 5 s interval, 3 probes, unless the URL sets
/// them), a 10 s connect timeout (unless set), `statement_timeout` 30 s, and each operation a 45 s client-side
/// limit.
/// Fenced writes lock the lease row (`FOR SHARE`) in their transaction, so a concurrent acquisition by another
/// instance either waits for the commit or makes it fail with [`StoreError::Fenced`]. Lease times use the server's
/// `clock_timestamp()`. TLS to the server is not offered in this version: connect over a trusted network or a local
/// socket.
pub struct PostgresStore {
    url: String,
    schema: Option<String>,
    /// The CA file for `sslmode=verify-ca` / `verify-full` (else the URL's `sslrootcert`, else the system's roots).
    ca_file: Option<PathBuf>,
    data: Mutex<Option<Client>>,
    lease: Mutex<Option<Client>>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn db_err(e: tokio_postgres::Error) -> StoreError {
    let (message, retryable) = match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 08: connection exception; 40001/40P01: serialization failure, deadlock; 57P: shutdown; 53: resources.
            let retryable = code.starts_with("08")
                || code == "40001"
                || code == "40P01"
                || code.starts_with("57P")
                || code.starts_with("53");
            (format!("{} ({code})", db.message()), retryable)
        }
        None => (e.to_string(), true),
    };
    StoreError::Database { backend: BACKEND, message, retryable }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        db_err(e)
    }
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

fn valid_schema_name(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
}

impl PostgresStore {
    /// Connects to `url` (libpq URL syntax, e.g. `postgres://billing:secret@db:5432/wap_billing`) and brings the
    /// schema up to date. Tables go into the connection's default schema (`options=-csearch_path%3D…` in the URL
    /// changes it).
    ///
    /// TLS follows the URL's `sslmode` (`disable`, `prefer` — the default —, `require`, `verify-ca`, `verify-full`)
    /// and `sslrootcert` (a PEM CA file), through rustls; see [`SslMode`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::open(url, None, None).await
    }

    /// Like [`PostgresStore::connect`], with a CA file (PEM) that the server's certificate must be signed by under
    /// `sslmode=verify-ca` / `verify-full` (and `require`, as libpq does); it takes precedence over the URL's
    /// `sslrootcert`.
    pub async fn connect_with_ca_file(url: &str, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        Self::open(url, None, ca_file.map(Path::to_path_buf)).await
    }

    /// Connects and keeps every table in `schema` (created if missing; `[A-Za-z_][A-Za-z0-9_]*`), so that several
    /// independent engines (or tests) can share one database.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema_name(schema) {
            return Err(StoreError::InvalidUrl {
                url: redact_url(url),
                reason: format!("schema name {schema:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters)"),
            });
        }
        Self::open(url, Some(schema.to_owned()), None).await
    }

    /// [`PostgresStore::connect_in_schema`] with a CA file (see [`PostgresStore::connect_with_ca_file`]).
    pub async fn connect_in_schema_with_ca_file(
        url: &str,
        schema: &str,
        ca_file: Option<&Path>,
    ) -> Result<Self, StoreError> {
        if !valid_schema_name(schema) {
            return Err(StoreError::InvalidUrl {
                url: redact_url(url),
                reason: format!("schema name {schema:?} must match [A-Za-z_][A-Za-z0-9_]* (at most 63 characters)"),
            });
        }
        Self::open(url, Some(schema.to_owned()), ca_file.map(Path::to_path_buf)).await
    }

    async fn open(url: &str, schema: Option<String>, ca_file: Option<PathBuf>) -> Result<Self, StoreError> {
        // Reject a malformed URL (or TLS setting) up front with a clear message (no password in it).
        let tls = tls::split_tls(url)?;
        tls.url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| StoreError::InvalidUrl { url: redact_url(url), reason: e.to_string() })?;
        tls.connector(ca_file.as_deref())?;
        let store =
            PostgresStore { url: url.to_owned(), schema, ca_file, data: Mutex::new(None), lease: Mutex::new(None) };
        {
            let mut guard = store.client(&store.data).await?;
            let client = guard.as_mut().expect("connected");
            migrate(client).await?;
        }
        Ok(store)
    }

    /// The schema given to [`PostgresStore::connect_in_schema`].
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    async fn connect_client(&self) -> Result<Client, StoreError> {
        let tls = tls::split_tls(&self.url)?;
        let mut config: tokio_postgres::Config = tls.url.parse().map_err(|e: tokio_postgres::Error| {
            StoreError::InvalidUrl { url: redact_url(&self.url), reason: e.to_string() }
        })?;
        config.ssl_mode(tls.postgres_mode());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_keepalives() && config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            config.keepalives_idle(Duration::from_secs(15));
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(Duration::from_secs(5));
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(3);
        }
        let own_timeout = config.get_options().is_some_and(|o| o.contains("statement_timeout"));
        let connector = tls.connector(self.ca_file.as_deref())?;
        let (client, connection) =
            config.connect(connector).await.map_err(|e| tls::tls_failure(&e, tls.mode).unwrap_or_else(|| db_err(e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "state database connection closed");
            }
        });
        if !own_timeout {
            client.batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}")).await?;
        }
        if let Some(schema) = &self.schema {
            client
                .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\";"))
                .await?;
        }
        Ok(client)
    }

    /// A connection slot's connection, (re)connecting when there is none or it closed.
    async fn client<'a>(&self, slot: &'a Mutex<Option<Client>>) -> Result<MutexGuard<'a, Option<Client>>, StoreError> {
        let mut guard = slot.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = None;
            *guard = Some(self.connect_client().await?);
        }
        Ok(guard)
    }
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version       BIGINT PRIMARY KEY,
            description   TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL
        );",
    )
    .await?;
    let current: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await?.get(0);
    if current > LATEST_VERSION {
        return Err(StoreError::SchemaTooNew { found: current, supported: LATEST_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.postgres).await?;
        tx.execute(
            &format!("INSERT INTO schema_version (version, description, applied_at_ms) VALUES ($1, $2, {NOW_MS})"),
            &[&m.version, &m.description],
        )
        .await?;
        tracing::info!(version = m.version, description = m.description, "state database migrated");
    }
    tx.commit().await?;
    Ok(())
}

async fn check_fence(tx: &Transaction<'_>, fence: &Fence) -> Result<(), StoreError> {
    let row = tx
        .query_opt("SELECT holder, generation FROM lease WHERE processor = $1 FOR SHARE", &[&fence.processor.name()])
        .await?;
    let ok = row.is_some_and(|r| {
        r.get::<_, Option<String>>(0).as_deref() == Some(fence.holder.as_str())
            && r.get::<_, i64>(1) == fence.generation
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Fenced {
            processor: fence.processor,
            holder: fence.holder.clone(),
            generation: fence.generation,
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn audit(
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
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &to_millis(at),
            &actor,
            &action.name(),
            &processor.map(|p| p.name()),
            &feed.map(|f| f.name()),
            &event_id,
            &detail,
        ],
    )
    .await?;
    Ok(())
}

const ADVANCE_CURSOR: &str = "INSERT INTO cursor (feed, last_event_id) VALUES ($1, $2)
     ON CONFLICT (feed) DO UPDATE SET last_event_id =
        CASE WHEN cursor.last_event_id IS NULL OR cursor.last_event_id < excluded.last_event_id
             THEN excluded.last_event_id ELSE cursor.last_event_id END";

const DROP_HOLD_UP_TO: &str =
    "UPDATE cursor SET hold_event_id = NULL, hold_since_ms = NULL WHERE feed = $1 AND hold_event_id <= $2";

async fn read_halt<C: GenericClient + Sync>(c: &C, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
    let row = c
        .query_opt(
            "SELECT processor, feed, event_id, last_event_id, reason, error, attempts, halted_at_ms
             FROM halt WHERE processor = $1",
            &[&processor.name()],
        )
        .await?;
    row.map(|r| {
        Ok(HaltStatus {
            processor: processor_from(r.get(0))?,
            feed: feed_from(r.get(1))?,
            event_id: r.get(2),
            last_event_id: r.get(3),
            reason: HaltReason::from_name(r.get(4)),
            error: r.get(5),
            attempts: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
            halted_at: from_millis(r.get(7)),
        })
    })
    .transpose()
}

fn lease_from_row(processor: ProcessorKind, r: &Row) -> LeaseRecord {
    LeaseRecord { processor, holder: r.get(0), generation: r.get(1), expires_at: from_millis(r.get(2)) }
}

fn identity_from_row(kind: IdentityKind, r: &Row) -> IdentityMapping {
    IdentityMapping { kind, wap_id: r.get(0), billing_id: r.get(1), updated_at: from_millis(r.get(2)) }
}

fn processed_from_row(feed: FeedKind, r: &Row) -> Result<ProcessedEvent, StoreError> {
    let outcome: String = r.get(2);
    Ok(ProcessedEvent {
        feed,
        event_id: r.get(0),
        last_event_id: r.get(1),
        outcome: ProcessedOutcome::from_name(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown outcome {outcome:?}")))?,
        processed_at: from_millis(r.get(3)),
    })
}

#[async_trait]
impl StateStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn schema_version(&self) -> Result<i64, StoreError> {
        with_client!(self, |c| {
            Ok(c.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[]).await?.get(0))
        })
    }

    async fn cursor(&self, feed: FeedKind) -> Result<FeedCursor, StoreError> {
        with_client!(self, |c| {
            let row = c
                .query_opt(
                    "SELECT last_event_id, last_poll_at_ms, hold_event_id, hold_since_ms FROM cursor WHERE feed = $1",
                    &[&feed.name()],
                )
                .await?;
            Ok(match row {
                None => FeedCursor::empty(feed),
                Some(r) => FeedCursor {
                    feed,
                    last_event_id: r.get(0),
                    last_poll_at: r.get::<_, Option<i64>>(1).map(from_millis),
                    hold: match (r.get::<_, Option<i64>>(2), r.get::<_, Option<i64>>(3)) {
                        (Some(event_id), Some(since)) => Some(FeedHold { event_id, since: from_millis(since) }),
                        _ => None,
                    },
                },
            })
        })
    }

    async fn record_poll(&self, feed: FeedKind, at: DateTime<Utc>) -> Result<(), StoreError> {
        with_client!(self, |c| {
            c.execute(
                "INSERT INTO cursor (feed, last_poll_at_ms) VALUES ($1, $2)
                     ON CONFLICT (feed) DO UPDATE SET last_poll_at_ms = excluded.last_poll_at_ms",
                &[&feed.name(), &to_millis(at)],
            )
            .await?;
            Ok(())
        })
    }

    async fn commit(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            tx.execute(
                "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (feed, event_id) DO NOTHING",
                &[
                    &commit.feed.name(),
                    &commit.first_event_id,
                    &commit.last_event_id,
                    &commit.outcome.name(),
                    &to_millis(commit.at),
                    &fence.generation,
                ],
            )
            .await?;
            tx.execute(ADVANCE_CURSOR, &[&commit.feed.name(), &commit.last_event_id]).await?;
            tx.execute(DROP_HOLD_UP_TO, &[&commit.feed.name(), &commit.last_event_id]).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn processed(&self, feed: FeedKind, from: i64, to: i64) -> Result<Vec<ProcessedEvent>, StoreError> {
        with_client!(self, |c| {
            const COLS: &str = "SELECT event_id, last_event_id, outcome, processed_at_ms FROM processed_event";
            let mut out = Vec::new();
            // Rows of one feed never overlap: only the last row starting before `from` can reach into the range.
            let before = c
                .query_opt(
                    &format!("{COLS} WHERE feed = $1 AND event_id < $2 ORDER BY event_id DESC LIMIT 1"),
                    &[&feed.name(), &from],
                )
                .await?;
            if let Some(r) = before {
                let p = processed_from_row(feed, &r)?;
                if p.last_event_id >= from {
                    out.push(p);
                }
            }
            let rows = c
                .query(
                    &format!("{COLS} WHERE feed = $1 AND event_id >= $2 AND event_id <= $3 ORDER BY event_id"),
                    &[&feed.name(), &from, &to],
                )
                .await?;
            for r in &rows {
                out.push(processed_from_row(feed, r)?);
            }
            Ok(out)
        })
    }

    async fn set_hold(&self, fence: &Fence, feed: FeedKind, hold: Option<FeedHold>) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            tx.execute(
                "INSERT INTO cursor (feed, hold_event_id, hold_since_ms) VALUES ($1, $2, $3)
                     ON CONFLICT (feed) DO UPDATE SET hold_event_id = excluded.hold_event_id,
                                                      hold_since_ms = excluded.hold_since_ms",
                &[&feed.name(), &hold.map(|h| h.event_id), &hold.map(|h| to_millis(h.since))],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn halt(&self, processor: ProcessorKind) -> Result<Option<HaltStatus>, StoreError> {
        with_client!(self, |c| { read_halt(&*c, processor).await })
    }

    async fn set_halt(&self, fence: &Fence, halt: &HaltStatus) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let attempts = i32::try_from(halt.attempts).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO halt (processor, feed, event_id, last_event_id, reason, error, attempts, halted_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (processor) DO UPDATE SET feed = excluded.feed, event_id = excluded.event_id,
                        last_event_id = excluded.last_event_id, reason = excluded.reason, error = excluded.error,
                        attempts = excluded.attempts, halted_at_ms = excluded.halted_at_ms",
                &[
                    &halt.processor.name(),
                    &halt.feed.name(),
                    &halt.event_id,
                    &halt.last_event_id,
                    &halt.reason.name(),
                    &halt.error,
                    &attempts,
                    &to_millis(halt.halted_at),
                ],
            )
            .await?;
            audit(
                &tx,
                halt.halted_at,
                &fence.holder,
                &AuditAction::Halt,
                Some(halt.processor),
                Some(halt.feed),
                Some(halt.event_id),
                &halt.to_string(),
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn resume(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT 1 FROM halt WHERE processor = $1 FOR UPDATE", &[&processor.name()]).await?;
            let halt = read_halt(&tx, processor).await?.ok_or(StoreError::NotHalted { processor })?;
            halt.check(expected)?;
            tx.execute("DELETE FROM halt WHERE processor = $1", &[&processor.name()]).await?;
            if halt.reason == HaltReason::PendingApprovalTimeout {
                tx.execute(DROP_HOLD_UP_TO, &[&halt.feed.name(), &halt.last_event_id]).await?;
            }
            audit(
                &tx,
                at,
                actor,
                &AuditAction::Resume,
                Some(processor),
                Some(halt.feed),
                Some(halt.event_id),
                &format!("resumed; was: {halt}"),
            )
            .await?;
            tx.commit().await?;
            Ok(halt)
        })
    }

    async fn skip(
        &self,
        processor: ProcessorKind,
        expected: Option<HaltTarget>,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<HaltStatus, StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            tx.execute("SELECT 1 FROM halt WHERE processor = $1 FOR UPDATE", &[&processor.name()]).await?;
            let halt = read_halt(&tx, processor).await?.ok_or(StoreError::NotHalted { processor })?;
            halt.check(expected)?;
            tx.execute(
                "INSERT INTO processed_event (feed, event_id, last_event_id, outcome, processed_at_ms, generation)
                     VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (feed, event_id) DO NOTHING",
                &[
                    &halt.feed.name(),
                    &halt.event_id,
                    &halt.last_event_id,
                    &ProcessedOutcome::SkippedByOperator.name(),
                    &to_millis(at),
                ],
            )
            .await?;
            tx.execute(ADVANCE_CURSOR, &[&halt.feed.name(), &halt.last_event_id]).await?;
            tx.execute(DROP_HOLD_UP_TO, &[&halt.feed.name(), &halt.last_event_id]).await?;
            tx.execute("DELETE FROM halt WHERE processor = $1", &[&processor.name()]).await?;
            audit(
                &tx,
                at,
                actor,
                &AuditAction::Skip,
                Some(processor),
                Some(halt.feed),
                Some(halt.event_id),
                &format!("skipped {}..={} ({reason}); was: {halt}", halt.event_id, halt.last_event_id),
            )
            .await?;
            tx.commit().await?;
            Ok(halt)
        })
    }

    async fn identity(&self, kind: IdentityKind, wap_id: &str) -> Result<Option<IdentityMapping>, StoreError> {
        let key = identity_key(wap_id);
        with_client!(self, |c| {
            let row = c
                .query_opt(
                    "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = $1 AND wap_key = $2",
                    &[&kind.name(), &key],
                )
                .await?;
            Ok(row.map(|r| identity_from_row(kind, &r)))
        })
    }

    async fn identity_by_billing_id(
        &self,
        kind: IdentityKind,
        billing_id: &str,
    ) -> Result<Option<IdentityMapping>, StoreError> {
        with_client!(self, |c| {
            let row = c
                .query_opt(
                    "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = $1 AND billing_id = $2
                         ORDER BY wap_key LIMIT 1",
                    &[&kind.name(), &billing_id],
                )
                .await?;
            Ok(row.map(|r| identity_from_row(kind, &r)))
        })
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
        with_client!(self, |c| {
            let rows = c
                .query(
                    "SELECT wap_id, billing_id, updated_at_ms FROM identity_map WHERE kind = $1 ORDER BY wap_key",
                    &[&kind.name()],
                )
                .await?;
            Ok(rows.iter().map(|r| identity_from_row(kind, r)).collect())
        })
    }

    async fn prune(
        &self,
        processed_before: Option<DateTime<Utc>>,
        audit_before: Option<DateTime<Utc>>,
    ) -> Result<(u64, u64), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            let processed = match processed_before {
                Some(t) => {
                    tx.execute(
                        "DELETE FROM processed_event WHERE processed_at_ms < $1 AND last_event_id <
                           COALESCE((SELECT c.last_event_id FROM cursor c WHERE c.feed = processed_event.feed), -1)",
                        &[&to_millis(t)],
                    )
                    .await?
                }
                None => 0,
            };
            let audit = match audit_before {
                Some(t) => tx.execute("DELETE FROM audit_log WHERE at_ms < $1", &[&to_millis(t)]).await?,
                None => 0,
            };
            tx.commit().await?;
            Ok((processed, audit))
        })
    }

    async fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        with_client!(self, |c| {
            let rows = c
                .query(
                    "SELECT id, at_ms, actor, action, processor, feed, event_id, detail FROM
                           (SELECT * FROM audit_log ORDER BY id DESC LIMIT $1) newest ORDER BY id",
                    &[&i64::from(limit)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(AuditEntry {
                        id: r.get(0),
                        at: from_millis(r.get(1)),
                        actor: r.get(2),
                        action: AuditAction::from_name(r.get(3)),
                        processor: r.get::<_, Option<&str>>(4).map(processor_from).transpose()?,
                        feed: r.get::<_, Option<&str>>(5).map(feed_from).transpose()?,
                        event_id: r.get(6),
                        detail: r.get(7),
                    })
                })
                .collect()
        })
    }

    async fn try_acquire_lease(
        &self,
        processor: ProcessorKind,
        holder: &str,
        ttl: Duration,
        steal: bool,
    ) -> Result<Option<LeaseRecord>, StoreError> {
        with_client!(self, lease, |c| {
            let tx = c.transaction().await?;
            tx.execute(
                "INSERT INTO lease (processor, holder, generation, expires_at_ms) VALUES ($1, NULL, 0, 0)
                     ON CONFLICT (processor) DO NOTHING",
                &[&processor.name()],
            )
            .await?;
            let row = tx
                .query_one(
                    &format!(
                        "SELECT holder, generation, expires_at_ms, {NOW_MS} FROM lease WHERE processor = $1 FOR UPDATE"
                    ),
                    &[&processor.name()],
                )
                .await?;
            let current = lease_from_row(processor, &row);
            let now: i64 = row.get(3);
            let free = current.holder.is_none() || to_millis(current.expires_at) <= now;
            // A live lease is not taken even when its holder has this holder's name: that is another process
            // with the same InstanceId (or this one's previous process), and taking it would depose it.
            if !(steal || free) {
                return Ok(None);
            }
            let generation = current.generation + 1;
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE lease SET holder = $2, generation = $3, expires_at_ms = {NOW_MS} + $4
                             WHERE processor = $1 RETURNING expires_at_ms"
                    ),
                    &[&processor.name(), &holder, &generation, &ttl_ms(ttl)],
                )
                .await?;
            let expires: i64 = row.get(0);
            tx.commit().await?;
            Ok(Some(LeaseRecord {
                processor,
                holder: Some(holder.to_owned()),
                generation,
                expires_at: from_millis(expires),
            }))
        })
    }

    async fn renew_lease(&self, fence: &Fence, ttl: Duration) -> Result<bool, StoreError> {
        with_client!(self, lease, |c| {
            let n = c
                .execute(
                    &format!(
                        "UPDATE lease SET expires_at_ms = {NOW_MS} + $4
                             WHERE processor = $1 AND holder = $2 AND generation = $3 AND expires_at_ms > {NOW_MS}"
                    ),
                    &[&fence.processor.name(), &fence.holder, &fence.generation, &ttl_ms(ttl)],
                )
                .await?;
            Ok(n == 1)
        })
    }

    async fn release_lease(&self, fence: &Fence) -> Result<(), StoreError> {
        with_client!(self, lease, |c| {
            c.execute(
                &format!(
                    "UPDATE lease SET holder = NULL, expires_at_ms = {NOW_MS}
                         WHERE processor = $1 AND holder = $2 AND generation = $3"
                ),
                &[&fence.processor.name(), &fence.holder, &fence.generation],
            )
            .await?;
            Ok(())
        })
    }

    async fn lease(&self, processor: ProcessorKind) -> Result<Option<LeaseRecord>, StoreError> {
        with_client!(self, |c| {
            let row = c
                .query_opt(
                    "SELECT holder, generation, expires_at_ms FROM lease WHERE processor = $1",
                    &[&processor.name()],
                )
                .await?;
            Ok(row.map(|r| lease_from_row(processor, &r)))
        })
    }

    async fn unit_attempts(&self, processor: ProcessorKind) -> Result<Vec<UnitAttempts>, StoreError> {
        with_client!(self, |c| {
            let rows = c
                .query(
                    "SELECT feed, event_id, attempts, dependency_since_ms FROM unit_attempt ORDER BY feed, event_id",
                    &[],
                )
                .await?;
            let mut out = Vec::new();
            for r in &rows {
                let feed = feed_from(r.get(0))?;
                if processor.feeds().contains(&feed) {
                    out.push(UnitAttempts {
                        feed,
                        event_id: r.get(1),
                        attempts: u32::try_from(r.get::<_, i32>(2)).unwrap_or(0),
                        dependency_since: r.get::<_, Option<i64>>(3).map(from_millis),
                    });
                }
            }
            Ok(out)
        })
    }

    async fn set_unit_attempts(&self, fence: &Fence, unit: &UnitAttempts) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            let attempts = i32::try_from(unit.attempts).unwrap_or(i32::MAX);
            tx.execute(
                "INSERT INTO unit_attempt (feed, event_id, attempts, dependency_since_ms) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (feed, event_id) DO UPDATE SET attempts = excluded.attempts,
                        dependency_since_ms = excluded.dependency_since_ms",
                &[&unit.feed.name(), &unit.event_id, &attempts, &unit.dependency_since.map(to_millis)],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn clear_unit_attempts(&self, fence: &Fence, feed: FeedKind, event_id: i64) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            check_fence(&tx, fence).await?;
            tx.execute("DELETE FROM unit_attempt WHERE feed = $1 AND event_id = $2", &[&feed.name(), &event_id])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn open_intent(&self, fence: &Fence, intent: &Intent) -> Result<(), StoreError> {
        with_client!(self, |c| { journal::open_intent(c, fence, intent).await })
    }

    async fn intent(&self, processor: ProcessorKind) -> Result<Option<Intent>, StoreError> {
        with_client!(self, |c| { journal::read_intent(&*c, processor).await })
    }

    async fn commit_intent(&self, fence: &Fence, commit: &EventCommit) -> Result<(), StoreError> {
        with_client!(self, |c| { journal::commit_intent(c, fence, commit).await })
    }

    async fn close_intent(&self, fence: &Fence) -> Result<(), StoreError> {
        with_client!(self, |c| { journal::close_intent(c, fence).await })
    }

    async fn resolve_intent(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Intent, StoreError> {
        with_client!(self, |c| { journal::resolve_intent(c, processor, resolution, actor, reason, at).await })
    }
}

/// Identity-map writes, fenced (by a handler) or not (by an operator).
impl PostgresStore {
    async fn set_identity_with(
        &self,
        fence: Option<&Fence>,
        kind: IdentityKind,
        wap_id: &str,
        billing_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            if let Some(f) = fence {
                check_fence(&tx, f).await?;
            }
            let key = identity_key(wap_id);
            let old = tx
                .query_opt(
                    "SELECT billing_id FROM identity_map WHERE kind = $1 AND wap_key = $2 FOR UPDATE",
                    &[&kind.name(), &key],
                )
                .await?
                .map(|r| r.get::<_, String>(0));
            tx.execute(
                    "INSERT INTO identity_map (kind, wap_key, wap_id, billing_id, updated_at_ms) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (kind, wap_key) DO UPDATE SET wap_id = excluded.wap_id,
                        billing_id = excluded.billing_id, updated_at_ms = excluded.updated_at_ms",
                    &[&kind.name(), &key, &wap_id, &billing_id, &to_millis(at)],
                )
                .await?;
            let detail = match old {
                Some(old) => format!("{kind} {wap_id} -> {billing_id} (was {old})"),
                None => format!("{kind} {wap_id} -> {billing_id}"),
            };
            audit(&tx, at, actor, &AuditAction::IdentitySet, None, None, None, &detail).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn delete_identity_with(
        &self,
        fence: Option<&Fence>,
        kind: IdentityKind,
        wap_id: &str,
        actor: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        with_client!(self, |c| {
            let tx = c.transaction().await?;
            if let Some(f) = fence {
                check_fence(&tx, f).await?;
            }
            let old = tx
                .query_opt(
                    "DELETE FROM identity_map WHERE kind = $1 AND wap_key = $2 RETURNING billing_id",
                    &[&kind.name(), &identity_key(wap_id)],
                )
                .await?
                .map(|r| r.get::<_, String>(0));
            if let Some(old) = &old {
                let detail = format!("{kind} {wap_id} (was {old})");
                audit(&tx, at, actor, &AuditAction::IdentityDelete, None, None, None, &detail).await?;
            }
            tx.commit().await?;
            Ok(old.is_some())
        })
    }
}
