#![doc = include_str!("../README.md")]
//!
//! # The reference ledger
//!
//! It keeps, in one SQLite file of its own (separate from the engine's state database, as a real billing system
//! would be): plans, add-ons, plan↔add-on and plan↔service links, accounts (with a standing), subscriptions,
//! subscription add-ons, every usage record, usage totals per subscription and meter, and a price list. It
//! implements [`EventHandler`] and [`UsageHandler`] for the engine, [`SubscriptionApprover`](wap_responder::SubscriptionApprover)
//! (through [`LedgerApprover`]) and [`PricingResponder`](wap_responder::PricingResponder) for the responder, and
//! prints an [`Invoice`] per subscription.
//!
//! # Why it is idempotent
//!
//! The engine may deliver an event or a usage record again (see [`handler`](wap_billing_engine::handler)): after a crash
//! between the ledger's commit and the engine's, after a lost lease, and on every retry. The ledger makes a repeat
//! harmless by recording **what it applied in the same SQLite transaction as the change itself**:
//!
//! * events: the key `(feed, EventId)` goes into `applied_event` (primary key) in the transaction that changes the
//!   plan, subscription, …; a delivery whose key is already there commits nothing and answers `Ok`. Either the
//!   change and its key are both durable, or neither is — there is no state in which the change is applied but
//!   not remembered;
//! * usage: each record is inserted under its `EventId` (primary key) with `INSERT OR IGNORE`, and only records
//!   that were actually inserted are added to the per-subscription totals, in the same transaction. A batch that
//!   comes again — with the same or different boundaries — adds nothing for the records already stored.
//!
//! Repeats are counted ([`LedgerStats`]): the crash-recovery test uses the counts to show the gap being exercised.
//!
//! Policies of this reference system (a real one has its own): usage and subscription add-ons for a subscription
//! it does not know yet answer [`HandlerError::DependencyNotReady`]; a meter whose value is not a number fails its
//! record (named with [`HandlerError::for_record`], so a halt and an operator `skip` concern that record only);
//! deleted plans and subscriptions are kept, marked deleted, so their invoices stay readable.

mod append_only;
mod approval;
mod invoice;
mod schema;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use wap_types::{
    AdminSubscription, FeedKind, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference, UsageRecord,
};

pub use self::append_only::{AppendOnlyLedger, AppendOnlyStats, LineTotal, UsageCall, APPEND_ONLY_LEDGER_VERSION};
pub use self::approval::LedgerApprover;
pub use self::invoice::{Invoice, InvoiceAddOn, InvoicePeriod, InvoiceUsage, MeterUnit, DEFAULT_CURRENCY};
/// The wire types this crate's signatures use ([`wap_types::FeedKind`], …), re-exported so that no dependency on
/// `wap-types` is needed.
pub use wap_types;

/// `Result` with this crate's one error, [`LedgerError`], by default.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
use wap_billing_engine::handler::{EntityChange, EventContext, EventHandler, HandlerError, UsageBatch, UsageHandler};
use wap_billing_engine::store::SqliteSync;

/// The version this ledger reports for the billing-system version check (docs/protocol/adapter-engine.md §9).
pub const LEDGER_VERSION: &str = "wap-billing-ledger 1";

/// A failure of the ledger's database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// SQLite failed (I/O, lock timeout, SQL error).
    #[error("ledger database error: {0}")]
    Database(String),
    /// The database was written by a newer version of the ledger.
    #[error("ledger database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

impl From<rusqlite::Error> for LedgerError {
    fn from(e: rusqlite::Error) -> Self {
        LedgerError::Database(e.to_string())
    }
}

/// Counters since this [`SqliteLedger`] value was opened (clones share them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LedgerStats {
    /// Events applied (first delivery of their key).
    pub events_applied: u64,
    /// Deliveries of an event key already applied: answered `Ok` without a change.
    pub events_repeated: u64,
    /// Usage records stored (first delivery).
    pub usage_records_stored: u64,
    /// Deliveries of a usage record already stored: ignored.
    pub usage_records_repeated: u64,
}

