//! From [`Settings`] to a running [`Adapter`]: the usage client, the state store, the billing system, the
//! responder and the admin endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use wap_billing_engine::{Adapter, AdapterError, ElectionMode, EngineConfig};
use wap_billing_ledger::SqliteLedger;
use wap_responder::{FailureMode, Responder, ResponderConfig, ServerConfig};
use wap_types::{BasicCredentials, FeedKind, StartIdMode};
use wap_usage_client::UsageClient;

use crate::settings::{redact_url, Problem, Settings};

/// Why the adapter could not start, as one line with the setting to check.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is wrong.
    #[error("{0}")]
    Setting(Problem),
    /// The billing system could not be opened.
    #[error("billing system: {message} (check {key})")]
    Billing {
        /// The key to check.
        key: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The adapter refused to start.
    #[error("{message} (check {key})")]
    Adapter {
        /// The key to check.
        key: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl StartError {
    fn adapter(e: AdapterError) -> Self {
        let key = match &e {
            AdapterError::Bind { what: "responder", .. } => "responder.listen",
            AdapterError::Bind { .. } => "admin.listen",
            AdapterError::UsageClient(_) => "usage_service",
            AdapterError::Store(_) => "state.url",
            AdapterError::Config(wap_billing_engine::EngineConfigError::UnexpectedBillingSystemVersion { .. }) => {
                "billing.expected_version / billing.allow_unexpected_version"
            }
            _ => "the settings",
        };
        StartError::Adapter { key, message: e.to_string() }
    }
}

/// The engine's settings from the `[engine]`, `[state]`, `[usage_service]`, `[responder]` and `[billing]` sections.
pub fn engine_config(s: &Settings) -> Result<EngineConfig, StartError> {
    let e = &s.engine;
    let state = s.state.resolve().map_err(StartError::Setting)?;
    let mut b = EngineConfig::builder()
        .notification_processor_enabled(e.notification_processor_enabled)
        .usage_processor_enabled(e.usage_processor_enabled)
        .subscription_responder_enabled(s.responder.enabled)
        .pricing_responder_enabled(s.responder.pricing_enabled)
        .state_database_url(state.expose())
        .retry_max_attempts(e.retry_max_attempts)
        .retry_sleep(Duration::from_millis(e.retry_sleep_ms))
        .wap_retry_initial(Duration::from_millis(e.wap_retry_initial_ms))
        .wap_retry_max(Duration::from_millis(e.wap_retry_max_ms))
        .dependency_wait_max(Duration::from_secs(e.dependency_wait_max_seconds))
        .lease_ttl(Duration::from_millis(e.lease_ttl_ms))
        .pending_approval_warn(Duration::from_secs(e.pending_approval_warn_seconds))
        .pending_approval_max_wait(Duration::from_secs(e.pending_approval_max_wait_seconds))
        .retention_warn(Duration::from_secs(e.retention_warn_days.saturating_mul(86_400)))
        .sync_interval(Duration::from_millis(e.sync_interval_ms))
        .batch_size(s.usage_service.batch_size)
        .start_id_mode(if s.usage_service.start_id_inclusive { StartIdMode::Inclusive } else { StartIdMode::Exclusive })
        .allow_unexpected_billing_system_version(s.billing.allow_unexpected_version)
        .election_mode(match e.leader_election_mode.to_ascii_lowercase().as_str() {
            "elect" => ElectionMode::Elect,
            _ => ElectionMode::SingleInstance,
        });
    for feed in FeedKind::ALL {
        b = b.initial_start_id(feed, e.initial_start_id);
    }
    for (name, start) in &e.initial_start_ids {
        if let Some(feed) = FeedKind::from_name(name) {
            b = b.initial_start_id(feed, *start);
        }
    }
    if let Some(v) = &s.billing.expected_version {
        b = b.billing_system_expected_version(v);
    }
    if let Some(id) = &e.instance_id {
        b = b.instance_id(id);
    }
    b.build().map_err(|err| StartError::Adapter { key: "engine", message: err.to_string() })
}

/// The Usage Service client from `[usage_service]`.
pub fn usage_client(s: &Settings) -> Result<UsageClient, StartError> {
    let u = &s.usage_service;
    let endpoint = u.endpoint.clone().ok_or_else(|| {
        StartError::Setting(Problem {
            path: "usage_service.endpoint".into(),
            expected: "a URL".into(),
            found: "nothing".into(),
        })
    })?;
    let password = u.secret().resolve("usage_service").map_err(StartError::Setting)?.unwrap_or_default();
    let mut b = UsageClient::builder()
        .base_url(&endpoint)
        .credentials(u.username.clone().unwrap_or_default(), password)
        .batch_size(u.batch_size)
        .start_id_inclusive(u.start_id_inclusive)
        .method_numeric_ordinals(u.method_numeric_ordinals)
        .timeout(Duration::from_secs(u.timeout_seconds))
        .disable_ssl_verification(u.disable_ssl_verification);
    if let Some(ca) = &u.ca_file {
        b = b.ca_file(ca.clone());
    }
    if let Some(pin) = &u.pinned_cert_sha256 {
        b = b.pinned_certificate_sha256_hex(pin);
    }
    b.build().map_err(|e| StartError::Adapter { key: "usage_service", message: format!("Usage Service client: {e}") })
}

fn responder_config(s: &Settings) -> Result<ResponderConfig, StartError> {
    let r = &s.responder;
    let mut config = if r.authentication.eq_ignore_ascii_case("none") {
        ResponderConfig::without_authentication()
    } else {
        let password = r.secret().resolve("responder").map_err(StartError::Setting)?.unwrap_or_default();
        ResponderConfig::basic(BasicCredentials::new(r.username.clone().unwrap_or_default(), password.expose()))
    };
    config = config
        .base_path(r.base_path.clone())
        .decision_budget(Duration::from_millis(r.approval_time_budget_ms))
        .failure_mode(if r.approval_failure_mode.eq_ignore_ascii_case("approve") {
            FailureMode::Approve
        } else {
            FailureMode::Deny
        });
    config.approval_enabled = r.enabled;
    config.pricing_enabled = r.pricing_enabled;
    Ok(config)
}

fn addr(value: &str, key: &str) -> Result<SocketAddr, StartError> {
    value.parse().map_err(|_| {
        StartError::Setting(Problem { path: key.into(), expected: "HOST:PORT".into(), found: format!("{value:?}") })
    })
}

/// Asks WAP's Usage Service for one plan event, to catch wrong credentials, a wrong address or an untrusted
/// certificate before anything starts. `Ok(Some(warning))` for a problem the adapter rides out by retrying
/// (unreachable, timeouts, 5xx); `Err` for one it cannot (401/403, TLS).
pub async fn preflight(client: &UsageClient) -> Result<Option<String>, StartError> {
    use wap_usage_client::Error;
    let probe = client.raw_page(FeedKind::Plans, wap_types::StartId::new(0), 1);
    let endpoint = client.base_url().to_string();
    match tokio::time::timeout(Duration::from_secs(20), probe).await {
        Ok(Ok(_)) => Ok(None),
        Ok(Err(Error::Status { status: status @ (401 | 403), .. })) => Err(StartError::Adapter {
            key: "usage_service.username / usage_service.password",
            message: format!("the Usage Service at {endpoint} answered HTTP {status}: it refuses these credentials"),
        }),
        Ok(Err(e @ Error::Tls { .. })) => Err(StartError::Adapter {
            key: "usage_service.ca_file / usage_service.pinned_cert_sha256",
            message: format!("TLS with the Usage Service failed: {e}"),
        }),
        Ok(Err(e)) => Ok(Some(format!(
            "the Usage Service is not answering yet ({e}); the adapter retries (check usage_service.endpoint if this persists)"
        ))),
        Err(_) => Ok(Some(format!(
            "the Usage Service at {endpoint} did not answer within 20 s; the adapter retries (check usage_service.endpoint)"
        ))),
    }
}

/// What [`start`] started, for the caller to report and stop.
#[derive(Debug)]
pub struct Running {
    /// The adapter.
    pub adapter: Adapter,
    /// The reference ledger, when it is the billing system.
    pub ledger: Arc<SqliteLedger>,
    /// The state database, password hidden.
    pub state: String,
}

/// Starts the adapter the settings describe.
pub async fn start(s: &Settings) -> Result<Running, StartError> {
    let config = engine_config(s)?;
    let state = redact_url(&config.state_database_url);
    let client = usage_client(s)?;
    if let Some(warning) = preflight(&client).await? {
        tracing::warn!("{warning}");
    }
    let ledger = SqliteLedger::open(&s.billing.ledger.path)
        .await
        .map(Arc::new)
        .map_err(|e| StartError::Billing { key: "billing.ledger.path", message: e.to_string() })?;
    let mut builder = Adapter::builder(config)
        .usage_client(client)
        .billing_system(Arc::clone(&ledger))
        .billing_system_version(ledger.version());
    if s.responder.enabled {
        let listen = addr(&s.responder.listen, "responder.listen")?;
        let responder = Responder::with_pricing(ledger.approver(), Arc::clone(&ledger), responder_config(s)?);
        builder = builder.responder(listen, responder, ServerConfig::default());
    }
    if s.admin.enabled {
        builder = builder.admin(addr(&s.admin.listen, "admin.listen")?);
        if let Some(password) = s.admin.secret().resolve("admin").map_err(StartError::Setting)? {
            builder = builder.admin_credentials(BasicCredentials::new(
                s.admin.username.clone().unwrap_or_default(),
                password.expose(),
            ));
        }
    }
    let adapter = builder.start().await.map_err(StartError::adapter)?;
    Ok(Running { adapter, ledger, state })
}
