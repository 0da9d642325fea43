//! Cursors of the two paging protocols, as distinct types so that their off-by-one rules cannot be mixed up.
//!
//! * [`StartId`] (Usage Service, port 30022): the id of the **first** record wanted, **inclusive**
//!   (`EventId >= startId`). After processing up to id `n`, the next request starts at `n + 1`.
//! * [`LastId`] (resource provider `/usage`, called by WAP's collector): the id of the **last** record received;
//!   it **acknowledges** everything up to and including it, and the answer holds only records **after** it.

use std::fmt;

/// How the Usage Service reads `startId` (the `StartIdInclusive` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartIdMode {
    /// `EventId >= startId` (the documented reading; default): continue at highest processed + 1.
    #[default]
    Inclusive,
    /// `EventId > startId` (a build that behaves otherwise): continue at highest processed.
    Exclusive,
}

/// The `startId` of a Usage Service request: the first `EventId` wanted (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StartId(i64);

impl StartId {
    /// `startId = 0`: the first run of a feed, all retained history.
    pub const BEGINNING: StartId = StartId(0);

    /// A start id as sent on the wire (negative values are clamped to 0).
    pub fn new(id: i64) -> Self {
        StartId(id.max(0))
    }

    /// The value sent as `startId`.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The start id that continues after `last_processed` on an inclusive server: `last_processed + 1`.
    pub fn after(last_processed: i64) -> Self {
        StartId::new(last_processed.saturating_add(1))
    }

    /// The start id to request for a feed whose last committed id is `committed` (`None` = never committed).
    pub fn resume(committed: Option<i64>, mode: StartIdMode) -> Self {
        match (committed, mode) {
            (None, _) => StartId::BEGINNING,
            (Some(c), StartIdMode::Inclusive) => StartId::after(c),
            (Some(c), StartIdMode::Exclusive) => StartId::new(c),
        }
    }

    /// Whether a record with `event_id` belongs at or after this start (`event_id >= startId`).
    pub fn includes(self, event_id: i64) -> bool {
        event_id >= self.0
    }

    /// The next start after a page: the highest id on it + 1, or `self` for an empty page.
    pub fn next_after_page(self, ids: impl IntoIterator<Item = i64>) -> Self {
        match ids.into_iter().max() {
            Some(max) if max >= self.0 => StartId::after(max),
            _ => self,
        }
    }
}

impl fmt::Display for StartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a `lastID` or `batchSize` query value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CursorError {
    /// Not an integer.
    #[error("{name} must be a non-negative integer, got {value:?}")]
    NotAnInteger {
        /// The parameter.
        name: &'static str,
        /// The value (cut to 32 characters).
        value: String,
    },
    /// Negative.
    #[error("{name} must not be negative, got {value}")]
    Negative {
        /// The parameter.
        name: &'static str,
        /// The value.
        value: i64,
    },
}

fn parse_non_negative(name: &'static str, raw: &str) -> Result<i64, CursorError> {
    let v: i64 =
        raw.trim().parse().map_err(|_| CursorError::NotAnInteger { name, value: raw.chars().take(32).collect() })?;
    if v < 0 {
        return Err(CursorError::Negative { name, value: v });
    }
    Ok(v)
}

/// The `lastID` of a resource provider usage request: the last `EventId` the collector received.
///
/// It acknowledges every record up to and including it; the answer holds only records after it. The first call
/// sends it empty ([`LastId::NONE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct LastId(Option<i64>);

impl LastId {
    /// Nothing received yet: `lastID` empty (also read from an absent parameter or `0`).
    pub const NONE: LastId = LastId(None);

    /// The last id received (values ≤ 0 mean none).
    pub fn new(id: i64) -> Self {
        if id <= 0 {
            LastId(None)
        } else {
            LastId(Some(id))
        }
    }

    /// The id, `None` before the first record.
    pub fn get(self) -> Option<i64> {
        self.0
    }

    /// Whether a record with `event_id` is acknowledged by this `lastID` (`event_id <= lastID`).
    pub fn acknowledges(self, event_id: i64) -> bool {
        matches!(self.0, Some(last) if event_id <= last)
    }

    /// Whether a record with `event_id` belongs in the answer (`event_id > lastID`).
    pub fn admits(self, event_id: i64) -> bool {
        !self.acknowledges(event_id)
    }

    /// The `lastID` to send after receiving a page: its highest id, or `self` for an empty page.
    pub fn after_page(self, ids: impl IntoIterator<Item = i64>) -> Self {
        match (ids.into_iter().max(), self.0) {
            (Some(max), Some(last)) if max <= last => self,
            (Some(max), _) => LastId::new(max),
            (None, _) => self,
        }
    }

    /// Reads the query value: absent, empty or `0` = none; non-integer or negative = error.
    pub fn parse_query(raw: Option<&str>) -> Result<Self, CursorError> {
        match raw.map(str::trim) {
            None | Some("") => Ok(LastId::NONE),
            Some(v) => parse_non_negative("lastID", v).map(LastId::new),
        }
    }

    /// The value sent as `lastID` (empty before the first record).
    pub fn to_query_value(self) -> String {
        self.0.map(|v| v.to_string()).unwrap_or_default()
    }
}

impl fmt::Display for LastId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_query_value())
    }
}

/// Reads a resource provider `batchSize` query value: absent or empty = `default`; non-integer or negative = error.
pub fn parse_batch_size(raw: Option<&str>, default: u32) -> Result<u32, CursorError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(default),
        Some(v) => parse_non_negative("batchSize", v).map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// The Usage Service's `MaximumBatchSize`: the most records one response holds.
pub const MAX_BATCH_SIZE: u32 = 10_000;

/// The default `UsageServiceBatchSize` of a billing adapter.
pub const DEFAULT_BATCH_SIZE: u32 = 100;

/// Clamps a Usage Service batch size to `1..=10000`.
pub fn clamp_batch_size(batch: u32) -> u32 {
    batch.clamp(1, MAX_BATCH_SIZE)
}
