//! [`UsageClient`]: the connection pool, authentication, timeouts and retries of every Usage Service request.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use url::Url;
use wap_types::cursor::clamp_batch_size;
use wap_types::{
    AddonsFeed, BasicCredentials, Feed, FeedKind, HasEventId, PlanAddonsFeed, PlanServicesFeed, PlansFeed, StartId,
    StartIdMode, SubscriptionAddonsFeed, SubscriptionsFeed, UsageFeed,
};

use crate::builder::UsageClientBuilder;
use crate::clock::Clock;
use crate::error::{body_snippet, DecodeErrorKind, Error, TransportErrorKind};
use crate::feed::{first_expected_id, FeedClient, MalformedRecord, Page, PageItem, RetentionGap};
use crate::retry::RetryPolicy;
use crate::retry_after::RetryAfter;

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

type HttpClient = hyper_util::client::legacy::Client<Connector, Empty<Bytes>>;

/// How much of an error body is read (for the snippet).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How much of an error body is kept in [`Error::Status`].
const SNIPPET_LEN: usize = 512;

/// A client of the WAP Usage Service (port 30022): typed access to its seven feeds.
///
/// Cheap to clone (an `Arc` inside); clones share the keep-alive connection pool. Build one with
/// [`UsageClient::builder`]. The password never appears in `Debug` output, logs or errors.
#[derive(Clone)]
pub struct UsageClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    base_url: Url,
    credentials: BasicCredentials,
    auth_header: HeaderValue,
    user_agent: HeaderValue,
    batch_size: u32,
    start_id_mode: StartIdMode,
    method_numeric_ordinals: bool,
    timeout: Duration,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    max_body_bytes: usize,
}

impl fmt::Debug for UsageClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("UsageClient")
            .field("base_url", &i.base_url.as_str())
            .field("credentials", &i.credentials)
            .field("batch_size", &i.batch_size)
            .field("start_id_mode", &i.start_id_mode)
            .field("method_numeric_ordinals", &i.method_numeric_ordinals)
            .field("timeout", &i.timeout)
            .field("retry", &i.retry)
            .field("poll_interval", &i.poll_interval)
            .finish_non_exhaustive()
    }
}

/// Everything the builder hands over.
pub(crate) struct ClientParts {
    pub(crate) base_url: Url,
    pub(crate) credentials: BasicCredentials,
    pub(crate) batch_size: u32,
    pub(crate) start_id_mode: StartIdMode,
    pub(crate) method_numeric_ordinals: bool,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) user_agent: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) poll_interval: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) pool_idle_timeout: Duration,
    pub(crate) pool_max_idle_per_host: usize,
    #[cfg(feature = "rustls")]
    pub(crate) tls: crate::tls::TlsOptions,
}

impl UsageClient {
    /// A builder: set at least [`base_url`](UsageClientBuilder::base_url) and
    /// [`credentials`](UsageClientBuilder::credentials).
    pub fn builder() -> UsageClientBuilder {
        UsageClientBuilder::new()
    }

