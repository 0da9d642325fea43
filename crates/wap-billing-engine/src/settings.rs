//! The engine's settings as serde structures: [`EngineSettings`] (`[engine]`), [`StateSettings`] (`[state]`) and
//! [`AdminSettings`] (`[admin]`), the sections of the `wap-billing` settings file this crate owns. WAP's sample
//! `app.config` names (and the engine's own spec keys) are accepted as serde aliases; problems name their key path.
//! With the usage client's [`UsageServiceSettings`](wap_usage_client::UsageServiceSettings) and the responder's
//! [`ResponderSettings`](wap_responder::ResponderSettings), a library user reads the same file the program does.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use wap_billing_engine::settings::{EngineSettings, StateSettings};
//!
//! let engine: EngineSettings = serde_json::from_str(r#"{"RetryMaxAttempts": 3, "sync_interval_ms": 5000}"#)?;
//! let state: StateSettings = serde_json::from_str(r#"{"url": "sqlite://state.db"}"#)?;
//! let config = engine
//!     .config_builder("engine")?
//!     .state_database_url(state.resolve("state")?.expose())
//!     .build()?;
//! assert_eq!(config.retry_max_attempts, 3);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wap_types::settings::key_path;
use wap_types::{BasicCredentials, FeedKind, Secret, SecretSource, SettingProblem};

use crate::config::{ElectionMode, EngineConfigBuilder};
use crate::EngineConfig;

/// `[engine]`: processors, retries, leases, retention. Every field has the spec's default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EngineSettings {
    /// `NotificationProcessorEnabled` (true).
    #[serde(alias = "NotificationProcessorEnabled")]
    pub notification_processor_enabled: bool,
    /// `UsageProcessorEnabled` (true).
    #[serde(alias = "UsageProcessorEnabled")]
    pub usage_processor_enabled: bool,
    /// `RetryMaxAttempts` (5).
    #[serde(alias = "RetryMaxAttempts")]
    pub retry_max_attempts: u32,
    /// `RetrySleepMilliseconds` (30000).
    #[serde(alias = "RetrySleepMilliseconds")]
    pub retry_sleep_ms: u64,
    /// `WapRetryInitialMilliseconds` (1000).
    #[serde(alias = "WapRetryInitialMilliseconds")]
    pub wap_retry_initial_ms: u64,
    /// `WapRetryMaxMilliseconds` (300000).
    #[serde(alias = "WapRetryMaxMilliseconds")]
    pub wap_retry_max_ms: u64,
    /// `DependencyWaitMaxSeconds` (3600).
    #[serde(alias = "DependencyWaitMaxSeconds")]
    pub dependency_wait_max_seconds: u64,
    /// `LeaseTtlMilliseconds` (60000).
    #[serde(alias = "LeaseTtlMilliseconds")]
    pub lease_ttl_ms: u64,
    /// `SyncIntervalMilliseconds` (60000).
    #[serde(alias = "SyncIntervalMilliseconds")]
    pub sync_interval_ms: u64,
    /// `InitialStartId` for every feed (0).
    #[serde(alias = "InitialStartId")]
    pub initial_start_id: i64,
    /// `InitialStartId` per feed, by feed name (`usage`, `plans`, …).
    pub initial_start_ids: BTreeMap<String, i64>,
    /// `PendingApprovalWarnSeconds` (600).
    #[serde(alias = "PendingApprovalWarnSeconds")]
    pub pending_approval_warn_seconds: u64,
    /// `PendingApprovalMaxWaitSeconds` (86400).
    #[serde(alias = "PendingApprovalMaxWaitSeconds")]
    pub pending_approval_max_wait_seconds: u64,
    /// `RetentionWarnDays` (30).
    #[serde(alias = "RetentionWarnDays")]
    pub retention_warn_days: u64,
    /// `LeaderElectionMode`: `elect` (default; several instances) or `single-instance`.
    #[serde(alias = "LeaderElectionMode")]
    pub leader_election_mode: String,
    /// `InstanceId` (default: host name, process id and a random suffix).
    #[serde(alias = "InstanceId")]
    pub instance_id: Option<String>,
    /// `HandlerTimeoutMilliseconds` (25000): the longest one billing-side call may take.
    #[serde(alias = "HandlerTimeoutMilliseconds")]
    pub handler_timeout_ms: u64,
    /// `WapFetchTimeoutMilliseconds` (120000): the longest one fetch of a page from WAP may take.
    #[serde(alias = "WapFetchTimeoutMilliseconds")]
    pub wap_fetch_timeout_ms: u64,
    /// `ProcessedEventRetentionDays` (400; 0 keeps everything).
    #[serde(alias = "ProcessedEventRetentionDays")]
    pub processed_event_retention_days: u64,
    /// `AuditLogRetentionDays` (2557; 0 keeps everything).
    #[serde(alias = "AuditLogRetentionDays")]
    pub audit_log_retention_days: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            notification_processor_enabled: true,
            usage_processor_enabled: true,
            retry_max_attempts: 5,
            retry_sleep_ms: 30_000,
            wap_retry_initial_ms: 1_000,
            wap_retry_max_ms: 300_000,
            dependency_wait_max_seconds: 3_600,
            lease_ttl_ms: 60_000,
            sync_interval_ms: 60_000,
            initial_start_id: 0,
            initial_start_ids: BTreeMap::new(),
            pending_approval_warn_seconds: 600,
            pending_approval_max_wait_seconds: 86_400,
            retention_warn_days: 30,
            leader_election_mode: "elect".to_owned(),
            instance_id: None,
            handler_timeout_ms: 25_000,
            wap_fetch_timeout_ms: 120_000,
            processed_event_retention_days: 400,
            audit_log_retention_days: 2_557,
        }
    }
}