#[derive(Debug, Default)]
struct Counters {
    events_applied: AtomicU64,
    events_repeated: AtomicU64,
    usage_stored: AtomicU64,
    usage_repeated: AtomicU64,
}

/// Whether an account may buy (docs/protocol/approval-and-pricing.md §3.3: "the system check passes, e.g. no overdue invoice").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStanding {
    /// May buy.
    Good,
    /// Has an overdue invoice: new subscriptions and add-ons are denied.
    Overdue,
}

/// A subscription as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerSubscription {
    /// The WAP `SubscriptionID` as first received.
    pub id: String,
    /// `SubscriptionName`.
    pub name: Option<String>,
    /// `AccountAdminLiveEmailId`.
    pub account: Option<String>,
    /// `PlanId`.
    pub plan_id: Option<String>,
    /// Admin `State` code (1 active, 2 suspended), if received.
    pub state: Option<i64>,
    /// Deleted in WAP (kept for invoicing).
    pub deleted: bool,
}

/// One usage total: a subscription's sum of one meter of one provider.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UsageTotal {
    /// The subscription (lower case).
    pub subscription_id: String,
    /// `ProviderName` (empty when absent).
    pub provider: String,
    /// The meter (a key of `Resources`).
    pub meter: String,
    /// The sum of the meter's values.
    pub quantity: f64,
    /// How many records contributed.
    pub records: u64,
}

/// The reference billing system in one SQLite file. Cheap to clone (clones share the connection and counters).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use wap_billing_ledger::SqliteLedger;
/// let dir = tempfile::tempdir()?;
/// let ledger = SqliteLedger::open(dir.path().join("ledger.db")).await?;
/// ledger.set_plan_price("Silverq7k2d9w", 25.0).await?;
/// ledger.set_meter_rate("mysqlservers", "DatabaseCount", 0.5).await?;
/// assert!(ledger.invoices().await?.is_empty(), "no subscription synced yet");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    counters: Arc<Counters>,
}

