//! [`UsageServiceSource`]: the production [`FeedSource`], pulling pages from WAP's Usage Service with
//! [`wap_usage_client::UsageClient`].
//!
//! Each fetch is **one** `GET <feed>?startId=&batchSize=` (the client's raw page access), decoded here element by
//! element so that one bad record cannot fail its page (docs/protocol/usage-service.md §2.2):
//!
//! | Response | Result |
//! |---|---|
//! | network error, timeout, TLS failure, any non-2xx, a body that is not a JSON array, an element whose `EventId` cannot be read | [`SourceError`]: WAP side, retried by the engine with back-off until it passes |
//! | an element that is JSON but not its type (e.g. `"State": "x"`) | [`FeedItem::Malformed`] with its `EventId`, the JSON path of the bad member and its text: adapter side, `RetryMaxAttempts` attempts, then the processor halts on that record |
//! | `200`/`204` with an empty body | an empty page (`[]`) |
//!
//! **Retries**: the engine's own back-off (`WapRetryInitialMilliseconds` → `WapRetryMaxMilliseconds`, forever) does
//! the retrying and reports every failure in the processor status. [`UsageServiceSource::from_builder`] therefore
//! builds the client with [`RetryPolicy::disabled`]; a client passed to [`UsageServiceSource::new`] keeps its
//! policy, which then runs inside each fetch (its failures are invisible to the status until it gives up).
//!
//! The engine computes each `startId` itself, from its cursor and its own `StartIdInclusive`
//! ([`EngineConfig::start_id_mode`](crate::EngineConfig::start_id_mode)); of the client's settings, the endpoint,
//! credentials, TLS, timeouts, body limit and `MethodNumericOrdinals` apply.

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wap_types::{
    AdminSubscription, EventMethod, FeedKind, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference, StartId,
    UsageEvent, UsageRecord,
};
use wap_usage_client::{RetryPolicy, UsageClient, UsageClientBuilder};

use crate::source::{FeedItem, FeedSource, MalformedItem, SourceError, SourceErrorKind};

/// The most characters of a malformed record kept in [`MalformedItem::raw`] (and so in logs and the halt status).
const MALFORMED_RAW_MAX: usize = 2_048;

/// A [`FeedSource`] over WAP's Usage Service (port 30022).
#[derive(Debug, Clone)]
pub struct UsageServiceSource {
    client: UsageClient,
}

impl UsageServiceSource {
    /// A source using `client` as it is (its retry policy runs inside each fetch; prefer
    /// [`UsageServiceSource::from_builder`]).
    pub fn new(client: UsageClient) -> Self {
        UsageServiceSource { client }
    }

    /// Builds the client from `builder` with [`RetryPolicy::disabled`], so that each fetch is a single request and
    /// the engine's back-off does the retrying (see the [module docs](self)).
    pub fn from_builder(builder: UsageClientBuilder) -> Result<Self, wap_usage_client::Error> {
        Ok(UsageServiceSource { client: builder.retry_policy(RetryPolicy::disabled()).build()? })
    }

    /// The client.
    pub fn client(&self) -> &UsageClient {
        &self.client
    }
}

#[async_trait]
impl FeedSource for UsageServiceSource {
    async fn fetch(&self, feed: FeedKind, start: StartId, batch_size: u32) -> Result<Vec<FeedItem>, SourceError> {
        let body = self.client.raw_page(feed, start, batch_size).await.map_err(source_error)?;
        decode_page(feed, &body, self.client.method_numeric_ordinals()).map_err(|e| {
            let url = self.client.page_url(feed, start, batch_size);
            SourceError::new(e.kind, format!("{} (from {url})", e.message))
        })
    }
}

