//! The adapter's settings: one TOML file, environment overrides, secrets from the environment or a file.
//!
//! Reading happens in four steps, each of which names the key path of what it rejects:
//!
//! 1. the file is parsed as TOML;
//! 2. top-level keys spelled as in WAP's sample `app.config` (`UsageServiceEndpoint`, `BillingAdapterPassword`, …)
//!    are moved to the section and key this file uses ([`APP_CONFIG_KEYS`]);
//! 3. environment variables `WAP_BILLING_<SECTION>__<KEY>` override the file (`WAP_BILLING_ENGINE__RETRY_MAX_ATTEMPTS=3`);
//! 4. the result is deserialized into [`Settings`] and [`Settings::validate`] checks what types cannot.
//!
//! Secrets (`password`) may be given inline, through `password_env` (the name of an environment variable) or
//! `password_file` (a file whose content, trailing newline removed, is the secret); never on the command line.
//! They are held as [`Secret`]s, which never print their value.
//!
//! The sections `[usage_service]`, `[responder]`, `[engine]`, `[state]` and `[admin]` **are** the libraries' own
//! settings structures ([`UsageServiceSettings`], [`ResponderSettings`], [`EngineSettings`], [`StateSettings`],
//! [`AdminSettings`]), so a library user reads the same section with serde and gets the same defaults, aliases and
//! checks; this module adds the file, the top-level `app.config` names, the environment and `[billing]`/`[log]`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub use wap_billing_engine::settings::{AdminSettings, EngineSettings, StateSettings};
pub use wap_responder::ResponderSettings;
pub use wap_types::SettingProblem as Problem;
use wap_types::{Secret, SecretSource};
pub use wap_usage_client::UsageServiceSettings;

/// The environment variable prefix for overrides.
pub const ENV_PREFIX: &str = "WAP_BILLING_";

/// WAP's sample `app.config` keys (and the engine's own spec keys) accepted at the top level of the file, with the
/// section and key they stand for. Matched case-insensitively.
pub const APP_CONFIG_KEYS: &[(&str, &str, &str)] = &[
    ("UsageServiceEndpoint", "usage_service", "endpoint"),
    ("UsageServiceUsername", "usage_service", "username"),
    ("UsageServicePassword", "usage_service", "password"),
    ("UsageServiceBatchSize", "usage_service", "batch_size"),
    ("DisableSslVerification", "usage_service", "disable_ssl_verification"),
    ("UsageServiceCaFile", "usage_service", "ca_file"),
    ("UsageServicePinnedCertSha256", "usage_service", "pinned_cert_sha256"),
    ("UsageServiceTimeoutSeconds", "usage_service", "timeout_seconds"),
    ("StartIdInclusive", "usage_service", "start_id_inclusive"),
    ("MethodNumericOrdinals", "usage_service", "method_numeric_ordinals"),
    ("SyncIntervalMilliseconds", "engine", "sync_interval_ms"),
    ("StateDatabaseUrl", "state", "url"),
    ("NotificationProcessorEnabled", "engine", "notification_processor_enabled"),
    ("UsageProcessorEnabled", "engine", "usage_processor_enabled"),
    ("RetryMaxAttempts", "engine", "retry_max_attempts"),
    ("RetrySleepMilliseconds", "engine", "retry_sleep_ms"),
    ("WapRetryInitialMilliseconds", "engine", "wap_retry_initial_ms"),
    ("WapRetryMaxMilliseconds", "engine", "wap_retry_max_ms"),
    ("DependencyWaitMaxSeconds", "engine", "dependency_wait_max_seconds"),
    ("LeaseTtlMilliseconds", "engine", "lease_ttl_ms"),
    ("InitialStartId", "engine", "initial_start_id"),
    ("PendingApprovalWarnSeconds", "engine", "pending_approval_warn_seconds"),
    ("PendingApprovalMaxWaitSeconds", "engine", "pending_approval_max_wait_seconds"),
    ("RetentionWarnDays", "engine", "retention_warn_days"),
    ("BillingSystemExpectedVersion", "billing", "expected_version"),
    ("AllowUnexpectedBillingSystemVersion", "billing", "allow_unexpected_version"),
    ("LeaderElectionMode", "engine", "leader_election_mode"),
    ("InstanceId", "engine", "instance_id"),
    ("HandlerTimeoutMilliseconds", "engine", "handler_timeout_ms"),
    ("ProcessedEventRetentionDays", "engine", "processed_event_retention_days"),
    ("AuditLogRetentionDays", "engine", "audit_log_retention_days"),
    ("SubscriptionResponderEnabled", "responder", "enabled"),
    ("PricingResponderEnabled", "responder", "pricing_enabled"),
    ("BillingAdapterUsername", "responder", "username"),
    ("BillingAdapterPassword", "responder", "password"),
    ("ResponderListenAddress", "responder", "listen"),
    ("ResponderBasePath", "responder", "base_path"),
    ("ResponderAuthenticationMode", "responder", "authentication"),
    ("ApprovalTimeBudgetMilliseconds", "responder", "approval_time_budget_ms"),
    ("ApprovalFailureMode", "responder", "approval_failure_mode"),
    ("PricingResponseFormat", "responder", "pricing_response_format"),
    ("PricingMaxLength", "responder", "pricing_max_length"),
    ("PricingUnknownIdStatus", "responder", "pricing_unknown_id_status"),
];

