//! [`Adapter`]: the whole billing adapter in a user's binary — processors, responder, admin endpoint.
//!
//! ```text
//!              +----------------------------- Adapter (one per process) ------------------------------+
//!  WAP  <----  | UsageServiceSource --> EventProcessor  (lease "notification") --> your EventHandler    |
//! 30022        |                   \--> UsageProcessor  (lease "usage")        --> your UsageHandler    |
//!              |                          state store: cursors, processed events, halts, leases, audit  |
//!  WAP  ---->  | responder (wap-responder::serve): approval + pricing, on every instance                |
//!  admin --->  | admin endpoint: GET /health /status /metrics, POST /operator/{processor}/{resume,skip} |
//!              +----------------------------------------------------------------------------------------+
//! ```
//!
//! Each processor runs only while this instance holds its lease (one leader per processor across instances);
//! responders run everywhere. [`AdapterBuilder::start`] checks the billing system's version
//! (docs/protocol/adapter-engine.md §9), opens the state store, binds the listeners and spawns everything; [`Adapter::shutdown`] stops it
//! gracefully (leases released at once, requests in flight finished). Spans: `cycle` (processor, lease
//! generation, cycle number) → `feed` → `event` / `usage_batch` (debug level).

mod admin;
#[cfg(feature = "metrics")]
pub mod metrics;
mod observe;
mod report;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wap_responder::{PricingResponder, Responder, ResponderServer, ServerConfig, SubscriptionApprover};
use wap_types::BasicCredentials;
use wap_usage_client::{UsageClient, UsageClientBuilder};

pub use self::admin::{AdminConfig, AdminFuture, AdminResponse, AdminService, DEFAULT_ADMIN_MAX_CONNECTIONS};
use self::admin::{AdminServer, StatusSnapshot};
use self::observe::{ObservedSource, SourceCounters};
pub use self::report::{phase_name, AdapterStatus, FeedReport, Health, HealthState, ProcessorReport};
use crate::config::{EngineConfig, EngineConfigError};
use crate::handler::{EventHandler, UsageHandler};
use crate::identity::{IdentityMap, StoreIdentityMap};
use crate::journal::{InDoubtResolution, Intent};
use crate::operator::Operator;
use crate::processor::{EventProcessor, ProcessorHandle, UsageProcessor};
use crate::source::FeedSource;
use crate::status::{Phase, ProcessorStatus};
use crate::store::{self, HaltStatus, HaltTarget, ProcessorKind, StateStore, StoreError};
use crate::usage_service::UsageServiceSource;