/// Classifies a client error as a [`SourceError`] (URL without credentials, status, body snippet in the message).
fn source_error(error: wap_usage_client::Error) -> SourceError {
    use wap_usage_client::Error as E;
    let kind = match &error {
        E::Status { status, .. } => SourceErrorKind::Status(*status),
        E::Transport { .. } | E::Timeout { .. } | E::Tls { .. } => SourceErrorKind::Transport,
        E::Decode { .. } | E::BodyTooLarge { .. } => SourceErrorKind::Body,
        _ => SourceErrorKind::Other,
    };
    SourceError::new(kind, error.to_string())
}

/// Decodes a page body of `feed`: every element typed, or [`FeedItem::Malformed`] when it is JSON with a readable
/// `EventId` but not of the feed's type. `numeric_ordinals` applies `MethodNumericOrdinals = true` to events.
///
/// Errors (always [`SourceErrorKind::Body`]): the body is not a JSON array, or an element's `EventId` cannot be
/// read (the record cannot be placed in the feed, so the page cannot be used).
pub fn decode_page(feed: FeedKind, body: &[u8], numeric_ordinals: bool) -> Result<Vec<FeedItem>, SourceError> {
    fn events<T: DeserializeOwned>(
        feed: FeedKind,
        body: &[u8],
        numeric_ordinals: bool,
        wrap: fn(UsageEvent<T>) -> FeedItem,
    ) -> Result<Vec<FeedItem>, SourceError> {
        decode_typed(feed, body, |mut event: UsageEvent<T>| {
            if numeric_ordinals {
                let method = std::mem::replace(&mut event.method, EventMethod::Post);
                event.method = method.with_numeric_ordinals();
            }
            wrap(event)
        })
    }
    match feed {
        FeedKind::Usage => decode_typed(feed, body, FeedItem::Usage as fn(UsageRecord) -> FeedItem),
        FeedKind::Plans => events::<Plan>(feed, body, numeric_ordinals, FeedItem::Plan),
        FeedKind::Addons => events::<PlanAddon>(feed, body, numeric_ordinals, FeedItem::Addon),
        FeedKind::PlanAddons => events::<PlanAddonReference>(feed, body, numeric_ordinals, FeedItem::PlanAddon),
        FeedKind::PlanServices => {
            events::<ResourceProviderReference>(feed, body, numeric_ordinals, FeedItem::PlanService)
        }
        FeedKind::Subscriptions => events::<AdminSubscription>(feed, body, numeric_ordinals, FeedItem::Subscription),
        FeedKind::SubscriptionAddons => {
            events::<PlanAddonReference>(feed, body, numeric_ordinals, FeedItem::SubscriptionAddon)
        }
    }
}

/// The fast path parses the whole page as `Vec<T>`; only when that fails is the page taken apart element by
/// element, so a good page costs no more than the client's own typed parse.
fn decode_typed<T: DeserializeOwned>(
    feed: FeedKind,
    body: &[u8],
    wrap: impl Fn(T) -> FeedItem,
) -> Result<Vec<FeedItem>, SourceError> {
    if let Ok(items) = wap_types::json::page_from_slice::<T>(body) {
        return Ok(items.into_iter().map(wrap).collect());
    }
    let elements: Vec<Box<RawValue>> = wap_types::json::page_from_slice(body).map_err(|e| {
        let what = if e.is_eof { "truncated page" } else { "not a JSON array of records" };
        SourceError::new(SourceErrorKind::Body, format!("{what} on {feed}: {e}"))
    })?;
    let mut out = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        match wap_types::json::from_slice::<T>(element.get().as_bytes()) {
            Ok(item) => out.push(wrap(item)),
            Err(e) => {
                let event_id = read_event_id(element).ok_or_else(|| {
                    SourceError::new(
                        SourceErrorKind::Body,
                        format!("element [{index}] of the {feed} page has no readable EventId ({e})"),
                    )
                })?;
                let path = if e.path == "." { format!("[{index}]") } else { format!("[{index}].{}", e.path) };
                let error = format!("invalid {} at {path}: {}", feed.name(), e.message);
                tracing::warn!(feed = %feed, event_id, error = %error, "record does not parse as its type");
                let raw: String = element.get().chars().take(MALFORMED_RAW_MAX).collect();
                out.push(FeedItem::Malformed(MalformedItem { feed, event_id, error, raw }));
            }
        }
    }
    Ok(out)
}