/// One problem found in the settings: where, what was expected, what was found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// One or more problems, each with its key path.
    #[error("{} problem(s) in the settings:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl SettingsError {
    /// Every problem, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            SettingsError::Invalid(p) => p,
            SettingsError::Read { .. } => &[],
        }
    }
}

/// The whole adapter's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Settings {
    /// `[usage_service]`: WAP's Usage Service (port 30022); `wap-usage-client`'s own settings.
    pub usage_service: UsageServiceSettings,
    /// `[state]`: the state database (`wap-billing-engine`).
    pub state: StateSettings,
    /// `[engine]`: processors, retries, leases (`wap-billing-engine`).
    pub engine: EngineSettings,
    /// `[responder]`: the approval and pricing endpoint WAP calls (`wap-responder`).
    pub responder: ResponderSettings,
    /// `[admin]`: the status, health and metrics endpoint (`wap-billing-engine`).
    pub admin: AdminSettings,
    /// `[billing]`: the billing system.
    pub billing: BillingSettings,
    /// `[log]`: logging.
    pub log: LogSettings,
}

/// A secret given inline, through an environment variable, or in a file.
#[derive(Clone, Default)]
pub struct SecretSettings {
    /// The value itself (discouraged outside tests: prefer `password_env` or `password_file`).
    pub password: Option<Secret>,
    /// The name of an environment variable that holds it.
    pub password_env: Option<String>,
    /// A file that holds it (a trailing newline is removed).
    pub password_file: Option<PathBuf>,
}

impl fmt::Debug for SecretSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSettings")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("password_file", &self.password_file)
            .finish()
    }
}

impl SecretSettings {
    /// Whether any source is given.
    pub fn is_set(&self) -> bool {
        self.password.is_some() || self.password_env.is_some() || self.password_file.is_some()
    }

    /// Reads the secret; `path` is the key path of the section (problems name `<path>.password`,
    /// `<path>.password_env` or `<path>.password_file`).
    pub fn resolve(&self, path: &str) -> Result<Option<Secret>, Problem> {
        SecretSource::new(self.password.clone(), self.password_env.clone(), self.password_file.clone())
            .resolve(&format!("{path}.password"))
    }
}

/// A URL with any password replaced by `***` (for logs and `Debug`).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match url.split_once("://") {
            // Unparseable: keep the scheme only, never the rest (it may hold a password).
            Some((scheme, _)) => format!("{scheme}://<unparseable, hidden>"),
            None => "<unparseable, hidden>".to_owned(),
        },
    }
}

/// `[billing]`: which billing system, and its own table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BillingSettings {
    /// `ledger` (the reference ledger; default). `whmcs` and `hostbill` follow as their crates land.
    pub system: String,
    /// `BillingSystemExpectedVersion`.
    #[serde(alias = "BillingSystemExpectedVersion")]
    pub expected_version: Option<String>,
    /// `AllowUnexpectedBillingSystemVersion` (false).
    #[serde(alias = "AllowUnexpectedBillingSystemVersion")]
    pub allow_unexpected_version: bool,
    /// `[billing.ledger]`.
    pub ledger: LedgerSettings,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            system: "ledger".to_owned(),
            expected_version: None,
            allow_unexpected_version: false,
            ledger: LedgerSettings::default(),
        }
    }
}

