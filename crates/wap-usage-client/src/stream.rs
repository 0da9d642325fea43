//! [`FeedStream`] (items with their cursor) and [`PageStream`] (whole pages): the paging loops of a feed.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use wap_types::{FeedKind, StartId, StartIdMode};

use crate::client::UsageClient;
use crate::error::Error;
use crate::feed::{FeedItem, Page, PageItem, RetentionGap};

/// A stream of whole [`Page`]s of one feed. Every page fetched is yielded, the last (`caught_up`) one of a
/// `stream_from` included, so a consumer can record when it last polled successfully.
pub struct PageStream<T> {
    inner: BoxStream<'static, Result<Page<T>, Error>>,
}

impl<T> fmt::Debug for PageStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageStream").finish_non_exhaustive()
    }
}

impl<T> Stream for PageStream<T> {
    type Item = Result<Page<T>, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// A stream of the items of one feed, each with the cursor to persist after it
/// ([`FeedClient::stream_from`](crate::FeedClient::stream_from), [`FeedClient::follow`](crate::FeedClient::follow)).
pub struct FeedStream<T> {
    feed: FeedKind,
    batch_size: u32,
    pages: PageStream<T>,
    buffered: VecDeque<T>,
    page_next_start: StartId,
    pending_gap: Option<RetentionGap>,
    cursor: StartId,
    mode: StartIdMode,
}

impl<T> fmt::Debug for FeedStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedStream")
            .field("feed", &self.feed)
            .field("cursor", &self.cursor)
            .field("buffered", &self.buffered.len())
            .finish_non_exhaustive()
    }
}

impl<T: PageItem> FeedStream<T> {
    pub(crate) fn new(
        feed: FeedKind,
        batch_size: u32,
        pages: PageStream<T>,
        start: StartId,
        mode: StartIdMode,
    ) -> Self {
        FeedStream {
            feed,
            batch_size,
            pages,
            buffered: VecDeque::new(),
            page_next_start: start,
            pending_gap: None,
            cursor: start,
            mode,
        }
    }

    /// The cursor after the last item yielded (the start given, before the first): what to persist once every
    /// item received so far is processed.
    pub fn cursor(&self) -> StartId {
        self.cursor
    }

    /// The same pull by page. Items of the current page not yet yielded come first, as a page of their own.
    pub fn pages(mut self) -> PageStream<T> {
        if self.buffered.is_empty() {
            return self.pages;
        }
        let items: Vec<T> = self.buffered.drain(..).collect();
        let first = items.first().map(|i| i.event_id()).unwrap_or_default();
        let rest = Page {
            feed: self.feed,
            requested_start: self.cursor,
            batch_size: self.batch_size,
            received: items.len(),
            items,
            next_start: self.page_next_start,
            caught_up: false,
            dropped: 0,
            retention_gap: self.pending_gap.take().filter(|g| g.first_returned_id == first),
            halt: None,
        };
        PageStream { inner: stream::once(async move { Ok(rest) }).chain(self.pages).boxed() }
    }
}

