//! The usage endpoint's rules (docs/protocol/resource-provider.md §5): [`UsageQuery`] parsing, the [`UsageSource`] trait a store
//! implements, and [`serve_usage`], which applies the acknowledgement and paging rules on top of any source.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use wap_types::cursor::{parse_batch_size, CursorError};
use wap_types::{LastId, RpUsageRecord};

/// `batchSize` when the collector sends none (docs/protocol/resource-provider.md §5).
pub const DEFAULT_USAGE_BATCH_SIZE: u32 = 1000;

/// A parsed `GET usage?lastID=&batchSize=` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageQuery {
    /// The last id the collector received: acknowledges every record up to and including it.
    pub last_id: LastId,
    /// The most records wanted (`0` = none, while `lastID` still acknowledges).
    pub batch_size: u32,
}

/// Why a usage query is rejected with 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageQueryError {
    /// `lastID` or `batchSize` is not a non-negative integer.
    #[error(transparent)]
    Invalid(#[from] CursorError),
    /// A parameter was given twice with different values.
    #[error("query parameter {name} is given more than once with different values")]
    Repeated {
        /// The parameter.
        name: &'static str,
    },
}

impl UsageQuery {
    /// Parses the query string (without `?`). Names are matched ignoring case (`lastID`, `lastId`, `LastId`,
    /// `batchSize`, `BatchSize`); other parameters are ignored. `lastID` absent, empty or `0` = from the start;
    /// `batchSize` absent or empty = 1000; non-integer or negative values are errors.
    pub fn parse(query: Option<&str>) -> Result<Self, UsageQueryError> {
        let mut last: Option<String> = None;
        let mut batch: Option<String> = None;
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let (slot, wire) = if name.eq_ignore_ascii_case("lastid") {
                (&mut last, "lastID")
            } else if name.eq_ignore_ascii_case("batchsize") {
                (&mut batch, "batchSize")
            } else {
                continue;
            };
            match slot {
                Some(prev) if prev.trim() != value.trim() => return Err(UsageQueryError::Repeated { name: wire }),
                Some(_) => {}
                None => *slot = Some(value.into_owned()),
            }
        }
        Ok(UsageQuery {
            last_id: LastId::parse_query(last.as_deref())?,
            batch_size: parse_batch_size(batch.as_deref(), DEFAULT_USAGE_BATCH_SIZE)?,
        })
    }
}

/// One record ready to send: its `EventId` and its JSON text (an object holding that same `EventId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageEntry {
    event_id: i64,
    json: String,
}

impl UsageEntry {
    /// Serializes a record.
    pub fn from_record(record: &RpUsageRecord) -> Result<Self, serde_json::Error> {
        Ok(UsageEntry { event_id: record.event_id, json: serde_json::to_string(record)? })
    }

    /// A record already serialized by this crate (trusted: not parsed again).
    pub(crate) fn from_trusted_json(event_id: i64, json: String) -> Self {
        UsageEntry { event_id, json }
    }

    /// The record's `EventId`.
    pub fn event_id(&self) -> i64 {
        self.event_id
    }

    /// The record's JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Parses the record.
    pub fn record(&self) -> Result<RpUsageRecord, wap_types::JsonError> {
        wap_types::json::from_slice(self.json.as_bytes())
    }
}

/// Records a source returns for one request, ascending by `EventId`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsagePage {
    entries: Vec<UsageEntry>,
}

impl UsagePage {
    /// An empty page.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A page of serialized entries.
    pub fn from_entries(entries: Vec<UsageEntry>) -> Self {
        UsagePage { entries }
    }

    /// A page of typed records (serialized here).
    pub fn from_records(records: &[RpUsageRecord]) -> Result<Self, serde_json::Error> {
        records.iter().map(UsageEntry::from_record).collect::<Result<Vec<_>, _>>().map(Self::from_entries)
    }

    /// The entries.
    pub fn entries(&self) -> &[UsageEntry] {
        &self.entries
    }

