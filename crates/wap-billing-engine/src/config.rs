//! [`EngineConfig`]: the engine's settings, with the spec's keys and defaults (docs/protocol/adapter-engine.md §10,
//! docs/protocol/approval-and-pricing.md §5).

use std::collections::BTreeMap;
use std::time::Duration;

use wap_types::cursor::{clamp_batch_size, DEFAULT_BATCH_SIZE};
use wap_types::{FeedKind, StartIdMode};

/// How a processor's lease is taken (docs/protocol/adapter-engine.md §5). There is no mode without a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElectionMode {
    /// Several instances compete; a lease held by another live instance is waited for until it expires (default).
    #[default]
    Elect,
    /// This is the only instance: at start it takes the lease **even from a live holder** (bumping the generation,
    /// which fences that holder out), so a restart after a crash does not wait for the old lease to expire. After
    /// that it behaves like [`ElectionMode::Elect`]. Running two single-instance engines on one database is safe
    /// (fencing) but they keep deposing each other.
    SingleInstance,
}

/// The former name of [`EngineConfigError`], kept so that existing code compiles (the responder's settings error
/// had the same name; see `ResponderConfigError` of `wap-responder`).
#[deprecated(since = "0.1.0", note = "renamed `EngineConfigError`")]
pub type ConfigError = EngineConfigError;

/// A setting that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineConfigError {
    /// A value could not be read.
    #[error("setting {key}: {reason} (got {value:?})")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value (cut to 64 characters).
        value: String,
        /// What was expected.
        reason: String,
    },
    /// The settings contradict each other or a value is out of range.
    #[error("invalid settings: {0}")]
    Invalid(String),
    /// The billing system reported another version than `BillingSystemExpectedVersion` (docs/protocol/adapter-engine.md §9).
    #[error(
        "billing system version {found:?} is not the expected {expected:?}; set AllowUnexpectedBillingSystemVersion = \
         true to run anyway"
    )]
    UnexpectedBillingSystemVersion {
        /// `BillingSystemExpectedVersion`.
        expected: String,
        /// What the system-specific part reported.
        found: String,
    },
}