/// How long [`Adapter::shutdown`] waits for the processors to stop and release their leases.
const PROCESSOR_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a status or health request waits for the state store.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the adapter could not start (or a wait ended).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// A setting is invalid, or the billing system's version check failed (docs/protocol/adapter-engine.md §9).
    #[error(transparent)]
    Config(#[from] EngineConfigError),
    /// A part the configuration needs was not given (e.g. an event handler with the notification processor on).
    #[error("adapter incomplete: {0}")]
    Missing(String),
    /// The Usage Service client could not be built (bad URL, unreadable CA file, …).
    #[error("Usage Service client: {0}")]
    UsageClient(#[from] wap_usage_client::Error),
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Bind {
        /// `responder` or `admin endpoint`.
        what: &'static str,
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A wait ([`Adapter::sync`], [`Adapter::wait_caught_up`]) ran out of time. The error says why: what each
    /// processor was doing when the time ran out (a phase, a feed's failing fetches, a hold, a dependency wait, a
    /// lease held elsewhere) and the adapter's health problems then, which name the status code, the endpoint and
    /// the setting to check (e.g. `answered HTTP 401 … check UsageServiceUsername / UsageServicePassword`).
    #[error("timed out after {after:?} waiting for the processors{}", wait_causes(waiting, problems))]
    Timeout {
        /// How long the wait lasted.
        after: Duration,
        /// One line per processor that had not reached the awaited state: what it was doing.
        waiting: Vec<String>,
        /// The health problems at the end of the wait (as [`Adapter::health`] reports them).
        problems: Vec<String>,
    },
}

impl AdapterError {
    /// Whether trying again may succeed without changing anything: a timed-out wait whose processors report no
    /// problem (they were only slow). Settings, a missing part, a bad client setup, a listener that cannot be bound
    /// and a wait stalled on a reported problem are permanent until someone acts; a state-store error follows
    /// [`StoreError::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        match self {
            AdapterError::Timeout { problems, .. } => problems.is_empty(),
            AdapterError::Store(e) => e.is_retryable(),
            AdapterError::UsageClient(e) => e.is_retryable(),
            AdapterError::Config(_) | AdapterError::Missing(_) | AdapterError::Bind { .. } => false,
        }
    }

    /// For a timed-out wait, the health problems at its end (empty otherwise).
    pub fn problems(&self) -> &[String] {
        match self {
            AdapterError::Timeout { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// `: <waiting>; <problems>` for a timed-out wait's message.
fn wait_causes(waiting: &[String], problems: &[String]) -> String {
    let mut out = String::new();
    if !waiting.is_empty() {
        out.push_str(": ");
        out.push_str(&waiting.join("; "));
    }
    if problems.is_empty() {
        out.push_str(" (no problem reported: the processors are only slow; wait longer)");
    } else {
        out.push_str(" — problems: ");
        out.push_str(&problems.join("; "));
    }
    out
}

enum Listen {
    Addr(SocketAddr),
    Bound(TcpListener),
}

impl Listen {
    async fn bind(self, what: &'static str) -> Result<TcpListener, AdapterError> {
        match self {
            Listen::Bound(l) => Ok(l),
            Listen::Addr(addr) => TcpListener::bind(addr).await.map_err(|source| AdapterError::Bind {
                what,
                addr: addr.to_string(),
                source,
            }),
        }
    }
}

/// Starts the responder on a bound listener; the `bool` is the engine's `MethodNumericOrdinals` when known (from
/// the Usage Service client), applied to the responder so that approval calls and feeds read `Method` alike.
type StartResponder = Box<dyn FnOnce(TcpListener, Option<bool>) -> std::io::Result<ResponderServer> + Send>;

struct ResponderSetup {
    listen: Listen,
    base_path: String,
    start: StartResponder,
}

enum SourceSetup {
    Ready(Arc<dyn FeedSource>),
    Failed(wap_usage_client::Error),
}

/// Builds an [`Adapter`]: settings, the Usage Service, the billing system's handlers, the responder, the admin
/// endpoint. See [`Adapter::builder`].
pub struct AdapterBuilder {
    config: EngineConfig,
    source: Option<SourceSetup>,
    store: Option<Arc<dyn StateStore>>,
    events: Option<Arc<dyn EventHandler>>,
    usage: Option<Arc<dyn UsageHandler>>,
    identity: Option<Arc<dyn IdentityMap>>,
    store_identity_map: bool,
    responder: Option<ResponderSetup>,
    admin: Option<Listen>,
    admin_credentials: Option<BasicCredentials>,
    admin_config: AdminConfig,
    billing_system_version: Option<String>,
    /// The Usage Service client's `MethodNumericOrdinals`, when the engine reads the feeds with one.
    method_numeric_ordinals: Option<bool>,
}

impl std::fmt::Debug for AdapterBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdapterBuilder")
            .field("config", &self.config)
            .field("source", &self.source.is_some())
            .field("event_handler", &self.events.is_some())
            .field("usage_handler", &self.usage.is_some())
            .field("responder", &self.responder.is_some())
            .field("admin", &self.admin.is_some())
            .field("admin_credentials", &self.admin_credentials)
            .field("admin_config", &self.admin_config)
            .finish_non_exhaustive()
    }
}

impl AdapterBuilder {
    /// The Usage Service (`UsageServiceEndpoint`, credentials, TLS, timeout …): the client is built with
    /// [`RetryPolicy::disabled`](wap_usage_client::RetryPolicy::disabled), so the engine's own back-off retries
    /// WAP-side errors and reports them (see [`UsageServiceSource`]).
    pub fn usage_service(mut self, client: UsageClientBuilder) -> Self {
        self.source = Some(match UsageServiceSource::from_builder(client) {
            Ok(s) => {
                self.method_numeric_ordinals = Some(s.client().method_numeric_ordinals());
                SourceSetup::Ready(Arc::new(s))
            }
            Err(e) => SourceSetup::Failed(e),
        });
        self
    }

    /// A Usage Service client used as it is (its retry policy runs inside each fetch).
    pub fn usage_client(mut self, client: UsageClient) -> Self {
        self.method_numeric_ordinals = Some(client.method_numeric_ordinals());
        self.source = Some(SourceSetup::Ready(Arc::new(UsageServiceSource::new(client))));
        self
    }

    /// Any [`FeedSource`] (e.g. a [`MemorySource`](crate::MemorySource) in tests).
    pub fn source(mut self, source: Arc<dyn FeedSource>) -> Self {
        self.method_numeric_ordinals = None;
        self.source = Some(SourceSetup::Ready(source));
        self
    }

    /// The state store; without it [`AdapterBuilder::start`] opens `StateDatabaseUrl`.
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The billing system's event handler (needed with `NotificationProcessorEnabled`).
    pub fn event_handler(mut self, handler: Arc<dyn EventHandler>) -> Self {
        self.events = Some(handler);
        self
    }

    /// The billing system's usage handler (needed with `UsageProcessorEnabled`).
    pub fn usage_handler(mut self, handler: Arc<dyn UsageHandler>) -> Self {
        self.usage = Some(handler);
        self
    }

    /// A billing system that handles both events and usage (e.g. `SqliteLedger` of the `wap-billing-ledger` crate).
    pub fn billing_system<B: EventHandler + UsageHandler>(self, billing: Arc<B>) -> Self {
        let events: Arc<dyn EventHandler> = billing.clone();
        let usage: Arc<dyn UsageHandler> = billing;
        self.event_handler(events).usage_handler(usage)
    }

    /// An identity map for the event processor (see [`IdentityMap`]).
    pub fn identity_map(mut self, map: Arc<dyn IdentityMap>) -> Self {
        self.identity = Some(map);
        self
    }

    /// Uses the identity map kept in the state store ([`StoreIdentityMap`]).
    pub fn store_identity_map(mut self) -> Self {
        self.store_identity_map = true;
        self
    }

    /// Serves the approval and pricing responder on `listen` (`ResponderListenAddress`) on this instance, when
    /// `SubscriptionResponderEnabled` (pricing answers follow the responder's own `pricing_enabled`).
    pub fn responder<A: SubscriptionApprover, P: PricingResponder>(
        self,
        listen: SocketAddr,
        responder: Responder<A, P>,
        server: ServerConfig,
    ) -> Self {
        self.responder_on(Listen::Addr(listen), responder, server)
    }

    /// Like [`AdapterBuilder::responder`] on an already bound listener.
    pub fn responder_listener<A: SubscriptionApprover, P: PricingResponder>(
        self,
        listener: TcpListener,
        responder: Responder<A, P>,
        server: ServerConfig,
    ) -> Self {
        self.responder_on(Listen::Bound(listener), responder, server)
    }

    fn responder_on<A: SubscriptionApprover, P: PricingResponder>(
        mut self,
        listen: Listen,
        responder: Responder<A, P>,
        server: ServerConfig,
    ) -> Self {
        let base_path = responder.config().base_path.clone();
        let start: StartResponder = Box::new(move |listener, numeric_ordinals| {
            if let Some(enabled) = numeric_ordinals {
                if responder.method_numeric_ordinals() != enabled {
                    tracing::info!(
                        enabled,
                        "responder reads Method with the engine's MethodNumericOrdinals setting (the Usage Service client's)"
                    );
                }
                responder.set_method_numeric_ordinals(enabled);
            }
            wap_responder::serve(listener, responder, server)
        });
        self.responder = Some(ResponderSetup { listen, base_path, start });
        self
    }

    /// Serves the admin endpoint (health, status, metrics, operator commands) on `listen`. Bind it to a loopback
    /// or management address: health, status and metrics need no credentials.
    pub fn admin(mut self, listen: SocketAddr) -> Self {
        self.admin = Some(Listen::Addr(listen));
        self
    }

    /// The admin endpoint's limits (connections, body size and time, header timeout) and status snapshot interval;
    /// also used by [`Adapter::admin_service`].
    pub fn admin_config(mut self, config: AdminConfig) -> Self {
        self.admin_config = config;
        self
    }

    /// Like [`AdapterBuilder::admin`] on an already bound listener.
    pub fn admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin = Some(Listen::Bound(listener));
        self
    }

    /// Enables the operator commands on the admin endpoint (`POST /operator/...`), protected by these Basic
    /// credentials.
    pub fn admin_credentials(mut self, credentials: BasicCredentials) -> Self {
        self.admin_credentials = Some(credentials);
        self
    }

    /// The version the billing system reports, checked against `BillingSystemExpectedVersion` at start
    /// (docs/protocol/adapter-engine.md §9).
    pub fn billing_system_version(mut self, version: impl Into<String>) -> Self {
        self.billing_system_version = Some(version.into());
        self
    }

    /// Checks the settings and the billing system's version, opens the state store, binds the listeners and
    /// starts the processors, the responder and the admin endpoint. Call inside a Tokio runtime.
    pub async fn start(self) -> Result<Adapter, AdapterError> {
        let config = self.config;
        let found = self.billing_system_version.as_deref().unwrap_or("(not reported)");
        config.check_billing_system_version(found)?;
        let needs_events = config.notification_processor_enabled;
        let needs_usage = config.usage_processor_enabled;
        if needs_events && self.events.is_none() {
            return Err(AdapterError::Missing(
                "NotificationProcessorEnabled is true but no event handler was given".into(),
            ));
        }
        if needs_usage && self.usage.is_none() {
            return Err(AdapterError::Missing("UsageProcessorEnabled is true but no usage handler was given".into()));
        }
        let source = match self.source {
            Some(SourceSetup::Ready(s)) => Some(s),
            Some(SourceSetup::Failed(e)) => return Err(e.into()),
            None if needs_events || needs_usage => {
                return Err(AdapterError::Missing(
                    "a processor is enabled but no Usage Service (usage_service / usage_client / source) was given"
                        .into(),
                ))
            }
            None => None,
        };
        let store = match self.store {
            Some(s) => s,
            None => {
                store::open_with_ca_file(&config.state_database_url, config.state_database_ca_file.as_deref()).await?
            }
        };
        let schema = store.schema_version().await?;
        tracing::info!(
            instance = %config.instance_id,
            backend = store.backend(),
            schema,
            url = %store::redact_url(&config.state_database_url),
            "state store open"
        );
        let identity = match (self.identity, self.store_identity_map) {
            (Some(map), _) => Some(map),
            (None, true) => Some(Arc::new(StoreIdentityMap::new(Arc::clone(&store))) as Arc<dyn IdentityMap>),
            (None, false) => None,
        };

        // Bind before spawning anything, so a bad address fails the start cleanly.
        let responder_listener = match self.responder {
            Some(setup) if config.subscription_responder_enabled => {
                Some((setup.listen.bind("responder").await?, setup.base_path, setup.start))
            }
            Some(_) => {
                tracing::info!("SubscriptionResponderEnabled is false: the responder is not served");
                None
            }
            None => None,
        };
        let admin_listener = match self.admin {
            Some(listen) => Some(listen.bind("admin endpoint").await?),
            None => None,
        };

        let counters = Arc::new(SourceCounters::default());
        let mut event_processor = None;
        let mut usage_processor = None;
        if let Some(source) = source {
            let observed: Arc<dyn FeedSource> = Arc::new(ObservedSource::new(source, Arc::clone(&counters)));
            if let Some(handler) = self.events {
                let mut p = EventProcessor::new(&config, Arc::clone(&observed), Arc::clone(&store), handler);
                if let Some(map) = identity {
                    p = p.with_identity_map(map);
                }
                event_processor = Some(p);
            }
            if let Some(handler) = self.usage {
                usage_processor = Some(UsageProcessor::new(&config, observed, Arc::clone(&store), handler));
            }
        }

        // Servers first: if one cannot start, nothing has run yet.
        let mut responder_endpoint = None;
        let responder =
            match responder_listener {
                Some((listener, base_path, start)) => {
                    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let server = start(listener, self.method_numeric_ordinals)
                        .map_err(|source| AdapterError::Bind { what: "responder", addr, source })?;
                    responder_endpoint = Some(server.endpoint_url(&base_path));
                    Some(server)
                }
                None => None,
            };
        let shared = Arc::new(Shared {
            operator: Operator::new(Arc::clone(&store)),
            store,
            config,
            notification: event_processor.as_ref().map(EventProcessor::handle),
            usage: usage_processor.as_ref().map(UsageProcessor::handle),
            counters,
            responder_endpoint,
            shutting_down: AtomicBool::new(false),
            admin_snapshot: StatusSnapshot::default(),
        });
        let admin_service = AdminServiceSetup { credentials: self.admin_credentials, config: self.admin_config };
        let admin = match admin_listener {
            Some(listener) => {
                let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                match admin::serve(listener, admin_service.service(&shared)) {
                    Ok(server) => Some(server),
                    Err(source) => {
                        if let Some(r) = responder {
                            r.shutdown().await;
                        }
                        return Err(AdapterError::Bind { what: "admin endpoint", addr, source });
                    }
                }
            }
            None => None,
        };

        let (shutdown_tx, _) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(p) = event_processor {
            tasks.push(tokio::spawn(p.run_until(stopped(shutdown_tx.subscribe()))));
        }
        if let Some(p) = usage_processor {
            tasks.push(tokio::spawn(p.run_until(stopped(shutdown_tx.subscribe()))));
        }
        tracing::info!(
            instance = %shared.config.instance_id,
            notification = shared.notification.is_some(),
            usage = shared.usage.is_some(),
            responder = ?shared.responder_endpoint,
            admin = ?admin.as_ref().map(|a| a.local_addr),
            "adapter started"
        );
        Ok(Adapter { shared, shutdown_tx, tasks, responder, admin, admin_service })
    }
}

/// What [`Adapter::admin_service`] builds the service from.
#[derive(Debug, Clone)]
struct AdminServiceSetup {
    credentials: Option<BasicCredentials>,
    config: AdminConfig,
}

impl AdminServiceSetup {
    fn service(&self, shared: &Arc<Shared>) -> AdminService {
        AdminService::new(Arc::clone(shared), self.credentials.clone(), self.config.clone())
    }
}

/// One line on what a processor that has not finished a wait is doing: its phase and, per feed, a PendingApproval
/// hold or a dependency wait; on a standby instance, who holds the lease. (Failing fetches, halts, state-store
/// errors and lease conflicts are in the health problems next to it.)
fn describe_stall(status: &ProcessorStatus, report: Option<&ProcessorReport>, now: chrono::DateTime<Utc>) -> String {
    let mut line = format!("{} processor {}", status.processor, phase_name(status.phase));
    let mut details = Vec::new();
    if status.phase == Phase::Standby || status.phase == Phase::Starting {
        match report.and_then(|r| r.leader(now)) {
            Some(holder) => details.push(format!(
                "the lease is held by instance `{holder}`: this instance is not the leader, wait on that one"
            )),
            None => details.push("this instance has not taken the lease yet".to_owned()),
        }
    }
    // Failing fetches, halts, state-store errors and lease conflicts are in the health problems.
    for f in &status.feeds {
        if let Some(h) = &f.held {
            details.push(format!("{}: held at PendingApproval event {} since {}", f.feed, h.event_id, h.since));
        }
        if let Some(w) = &f.waiting {
            details.push(format!("{}: event {} waits on a dependency: {}", f.feed, w.event_id, w.reason));
        }
    }
    if !details.is_empty() {
        line.push_str(" (");
        line.push_str(&details.join("; "));
        line.push(')');
    }
    line
}

/// Completes once the shutdown flag is set (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// What the admin endpoint and the [`Adapter`] handle share.
pub(crate) struct Shared {
    config: EngineConfig,
    store: Arc<dyn StateStore>,
    operator: Operator,
    notification: Option<ProcessorHandle>,
    usage: Option<ProcessorHandle>,
    counters: Arc<SourceCounters>,
    responder_endpoint: Option<String>,
    shutting_down: AtomicBool,
    /// What `/health`, `/status` and `/metrics` answer from.
    admin_snapshot: StatusSnapshot,
}

impl Shared {
    fn handle(&self, processor: ProcessorKind) -> Option<&ProcessorHandle> {
        match processor {
            ProcessorKind::Notification => self.notification.as_ref(),
            ProcessorKind::Usage => self.usage.as_ref(),
        }
    }

    fn enabled(&self, processor: ProcessorKind) -> bool {
        match processor {
            ProcessorKind::Notification => self.config.notification_processor_enabled,
            ProcessorKind::Usage => self.config.usage_processor_enabled,
        }
    }

    async fn status(&self) -> AdapterStatus {
        let at = Utc::now();
        let mut store_error = None;
        let mut processors = Vec::with_capacity(2);
        for kind in ProcessorKind::ALL {
            let local = self.handle(kind).map(ProcessorHandle::status);
            let stored = tokio::time::timeout(STORE_PROBE_TIMEOUT, async {
                let lease = self.store.lease(kind).await?;
                let halt = self.store.halt(kind).await?;
                let mut cursors = Vec::new();
                for &feed in kind.feeds() {
                    cursors.push(self.store.cursor(feed).await?);
                }
                Ok::<_, StoreError>((lease, halt, cursors))
            })
            .await;
            let (lease, halt, cursors) = match stored {
                Ok(Ok(v)) => (v.0, v.1, Some(v.2)),
                Ok(Err(e)) => {
                    store_error.get_or_insert(e.to_string());
                    (None, local.as_ref().and_then(|s| s.halt.clone()), None)
                }
                Err(_) => {
                    store_error.get_or_insert(format!("no answer within {STORE_PROBE_TIMEOUT:?}"));
                    (None, local.as_ref().and_then(|s| s.halt.clone()), None)
                }
            };
            let feeds = kind
                .feeds()
                .iter()
                .enumerate()
                .map(|(i, &feed)| {
                    let cursor = cursors.as_ref().and_then(|c| c.get(i));
                    let lf = local.as_ref().and_then(|s| s.feed(feed));
                    let committed = cursor.map_or_else(|| lf.and_then(|l| l.last_committed), |c| c.last_event_id);
                    let seen = self.counters.observation(feed);
                    let lag = seen.newest_seen.map(|n| (n - committed.unwrap_or(0)).max(0));
                    FeedReport {
                        feed,
                        committed,
                        newest_seen: seen.newest_seen,
                        lag,
                        hold: cursor.and_then(|c| c.hold),
                        last_poll_at: cursor.and_then(|c| c.last_poll_at).or(lf.and_then(|l| l.last_poll_at)),
                        fetches: seen.fetches,
                        fetch_errors: seen.fetch_errors,
                        records_fetched: seen.records,
                    }
                })
                .collect();
            let task_running = self.handle(kind).is_none_or(ProcessorHandle::is_running);
            let is_leader = local.as_ref().is_some_and(ProcessorStatus::is_leader);
            processors.push(ProcessorReport {
                processor: kind,
                enabled: self.enabled(kind),
                lease,
                is_leader,
                halt,
                local,
                task_running,
                feeds,
            });
        }
        let catching_up = processors
            .iter()
            .filter_map(|p| p.local.as_ref())
            .any(|s| s.is_leader() && matches!(s.phase, Phase::CatchingUp | Phase::Starting));
        AdapterStatus {
            instance_id: self.config.instance_id.clone(),
            state_store: self.store.backend(),
            catching_up,
            processors,
            responder_endpoint: self.responder_endpoint.clone(),
            store_error,
            at,
        }
    }

    async fn health(&self) -> Health {
        self.status().await.health(self.shutting_down.load(Ordering::Relaxed))
    }

    async fn resume(
        &self,
        processor: ProcessorKind,
        event: Option<HaltTarget>,
        actor: &str,
    ) -> Result<HaltStatus, StoreError> {
        match self.handle(processor) {
            Some(h) => h.resume_checked(event, actor).await,
            None => self.operator.resume_checked(processor, event, actor).await,
        }
    }

    async fn skip(
        &self,
        processor: ProcessorKind,
        event: Option<HaltTarget>,
        actor: &str,
        reason: &str,
    ) -> Result<HaltStatus, StoreError> {
        match self.handle(processor) {
            Some(h) => h.skip_checked(event, actor, reason).await,
            None => self.operator.skip_checked(processor, event, actor, reason).await,
        }
    }

    async fn resolve_in_doubt(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
    ) -> Result<Intent, StoreError> {
        match self.handle(processor) {
            Some(h) => h.resolve_in_doubt(resolution, actor, reason).await,
            None => self.operator.resolve_in_doubt(processor, resolution, actor, reason).await,
        }
    }
}

/// A running billing adapter. Build it with [`Adapter::builder`]; stop it with [`Adapter::shutdown`] (dropping it
/// aborts nothing: the tasks keep running until the runtime ends, and leases then expire after their TTL).
///
/// A whole adapter with a custom billing system, runnable as it is (an in-memory Usage Service stands in for WAP;
/// in production pass [`AdapterBuilder::usage_service`] a [`UsageClient`] builder instead):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use wap_billing_engine::wap_types::{
///     EventMethod, NotificationState, Plan, StringMap, UsageEvent, UsageRecord, WapDateTime,
/// };
/// use wap_billing_engine::{
///     async_trait, Adapter, EngineConfig, EntityChange, EventContext, EventHandler, FeedItem, HandlerError,
///     MemorySource, UsageBatch, UsageHandler,
/// };
///
/// /// A billing system that keeps plans and usage lines in memory (yours writes to its database or API).
/// #[derive(Default)]
/// struct MyBilling {
///     plans: Mutex<Vec<String>>,
///     usage: Mutex<Vec<i64>>,
/// }
///
/// #[async_trait]
/// impl EventHandler for MyBilling {
///     async fn plan(&self, _ctx: &EventContext<'_>, change: EntityChange<'_, Plan>) -> Result<(), HandlerError> {
///         self.plans.lock().unwrap().push(format!("{} {}", change.verb(), change.entity().id));
///         Ok(())
///     }
/// }
///
/// #[async_trait]
/// impl UsageHandler for MyBilling {
///     async fn apply_usage(&self, batch: UsageBatch<'_>) -> Result<(), HandlerError> {
///         // Store per record, keyed by EventId: a batch may come again (see the handler module).
///         self.usage.lock().unwrap().extend(batch.records.iter().map(|r| r.event_id));
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let wap = MemorySource::new();
/// let gold = Plan { id: "gold".into(), ..Default::default() };
/// wap.push(FeedItem::Plan(UsageEvent::new(1, NotificationState::Acknowledged, EventMethod::Post, gold)));
/// let mut meters = StringMap::new();
/// meters.insert("DatabaseCount".into(), "2".into());
/// wap.push(FeedItem::Usage(UsageRecord {
///     event_id: 7,
///     subscription_id: "6f1a93c2-0b7e-4d51-9a3e-5c2b8e0d4f17".into(),
///     start_time: WapDateTime::parse("2015-06-02T08:00:00")?,
///     end_time: WapDateTime::parse("2015-06-02T09:00:00")?,
///     resources: meters,
///     ..Default::default()
/// }));
///
/// let dir = tempfile::tempdir()?;
/// let config = EngineConfig::builder()
///     .instance_id("billing-1")
///     .state_database_url(format!("sqlite://{}", dir.path().join("state.db").display()))
///     .build()?;
/// let billing = Arc::new(MyBilling::default());
/// let adapter = Adapter::builder(config)
///     .source(Arc::new(wap)) // production: .usage_service(UsageClient::builder().base_url(…).basic_credentials(…))
///     .billing_system(Arc::clone(&billing))
///     .start()
///     .await?;
/// adapter.wait_caught_up(Duration::from_secs(30)).await?; // on a timeout the error names the cause
/// adapter.shutdown().await;
///
/// assert_eq!(*billing.plans.lock().unwrap(), ["created gold"]);
/// assert_eq!(*billing.usage.lock().unwrap(), [7]);
/// # Ok(())
/// # }
/// ```
pub struct Adapter {
    shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    responder: Option<ResponderServer>,
    admin: Option<AdminServer>,
    admin_service: AdminServiceSetup,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("instance_id", &self.shared.config.instance_id)
            .field("store", &self.shared.store)
            .field("responder_endpoint", &self.shared.responder_endpoint)
            .field("admin", &self.admin.as_ref().map(|a| a.local_addr))
            .finish_non_exhaustive()
    }
}

