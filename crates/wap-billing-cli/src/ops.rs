//! Operator commands against the state database: `status`, `resume`, `skip`, `resolve`, `audit`, `mappings`.
//!
//! They open the state database named by the settings (`[state]`), so they work whether or not the adapter is
//! running, and on any instance of a fleet sharing one PostgreSQL. Every change is written to the audit log with
//! the acting operator.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{json, Value};
use wap_billing_engine::store::{self, HaltTarget, IdentityKind, ProcessorKind, StateStore, StoreError};
use wap_billing_engine::{InDoubtResolution, Operator};
use wap_types::FeedKind;
use wap_usage_client::UsageClient;

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
    let url = settings.state.resolve("state").map_err(OpsError::Setting)?;
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

/// How many items one lag probe asks WAP for, per feed.
pub const LAG_PROBE_BATCH: u32 = 1_000;

/// What WAP holds after a feed's cursor: one page of up to [`LAG_PROBE_BATCH`] items asked from the cursor on.
async fn probe_lag(client: &UsageClient, feed: FeedKind, committed: Option<i64>, start: i64) -> Result<Value, String> {
    let body = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        client.raw_page(feed, wap_types::StartId::new(start), LAG_PROBE_BATCH),
    )
    .await
    .map_err(|_| "the Usage Service did not answer within 15 s".to_owned())?
    .map_err(|e| e.to_string())?;
    let items: Vec<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice(&body).map_err(|e| format!("not a page: {e}"))?
    };
    let id = |v: &Value| member(v, "EventId").and_then(Value::as_i64);
    // Only what lies after the cursor (WAP may repeat the cursor's own item).
    let mut pending: Vec<&Value> =
        items.iter().filter(|v| id(v).is_some_and(|i| committed.is_none_or(|c| i > c))).collect();
    pending.sort_by_key(|v| id(v));
    let newest_seen = pending.last().and_then(|v| id(v)).or(committed);
    let oldest_at = pending.first().and_then(|v| {
        let field = if feed == FeedKind::Usage { "EndTime" } else { "NotificationEventTimeCreated" };
        member(v, field).cloned().and_then(|t| serde_json::from_value::<wap_types::WapDateTime>(t).ok())
    });
    let now = Utc::now();
    Ok(json!({
        "pending": pending.len(),
        "pending_at_least": items.len() >= LAG_PROBE_BATCH as usize,
        "newest_seen_event_id": newest_seen,
        "lag_event_ids": match (newest_seen, committed) { (Some(n), Some(c)) => Some(n - c), (Some(n), None) => Some(n), _ => None },
        "oldest_pending_at": oldest_at.map(|t| t.to_utc().to_rfc3339()),
        "oldest_pending_age_seconds": oldest_at.map(|t| (now - t.to_utc()).num_seconds().max(0)),
    }))
}