/// The engine's settings. Build with [`EngineConfig::builder`]; every field has the spec's default.
///
/// ```
/// use std::time::Duration;
/// use wap_billing_engine::EngineConfig;
///
/// let mut builder = EngineConfig::builder()
///     .instance_id("billing-1")
///     .state_database_url("sqlite:///var/lib/wap-billing/state.db")
///     .sync_interval(Duration::from_secs(30));
/// builder.set("RetryMaxAttempts", "3")?; // the settings file's names (docs/protocol/adapter-engine.md §10)
/// let config = builder.build()?;
/// assert_eq!((config.retry_max_attempts, config.sync_interval), (3, Duration::from_secs(30)));
///
/// // A wrong value names its key.
/// let err = EngineConfig::builder().sync_interval(Duration::ZERO).build().unwrap_err();
/// assert!(err.to_string().contains("SyncIntervalMilliseconds"), "{err}");
/// # Ok::<(), wap_billing_engine::EngineConfigError>(())
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct EngineConfig {
    /// `NotificationProcessorEnabled` (true).
    pub notification_processor_enabled: bool,
    /// `UsageProcessorEnabled` (true).
    pub usage_processor_enabled: bool,
    /// `SubscriptionResponderEnabled` (true; used by the adapter that hosts the responders).
    pub subscription_responder_enabled: bool,
    /// `PricingResponderEnabled` (false; needs the subscription responder).
    pub pricing_responder_enabled: bool,
    /// `StateDatabaseUrl` (`sqlite://wap-billing-state.db`).
    pub state_database_url: String,
    /// `StateDatabaseCaFile` (none): a PEM CA file the PostgreSQL server's certificate must be signed by
    /// (`sslmode=verify-ca` / `verify-full` in the URL; `require` then checks it too). Takes precedence over the
    /// URL's `sslrootcert`; without either, the system's roots are used.
    pub state_database_ca_file: Option<std::path::PathBuf>,
    /// `RetryMaxAttempts` (5): billing-side attempts per event before the processor halts.
    pub retry_max_attempts: u32,
    /// `RetrySleepMilliseconds` (30 s): pause between billing-side attempts.
    pub retry_sleep: Duration,
    /// `WapRetryInitialMilliseconds` (1 s): first WAP-side back-off base.
    pub wap_retry_initial: Duration,
    /// `WapRetryMaxMilliseconds` (300 s): largest WAP-side back-off base.
    pub wap_retry_max: Duration,
    /// `DependencyWaitMaxSeconds` (3600 s): how long `DependencyNotReady` is retried without spending attempts.
    pub dependency_wait_max: Duration,
    /// `LeaseTtlMilliseconds` (60 s): lease lifetime; renewed at half of it.
    pub lease_ttl: Duration,
    /// `InitialStartId` per feed (0): where a feed without a cursor starts.
    pub initial_start_ids: BTreeMap<FeedKind, i64>,
    /// `PendingApprovalWarnSeconds` (600 s).
    pub pending_approval_warn: Duration,
    /// `PendingApprovalMaxWaitSeconds` (86400 s): then the processor halts on the event.
    pub pending_approval_max_wait: Duration,
    /// `RetentionWarnDays` (30): warn when a feed's last successful poll is older (WAP purges after 40 days).
    pub retention_warn: Duration,
    /// `SyncIntervalMilliseconds` (60 s): pause between cycles once caught up.
    pub sync_interval: Duration,
    /// `UsageServiceBatchSize` (100, clamped to 1..=10000).
    pub batch_size: u32,
    /// `StartIdInclusive` (true = [`StartIdMode::Inclusive`]).
    pub start_id_mode: StartIdMode,
    /// `BillingSystemExpectedVersion` (none).
    pub billing_system_expected_version: Option<String>,
    /// `AllowUnexpectedBillingSystemVersion` (false).
    pub allow_unexpected_billing_system_version: bool,
    /// `LeaderElectionMode` (`Elect`; project key): see [`ElectionMode`].
    pub election_mode: ElectionMode,
    /// `InstanceId` (project key): this instance's lease holder name; default host name + process id + random
    /// suffix, unique per process.
    pub instance_id: String,
    /// `HandlerTimeoutMilliseconds` (project key, 25 s): the longest one billing-side call may take. Each call's
    /// deadline is the earlier of this and the end of the lease as this instance knows it, so a call never
    /// outlives its lease; a call cut at its deadline spends an attempt.
    pub handler_timeout: Duration,
    /// `ProcessedEventRetentionDays` (project key, 400; 0 keeps everything): `processed_event` rows older than this
    /// and below their feed's cursor are deleted once a day by the leader. The default keeps more than a year for
    /// reconciliation against the billing system, ten times WAP's own 40-day retention.
    pub processed_event_retention: Option<Duration>,
    /// `AuditLogRetentionDays` (project key, 2557 ≈ 7 years; 0 keeps everything): audit entries older than this
    /// are deleted once a day by the leader.
    pub audit_log_retention: Option<Duration>,
    /// `WapFetchTimeoutMilliseconds` (project key, 120 s): the longest one fetch of a page from the Usage Service
    /// may take (request, body and parsing). A fetch that takes longer is cut and counts as a failed fetch (retried
    /// with back-off, reported in status and health), so a hung Usage Service call cannot block a feed forever.
    pub wap_fetch_timeout: Duration,
    /// `LeaseClockSkewMilliseconds` (project key, 2 s): how far the clocks of the processes sharing a SQLite state
    /// file may disagree. A lease counts as expired for a taker only once the wall-clock expiry its holder wrote
    /// lies this much in the past, so a taker whose clock runs ahead cannot take a live lease.
    pub lease_clock_skew: Duration,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be forgotten here.
        let EngineConfig {
            notification_processor_enabled,
            usage_processor_enabled,
            subscription_responder_enabled,
            pricing_responder_enabled,
            state_database_url,
            state_database_ca_file,
            retry_max_attempts,
            retry_sleep,
            wap_retry_initial,
            wap_retry_max,
            dependency_wait_max,
            lease_ttl,
            initial_start_ids,
            pending_approval_warn,
            pending_approval_max_wait,
            retention_warn,
            sync_interval,
            batch_size,
            start_id_mode,
            billing_system_expected_version,
            allow_unexpected_billing_system_version,
            election_mode,
            instance_id,
            handler_timeout,
            processed_event_retention,
            audit_log_retention,
            wap_fetch_timeout,
            lease_clock_skew,
        } = self;
        f.debug_struct("EngineConfig")
            .field("notification_processor_enabled", notification_processor_enabled)
            .field("usage_processor_enabled", usage_processor_enabled)
            .field("subscription_responder_enabled", subscription_responder_enabled)
            .field("pricing_responder_enabled", pricing_responder_enabled)
            .field("state_database_url", &crate::store::redact_url(state_database_url))
            .field("state_database_ca_file", state_database_ca_file)
            .field("retry_max_attempts", retry_max_attempts)
            .field("retry_sleep", retry_sleep)
            .field("wap_retry_initial", wap_retry_initial)
            .field("wap_retry_max", wap_retry_max)
            .field("dependency_wait_max", dependency_wait_max)
            .field("lease_ttl", lease_ttl)
            .field("initial_start_ids", initial_start_ids)
            .field("pending_approval_warn", pending_approval_warn)
            .field("pending_approval_max_wait", pending_approval_max_wait)
            .field("retention_warn", retention_warn)
            .field("sync_interval", sync_interval)
            .field("batch_size", batch_size)
            .field("start_id_mode", start_id_mode)
            .field("billing_system_expected_version", billing_system_expected_version)
            .field("allow_unexpected_billing_system_version", allow_unexpected_billing_system_version)
            .field("election_mode", election_mode)
            .field("instance_id", instance_id)
            .field("handler_timeout", handler_timeout)
            .field("wap_fetch_timeout", wap_fetch_timeout)
            .field("lease_clock_skew", lease_clock_skew)
            .field("processed_event_retention", processed_event_retention)
            .field("audit_log_retention", audit_log_retention)
            .finish()
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            notification_processor_enabled: true,
            usage_processor_enabled: true,
            subscription_responder_enabled: true,
            pricing_responder_enabled: false,
            state_database_url: "sqlite://wap-billing-state.db".to_owned(),
            state_database_ca_file: None,
            retry_max_attempts: 5,
            retry_sleep: Duration::from_millis(30_000),
            wap_retry_initial: Duration::from_millis(1_000),
            wap_retry_max: Duration::from_millis(300_000),
            dependency_wait_max: Duration::from_secs(3_600),
            lease_ttl: Duration::from_millis(60_000),
            initial_start_ids: BTreeMap::new(),
            pending_approval_warn: Duration::from_secs(600),
            pending_approval_max_wait: Duration::from_secs(86_400),
            retention_warn: Duration::from_secs(30 * 86_400),
            sync_interval: Duration::from_millis(60_000),
            batch_size: DEFAULT_BATCH_SIZE,
            start_id_mode: StartIdMode::Inclusive,
            billing_system_expected_version: None,
            allow_unexpected_billing_system_version: false,
            election_mode: ElectionMode::Elect,
            instance_id: default_instance_id(),
            handler_timeout: Duration::from_millis(25_000),
            processed_event_retention: Some(Duration::from_secs(400 * 86_400)),
            audit_log_retention: Some(Duration::from_secs(2_557 * 86_400)),
            wap_fetch_timeout: Duration::from_millis(120_000),
            lease_clock_skew: Duration::from_millis(2_000),
        }
    }
}