/// The `EventId` member of a JSON object (name matched ignoring case; an integer or a string of one).
fn read_event_id(element: &RawValue) -> Option<i64> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(element.get()).ok()?;
    let value = map.iter().find(|(k, _)| k.eq_ignore_ascii_case("EventId")).map(|(_, v)| v)?;
    match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../../testdata/spec/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn decodes_the_spec_fixture_pages() {
        let usage = decode_page(FeedKind::Usage, &fixture("usage-service/usage-page.json"), false).unwrap();
        assert!(!usage.is_empty());
        assert!(usage.iter().all(|i| matches!(i, FeedItem::Usage(_))));
        let subs =
            decode_page(FeedKind::Subscriptions, &fixture("usage-service/subscriptions-events.json"), false).unwrap();
        assert!(!subs.is_empty());
        assert!(subs.iter().all(|i| matches!(i, FeedItem::Subscription(_))));
    }

    #[test]
    fn one_bad_record_becomes_malformed_and_the_rest_parse() {
        let body = br#"[
            {"EventId": 7, "State": 0, "Method": "POST", "Entity": {"Id": "gold", "DisplayName": "Gold"}},
            {"EventId": 8, "State": 0, "Method": "POST", "Entity": {"Id": "silver", "State": "not a number"}},
            {"eventid": 9, "State": 0, "Method": "POST", "Entity": {"Id": "bronze"}},
            {"EventId": "10", "State": 0, "Method": "POST", "Entity": {"Id": "iron"}}
        ]"#;
        let page = decode_page(FeedKind::Plans, body, false).unwrap();
        assert_eq!(page.len(), 4);
        assert!(matches!(&page[0], FeedItem::Plan(e) if e.entity.id == "gold"));
        let FeedItem::Malformed(m) = &page[1] else { panic!("{:?}", page[1]) };
        assert_eq!((m.feed, m.event_id), (FeedKind::Plans, 8));
        assert!(m.error.contains("[1].Entity.State"), "names the path: {}", m.error);
        assert!(m.raw.contains("not a number"));
        assert!(matches!(&page[2], FeedItem::Plan(e) if e.event_id == 9), "member names ignore case");
        // An id sent as a string does not fit the type, but is readable: that record alone is malformed.
        assert!(matches!(&page[3], FeedItem::Malformed(m) if m.event_id == 10 && m.error.contains("[3]")));
    }

    #[test]
    fn unreadable_pages_and_ids_are_wap_side_errors() {
        let e = decode_page(FeedKind::Usage, b"<html>Service Unavailable</html>", false).unwrap_err();
        assert_eq!(e.kind, SourceErrorKind::Body);
        let e = decode_page(FeedKind::Usage, br#"[{"EventId": 1, "#, false).unwrap_err();
        assert!(e.message.contains("truncated"), "{}", e.message);
        let e = decode_page(FeedKind::Usage, br#"[{"NoId": true}]"#, false).unwrap_err();
        assert!(e.message.contains("[0]") && e.message.contains("EventId"), "{}", e.message);
        assert!(decode_page(FeedKind::Usage, b"", false).unwrap().is_empty(), "empty body = []");
        assert!(decode_page(FeedKind::Usage, b" [ ] ", false).unwrap().is_empty());
    }

    #[test]
    fn numeric_ordinals_apply_to_events_when_enabled() {
        let body = br#"[{"EventId": 3, "State": 0, "Method": "3", "Entity": {"Id": "gold"}}]"#;
        let off = decode_page(FeedKind::Plans, body, false).unwrap();
        assert!(matches!(&off[0], FeedItem::Plan(e) if e.method == EventMethod::Other("3".into())));
        let on = decode_page(FeedKind::Plans, body, true).unwrap();
        assert!(matches!(&on[0], FeedItem::Plan(e) if e.method == EventMethod::Delete));
    }
}