    /// The `EventId`s, in page order.
    pub fn event_ids(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.event_id).collect()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the page holds no record.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The JSON array sent on the wire.
    pub fn to_json(&self) -> String {
        let size = self.entries.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2;
        let mut out = String::with_capacity(size);
        out.push('[');
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&e.json);
        }
        out.push(']');
        out
    }

    /// Keeps the records after `last` and at most `limit` of them; reports whether the order was broken.
    fn enforce(&mut self, last: LastId, limit: usize) -> Result<usize, &'static str> {
        let before = self.entries.len();
        self.entries.retain(|e| last.admits(e.event_id));
        let dropped = before - self.entries.len();
        self.entries.truncate(limit);
        if self.entries.windows(2).any(|w| w[0].event_id >= w[1].event_id) {
            return Err("records are not strictly ascending by EventId");
        }
        if self.entries.first().is_some_and(|e| e.event_id < 1) {
            return Err("an EventId is below 1");
        }
        Ok(dropped)
    }
}

/// A usage source failed (storage unavailable, corrupt row, …).
#[derive(Debug, thiserror::Error)]
#[error("usage source failed: {message}")]
#[non_exhaustive]
pub struct UsageSourceError {
    /// What failed (no credentials).
    pub message: String,
    /// Whether retrying later may succeed (busy or unavailable storage).
    pub retryable: bool,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl UsageSourceError {
    /// An error with a message.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        UsageSourceError { message: message.into(), retryable, source: None }
    }

    /// An error caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        retryable: bool,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        UsageSourceError { message: message.into(), retryable, source: Some(Box::new(source)) }
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

/// `?` on an I/O error in a [`UsageSource`]: retryable unless the kind says the same call cannot succeed
/// (`NotFound`, `PermissionDenied`, `InvalidData`, `InvalidInput`, `Unsupported`).
impl From<std::io::Error> for UsageSourceError {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let retryable = !matches!(
            error.kind(),
            K::NotFound | K::PermissionDenied | K::InvalidData | K::InvalidInput | K::Unsupported
        );
        UsageSourceError::with_source(error.to_string(), retryable, error)
    }
}

/// `?` on any boxed error in a [`UsageSource`]: retryable (the collector asks again later; nothing is lost).
impl From<Box<dyn std::error::Error + Send + Sync + 'static>> for UsageSourceError {
    fn from(error: Box<dyn std::error::Error + Send + Sync + 'static>) -> Self {
        UsageSourceError { message: error.to_string(), retryable: true, source: Some(error) }
    }
}

/// What one usage request did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsagePoll {
    /// The records to answer with.
    pub page: UsagePage,
    /// `lastID` was above the highest id ever issued (a lost or restored store; logged as a warning).
    pub last_id_beyond_issued: bool,
    /// The highest `EventId` issued so far (0 before the first record).
    pub highest_issued: i64,
    /// What the `lastID` acknowledged (never above the served mark): the page holds records after it.
    pub after: LastId,
    /// `lastID` was above the highest id served: it acknowledged only up to the served mark (a warning); the
    /// built-in ledger gave the records never served at or below it new ids above the highest (`renumbered`).
    pub last_id_above_served: bool,
    /// A `lastID` above every issued id moved the id counter past it.
    pub ids_advanced: bool,
    /// Records never served that got new ids above the `lastID` (either case above).
    pub renumbered: u64,
    /// The served mark when the page was read, when the source keeps one.
    pub served_through: Option<i64>,
    /// The source already raised its served mark to this id, durably, in the transaction that read the page (the
    /// built-in SQLite ledger does, so a page costs one commit): [`serve_usage`] then does not call
    /// [`UsageSource::record_served`] for a page ending at or below it.
    pub served_recorded_through: Option<i64>,
}

impl UsagePoll {
    /// A poll answering `page`, nothing acknowledged, with the source's highest issued id.
    pub fn new(page: UsagePage, highest_issued: i64) -> Self {
        UsagePoll {
            page,
            last_id_beyond_issued: false,
            highest_issued,
            after: LastId::NONE,
            last_id_above_served: false,
            ids_advanced: false,
            renumbered: 0,
            served_through: None,
            served_recorded_through: None,
        }
    }
}

