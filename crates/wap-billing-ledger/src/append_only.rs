//! [`AppendOnlyLedger`]: a billing system that cannot deduplicate, for proving the engine's journaled path.
//!
//! Like WHMCS's `AddBillableItem` or HostBill's `meteredAddUsage`, every call **appends**: a usage call adds one
//! `usage_call` row and its lines (one per subscription, provider, resource, meter and month,
//! [`UsageShape::PerMeter`]), an event call adds one `event_line` row. Nothing is keyed on WAP's `EventId`, so a
//! repeated call bills twice. What it does keep, as such systems let you keep a note or a custom field on a line,
//! is the intent's **token**; [`AppendOnlyLedger`]'s `reconcile` looks the token up:
//! no row → `NotApplied`, one → `Applied`, more → `Unknown`.
//!
//! It can also be told to fail **after** committing every n-th usage call
//! ([`AppendOnlyLedger::fail_after_commit_every`]), as a system that times out after it has written.
//!
//! Each call runs its SQLite transaction on the calling task (not on the blocking pool), so a call the engine
//! drops has either committed or not started: a test double that cannot land late.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, TransactionBehavior};
use wap_billing_engine::handler::{EntityChange, EventContext, EventHandler, HandlerError, UsageBatch, UsageHandler};
use wap_billing_engine::journal::{Delivery, Intent, Reconciliation};
use wap_billing_engine::store::SqliteSync;
use wap_billing_engine::usage_lines::{UsageLines, UsagePeriod, UsageShape};
use wap_types::{AdminSubscription, FeedKind, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference};

use crate::LedgerError;

/// The version this ledger reports for the billing-system version check.
pub const APPEND_ONLY_LEDGER_VERSION: &str = "wap-billing-append-only-ledger 1";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS usage_call (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        token          TEXT NOT NULL,
        first_event_id INTEGER NOT NULL,
        last_event_id  INTEGER NOT NULL,
        records        INTEGER NOT NULL,
        at_ms          INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_call_token ON usage_call (token);
    CREATE TABLE IF NOT EXISTS usage_line (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        call_seq        INTEGER NOT NULL,
        subscription_id TEXT NOT NULL,
        provider        TEXT NOT NULL,
        resource_id     TEXT NOT NULL,
        meter           TEXT NOT NULL,
        period          TEXT NOT NULL,
        quantity        REAL NOT NULL,
        records         INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS event_line (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        token    TEXT NOT NULL,
        feed     TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        verb     TEXT NOT NULL,
        at_ms    INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS event_line_token ON event_line (token);
";

/// One usage call as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageCall {
    /// The intent token it carried.
    pub token: String,
    /// The first `EventId` of the batch.
    pub first_event_id: i64,
    /// The last `EventId` of the batch.
    pub last_event_id: i64,
    /// How many records the batch held.
    pub records: u64,
}

/// The sum of the lines of one subscription, provider and meter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LineTotal {
    /// The subscription (lower case).
    pub subscription_id: String,
    /// `ProviderName` (empty when absent).
    pub provider: String,
    /// The meter.
    pub meter: String,
    /// The summed quantity.
    pub quantity: f64,
    /// The summed record counts of the lines.
    pub records: u64,
}

/// Counters since this value was opened (clones share them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AppendOnlyStats {
    /// Usage calls appended.
    pub usage_calls: u64,
    /// Usage calls that committed and then answered an error (see
    /// [`AppendOnlyLedger::fail_after_commit_every`]).
    pub failed_after_commit: u64,
    /// Event calls appended.
    pub event_calls: u64,
    /// `reconcile` calls answered.
    pub reconciles: u64,
}

#[derive(Debug, Default)]
struct Counters {
    usage_calls: AtomicU64,
    failed_after_commit: AtomicU64,
    event_calls: AtomicU64,
    reconciles: AtomicU64,
}

/// A billing system that appends on every call and cannot deduplicate: a repeated call bills twice; `reconcile`
/// looks the intent token up (none: not applied, one: applied, more: unknown). Implements
/// [`EventHandler`] and [`UsageHandler`] with [`Delivery::Journaled`] and [`UsageShape::PerMeter`] (monthly).
#[derive(Clone)]
pub struct AppendOnlyLedger {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    fail_every: u64,
    counters: Arc<Counters>,
}