fn member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    value.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// `status`: per processor its leader and lease, its halt and its open (in-doubt) intent with the error; per feed
/// its cursor, last poll, hold and — when `wap` is given — its lag behind WAP: how many items WAP holds after the
/// cursor (one probe page), the newest id seen and the age of the oldest pending item.
pub async fn status(store: &Arc<dyn StateStore>, wap: Option<&UsageClient>) -> Result<Value, OpsError> {
    let mut processors = Vec::new();
    let mut wap_error: Option<String> = None;
    for p in ProcessorKind::ALL {
        let lease = store.lease(p).await?;
        let halt = store.halt(p).await?;
        let intent = store.intent(p).await?;
        let mut feeds = Vec::new();
        let now = Utc::now();
        for feed in p.feeds() {
            let c = store.cursor(*feed).await?;
            let lag = match (wap, &wap_error) {
                (Some(client), None) => {
                    let start = match (c.last_event_id, client.start_id_mode()) {
                        (Some(id), wap_types::StartIdMode::Inclusive) => id.saturating_add(1),
                        (Some(id), wap_types::StartIdMode::Exclusive) => id,
                        (None, _) => 0,
                    };
                    match probe_lag(client, *feed, c.last_event_id, start).await {
                        Ok(v) => v,
                        Err(e) => {
                            wap_error = Some(e.clone());
                            json!({"error": e})
                        }
                    }
                }
                (Some(_), Some(e)) => json!({"error": e}),
                (None, _) => Value::Null,
            };
            feeds.push(json!({
                "feed": feed.to_string(),
                "last_event_id": c.last_event_id,
                "last_poll_at": c.last_poll_at.map(|t| t.to_rfc3339()),
                "last_poll_age_seconds": c.last_poll_at.map(|t| (now - t).num_seconds().max(0)),
                "held_event_id": c.hold.map(|h| h.event_id),
                "held_since": c.hold.map(|h| h.since.to_rfc3339()),
                "lag": lag,
            }));
        }
        let live = lease.as_ref().filter(|l| l.holder.is_some() && l.expires_at > now);
        processors.push(json!({
            "processor": p.name(),
            "leader": live.and_then(|l| l.holder.clone()),
            "lease_generation": lease.as_ref().map(|l| l.generation),
            "lease_expires_at": lease.as_ref().map(|l| l.expires_at.to_rfc3339()),
            "lease_remaining_ms": live.map(|l| (l.expires_at - now).num_milliseconds()),
            "halt": halt.as_ref().map(|h| json!({
                "feed": h.feed.to_string(),
                "event_id": h.event_id,
                "last_event_id": h.last_event_id,
                "reason": h.reason.name(),
                "error": h.error,
                "attempts": h.attempts,
                "halted_at": h.halted_at.to_rfc3339(),
            })),
            "in_doubt": halt.as_ref().is_some_and(|h| h.reason == store::HaltReason::InDoubt),
            "open_intent": intent.as_ref().map(|i| json!({
                "feed": i.feed.to_string(),
                "first_event_id": i.first_event_id,
                "last_event_id": i.last_event_id,
                "records": i.records,
                "operation": i.operation,
                "token": i.token,
                "generation": i.generation,
                "opened_at": i.opened_at.to_rfc3339(),
            })),
            "feeds": feeds,
        }));
    }
    Ok(json!({ "at": Utc::now().to_rfc3339(), "wap_probed": wap.is_some(), "processors": processors }))
}

fn age(seconds: Option<i64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7_200 => format!("{}m", s / 60),
        Some(s) if s < 172_800 => format!("{}h", s / 3_600),
        Some(s) => format!("{}d", s / 86_400),
    }
}

fn lag_cells(f: &Value) -> [String; 3] {
    let lag = &f["lag"];
    if lag.is_null() {
        return ["-".into(), "-".into(), "-".into()];
    }
    if let Some(e) = lag["error"].as_str() {
        let short: String = e.chars().take(40).collect();
        return [format!("unknown ({short})"), "-".into(), "-".into()];
    }
    let pending = lag["pending"].as_u64().unwrap_or(0);
    let plus = if lag["pending_at_least"].as_bool() == Some(true) { "+" } else { "" };
    [
        format!("{pending}{plus}"),
        opt(lag["newest_seen_event_id"].as_i64()),
        age(lag["oldest_pending_age_seconds"].as_i64()),
    ]
}