/// A store of usage records the `/usage` endpoint serves.
///
/// Implement the three primitives; [`serve_usage`] applies the spec's rules on top. The built-in
/// [`UsageLedger`](crate::UsageLedger) implements it; implement it yourself when your records live in your own
/// database. Requirements:
///
/// - `EventId`s ≥ 1, unique and strictly increasing in issue order; a record is kept until an acknowledgement
///   covers it.
/// - **Records become visible in id order**: once a record is returned by `records_after`, no record with a lower
///   id may appear later. A collector acknowledges everything up to the last id it received, so a record that
///   becomes visible below it (an id taken from a database sequence by a transaction that commits after a later
///   one) would be skipped. A store that cannot promise this (most sequence-backed tables) returns `false` from
///   [`UsageSource::ids_visible_in_order`]: the server then holds back the records after a gap in ids until the
///   gap is older than a grace period ([`GapHoldBack`]).
/// - Keep the served mark ([`UsageSource::highest_served_id`], [`UsageSource::record_served`]) durably: without
///   it a `lastID` cannot be checked against what was really served, and records above the served mark could be
///   acknowledged unserved.
#[async_trait]
pub trait UsageSource: Send + Sync + 'static {
    /// The highest `EventId` ever issued, acknowledged or not (0 before the first record). Never decreases.
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError>;

    /// The collector received everything up to and including `up_to`: those records may be deleted.
    /// Returns how many were removed. Called only with `1 <= up_to <= highest_issued_id()`.
    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError>;

    /// Up to `limit` (≥ 1) records with `EventId` after `after`, ascending.
    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError>;

    /// The highest `EventId` handed to a collector ([`UsageSource::record_served`]), kept durably; `None` when the
    /// source does not keep it (the default: then a `lastID` up to the highest issued id acknowledges).
    async fn highest_served_id(&self) -> Result<Option<i64>, UsageSourceError> {
        Ok(None)
    }

    /// [`serve_usage`] handed a page ending at `through` to a collector: raise the served mark (never lower it).
    /// The default keeps nothing.
    async fn record_served(&self, through: i64) -> Result<(), UsageSourceError> {
        let _ = through;
        Ok(())
    }

    /// Whether records become visible strictly in id order (see the trait docs). `false` by default: the server
    /// then holds back records after a young gap in ids.
    fn ids_visible_in_order(&self) -> bool {
        false
    }

    /// One whole usage request: check `lastID` against the highest issued and the served id, acknowledge, read the
    /// page.
    ///
    /// The default calls the primitives in that order: a `lastID` above the highest issued id acknowledges
    /// nothing and gets `[]`; one above the served mark acknowledges only up to it, and the page starts after the
    /// mark (the default cannot renumber records, so WAP's collector, which drops ids at or below its `lastID`,
    /// would not keep those: a source that keeps a served mark should override `poll` and give them new ids, as
    /// [`UsageLedger`](crate::UsageLedger) does). A source may override it to do the steps in one transaction; [`serve_usage`] still enforces the
    /// paging invariants on what it returns.
    async fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, UsageSourceError> {
        let highest = self.highest_issued_id().await?;
        let served = self.highest_served_id().await?;
        let mut poll = UsagePoll::new(UsagePage::empty(), highest);
        poll.served_through = served;
        poll.after = query.last_id;
        if let Some(last) = query.last_id.get() {
            if last > highest {
                poll.last_id_beyond_issued = true;
                return Ok(poll);
            }
            let acknowledged = served.map_or(last, |s| last.min(s));
            if acknowledged < last {
                poll.last_id_above_served = true;
            }
            if acknowledged >= 1 {
                self.acknowledge(acknowledged).await?;
            }
            poll.after = LastId::new(acknowledged);
        }
        let limit = (query.batch_size as usize).min(max_page);
        if limit > 0 {
            poll.page = self.records_after(poll.after, limit).await?;
        }
        Ok(poll)
    }
}

#[async_trait]
impl<S: UsageSource + ?Sized> UsageSource for std::sync::Arc<S> {
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError> {
        (**self).highest_issued_id().await
    }

    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError> {
        (**self).acknowledge(up_to).await
    }

    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError> {
        (**self).records_after(after, limit).await
    }

    async fn highest_served_id(&self) -> Result<Option<i64>, UsageSourceError> {
        (**self).highest_served_id().await
    }

    async fn record_served(&self, through: i64) -> Result<(), UsageSourceError> {
        (**self).record_served(through).await
    }

    fn ids_visible_in_order(&self) -> bool {
        (**self).ids_visible_in_order()
    }

    async fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, UsageSourceError> {
        (**self).poll(query, max_page).await
    }
}

