//! [`FeedClient`]: typed access to one feed; [`Page`]: one answer with its continuation cursor.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use wap_types::cursor::clamp_batch_size;
use wap_types::{Feed, FeedKind, HasEventId, StartId, StartIdMode, UsageEvent, UsageRecord};

use crate::client::UsageClient;
use crate::error::Error;
use crate::stream::{self, FeedStream, Prefetch};

/// An element of a feed page: a [`UsageRecord`] or a [`UsageEvent`]. Implemented for both; lets the client apply
/// per-item settings.
pub trait PageItem: HasEventId + DeserializeOwned + Send + Sync + 'static {
    /// Applies `MethodNumericOrdinals = true` (events read `"1"`/`"2"`/`"3"` as Put/Patch/Delete). Usage records
    /// have no method: nothing to do.
    fn apply_method_numeric_ordinals(&mut self) {}
}

impl PageItem for UsageRecord {}

impl<T: DeserializeOwned + Send + Sync + 'static> PageItem for UsageEvent<T> {
    fn apply_method_numeric_ordinals(&mut self) {
        let method = std::mem::replace(&mut self.method, wap_types::EventMethod::Post);
        self.method = method.with_numeric_ordinals();
    }
}

/// Records a resumed pull expected but did not receive because WAP's retention deleted them first.
///
/// **Rule** (the spec cannot tell id gaps from purges, docs/protocol/usage-service.md §2.1 and §5): when a pull resumes from a
/// persisted cursor (`startId > 0`) and the lowest new `EventId` of its first page lies above the first id the
/// cursor asks for, the client asks for the oldest retained record (`startId=0&batchSize=1`):
///
/// * an older record is still retained (its id is below the cursor): retention has not reached the cursor, so the
///   missing ids are ordinary gaps (rejected events, a shared sequence) — nothing is reported;
/// * the oldest retained record is the first one returned: everything up to it was deleted, including ids at or
///   above the cursor that were never pulled — reported as a `RetentionGap` (`tracing::warn!`, and on the first
///   item / page of the stream). It may still include a few ordinary gaps, hence "up to `missing_ids()`".
///
/// If that probe fails, the gap is reported unconfirmed (`oldest_retained_id = None`). A first run (`startId = 0`)
/// never reports: it asks for whatever is retained. [`FeedClient::stream_from`] and [`FeedClient::follow`] check
/// their first page; a hand-written loop over [`FeedClient::page`] calls [`FeedClient::check_retention_gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetentionGap {
    /// The feed.
    pub feed: FeedKind,
    /// The `startId` sent.
    pub requested_start: StartId,
    /// The first `EventId` the cursor asked for (`startId`, or `startId + 1` when `StartIdInclusive = false`).
    pub first_expected_id: i64,
    /// The lowest new `EventId` the server returned.
    pub first_returned_id: i64,
    /// The oldest `EventId` the server retains (`None`: it could not be asked).
    pub oldest_retained_id: Option<i64>,
}

impl RetentionGap {
    /// How many ids are missing between the cursor and the first record returned.
    pub fn missing_ids(&self) -> u64 {
        self.first_returned_id.saturating_sub(self.first_expected_id).max(0) as u64
    }
}

impl fmt::Display for RetentionGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "feed {}: resumed at startId {} but WAP's retention already deleted everything before id {}: up to {} \
             record(s) with ids {} to {} were never pulled",
            self.feed,
            self.requested_start,
            self.first_returned_id,
            self.missing_ids(),
            self.first_expected_id,
            self.first_returned_id - 1
        )
    }
}

/// One page of a feed, ready to process: items sorted by `EventId`, duplicates and ids below the cursor dropped.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page<T> {
    /// The feed.
    pub feed: FeedKind,
    /// The `startId` sent (for a page prefetched at a predicted start, possibly below the cursor it continues;
    /// the overlap is counted in `dropped`).
    pub requested_start: StartId,
    /// The `batchSize` sent (after clamping to `1..=10000`).
    pub batch_size: u32,
    /// The new items, ascending `EventId`.
    pub items: Vec<T>,
    /// The `startId` of the next request, i.e. the cursor to persist once every item is processed: highest id + 1
    /// (`StartIdInclusive = true`) or the highest id (`false`); unchanged when no item is new.
    pub next_start: StartId,
    /// Whether the feed is caught up: the server answered `[]` (or only ids below the cursor, which would otherwise
    /// be fetched again forever). A non-empty page, short or full, is never "caught up": fetch again at once.
    pub caught_up: bool,
    /// How many elements the server returned.
    pub received: usize,
    /// How many of them were dropped (below the cursor, or a repeated id).
    pub dropped: usize,
    /// Records deleted by retention before they were pulled (see [`RetentionGap`]); set on the first page of a
    /// stream only, never by [`FeedClient::page`].
    pub retention_gap: Option<RetentionGap>,
    /// Why the page stops before its last record (see [`PageHalt`]): `items` end before the halting record and
    /// `next_start` points at it, so the next request fails with the matching error (a
    /// [`Error::MalformedRecord`] or [`Error::CursorCannotAdvance`]) instead of skipping it.
    pub halt: Option<PageHalt>,
}