    pub(crate) fn from_parts(p: ClientParts) -> Result<UsageClient, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(p.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));

        #[cfg(feature = "rustls")]
        let connector: Connector = {
            let needs_tls = p.base_url.scheme() == "https";
            // Certificates are loaded only when they can be used (an http:// endpoint needs none).
            let config = if needs_tls { p.tls.client_config()? } else { crate::tls::TlsOptions::unused_config()? };
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "rustls"))]
        let connector: Connector = http;

        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(p.pool_idle_timeout)
            .pool_max_idle_per_host(p.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);

        let mut auth_header = HeaderValue::from_str(&p.credentials.header_value())
            .map_err(|_| Error::Config("the credentials cannot be sent in an HTTP header".into()))?;
        auth_header.set_sensitive(true);
        let user_agent = HeaderValue::from_str(&p.user_agent)
            .map_err(|_| Error::Config(format!("invalid User-Agent {:?}", p.user_agent)))?;

        Ok(UsageClient {
            inner: Arc::new(Inner {
                http: client,
                base_url: p.base_url,
                credentials: p.credentials,
                auth_header,
                user_agent,
                batch_size: p.batch_size,
                start_id_mode: p.start_id_mode,
                method_numeric_ordinals: p.method_numeric_ordinals,
                timeout: p.timeout,
                retry: p.retry,
                clock: p.clock,
                poll_interval: p.poll_interval,
                max_body_bytes: p.max_body_bytes,
            }),
        })
    }

    /// `/usage`: usage records.
    pub fn usage(&self) -> FeedClient<UsageFeed> {
        self.feed()
    }

    /// `/billing/plans`: plan events.
    pub fn plans(&self) -> FeedClient<PlansFeed> {
        self.feed()
    }

    /// `/billing/addons`: add-on events.
    pub fn addons(&self) -> FeedClient<AddonsFeed> {
        self.feed()
    }

    /// `/billing/planAddons`: plan ↔ add-on link events.
    pub fn plan_addons(&self) -> FeedClient<PlanAddonsFeed> {
        self.feed()
    }

    /// `/billing/planServices`: plan ↔ resource provider link events.
    pub fn plan_services(&self) -> FeedClient<PlanServicesFeed> {
        self.feed()
    }

    /// `/billing/subscriptions`: subscription events.
    pub fn subscriptions(&self) -> FeedClient<SubscriptionsFeed> {
        self.feed()
    }

    /// `/billing/subscriptionAddons`: subscription add-on events.
    pub fn subscription_addons(&self) -> FeedClient<SubscriptionAddonsFeed> {
        self.feed()
    }

    /// Any feed by its type.
    pub fn feed<F: Feed>(&self) -> FeedClient<F>
    where
        F::Item: PageItem,
    {
        FeedClient::new(self.clone())
    }

    /// The base URL (without credentials).
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The user name sent (the password is not readable back).
    pub fn username(&self) -> &str {
        &self.inner.credentials.username
    }

    /// The default `batchSize` (`UsageServiceBatchSize`).
    pub fn batch_size(&self) -> u32 {
        self.inner.batch_size
    }

    /// How `startId` is read by the server (`StartIdInclusive`).
    pub fn start_id_mode(&self) -> StartIdMode {
        self.inner.start_id_mode
    }

    /// Whether `"1"`/`"2"`/`"3"` methods are read as Put/Patch/Delete (`MethodNumericOrdinals`).
    pub fn method_numeric_ordinals(&self) -> bool {
        self.inner.method_numeric_ordinals
    }

    /// The timeout of one request attempt.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The pause of `follow` once caught up.
    pub fn poll_interval(&self) -> Duration {
        self.inner.poll_interval
    }

    /// The clock of back-off, timeouts and polling.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The `startId` to request for a feed whose last committed `EventId` is `committed` (`None` = never
    /// committed: `startId = 0`), under this client's `StartIdInclusive` setting.
    pub fn resume_start(&self, committed: Option<i64>) -> StartId {
        StartId::resume(committed, self.inner.start_id_mode)
    }

    /// The URL of one page request: `<base>/<feed path>?startId=<start>&batchSize=<batch>` (batch clamped).
    pub fn page_url(&self, feed: FeedKind, start: StartId, batch: u32) -> Url {
        let mut url = self.inner.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{}", feed.path()));
        url.set_query(Some(&format!("startId={}&batchSize={}", start.get(), clamp_batch_size(batch))));
        url
    }

    /// One page's body exactly as received (status `200`, or `204` as an empty body; retried under the policy),
    /// without parsing. Any other status, another 2xx included, is an [`Error::Status`].
    pub async fn raw_page(&self, feed: FeedKind, start: StartId, batch: u32) -> Result<Bytes, Error> {
        let url = self.page_url(feed, start, batch);
        self.with_retry(&url, Ok).await
    }

    /// One typed page: fetched (with retries), parsed, sorted, filtered to the cursor.
    pub(crate) async fn fetch_page<T: PageItem>(
        &self,
        feed: FeedKind,
        start: StartId,
        batch: u32,
    ) -> Result<Page<T>, Error> {
        let batch = clamp_batch_size(batch);
        let url = self.page_url(feed, start, batch);
        let (items, malformed) = self.with_retry(&url, |body| parse_page_entries::<T>(feed, &body, &url)).await?;
        let mode = self.inner.start_id_mode;
        Page::assemble(feed, items, malformed, start, batch, mode, self.inner.method_numeric_ordinals).into_result(&url)
    }

    /// [`fetch_page`](Self::fetch_page), and as soon as the body has arrived (before the full typed parse) sends
    /// the `startId` that continues after it on `next_start`, so the next request can be on its way while this
    /// page is parsed. Nothing is sent for a page with no record at or above the cursor (caught up) or a body that
    /// is not a page (the full parse reports it). The value is what [`Page::next_start`] will be.
    pub(crate) async fn fetch_page_announcing_next<T: PageItem>(
        &self,
        feed: FeedKind,
        start: StartId,
        batch: u32,
        next_start: tokio::sync::oneshot::Sender<StartId>,
    ) -> Result<Page<T>, Error> {
        let batch = clamp_batch_size(batch);
        let url = self.page_url(feed, start, batch);
        let mode = self.inner.start_id_mode;
        let mut announce = Some(next_start);
        let url = &url;
        let (items, malformed) = self
            .with_retry_async(url, |body| {
                let mut announced = false;
                if let Some(max) = highest_event_id(&body).filter(|&max| max >= first_expected_id(start, mode)) {
                    if let Some(tx) = announce.take() {
                        announced = tx.send(StartId::resume(Some(max), mode)).is_ok();
                    }
                }
                async move {
                    if announced {
                        // The announcement woke the stream on this worker thread, in a slot other workers cannot
                        // take from: let it send the next request before this page is parsed here.
                        tokio::task::yield_now().await;
                    }
                    parse_page_cooperatively::<T>(feed, &body, url).await
                }
            })
            .await?;
        Page::assemble(feed, items, malformed, start, batch, mode, self.inner.method_numeric_ordinals).into_result(url)
    }

    /// Confirms a page's retention-gap candidate by asking for the oldest retained record (see [`RetentionGap`]).
    pub(crate) async fn check_retention_gap<T: PageItem>(&self, page: &Page<T>) -> Result<Option<RetentionGap>, Error> {
        let Some((expected, first)) = page.gap_candidate(self.inner.start_id_mode) else { return Ok(None) };
        let oldest: Page<T> = self.fetch_page(page.feed, StartId::BEGINNING, 1).await?;
        let oldest = oldest.items.first().map(HasEventId::event_id);
        if matches!(oldest, Some(o) if o < expected) {
            tracing::debug!(feed = %page.feed, expected, first, "id gap after the cursor; older records are retained: not a purge");
            return Ok(None);
        }
        Ok(Some(RetentionGap {
            feed: page.feed,
            requested_start: page.requested_start,
            first_expected_id: expected,
            first_returned_id: first,
            oldest_retained_id: Some(oldest.unwrap_or(first)),
        }))
    }

    /// Runs one request (and `decode`) under the retry policy.
    async fn with_retry<R>(&self, url: &Url, mut decode: impl FnMut(Bytes) -> Result<R, Error>) -> Result<R, Error> {
        self.with_retry_async(url, |body| std::future::ready(decode(body))).await
    }

    /// [`Self::with_retry`] with an asynchronous `decode`.
    async fn with_retry_async<R, F, Fut>(&self, url: &Url, mut decode: F) -> Result<R, Error>
    where
        F: FnMut(Bytes) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let mut schedule = self.inner.retry.start(self.inner.clock.clone());
        loop {
            let result = match self.get_once(url).await {
                Ok(body) => decode(body).await,
                Err(e) => Err(e),
            };
            let error = match result {
                Ok(r) => {
                    if schedule.failures() > 0 {
                        tracing::info!(url = %url, failed_attempts = schedule.failures(), "request succeeded after retrying");
                    }
                    return Ok(r);
                }
                Err(e) => e,
            };
            let delay = schedule.next_delay(&error);
            let attempt = schedule.failures();
            if error.is_auth_error() {
                tracing::error!(attempt, error = %error, "Usage Service refused the credentials (configuration error)");
            }
            match delay {
                Some(d) => {
                    tracing::warn!(attempt, retry_in_ms = d.as_millis() as u64, error = %error, "Usage Service request failed; retrying");
                    self.inner.clock.sleep(d).await;
                }
                None => {
                    tracing::warn!(attempt, retryable = error.is_retryable(), error = %error, "Usage Service request failed");
                    return Err(error);
                }
            }
        }
    }

    /// One attempt: send, read the head and the whole body, within the timeout.
    async fn get_once(&self, url: &Url) -> Result<Bytes, Error> {
        let timeout = self.inner.timeout;
        let sleep = self.inner.clock.sleep(timeout);
        tokio::select! {
            result = self.send_and_read(url) => result,
            () = sleep => Err(Error::Timeout { url: Box::new(url.clone()), after: timeout }),
        }
    }

    async fn send_and_read(&self, url: &Url) -> Result<Bytes, Error> {
        let uri: http::Uri =
            url.as_str().parse().map_err(|e| Error::Config(format!("request URL {url} is not a valid URI: {e}")))?;
        let request = http::Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, self.inner.auth_header.clone())
            .header(USER_AGENT, self.inner.user_agent.clone())
            .body(Empty::<Bytes>::new())
            .map_err(|e| Error::Config(format!("cannot build the request: {e}")))?;
        let started = self.inner.clock.now();
        let response = self.inner.http.request(request).await.map_err(|e| classify_request_error(url, e))?;
        let (parts, body) = response.into_parts();
        let status = parts.status.as_u16();
        // Only 200 (a page) and 204 (an empty page) are answers of the Usage Service; any other status, another 2xx
        // included (a proxy's `202 Accepted` with an empty body is not "caught up"), is an error with its status.
        if status == 200 || status == 204 {
            let limit = self.inner.max_body_bytes;
            let body = Limited::new(body, limit).collect().await.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Error::BodyTooLarge { url: Box::new(url.clone()), limit }
                } else {
                    body_error(url, e)
                }
            })?;
            let bytes = body.to_bytes();
            tracing::debug!(url = %url, status, bytes = bytes.len(), elapsed_ms = self.inner.clock.now().saturating_duration_since(started).as_millis() as u64, "page received");
            Ok(bytes)
        } else {
            let retry_after = parts.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(RetryAfter::parse);
            let snippet = match Limited::new(body, ERROR_BODY_LIMIT).collect().await {
                Ok(b) => body_snippet(&b.to_bytes(), SNIPPET_LEN),
                Err(_) => String::new(),
            };
            Err(Error::Status { status, url: Box::new(url.clone()), body_snippet: snippet, retry_after })
        }
    }
}

