//! The request log of the Usage Service, for assertions in tests.

use crate::faults::FaultKind;

/// The most entries kept; older ones are dropped.
pub(crate) const MAX_LOG_ENTRIES: usize = 100_000;

/// One request the Usage Service received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestLogEntry {
    /// The method (`GET`, …).
    pub method: String,
    /// Path and query as received (`/usage?startId=0&batchSize=100`).
    pub path_and_query: String,
    /// The status answered (0 when the request was stalled and never answered).
    pub status: u16,
    /// Whether the credentials were accepted.
    pub authorized: bool,
    /// The fault injected into the answer, if any.
    pub fault: Option<FaultKind>,
    /// How many records or events the answer held (0 for errors).
    pub items: usize,
}