impl Adapter {
    /// A builder with `config` (build it with [`EngineConfig::builder`]).
    pub fn builder(config: EngineConfig) -> AdapterBuilder {
        AdapterBuilder {
            config,
            source: None,
            store: None,
            events: None,
            usage: None,
            identity: None,
            store_identity_map: false,
            responder: None,
            admin: None,
            admin_credentials: None,
            admin_config: AdminConfig::default(),
            billing_system_version: None,
            method_numeric_ordinals: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The state store.
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.shared.store
    }

    /// The endpoint to register with WAP (`Set-MgmtSvcNotificationSubscriber -Endpoint`), with a trailing slash,
    /// when this instance serves the responder.
    pub fn responder_endpoint(&self) -> Option<&str> {
        self.shared.responder_endpoint.as_deref()
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.local_addr)
    }

    /// The admin endpoint (health, status, metrics, operator routes with the
    /// [`admin_credentials`](AdapterBuilder::admin_credentials)) as a `tower::Service`, to mount in your own HTTP
    /// server, e.g. under a path prefix your router strips. It answers from the same status snapshot as the served
    /// endpoint (whose refresher it starts if none runs yet).
    pub fn admin_service(&self) -> AdminService {
        self.admin_service.service(&self.shared)
    }

    /// The handle of a processor configured on this instance (status, wake, resume, skip).
    pub fn processor(&self, processor: ProcessorKind) -> Option<&ProcessorHandle> {
        self.shared.handle(processor)
    }

