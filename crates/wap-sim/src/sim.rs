//! [`WapSim`] (the running simulator) and [`SimBuilder`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as TimeDelta, Utc};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;
use wap_types::{
    AddonPriceQuery, AdminSubscription, BasicCredentials, ConfigState, FeedKind, LastId, Plan, PlanAddon,
    PlanPriceQuery, PlanState, PriceAnswer, Subscription, UsageRecord,
};

use crate::approval::{
    self, ActionOutcome, AddOnApprovalRoute, CreateSubscription, NotificationSubscriber, SubscriptionUpdate,
};
use crate::client::Outbound;
use crate::collector::{self, CollectReport, RpRegistration};
use crate::dataset::{self, DatasetSpec};
use crate::error::SimError;
use crate::events::{Catalogue, Feeds};
use crate::faults::{FaultInjector, FaultPlan, FaultStats};
use crate::log::RequestLogEntry;
use crate::notify::{NotificationCaller, RpResponse};
use crate::usage::{Provider, UsageGenerator, UsageStore, UsageSubject};

/// Default Usage Service user name.
pub const DEFAULT_USERNAME: &str = "usagereader";
/// Default Usage Service password.
pub const DEFAULT_PASSWORD: &str = "Us4ge-Read";

/// The simulator's data: usage records, events, catalogue, and the seeded generator for ids made at run time.
#[derive(Debug)]
pub(crate) struct Data {
    pub(crate) usage: UsageStore,
    pub(crate) feeds: Feeds,
    pub(crate) rng: fastrand::Rng,
}

/// One registered resource provider and its collector state.
#[derive(Debug)]
pub(crate) struct RpState {
    pub(crate) registration: RpRegistration,
    pub(crate) last_id: LastId,
    pub(crate) run_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct Tasks {
    server: Option<JoinHandle<()>>,
    live: Option<JoinHandle<()>>,
    collectors: HashMap<String, JoinHandle<()>>,
}

impl Tasks {
    fn abort_background(&mut self) {
        if let Some(t) = self.live.take() {
            t.abort();
        }
        for (_, t) in self.collectors.drain() {
            t.abort();
        }
    }
}

/// Shared state of a running simulator.
pub(crate) struct Inner {
    pub(crate) credentials: BasicCredentials,
    pub(crate) max_batch: u32,
    pub(crate) approval_timeout: Duration,
    pub(crate) add_on_route: AddOnApprovalRoute,
    pub(crate) admin_api_base: String,
    pub(crate) data: Mutex<Data>,
    pub(crate) faults: Mutex<FaultInjector>,
    pub(crate) log: Mutex<VecDeque<RequestLogEntry>>,
    pub(crate) subscribers: Mutex<Vec<NotificationSubscriber>>,
    pub(crate) rps: Mutex<BTreeMap<String, RpState>>,
    pub(crate) outbound: Outbound,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Tasks>,
    url: Url,
    tls_pem: Option<String>,
    tls_sha256: Option<[u8; 32]>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("url", &self.url.as_str())
            .field("credentials", &self.credentials)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock_data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signal_shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).abort_background();
    }
}

/// Signals shutdown when the last [`WapSim`] handle is dropped.
struct DropGuard(Arc<Inner>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.signal_shutdown();
    }
}

