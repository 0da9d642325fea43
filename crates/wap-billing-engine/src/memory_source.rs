//! [`MemorySource`]: an in-memory [`FeedSource`] with fault injection, for tests, examples and demos.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use wap_types::{FeedKind, NotificationState, StartId};

use crate::source::{FeedItem, FeedSource, SourceError};

/// One fetch served (or failed) by a [`MemorySource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// The feed.
    pub feed: FeedKind,
    /// The `startId` asked for.
    pub start: StartId,
    /// The `batchSize` asked for.
    pub batch_size: u32,
    /// When (Tokio's clock, so paused-time tests see virtual time).
    pub at: tokio::time::Instant,
    /// Items returned (`None` when an injected failure answered).
    pub returned: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    feeds: BTreeMap<FeedKind, BTreeMap<i64, FeedItem>>,
    failures: VecDeque<(Option<FeedKind>, SourceError)>,
    max_page: Option<usize>,
    descending_pages: bool,
    requests: Vec<FetchRequest>,
}

/// A Usage Service kept in memory: items per feed, served like the real one (`EventId >= startId`, at most
/// `batchSize`), with injectable failures, a server-side page cap and shuffled pages. Cloning shares the data.
///
/// ```
/// use wap_billing_engine::wap_types::{EventMethod, FeedKind, NotificationState, Plan, StartId, UsageEvent};
/// use wap_billing_engine::{FeedItem, FeedSource, MemorySource};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let wap = MemorySource::new();
/// for id in [3, 5] {
///     let plan = Plan { id: format!("plan-{id}"), ..Default::default() };
///     wap.push(FeedItem::Plan(UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::Post, plan)));
/// }
/// let page = wap.fetch(FeedKind::Plans, StartId::new(4), 100).await.unwrap();
/// assert_eq!(page.len(), 1, "startId is inclusive: only EventId 5");
/// assert!(wap.fetch(FeedKind::Plans, StartId::new(6), 100).await.unwrap().is_empty(), "[] past the end");
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    inner: Arc<Mutex<Inner>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces, by feed and `EventId`) an item.
    pub fn push(&self, item: FeedItem) {
        self.lock().feeds.entry(item.feed()).or_default().insert(item.event_id(), item);
    }

    /// Adds several items.
    pub fn extend(&self, items: impl IntoIterator<Item = FeedItem>) {
        let mut inner = self.lock();
        for item in items {
            inner.feeds.entry(item.feed()).or_default().insert(item.event_id(), item);
        }
    }

    /// Changes the `NotificationState` of a stored event (e.g. an approval that went through); whether it exists.
    pub fn set_state(&self, feed: FeedKind, event_id: i64, state: NotificationState) -> bool {
        match self.lock().feeds.get_mut(&feed).and_then(|f| f.get_mut(&event_id)) {
            Some(item) => {
                item.set_state(state);
                true
            }
            None => false,
        }
    }

    /// Removes an item (as WAP's retention would); whether it existed.
    pub fn remove(&self, feed: FeedKind, event_id: i64) -> bool {
        self.lock().feeds.get_mut(&feed).and_then(|f| f.remove(&event_id)).is_some()
    }

    /// The number of items stored for a feed.
    pub fn len(&self, feed: FeedKind) -> usize {
        self.lock().feeds.get(&feed).map_or(0, BTreeMap::len)
    }

    /// Whether no feed holds an item.
    pub fn is_empty(&self) -> bool {
        self.lock().feeds.values().all(BTreeMap::is_empty)
    }

    /// Makes the next `times` fetches fail with `error`: of `feed` only, or of any feed with `None`. Failures queue
    /// up in the order injected.
    pub fn fail_next(&self, feed: Option<FeedKind>, times: usize, error: SourceError) {
        let mut inner = self.lock();
        for _ in 0..times {
            inner.failures.push_back((feed, error.clone()));
        }
    }

    /// Drops the failures still queued by [`MemorySource::fail_next`].
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// Caps every page at `max` items whatever `batchSize` asks (a server-side `MaximumBatchSize`).
    pub fn set_max_page(&self, max: Option<usize>) {
        self.lock().max_page = max;
    }

    /// Serves pages in descending `EventId` order (the order of a page is undocumented).
    pub fn set_descending_pages(&self, descending: bool) {
        self.lock().descending_pages = descending;
    }

    /// Every fetch so far, oldest first.
    pub fn requests(&self) -> Vec<FetchRequest> {
        self.lock().requests.clone()
    }

    /// The fetches of one feed so far.
    pub fn requests_for(&self, feed: FeedKind) -> Vec<FetchRequest> {
        self.lock().requests.iter().filter(|r| r.feed == feed).cloned().collect()
    }
}

#[async_trait]
impl FeedSource for MemorySource {
    async fn fetch(&self, feed: FeedKind, start: StartId, batch_size: u32) -> Result<Vec<FeedItem>, SourceError> {
        let mut inner = self.lock();
        let at = tokio::time::Instant::now();
        if let Some(pos) = inner.failures.iter().position(|(f, _)| f.is_none_or(|f| f == feed)) {
            let (_, error) = inner.failures.remove(pos).expect("position is valid");
            inner.requests.push(FetchRequest { feed, start, batch_size, at, returned: None });
            return Err(error);
        }
        let limit = (batch_size.max(1) as usize).min(inner.max_page.unwrap_or(usize::MAX));
        let mut page: Vec<FeedItem> = inner
            .feeds
            .get(&feed)
            .map(|items| items.range(start.get()..).take(limit).map(|(_, item)| item.clone()).collect())
            .unwrap_or_default();
        if inner.descending_pages {
            page.reverse();
        }
        inner.requests.push(FetchRequest { feed, start, batch_size, at, returned: Some(page.len()) });
        Ok(page)
    }
}