/// Host name (from `HOSTNAME`/`COMPUTERNAME`, else `localhost`), process id and a random suffix.
fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{}-{}-{:08x}", host.trim(), std::process::id(), fastrand::u32(..))
}

impl EngineConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> EngineConfigBuilder {
        EngineConfigBuilder { config: EngineConfig::default() }
    }

    /// Where a feed without a cursor starts (`InitialStartId`, default 0).
    pub fn initial_start_id(&self, feed: FeedKind) -> i64 {
        self.initial_start_ids.get(&feed).copied().unwrap_or(0).max(0)
    }

    /// The version check of docs/protocol/adapter-engine.md §9: with `BillingSystemExpectedVersion` set, a different `found`
    /// version is an error unless `AllowUnexpectedBillingSystemVersion` (then a warning is logged). Versions are
    /// compared after trimming, ignoring ASCII case.
    pub fn check_billing_system_version(&self, found: &str) -> Result<(), EngineConfigError> {
        let Some(expected) = &self.billing_system_expected_version else {
            return Ok(());
        };
        if expected.trim().eq_ignore_ascii_case(found.trim()) {
            return Ok(());
        }
        if self.allow_unexpected_billing_system_version {
            tracing::warn!(expected = %expected, found = %found, "billing system version differs from the expected one; running anyway (AllowUnexpectedBillingSystemVersion)");
            return Ok(());
        }
        Err(EngineConfigError::UnexpectedBillingSystemVersion { expected: expected.clone(), found: found.to_owned() })
    }

    fn validate(&self) -> Result<(), EngineConfigError> {
        // A value that would make a loop spin (a zero sleep or TTL) or never end is refused with its key.
        let key = |key: &str, value: String, reason: &str| {
            Err(EngineConfigError::InvalidValue { key: key.to_owned(), value, reason: reason.to_owned() })
        };
        let ms = |d: Duration| d.as_millis().to_string();
        if self.retry_max_attempts == 0 {
            return key("RetryMaxAttempts", "0".into(), "must be at least 1");
        }
        if self.retry_sleep.is_zero() {
            return key("RetrySleepMilliseconds", ms(self.retry_sleep), "must be > 0 (0 retries without pause)");
        }
        if self.wap_retry_initial.is_zero() {
            return key("WapRetryInitialMilliseconds", ms(self.wap_retry_initial), "must be > 0");
        }
        if self.wap_retry_initial > self.wap_retry_max {
            return key(
                "WapRetryInitialMilliseconds",
                ms(self.wap_retry_initial),
                "must be <= WapRetryMaxMilliseconds",
            );
        }
        if self.lease_ttl < Duration::from_millis(20) {
            return key("LeaseTtlMilliseconds", ms(self.lease_ttl), "must be at least 20");
        }
        if self.sync_interval.is_zero() {
            return key("SyncIntervalMilliseconds", ms(self.sync_interval), "must be > 0");
        }
        if self.handler_timeout.is_zero() {
            return key("HandlerTimeoutMilliseconds", ms(self.handler_timeout), "must be > 0");
        }
        if self.wap_fetch_timeout.is_zero() {
            return key("WapFetchTimeoutMilliseconds", ms(self.wap_fetch_timeout), "must be > 0");
        }
        if self.pricing_responder_enabled && !self.subscription_responder_enabled {
            return key("PricingResponderEnabled", "true".into(), "needs SubscriptionResponderEnabled");
        }
        if self.instance_id.trim().is_empty() {
            return key("InstanceId", self.instance_id.clone(), "must not be empty");
        }
        if self.pending_approval_warn > self.pending_approval_max_wait {
            return key(
                "PendingApprovalWarnSeconds",
                self.pending_approval_warn.as_secs().to_string(),
                "must not exceed PendingApprovalMaxWaitSeconds",
            );
        }
        Ok(())
    }
}