/// A record of a page that cannot be read as its feed's type: a member of the wrong type (`"StartTime": 5`), a
/// missing required member. Nested meter values are not malformed (they are kept as their JSON text).
///
/// The client never skips it: the items before it are delivered, then the pull stops at it with
/// [`Error::MalformedRecord`] (the same record on every retry), so a consumer can halt, show it to an operator,
/// and — if the operator decides so — resume at [`skip_start`](Self::skip_start) to skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MalformedRecord {
    /// The feed.
    pub feed: FeedKind,
    /// Its `EventId` (an integer, or a string of one; name matched ignoring case), `None` when it cannot be read.
    /// A record without a readable id cannot be placed in the feed: the page stops at the cursor.
    pub event_id: Option<i64>,
    /// Its position in the page (0-based, as received).
    pub index: usize,
    /// The JSON path of the bad member within the page (`[3].StartTime`).
    pub path: String,
    /// What was wrong.
    pub message: String,
    /// The record's JSON text, exactly as received.
    pub raw: String,
}

impl MalformedRecord {
    /// The `startId` that continues after this record (skipping it) under `mode`; `None` when its id is unreadable
    /// or cannot be continued after (`i64::MAX` with `StartIdInclusive = true`).
    pub fn skip_start(&self, mode: StartIdMode) -> Option<StartId> {
        let id = self.event_id?;
        match mode {
            StartIdMode::Inclusive => id.checked_add(1).map(StartId::new),
            StartIdMode::Exclusive => Some(StartId::new(id)),
        }
    }
}

impl fmt::Display for MalformedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_id {
            Some(id) => write!(f, "record EventId {id} of {} does not parse", self.feed)?,
            None => write!(f, "a record of {} with no readable EventId does not parse", self.feed)?,
        }
        write!(f, ": invalid {} at {}: {}", self.feed.name(), self.path, self.message)
    }
}

/// Why a [`Page`] stops before its last record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageHalt {
    /// A record that cannot be read (see [`MalformedRecord`]).
    Malformed(MalformedRecord),
    /// A record with `EventId = i64::MAX` under `StartIdInclusive = true`: the cursor after it (`i64::MAX + 1`)
    /// cannot be sent, so the record is not delivered (its cursor would ask for it again, forever).
    CursorCannotAdvance {
        /// The id (`i64::MAX`).
        event_id: i64,
    },
}

impl PageHalt {
    /// The error a request that starts at the halting record fails with.
    pub(crate) fn to_error(&self, url: &url::Url) -> Error {
        match self {
            PageHalt::Malformed(record) => {
                Error::MalformedRecord { url: Box::new(url.clone()), record: Box::new(record.clone()) }
            }
            PageHalt::CursorCannotAdvance { event_id } => {
                Error::CursorCannotAdvance { url: Box::new(url.clone()), event_id: *event_id }
            }
        }
    }
}