/// `[billing.ledger]`: the reference ledger.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LedgerSettings {
    /// The ledger's SQLite file (`wap-billing-ledger.db`).
    pub path: PathBuf,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings { path: PathBuf::from("wap-billing-ledger.db") }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogSettings {
    /// `text` (default) or `json`; `--log-format` overrides it.
    pub format: String,
    /// A filter such as `info` or `wap_billing_engine=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: "text".to_owned(), level: "info".to_owned() }
    }
}

impl Settings {
    /// Reads, overrides from the process environment and validates a file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let settings = Settings::read(path)?;
        settings.checked(|_| true)
    }

    /// Reads a file and applies the process environment, checking types but not values: for commands that need
    /// only some sections (operator commands need `[state]`, `export` needs `[usage_service]`); check those with
    /// [`Settings::checked`].
    pub fn read(path: &Path) -> Result<Settings, SettingsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| SettingsError::Read { path: path.to_owned(), source })?;
        Settings::parse(&text, std::env::vars())
    }

    /// The settings if [`Settings::validate`] finds no problem among those whose key path `wanted` selects.
    pub fn checked(self, wanted: impl Fn(&str) -> bool) -> Result<Settings, SettingsError> {
        let problems: Vec<Problem> = self.validate().into_iter().filter(|p| wanted(&p.path)).collect();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SettingsError::Invalid(problems))
        }
    }

    /// Reads settings from TOML text and the given environment (`WAP_BILLING_…` variables), and validates them.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        Settings::parse(text, env)?.checked(|_| true)
    }

    /// Parses TOML text, moves `app.config` names and applies the environment; types are checked, values are not.
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings, SettingsError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|s| line_col(text, s.start)).unwrap_or_default();
            SettingsError::Invalid(vec![Problem::new(format!("(file){at}"), "valid TOML", e.message().to_owned())])
        })?;
        let mut problems = Vec::new();
        move_app_config_keys(&mut table, &mut problems);
        apply_env(&mut table, env, &mut problems);
        if !problems.is_empty() {
            return Err(SettingsError::Invalid(problems));
        }
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e: serde_path_to_error::Error<_>| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            SettingsError::Invalid(vec![describe_serde_error(&path, &inner)])
        })
    }

    /// Every problem serde's types cannot see: URLs, addresses, ranges, required values, secrets.
    pub fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        p.extend(self.usage_service.validate("usage_service"));
        p.extend(self.state.validate("state"));
        p.extend(self.engine.validate("engine"));
        p.extend(self.responder.validate("responder"));
        p.extend(self.admin.validate("admin"));

        match self.billing.system.to_ascii_lowercase().as_str() {
            "ledger" => {
                if self.billing.ledger.path.as_os_str().is_empty() {
                    p.push(Problem::new("billing.ledger.path", "a file path", "an empty one"));
                }
            }
            "whmcs" | "hostbill" => p.push(Problem::new(
                "billing.system",
                "ledger (whmcs and hostbill are not available in this build yet)",
                format!("{:?}", self.billing.system),
            )),
            other => p.push(Problem::new("billing.system", "ledger", format!("{other:?}"))),
        }

        if !matches!(self.log.format.to_ascii_lowercase().as_str(), "text" | "json") {
            p.push(Problem::new("log.format", "text or json", format!("{:?}", self.log.format)));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            p.push(Problem::new(
                "log.level",
                "a filter such as info or wap_billing_engine=debug",
                format!("{:?}", self.log.level),
            ));
        }
        p
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |n| before.len() - n - 1) + 1;
    format!(" line {line} column {col}")
}

/// Turns serde's message into expected/found, keeping the path.
fn describe_serde_error(path: &str, message: &str) -> Problem {
    // toml appends context ("in `engine`") on a line of its own: keep the first line.
    let message = message.lines().next().unwrap_or(message).trim();
    // toml's messages: "invalid type: string \"x\", expected u32", "unknown field `x`, expected one of …".
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", expected ").unwrap_or((rest, "a known key"));
        let field = field.trim_matches('`');
        let full = if path.rsplit('.').next() == Some(field) {
            path.to_owned()
        } else if path == "." || path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        return Problem::new(full, format!("a known key ({expected})"), "an unknown key");
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            // Never echo a value: it might be a misplaced secret.
            let kind = found.split_whitespace().next().unwrap_or(found);
            return Problem::new(path, expected.to_owned(), format!("a {kind}"));
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return Problem::new(path, expected.to_owned(), found.to_owned());
        }
    }
    Problem::new(path, "a valid value", message.to_owned())
}