/// Parses a page, classifying a failure as truncated, not a page, or an element of the wrong type.
/// The highest `EventId` on a page body, read without parsing the records (`None` if the body is not a page).
fn highest_event_id(body: &[u8]) -> Option<i64> {
    struct EventIdOnly(Option<i64>);
    impl<'de> serde::Deserialize<'de> for EventIdOnly {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = EventIdOnly;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a record")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EventIdOnly, A::Error> {
                    let mut id = None;
                    while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                        if key.eq_ignore_ascii_case("EventId") {
                            id = Some(map.next_value::<i64>()?);
                        } else {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    Ok(EventIdOnly(id))
                }
            }
            d.deserialize_map(V)
        }
    }
    let records: Vec<EventIdOnly> = serde_json::from_slice(wap_types::json::strip_bom(body)).ok()?;
    records.iter().filter_map(|r| r.0).max()
}

/// While streaming, a page is parsed in slices of about this many bytes (some 100 usage records, 100-200 µs),
/// yielding to the runtime between slices: a large page takes milliseconds to parse, and holding the worker thread
/// that long would also hold back the I/O the next page waits for (the runtime polls for I/O between tasks).
const PARSE_SLICE_BYTES: usize = 48 * 1024;

/// [`parse_page`], yielding to the runtime every [`PARSE_SLICE_BYTES`]. Elements are read one by one from the
/// array with their own `Deserialize`, as `parse_page` reads them; anything unusual (not an array, invalid UTF-8,
/// a bad element) is handed to `parse_page`, whose answer (and error) is then the result.
async fn parse_page_cooperatively<T: serde::de::DeserializeOwned>(
    feed: FeedKind,
    body: &[u8],
    url: &Url,
) -> Result<(Vec<T>, Vec<MalformedRecord>), Error> {
    let cursor = (body.len() >= 2 * PARSE_SLICE_BYTES).then(|| wap_types::json::JsonCursor::new(body)).flatten();
    let Some(mut c) = cursor else { return parse_page_entries(feed, body, url) };
    if !c.eat(b'[') {
        return parse_page_entries(feed, body, url);
    }
    let mut items = Vec::new();
    let mut slice_start = c.offset();
    if !c.eat(b']') {
        loop {
            match c.value::<T>() {
                Some((item, _)) => items.push(item),
                None => return parse_page_entries(feed, body, url),
            }
            if c.eat(b']') {
                break;
            }
            if !c.eat(b',') {
                return parse_page_entries(feed, body, url);
            }
            if c.offset() - slice_start >= PARSE_SLICE_BYTES {
                tokio::task::yield_now().await;
                slice_start = c.offset();
            }
        }
    }
    if !c.at_end() {
        return parse_page_entries(feed, body, url); // trailing characters
    }
    Ok((items, Vec::new()))
}