impl fmt::Debug for AppendOnlyLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendOnlyLedger").field("path", &self.path).field("fail_every", &self.fail_every).finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl AppendOnlyLedger {
    /// Opens (creating if needed) the ledger file with `synchronous = FULL`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        Self::open_with(path.as_ref().to_path_buf(), SqliteSync::Full)
    }

    /// Opens the ledger file with the given `synchronous` setting.
    pub fn open_with(path: impl Into<PathBuf>, sync: SqliteSync) -> Result<Self, LedgerError> {
        let path = path.into();
        let conn = sync.open_wal(&path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(AppendOnlyLedger { conn: Arc::new(Mutex::new(conn)), path, fail_every: 0, counters: Arc::default() })
    }

    /// Makes every `n`-th usage call of this value (and its clones) commit its lines and then answer an error, as
    /// a billing API that times out after writing; 0 (the default) never.
    pub fn fail_after_commit_every(mut self, n: u64) -> Self {
        self.fail_every = n;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version reported to the engine's billing-system version check.
    pub fn version(&self) -> &'static str {
        APPEND_ONLY_LEDGER_VERSION
    }

    /// Counters since open.
    pub fn stats(&self) -> AppendOnlyStats {
        let c = &self.counters;
        AppendOnlyStats {
            usage_calls: c.usage_calls.load(Ordering::Relaxed),
            failed_after_commit: c.failed_after_commit.load(Ordering::Relaxed),
            event_calls: c.event_calls.load(Ordering::Relaxed),
            reconciles: c.reconciles.load(Ordering::Relaxed),
        }
    }

    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, LedgerError>) -> Result<T, LedgerError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Every usage call, in the order appended.
    pub fn usage_calls(&self) -> Result<Vec<UsageCall>, LedgerError> {
        self.with_conn(|c| {
            let mut stmt =
                c.prepare("SELECT token, first_event_id, last_event_id, records FROM usage_call ORDER BY seq")?;
            let rows = stmt.query_map([], |r| {
                Ok(UsageCall {
                    token: r.get(0)?,
                    first_event_id: r.get(1)?,
                    last_event_id: r.get(2)?,
                    records: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The highest usage `EventId` any call covered (0 when none).
    pub fn usage_progress(&self) -> Result<i64, LedgerError> {
        self.with_conn(|c| Ok(c.query_row("SELECT COALESCE(MAX(last_event_id), 0) FROM usage_call", [], |r| r.get(0))?))
    }

    /// The lines summed per subscription, provider and meter (over resources and periods), ordered.
    pub fn line_totals(&self) -> Result<Vec<LineTotal>, LedgerError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare(
                "SELECT subscription_id, provider, meter, SUM(quantity), SUM(records) FROM usage_line
                 GROUP BY subscription_id, provider, meter ORDER BY subscription_id, provider, meter",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LineTotal {
                    subscription_id: r.get(0)?,
                    provider: r.get(1)?,
                    meter: r.get(2)?,
                    quantity: r.get(3)?,
                    records: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    /// The `EventId`s of a feed's event lines, in the order appended (a repeat would appear twice).
    pub fn event_ids(&self, feed: FeedKind) -> Result<Vec<i64>, LedgerError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare("SELECT event_id FROM event_line WHERE feed = ?1 ORDER BY seq")?;
            let rows = stmt.query_map([feed.name()], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<i64>, _>>()?)
        })
    }

    /// How many calls (usage or event) carried `token`.
    pub fn calls_with_token(&self, token: &str) -> Result<u64, LedgerError> {
        self.with_conn(|c| {
            let n: i64 = c.query_row(
                "SELECT (SELECT COUNT(*) FROM usage_call WHERE token = ?1) + (SELECT COUNT(*) FROM event_line WHERE token = ?1)",
                [token],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn append_usage(&self, lines: &UsageLines<'_>) -> Result<(), HandlerError> {
        let token = Intent::default_token(FeedKind::Usage, lines.first_event_id(), lines.last_event_id());
        self.with_conn(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO usage_call (token, first_event_id, last_event_id, records, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token, lines.first_event_id(), lines.last_event_id(), lines.records.len() as i64, now_ms()],
            )?;
            let call_seq = tx.last_insert_rowid();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO usage_line (call_seq, subscription_id, provider, resource_id, meter, period, quantity,
                                             records) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for l in lines.lines {
                    stmt.execute(params![
                        call_seq,
                        l.subscription_id,
                        l.provider,
                        l.resource_id,
                        l.meter,
                        l.period,
                        l.quantity,
                        l.records as i64
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })?;
        let n = self.counters.usage_calls.fetch_add(1, Ordering::Relaxed) + 1;
        if self.fail_every > 0 && n % self.fail_every == 0 {
            self.counters.failed_after_commit.fetch_add(1, Ordering::Relaxed);
            return Err(HandlerError::failed(format!(
                "append-only ledger: usage call {token} committed, then the answer was lost (simulated)"
            )));
        }
        Ok(())
    }

    fn append_event(&self, ctx: &EventContext<'_>, verb: &str) -> Result<(), HandlerError> {
        let token = Intent::default_token(ctx.key.feed, ctx.key.event_id, ctx.key.event_id);
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO event_line (token, feed, event_id, verb, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token, ctx.key.feed.name(), ctx.key.event_id, verb, now_ms()],
            )?;
            Ok(())
        })?;
        self.counters.event_calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn reconcile_token(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        self.counters.reconciles.fetch_add(1, Ordering::Relaxed);
        Ok(match self.calls_with_token(&intent.token)? {
            0 => Reconciliation::NotApplied,
            1 => Reconciliation::Applied,
            n => Reconciliation::unknown(format!("token {} appended {n} times", intent.token)),
        })
    }
}

#[async_trait]
impl UsageHandler for AppendOnlyLedger {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        Err(HandlerError::failed(format!(
            "append-only ledger takes usage as lines (UsageShape::PerMeter), not {} records",
            batch.records.len()
        )))
    }

    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }

    fn usage_shape(&self) -> UsageShape {
        UsageShape::PerMeter { period: UsagePeriod::Month }
    }

    async fn apply_usage_lines(&self, lines: UsageLines<'_>) -> Result<(), HandlerError> {
        self.append_usage(&lines)
    }

    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        self.reconcile_token(intent)
    }
}

#[async_trait]
impl EventHandler for AppendOnlyLedger {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        self.append_event(ctx, change.verb())
    }

    fn delivery(&self) -> Delivery {
        Delivery::Journaled
    }

    async fn reconcile(&self, intent: &Intent) -> Result<Reconciliation, HandlerError> {
        self.reconcile_token(intent)
    }
}