fn days(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(n.saturating_mul(86_400)))
}

impl EngineSettings {
    /// The election mode `leader_election_mode` names (`None` when it names none).
    pub fn election_mode(&self) -> Option<ElectionMode> {
        match self.leader_election_mode.to_ascii_lowercase().as_str() {
            "elect" => Some(ElectionMode::Elect),
            "single-instance" | "singleinstance" | "single_instance" => Some(ElectionMode::SingleInstance),
            _ => None,
        }
    }

    /// Every problem, each named by its key path under `prefix` (e.g. `engine`).
    pub fn validate(&self, prefix: &str) -> Vec<SettingProblem> {
        let at = |key: &str| key_path(prefix, key);
        let mut p = Vec::new();
        let positive = [
            ("retry_max_attempts", u64::from(self.retry_max_attempts)),
            ("retry_sleep_ms", self.retry_sleep_ms),
            ("wap_retry_initial_ms", self.wap_retry_initial_ms),
            ("wap_retry_max_ms", self.wap_retry_max_ms),
            ("sync_interval_ms", self.sync_interval_ms),
            ("handler_timeout_ms", self.handler_timeout_ms),
            ("wap_fetch_timeout_ms", self.wap_fetch_timeout_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                p.push(SettingProblem::new(at(key), "a value above 0 (0 makes the processor spin)", "0"));
            }
        }
        if self.wap_retry_initial_ms > self.wap_retry_max_ms {
            p.push(SettingProblem::new(
                at("wap_retry_initial_ms"),
                format!("at most {} ({})", at("wap_retry_max_ms"), self.wap_retry_max_ms),
                self.wap_retry_initial_ms.to_string(),
            ));
        }
        if self.lease_ttl_ms < 1_000 {
            p.push(SettingProblem::new(at("lease_ttl_ms"), "at least 1000", self.lease_ttl_ms.to_string()));
        }
        if self.pending_approval_warn_seconds > self.pending_approval_max_wait_seconds {
            p.push(SettingProblem::new(
                at("pending_approval_warn_seconds"),
                format!("at most {}", at("pending_approval_max_wait_seconds")),
                self.pending_approval_warn_seconds.to_string(),
            ));
        }
        if self.initial_start_id < 0 {
            p.push(SettingProblem::new(at("initial_start_id"), "0 or more", self.initial_start_id.to_string()));
        }
        for (feed, start) in &self.initial_start_ids {
            let key = at(&format!("initial_start_ids.{feed}"));
            if FeedKind::from_name(feed).is_none() {
                p.push(SettingProblem::new(
                    key,
                    "a feed name (usage, plans, addons, planServices, planAddons, subscriptions, subscriptionAddons)",
                    format!("{feed:?}"),
                ));
            } else if *start < 0 {
                p.push(SettingProblem::new(key, "0 or more", start.to_string()));
            }
        }
        if self.election_mode().is_none() {
            p.push(SettingProblem::new(
                at("leader_election_mode"),
                "elect or single-instance",
                format!("{:?}", self.leader_election_mode),
            ));
        }
        if self.instance_id.as_deref().is_some_and(|i| i.trim().is_empty()) {
            p.push(SettingProblem::new(at("instance_id"), "a non-empty name", "an empty one"));
        }
        p
    }

