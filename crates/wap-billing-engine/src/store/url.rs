//! Parsing of the `StateDatabaseUrl` setting.

use std::path::PathBuf;

use super::StoreError;

/// How hard SQLite flushes a commit (`PRAGMA synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// `FULL` (default): a commit survives power loss. A committed event is never processed twice.
    #[default]
    Full,
    /// `NORMAL`: a commit survives a process crash, but the last commits may roll back on power loss (the
    /// events are then delivered again, which idempotent handlers absorb). Faster.
    Normal,
}

/// A parsed `StateDatabaseUrl` (docs/protocol/adapter-engine.md §10; default `sqlite://wap-billing-state.db`).
/// `Debug` shows a PostgreSQL URL with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
pub enum StateDatabaseUrl {
    /// `sqlite://path[?synchronous=full|normal]`: `sqlite://state.db` is relative to the working directory,
    /// `sqlite:///var/lib/wap/state.db` absolute; `sqlite::memory:` is a private in-memory database (tests).
    Sqlite {
        /// The database file (`:memory:` for an in-memory database).
        path: PathBuf,
        /// The `synchronous` setting.
        sync: SqliteSync,
    },
    /// `postgres://user:password@host:port/db?options=...` (also `postgresql://`), handed to the driver as is.
    Postgres {
        /// The URL.
        url: String,
    },
}

impl std::fmt::Debug for StateDatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateDatabaseUrl::Sqlite { path, sync } => {
                f.debug_struct("Sqlite").field("path", path).field("sync", sync).finish()
            }
            StateDatabaseUrl::Postgres { url } => f.debug_struct("Postgres").field("url", &redact_url(url)).finish(),
        }
    }
}

impl StateDatabaseUrl {
    /// Parses a URL; errors never contain the password.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let trimmed = url.trim();
        let invalid = |reason: &str| StoreError::InvalidUrl { url: redact_url(trimmed), reason: reason.to_owned() };
        if trimmed == "sqlite::memory:" || trimmed == "sqlite://:memory:" {
            return Ok(StateDatabaseUrl::Sqlite { path: PathBuf::from(":memory:"), sync: SqliteSync::Full });
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("sqlite:").map(|_| &trimmed["sqlite:".len()..]) {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(invalid("no file path after `sqlite://`"));
            }
            let mut sync = SqliteSync::Full;
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if k.eq_ignore_ascii_case("synchronous") {
                    sync = match v.to_ascii_lowercase().as_str() {
                        "full" => SqliteSync::Full,
                        "normal" => SqliteSync::Normal,
                        _ => return Err(invalid("`synchronous` must be `full` or `normal`")),
                    };
                } else {
                    return Err(invalid(&format!("unknown parameter `{k}` (known: synchronous)")));
                }
            }
            return Ok(StateDatabaseUrl::Sqlite { path: PathBuf::from(path), sync });
        }
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(StateDatabaseUrl::Postgres { url: trimmed.to_owned() });
        }
        Err(invalid("expected `sqlite://path` or `postgres://…`"))
    }
}

/// The URL with any password replaced by `***` (for logs and errors).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let after = &url[scheme_end + 3..];
    // The user info ends at the last `@` before the query: a password may hold an unencoded `/`.
    let query_start = after.find(['?', '#']).unwrap_or(after.len());
    let authority_end = match after[..query_start].rfind('@') {
        Some(at) => at + 1 + after[at + 1..query_start].find('/').unwrap_or(query_start - at - 1),
        None => after.find(['/', '?', '#']).unwrap_or(after.len()),
    };
    let authority = &after[..authority_end];
    let mut out = url.to_owned();
    if let Some(at) = authority.rfind('@') {
        let userinfo = &authority[..at];
        if let Some(colon) = userinfo.find(':') {
            let start = scheme_end + 3 + colon + 1;
            let end = scheme_end + 3 + at;
            out.replace_range(start..end, "***");
        }
    }
    // `password=` in the query string (libpq accepts it there too).
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(feature = "sqlite")]
impl SqliteSync {
    /// Opens (creating if needed) a SQLite file in WAL mode with this `synchronous` setting and a 10 s busy
    /// timeout: the settings of every SQLite file the engine writes (the state store; the reference ledgers of
    /// `wap-billing-ledger` use them too).
    pub fn open_wal(self, path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch(match self {
            SqliteSync::Full => "PRAGMA synchronous = FULL;",
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL;",
        })?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlite_forms() {
        assert_eq!(
            StateDatabaseUrl::parse("sqlite://wap-billing-state.db").unwrap(),
            StateDatabaseUrl::Sqlite { path: "wap-billing-state.db".into(), sync: SqliteSync::Full }
        );
        assert_eq!(
            StateDatabaseUrl::parse("sqlite:///var/lib/wap/state.db?synchronous=normal").unwrap(),
            StateDatabaseUrl::Sqlite { path: "/var/lib/wap/state.db".into(), sync: SqliteSync::Normal }
        );
        assert_eq!(
            StateDatabaseUrl::parse("sqlite::memory:").unwrap(),
            StateDatabaseUrl::Sqlite { path: ":memory:".into(), sync: SqliteSync::Full }
        );
        assert!(matches!(StateDatabaseUrl::parse("sqlite://"), Err(StoreError::InvalidUrl { .. })));
        let err = StateDatabaseUrl::parse("sqlite://x.db?journal=off").unwrap_err();
        assert!(err.to_string().contains("journal"), "{err}");
    }

    #[test]
    fn parses_postgres_and_rejects_others() {
        let url = "postgresql://billing:s3cret@db.example:5432/state";
        assert_eq!(StateDatabaseUrl::parse(url).unwrap(), StateDatabaseUrl::Postgres { url: url.to_owned() });
        let err = StateDatabaseUrl::parse("mysql://billing:s3cret@db/state").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("expected `sqlite://path`"), "{text}");
        assert!(!text.contains("s3cret"), "password leaked: {text}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact_url("postgres://u:pa/ss@h/db"), "postgres://u:***@h/db");
        let parsed = StateDatabaseUrl::parse("postgres://u:pa/ss@h/db").unwrap();
        assert!(!format!("{parsed:?}").contains("pa/ss"), "{parsed:?}");
        assert_eq!(redact_url("postgres://u@h/db?password=pw&x=1"), "postgres://u@h/db?password=***&x=1");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("sqlite://state.db"), "sqlite://state.db");
    }
}
