//! Operator commands against the state database: `status`, `resume`, `skip`, `audit`, `mappings`.
//!
//! They open the state database named by the settings (`[state]`), so they work whether or not the adapter is
//! running, and on any instance of a fleet sharing one PostgreSQL. Every change is written to the audit log with
//! the acting operator.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};
use wap_billing_engine::store::{self, HaltTarget, IdentityKind, ProcessorKind, StateStore, StoreError};
use wap_billing_engine::Operator;
use wap_types::FeedKind;

use crate::settings::{Problem, Settings};

/// An operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// A setting is wrong.
    #[error("{0}")]
    Setting(Problem),
    /// The state database refused.
    #[error("state database: {0}")]
    Store(#[from] StoreError),
    /// The command's arguments are wrong.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the state database the settings name.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn StateStore>, OpsError> {
    let url = settings.state.resolve().map_err(OpsError::Setting)?;
    Ok(store::open_with_ca_file(url.expose(), settings.state.ca_file.as_deref()).await?)
}

/// Who is acting: `--actor`, else `$USER@host`.
pub fn actor(given: Option<&str>) -> String {
    if let Some(a) = given.filter(|a| !a.trim().is_empty()) {
        return a.trim().to_owned();
    }
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "operator".into());
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Renders rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(header.to_vec(), &mut out);
    line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// `status`: per processor its lease and halt, per feed its cursor, last poll and hold.
pub async fn status(store: &Arc<dyn StateStore>) -> Result<Value, OpsError> {
    let mut processors = Vec::new();
    for p in ProcessorKind::ALL {
        let lease = store.lease(p).await?;
        let halt = store.halt(p).await?;
        let mut feeds = Vec::new();
        for feed in p.feeds() {
            let c = store.cursor(*feed).await?;
            feeds.push(json!({
                "feed": feed.to_string(),
                "last_event_id": c.last_event_id,
                "last_poll_at": c.last_poll_at.map(|t| t.to_rfc3339()),
                "held_event_id": c.hold.map(|h| h.event_id),
                "held_since": c.hold.map(|h| h.since.to_rfc3339()),
            }));
        }
        let now = Utc::now();
        processors.push(json!({
            "processor": p.name(),
            "leader": lease.as_ref().filter(|l| l.expires_at > now).and_then(|l| l.holder.clone()),
            "lease_generation": lease.as_ref().map(|l| l.generation),
            "lease_expires_at": lease.as_ref().map(|l| l.expires_at.to_rfc3339()),
            "halt": halt.map(|h| json!({
                "feed": h.feed.to_string(),
                "event_id": h.event_id,
                "last_event_id": h.last_event_id,
                "reason": h.reason.name(),
                "error": h.error,
                "attempts": h.attempts,
                "halted_at": h.halted_at.to_rfc3339(),
            })),
            "feeds": feeds,
        }));
    }
    Ok(json!({ "at": Utc::now().to_rfc3339(), "processors": processors }))
}