/// [`parse_page`], except that elements which are JSON but not of type `T` do not fail the page: each becomes a
/// [`MalformedRecord`] (its id when readable, the JSON path of the bad member, its raw text). A body that is not
/// a JSON array, or is truncated, still fails as a whole.
pub(crate) fn parse_page_entries<T: serde::de::DeserializeOwned>(
    feed: FeedKind,
    body: &[u8],
    url: &Url,
) -> Result<(Vec<T>, Vec<MalformedRecord>), Error> {
    let error = match parse_page::<T>(body, url) {
        Ok(items) => return Ok((items, Vec::new())),
        Err(e @ Error::Decode { kind: DecodeErrorKind::WrongType, .. }) => e,
        Err(e) => return Err(e),
    };
    let Ok(elements) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(wap_types::json::strip_bom(body))
    else {
        return Err(error);
    };
    let mut items = Vec::with_capacity(elements.len());
    let mut malformed = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        match wap_types::json::from_slice::<T>(element.get().as_bytes()) {
            Ok(item) => items.push(item),
            Err(e) => {
                let path = if e.path == "." { format!("[{index}]") } else { format!("[{index}].{}", e.path) };
                let record = MalformedRecord {
                    feed,
                    event_id: read_event_id(element),
                    index,
                    path,
                    message: e.message,
                    raw: element.get().to_owned(),
                };
                tracing::warn!(feed = %feed, event_id = ?record.event_id, path = %record.path, error = %record.message, "record does not parse as its type");
                malformed.push(record);
            }
        }
    }
    Ok((items, malformed))
}