/// A running simulated WAP: the Usage Service on loopback plus the callers WAP uses towards billing adapters
/// and resource providers. Cheap to clone; the server stops on [`WapSim::shutdown`] or when the last clone is
/// dropped.
#[derive(Clone)]
pub struct WapSim {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

impl fmt::Debug for WapSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WapSim")
            .field("usage_service_url", &self.inner.url.as_str())
            .field("username", &self.inner.credentials.username)
            .field("tls", &self.inner.tls_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Live mode: records and events keep arriving while clients poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveConfig {
    /// Time between two rounds.
    pub tick: Duration,
    /// Usage records generated per round.
    pub usage_per_tick: u64,
    /// Catalogue events per round (plan Patch, suspension/re-activation, new subscription add-on).
    pub events_per_tick: u32,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig { tick: Duration::from_secs(1), usage_per_tick: 10, events_per_tick: 1 }
    }
}

impl LiveConfig {
    /// A round every `tick` with these amounts.
    pub fn new(tick: Duration, usage_per_tick: u64, events_per_tick: u32) -> Self {
        LiveConfig { tick, usage_per_tick, events_per_tick }
    }
}

/// Progress callback: (records generated so far, records asked for).
type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Default [`SimBuilder::max_connections`]: connections the simulator serves at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Configures and starts a [`WapSim`].
///
/// Defaults: bind `127.0.0.1:0`; credentials `usagereader` / `Us4ge-Read`; seed 1; [`DatasetSpec::small`];
/// maximum batch 10,000; TLS off; approval timeout 120 s; no faults.
#[derive(Clone)]
pub struct SimBuilder {
    bind: SocketAddr,
    credentials: BasicCredentials,
    seed: u64,
    dataset: DatasetSpec,
    max_batch: u32,
    tls: bool,
    approval_timeout: Duration,
    faults: FaultPlan,
    json_dir: Option<PathBuf>,
    add_on_route: AddOnApprovalRoute,
    admin_api_base: String,
    progress: Option<Progress>,
    /// PEM certificates outbound `https://` calls trust; empty = accept any certificate.
    outbound_roots: Vec<String>,
    max_connections: usize,
}

impl fmt::Debug for SimBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimBuilder")
            .field("bind", &self.bind)
            .field("credentials", &self.credentials)
            .field("seed", &self.seed)
            .field("dataset", &self.dataset)
            .field("max_batch", &self.max_batch)
            .field("tls", &self.tls)
            .field("approval_timeout", &self.approval_timeout)
            .field("faults", &self.faults)
            .field("json_dir", &self.json_dir)
            .field("outbound_roots", &self.outbound_roots.len())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Default for SimBuilder {
    fn default() -> Self {
        SimBuilder {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            credentials: BasicCredentials::new(DEFAULT_USERNAME, DEFAULT_PASSWORD),
            seed: 1,
            dataset: DatasetSpec::small(),
            max_batch: wap_types::cursor::MAX_BATCH_SIZE,
            tls: false,
            approval_timeout: Duration::from_secs(120),
            faults: FaultPlan::none(),
            json_dir: None,
            add_on_route: AddOnApprovalRoute::default(),
            admin_api_base: "https://wapadmin.sim.test:30004/".into(),
            progress: None,
            outbound_roots: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl SimBuilder {
    /// How many connections the simulator serves at once (at least 1; default [`DEFAULT_MAX_CONNECTIONS`], 1,024).
    /// A connection past the limit is answered `503 Service Unavailable` with `Retry-After: 1` and a text body,
    /// then closed (over TLS it is closed without a handshake).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// The address to listen on (default `127.0.0.1:0`, an ephemeral port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The credentials the Usage Service accepts.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<wap_types::Secret>) -> Self {
        self.credentials = BasicCredentials::new(username, password);
        self
    }

    /// The seed of every generated thing (catalogue, usage, GUIDs, faults drawn by the data).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// What to generate.
    pub fn dataset(mut self, spec: DatasetSpec) -> Self {
        self.dataset = spec;
        self
    }

    /// No data at all ([`DatasetSpec::empty`]).
    pub fn empty(self) -> Self {
        self.dataset(DatasetSpec::empty())
    }

    /// `MaximumBatchSize`: the most records one page holds (default 10,000).
    pub fn max_batch_size(mut self, n: u32) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// Serve HTTPS with a self-signed certificate generated at start (needs the `rustls` feature).
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    /// Verify the certificates of `https://` subscribers and resource providers against this CA (or self-signed
    /// server) certificate, PEM; may be called more than once. Without it, outbound calls accept any certificate
    /// (the default: the peers of a simulator are test servers). With it, a certificate that does not chain to a
    /// trusted one, or does not name the host called, fails the call as a real WAP would.
    pub fn trust_outbound_certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.outbound_roots.push(pem.into());
        self
    }

    /// How long WAP waits for a subscriber (`OutgoingCallsDefaultTimeoutInSeconds`, default 120 s).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.approval_timeout = timeout;
        self
    }

    /// Fault injection from the start.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }

    /// Load the data from JSON files instead of generating it: in `dir`, each file whose name (without `.json`,
    /// ignoring case, `-` and `_`, and a trailing `events` or `page`) is a feed name (`usage`, `plans`, `addons`,
    /// `planAddons`, `planServices`, `subscriptions`, `subscriptionAddons`) holds that feed's page (a JSON
    /// array). Records and events keep their `EventId`s; other files are ignored.
    pub fn load_json_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.json_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Where add-on approvals go (default `POST subscriptionAddons`).
    pub fn add_on_approval_route(mut self, route: AddOnApprovalRoute) -> Self {
        self.add_on_route = route;
        self
    }

    /// The Admin API base shown in `Referer` of notification calls (default `https://wapadmin.sim.test:30004/`).
    pub fn admin_api_base(mut self, base: impl Into<String>) -> Self {
        let mut b = base.into();
        if !b.ends_with('/') {
            b.push('/');
        }
        self.admin_api_base = b;
        self
    }

    /// Called while generating large data sets, every million records: (done, total).
    pub fn on_progress(mut self, f: impl Fn(u64, u64) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Generates or loads the data, binds the socket and starts serving.
    pub async fn start(self) -> Result<WapSim, SimError> {
        let listener =
            TcpListener::bind(self.bind).await.map_err(|source| SimError::Bind { addr: self.bind, source })?;
        let local = listener.local_addr().map_err(|source| SimError::Bind { addr: self.bind, source })?;
        let data = match &self.json_dir {
            Some(dir) => load_dir(dir, self.seed)?,
            None => {
                let progress = self.progress.clone();
                let (spec, seed) = (self.dataset.clone(), self.seed);
                tokio::task::spawn_blocking(move || generate(&spec, seed, progress))
                    .await
                    .map_err(|e| SimError::InvalidConfig(format!("data generation failed: {e}")))?
            }
        };
        let host = if local.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { local.ip() };
        let host_text = match host {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        #[allow(unused_mut)]
        let mut outbound = Outbound::default();
        #[cfg(feature = "rustls")]
        {
            outbound.tls = Some(if self.outbound_roots.is_empty() {
                crate::tls::client_config()?
            } else {
                crate::tls::verifying_client_config(&self.outbound_roots)?
            });
        }
        let (acceptor, tls_pem, tls_sha256) = if self.tls {
            #[cfg(feature = "rustls")]
            {
                let t = crate::tls::self_signed(vec!["localhost".into(), host.to_string()])?;
                (Some(t.acceptor), Some(t.cert_pem), Some(t.cert_sha256))
            }
            #[cfg(not(feature = "rustls"))]
            {
                return Err(SimError::TlsUnavailable);
            }
        } else {
            (None, None, None)
        };
        let scheme = if self.tls { "https" } else { "http" };
        let url = Url::parse(&format!("{scheme}://{host_text}:{}/", local.port()))
            .map_err(|e| SimError::InvalidConfig(e.to_string()))?;
        let (tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            credentials: self.credentials,
            max_batch: self.max_batch,
            approval_timeout: self.approval_timeout,
            add_on_route: self.add_on_route,
            admin_api_base: self.admin_api_base,
            data: Mutex::new(data),
            faults: Mutex::new(FaultInjector::new(self.faults)),
            log: Mutex::new(VecDeque::new()),
            subscribers: Mutex::new(Vec::new()),
            rps: Mutex::new(BTreeMap::new()),
            outbound,
            shutdown: tx,
            tasks: Mutex::new(Tasks::default()),
            url,
            tls_pem,
            tls_sha256,
        });
        let server = tokio::spawn(crate::server::run(listener, inner.clone(), acceptor, rx, self.max_connections));
        inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).server = Some(server);
        Ok(WapSim { _guard: Arc::new(DropGuard(inner.clone())), inner })
    }
}

/// Generates the catalogue and the usage records.
fn generate(spec: &DatasetSpec, seed: u64, progress: Option<Progress>) -> Data {
    let start = spec.resolved_start(Utc::now());
    let mut feeds = Feeds::new();
    let catalogue = dataset::generate_catalogue(spec, seed, start, &mut feeds);
    let generator = Arc::new(UsageGenerator {
        seed,
        start,
        step_secs: spec.step_secs(),
        gap_per_mille: spec.usage_gap_per_mille.min(900),
        subjects: catalogue.subjects,
    });
    let mut usage = UsageStore::new(generator);
    let total = spec.usage_records;
    usage.generate(total, &mut |done| {
        if let Some(p) = &progress {
            p(done, total)
        }
    });
    if let Some(p) = &progress {
        p(total, total);
    }
    Data { usage, feeds, rng: fastrand::Rng::with_seed(seed ^ 0x5151_5151) }
}

/// Usage subjects from a loaded catalogue: each subscription's services.
fn subjects_from(catalogue: &Catalogue) -> Vec<UsageSubject> {
    let mut out = Vec::new();
    for (i, s) in catalogue.subscriptions.values().enumerate() {
        let Some(id) = s.get("SubscriptionID").and_then(Value::as_str) else { continue };
        for svc in s.get("Services").and_then(Value::as_array).into_iter().flatten() {
            if let Some(p) = svc.get("Type").and_then(Value::as_str).and_then(Provider::from_name) {
                out.push(UsageSubject { subscription_id: id.to_owned(), provider: p, resource: format!("res{i}") });
            }
        }
    }
    out
}

fn feed_for_file(stem: &str) -> Option<FeedKind> {
    let mut n: String = stem.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
    for suffix in ["events", "page"] {
        if let Some(s) = n.strip_suffix(suffix) {
            if !s.is_empty() {
                n = s.to_owned();
            }
        }
    }
    FeedKind::from_name(&n)
}

/// Loads data from a directory of JSON pages.
fn load_dir(dir: &Path, seed: u64) -> Result<Data, SimError> {
    let err = |path: &Path, message: String| SimError::LoadData { path: path.display().to_string(), message };
    let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    let mut files: Vec<(FeedKind, PathBuf)> = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| err(dir, e.to_string()))?.path();
        if path.extension().and_then(|e| e.to_str()).map(|e| e.eq_ignore_ascii_case("json")) != Some(true) {
            continue;
        }
        let Some(feed) = path.file_stem().and_then(|s| s.to_str()).and_then(feed_for_file) else { continue };
        files.push((feed, path));
    }
    files.sort();
    let mut feeds = Feeds::new();
    let mut usage_records: Vec<UsageRecord> = Vec::new();
    for (feed, path) in &files {
        let bytes = std::fs::read(path).map_err(|e| err(path, e.to_string()))?;
        if *feed == FeedKind::Usage {
            let page: Vec<UsageRecord> =
                wap_types::json::page_from_slice(&bytes).map_err(|e| err(path, e.to_string()))?;
            usage_records.extend(page);
        } else {
            let page: Vec<Value> = wap_types::json::page_from_slice(&bytes).map_err(|e| err(path, e.to_string()))?;
            let mut page: Vec<(i64, Value)> = page
                .into_iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = v
                        .get("EventId")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| err(path, format!("[{i}].EventId: missing or not an integer")))?;
                    Ok((id, v))
                })
                .collect::<Result<_, SimError>>()?;
            page.sort_by_key(|(id, _)| *id);
            for (i, (_, v)) in page.into_iter().enumerate() {
                feeds.load(*feed, v).map_err(|m| err(path, format!("[{i}]: {m}")))?;
            }
        }
    }
    let newest = usage_records.iter().map(|r| r.start_time.to_utc()).max();
    let generator = Arc::new(UsageGenerator {
        seed,
        start: newest.map(|t| t + TimeDelta::hours(1)).unwrap_or_else(Utc::now),
        step_secs: 60,
        gap_per_mille: 0,
        subjects: subjects_from(&feeds.catalogue),
    });
    let mut usage = UsageStore::new(generator);
    usage.insert_with_ids(usage_records);
    Ok(Data { usage, feeds, rng: fastrand::Rng::with_seed(seed ^ 0x5151_5151) })
}