/// The text form of [`status`].
pub fn status_text(status: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let processors = status["processors"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = processors
        .iter()
        .map(|p| {
            let state = if p["halt"].is_null() { "running".to_owned() } else { "HALTED".to_owned() };
            vec![
                p["processor"].as_str().unwrap_or("?").to_owned(),
                state,
                p["leader"].as_str().unwrap_or("none").to_owned(),
                opt(p["lease_generation"].as_i64()),
                p["lease_expires_at"].as_str().unwrap_or("-").to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(&["PROCESSOR", "STATE", "LEADER", "GENERATION", "LEASE EXPIRES"], &rows));
    out.push('\n');
    let rows: Vec<Vec<String>> = processors
        .iter()
        .flat_map(|p| p["feeds"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            vec![
                f["feed"].as_str().unwrap_or("?").to_owned(),
                opt(f["last_event_id"].as_i64()),
                f["last_poll_at"].as_str().unwrap_or("never").to_owned(),
                match f["held_event_id"].as_i64() {
                    Some(id) => format!("event {id} since {}", f["held_since"].as_str().unwrap_or("?")),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    out.push_str(&table(&["FEED", "LAST EVENT", "LAST POLL", "HOLD"], &rows));
    for p in processors {
        let h = &p["halt"];
        if !h.is_null() {
            let _ = write!(
                out,
                "\n{} processor HALTED at {} event {}{} after {} attempt(s) ({}): {}\n  since {}\n  resolve: wap-billing resume {} --event {} | wap-billing skip {} --event {} --reason \"...\"\n",
                p["processor"].as_str().unwrap_or("?"),
                h["feed"].as_str().unwrap_or("?"),
                h["event_id"],
                if h["last_event_id"] != h["event_id"] { format!("..={}", h["last_event_id"]) } else { String::new() },
                h["attempts"],
                h["reason"].as_str().unwrap_or("?"),
                h["error"].as_str().unwrap_or(""),
                h["halted_at"].as_str().unwrap_or("?"),
                p["processor"].as_str().unwrap_or("?"),
                target_args(p, h),
                p["processor"].as_str().unwrap_or("?"),
                target_args(p, h),
            );
        }
    }
    out
}

/// `ID` or `ID --feed FEED` (the notification processor's events need their feed).
fn target_args(p: &Value, h: &Value) -> String {
    if p["processor"] == "usage" {
        h["event_id"].to_string()
    } else {
        format!("{} --feed {}", h["event_id"], h["feed"].as_str().unwrap_or("?"))
    }
}

fn processor(name: &str) -> Result<ProcessorKind, OpsError> {
    ProcessorKind::from_name(name)
        .ok_or_else(|| OpsError::Usage(format!("unknown processor {name:?} (notification or usage)")))
}

fn halt_json(h: &store::HaltStatus) -> Value {
    json!({"processor": h.processor.name(), "feed": h.feed.to_string(), "event_id": h.event_id, "last_event_id": h.last_event_id, "reason": h.reason.name()})
}

/// The event an operator names: `--event ID` and, for the notification processor, `--feed NAME` (the usage
/// processor has one feed).
pub fn target(processor_name: &str, event: i64, feed: Option<&str>) -> Result<HaltTarget, OpsError> {
    let p = processor(processor_name)?;
    let feed = match (feed, p) {
        (Some(f), _) => self::feed(f)?,
        (None, ProcessorKind::Usage) => FeedKind::Usage,
        (None, _) => {
            return Err(OpsError::Usage(
                "the notification processor has several feeds: name the halted event's feed with --feed".into(),
            ))
        }
    };
    Ok(HaltTarget { feed, event_id: event })
}

/// `resume PROCESSOR [--event ID]`: the halted event is tried again; with an event named, only if it is the one
/// halted (a stale view or a repeated command changes nothing).
pub async fn resume(
    store: &Arc<dyn StateStore>,
    name: &str,
    event: Option<HaltTarget>,
    actor: &str,
) -> Result<Value, OpsError> {
    let operator = Operator::new(Arc::clone(store));
    let halt = match event {
        Some(t) => operator.resume_event(processor(name)?, t, actor).await?,
        None => operator.resume(processor(name)?, actor).await?,
    };
    Ok(json!({"resumed": halt_json(&halt), "actor": actor}))
}

/// `skip PROCESSOR --event ID --reason R`: the halted event (or usage range) is recorded as skipped and never
/// billed — only if it is the one named.
pub async fn skip(
    store: &Arc<dyn StateStore>,
    name: &str,
    event: HaltTarget,
    actor: &str,
    reason: &str,
) -> Result<Value, OpsError> {
    if reason.trim().is_empty() {
        return Err(OpsError::Usage("skip needs --reason: it is kept in the audit log".into()));
    }
    let halt = Operator::new(Arc::clone(store)).skip_event(processor(name)?, event, actor, reason.trim()).await?;
    Ok(json!({"skipped": halt_json(&halt), "actor": actor, "reason": reason.trim()}))
}

/// `audit`: the newest entries, oldest first.
pub async fn audit(store: &Arc<dyn StateStore>, limit: u32) -> Result<Value, OpsError> {
    let entries = store.audit_log(limit).await?;
    Ok(Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({
                    "id": e.id, "at": e.at.to_rfc3339(), "actor": e.actor, "action": format!("{:?}", e.action),
                    "processor": e.processor.map(|p| p.name()), "feed": e.feed.map(|f| f.to_string()),
                    "event_id": e.event_id, "detail": e.detail,
                })
            })
            .collect(),
    ))
}

/// The text form of [`audit`].
pub fn audit_text(entries: &Value) -> String {
    let rows: Vec<Vec<String>> = entries
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    vec![
                        e["at"].as_str().unwrap_or("").to_owned(),
                        e["actor"].as_str().unwrap_or("").to_owned(),
                        e["action"].as_str().unwrap_or("").to_owned(),
                        e["feed"].as_str().unwrap_or("-").to_owned(),
                        opt(e["event_id"].as_i64()),
                        e["detail"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["AT", "ACTOR", "ACTION", "FEED", "EVENT", "DETAIL"], &rows)
}

fn kind(name: &str) -> Result<IdentityKind, OpsError> {
    IdentityKind::from_name(name).ok_or_else(|| {
        OpsError::Usage(format!("unknown mapping kind {name:?} (plan, addOn, user, subscription, addOnInstance)"))
    })
}

/// `mappings list [KIND]`.
pub async fn mappings_list(store: &Arc<dyn StateStore>, only: Option<&str>) -> Result<Value, OpsError> {
    let kinds = match only {
        Some(k) => vec![kind(k)?],
        None => IdentityKind::ALL.to_vec(),
    };
    let mut out = Vec::new();
    for k in kinds {
        for m in store.identities(k).await? {
            out.push(json!({"kind": m.kind.name(), "wap_id": m.wap_id, "billing_id": m.billing_id, "updated_at": m.updated_at.to_rfc3339()}));
        }
    }
    Ok(Value::Array(out))
}

/// The text form of [`mappings_list`].
pub fn mappings_text(list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    ["kind", "wap_id", "billing_id", "updated_at"]
                        .iter()
                        .map(|k| m[*k].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["KIND", "WAP ID", "BILLING ID", "UPDATED"], &rows)
}

/// `mappings set KIND WAP_ID BILLING_ID` (audited).
pub async fn mappings_set(
    store: &Arc<dyn StateStore>,
    k: &str,
    wap_id: &str,
    billing_id: &str,
    actor: &str,
) -> Result<(), OpsError> {
    if wap_id.trim().is_empty() || billing_id.trim().is_empty() {
        return Err(OpsError::Usage("a mapping needs a WAP id and a billing id".into()));
    }
    store.set_identity(kind(k)?, wap_id.trim(), billing_id.trim(), actor, Utc::now()).await?;
    Ok(())
}

/// `mappings delete KIND WAP_ID` (audited); whether one existed.
pub async fn mappings_delete(
    store: &Arc<dyn StateStore>,
    k: &str,
    wap_id: &str,
    actor: &str,
) -> Result<bool, OpsError> {
    Ok(store.delete_identity(kind(k)?, wap_id.trim(), actor, Utc::now()).await?)
}

/// `mappings export`: CSV `kind,wap_id,billing_id`.
pub async fn mappings_csv(store: &Arc<dyn StateStore>) -> Result<String, OpsError> {
    let mut out = String::from("kind,wap_id,billing_id\n");
    for k in IdentityKind::ALL {
        for m in store.identities(k).await? {
            let _ = writeln!(out, "{},{},{}", m.kind.name(), csv_cell(&m.wap_id), csv_cell(&m.billing_id));
        }
    }
    Ok(out)
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Splits one CSV line (quotes and doubled quotes honoured).
fn csv_split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cell)),
            (c, _) => cell.push(c),
        }
    }
    out.push(cell);
    out
}

/// `mappings import FILE`: CSV `kind,wap_id,billing_id` (a header line is skipped). Every line is checked before
/// anything is written; returns how many were set.
pub async fn mappings_import(store: &Arc<dyn StateStore>, text: &str, actor: &str) -> Result<usize, OpsError> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (n == 0 && line.to_ascii_lowercase().starts_with("kind,")) {
            continue;
        }
        let cells = csv_split(line);
        let [k, wap, billing] = cells.as_slice() else {
            return Err(OpsError::Usage(format!(
                "line {}: expected kind,wap_id,billing_id, found {} cell(s)",
                n + 1,
                cells.len()
            )));
        };
        let k = kind(k.trim()).map_err(|e| OpsError::Usage(format!("line {}: {e}", n + 1)))?;
        if wap.trim().is_empty() || billing.trim().is_empty() {
            return Err(OpsError::Usage(format!("line {}: empty WAP id or billing id", n + 1)));
        }
        rows.push((k, wap.trim().to_owned(), billing.trim().to_owned()));
    }
    for (k, wap, billing) in &rows {
        store.set_identity(*k, wap, billing, actor, Utc::now()).await?;
    }
    Ok(rows.len())
}

/// The feed names `export` and `tail` accept.
pub fn feed(name: &str) -> Result<FeedKind, OpsError> {
    FeedKind::from_name(name).ok_or_else(|| {
        OpsError::Usage(format!(
            "unknown feed {name:?} (usage, plans, addons, planAddons, planServices, subscriptions, subscriptionAddons)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(csv_split("plan,\"a,b\",\"say \"\"x\"\"\""), ["plan", "a,b", "say \"x\""]);
        assert_eq!(csv_split("a,,c"), ["a", "", "c"]);
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\n---  ------\nxyz  1\n");
    }
}