    /// Operator commands on the state store (halts, resume, skip, audit log, cursors, identity map).
    pub fn operator(&self) -> &Operator {
        &self.shared.operator
    }

    /// Operator `resume` of a halted processor (audited); wakes it when it runs here.
    pub async fn resume(&self, processor: ProcessorKind, actor: &str) -> Result<HaltStatus, StoreError> {
        self.shared.resume(processor, None, actor).await
    }

    /// Operator resolution of the intent a processor halted in doubt on (journaled path; audited with `reason`);
    /// wakes it when it runs here. See [`Operator::resolve_in_doubt`].
    pub async fn resolve_in_doubt(
        &self,
        processor: ProcessorKind,
        resolution: InDoubtResolution,
        actor: &str,
        reason: &str,
    ) -> Result<Intent, StoreError> {
        self.shared.resolve_in_doubt(processor, resolution, actor, reason).await
    }

    /// Operator `skip` of the event a processor halted on (audited with `reason`); wakes it when it runs here.
    pub async fn skip(&self, processor: ProcessorKind, actor: &str, reason: &str) -> Result<HaltStatus, StoreError> {
        self.shared.skip(processor, None, actor, reason).await
    }

    /// Operator `resume` of the halt on `event`; refused ([`StoreError::HaltMismatch`]) when halted elsewhere.
    pub async fn resume_event(
        &self,
        processor: ProcessorKind,
        event: HaltTarget,
        actor: &str,
    ) -> Result<HaltStatus, StoreError> {
        self.shared.resume(processor, Some(event), actor).await
    }

