//! Versioned schema migrations of the state database.
//!
//! A `schema_version` table records every applied migration (`version`, `description`, `applied_at_ms`). At open,
//! each backend takes a write lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL an advisory transaction lock), reads the
//! highest applied version, refuses a database newer than [`LATEST_VERSION`], and applies the missing migrations in
//! order in that same transaction. Opening an up-to-date database changes nothing, so startup is idempotent and
//! several instances may start at once.
//!
//! Migrations are append-only: a released migration is never edited; a change is a new migration.

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version this migration brings the schema to (1, 2, …; no gaps).
    pub version: i64,
    /// What it does.
    pub description: &'static str,
    /// SQLite statements.
    pub sqlite: &'static str,
    /// PostgreSQL statements.
    pub postgres: &'static str,
}

/// The newest schema version this build knows.
pub const LATEST_VERSION: i64 = 4;

/// All migrations, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "cursor, processed_event, halt, lease",
        sqlite: "
            CREATE TABLE cursor (
                feed            TEXT PRIMARY KEY,
                last_event_id   INTEGER,
                last_poll_at_ms INTEGER,
                hold_event_id   INTEGER,
                hold_since_ms   INTEGER
            );
            CREATE TABLE processed_event (
                feed            TEXT NOT NULL,
                event_id        INTEGER NOT NULL,
                last_event_id   INTEGER NOT NULL,
                outcome         TEXT NOT NULL,
                processed_at_ms INTEGER NOT NULL,
                generation      INTEGER NOT NULL,
                PRIMARY KEY (feed, event_id)
            );
            CREATE TABLE halt (
                processor     TEXT PRIMARY KEY,
                feed          TEXT NOT NULL,
                event_id      INTEGER NOT NULL,
                last_event_id INTEGER NOT NULL,
                reason        TEXT NOT NULL,
                error         TEXT NOT NULL,
                attempts      INTEGER NOT NULL,
                halted_at_ms  INTEGER NOT NULL
            );
            CREATE TABLE lease (
                processor     TEXT PRIMARY KEY,
                holder        TEXT,
                generation    INTEGER NOT NULL,
                expires_at_ms INTEGER NOT NULL
            );
        ",
        postgres: "
            CREATE TABLE cursor (
                feed            TEXT PRIMARY KEY,
                last_event_id   BIGINT,
                last_poll_at_ms BIGINT,
                hold_event_id   BIGINT,
                hold_since_ms   BIGINT
            );
            CREATE TABLE processed_event (
                feed            TEXT NOT NULL,
                event_id        BIGINT NOT NULL,
                last_event_id   BIGINT NOT NULL,
                outcome         TEXT NOT NULL,
                processed_at_ms BIGINT NOT NULL,
                generation      BIGINT NOT NULL,
                PRIMARY KEY (feed, event_id)
            );
            CREATE TABLE halt (
                processor     TEXT PRIMARY KEY,
                feed          TEXT NOT NULL,
                event_id      BIGINT NOT NULL,
                last_event_id BIGINT NOT NULL,
                reason        TEXT NOT NULL,
                error         TEXT NOT NULL,
                attempts      INTEGER NOT NULL,
                halted_at_ms  BIGINT NOT NULL
            );
            CREATE TABLE lease (
                processor     TEXT PRIMARY KEY,
                holder        TEXT,
                generation    BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL
            );
        ",
    },
    Migration {
        version: 2,
        description: "identity_map, audit_log",
        sqlite: "
            CREATE TABLE identity_map (
                kind          TEXT NOT NULL,
                wap_key       TEXT NOT NULL,
                wap_id        TEXT NOT NULL,
                billing_id    TEXT NOT NULL,
                updated_at_ms INTEGER NOT NULL,
                PRIMARY KEY (kind, wap_key)
            );
            CREATE INDEX identity_map_billing ON identity_map (kind, billing_id);
            CREATE TABLE audit_log (
                id        INTEGER PRIMARY KEY AUTOINCREMENT,
                at_ms     INTEGER NOT NULL,
                actor     TEXT NOT NULL,
                action    TEXT NOT NULL,
                processor TEXT,
                feed      TEXT,
                event_id  INTEGER,
                detail    TEXT NOT NULL
            );
        ",
        postgres: "
            CREATE TABLE identity_map (
                kind          TEXT NOT NULL,
                wap_key       TEXT NOT NULL,
                wap_id        TEXT NOT NULL,
                billing_id    TEXT NOT NULL,
                updated_at_ms BIGINT NOT NULL,
                PRIMARY KEY (kind, wap_key)
            );
            CREATE INDEX identity_map_billing ON identity_map (kind, billing_id);
            CREATE TABLE audit_log (
                id        BIGSERIAL PRIMARY KEY,
                at_ms     BIGINT NOT NULL,
                actor     TEXT NOT NULL,
                action    TEXT NOT NULL,
                processor TEXT,
                feed      TEXT,
                event_id  BIGINT,
                detail    TEXT NOT NULL
            );
        ",
    },
    Migration {
        version: 3,
        description: "intent (the journal of billing calls on the journaled delivery path)",
        sqlite: "
            CREATE TABLE intent (
                processor      TEXT PRIMARY KEY,
                feed           TEXT NOT NULL,
                first_event_id INTEGER NOT NULL,
                last_event_id  INTEGER NOT NULL,
                records        INTEGER NOT NULL,
                operation      TEXT NOT NULL,
                token          TEXT NOT NULL,
                generation     INTEGER NOT NULL,
                opened_at_ms   INTEGER NOT NULL
            );
        ",
        postgres: "
            CREATE TABLE intent (
                processor      TEXT PRIMARY KEY,
                feed           TEXT NOT NULL,
                first_event_id BIGINT NOT NULL,
                last_event_id  BIGINT NOT NULL,
                records        BIGINT NOT NULL,
                operation      TEXT NOT NULL,
                token          TEXT NOT NULL,
                generation     BIGINT NOT NULL,
                opened_at_ms   BIGINT NOT NULL
            );
        ",
    },
    Migration {
        version: 4,
        description: "unit_attempt (billing-side attempts and dependency waits, kept across restarts)",
        sqlite: "
            CREATE TABLE unit_attempt (
                feed                TEXT NOT NULL,
                event_id            INTEGER NOT NULL,
                attempts            INTEGER NOT NULL,
                dependency_since_ms INTEGER,
                PRIMARY KEY (feed, event_id)
            );
        ",
        postgres: "
            CREATE TABLE unit_attempt (
                feed                TEXT NOT NULL,
                event_id            BIGINT NOT NULL,
                attempts            INTEGER NOT NULL,
                dependency_since_ms BIGINT,
                PRIMARY KEY (feed, event_id)
            );
        ",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_and_end_at_latest() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "migration {} out of order", m.description);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.version), Some(LATEST_VERSION));
    }
}