    /// An [`EngineConfigBuilder`] with these settings; the caller adds what other sections hold (the state
    /// database URL, the batch size and `StartIdInclusive` of `[usage_service]`, the responders' switches, the
    /// billing system's expected version). The first problem [`validate`](Self::validate) finds otherwise.
    pub fn config_builder(&self, prefix: &str) -> Result<EngineConfigBuilder, SettingProblem> {
        if let Some(first) = self.validate(prefix).into_iter().next() {
            return Err(first);
        }
        let mut b = EngineConfig::builder()
            .notification_processor_enabled(self.notification_processor_enabled)
            .usage_processor_enabled(self.usage_processor_enabled)
            .retry_max_attempts(self.retry_max_attempts)
            .retry_sleep(Duration::from_millis(self.retry_sleep_ms))
            .wap_retry_initial(Duration::from_millis(self.wap_retry_initial_ms))
            .wap_retry_max(Duration::from_millis(self.wap_retry_max_ms))
            .dependency_wait_max(Duration::from_secs(self.dependency_wait_max_seconds))
            .lease_ttl(Duration::from_millis(self.lease_ttl_ms))
            .pending_approval_warn(Duration::from_secs(self.pending_approval_warn_seconds))
            .pending_approval_max_wait(Duration::from_secs(self.pending_approval_max_wait_seconds))
            .retention_warn(Duration::from_secs(self.retention_warn_days.saturating_mul(86_400)))
            .sync_interval(Duration::from_millis(self.sync_interval_ms))
            .handler_timeout(Duration::from_millis(self.handler_timeout_ms))
            .wap_fetch_timeout(Duration::from_millis(self.wap_fetch_timeout_ms))
            .processed_event_retention(days(self.processed_event_retention_days))
            .audit_log_retention(days(self.audit_log_retention_days))
            .election_mode(self.election_mode().unwrap_or_default());
        for feed in FeedKind::ALL {
            b = b.initial_start_id(feed, self.initial_start_id);
        }
        for (name, start) in &self.initial_start_ids {
            if let Some(feed) = FeedKind::from_name(name) {
                b = b.initial_start_id(feed, *start);
            }
        }
        if let Some(id) = &self.instance_id {
            b = b.instance_id(id.trim());
        }
        Ok(b)
    }
}

/// `[state]`: the state database. The URL (`sqlite://PATH`, default `sqlite://wap-billing-state.db`, or
/// `postgres://…`) is given by at most one of `url`, `url_env` or `url_file`; `Debug` hides a password in it.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StateSettings {
    /// `StateDatabaseUrl`. A password in it is better given through `url_env` or `url_file`.
    #[serde(alias = "StateDatabaseUrl")]
    pub url: Option<Secret>,
    /// The name of an environment variable holding the URL.
    pub url_env: Option<String>,
    /// A file holding the URL.
    pub url_file: Option<PathBuf>,
    /// `StateDatabaseCaFile`: the CA file (PEM) the PostgreSQL server's certificate must be signed by
    /// (`sslmode=verify-ca` / `verify-full` in the URL).
    #[serde(alias = "StateDatabaseCaFile")]
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for StateSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSettings")
            .field("url", &self.url.as_ref().map(|u| crate::store::redact_url(u.expose())))
            .field("url_env", &self.url_env)
            .field("url_file", &self.url_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl StateSettings {
    /// The URL from whichever source is given; the default when none is.
    pub fn resolve(&self, prefix: &str) -> Result<Secret, SettingProblem> {
        let source = SecretSource::new(self.url.clone(), self.url_env.clone(), self.url_file.clone());
        Ok(source.resolve(&key_path(prefix, "url"))?.unwrap_or_else(|| Secret::new("sqlite://wap-billing-state.db")))
    }

    /// Every problem, named by its key path under `prefix` (e.g. `state`).
    pub fn validate(&self, prefix: &str) -> Vec<SettingProblem> {
        match self.resolve(prefix) {
            Ok(url) => match crate::store::StateDatabaseUrl::parse(url.expose()) {
                Ok(_) => Vec::new(),
                Err(_) => vec![SettingProblem::new(
                    key_path(prefix, "url"),
                    "sqlite://PATH or postgres://…",
                    crate::store::redact_url(url.expose()),
                )],
            },
            Err(e) => vec![e],
        }
    }
}

/// `[admin]`: the admin endpoint (`/status`, `/health`, `/metrics`, operator routes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct AdminSettings {
    /// Whether the endpoint is served (true).
    pub enabled: bool,
    /// Where (`127.0.0.1:9464`).
    pub listen: String,
    /// The operator's user name; with a password, the operator routes require Basic authentication.
    pub username: Option<String>,
    /// The operator's password (prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            enabled: true,
            listen: "127.0.0.1:9464".to_owned(),
            username: None,
            password: None,
            password_env: None,
            password_file: None,
        }
    }
}