/// How long a gap in ids is waited for before the records after it are served ([`GapHoldBack`]): 5 s.
pub const DEFAULT_USAGE_GAP_GRACE: Duration = Duration::from_secs(5);

/// Holds back the records that follow a gap in ids, for a source whose records may become visible out of id order
/// ([`UsageSource::ids_visible_in_order`] = `false`): the missing ids may still be filled by a transaction in
/// flight, and once the collector acknowledges past them they would never be served. A gap is waited for until it
/// has been seen for `grace`; after that it is taken as permanent (a rolled-back sequence value, a deleted
/// record) and the records after it are served. Only ids above the served mark (or the `lastID`) are judged, and
/// while nothing has been served or acknowledged yet, the gap before the first record is not (a store may start at
/// any id).
#[derive(Debug)]
pub struct GapHoldBack {
    grace: Duration,
    /// Gaps seen (id before, id after) and when first seen.
    seen: Mutex<HashMap<(i64, i64), Instant>>,
}

/// Gaps remembered at most (the oldest judged ones are dropped first).
const MAX_GAPS_REMEMBERED: usize = 4096;

impl GapHoldBack {
    /// Waits `grace` for each gap; `Duration::ZERO` serves every page as it is.
    pub fn new(grace: Duration) -> Self {
        GapHoldBack { grace, seen: Mutex::new(HashMap::new()) }
    }

    /// Truncates `page` before the first record that follows a gap younger than the grace period; returns how
    /// many records were held back. `boundary`: the highest id already served (or acknowledged).
    fn apply(&self, page: &mut UsagePage, boundary: i64, now: Instant) -> usize {
        if self.grace.is_zero() {
            return 0;
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|&(before, _), _| before >= boundary);
        if seen.len() > MAX_GAPS_REMEMBERED {
            seen.clear();
        }
        let mut previous = boundary;
        for (index, entry) in page.entries.iter().enumerate() {
            let id = entry.event_id;
            if id <= boundary {
                continue;
            }
            // Before anything was served or acknowledged (boundary 0) a store may start at any id: the leading gap
            // is not judged.
            if previous > 0 && id > previous.saturating_add(1) {
                let first_seen = *seen.entry((previous, id)).or_insert(now);
                if now.duration_since(first_seen) < self.grace {
                    let held = page.entries.len() - index;
                    page.entries.truncate(index);
                    return held;
                }
            }
            previous = id;
        }
        0
    }
}

impl Default for GapHoldBack {
    fn default() -> Self {
        GapHoldBack::new(DEFAULT_USAGE_GAP_GRACE)
    }
}

/// Serves one usage request from `source` under the rules of docs/protocol/resource-provider.md §5: records after `lastID` only, ascending, never
/// more than `batchSize` (nor `max_page`), `[]` for `batchSize=0` (the acknowledgement still applies). A `lastID`
/// acknowledges only up to the highest id served; above every issued id it acknowledges nothing (and the built-in
/// ledger moves its ids past it). The last id of the page is recorded as served
/// ([`UsageSource::record_served`]). No gap hold-back: see [`serve_usage_with`].
///
/// A source answer that breaks the order (not strictly ascending, or an id below 1) is an error: better no page
/// than a page the collector would mis-acknowledge.
pub async fn serve_usage<S: UsageSource + ?Sized>(
    source: &S,
    query: UsageQuery,
    max_page: usize,
) -> Result<UsagePoll, UsageSourceError> {
    serve_usage_with(source, query, max_page, &GapHoldBack::new(Duration::ZERO)).await
}