    /// Operator `skip` of the halt on `event`; refused ([`StoreError::HaltMismatch`]) when halted elsewhere.
    pub async fn skip_event(
        &self,
        processor: ProcessorKind,
        event: HaltTarget,
        actor: &str,
        reason: &str,
    ) -> Result<HaltStatus, StoreError> {
        self.shared.skip(processor, Some(event), actor, reason).await
    }

    /// The status: leaders, halts, cursors and lag per feed, catching-up flag (also `GET /status`).
    pub async fn status(&self) -> AdapterStatus {
        self.shared.status().await
    }

    /// The health verdict (also `GET /health`).
    pub async fn health(&self) -> Health {
        self.shared.health().await
    }

    /// Wakes the processors: they poll now instead of at the end of `SyncIntervalMilliseconds`.
    pub fn wake(&self) {
        for h in [&self.shared.notification, &self.shared.usage].into_iter().flatten() {
            h.wake();
        }
    }

    fn running_handles(&self) -> Vec<ProcessorHandle> {
        ProcessorKind::ALL
            .into_iter()
            .filter(|k| self.shared.enabled(*k))
            .filter_map(|k| self.shared.handle(k).cloned())
            .collect()
    }

    /// Waits until every enabled processor of this instance is caught up (or halted): the first-run backfill is
    /// over. Needs this instance to be the leader.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<Vec<ProcessorStatus>, AdapterError> {
        let done = |s: &ProcessorStatus| matches!(s.phase, Phase::CaughtUp | Phase::Halted);
        let waits = self.running_handles().into_iter().map(|h| async move { h.wait_for(done).await });
        match tokio::time::timeout(timeout, futures_util::future::join_all(waits)).await {
            Ok(statuses) => Ok(statuses),
            Err(_) => Err(self.timed_out(timeout, |_, s| done(s)).await),
        }
    }

    /// The [`AdapterError::Timeout`] of a wait that lasted `after`: what each processor not `finished` is doing,
    /// and the health problems now.
    async fn timed_out(
        &self,
        after: Duration,
        finished: impl Fn(&ProcessorHandle, &ProcessorStatus) -> bool,
    ) -> AdapterError {
        let report = self.shared.status().await;
        let health = report.health(self.shared.shutting_down.load(Ordering::Relaxed));
        let waiting = self
            .running_handles()
            .iter()
            .filter_map(|h| {
                let status = h.status();
                (!finished(h, &status)).then(|| describe_stall(&status, report.processor(h.processor()), report.at))
            })
            .collect();
        let error = AdapterError::Timeout { after, waiting, problems: health.problems };
        tracing::warn!(%error, "wait timed out");
        error
    }

    /// Polls now and waits until each enabled processor has finished a round that started after this call (see
    /// [`ProcessorHandle::sync_once`]): unless a processor is halted, held or waiting on a dependency (check the
    /// returned phases), everything WAP served before the call has been handed to the billing system. Needs this
    /// instance to be the leader.
    pub async fn sync(&self, timeout: Duration) -> Result<Vec<ProcessorStatus>, AdapterError> {
        let handles = self.running_handles();
        let started: Vec<(ProcessorKind, u64)> =
            handles.iter().map(|h| (h.processor(), h.status().rounds_started)).collect();
        let waits = handles.into_iter().map(|h| async move { h.sync_once().await });
        match tokio::time::timeout(timeout, futures_util::future::join_all(waits)).await {
            Ok(statuses) => Ok(statuses),
            Err(_) => {
                let finished = |h: &ProcessorHandle, s: &ProcessorStatus| {
                    let round = started.iter().find(|(k, _)| *k == h.processor()).map_or(0, |(_, n)| *n);
                    s.last_finished_round > round || s.phase == Phase::Stopped
                };
                Err(self.timed_out(timeout, finished).await)
            }
        }
    }

    /// Runs until Ctrl-C (or SIGTERM on Unix), then shuts down gracefully.
    pub async fn run_until_signal(self) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("stop signal received");
        self.shutdown().await;
    }

    /// Stops at once **without releasing the leases**, as a crash would (chaos drills and failover tests): the
    /// processors are aborted wherever they are (nothing half-written: every commit is one transaction), another
    /// instance takes over once the leases expire. The responder and the admin endpoint are then shut down.
    pub async fn abort(mut self) {
        for task in std::mem::take(&mut self.tasks) {
            task.abort();
            let _ = task.await;
        }
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        if let Some(responder) = self.responder.take() {
            responder.shutdown().await;
        }
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        self.shared.admin_snapshot.stop();
        tracing::warn!(instance = %self.shared.config.instance_id, "adapter aborted (leases not released)");
    }

    /// Stops gracefully: the health endpoint answers 503, the processors stop and release their leases (another
    /// instance takes over at once), then the responder finishes the requests in flight and the admin endpoint
    /// closes.
    pub async fn shutdown(mut self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        let _ = self.shutdown_tx.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(PROCESSOR_STOP_GRACE, task).await.is_err() {
                tracing::warn!("a processor did not stop in time; aborted (its lease expires after the TTL)");
                abort.abort();
            }
        }
        if let Some(responder) = self.responder.take() {
            responder.shutdown().await;
        }
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        self.shared.admin_snapshot.stop();
        tracing::info!(instance = %self.shared.config.instance_id, "adapter stopped");
    }
}