impl<T: PageItem> Page<T> {
    /// Builds a page from the parsed elements (docs/protocol/usage-service.md §2.1): applies settings, sorts, drops ids below the
    /// cursor and repeated ids, computes the next cursor and the retention gap.
    pub(crate) fn assemble(
        feed: FeedKind,
        mut items: Vec<T>,
        malformed: Vec<MalformedRecord>,
        start: StartId,
        batch_size: u32,
        mode: StartIdMode,
        numeric_ordinals: bool,
    ) -> Page<T> {
        let received = items.len() + malformed.len();
        if numeric_ordinals {
            items.iter_mut().for_each(PageItem::apply_method_numeric_ordinals);
        }
        items.sort_by_key(HasEventId::event_id);
        items.retain(|i| wanted(start, mode, i.event_id()));
        items.dedup_by_key(|i| i.event_id());
        let dropped = received - malformed.len() - items.len();
        if dropped > 0 {
            tracing::info!(feed = %feed, start = start.get(), dropped, "dropped records at or below the cursor (overlapping page)");
        }
        // The page stops at the first record that cannot be delivered: one without a readable id (it cannot be
        // placed: the page stops at the cursor), the lowest malformed id at or above the cursor, or i64::MAX on an
        // inclusive cursor. Its position: `None` = before every record.
        let mut halt: Option<(Option<i64>, PageHalt)> = None;
        for record in malformed {
            let position = match record.event_id {
                Some(id) if !wanted(start, mode, id) => continue, // below the cursor: already past it
                id => id,
            };
            if halt.as_ref().is_none_or(|(at, _)| before(position, *at)) {
                halt = Some((position, PageHalt::Malformed(record)));
            }
        }
        if mode == StartIdMode::Inclusive && items.last().is_some_and(|i| i.event_id() == i64::MAX) {
            let position = Some(i64::MAX);
            if halt.as_ref().is_none_or(|(at, _)| before(position, *at)) {
                halt = Some((position, PageHalt::CursorCannotAdvance { event_id: i64::MAX }));
            }
        }
        if let Some((position, reason)) = &halt {
            items.retain(|i| position.is_some_and(|p| i.event_id() < p));
            tracing::warn!(feed = %feed, start = start.get(), delivered = items.len(), ?reason, "the page stops at a record that cannot be delivered");
        }
        let halt = halt.map(|(_, reason)| reason);
        let next_start = match items.last() {
            Some(last) => StartId::resume(Some(last.event_id()), mode),
            None => start,
        };
        let caught_up = items.is_empty() && halt.is_none();
        if caught_up && received > 0 {
            tracing::warn!(feed = %feed, start = start.get(), received, "the page held only records below the cursor; treating the feed as caught up");
        }
        Page {
            feed,
            requested_start: start,
            batch_size,
            items,
            next_start,
            caught_up,
            received,
            dropped,
            retention_gap: None,
            halt,
        }
    }

    /// The page, or the error of its halting record when it holds nothing before it (the request started at it).
    pub(crate) fn into_result(self, url: &url::Url) -> Result<Page<T>, Error> {
        match &self.halt {
            Some(halt) if self.items.is_empty() => Err(halt.to_error(url)),
            _ => Ok(self),
        }
    }
}

/// Whether halt position `a` comes before `b` (`None` = before every id).
fn before(a: Option<i64>, b: Option<i64>) -> bool {
    match (a, b) {
        (None, _) => b.is_some(),
        (Some(_), None) => false,
        (Some(a), Some(b)) => a < b,
    }
}

impl<T: HasEventId> Page<T> {
    /// The same page for a consumer whose cursor is `start` (at or above the `startId` it was requested with): drops
    /// the items below `start` (a prefetched page that overlaps the previous one).
    pub(crate) fn continue_at(mut self, start: StartId, mode: StartIdMode) -> Self {
        if start <= self.requested_start {
            return self;
        }
        let before = self.items.len();
        self.items.retain(|i| wanted(start, mode, i.event_id()));
        self.dropped += before - self.items.len();
        if self.items.is_empty() {
            self.next_start = start;
            self.caught_up = self.received == 0 && self.halt.is_none();
        }
        self
    }

    /// When the first new id lies above the first id the cursor asked for (on a resumed cursor): `(first expected,
    /// first returned)`, a retention gap to check.
    pub(crate) fn gap_candidate(&self, mode: StartIdMode) -> Option<(i64, i64)> {
        let first = self.items.first()?.event_id();
        let expected = first_expected_id(self.requested_start, mode);
        (self.requested_start != StartId::BEGINNING && first > expected).then_some((expected, first))
    }
}