fn move_app_config_keys(table: &mut toml::Table, problems: &mut Vec<Problem>) {
    let sections = ["usage_service", "state", "engine", "responder", "admin", "billing", "log"];
    let keys: Vec<String> = table.keys().filter(|k| !sections.contains(&k.as_str())).cloned().collect();
    for key in keys {
        let Some((_, section, field)) = APP_CONFIG_KEYS.iter().find(|(k, _, _)| k.eq_ignore_ascii_case(&key)) else {
            continue; // left for serde, which names it as unknown
        };
        let value = table.remove(&key).expect("listed key");
        let entry = table.entry((*section).to_owned()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            problems.push(Problem::new(*section, "a table", "a value"));
            continue;
        };
        if section_table.contains_key(*field) {
            problems.push(Problem::new(
                format!("{section}.{field}"),
                format!("one value (given both as {section}.{field} and as {key})"),
                "two",
            ));
            continue;
        }
        section_table.insert((*field).to_owned(), value);
    }
}

/// Applies `WAP_BILLING_<SECTION>__<KEY>[__<KEY>…]` variables. A value that parses as a TOML boolean, integer or
/// float is taken as one; anything else is a string; an empty value removes the key. Variables that do not contain `__` (such as
/// `WAP_BILLING_TEST_POSTGRES_URL`) are ignored.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>, problems: &mut Vec<Problem>) {
    let mut vars: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (name, value) in vars {
        let rest = &name[ENV_PREFIX.len()..];
        if !rest.contains("__") {
            continue;
        }
        let parts: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if parts.iter().any(String::is_empty) {
            problems.push(Problem::new(format!("(env) {name}"), "WAP_BILLING_SECTION__KEY", "an empty part"));
            continue;
        }
        // An empty value removes the key (so a file's password_file can be replaced by an environment password).
        let value = if value.is_empty() { None } else { Some(env_value(&value)) };
        if let Err(part) = insert_path(table, &parts, value) {
            problems.push(Problem::new(format!("(env) {name}"), format!("{part} to be a table"), "a value"));
        }
    }
}

/// Inserts `value` at `path` (all but the last part are tables, created when missing); on a non-table in the way,
/// returns its name.
fn insert_path(table: &mut toml::Table, path: &[String], value: Option<toml::Value>) -> Result<(), String> {
    match path {
        [] => Ok(()),
        [last] => {
            match value {
                Some(v) => table.insert(last.clone(), v),
                None => table.remove(last),
            };
            Ok(())
        }
        [first, rest @ ..] => {
            let next = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match next.as_table_mut() {
                Some(t) => insert_path(t, rest, value),
                None => Err(first.clone()),
            }
        }
    }
}