/// [`serve_usage`], holding back records after young gaps in ids (`gaps`) when the source does not promise
/// visibility in id order. What [`RpServer`](crate::RpServer) calls.
pub async fn serve_usage_with<S: UsageSource + ?Sized>(
    source: &S,
    query: UsageQuery,
    max_page: usize,
    gaps: &GapHoldBack,
) -> Result<UsagePoll, UsageSourceError> {
    let mut poll = source.poll(query, max_page.max(1)).await?;
    if poll.last_id_beyond_issued {
        if poll.ids_advanced {
            tracing::warn!(
                last_id = %query.last_id,
                highest_issued = poll.highest_issued,
                renumbered = poll.renumbered,
                "usage collector sent a lastID above every EventId issued (lost or restored ledger): ids moved past it, \
                 records never served renumbered above it, nothing deleted"
            );
        } else {
            tracing::warn!(
                last_id = %query.last_id,
                highest_issued = poll.highest_issued,
                "usage collector sent a lastID above the highest EventId issued; acknowledging nothing"
            );
            poll.page = UsagePage::empty();
            return Ok(poll);
        }
    } else if poll.last_id_above_served {
        tracing::warn!(
            last_id = %query.last_id,
            acknowledged = %poll.after,
            served_through = poll.served_through.unwrap_or(0),
            renumbered = poll.renumbered,
            "usage collector sent a lastID above the highest EventId served: acknowledged only up to the served \
             mark; records never served at or below it were given new ids above it (or, from a source that cannot \
             renumber, are served again)"
        );
    }
    let limit = (query.batch_size as usize).min(max_page.max(1));
    // Records after what the lastID acknowledged: the lastID itself unless the source said it acknowledged less.
    if !poll.last_id_above_served && !poll.ids_advanced {
        poll.after = poll.after.max(query.last_id);
    }
    match poll.page.enforce(poll.after, limit) {
        Ok(0) => {}
        Ok(dropped) => tracing::warn!(dropped, "usage source returned records at or below lastID; dropped"),
        Err(why) => return Err(UsageSourceError::new(format!("usage source broke the paging rules: {why}"), false)),
    }
    let served = poll.served_through.unwrap_or(0);
    if !source.ids_visible_in_order() {
        let boundary = served.max(poll.after.get().unwrap_or(0));
        let held = gaps.apply(&mut poll.page, boundary, Instant::now());
        if held > 0 {
            tracing::debug!(held, "usage records after a young gap in ids held back");
        }
    }
    if let Some(last) = poll.page.entries.last().map(|e| e.event_id) {
        let recorded = poll.served_recorded_through.is_some_and(|through| through >= last);
        if (last > served || poll.served_through.is_none()) && !recorded {
            source.record_served(last).await?;
        }
    }
    Ok(poll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_ignore_case_and_defaults_apply() {
        let q = UsageQuery::parse(Some("LastId=23451&BatchSize=1")).unwrap();
        assert_eq!(q, UsageQuery { last_id: LastId::new(23451), batch_size: 1 });
        let q = UsageQuery::parse(None).unwrap();
        assert_eq!(q, UsageQuery { last_id: LastId::NONE, batch_size: 1000 });
        let q = UsageQuery::parse(Some("lastID=&batchSize=")).unwrap();
        assert_eq!(q, UsageQuery { last_id: LastId::NONE, batch_size: 1000 });
        let q = UsageQuery::parse(Some("lastid=0&other=x")).unwrap();
        assert_eq!(q.last_id, LastId::NONE);
        assert!(UsageQuery::parse(Some("lastID=abc")).is_err());
        assert!(UsageQuery::parse(Some("lastID=-5")).is_err());
        assert!(UsageQuery::parse(Some("batchSize=ten")).is_err());
        assert!(UsageQuery::parse(Some("batchSize=-1")).is_err());
        assert_eq!(UsageQuery::parse(Some("lastID=1&LASTID=2")), Err(UsageQueryError::Repeated { name: "lastID" }));
        assert!(UsageQuery::parse(Some("lastID=2&lastid=2")).is_ok());
    }

    #[test]
    fn page_enforcement_drops_acknowledged_truncates_and_rejects_disorder() {
        let e = |id| UsageEntry::from_trusted_json(id, format!("{{\"EventId\":{id}}}"));
        let mut p = UsagePage::from_entries(vec![e(3), e(4), e(5), e(6)]);
        assert_eq!(p.enforce(LastId::new(3), 2), Ok(1));
        assert_eq!(p.event_ids(), [4, 5]);
        assert_eq!(p.to_json(), r#"[{"EventId":4},{"EventId":5}]"#);
        let mut p = UsagePage::from_entries(vec![e(5), e(4)]);
        assert!(p.enforce(LastId::NONE, 10).is_err());
        let mut p = UsagePage::from_entries(vec![e(5), e(5)]);
        assert!(p.enforce(LastId::NONE, 10).is_err());
        assert_eq!(UsagePage::empty().to_json(), "[]");
    }
}