/// Builds an [`EngineConfig`]; [`EngineConfigBuilder::build`] validates it.
#[derive(Debug, Clone)]
pub struct EngineConfigBuilder {
    config: EngineConfig,
}

macro_rules! setters {
    ($( $(#[$m:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        $(
            $(#[$m])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl EngineConfigBuilder {
    setters! {
        /// `NotificationProcessorEnabled`.
        notification_processor_enabled: bool,
        /// `UsageProcessorEnabled`.
        usage_processor_enabled: bool,
        /// `SubscriptionResponderEnabled`.
        subscription_responder_enabled: bool,
        /// `PricingResponderEnabled`.
        pricing_responder_enabled: bool,
        /// `RetryMaxAttempts`.
        retry_max_attempts: u32,
        /// `RetrySleepMilliseconds`.
        retry_sleep: Duration,
        /// `WapRetryInitialMilliseconds`.
        wap_retry_initial: Duration,
        /// `WapRetryMaxMilliseconds`.
        wap_retry_max: Duration,
        /// `DependencyWaitMaxSeconds`.
        dependency_wait_max: Duration,
        /// `LeaseTtlMilliseconds`.
        lease_ttl: Duration,
        /// `PendingApprovalWarnSeconds`.
        pending_approval_warn: Duration,
        /// `PendingApprovalMaxWaitSeconds`.
        pending_approval_max_wait: Duration,
        /// `RetentionWarnDays` (as a duration).
        retention_warn: Duration,
        /// `SyncIntervalMilliseconds`.
        sync_interval: Duration,
        /// `StartIdInclusive`.
        start_id_mode: StartIdMode,
        /// `AllowUnexpectedBillingSystemVersion`.
        allow_unexpected_billing_system_version: bool,
        /// `LeaderElectionMode`.
        election_mode: ElectionMode,
        /// `HandlerTimeoutMilliseconds`.
        handler_timeout: Duration,
        /// `ProcessedEventRetentionDays` (`None`: keep everything).
        processed_event_retention: Option<Duration>,
        /// `AuditLogRetentionDays` (`None`: keep everything).
        audit_log_retention: Option<Duration>,
        /// `WapFetchTimeoutMilliseconds`.
        wap_fetch_timeout: Duration,
        /// `LeaseClockSkewMilliseconds`.
        lease_clock_skew: Duration,
    }

    /// `StateDatabaseUrl`.
    pub fn state_database_url(mut self, url: impl Into<String>) -> Self {
        self.config.state_database_url = url.into();
        self
    }

    /// `StateDatabaseCaFile`: the CA file (PEM) for TLS to PostgreSQL.
    pub fn state_database_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.config.state_database_ca_file = Some(path.into());
        self
    }

    /// `UsageServiceBatchSize` (clamped to 1..=10000).
    pub fn batch_size(mut self, batch: u32) -> Self {
        self.config.batch_size = clamp_batch_size(batch);
        self
    }

    /// `InitialStartId` of one feed.
    pub fn initial_start_id(mut self, feed: FeedKind, start: i64) -> Self {
        self.config.initial_start_ids.insert(feed, start.max(0));
        self
    }

    /// `BillingSystemExpectedVersion`.
    pub fn billing_system_expected_version(mut self, version: impl Into<String>) -> Self {
        self.config.billing_system_expected_version = Some(version.into());
        self
    }

    /// `InstanceId`: this instance's lease holder name (must be unique among running instances).
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.config.instance_id = id.into();
        self
    }

    /// Sets one setting by its spec key (case-insensitive), e.g. `set("RetryMaxAttempts", "3")`.
    /// `InitialStartId` applies to every feed, `InitialStartId.<feed>` (feed name such as `plans`) to one.
    /// Returns `Ok(false)` for a key that is not an engine setting (e.g. `UsageServiceEndpoint`), so a caller can
    /// hand the rest to other components.
    ///
    /// Deprecated: deserialize an [`EngineSettings`](crate::settings::EngineSettings) (the spec keys are serde
    /// aliases) and call its [`config_builder`](crate::settings::EngineSettings::config_builder).
    #[deprecated(
        since = "0.1.0",
        note = "deserialize an EngineSettings (spec keys are aliases) and call config_builder"
    )]
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, EngineConfigError> {
        let k = key.trim();
        let v = value.trim();
        let err = |reason: &str| EngineConfigError::InvalidValue {
            key: k.to_owned(),
            value: v.chars().take(64).collect(),
            reason: reason.to_owned(),
        };
        let boolean = || match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(err("expected true or false")),
        };
        let number = || v.parse::<u64>().map_err(|_| err("expected a non-negative integer"));
        let ms = || number().map(Duration::from_millis);
        let secs = || number().map(Duration::from_secs);
        let c = &mut self.config;
        if let Some(feed) = k.strip_prefix("InitialStartId.").or_else(|| k.strip_prefix("InitialStartId:")) {
            let feed = FeedKind::from_name(feed).ok_or_else(|| err("unknown feed after InitialStartId."))?;
            c.initial_start_ids.insert(feed, i64::try_from(number()?).map_err(|_| err("too large"))?);
            return Ok(true);
        }
        match k.to_ascii_lowercase().as_str() {
            "notificationprocessorenabled" => c.notification_processor_enabled = boolean()?,
            "usageprocessorenabled" => c.usage_processor_enabled = boolean()?,
            "subscriptionresponderenabled" => c.subscription_responder_enabled = boolean()?,
            "pricingresponderenabled" => c.pricing_responder_enabled = boolean()?,
            "statedatabaseurl" => c.state_database_url = v.to_owned(),
            "statedatabasecafile" => {
                c.state_database_ca_file = (!v.trim().is_empty()).then(|| std::path::PathBuf::from(v.trim()))
            }
            "retrymaxattempts" => c.retry_max_attempts = u32::try_from(number()?).map_err(|_| err("too large"))?,
            "retrysleepmilliseconds" => c.retry_sleep = ms()?,
            "wapretryinitialmilliseconds" => c.wap_retry_initial = ms()?,
            "wapretrymaxmilliseconds" => c.wap_retry_max = ms()?,
            "dependencywaitmaxseconds" => c.dependency_wait_max = secs()?,
            "leasettlmilliseconds" => c.lease_ttl = ms()?,
            "initialstartid" => {
                let start = i64::try_from(number()?).map_err(|_| err("too large"))?;
                for feed in FeedKind::ALL {
                    c.initial_start_ids.insert(feed, start);
                }
            }
            "pendingapprovalwarnseconds" => c.pending_approval_warn = secs()?,
            "pendingapprovalmaxwaitseconds" => c.pending_approval_max_wait = secs()?,
            "retentionwarndays" => c.retention_warn = Duration::from_secs(number()?.saturating_mul(86_400)),
            "syncintervalmilliseconds" => c.sync_interval = ms()?,
            "usageservicebatchsize" => {
                c.batch_size = clamp_batch_size(u32::try_from(number()?).unwrap_or(u32::MAX));
            }
            "startidinclusive" => {
                c.start_id_mode = if boolean()? { StartIdMode::Inclusive } else { StartIdMode::Exclusive };
            }
            "billingsystemexpectedversion" => {
                c.billing_system_expected_version = Some(v.to_owned()).filter(|s| !s.is_empty());
            }
            "allowunexpectedbillingsystemversion" => c.allow_unexpected_billing_system_version = boolean()?,
            "leaderelectionmode" => {
                c.election_mode = match v.to_ascii_lowercase().as_str() {
                    "elect" => ElectionMode::Elect,
                    "singleinstance" | "single-instance" | "single_instance" => ElectionMode::SingleInstance,
                    _ => return Err(err("expected Elect or SingleInstance")),
                }
            }
            "instanceid" => c.instance_id = v.to_owned(),
            "handlertimeoutmilliseconds" => c.handler_timeout = ms()?,
            "wapfetchtimeoutmilliseconds" => c.wap_fetch_timeout = ms()?,
            "leaseclockskewmilliseconds" => c.lease_clock_skew = ms()?,
            "processedeventretentiondays" => {
                c.processed_event_retention =
                    Some(number()?).filter(|d| *d > 0).map(|d| Duration::from_secs(d.saturating_mul(86_400)));
            }
            "auditlogretentiondays" => {
                c.audit_log_retention =
                    Some(number()?).filter(|d| *d > 0).map(|d| Duration::from_secs(d.saturating_mul(86_400)));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The validated settings.
    pub fn build(self) -> Result<EngineConfig, EngineConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
#[allow(deprecated)] // the key/value API is still tested while it exists
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = EngineConfig::builder().build().unwrap();
        assert!(c.notification_processor_enabled && c.usage_processor_enabled && c.subscription_responder_enabled);
        assert!(!c.pricing_responder_enabled);
        assert_eq!(c.state_database_url, "sqlite://wap-billing-state.db");
        assert_eq!(c.retry_max_attempts, 5);
        assert_eq!(c.retry_sleep, Duration::from_secs(30));
        assert_eq!((c.wap_retry_initial, c.wap_retry_max), (Duration::from_secs(1), Duration::from_secs(300)));
        assert_eq!(c.dependency_wait_max, Duration::from_secs(3600));
        assert_eq!(c.lease_ttl, Duration::from_secs(60));
        assert_eq!(c.initial_start_id(FeedKind::Plans), 0);
        assert_eq!(c.pending_approval_warn, Duration::from_secs(600));
        assert_eq!(c.pending_approval_max_wait, Duration::from_secs(86_400));
        assert_eq!(c.retention_warn, Duration::from_secs(30 * 86_400));
        assert_eq!(c.sync_interval, Duration::from_secs(60));
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.start_id_mode, StartIdMode::Inclusive);
        assert_eq!(c.election_mode, ElectionMode::Elect);
        assert!(!c.instance_id.is_empty());
        assert_ne!(EngineConfig::default().instance_id, c.instance_id, "instance ids are unique");
    }

    #[test]
    fn keys_are_read_by_name() {
        let mut b = EngineConfig::builder();
        assert!(b.set("RetryMaxAttempts", "3").unwrap());
        assert!(b.set("retrysleepmilliseconds", "250").unwrap());
        assert!(b.set("InitialStartId", "7").unwrap());
        assert!(b.set("InitialStartId.usage", "4100").unwrap());
        assert!(b.set("UsageServiceBatchSize", "50000").unwrap());
        assert!(b.set("StartIdInclusive", "false").unwrap());
        assert!(b.set("LeaderElectionMode", "SingleInstance").unwrap());
        assert!(b.set("RetentionWarnDays", "2").unwrap());
        assert!(!b.set("UsageServiceEndpoint", "https://wap:30022/").unwrap());
        let c = b.build().unwrap();
        assert_eq!(c.retry_max_attempts, 3);
        assert_eq!(c.retry_sleep, Duration::from_millis(250));
        assert_eq!(c.initial_start_id(FeedKind::Plans), 7);
        assert_eq!(c.initial_start_id(FeedKind::Usage), 4100);
        assert_eq!(c.batch_size, 10_000, "clamped");
        assert_eq!(c.start_id_mode, StartIdMode::Exclusive);
        assert_eq!(c.election_mode, ElectionMode::SingleInstance);
        assert_eq!(c.retention_warn, Duration::from_secs(2 * 86_400));
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut b = EngineConfig::builder();
        let e = b.set("RetryMaxAttempts", "five").unwrap_err();
        assert!(e.to_string().contains("RetryMaxAttempts"), "{e}");
        assert!(b.set("InitialStartId.nosuchfeed", "1").is_err());
        assert!(EngineConfig::builder().retry_max_attempts(0).build().is_err());
        assert!(EngineConfig::builder()
            .subscription_responder_enabled(false)
            .pricing_responder_enabled(true)
            .build()
            .is_err());
        assert!(EngineConfig::builder()
            .wap_retry_initial(Duration::from_secs(10))
            .wap_retry_max(Duration::from_secs(1))
            .build()
            .is_err());
    }

    #[test]
    fn settings_that_make_loops_spin_are_refused_with_their_key() {
        for (k, v) in [
            ("RetrySleepMilliseconds", "0"),
            ("WapRetryInitialMilliseconds", "0"),
            ("LeaseTtlMilliseconds", "0"),
            ("SyncIntervalMilliseconds", "0"),
            ("HandlerTimeoutMilliseconds", "0"),
            ("WapFetchTimeoutMilliseconds", "0"),
        ] {
            let mut b = EngineConfig::builder();
            assert!(b.set(k, v).unwrap());
            let e = b.build().unwrap_err();
            assert!(matches!(&e, EngineConfigError::InvalidValue { key, .. } if key == k), "{k}: {e}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn billing_system_version_check() {
        let c = EngineConfig::builder().billing_system_expected_version("5.2.7").build().unwrap();
        assert!(c.check_billing_system_version(" 5.2.7 ").is_ok());
        assert!(matches!(
            c.check_billing_system_version("6.0"),
            Err(EngineConfigError::UnexpectedBillingSystemVersion { .. })
        ));
        let lax = EngineConfig::builder()
            .billing_system_expected_version("5.2.7")
            .allow_unexpected_billing_system_version(true)
            .build()
            .unwrap();
        assert!(lax.check_billing_system_version("6.0").is_ok());
        assert!(EngineConfig::default().check_billing_system_version("anything").is_ok());
    }
}