/// The `EventId` member of a JSON object (name matched ignoring case; an integer or a string of one).
fn read_event_id(element: &serde_json::value::RawValue) -> Option<i64> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(element.get()).ok()?;
    let value = map.iter().find(|(k, _)| k.eq_ignore_ascii_case("EventId")).map(|(_, v)| v)?;
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn parse_page<T: serde::de::DeserializeOwned>(body: &[u8], url: &Url) -> Result<Vec<T>, Error> {
    wap_types::json::page_from_slice::<T>(body).map_err(|source| {
        let kind = if source.is_eof {
            DecodeErrorKind::Truncated
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(wap_types::json::strip_bom(body)).is_err()
            || !starts_with_array(body)
        {
            DecodeErrorKind::NotAPage
        } else {
            DecodeErrorKind::WrongType
        };
        Error::Decode { kind, url: Box::new(url.clone()), source }
    })
}

fn starts_with_array(body: &[u8]) -> bool {
    wap_types::json::strip_bom(body).iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// Finds an error of type `T` in a source chain, looking inside `io::Error` wrappers too.
fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                let inner: &'a (dyn StdError + 'static) = inner;
                if let Some(t) = find_in_chain::<T>(inner) {
                    return Some(t);
                }
            }
        }
        current = e.source();
    }
    None
}

