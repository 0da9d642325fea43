//! From [`Settings`] to a running [`Adapter`]: the usage client, the state store, the billing system, the
//! responder and the admin endpoint.

use std::sync::Arc;
use std::time::Duration;

use wap_billing_engine::{Adapter, AdapterError, EngineConfig};
use wap_billing_ledger::SqliteLedger;
use wap_responder::{Responder, ResponderConfig, ServerConfig};
use wap_types::{FeedKind, StartIdMode};
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

/// The engine's settings: `[engine]` through [`EngineSettings::config_builder`](crate::settings::EngineSettings),
/// plus what `[state]`, `[usage_service]`, `[responder]` and `[billing]` hold.
pub fn engine_config(s: &Settings) -> Result<EngineConfig, StartError> {
    let state = s.state.resolve("state").map_err(StartError::Setting)?;
    let mut b = s.engine.config_builder("engine").map_err(StartError::Setting)?;
    if let Some(ca) = &s.state.ca_file {
        b = b.state_database_ca_file(ca);
    }
    let mut b = b
        .subscription_responder_enabled(s.responder.enabled)
        .pricing_responder_enabled(s.responder.pricing_enabled)
        .state_database_url(state.expose())
        .batch_size(s.usage_service.batch_size)
        .start_id_mode(if s.usage_service.start_id_inclusive { StartIdMode::Inclusive } else { StartIdMode::Exclusive })
        .allow_unexpected_billing_system_version(s.billing.allow_unexpected_version);
    if let Some(v) = &s.billing.expected_version {
        b = b.billing_system_expected_version(v);
    }
    b.build().map_err(|err| StartError::Adapter { key: "engine", message: err.to_string() })
}

/// The Usage Service client from `[usage_service]`, through
/// [`UsageServiceSettings::client_builder`](crate::settings::UsageServiceSettings).
pub fn usage_client(s: &Settings) -> Result<UsageClient, StartError> {
    let builder = s.usage_service.client_builder("usage_service").map_err(StartError::Setting)?;
    builder
        .build()
        .map_err(|e| StartError::Adapter { key: "usage_service", message: format!("Usage Service client: {e}") })
}

fn responder_config(s: &Settings) -> Result<ResponderConfig, StartError> {
    let mut config = s.responder.to_config("responder").map_err(StartError::Setting)?;
    // One setting for both sides: the engine's client and the responder read `Method` alike.
    config.method_numeric_ordinals = s.usage_service.method_numeric_ordinals || s.responder.method_numeric_ordinals;
    Ok(config)
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
        let listen = s.responder.listen_addr("responder").map_err(StartError::Setting)?;
        let responder = Responder::with_pricing(ledger.approver(), Arc::clone(&ledger), responder_config(s)?);
        builder = builder.responder(listen, responder, ServerConfig::default());
    }
    if s.admin.enabled {
        builder = builder.admin(s.admin.listen_addr("admin").map_err(StartError::Setting)?);
        if let Some(credentials) = s.admin.credentials("admin").map_err(StartError::Setting)? {
            builder = builder.admin_credentials(credentials);
        }
    }
    let adapter = builder.start().await.map_err(StartError::adapter)?;
    Ok(Running { adapter, ledger, state })
}
