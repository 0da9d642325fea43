//! The usage endpoint's rules (resource-provider.md §5): [`UsageQuery`] parsing, the [`UsageSource`] trait a store
//! implements, and [`serve_usage`], which applies the acknowledgement and paging rules on top of any source.

use async_trait::async_trait;
use wap_types::cursor::{parse_batch_size, CursorError};
use wap_types::{LastId, RpUsageRecord};

/// `batchSize` when the collector sends none (§5).
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

/// What one usage request did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsagePoll {
    /// The records to answer with.
    pub page: UsagePage,
    /// `lastID` was above the highest id ever issued: nothing was acknowledged (logged as a warning).
    pub last_id_beyond_issued: bool,
    /// The highest `EventId` issued so far (0 before the first record).
    pub highest_issued: i64,
}

/// A store of usage records the `/usage` endpoint serves.
///
/// Implement the three primitives; [`serve_usage`] applies the spec's rules on top. The built-in
/// [`UsageLedger`](crate::UsageLedger) implements it; implement it yourself when your records live in your own
/// database. Requirements: `EventId`s ≥ 1, unique and strictly increasing in issue order; a record is kept until
/// an acknowledgement covers it.
#[async_trait]
pub trait UsageSource: Send + Sync + 'static {
    /// The highest `EventId` ever issued, acknowledged or not (0 before the first record). Never decreases.
    async fn highest_issued_id(&self) -> Result<i64, UsageSourceError>;

    /// The collector received everything up to and including `up_to`: those records may be deleted.
    /// Returns how many were removed. Called only with `1 <= up_to <= highest_issued_id()`.
    async fn acknowledge(&self, up_to: i64) -> Result<u64, UsageSourceError>;

    /// Up to `limit` (≥ 1) records with `EventId` after `after`, ascending.
    async fn records_after(&self, after: LastId, limit: usize) -> Result<UsagePage, UsageSourceError>;

    /// One whole usage request: check `lastID` against the highest issued id, acknowledge, read the page.
    ///
    /// The default calls the three primitives in that order. A source may override it to do the three steps in
    /// one transaction; [`serve_usage`] still enforces the paging invariants on what it returns.
    async fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, UsageSourceError> {
        let highest = self.highest_issued_id().await?;
        if let Some(last) = query.last_id.get() {
            if last > highest {
                return Ok(UsagePoll {
                    page: UsagePage::empty(),
                    last_id_beyond_issued: true,
                    highest_issued: highest,
                });
            }
            self.acknowledge(last).await?;
        }
        let limit = (query.batch_size as usize).min(max_page);
        let page = if limit == 0 { UsagePage::empty() } else { self.records_after(query.last_id, limit).await? };
        Ok(UsagePoll { page, last_id_beyond_issued: false, highest_issued: highest })
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

    async fn poll(&self, query: UsageQuery, max_page: usize) -> Result<UsagePoll, UsageSourceError> {
        (**self).poll(query, max_page).await
    }
}

/// Serves one usage request from `source` under the rules of §5: records after `lastID` only, ascending, never
/// more than `batchSize` (nor `max_page`), `[]` for `batchSize=0` (the acknowledgement still applies), `[]`
/// without acknowledging anything when `lastID` is above the highest issued id.
///
/// A source answer that breaks the order (not strictly ascending, or an id below 1) is an error: better no page
/// than a page the collector would mis-acknowledge.
pub async fn serve_usage<S: UsageSource + ?Sized>(
    source: &S,
    query: UsageQuery,
    max_page: usize,
) -> Result<UsagePoll, UsageSourceError> {
    let mut poll = source.poll(query, max_page.max(1)).await?;
    if poll.last_id_beyond_issued {
        tracing::warn!(
            last_id = %query.last_id,
            highest_issued = poll.highest_issued,
            "usage collector sent a lastID above the highest EventId issued; acknowledging nothing"
        );
        poll.page = UsagePage::empty();
        return Ok(poll);
    }
    let limit = (query.batch_size as usize).min(max_page.max(1));
    match poll.page.enforce(query.last_id, limit) {
        Ok(0) => {}
        Ok(dropped) => tracing::warn!(dropped, "usage source returned records at or below lastID; dropped"),
        Err(why) => return Err(UsageSourceError::new(format!("usage source broke the paging rules: {why}"), false)),
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