/// The text form of [`status`].
pub fn status_text(status: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let processors = status["processors"].as_array().unwrap_or(&empty);
    let rows: Vec<Vec<String>> = processors
        .iter()
        .map(|p| {
            let state = if p["in_doubt"].as_bool() == Some(true) {
                "IN DOUBT"
            } else if p["halt"].is_null() {
                "running"
            } else {
                "HALTED"
            };
            vec![
                p["processor"].as_str().unwrap_or("?").to_owned(),
                state.to_owned(),
                p["leader"].as_str().unwrap_or("none").to_owned(),
                opt(p["lease_generation"].as_i64()),
                match p["lease_remaining_ms"].as_i64() {
                    Some(ms) => format!("{}s left", ms / 1_000),
                    None => "expired".to_owned(),
                },
            ]
        })
        .collect();
    out.push_str(&table(&["PROCESSOR", "STATE", "LEADER", "GENERATION", "LEASE"], &rows));
    out.push('\n');
    let rows: Vec<Vec<String>> = processors
        .iter()
        .flat_map(|p| p["feeds"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            let [pending, newest, oldest] = lag_cells(&f);
            vec![
                f["feed"].as_str().unwrap_or("?").to_owned(),
                opt(f["last_event_id"].as_i64()),
                newest,
                pending,
                oldest,
                match f["last_poll_age_seconds"].as_i64() {
                    Some(_) => format!("{} ago", age(f["last_poll_age_seconds"].as_i64())),
                    None => "never".to_owned(),
                },
                match f["held_event_id"].as_i64() {
                    Some(id) => format!("event {id} since {}", f["held_since"].as_str().unwrap_or("?")),
                    None => "-".to_owned(),
                },
            ]
        })
        .collect();
    out.push_str(&table(&["FEED", "CURSOR", "NEWEST IN WAP", "BEHIND", "OLDEST PENDING", "LAST POLL", "HOLD"], &rows));
    if status["wap_probed"].as_bool() != Some(true) {
        out.push_str("(lag behind WAP not probed: no valid [usage_service] settings, or --no-wap)\n");
    }
    for p in processors {
        let h = &p["halt"];
        let name = p["processor"].as_str().unwrap_or("?");
        if !h.is_null() {
            let in_doubt = p["in_doubt"].as_bool() == Some(true);
            let _ = write!(
                out,
                "\n{} processor {} at {} event {}{} after {} attempt(s) ({}): {}\n  since {}\n",
                name,
                if in_doubt { "IN DOUBT" } else { "HALTED" },
                h["feed"].as_str().unwrap_or("?"),
                h["event_id"],
                if h["last_event_id"] != h["event_id"] { format!("..={}", h["last_event_id"]) } else { String::new() },
                h["attempts"],
                h["reason"].as_str().unwrap_or("?"),
                h["error"].as_str().unwrap_or(""),
                h["halted_at"].as_str().unwrap_or("?"),
            );
            let i = &p["open_intent"];
            if !i.is_null() {
                let _ = writeln!(
                    out,
                    "  open intent {}: {} of {} {}..={} ({} records, generation {}, opened {})",
                    i["token"].as_str().unwrap_or("?"),
                    i["operation"].as_str().unwrap_or("?"),
                    i["feed"].as_str().unwrap_or("?"),
                    i["first_event_id"],
                    i["last_event_id"],
                    i["records"],
                    i["generation"],
                    i["opened_at"].as_str().unwrap_or("?"),
                );
            }
            if in_doubt {
                let _ = writeln!(
                    out,
                    "  resolve: check the billing system for the intent's token, then\n    wap-billing resolve {name} --as applied|send-again|skip --reason \"...\"\n  (or wap-billing resume {name} to ask the handler to reconcile again)",
                );
            } else {
                let _ = writeln!(
                    out,
                    "  resolve: wap-billing resume {name} --event {} | wap-billing skip {name} --event {} --reason \"...\"",
                    target_args(p, h),
                    target_args(p, h),
                );
            }
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

/// `resolve PROCESSOR --as applied|send-again|skip --reason R`: the processor's in-doubt intent is committed as
/// applied, sent again, or skipped (audited).
pub async fn resolve(
    store: &Arc<dyn StateStore>,
    name: &str,
    resolution: &str,
    actor: &str,
    reason: &str,
) -> Result<Value, OpsError> {
    if reason.trim().is_empty() {
        return Err(OpsError::Usage("resolve needs --reason: it is kept in the audit log".into()));
    }
    let r = InDoubtResolution::from_name(resolution)
        .ok_or_else(|| OpsError::Usage(format!("unknown resolution {resolution:?} (applied, send-again or skip)")))?;
    let intent = Operator::new(Arc::clone(store)).resolve_in_doubt(processor(name)?, r, actor, reason.trim()).await?;
    Ok(json!({
        "resolved": {"processor": name, "token": intent.token, "feed": intent.feed.to_string(),
                     "first_event_id": intent.first_event_id, "last_event_id": intent.last_event_id},
        "resolution": r.name(), "actor": actor, "reason": reason.trim(),
    }))
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
