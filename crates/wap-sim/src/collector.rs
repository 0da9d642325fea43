//! Resource providers as WAP sees them: registration, and the usage collector that polls an RP's
//! `GET usage?lastID=&batchSize=` (docs/protocol/resource-provider.md §5) and stores what it gets on the `/usage` feed.

use std::time::Duration;

use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Method};
use url::Url;
use wap_types::rp::{AuthenticationMode, Endpoint};
use wap_types::{BasicCredentials, LastId, ResourceProvider, RpUsageRecord};

use crate::approval::join_endpoint;
use crate::client::{send, OutRequest};
use crate::error::{redact_url, snippet, SimError};
use crate::sim::Inner;

/// `BatchSize` of `[Usage].[Configuration]`: the page size the collector asks of RPs.
pub const DEFAULT_COLLECTOR_BATCH_SIZE: u32 = 10_000;

/// A registered resource provider: where WAP sends notifications and where its collector polls usage.
#[derive(Debug, Clone, PartialEq)]
pub struct RpRegistration {
    /// `Name`: also `ProviderName` of the records collected.
    pub name: String,
    /// `NotificationEndpoint.ForwardingAddress`.
    pub notification_endpoint: Option<Url>,
    /// Its Basic credentials (`None` = mode None).
    pub notification_auth: Option<BasicCredentials>,
    /// `UsageEndpoint.ForwardingAddress`.
    pub usage_endpoint: Option<Url>,
    /// Its Basic credentials (`None` = mode None).
    pub usage_auth: Option<BasicCredentials>,
    /// `batchSize` asked (default 10,000, the Usage Service's `BatchSize`).
    pub batch_size: u32,
    /// Timeout of each call (default 120 s, `OutgoingCallsDefaultTimeoutInSeconds`).
    pub timeout: Duration,
}

impl RpRegistration {
    /// A provider with no endpoints yet.
    pub fn new(name: impl Into<String>) -> Self {
        RpRegistration {
            name: name.into(),
            notification_endpoint: None,
            notification_auth: None,
            usage_endpoint: None,
            usage_auth: None,
            batch_size: DEFAULT_COLLECTOR_BATCH_SIZE,
            timeout: Duration::from_secs(120),
        }
    }

    /// Sets the notification endpoint.
    pub fn notification(mut self, endpoint: Url, auth: Option<BasicCredentials>) -> Self {
        self.notification_endpoint = Some(endpoint);
        self.notification_auth = auth;
        self
    }

    /// Sets the usage endpoint.
    pub fn usage(mut self, endpoint: Url, auth: Option<BasicCredentials>) -> Self {
        self.usage_endpoint = Some(endpoint);
        self.usage_auth = auth;
        self
    }

    /// Sets the page size asked of the RP.
    pub fn batch_size(mut self, n: u32) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Sets the timeout of each call.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// From a registration object (`POST /resourceproviders` body): its notification and usage endpoints.
    pub fn from_resource_provider(rp: &ResourceProvider) -> Result<Self, SimError> {
        fn endpoint(e: &Option<Endpoint>) -> Result<(Option<Url>, Option<BasicCredentials>), SimError> {
            let Some(e) = e else { return Ok((None, None)) };
            let url = Url::parse(&e.forwarding_address).map_err(|err| {
                SimError::InvalidConfig(format!("ForwardingAddress {:?}: {err}", e.forwarding_address))
            })?;
            let auth = match e.authentication_mode {
                AuthenticationMode::None => None,
                _ => Some(BasicCredentials::new(
                    e.authentication_username.clone().unwrap_or_default(),
                    e.authentication_password.clone().unwrap_or_default(),
                )),
            };
            Ok((Some(url), auth))
        }
        let (n, na) = endpoint(&rp.notification_endpoint)?;
        let (u, ua) = endpoint(&rp.usage_endpoint)?;
        Ok(RpRegistration {
            notification_endpoint: n,
            notification_auth: na,
            usage_endpoint: u,
            usage_auth: ua,
            ..RpRegistration::new(rp.name.clone())
        })
    }
}

/// Something wrong with what an RP's usage endpoint returned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CollectorAnomaly {
    /// More records than `batchSize`: the page was rejected (nothing stored, `lastID` unchanged) and the run
    /// stopped.
    OversizePage {
        /// `batchSize` asked.
        asked: u32,
        /// Records returned.
        got: usize,
    },
    /// An id seen twice in one page: the repeat was not stored.
    DuplicateId {
        /// The id.
        id: i64,
    },
    /// An id at or below the `lastID` sent (already acknowledged), or below an earlier id of the same page: not
    /// stored.
    NonIncreasingId {
        /// The id.
        id: i64,
        /// The highest id before it (the `lastID` sent, or the previous record).
        after: Option<i64>,
    },
    /// A non-empty page held nothing new: the run stopped (the RP does not honour `lastID`).
    NoProgress {
        /// The `lastID` sent.
        last_id: LastId,
    },
}