impl<T> Page<T> {
    /// Number of new items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page holds no new item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Whether a record with `id` is wanted by a request at `start`: `id >= startId` (inclusive) or `id > startId`
/// (exclusive; compared directly, so `startId = i64::MAX` wants nothing instead of saturating back onto itself).
pub(crate) fn wanted(start: StartId, mode: StartIdMode, id: i64) -> bool {
    match mode {
        StartIdMode::Inclusive => id >= start.get(),
        StartIdMode::Exclusive => id > start.get(),
    }
}

/// The first `EventId` a start asks for: `startId` itself when inclusive, `startId + 1` otherwise.
pub(crate) fn first_expected_id(start: StartId, mode: StartIdMode) -> i64 {
    match mode {
        StartIdMode::Inclusive => start.get(),
        StartIdMode::Exclusive => start.get().saturating_add(1),
    }
}

/// One item of a feed stream with the cursor to persist once it is processed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FeedItem<T> {
    /// The record or event.
    pub item: T,
    /// The `startId` to resume from after this item (highest id + 1, or the id itself when
    /// `StartIdInclusive = false`).
    pub next_start: StartId,
    /// Set on the first item of a stream when the resumed cursor found ids missing (see [`RetentionGap`]).
    pub retention_gap: Option<RetentionGap>,
}

impl<T: HasEventId> FeedItem<T> {
    /// The item's `EventId`.
    pub fn event_id(&self) -> i64 {
        self.item.event_id()
    }
}

/// Typed access to one feed `F` of the Usage Service. Get one from [`UsageClient::usage`], [`UsageClient::plans`], …
pub struct FeedClient<F> {
    client: UsageClient,
    batch_size: u32,
    prefetch: Prefetch,
    _feed: PhantomData<fn() -> F>,
}

impl<F> Clone for FeedClient<F> {
    fn clone(&self) -> Self {
        FeedClient {
            client: self.client.clone(),
            batch_size: self.batch_size,
            prefetch: self.prefetch,
            _feed: PhantomData,
        }
    }
}

impl<F: Feed> fmt::Debug for FeedClient<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedClient")
            .field("feed", &F::KIND)
            .field("batch_size", &self.batch_size)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}