impl AdminSettings {
    /// The password's sources.
    pub fn secret(&self) -> SecretSource {
        SecretSource::new(self.password.clone(), self.password_env.clone(), self.password_file.clone())
    }

    /// `listen` as an address.
    pub fn listen_addr(&self, prefix: &str) -> Result<SocketAddr, SettingProblem> {
        self.listen.parse().map_err(|_| {
            SettingProblem::new(
                key_path(prefix, "listen"),
                "an address such as 127.0.0.1:9464",
                format!("{:?}", self.listen),
            )
        })
    }

    /// The operator credentials, when a password is given.
    pub fn credentials(&self, prefix: &str) -> Result<Option<BasicCredentials>, SettingProblem> {
        let Some(password) = self.secret().resolve(&key_path(prefix, "password"))? else {
            return Ok(None);
        };
        match self.username.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(user) => Ok(Some(BasicCredentials::new(user, password.expose()))),
            None => Err(SettingProblem::new(key_path(prefix, "username"), "a user name with the password", "nothing")),
        }
    }

    /// Every problem, named by its key path under `prefix` (e.g. `admin`).
    pub fn validate(&self, prefix: &str) -> Vec<SettingProblem> {
        let mut p = Vec::new();
        if self.enabled {
            if let Err(e) = self.listen_addr(prefix) {
                p.push(e);
            }
        }
        if let Err(e) = self.credentials(prefix) {
            p.push(e);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_defaults_and_the_builder() {
        let s: EngineSettings = serde_json::from_str(
            r#"{"RetryMaxAttempts": 3, "LeaderElectionMode": "SingleInstance", "InitialStartId": 7,
                "initial_start_ids": {"usage": 4100}, "ProcessedEventRetentionDays": 0}"#,
        )
        .unwrap();
        let c = s.config_builder("engine").unwrap().build().unwrap();
        assert_eq!(c.retry_max_attempts, 3);
        assert_eq!(c.election_mode, ElectionMode::SingleInstance);
        assert_eq!((c.initial_start_id(FeedKind::Plans), c.initial_start_id(FeedKind::Usage)), (7, 4100));
        assert_eq!(c.processed_event_retention, None);
        assert_eq!(c.handler_timeout, Duration::from_secs(25));
        let d = EngineSettings::default().config_builder("engine").unwrap().build().unwrap();
        let spec = EngineConfig::default();
        assert_eq!(
            (d.retry_sleep, d.lease_ttl, d.sync_interval),
            (spec.retry_sleep, spec.lease_ttl, spec.sync_interval)
        );
        assert_eq!(d.audit_log_retention, spec.audit_log_retention);
    }

    #[test]
    fn problems_name_their_key_path() {
        let s: EngineSettings = serde_json::from_str(
            r#"{"retry_sleep_ms": 0, "lease_ttl_ms": 5, "leader_election_mode": "sometimes",
                "initial_start_ids": {"nosuchfeed": 1}}"#,
        )
        .unwrap();
        let paths: Vec<String> = s.validate("engine").into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "engine.retry_sleep_ms",
                "engine.lease_ttl_ms",
                "engine.initial_start_ids.nosuchfeed",
                "engine.leader_election_mode"
            ]
        );
        assert_eq!(s.config_builder("e").unwrap_err().path, "e.retry_sleep_ms");
    }

    #[test]
    fn state_and_admin_settings_hide_their_secrets() {
        let s: StateSettings = serde_json::from_str(r#"{"url": "postgres://u:pg-sentinel@db/wap"}"#).unwrap();
        assert!(!format!("{s:?}").contains("pg-sentinel"));
        assert!(s.validate("state").is_empty());
        let bad: StateSettings = serde_json::from_str(r#"{"url": "mysql://u:pg-sentinel@db/wap"}"#).unwrap();
        let p = bad.validate("state");
        assert_eq!(p[0].path, "state.url");
        assert!(!p[0].to_string().contains("pg-sentinel"), "{}", p[0]);
        assert_eq!(StateSettings::default().resolve("state").unwrap().expose(), "sqlite://wap-billing-state.db");

        let a: AdminSettings = serde_json::from_str(r#"{"password": "admin-sentinel"}"#).unwrap();
        assert_eq!(a.validate("admin")[0].path, "admin.username");
        assert!(!format!("{a:?}").contains("admin-sentinel"));
        let a: AdminSettings =
            serde_json::from_str(r#"{"username": "ops", "password": "admin-sentinel", "listen": "x"}"#).unwrap();
        assert_eq!(a.validate("admin")[0].path, "admin.listen");
        assert_eq!(a.credentials("admin").unwrap().unwrap().username, "ops");
    }
}