fn parse_all<T: serde::de::DeserializeOwned>(values: impl Iterator<Item = Value>) -> Vec<T> {
    values.filter_map(|v| serde_json::from_value(v).ok()).collect()
}

impl WapSim {
    /// A builder with the defaults.
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The Usage Service base URL: `http://127.0.0.1:PORT/` (or `https://…` with TLS).
    pub fn usage_service_url(&self) -> Url {
        self.inner.url.clone()
    }

    /// The address the Usage Service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        let host = self.inner.url.host_str().unwrap_or("127.0.0.1").trim_matches(|c| c == '[' || c == ']');
        let ip: IpAddr = host.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, self.inner.url.port().unwrap_or(0))
    }

    /// The credentials the Usage Service accepts.
    pub fn credentials(&self) -> BasicCredentials {
        self.inner.credentials.clone()
    }

    /// The self-signed certificate (PEM) in TLS mode.
    pub fn tls_certificate_pem(&self) -> Option<String> {
        self.inner.tls_pem.clone()
    }

    /// SHA-256 of the certificate's DER in TLS mode (for pinning).
    pub fn tls_certificate_sha256(&self) -> Option<[u8; 32]> {
        self.inner.tls_sha256
    }

    /// `MaximumBatchSize` of this simulator.
    pub fn max_batch_size(&self) -> u32 {
        self.inner.max_batch
    }

    // ---- data -------------------------------------------------------------------------------------------

    /// Usage records currently retained.
    pub fn usage_count(&self) -> u64 {
        self.inner.lock_data().usage.count()
    }

    /// Every retained usage record, ascending `EventId` (the expected set for tests; fine up to ~1e6).
    pub fn usage_records(&self) -> Vec<UsageRecord> {
        let (items, generator) = {
            let data = self.inner.lock_data();
            (data.usage.page(i64::MIN, usize::MAX), data.usage.generator.clone())
        };
        items.iter().map(|i| i.to_record(&generator)).collect()
    }

    /// Every retained usage record id, ascending.
    pub fn usage_ids(&self) -> Vec<i64> {
        self.inner.lock_data().usage.ids()
    }

    /// The retained events of one feed as wire JSON, ascending (for [`FeedKind::Usage`]: the usage records).
    pub fn events_json(&self, feed: FeedKind) -> Vec<Value> {
        if feed == FeedKind::Usage {
            return self.usage_records().iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
        }
        self.inner.lock_data().feeds.store.all(feed).iter().map(|e| e.json.clone()).collect()
    }

    /// The retained event ids of one feed, ascending.
    pub fn event_ids(&self, feed: FeedKind) -> Vec<i64> {
        if feed == FeedKind::Usage {
            return self.usage_ids();
        }
        self.inner.lock_data().feeds.store.all(feed).iter().map(|e| e.id).collect()
    }

    /// Appends usage records (as the collector would), assigning the next `EventId`s (given ids are ignored).
    pub fn append_usage(&self, records: Vec<UsageRecord>) -> Vec<i64> {
        self.inner.lock_data().usage.append(records)
    }

    /// Generates `count` more usage records; returns the id range they occupy (gaps included).
    pub fn generate_usage(&self, count: u64) -> RangeInclusive<i64> {
        self.inner.lock_data().usage.generate(count, &mut |_| {})
    }

    /// Starts live mode (replacing a running one): usage and events keep arriving. Call within a Tokio runtime.
    pub fn start_live(&self, live: LiveConfig) {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(live.tick.max(Duration::from_millis(1)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let mut data = inner.lock_data();
                let Data { usage, feeds, rng } = &mut *data;
                usage.generate(live.usage_per_tick, &mut |_| {});
                for _ in 0..live.events_per_tick {
                    dataset::live_event(feeds, rng);
                }
            }
        });
        if let Some(old) = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).live.replace(task) {
            old.abort();
        }
    }

    /// Stops live mode.
    pub fn stop_live(&self) {
        if let Some(t) = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).live.take() {
            t.abort();
        }
    }

    /// Retention: drops usage records (by `StartTime`) and events (by `NotificationEventTimeCreated`) older than
    /// `days` before the simulator's clock, which is the newest record or event time (generated data has its
    /// own timeline). Returns how many were dropped.
    pub fn purge_older_than(&self, days: u32) -> u64 {
        let mut data = self.inner.lock_data();
        let clock = data.usage.newest_start().max(data.feeds.store.newest_time());
        let Some(clock) = clock else { return 0 };
        let cutoff = clock - TimeDelta::days(i64::from(days));
        data.usage.purge_before_time(cutoff) + data.feeds.store.purge_before_time(cutoff)
    }

    /// Drops the records or events of one feed with `EventId < id`. Returns how many were dropped.
    pub fn purge_before_id(&self, feed: FeedKind, id: i64) -> u64 {
        let mut data = self.inner.lock_data();
        if feed == FeedKind::Usage {
            data.usage.purge_before_id(id)
        } else {
            data.feeds.store.purge_before_id(feed, id)
        }
    }

    /// Changes fault injection at run time (the plan's counters restart; [`WapSim::fault_stats`] does not).
    pub fn set_faults(&self, faults: FaultPlan) {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()).set_plan(faults);
    }

    /// How many faults of each kind were injected.
    pub fn fault_stats(&self) -> FaultStats {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()).stats
    }

    /// The requests the Usage Service received (the last 100,000).
    pub fn request_log(&self) -> Vec<RequestLogEntry> {
        self.inner.log.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Empties the request log.
    pub fn clear_request_log(&self) {
        self.inner.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    // ---- approval & pricing ---------------------------------------------------------------------------

    /// Registers (or replaces, by name) a notification subscriber.
    pub fn register_subscriber(&self, s: NotificationSubscriber) {
        let mut subs = self.inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        match subs.iter_mut().find(|x| x.name.eq_ignore_ascii_case(&s.name)) {
            Some(existing) => *existing = s,
            None => subs.push(s),
        }
    }

    /// Removes a subscriber (`Remove-MgmtSvcNotificationSubscriber`); true if it existed.
    pub fn remove_subscriber(&self, name: &str) -> bool {
        let mut subs = self.inner.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let before = subs.len();
        subs.retain(|s| !s.name.eq_ignore_ascii_case(name));
        subs.len() != before
    }

    /// The registered subscribers.
    pub fn subscribers(&self) -> Vec<NotificationSubscriber> {
        self.inner.subscribers.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    // ---- the administrator's side (plans and add-ons) ----

    /// An administrator creates a plan: Private and not configured, with its services and add-on links.
    pub fn create_plan(&self, plan: crate::NewPlan) -> Result<Plan, crate::AdminError> {
        crate::admin::create_plan(&self.inner, plan)
    }

    /// An administrator finishes a plan's configuration (`ConfigState` 1).
    pub fn configure_plan(&self, id: &str) -> Result<(), crate::AdminError> {
        crate::admin::change_plan(&self.inner, id, serde_json::json!({ "ConfigState": ConfigState::Configured }))
    }

    /// An administrator renames a plan.
    pub fn rename_plan(&self, id: &str, name: &str) -> Result<(), crate::AdminError> {
        crate::admin::change_plan(&self.inner, id, serde_json::json!({ "DisplayName": name }))
    }

    /// An administrator makes a plan Public, Private or Decommissioned.
    pub fn set_plan_state(&self, id: &str, state: PlanState) -> Result<(), crate::AdminError> {
        crate::admin::change_plan(&self.inner, id, serde_json::json!({ "State": state }))
    }

    /// An administrator clones a plan (a new id, the configuration, services and add-on links kept; Private).
    /// `name` defaults to the original's name with ` (clone)`.
    pub fn clone_plan(&self, id: &str, name: Option<&str>) -> Result<Plan, crate::AdminError> {
        crate::admin::clone_plan(&self.inner, id, name)
    }

    /// An administrator deletes a plan (refused while subscriptions use it); its links go first.
    pub fn delete_plan(&self, id: &str) -> Result<(), crate::AdminError> {
        crate::admin::delete_plan(&self.inner, id)
    }

    /// An administrator links an add-on to a plan.
    pub fn link_add_on(&self, plan_id: &str, add_on_id: &str) -> Result<(), crate::AdminError> {
        crate::admin::link_add_on(&self.inner, plan_id, add_on_id, true)
    }

    /// An administrator unlinks an add-on from a plan.
    pub fn unlink_add_on(&self, plan_id: &str, add_on_id: &str) -> Result<(), crate::AdminError> {
        crate::admin::link_add_on(&self.inner, plan_id, add_on_id, false)
    }

    /// An administrator creates an add-on: Private and not configured.
    pub fn create_add_on(&self, add_on: crate::NewAddOn) -> Result<PlanAddon, crate::AdminError> {
        crate::admin::create_add_on(&self.inner, add_on)
    }

    /// An administrator finishes an add-on's configuration (`ConfigState` 1).
    pub fn configure_add_on(&self, id: &str) -> Result<(), crate::AdminError> {
        crate::admin::change_add_on(&self.inner, id, serde_json::json!({ "ConfigState": ConfigState::Configured }))
    }

    /// An administrator makes an add-on Public, Private or Decommissioned.
    pub fn set_add_on_state(&self, id: &str, state: PlanState) -> Result<(), crate::AdminError> {
        crate::admin::change_add_on(&self.inner, id, serde_json::json!({ "State": state }))
    }

    /// An administrator clones an add-on (a new id, its configuration kept; Private).
    pub fn clone_add_on(&self, id: &str, name: Option<&str>) -> Result<PlanAddon, crate::AdminError> {
        crate::admin::clone_add_on(&self.inner, id, name)
    }

    /// An administrator deletes an add-on (refused while a subscription holds it); its plan links go first.
    pub fn delete_add_on(&self, id: &str) -> Result<(), crate::AdminError> {
        crate::admin::delete_add_on(&self.inner, id)
    }

    /// A tenant buys a plan (operation A).
    pub async fn create_subscription(&self, r: CreateSubscription) -> ActionOutcome {
        approval::create_subscription(&self.inner, r).await
    }

    /// A tenant cancels a subscription (operation B).
    pub async fn delete_subscription(&self, subscription_id: &str) -> ActionOutcome {
        approval::delete_subscription(&self.inner, subscription_id).await
    }

    /// A tenant adds an add-on (operation C).
    pub async fn add_subscription_addon(&self, subscription_id: &str, add_on_id: &str) -> ActionOutcome {
        approval::add_subscription_addon(&self.inner, subscription_id, add_on_id).await
    }

    /// A tenant removes an add-on, named by add-on id or instance id (operation D).
    pub async fn remove_subscription_addon(&self, subscription_id: &str, add_on_id: &str) -> ActionOutcome {
        approval::remove_subscription_addon(&self.inner, subscription_id, add_on_id).await
    }

    /// A subscription changes: suspend, activate, rename, change plan (operation E, sent as `PUT` with the full
    /// entity; it must be approved like the others).
    pub async fn update_subscription(&self, subscription_id: &str, update: SubscriptionUpdate) -> ActionOutcome {
        approval::update_subscription(&self.inner, subscription_id, update).await
    }

    /// `GET {endpoint}planPrice?id=&region=&username=` on the first enabled `BillingService` subscriber.
    pub async fn plan_price(&self, q: PlanPriceQuery) -> Result<PriceAnswer, SimError> {
        approval::plan_price(&self.inner, q).await
    }

    /// `GET {endpoint}addonPrice?id=&region=&username=&subscriptionid=`.
    pub async fn addon_price(&self, q: AddonPriceQuery) -> Result<PriceAnswer, SimError> {
        approval::addon_price(&self.inner, q).await
    }

    /// The plans of the catalogue.
    pub fn plans(&self) -> Vec<Plan> {
        parse_all(self.inner.lock_data().feeds.catalogue.plans.values().cloned().collect::<Vec<_>>().into_iter())
    }

    /// The add-ons of the catalogue.
    pub fn add_ons(&self) -> Vec<PlanAddon> {
        parse_all(self.inner.lock_data().feeds.catalogue.add_ons.values().cloned().collect::<Vec<_>>().into_iter())
    }

    /// The subscriptions as the committed events leave them (deleted ones are gone).
    pub fn subscriptions(&self) -> Vec<AdminSubscription> {
        let values: Vec<Value> = self.inner.lock_data().feeds.catalogue.subscriptions.values().cloned().collect();
        parse_all(values.into_iter())
    }

    /// Tenant accounts (e-mail addresses) known to the catalogue.
    pub fn accounts(&self) -> Vec<String> {
        self.inner.lock_data().feeds.catalogue.accounts.iter().cloned().collect()
    }

    // ---- resource providers ---------------------------------------------------------------------------

    /// Registers (or replaces, keeping the collector's `lastID`) a resource provider.
    pub fn register_resource_provider(&self, rp: RpRegistration) {
        let mut rps = self.inner.rps.lock().unwrap_or_else(|e| e.into_inner());
        let key = rp.name.to_ascii_lowercase();
        match rps.get_mut(&key) {
            Some(state) => state.registration = rp,
            None => {
                rps.insert(
                    key,
                    RpState {
                        registration: rp,
                        last_id: LastId::NONE,
                        run_lock: Arc::new(tokio::sync::Mutex::new(())),
                    },
                );
            }
        }
    }

    /// The registered resource providers.
    pub fn resource_providers(&self) -> Vec<RpRegistration> {
        self.inner.rps.lock().unwrap_or_else(|e| e.into_inner()).values().map(|s| s.registration.clone()).collect()
    }

    /// One collector cycle: polls the RP's usage endpoint until it answers `[]`, storing the records on
    /// `/usage`.
    pub async fn collect_usage_once(&self, rp_name: &str) -> Result<CollectReport, SimError> {
        collector::collect_once(&self.inner, rp_name).await
    }

    /// Runs the collector every `interval` (WAP's `DefaultProviderQueryDuration` is 3 minutes) until stopped.
    /// Call within a Tokio runtime; errors are logged (`tracing`) and the next round tries again.
    pub fn start_collector(&self, rp_name: &str, interval: Duration) {
        let inner = self.inner.clone();
        let name = rp_name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = collector::collect_once(&inner, &name).await {
                    tracing::warn!(rp = %name, error = %e, "usage collection failed");
                }
                tokio::time::sleep(interval).await;
            }
        });
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = tasks.collectors.insert(rp_name.to_ascii_lowercase(), task) {
            old.abort();
        }
    }

    /// Stops the collector of one RP.
    pub fn stop_collector(&self, rp_name: &str) {
        if let Some(t) =
            self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).collectors.remove(&rp_name.to_ascii_lowercase())
        {
            t.abort();
        }
    }

    /// The `lastID` the collector sends next to this RP (`None` if not registered).
    pub fn collector_last_id(&self, rp_name: &str) -> Option<LastId> {
        self.inner.rps.lock().unwrap_or_else(|e| e.into_inner()).get(&rp_name.to_ascii_lowercase()).map(|s| s.last_id)
    }

    /// Sets the `lastID` the collector sends next (e.g. to simulate a collector re-sending an old one).
    pub fn set_collector_last_id(&self, rp_name: &str, last: LastId) {
        collector::set_last_id(&self.inner, rp_name, last);
    }

    /// The notification caller for one RP.
    pub fn notifications(&self, rp_name: &str) -> NotificationCaller {
        NotificationCaller::new(self.inner.clone(), rp_name)
    }

    /// Fans a new subscription out to every registered RP with a notification endpoint (`POST subscriptions`),
    /// as WAP does for the RPs of a plan. Returns each RP's name and answer.
    pub async fn fan_out_subscription(&self, s: &Subscription) -> Vec<(String, Result<RpResponse, SimError>)> {
        let names: Vec<String> = self
            .resource_providers()
            .into_iter()
            .filter(|r| r.notification_endpoint.is_some())
            .map(|r| r.name)
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let r = self.notifications(&name).create_subscription(s).await;
            out.push((name, r));
        }
        out
    }

    /// Stops the server, live mode and collectors, and waits for the server to finish.
    pub async fn shutdown(self) {
        self.inner.signal_shutdown();
        let server = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()).server.take();
        if let Some(s) = server {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_file_names_map_to_feeds() {
        assert_eq!(feed_for_file("usage-page"), Some(FeedKind::Usage));
        assert_eq!(feed_for_file("plans-events"), Some(FeedKind::Plans));
        assert_eq!(feed_for_file("plan-addons-events"), Some(FeedKind::PlanAddons));
        assert_eq!(feed_for_file("subscription_addons"), Some(FeedKind::SubscriptionAddons));
        assert_eq!(feed_for_file("subscriptions-events-states"), None);
        assert_eq!(feed_for_file("usage-page-empty"), None);
        assert_eq!(feed_for_file("requests"), None);
    }
}