impl<F: Feed> FeedClient<F>
where
    F::Item: PageItem,
{
    pub(crate) fn new(client: UsageClient) -> Self {
        let batch_size = client.batch_size();
        FeedClient { client, batch_size, prefetch: Prefetch::default(), _feed: PhantomData }
    }

    fn paging(&self) -> stream::Paging {
        stream::Paging { feed: F::KIND, batch: self.batch_size, prefetch: self.prefetch }
    }

    /// How the streams request pages ahead of the consumer (default [`Prefetch::NextPage`]). At most two pages
    /// are in flight, so memory stays bounded by a few batches; requests in flight are aborted when the stream is
    /// dropped (reads delete nothing, so an unused page costs only the request).
    pub fn with_prefetch(mut self, prefetch: Prefetch) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The same feed with another `batchSize` for [`stream_from`](Self::stream_from) and
    /// [`follow`](Self::follow) (clamped to `1..=10000`).
    pub fn with_batch_size(mut self, batch: u32) -> Self {
        self.batch_size = clamp_batch_size(batch);
        self
    }

    /// The feed.
    pub fn kind(&self) -> FeedKind {
        F::KIND
    }

    /// The batch size used by the streams.
    pub fn batch_size(&self) -> u32 {
        self.batch_size
    }

    /// One request: `GET <path>?startId=<start>&batchSize=<batch>` (batch clamped to `1..=10000`), retried under the
    /// client's policy. The page's items are sorted and filtered to the cursor; `next_start` continues after them.
    pub async fn page(&self, start: StartId, batch: u32) -> Result<Page<F::Item>, Error> {
        self.client.fetch_page(F::KIND, start, batch).await
    }

    /// Checks a page fetched with [`page`](Self::page) from a persisted cursor for records deleted by retention
    /// before they were pulled (see [`RetentionGap`] for the rule; one extra request when the first id is above the
    /// cursor). Streams do this on their first page themselves.
    pub async fn check_retention_gap(&self, page: &Page<F::Item>) -> Result<Option<RetentionGap>, Error> {
        self.client.check_retention_gap(page).await
    }

    /// Every item from `start` on, paging until the feed is caught up (the server answers `[]`), each with the cursor
    /// to persist after it. The stream ends after the first error (retryable errors are retried under the policy
    /// first). [`FeedStream::pages`] gives a view by page.
    ///
    /// Dropping the stream at any point loses nothing: nothing is acknowledged to the server, and the cursor only
    /// advances with the items the consumer received.
    pub fn stream_from(&self, start: StartId) -> FeedStream<F::Item> {
        let pages = stream::pages_until_caught_up(self.client.clone(), self.paging(), start);
        FeedStream::new(F::KIND, self.batch_size, pages, start, self.client.start_id_mode())
    }

    /// Like [`stream_from`](Self::stream_from) but never ends: once caught up it waits `interval` (`None` or zero =
    /// the client's poll interval, 60 s by default, never zero) and polls again. An error is yielded as an item (after the retry
    /// policy gave up), then the stream waits `interval` and tries again from the same cursor, so a consumer that
    /// wants the spec's "retry forever" just logs errors and keeps polling.
    ///
    /// Cancel-safe: dropping it while it waits or mid-request loses nothing, since the cursor only advances with
    /// items yielded.
    pub fn follow(&self, start: StartId, interval: impl Into<Option<Duration>>) -> FeedStream<F::Item> {
        let interval = interval.into().filter(|i| !i.is_zero()).unwrap_or_else(|| self.client.poll_interval());
        let pages = stream::pages_forever(self.client.clone(), self.paging(), start, interval);
        FeedStream::new(F::KIND, self.batch_size, pages, start, self.client.start_id_mode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wap_types::{AdminSubscription, EventMethod, NotificationState};

    fn record(id: i64) -> UsageRecord {
        UsageRecord { event_id: id, subscription_id: "s".into(), ..Default::default() }
    }

    fn ids<T: HasEventId>(p: &Page<T>) -> Vec<i64> {
        p.items.iter().map(HasEventId::event_id).collect()
    }

    #[test]
    fn sorts_drops_and_continues() {
        let items = vec![record(9), record(5), record(7), record(3), record(7)];
        let p = Page::assemble(FeedKind::Usage, items, vec![], StartId::new(5), 100, StartIdMode::Inclusive, false);
        assert_eq!(ids(&p), [5, 7, 9]);
        assert_eq!((p.received, p.dropped), (5, 2));
        assert_eq!(p.next_start, StartId::new(10));
        assert!(!p.caught_up);
        assert_eq!(p.retention_gap, None);
    }

    #[test]
    fn exclusive_mode_continues_at_the_highest_id() {
        let items = vec![record(5), record(6)];
        let p = Page::assemble(FeedKind::Usage, items, vec![], StartId::new(5), 100, StartIdMode::Exclusive, false);
        assert_eq!(ids(&p), [6], "startId 5 exclusive wants ids > 5");
        assert_eq!(p.next_start, StartId::new(6));
    }

    #[test]
    fn empty_and_stale_pages_are_caught_up() {
        let p = Page::<UsageRecord>::assemble(
            FeedKind::Usage,
            vec![],
            vec![],
            StartId::new(42),
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert!(p.caught_up && p.is_empty());
        assert_eq!(p.next_start, StartId::new(42));
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(1)],
            vec![],
            StartId::new(42),
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert!(p.caught_up && p.is_empty());
        assert_eq!((p.received, p.dropped, p.next_start), (1, 1, StartId::new(42)));
    }

    #[test]
    fn gap_candidates_only_when_resuming_above_zero() {
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(800)],
            vec![],
            StartId::new(501),
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert_eq!(p.gap_candidate(StartIdMode::Inclusive), Some((501, 800)));
        assert_eq!(p.retention_gap, None, "never set by a single page");
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(800)],
            vec![],
            StartId::BEGINNING,
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert_eq!(p.gap_candidate(StartIdMode::Inclusive), None);
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(502)],
            vec![],
            StartId::new(501),
            100,
            StartIdMode::Exclusive,
            false,
        );
        assert_eq!(p.gap_candidate(StartIdMode::Exclusive), None, "exclusive startId 501 expects 502 first");
        let gap = RetentionGap {
            feed: FeedKind::Usage,
            requested_start: StartId::new(501),
            first_expected_id: 501,
            first_returned_id: 800,
            oldest_retained_id: Some(800),
        };
        assert_eq!(gap.missing_ids(), 299);
        assert!(gap.to_string().contains("up to 299 record(s) with ids 501 to 799"), "{gap}");
    }

    fn bad(id: Option<i64>, index: usize) -> MalformedRecord {
        MalformedRecord {
            feed: FeedKind::Usage,
            event_id: id,
            index,
            path: format!("[{index}].StartTime"),
            message: "invalid type".into(),
            raw: "{}".into(),
        }
    }

    fn url() -> url::Url {
        url::Url::parse("http://wap.test/usage").unwrap()
    }

    #[test]
    fn a_malformed_record_stops_the_page_at_its_position() {
        let items = vec![record(6), record(3), record(4), record(9)];
        let malformed = vec![bad(Some(7), 3), bad(Some(5), 2), bad(Some(1), 0)];
        let p = Page::assemble(FeedKind::Usage, items, malformed, StartId::new(3), 100, StartIdMode::Inclusive, false);
        assert_eq!(ids(&p), [3, 4], "the lowest malformed id at or above the cursor (5) stops the page");
        assert_eq!(p.next_start, StartId::new(5));
        assert!(!p.caught_up);
        assert_eq!(p.received, 7);
        assert!(matches!(&p.halt, Some(PageHalt::Malformed(m)) if m.event_id == Some(5)));
        let p = p.into_result(&url()).unwrap();
        assert_eq!(p.len(), 2);
        // the request that starts at it fails with it
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(6)],
            vec![bad(Some(5), 0)],
            StartId::new(5),
            100,
            StartIdMode::Inclusive,
            false,
        );
        match p.into_result(&url()) {
            Err(Error::MalformedRecord { record, .. }) => {
                assert_eq!(record.skip_start(StartIdMode::Inclusive), Some(StartId::new(6)));
                assert_eq!(record.skip_start(StartIdMode::Exclusive), Some(StartId::new(5)));
            }
            other => panic!("{other:?}"),
        }
        // no readable id: nothing can be placed before it
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(1), record(2)],
            vec![bad(None, 2)],
            StartId::BEGINNING,
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert!(p.items.is_empty() && !p.caught_up);
        assert!(p.into_result(&url()).is_err());
        // below the cursor (exclusive 5 wants ids above 5): already past it
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(6)],
            vec![bad(Some(5), 0)],
            StartId::new(5),
            100,
            StartIdMode::Exclusive,
            false,
        );
        assert_eq!((ids(&p), p.halt), (vec![6], None));
    }

    #[test]
    fn i64_max_stops_an_inclusive_cursor_and_ends_an_exclusive_one() {
        let max = i64::MAX;
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(max), record(max - 1)],
            vec![],
            StartId::new(max - 1),
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert_eq!(ids(&p), [max - 1]);
        assert_eq!(p.halt, Some(PageHalt::CursorCannotAdvance { event_id: max }));
        assert_eq!(p.next_start, StartId::new(max));
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(max)],
            vec![],
            StartId::new(max),
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert!(matches!(p.into_result(&url()), Err(Error::CursorCannotAdvance { event_id, .. }) if event_id == max));
        // exclusive: startId i64::MAX wants ids above it, i.e. none (no saturation back onto MAX)
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(max)],
            vec![],
            StartId::new(max),
            100,
            StartIdMode::Exclusive,
            false,
        );
        assert!(p.caught_up && p.is_empty() && p.halt.is_none());
        let p = Page::assemble(
            FeedKind::Usage,
            vec![record(max)],
            vec![],
            StartId::new(max - 1),
            100,
            StartIdMode::Exclusive,
            false,
        );
        assert_eq!((ids(&p), p.next_start), (vec![max], StartId::new(max)));
    }

    #[test]
    fn numeric_ordinals_are_applied_only_when_enabled() {
        let ev = |id, m: &str| {
            UsageEvent::new(id, NotificationState::Acknowledged, EventMethod::parse(m), AdminSubscription::default())
        };
        let make = || vec![ev(1, "1"), ev(2, "2"), ev(3, "3"), ev(4, "0"), ev(5, "7")];
        let p = Page::assemble(
            FeedKind::Subscriptions,
            make(),
            vec![],
            StartId::BEGINNING,
            100,
            StartIdMode::Inclusive,
            true,
        );
        let methods: Vec<_> = p.items.iter().map(|e| e.method.clone()).collect();
        assert_eq!(
            methods,
            [
                EventMethod::Put,
                EventMethod::Patch,
                EventMethod::Delete,
                EventMethod::Post,
                EventMethod::Other("7".into())
            ]
        );
        let p = Page::assemble(
            FeedKind::Subscriptions,
            make(),
            vec![],
            StartId::BEGINNING,
            100,
            StartIdMode::Inclusive,
            false,
        );
        assert_eq!(p.items[0].method, EventMethod::Other("1".into()));
    }
}
