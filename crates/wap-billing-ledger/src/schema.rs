//! The ledger's tables and their versioned migrations (`PRAGMA user_version`).

use rusqlite::{Connection, TransactionBehavior};

use super::LedgerError;

/// Migrations in order; the index + 1 is the version.
const MIGRATIONS: &[&str] = &[
    // 1: the reference billing system.
    "CREATE TABLE applied_event (
        feed          TEXT NOT NULL,
        event_id      INTEGER NOT NULL,
        applied_at_ms INTEGER NOT NULL,
        PRIMARY KEY (feed, event_id)
     ) WITHOUT ROWID;
     CREATE TABLE plan (
        id           TEXT PRIMARY KEY,
        wap_id       TEXT NOT NULL,
        display_name TEXT,
        state        INTEGER,
        deleted      INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE addon (
        id           TEXT PRIMARY KEY,
        wap_id       TEXT NOT NULL,
        display_name TEXT,
        state        INTEGER,
        deleted      INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE plan_addon (
        plan_id  TEXT NOT NULL,
        addon_id TEXT NOT NULL,
        PRIMARY KEY (plan_id, addon_id)
     ) WITHOUT ROWID;
     CREATE TABLE plan_service (
        plan_id TEXT NOT NULL,
        service TEXT NOT NULL,
        PRIMARY KEY (plan_id, service)
     ) WITHOUT ROWID;
     CREATE TABLE account (
        email   TEXT PRIMARY KEY,
        display TEXT NOT NULL,
        overdue INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE subscription (
        id          TEXT PRIMARY KEY,
        wap_id      TEXT NOT NULL,
        name        TEXT,
        account     TEXT,
        plan_id     TEXT,
        plan_wap_id TEXT,
        state       INTEGER,
        deleted     INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE subscription_addon (
        subscription_id TEXT NOT NULL,
        instance_id     TEXT NOT NULL,
        addon_id        TEXT NOT NULL,
        acquired        TEXT,
        removed         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (subscription_id, instance_id)
     );
     CREATE TABLE usage_record (
        event_id        INTEGER PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        provider        TEXT NOT NULL,
        resource_id     TEXT,
        start_time      TEXT NOT NULL,
        end_time        TEXT NOT NULL,
        meters          TEXT NOT NULL
     );
     CREATE TABLE usage_total (
        subscription_id TEXT NOT NULL,
        provider        TEXT NOT NULL,
        meter           TEXT NOT NULL,
        total           REAL NOT NULL,
        records         INTEGER NOT NULL,
        PRIMARY KEY (subscription_id, provider, meter)
     ) WITHOUT ROWID;
     CREATE TABLE delivery_stat (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO delivery_stat (name, value) VALUES ('events_repeated', 0), ('usage_records_repeated', 0);
     CREATE TABLE price (
        kind   TEXT NOT NULL,
        id     TEXT NOT NULL,
        amount REAL NOT NULL,
        PRIMARY KEY (kind, id)
     ) WITHOUT ROWID;",
    // 2: the highest lease generation (fencing token) each feed's writer carried, to refuse deposed leaders.
    "CREATE TABLE writer_generation (
        feed       TEXT PRIMARY KEY,
        generation INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// Brings the schema up to date in one transaction; refuses a database written by a newer version.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), LedgerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = MIGRATIONS.len() as i64;
    if current > latest {
        return Err(LedgerError::SchemaTooNew { found: current, supported: latest });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
        tracing::info!(version = index + 1, "ledger database migrated");
    }
    tx.commit()?;
    Ok(())
}