impl fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLedger").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The key under which WAP ids are stored (WAP sends GUIDs in both cases).
fn key(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

fn join_err(e: tokio::task::JoinError) -> LedgerError {
    LedgerError::Database(format!("blocking task failed: {e}"))
}

fn handler_err(e: LedgerError) -> HandlerError {
    HandlerError::from_error(e)
}

impl From<LedgerError> for HandlerError {
    fn from(e: LedgerError) -> Self {
        handler_err(e)
    }
}

/// What an event changes, owned so that it can move to the blocking pool.
#[derive(Debug)]
enum Op {
    UpsertCatalogue { table: &'static str, id: String, display_name: Option<String>, state: Option<i64> },
    DeleteCatalogue { table: &'static str, id: String },
    Link { table: &'static str, column: &'static str, plan_id: String, other: String },
    Unlink { table: &'static str, column: &'static str, plan_id: String, other: String },
    UpsertSubscription(SubscriptionRow),
    DeleteSubscription { id: String },
    AddSubscriptionAddon { subscription_id: String, instance_id: String, addon_id: String, acquired: Option<String> },
    RemoveSubscriptionAddon { subscription_id: String, instance_id: Option<String>, addon_id: String },
}

#[derive(Debug)]
struct SubscriptionRow {
    id: String,
    name: Option<String>,
    account: Option<String>,
    plan_id: Option<String>,
    state: Option<i64>,
}

/// A usage record reduced to what the ledger stores.
#[derive(Debug)]
struct UsageRow {
    event_id: i64,
    subscription_id: String,
    provider: String,
    resource_id: Option<String>,
    start_time: String,
    end_time: String,
    meters_json: String,
    meters: Vec<(String, f64)>,
}

impl UsageRow {
    fn from_record(r: &UsageRecord) -> Result<Self, HandlerError> {
        let mut meters = Vec::with_capacity(r.resources.len());
        for (name, value) in r.resources.iter() {
            let text = value.trim();
            if text.is_empty() {
                continue;
            }
            let number = text.parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| {
                HandlerError::failed(format!("usage record {}: meter {name} = {value:?} is not a number", r.event_id))
                    .for_record(r.event_id)
            })?;
            meters.push((name.clone(), number));
        }
        Ok(UsageRow {
            event_id: r.event_id,
            subscription_id: key(&r.subscription_id),
            provider: r.provider_name.clone().unwrap_or_default(),
            resource_id: r.resource_id.clone(),
            start_time: r.start_time.to_string(),
            end_time: r.end_time.to_string(),
            meters_json: serde_json::to_string(&r.resources).unwrap_or_else(|_| "{}".to_owned()),
            meters,
        })
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file with `synchronous = FULL`: a commit survives power loss.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        Self::open_with(path.as_ref().to_path_buf(), SqliteSync::Full).await
    }

    /// Opens the ledger file with the given `synchronous` setting.
    pub async fn open_with(path: impl Into<PathBuf>, sync: SqliteSync) -> Result<Self, LedgerError> {
        let path = path.into();
        let p = path.clone();
        let conn = tokio::task::spawn_blocking(move || -> Result<Connection, LedgerError> {
            let mut conn = sync.open_wal(&p)?;
            schema::migrate(&mut conn)?;
            Ok(conn)
        })
        .await
        .map_err(join_err)??;
        Ok(SqliteLedger { conn: Arc::new(Mutex::new(conn)), path, counters: Arc::default() })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version reported to the engine's billing-system version check: [`LEDGER_VERSION`].
    pub fn version(&self) -> &'static str {
        LEDGER_VERSION
    }

    /// Counters since open.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.counters;
        LedgerStats {
            events_applied: c.events_applied.load(Ordering::Relaxed),
            events_repeated: c.events_repeated.load(Ordering::Relaxed),
            usage_records_stored: c.usage_stored.load(Ordering::Relaxed),
            usage_records_repeated: c.usage_repeated.load(Ordering::Relaxed),
        }
    }

    async fn run<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(join_err)?
    }

    /// Runs `f` in a write transaction that commits on `Ok` (handler errors roll it back).
    async fn write<T, F>(&self, f: F) -> Result<T, HandlerError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, HandlerError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = guard.transaction_with_behavior(TransactionBehavior::Immediate).map_err(LedgerError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(LedgerError::from)?;
            Ok(out)
        })
        .await
        .map_err(|e| handler_err(join_err(e)))?
    }

    // ---- prices and accounts ----

    /// Sets the monthly price of a plan (used by invoices and the plan price answer).
    pub async fn set_plan_price(&self, plan_id: &str, monthly: f64) -> Result<(), LedgerError> {
        self.set_price("plan", key(plan_id), monthly).await
    }

    /// Sets the monthly price of an add-on.
    pub async fn set_addon_price(&self, addon_id: &str, monthly: f64) -> Result<(), LedgerError> {
        self.set_price("addon", key(addon_id), monthly).await
    }

    /// Sets the price per unit of a meter of a provider (e.g. `mysqlservers`, `DatabaseCount`).
    pub async fn set_meter_rate(&self, provider: &str, meter: &str, per_unit: f64) -> Result<(), LedgerError> {
        self.set_price("meter", format!("{}/{}", key(provider), key(meter)), per_unit).await
    }

    async fn set_price(&self, kind: &'static str, id: String, amount: f64) -> Result<(), LedgerError> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO price (kind, id, amount) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, id) DO UPDATE SET amount = excluded.amount",
                params![kind, id, amount],
            )?;
            Ok(())
        })
        .await
    }

    /// Sets an account's standing (an overdue account is denied new subscriptions and add-ons).
    pub async fn set_account_standing(&self, email: &str, standing: AccountStanding) -> Result<(), LedgerError> {
        let (k, display, overdue) = (key(email), email.trim().to_owned(), standing == AccountStanding::Overdue);
        self.run(move |c| {
            c.execute(
                "INSERT INTO account (email, display, overdue) VALUES (?1, ?2, ?3)
                 ON CONFLICT (email) DO UPDATE SET overdue = excluded.overdue",
                params![k, display, overdue],
            )?;
            Ok(())
        })
        .await
    }

    /// An account's standing (`None` when the account is unknown).
    pub async fn account_standing(&self, email: &str) -> Result<Option<AccountStanding>, LedgerError> {
        let k = key(email);
        self.run(move |c| {
            let overdue: Option<bool> =
                c.query_row("SELECT overdue FROM account WHERE email = ?1", [k], |r| r.get(0)).optional()?;
            Ok(overdue.map(|o| if o { AccountStanding::Overdue } else { AccountStanding::Good }))
        })
        .await
    }

    // ---- reads ----

    /// Whether a plan is known and not deleted.
    pub async fn has_plan(&self, plan_id: &str) -> Result<bool, LedgerError> {
        self.exists("SELECT 1 FROM plan WHERE id = ?1 AND deleted = 0", key(plan_id)).await
    }

    /// Whether an add-on is known and not deleted.
    pub async fn has_addon(&self, addon_id: &str) -> Result<bool, LedgerError> {
        self.exists("SELECT 1 FROM addon WHERE id = ?1 AND deleted = 0", key(addon_id)).await
    }

    /// Whether a subscription is known (deleted or not).
    pub async fn has_subscription(&self, subscription_id: &str) -> Result<bool, LedgerError> {
        self.exists("SELECT 1 FROM subscription WHERE id = ?1", key(subscription_id)).await
    }

    async fn exists(&self, sql: &'static str, id: String) -> Result<bool, LedgerError> {
        self.run(move |c| Ok(c.query_row(sql, [id], |_| Ok(())).optional()?.is_some())).await
    }

    /// Every subscription, by account and name.
    pub async fn subscriptions(&self) -> Result<Vec<LedgerSubscription>, LedgerError> {
        self.run(|c| {
            let mut stmt = c.prepare(
                "SELECT wap_id, name, account, plan_wap_id, state, deleted FROM subscription
                 ORDER BY deleted, account, name, id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(LedgerSubscription {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    account: r.get(2)?,
                    plan_id: r.get(3)?,
                    state: r.get(4)?,
                    deleted: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The `EventId`s of every stored usage record, ascending.
    pub async fn usage_event_ids(&self) -> Result<Vec<i64>, LedgerError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT event_id FROM usage_record ORDER BY event_id")?;
            let ids = stmt.query_map([], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// Deliveries the ledger recognised as repeats over its whole life (persistent, unlike [`SqliteLedger::stats`]):
    /// `(events, usage records)`.
    pub async fn repeated_deliveries(&self) -> Result<(u64, u64), LedgerError> {
        self.run(|c| {
            let get = |name: &str| -> Result<u64, LedgerError> {
                Ok(c.query_row("SELECT value FROM delivery_stat WHERE name = ?1", [name], |r| r.get::<_, i64>(0))?
                    as u64)
            };
            Ok((get("events_repeated")?, get("usage_records_repeated")?))
        })
        .await
    }

    /// How many usage records are stored.
    pub async fn usage_count(&self) -> Result<u64, LedgerError> {
        self.run(|c| Ok(c.query_row("SELECT COUNT(*) FROM usage_record", [], |r| r.get::<_, i64>(0))? as u64)).await
    }

    /// The applied event ids of one feed, ascending.
    pub async fn applied_event_ids(&self, feed: FeedKind) -> Result<Vec<i64>, LedgerError> {
        self.run(move |c| {
            let mut stmt = c.prepare("SELECT event_id FROM applied_event WHERE feed = ?1 ORDER BY event_id")?;
            let ids = stmt.query_map([feed.name()], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?;
            Ok(ids)
        })
        .await
    }

    /// Usage totals per subscription, provider and meter.
    pub async fn usage_totals(&self) -> Result<Vec<UsageTotal>, LedgerError> {
        self.run(|c| {
            let mut stmt = c.prepare(
                "SELECT subscription_id, provider, meter, total, records FROM usage_total
                 ORDER BY subscription_id, provider, meter",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(UsageTotal {
                    subscription_id: r.get(0)?,
                    provider: r.get(1)?,
                    meter: r.get(2)?,
                    quantity: r.get(3)?,
                    records: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The invoice of every subscription (active ones first, then by account and name).
    pub async fn invoices(&self) -> Result<Vec<Invoice>, LedgerError> {
        self.run(|c| invoice::all(c)).await
    }

    /// The invoice of one subscription (`None` when unknown).
    pub async fn invoice(&self, subscription_id: &str) -> Result<Option<Invoice>, LedgerError> {
        let k = key(subscription_id);
        self.run(move |c| Ok(invoice::all(c)?.into_iter().find(|i| key(&i.subscription_id) == k))).await
    }

    // ---- fencing ----

    /// The highest lease generation a writer of each feed carried (see [`HandlerError::Deposed`]), by feed name.
    pub async fn writer_generations(&self) -> Result<Vec<(String, i64)>, LedgerError> {
        self.run(|c| {
            let mut stmt = c.prepare("SELECT feed, generation FROM writer_generation ORDER BY feed")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Forgets the generations seen (an operator step after the engine's state database was replaced by a new
    /// one, whose generations start again at 1: without it, the ledger would refuse every write as coming from a
    /// deposed leader).
    pub async fn reset_writer_generations(&self) -> Result<(), LedgerError> {
        self.run(|c| {
            c.execute("DELETE FROM writer_generation", [])?;
            Ok(())
        })
        .await
    }

    // ---- applying ----

    /// Applies `op` once per idempotency key (see the [module docs](self)).
    async fn apply(&self, ctx: &EventContext<'_>, op: Op) -> Result<(), HandlerError> {
        let (key, generation) = (ctx.key, ctx.generation);
        let applied = self
            .write(move |tx| {
                check_generation(tx, key.feed, generation)?;
                let seen = tx
                    .query_row(
                        "SELECT 1 FROM applied_event WHERE feed = ?1 AND event_id = ?2",
                        params![key.feed.name(), key.event_id],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(LedgerError::from)?
                    .is_some();
                if seen {
                    count_repeats(tx, "events_repeated", 1)?;
                    return Ok(false);
                }
                apply_op(tx, &op)?;
                tx.execute(
                    "INSERT INTO applied_event (feed, event_id, applied_at_ms) VALUES (?1, ?2, ?3)",
                    params![key.feed.name(), key.event_id, chrono::Utc::now().timestamp_millis()],
                )
                .map_err(LedgerError::from)?;
                Ok(true)
            })
            .await?;
        if applied {
            self.counters.events_applied.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.events_repeated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(event = %key, "event already applied by the ledger; nothing to do");
        }
        Ok(())
    }
}

fn apply_op(tx: &Transaction<'_>, op: &Op) -> Result<(), HandlerError> {
    let sql = |e: rusqlite::Error| handler_err(LedgerError::from(e));
    match op {
        Op::UpsertCatalogue { table, id, display_name, state } => {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, wap_id, display_name, state, deleted) VALUES (?1, ?2, ?3, ?4, 0)
                     ON CONFLICT (id) DO UPDATE SET display_name = COALESCE(excluded.display_name, display_name),
                        state = COALESCE(excluded.state, state), deleted = 0"
                ),
                params![key(id), id, display_name, state],
            )
            .map_err(sql)?;
        }
        Op::DeleteCatalogue { table, id } => {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, wap_id, deleted) VALUES (?1, ?2, 1)
                     ON CONFLICT (id) DO UPDATE SET deleted = 1"
                ),
                params![key(id), id],
            )
            .map_err(sql)?;
        }
        Op::Link { table, column, plan_id, other } => {
            tx.execute(
                &format!("INSERT OR IGNORE INTO {table} (plan_id, {column}) VALUES (?1, ?2)"),
                params![key(plan_id), key(other)],
            )
            .map_err(sql)?;
        }
        Op::Unlink { table, column, plan_id, other } => {
            tx.execute(
                &format!("DELETE FROM {table} WHERE plan_id = ?1 AND {column} = ?2"),
                params![key(plan_id), key(other)],
            )
            .map_err(sql)?;
        }
        Op::UpsertSubscription(s) => {
            if let Some(account) = &s.account {
                tx.execute(
                    "INSERT OR IGNORE INTO account (email, display, overdue) VALUES (?1, ?2, 0)",
                    params![key(account), account.trim()],
                )
                .map_err(sql)?;
            }
            tx.execute(
                "INSERT INTO subscription (id, wap_id, name, account, plan_id, plan_wap_id, state, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)
                 ON CONFLICT (id) DO UPDATE SET name = COALESCE(excluded.name, name),
                    account = COALESCE(excluded.account, account), plan_id = COALESCE(excluded.plan_id, plan_id),
                    plan_wap_id = COALESCE(excluded.plan_wap_id, plan_wap_id),
                    state = COALESCE(excluded.state, state), deleted = 0",
                params![
                    key(&s.id),
                    s.id,
                    s.name,
                    s.account.as_deref().map(str::trim),
                    s.plan_id.as_deref().map(key),
                    s.plan_id,
                    s.state
                ],
            )
            .map_err(sql)?;
        }
        Op::DeleteSubscription { id } => {
            tx.execute(
                "INSERT INTO subscription (id, wap_id, deleted) VALUES (?1, ?2, 1)
                 ON CONFLICT (id) DO UPDATE SET deleted = 1",
                params![key(id), id],
            )
            .map_err(sql)?;
            tx.execute("UPDATE subscription_addon SET removed = 1 WHERE subscription_id = ?1", [key(id)])
                .map_err(sql)?;
        }
        Op::AddSubscriptionAddon { subscription_id, instance_id, addon_id, acquired } => {
            require_subscription(tx, subscription_id)?;
            tx.execute(
                "INSERT INTO subscription_addon (subscription_id, instance_id, addon_id, acquired, removed)
                 VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT (subscription_id, instance_id) DO UPDATE SET addon_id = excluded.addon_id,
                    acquired = COALESCE(excluded.acquired, acquired), removed = 0",
                params![key(subscription_id), key(instance_id), key(addon_id), acquired],
            )
            .map_err(sql)?;
        }
        Op::RemoveSubscriptionAddon { subscription_id, instance_id, addon_id } => {
            require_subscription(tx, subscription_id)?;
            let changed = match instance_id {
                Some(instance) => tx
                    .execute(
                        "UPDATE subscription_addon SET removed = 1 WHERE subscription_id = ?1 AND instance_id = ?2",
                        params![key(subscription_id), key(instance)],
                    )
                    .map_err(sql)?,
                None => 0,
            };
            if changed == 0 {
                // No instance id (or an unknown one): remove one active instance of the add-on.
                tx.execute(
                    "UPDATE subscription_addon SET removed = 1 WHERE rowid = (
                        SELECT rowid FROM subscription_addon
                        WHERE subscription_id = ?1 AND addon_id = ?2 AND removed = 0 LIMIT 1)",
                    params![key(subscription_id), key(addon_id)],
                )
                .map_err(sql)?;
            }
        }
    }
    Ok(())
}

/// Fencing: refuses a write whose lease generation is lower than the highest one a writer of `feed` carried
/// before ([`HandlerError::Deposed`]: that writer was deposed by a newer leader), and records `generation` when it
/// is the highest. Runs in the transaction of the write it guards, so a refused write changes nothing. Generation 0
/// (a call from outside the engine, e.g. [`UsageBatch::new`]) is not checked.
fn check_generation(tx: &Transaction<'_>, feed: FeedKind, generation: i64) -> Result<(), HandlerError> {
    if generation <= 0 {
        return Ok(());
    }
    let sql = |e: rusqlite::Error| handler_err(LedgerError::from(e));
    let seen: Option<i64> = tx
        .query_row("SELECT generation FROM writer_generation WHERE feed = ?1", [feed.name()], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    match seen {
        Some(seen) if seen > generation => Err(HandlerError::deposed(feed, generation, seen)),
        Some(seen) if seen == generation => Ok(()),
        _ => {
            tx.execute(
                "INSERT INTO writer_generation (feed, generation) VALUES (?1, ?2)
                 ON CONFLICT (feed) DO UPDATE SET generation = excluded.generation",
                params![feed.name(), generation],
            )
            .map_err(sql)?;
            Ok(())
        }
    }
}

/// Adds to a persistent repeat counter (in the transaction of the delivery it counts).
fn count_repeats(tx: &Transaction<'_>, name: &str, n: u64) -> Result<(), HandlerError> {
    if n > 0 {
        tx.execute("UPDATE delivery_stat SET value = value + ?1 WHERE name = ?2", params![n as i64, name])
            .map_err(|e| handler_err(e.into()))?;
    }
    Ok(())
}

fn require_subscription(tx: &Transaction<'_>, subscription_id: &str) -> Result<(), HandlerError> {
    let known = tx
        .query_row("SELECT 1 FROM subscription WHERE id = ?1", [key(subscription_id)], |_| Ok(()))
        .optional()
        .map_err(|e| handler_err(e.into()))?
        .is_some();
    if known {
        Ok(())
    } else {
        Err(HandlerError::dependency_not_ready(format!("subscription {subscription_id} is not in the ledger yet")))
    }
}

fn parent(ctx: &EventContext<'_>, what: &str) -> Result<String, HandlerError> {
    ctx.entity_parent_id.filter(|p| !p.trim().is_empty()).map(str::to_owned).ok_or_else(|| {
        HandlerError::failed(format!("{} event {} has no EntityParentId ({what})", ctx.key.feed, ctx.key.event_id))
    })
}

#[async_trait]
impl EventHandler for SqliteLedger {
    async fn plan(&self, ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
        let p = change.entity();
        let op = match change {
            EntityChange::Deleted(_) => Op::DeleteCatalogue { table: "plan", id: p.id.clone() },
            _ => Op::UpsertCatalogue {
                table: "plan",
                id: p.id.clone(),
                display_name: p.display_name.clone(),
                state: p.state.map(i64::from),
            },
        };
        self.apply(ctx, op).await
    }

    async fn addon(&self, ctx: &EventContext<'_>, change: EntityChange<'_, PlanAddon>) -> Result<(), HandlerError> {
        let a = change.entity();
        let op = match change {
            EntityChange::Deleted(_) => Op::DeleteCatalogue { table: "addon", id: a.id.clone() },
            _ => Op::UpsertCatalogue {
                table: "addon",
                id: a.id.clone(),
                display_name: a.display_name.clone(),
                state: a.state.map(i64::from),
            },
        };
        self.apply(ctx, op).await
    }

    async fn plan_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        let plan_id = parent(ctx, "the plan")?;
        let other = change.entity().add_on_id.clone();
        let (table, column) = ("plan_addon", "addon_id");
        let op = match change {
            EntityChange::Deleted(_) => Op::Unlink { table, column, plan_id, other },
            _ => Op::Link { table, column, plan_id, other },
        };
        self.apply(ctx, op).await
    }

    async fn plan_service(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, ResourceProviderReference>,
    ) -> Result<(), HandlerError> {
        let plan_id = parent(ctx, "the plan")?;
        let other = change.entity().name.clone();
        let (table, column) = ("plan_service", "service");
        let op = match change {
            EntityChange::Deleted(_) => Op::Unlink { table, column, plan_id, other },
            _ => Op::Link { table, column, plan_id, other },
        };
        self.apply(ctx, op).await
    }

    async fn subscription(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, AdminSubscription>,
    ) -> Result<(), HandlerError> {
        let s = change.entity();
        let op = match change {
            EntityChange::Deleted(_) => Op::DeleteSubscription { id: s.subscription_id.clone() },
            _ => Op::UpsertSubscription(SubscriptionRow {
                id: s.subscription_id.clone(),
                name: s.subscription_name.clone(),
                account: s.account_admin_live_email_id.clone(),
                plan_id: s.plan_id.clone(),
                state: s.state.map(i64::from),
            }),
        };
        self.apply(ctx, op).await
    }

    async fn subscription_addon(
        &self,
        ctx: &EventContext<'_>,
        change: EntityChange<'_, PlanAddonReference>,
    ) -> Result<(), HandlerError> {
        let subscription_id = parent(ctx, "the subscription")?;
        let a = change.entity();
        let op = match change {
            EntityChange::Deleted(_) => Op::RemoveSubscriptionAddon {
                subscription_id,
                instance_id: a.add_on_instance_id.clone(),
                addon_id: a.add_on_id.clone(),
            },
            _ => Op::AddSubscriptionAddon {
                subscription_id,
                instance_id: a.add_on_instance_id.clone().unwrap_or_else(|| a.add_on_id.clone()),
                addon_id: a.add_on_id.clone(),
                acquired: a.acquisition_time.as_ref().map(ToString::to_string),
            },
        };
        self.apply(ctx, op).await
    }
}

#[async_trait]
impl UsageHandler for SqliteLedger {
    async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
        let rows = batch.records.iter().map(UsageRow::from_record).collect::<Result<Vec<_>, _>>()?;
        let generation = batch.generation;
        let (stored, repeated) = self
            .write(move |tx| {
                check_generation(tx, FeedKind::Usage, generation)?;
                store_usage(tx, &rows)
            })
            .await?;
        self.counters.usage_stored.fetch_add(stored, Ordering::Relaxed);
        self.counters.usage_repeated.fetch_add(repeated, Ordering::Relaxed);
        if repeated > 0 {
            tracing::debug!(repeated, stored, "usage records already in the ledger were ignored");
        }
        Ok(())
    }
}

/// Stores new records and adds them to the totals; returns (stored, already present).
fn store_usage(tx: &Transaction<'_>, rows: &[UsageRow]) -> Result<(u64, u64), HandlerError> {
    let sql = |e: rusqlite::Error| handler_err(LedgerError::from(e));
    let mut known: HashMap<&str, bool> = HashMap::new();
    {
        let mut check = tx.prepare_cached("SELECT 1 FROM subscription WHERE id = ?1").map_err(sql)?;
        for row in rows {
            if !known.contains_key(row.subscription_id.as_str()) {
                let found = check.query_row([&row.subscription_id], |_| Ok(())).optional().map_err(sql)?.is_some();
                known.insert(&row.subscription_id, found);
            }
            if known.get(row.subscription_id.as_str()) == Some(&false) {
                return Err(HandlerError::dependency_not_ready(format!(
                    "usage record {}: subscription {} is not in the ledger yet",
                    row.event_id, row.subscription_id
                )));
            }
        }
    }
    let mut totals: HashMap<(&str, &str, &str), (f64, i64)> = HashMap::new();
    let (mut stored, mut repeated) = (0u64, 0u64);
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO usage_record
                    (event_id, subscription_id, provider, resource_id, start_time, end_time, meters)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql)?;
        for row in rows {
            let inserted = insert
                .execute(params![
                    row.event_id,
                    row.subscription_id,
                    row.provider,
                    row.resource_id,
                    row.start_time,
                    row.end_time,
                    row.meters_json
                ])
                .map_err(sql)?;
            if inserted == 0 {
                repeated += 1;
                continue;
            }
            stored += 1;
            for (meter, value) in &row.meters {
                let t = totals.entry((&row.subscription_id, &row.provider, meter)).or_insert((0.0, 0));
                t.0 += value;
                t.1 += 1;
            }
        }
    }
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO usage_total (subscription_id, provider, meter, total, records) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (subscription_id, provider, meter)
             DO UPDATE SET total = total + excluded.total, records = records + excluded.records",
        )
        .map_err(sql)?;
    for ((subscription, provider, meter), (total, records)) in totals {
        upsert.execute(params![subscription, provider, meter, total, records]).map_err(sql)?;
    }
    count_repeats(tx, "usage_records_repeated", repeated)?;
    Ok((stored, repeated))
}