fn env_value(value: &str) -> toml::Value {
    let v = value.trim();
    if let Ok(b) = v.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = v.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[usage_service]
endpoint = "https://wap.example:30022/"
username = "UsageClient"
password = "usage-secret-1"

[responder]
username = "wapcaller"
password = "responder-secret-2"
"#;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn a_minimal_file_gets_the_spec_defaults() {
        let s = Settings::from_toml_with_env(GOOD, no_env()).unwrap();
        assert_eq!(s.usage_service.batch_size, 100);
        assert_eq!(s.engine.retry_max_attempts, 5);
        assert_eq!(s.engine.sync_interval_ms, 60_000);
        assert_eq!(s.responder.listen, "0.0.0.0:8443");
        assert_eq!(s.state.resolve("state").unwrap().expose(), "sqlite://wap-billing-state.db");
        assert_eq!(s.billing.system, "ledger");
    }

    #[test]
    fn app_config_names_are_accepted_at_the_top_and_in_sections() {
        let text = r#"
UsageServiceEndpoint = "https://wap.example:30022/"
UsageServiceUsername = "UsageClient"
UsageServicePassword = "pw-1"
BillingAdapterUsername = "wapcaller"
BillingAdapterPassword = "pw-2"
retrymaxattempts = 3
[engine]
SyncIntervalMilliseconds = 1500
"#;
        let s = Settings::from_toml_with_env(text, no_env()).unwrap();
        assert_eq!(s.usage_service.endpoint.as_deref(), Some("https://wap.example:30022/"));
        assert_eq!(s.engine.retry_max_attempts, 3);
        assert_eq!(s.engine.sync_interval_ms, 1_500);
        assert_eq!(s.responder.username.as_deref(), Some("wapcaller"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            ("WAP_BILLING_ENGINE__RETRY_MAX_ATTEMPTS".to_owned(), "7".to_owned()),
            ("WAP_BILLING_USAGE_SERVICE__DISABLE_SSL_VERIFICATION".to_owned(), "true".to_owned()),
            ("WAP_BILLING_TEST_POSTGRES_URL".to_owned(), "ignored".to_owned()),
        ];
        let s = Settings::from_toml_with_env(GOOD, env).unwrap();
        assert_eq!(s.engine.retry_max_attempts, 7);
        assert!(s.usage_service.disable_ssl_verification);
    }

    #[test]
    fn problems_name_their_key_path() {
        let bad_type = format!("{GOOD}\n[engine]\nretry_max_attempts = \"five\"\n");
        let e = Settings::from_toml_with_env(&bad_type, no_env()).unwrap_err();
        assert_eq!(e.problems()[0].path, "engine.retry_max_attempts", "{e}");

        let unknown = format!("{GOOD}\n[engine]\nretry_max_atempts = 3\n");
        let e = Settings::from_toml_with_env(&unknown, no_env()).unwrap_err();
        assert_eq!(e.problems()[0].path, "engine.retry_max_atempts", "{e}");

        let zero = format!("{GOOD}\n[engine]\nretry_sleep_ms = 0\nlease_ttl_ms = 5\n");
        let e = Settings::from_toml_with_env(&zero, no_env()).unwrap_err();
        let paths: Vec<&str> = e.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["engine.retry_sleep_ms", "engine.lease_ttl_ms"], "{e}");

        let e = Settings::from_toml_with_env("[usage_service]\nbatch_size = 0\n", no_env()).unwrap_err();
        let paths: Vec<&str> = e.problems().iter().map(|p| p.path.as_str()).collect();
        for want in
            ["usage_service.endpoint", "usage_service.username", "usage_service.password", "usage_service.batch_size"]
        {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }

        let e = Settings::from_toml_with_env("[engine\n", no_env()).unwrap_err();
        assert!(e.problems()[0].path.starts_with("(file) line 1"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_problems() {
        let s = Settings::from_toml_with_env(GOOD, no_env()).unwrap();
        let debug = format!("{s:?}");
        assert!(!debug.contains("usage-secret-1") && !debug.contains("responder-secret-2"), "{debug}");

        let with_pg = format!("{GOOD}\n[state]\nurl = \"postgres://billing:pg-secret-3@db/wap\"\n");
        let s = Settings::from_toml_with_env(&with_pg, no_env()).unwrap();
        assert!(!format!("{s:?}").contains("pg-secret-3"));

        // A secret put where a number belongs is not echoed back.
        let misplaced = format!("{GOOD}\n[engine]\nretry_max_attempts = \"hunter2-secret\"\n");
        let e = Settings::from_toml_with_env(&misplaced, no_env()).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("usage.pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let s = SecretSettings { password_file: Some(file), ..Default::default() };
        assert_eq!(s.resolve("x").unwrap().unwrap().expose(), "from-file");

        let s =
            SecretSettings { password_env: Some("WAP_BILLING_CLI_TEST_NOT_SET_ANYWHERE".into()), ..Default::default() };
        assert_eq!(s.resolve("x").unwrap_err().path, "x.password_env");

        let s = SecretSettings { password: Some(Secret::new("  ")), ..Default::default() };
        assert_eq!(s.resolve("x").unwrap_err().expected, "a non-empty secret");

        let s =
            SecretSettings { password: Some(Secret::new("a")), password_env: Some("B".into()), ..Default::default() };
        assert!(s.resolve("x").is_err(), "two sources are refused");
    }

    #[test]
    fn url_redaction_hides_passwords_even_unparseable_ones() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert!(!redact_url("postgres://u:pa/ss@h/db").contains("pa/ss"));
        assert!(!redact_url("postgres://u:pa ss@h:notaport/db").contains("pa ss"));
    }
}
