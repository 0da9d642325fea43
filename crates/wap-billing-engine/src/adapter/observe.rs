//! A [`FeedSource`] wrapper that counts what the Usage Service served: the newest `EventId` seen per feed (for the
//! lag in the status), fetches, failed fetches and records.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use wap_types::{FeedKind, StartId};

use crate::source::{FeedItem, FeedSource, SourceError};

/// What one feed's fetches saw since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FeedObservation {
    pub(crate) newest_seen: Option<i64>,
    pub(crate) fetches: u64,
    pub(crate) fetch_errors: u64,
    pub(crate) records: u64,
}

#[derive(Debug)]
struct FeedCounters {
    newest_seen: AtomicI64,
    fetches: AtomicU64,
    fetch_errors: AtomicU64,
    records: AtomicU64,
}

impl Default for FeedCounters {
    fn default() -> Self {
        FeedCounters {
            newest_seen: AtomicI64::new(i64::MIN),
            fetches: AtomicU64::new(0),
            fetch_errors: AtomicU64::new(0),
            records: AtomicU64::new(0),
        }
    }
}

/// Counters of all seven feeds.
#[derive(Debug, Default)]
pub(crate) struct SourceCounters {
    feeds: [FeedCounters; 7],
}

fn index(feed: FeedKind) -> usize {
    FeedKind::ALL.iter().position(|f| *f == feed).unwrap_or(0)
}

impl SourceCounters {
    pub(crate) fn observation(&self, feed: FeedKind) -> FeedObservation {
        let c = &self.feeds[index(feed)];
        let newest = c.newest_seen.load(Ordering::Relaxed);
        FeedObservation {
            newest_seen: (newest != i64::MIN).then_some(newest),
            fetches: c.fetches.load(Ordering::Relaxed),
            fetch_errors: c.fetch_errors.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
        }
    }
}

/// Counts around an inner source.
pub(crate) struct ObservedSource {
    inner: Arc<dyn FeedSource>,
    counters: Arc<SourceCounters>,
}

impl ObservedSource {
    pub(crate) fn new(inner: Arc<dyn FeedSource>, counters: Arc<SourceCounters>) -> Self {
        ObservedSource { inner, counters }
    }
}

impl std::fmt::Debug for ObservedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedSource").finish_non_exhaustive()
    }
}

#[async_trait]
impl FeedSource for ObservedSource {
    async fn fetch(&self, feed: FeedKind, start: StartId, batch_size: u32) -> Result<Vec<FeedItem>, SourceError> {
        let c = &self.counters.feeds[index(feed)];
        c.fetches.fetch_add(1, Ordering::Relaxed);
        match self.inner.fetch(feed, start, batch_size).await {
            Ok(page) => {
                c.records.fetch_add(page.len() as u64, Ordering::Relaxed);
                if let Some(max) = page.iter().map(FeedItem::event_id).max() {
                    c.newest_seen.fetch_max(max, Ordering::Relaxed);
                }
                Ok(page)
            }
            Err(e) => {
                c.fetch_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}