/// What one collection run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CollectReport {
    /// Pages fetched (the final `[]` included).
    pub pages: u32,
    /// Records stored on `/usage`.
    pub records: u64,
    /// The Usage Service ids the stored records got.
    pub stored_ids: Vec<i64>,
    /// The `lastID` after the run (what the next call sends).
    pub last_id: LastId,
    /// Problems seen.
    pub anomalies: Vec<CollectorAnomaly>,
}

/// The most pages one run fetches (a guard against an RP that never answers `[]`).
const MAX_PAGES_PER_RUN: u32 = 1_000_000;

/// Polls the RP until it answers `[]`.
pub(crate) async fn collect_once(inner: &Inner, rp_name: &str) -> Result<CollectReport, SimError> {
    let (reg, lock) = {
        let rps = inner.rps.lock().unwrap_or_else(|e| e.into_inner());
        let state =
            rps.get(&rp_name.to_ascii_lowercase()).ok_or_else(|| SimError::UnknownResourceProvider(rp_name.into()))?;
        (state.registration.clone(), state.run_lock.clone())
    };
    let _running = lock.lock().await;
    let endpoint =
        reg.usage_endpoint.clone().ok_or(SimError::NoEndpoint { rp: reg.name.clone(), endpoint: "usage" })?;
    let mut report = CollectReport { last_id: current_last_id(inner, &reg.name), ..Default::default() };
    loop {
        if report.pages >= MAX_PAGES_PER_RUN {
            break;
        }
        let last = report.last_id;
        let mut url = join_endpoint(&endpoint, "usage");
        url.query_pairs_mut()
            .append_pair("lastID", &last.to_query_value())
            .append_pair("batchSize", &reg.batch_size.to_string());
        let shown = redact_url(&url);
        let mut headers = vec![
            (ACCEPT, HeaderValue::from_static("application/json")),
            (http::HeaderName::from_static("x-ms-principal-id"), HeaderValue::from_static("corp%5cwapadmin")),
        ];
        if let Some(c) = &reg.usage_auth {
            if let Ok(mut v) = HeaderValue::from_str(&c.header_value()) {
                v.set_sensitive(true);
                headers.push((AUTHORIZATION, v));
            }
        }
        let r =
            send(&inner.outbound, OutRequest { method: Method::GET, url, headers, body: None, timeout: reg.timeout })
                .await?;
        report.pages += 1;
        if r.status != 200 {
            return Err(SimError::Status { url: shown, status: r.status, body_snippet: snippet(&r.body) });
        }
        let page: Vec<RpUsageRecord> = wap_types::json::page_from_slice(&r.body)
            .map_err(|e| SimError::InvalidResponse { url: shown.clone(), message: e.to_string() })?;
        if page.is_empty() {
            break;
        }
        if page.len() > reg.batch_size as usize {
            report.anomalies.push(CollectorAnomaly::OversizePage { asked: reg.batch_size, got: page.len() });
            break;
        }
        let mut accepted = Vec::with_capacity(page.len());
        let mut highest = last.get();
        let mut seen = std::collections::HashSet::new();
        for rec in page {
            let id = rec.event_id;
            if !seen.insert(id) {
                report.anomalies.push(CollectorAnomaly::DuplicateId { id });
                continue;
            }
            if highest.is_some_and(|h| id <= h) {
                report.anomalies.push(CollectorAnomaly::NonIncreasingId { id, after: highest });
                continue;
            }
            highest = Some(id);
            accepted.push(rec);
        }
        if accepted.is_empty() {
            report.anomalies.push(CollectorAnomaly::NoProgress { last_id: last });
            break;
        }
        let new_last = LastId::new(highest.unwrap_or(0));
        let records = accepted.into_iter().map(|r| r.into_usage_record(0, &reg.name)).collect::<Vec<_>>();
        let ids = inner.data.lock().unwrap_or_else(|e| e.into_inner()).usage.append(records);
        report.records += ids.len() as u64;
        report.stored_ids.extend(ids);
        report.last_id = new_last;
        set_last_id(inner, &reg.name, new_last);
    }
    Ok(report)
}

pub(crate) fn current_last_id(inner: &Inner, rp_name: &str) -> LastId {
    inner
        .rps
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&rp_name.to_ascii_lowercase())
        .map(|s| s.last_id)
        .unwrap_or_default()
}

pub(crate) fn set_last_id(inner: &Inner, rp_name: &str, last: LastId) {
    if let Some(s) = inner.rps.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&rp_name.to_ascii_lowercase()) {
        s.last_id = last;
    }
}