impl<T: PageItem> Stream for FeedStream<T> {
    type Item = Result<FeedItem<T>, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.buffered.pop_front() {
                let next_start = StartId::resume(Some(item.event_id()), this.mode);
                this.cursor = next_start;
                return Poll::Ready(Some(Ok(FeedItem { item, next_start, retention_gap: this.pending_gap.take() })));
            }
            match ready!(this.pages.poll_next_unpin(cx)) {
                Some(Ok(page)) => {
                    this.page_next_start = page.next_start;
                    this.pending_gap = page.retention_gap;
                    this.buffered = page.items.into();
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }
}

// Items are never pinned: they are moved out of the buffer by value.
impl<T> Unpin for FeedStream<T> {}

/// Checks the first page of a pull for records deleted by retention (see [`RetentionGap`]) and logs a finding.
/// A failed check reports the gap unconfirmed.
async fn check_first_page<T: PageItem>(client: &UsageClient, page: &mut Page<T>) {
    let gap = match client.check_retention_gap(page).await {
        Ok(gap) => gap,
        Err(e) => {
            tracing::warn!(feed = %page.feed, error = %e, "could not ask for the oldest retained record");
            page.gap_candidate(client.start_id_mode()).map(|(expected, first)| RetentionGap {
                feed: page.feed,
                requested_start: page.requested_start,
                first_expected_id: expected,
                first_returned_id: first,
                oldest_retained_id: None,
            })
        }
    };
    if let Some(gap) = &gap {
        tracing::warn!(
            feed = %gap.feed,
            start = gap.requested_start.get(),
            first_returned = gap.first_returned_id,
            missing = gap.missing_ids(),
            "possible data loss: {gap}"
        );
    }
    page.retention_gap = gap;
}

/// How a stream requests pages ahead of its consumer.
///
/// Paging is sequential by nature: the `startId` of the next page is only known once the current page is parsed.
/// Prefetching hides that latency without ever skipping a record: a page is used only if it was requested at or
/// below the cursor, and records below the cursor are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Prefetch {
    /// One request at a time, sent when the consumer needs the next page.
    Off,
    /// The next page is requested as soon as the current page's body has arrived, while it is parsed. Sends
    /// exactly the requests of [`Off`](Prefetch::Off) (plus, when the stream is dropped, at most one whose answer
    /// is not used). The default.
    #[default]
    NextPage,
    /// [`NextPage`](Prefetch::NextPage), plus the page after it at a start predicted from the ids the last full
    /// page covered (minus 2 % and one standard deviation), so the server prepares one page while the client parses
    /// another: worth it when each request has a long latency (a remote WAP). A prediction above the cursor is
    /// discarded (it would skip ids) and the page requested again; one below it only repeats a few records, which
    /// are dropped. At most two pages are in flight.
    Speculative,
}

/// A page being fetched in a task. Aborted when dropped: a dropped stream leaves no request behind.
struct InFlight<T> {
    start: StartId,
    speculative: bool,
    /// The `startId` after this page, announced as soon as its body arrived (before the full parse).
    next_start: Option<tokio::sync::oneshot::Receiver<StartId>>,
    task: tokio::task::JoinHandle<Result<Page<T>, Error>>,
}

impl<T> Drop for InFlight<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the paging loops need to know.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paging {
    pub(crate) feed: FeedKind,
    pub(crate) batch: u32,
    pub(crate) prefetch: Prefetch,
}

/// The pages requested ahead of the consumer, in `startId` order.
struct Pipeline<T> {
    paging: Paging,
    in_flight: VecDeque<InFlight<T>>,
}

impl<T: PageItem> Pipeline<T> {
    fn new(paging: Paging) -> Self {
        Pipeline { paging, in_flight: VecDeque::new() }
    }

    /// The page that continues at `start`: a prefetched one if it was requested at or below `start` (re-filtered
    /// to `start`), otherwise a fresh request.
    async fn next(&mut self, client: &UsageClient, start: StartId) -> Result<Page<T>, Error> {
        if self.paging.prefetch == Prefetch::Off || tokio::runtime::Handle::try_current().is_err() {
            return client.fetch_page::<T>(self.paging.feed, start, self.paging.batch).await;
        }
        if self.in_flight.is_empty() {
            self.spawn(client, start, false);
        }
        while let Some(mut ahead) = self.in_flight.pop_front() {
            if ahead.start > start {
                // requested above the cursor: using it would skip ids
                tracing::debug!(feed = %self.paging.feed, predicted = ahead.start.get(), start = start.get(), "speculative page discarded");
                self.in_flight.clear();
                break;
            }
            // The next request goes out as soon as this page's body is in, while this page is parsed: the same
            // requests as one at a time, with the server's work overlapping the client's.
            if self.in_flight.is_empty() {
                if let Some(announced) = ahead.next_start.take() {
                    if let Ok(next) = announced.await {
                        self.spawn(client, next, false);
                    }
                }
            }
            let page = match (&mut ahead.task).await {
                Ok(result) => result?,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => break, // cancelled (runtime shutting down): fetch directly
            };
            let page = page.continue_at(start, client.start_id_mode());
            if ahead.speculative && page.is_empty() && page.received > 0 {
                continue; // everything on it was below the cursor: not the end of the feed
            }
            return Ok(page);
        }
        client.fetch_page::<T>(self.paging.feed, start, self.paging.batch).await
    }