fn is_reset(error: &(dyn StdError + 'static)) -> bool {
    if let Some(h) = find_in_chain::<hyper::Error>(error) {
        if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
            return true;
        }
    }
    find_in_chain::<std::io::Error>(error).is_some_and(|io| {
        use std::io::ErrorKind::*;
        matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected)
    })
}

fn classify_request_error(url: &Url, e: hyper_util::client::legacy::Error) -> Error {
    #[cfg(feature = "rustls")]
    if let Some(tls) = find_in_chain::<rustls::Error>(&e) {
        let source: crate::error::BoxError = match tls {
            // our verifier's own message (pin mismatch) reads better than rustls' Debug rendering of it
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(inner))) => {
                Box::new(inner.clone())
            }
            other => Box::new(other.clone()),
        };
        return Error::Tls { url: Box::new(url.clone()), source };
    }
    let kind = if e.is_connect() {
        TransportErrorKind::Connect
    } else if is_reset(&e) {
        TransportErrorKind::Reset
    } else {
        TransportErrorKind::Other
    };
    Error::Transport { kind, url: Box::new(url.clone()), source: Box::new(e) }
}

fn body_error(url: &Url, e: Box<dyn StdError + Send + Sync>) -> Error {
    Error::Transport { kind: TransportErrorKind::IncompleteBody, url: Box::new(url.clone()), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("http://127.0.0.1:1/usage").unwrap()
    }

    fn kind_of(body: &[u8]) -> DecodeErrorKind {
        match parse_page::<wap_types::UsageRecord>(body, &url()) {
            Err(Error::Decode { kind, .. }) => kind,
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    #[test]
    fn decode_errors_are_classified() {
        assert_eq!(kind_of(br#"[{"EventId": 1, "StartTime": "2015-06-02T08:0"#), DecodeErrorKind::Truncated);
        assert_eq!(kind_of(b"<html><body>Server Error</body></html>"), DecodeErrorKind::NotAPage);
        assert_eq!(kind_of(br#"{"EventId": 1}"#), DecodeErrorKind::NotAPage);
        assert_eq!(kind_of(br#"[{"EventId": 1,,}]"#), DecodeErrorKind::NotAPage);
        assert_eq!(kind_of(br#"[] trailing"#), DecodeErrorKind::NotAPage);
        assert_eq!(kind_of(br#"[{"EventId": "one"}]"#), DecodeErrorKind::WrongType);
        assert!(parse_page::<wap_types::UsageRecord>(b"  \n ", &url()).unwrap().is_empty());
        assert!(parse_page::<wap_types::UsageRecord>(b"\xEF\xBB\xBF[]", &url()).unwrap().is_empty());
    }

    /// A page of `n` usage records as WAP writes them, with the spacing of `separator`.
    fn big_page(n: usize, separator: &str) -> Vec<u8> {
        let record = |i: usize| {
            format!(
                r#"{{"EventId":{i},"ExternalRecordId":"r-{i}","ResourceId":"VM","SubscriptionId":"s-{}","StartTime":"2015-06-02T08:00:00","EndTime":"2015-06-02T09:00:00","Amount":"{i}.5","Region":"Europe","ServiceType":"vm","Properties":{{"Note":"caf\u00e9 \"{i}\""}}}}"#,
                i % 7
            )
        };
        let items: Vec<String> = (1..=n).map(record).collect();
        format!("{separator}[{separator}{}{separator}]{separator}", items.join(&format!("{separator},{separator}")))
            .into_bytes()
    }

    /// Both parsers on `body`: the same records (and malformed records), or errors of the same kind.
    async fn same_answer(body: &[u8]) -> Option<usize> {
        let reference = parse_page_entries::<wap_types::UsageRecord>(FeedKind::Usage, body, &url());
        let cooperative = parse_page_cooperatively::<wap_types::UsageRecord>(FeedKind::Usage, body, &url()).await;
        match (reference, cooperative) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b);
                Some(a.0.len())
            }
            (Err(Error::Decode { kind: a, .. }), Err(Error::Decode { kind: b, .. })) => {
                assert_eq!(a, b);
                None
            }
            (a, b) => panic!("different answers: {a:?} / {b:?}"),
        }
    }

    #[tokio::test]
    async fn cooperative_parsing_reads_exactly_what_parse_page_reads() {
        for separator in ["", " ", "\r\n  "] {
            let page = big_page(1_000, separator);
            assert!(page.len() > 4 * PARSE_SLICE_BYTES, "large enough to be parsed in slices");
            assert_eq!(same_answer(&page).await, Some(1_000));
            let mut with_bom = b"\xEF\xBB\xBF".to_vec();
            with_bom.extend_from_slice(&page);
            assert_eq!(same_answer(&with_bom).await, Some(1_000));
        }
        assert_eq!(same_answer(&big_page(3, "")).await, Some(3), "small pages take the plain path");
        let page = big_page(1_000, "");
        // truncated, trailing characters, a bad element late in the page, a doubled comma, invalid UTF-8
        assert_eq!(same_answer(&page[..page.len() - 40]).await, None);
        let mut trailing = page.clone();
        trailing.extend_from_slice(b" x");
        assert_eq!(same_answer(&trailing).await, None);
        let text = String::from_utf8(page.clone()).unwrap();
        let wrong_type = text.replacen(r#""EventId":900,"#, r#""EventId":"nine hundred","#, 1);
        assert_ne!(wrong_type, text);
        assert_eq!(same_answer(wrong_type.as_bytes()).await, Some(999), "one malformed record, the rest read");
        let doubled = text.replacen("},{", "},,{", 1);
        assert_eq!(same_answer(doubled.as_bytes()).await, None);
        let mut invalid = page.clone();
        let at = invalid.len() / 2;
        invalid[at] = 0xff;
        assert_eq!(same_answer(&invalid).await, None);
        let object = format!(r#"{{"items":{text}}}"#);
        assert_eq!(same_answer(object.as_bytes()).await, None);
    }

    #[test]
    fn page_urls_keep_the_base_path_and_clamp_the_batch() {
        let c = UsageClient::builder().base_url("http://wap.test:30022/").credentials("u", "p").build();
        // building needs no runtime for http:// endpoints
        let c = c.unwrap();
        assert_eq!(
            c.page_url(FeedKind::Usage, StartId::new(4101), 3).as_str(),
            "http://wap.test:30022/usage?startId=4101&batchSize=3"
        );
        assert_eq!(
            c.page_url(FeedKind::SubscriptionAddons, StartId::BEGINNING, 50_000).as_str(),
            "http://wap.test:30022/billing/subscriptionAddons?startId=0&batchSize=10000"
        );
        let c = UsageClient::builder().base_url("http://wap.test/prefix").credentials("u", "p").build().unwrap();
        assert_eq!(
            c.page_url(FeedKind::Plans, StartId::new(1), 0).as_str(),
            "http://wap.test/prefix/billing/plans?startId=1&batchSize=1"
        );
    }
}