    /// After `page` was handed to the consumer: requests what follows it.
    fn refill(&mut self, client: &UsageClient, page: &Page<T>) {
        if page.caught_up || self.paging.prefetch == Prefetch::Off || tokio::runtime::Handle::try_current().is_err() {
            self.in_flight.clear();
            return;
        }
        if self.in_flight.front().is_some_and(|f| f.start > page.next_start) {
            // predicted too far: drop it now and request the page that is certainly needed
            self.in_flight.clear();
        }
        if self.in_flight.is_empty() {
            self.spawn(client, page.next_start, false);
        }
        let full = page.received >= page.batch_size as usize;
        if self.paging.prefetch == Prefetch::Speculative && self.in_flight.len() < 2 && full {
            if let (Some(last), Some(back)) = (page.items.last(), self.in_flight.back()) {
                // the ids one request covered, from its own start (overlap with the previous page included)
                let span = last.event_id().saturating_sub(page.requested_start.get()).saturating_add(1);
                // a little below the prediction (2 % + one standard deviation of random gaps): a few repeated
                // records are cheaper than a discarded request
                let step = span - span / 50 - span.max(0).isqrt();
                if step > 0 {
                    let predicted = StartId::new(back.start.get().saturating_add(step));
                    self.spawn(client, predicted, true);
                }
            }
        }
    }

    fn spawn(&mut self, client: &UsageClient, start: StartId, speculative: bool) {
        let (client, feed, batch) = (client.clone(), self.paging.feed, self.paging.batch);
        let (announce, next_start) = tokio::sync::oneshot::channel();
        let task =
            tokio::spawn(async move { client.fetch_page_announcing_next::<T>(feed, start, batch, announce).await });
        self.in_flight.push_back(InFlight { start, speculative, next_start: Some(next_start), task });
    }

    fn clear(&mut self) {
        self.in_flight.clear();
    }
}

/// State of the `stream_from` loop.
struct UntilCaughtUp<T> {
    client: UsageClient,
    start: StartId,
    first: bool,
    pipeline: Pipeline<T>,
}

/// Pages from `start` until the server answers `[]`; ends after an error.
pub(crate) fn pages_until_caught_up<T: PageItem>(client: UsageClient, paging: Paging, start: StartId) -> PageStream<T> {
    let state = UntilCaughtUp { client, start, first: true, pipeline: Pipeline::new(paging) };
    let inner = stream::unfold(Some(state), move |state| async move {
        let UntilCaughtUp { client, start, first, mut pipeline } = state?;
        match pipeline.next(&client, start).await {
            Ok(mut page) => {
                if first {
                    check_first_page(&client, &mut page).await;
                }
                pipeline.refill(&client, &page);
                let next =
                    (!page.caught_up).then(|| UntilCaughtUp { client, start: page.next_start, first: false, pipeline });
                Some((Ok(page), next))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    // fused: polling again after the end keeps answering `None`
    PageStream { inner: inner.fuse().boxed() }
}

/// State of the `follow` loop.
struct Forever<T> {
    client: UsageClient,
    start: StartId,
    first: bool,
    wait: Option<Duration>,
    pipeline: Pipeline<T>,
}

/// Pages from `start` forever: waits `interval` after a caught-up page or an error.
pub(crate) fn pages_forever<T: PageItem>(
    client: UsageClient,
    paging: Paging,
    start: StartId,
    interval: Duration,
) -> PageStream<T> {
    let state = Forever { client, start, first: true, wait: None, pipeline: Pipeline::new(paging) };
    let inner = stream::unfold(state, move |Forever { client, start, first, wait, mut pipeline }| async move {
        if let Some(wait) = wait {
            client.clock().sleep(wait).await;
        }
        match pipeline.next(&client, start).await {
            Ok(mut page) => {
                if first {
                    check_first_page(&client, &mut page).await;
                }
                pipeline.refill(&client, &page);
                let wait = page.caught_up.then_some(interval);
                let next = Forever { client, start: page.next_start, first: false, wait, pipeline };
                Some((Ok(page), next))
            }
            Err(e) => {
                tracing::warn!(feed = %paging.feed, start = start.get(), retry_in_ms = interval.as_millis() as u64, error = %e, "poll failed; polling again later");
                pipeline.clear();
                Some((Err(e), Forever { client, start, first, wait: Some(interval), pipeline }))
            }
        }
    });
    // fused: polling again after the end keeps answering `None`
    PageStream { inner: inner.fuse().boxed() }
}
