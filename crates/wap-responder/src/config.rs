//! Responder settings (docs/protocol/approval-and-pricing.md §5, docs/protocol/adapter-engine.md §10), with the spec's defaults.

use std::time::Duration;

use wap_types::{BasicCredentials, PriceEncoding};

/// The default `ApprovalTimeBudgetMilliseconds`: 30 s, well below WAP's 120 s call timeout.
pub const DEFAULT_DECISION_BUDGET: Duration = Duration::from_secs(30);
/// How long an answer is kept per `EventId`: 10 min.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);
/// How many answers are kept at most (older ones are dropped first when full).
pub const DEFAULT_IDEMPOTENCY_CAPACITY: usize = 100_000;
/// The largest approval body accepted: 1 MiB (larger → 413).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may take to send a request body once its headers are in.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send its request headers.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::max_connections`]: open connections served at once (WAP opens a few per front end).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default `PricingMaxLength`.
pub const DEFAULT_PRICE_MAX_LENGTH: usize = wap_types::pricing::DEFAULT_PRICE_MAX_LENGTH;

/// How WAP authenticates to the responder (`ResponderAuthenticationMode`, as registered with
/// `-AuthenticationMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthMode {
    /// `Basic` (the default): WAP must present these credentials (`BillingAdapterUsername` /
    /// `BillingAdapterPassword`); the user name is compared ignoring case, the password exactly, in constant time.
    Basic(BasicCredentials),
    /// `None`: the `Authorization` header is ignored. Only by explicit opt-in
    /// ([`ResponderConfig::without_authentication`]).
    None,
}

/// What answer a failed decision gets (`ApprovalFailureMode`): an approver error, a panic, or an overrun of the
/// decision budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailureMode {
    /// 403: fail closed like WAP (default).
    #[default]
    Deny,
    /// 204: never block a sale when the billing system is down.
    Approve,
}

/// The answer for a price whose id is unknown (`PricingUnknownIdStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UnknownPriceStatus {
    /// 200 with an empty price (`""`): never blocks a sale (default).
    #[default]
    EmptyOk,
    /// 404.
    NotFound,
}

/// The former name of [`ResponderConfigError`], kept so that existing code compiles (the engine's settings error
/// had the same name).
#[deprecated(since = "0.1.0", note = "renamed `ResponderConfigError`")]
pub type ConfigError = ResponderConfigError;

/// A setting that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponderConfigError {
    /// A value of the wrong form (the value is shown, except for passwords, which are never invalid).
    #[error("setting `{key}` = {value:?} is invalid: expected {expected}")]
    InvalidValue {
        /// The setting's name.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// `ResponderAuthenticationMode = Basic` (the default) without both credentials.
    #[error("`BillingAdapterUsername` and `BillingAdapterPassword` are required with authentication mode Basic")]
    MissingCredentials,
    /// A password that is empty or only whitespace: anyone who knows the user name would be let in.
    #[error("setting `{key}` is empty or whitespace: a non-blank password is required with authentication mode Basic")]
    BlankPassword {
        /// The setting (or field) that holds the password.
        key: String,
    },
}

impl ResponderConfigError {
    /// Whether the same settings could succeed later: never (a setting must be changed).
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// How the responder answers: authentication, routing, limits, decision budget, failure mode, idempotency and
/// pricing format. Build it with [`ResponderConfig::basic`] (or, by explicit choice,
/// [`ResponderConfig::without_authentication`]) and adjust fields or chain the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ResponderConfig {
    /// Who may call (`ResponderAuthenticationMode`).
    pub auth: AuthMode,
    /// The path of the registered endpoint (`ResponderBasePath`, default `/`).
    pub base_path: String,
    /// Route by the last path segment whatever precedes it (default `true`, docs/protocol/approval-and-pricing.md §3.2). With `false` only the base
    /// path and the root are served; any other prefix is 404.
    pub any_path_prefix: bool,
    /// Serve the approval paths (`SubscriptionResponderEnabled`, default `true`); off → 404.
    pub approval_enabled: bool,
    /// Serve the pricing paths when a pricing responder is attached (`PricingResponderEnabled`; `true` when built in
    /// code, `false` by default when read from settings, as in the spec); off → 404.
    pub pricing_enabled: bool,
    /// How long a decision may take (`ApprovalTimeBudgetMilliseconds`, 30 s).
    pub decision_budget: Duration,
    /// The answer when a decision fails (`ApprovalFailureMode`, deny).
    pub failure_mode: FailureMode,
    /// How long an answer is repeated for a resent `EventId` (10 min); zero disables the cache.
    pub idempotency_window: Duration,
    /// How many answers are kept at most.
    pub idempotency_capacity: usize,
    /// The largest body accepted (1 MiB); larger → 413.
    pub max_body_bytes: usize,
    /// How long a client may take to send the body (30 s); slower → 408.
    pub body_read_timeout: Duration,
    /// Price encoding (`PricingResponseFormat`: JSON string literal by default, or text).
    pub price_encoding: PriceEncoding,
    /// Longest price in characters (`PricingMaxLength`, 256).
    pub price_max_length: usize,
    /// Answer for unknown price ids (`PricingUnknownIdStatus`, 200 with `""`).
    pub unknown_price_status: UnknownPriceStatus,
    /// Read the body's `Method` values `"1"`, `"2"`, `"3"` as Put, Patch, Delete (`MethodNumericOrdinals`, default
    /// `false`): must match the engine's setting, which the adapter applies when it starts the responder.
    pub method_numeric_ordinals: bool,
}

impl ResponderConfig {
    fn with_auth(auth: AuthMode) -> Self {
        ResponderConfig {
            auth,
            base_path: "/".to_owned(),
            any_path_prefix: true,
            approval_enabled: true,
            pricing_enabled: true,
            decision_budget: DEFAULT_DECISION_BUDGET,
            failure_mode: FailureMode::Deny,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            idempotency_capacity: DEFAULT_IDEMPOTENCY_CAPACITY,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            price_encoding: PriceEncoding::Json,
            price_max_length: DEFAULT_PRICE_MAX_LENGTH,
            unknown_price_status: UnknownPriceStatus::EmptyOk,
            method_numeric_ordinals: false,
        }
    }

    /// The default configuration: WAP must present `credentials` with HTTP Basic.
    pub fn basic(credentials: BasicCredentials) -> Self {
        ResponderConfig::with_auth(AuthMode::Basic(credentials))
    }

    /// No authentication (`-AuthenticationMode None`): anyone who reaches the port may ask. Use only behind a
    /// network boundary that already restricts callers.
    pub fn without_authentication() -> Self {
        ResponderConfig::with_auth(AuthMode::None)
    }

    /// Reads the spec's setting names (docs/protocol/approval-and-pricing.md §5): `ResponderAuthenticationMode`,
    /// `BillingAdapterUsername`, `BillingAdapterPassword`, `ResponderBasePath`, `SubscriptionResponderEnabled`,
    /// `PricingResponderEnabled`, `ApprovalTimeBudgetMilliseconds`, `ApprovalFailureMode`,
    /// `PricingResponseFormat`, `PricingMaxLength`, `PricingUnknownIdStatus`, `MethodNumericOrdinals`. Names match
    /// ignoring ASCII case;
    /// other names are ignored (they belong to other parts of the adapter); absent ones take the spec's defaults.
    ///
    /// Deprecated: deserialize a [`ResponderSettings`](crate::ResponderSettings) (the same names are serde
    /// aliases; secrets may come from the environment or a file) and call its
    /// [`to_config`](crate::ResponderSettings::to_config).
    #[deprecated(since = "0.1.0", note = "deserialize a ResponderSettings (spec names are aliases) and call to_config")]
    pub fn from_settings<I, K, V>(settings: I) -> Result<Self, ResponderConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = ResponderConfig::with_auth(AuthMode::None);
        config.pricing_enabled = false;
        let mut mode_basic = true;
        let mut username = None;
        let mut password = None;
        for (key, value) in settings {
            let (key, value) = (key.as_ref(), value.as_ref().trim());
            let is = |name: &str| key.eq_ignore_ascii_case(name);
            let invalid = |expected| ResponderConfigError::InvalidValue {
                key: key.to_owned(),
                value: value.to_owned(),
                expected,
            };
            if is("ResponderAuthenticationMode") {
                mode_basic = match value.to_ascii_lowercase().as_str() {
                    "basic" => true,
                    "none" => false,
                    _ => return Err(invalid("`Basic` or `None`")),
                };
            } else if is("BillingAdapterUsername") {
                username = Some(value.to_owned());
            } else if is("BillingAdapterPassword") {
                password = Some(value.to_owned());
            } else if is("ResponderBasePath") {
                config.base_path = value.to_owned();
            } else if is("SubscriptionResponderEnabled") {
                config.approval_enabled = parse_bool(value).ok_or_else(|| invalid("true or false"))?;
            } else if is("PricingResponderEnabled") {
                config.pricing_enabled = parse_bool(value).ok_or_else(|| invalid("true or false"))?;
            } else if is("ApprovalTimeBudgetMilliseconds") {
                let ms: u64 = value.parse().map_err(|_| invalid("a number of milliseconds"))?;
                config.decision_budget = Duration::from_millis(ms);
            } else if is("ApprovalFailureMode") {
                config.failure_mode = match value.to_ascii_lowercase().as_str() {
                    "deny" => FailureMode::Deny,
                    "approve" => FailureMode::Approve,
                    _ => return Err(invalid("`deny` or `approve`")),
                };
            } else if is("PricingResponseFormat") {
                config.price_encoding = match value.to_ascii_lowercase().as_str() {
                    "json" => PriceEncoding::Json,
                    "text" => PriceEncoding::Text,
                    _ => return Err(invalid("`json` or `text`")),
                };
            } else if is("PricingMaxLength") {
                config.price_max_length = value.parse().map_err(|_| invalid("a number of characters"))?;
            } else if is("MethodNumericOrdinals") {
                config.method_numeric_ordinals = parse_bool(value).ok_or_else(|| invalid("true or false"))?;
            } else if is("PricingUnknownIdStatus") {
                config.unknown_price_status = match value {
                    "200" => UnknownPriceStatus::EmptyOk,
                    "404" => UnknownPriceStatus::NotFound,
                    _ => return Err(invalid("200 or 404")),
                };
            }
        }
        if mode_basic {
            match (username, password) {
                (Some(u), Some(p)) if !u.is_empty() => config.auth = AuthMode::Basic(BasicCredentials::new(u, p)),
                _ => return Err(ResponderConfigError::MissingCredentials),
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what a server must not run with: Basic credentials with an empty user name
    /// ([`ResponderConfigError::MissingCredentials`]) or a password that is empty or whitespace
    /// ([`ResponderConfigError::BlankPassword`]). [`serve`](crate::serve) refuses such a configuration, and a
    /// [`Responder`](crate::Responder) built with one refuses every call (401).
    pub fn validate(&self) -> Result<(), ResponderConfigError> {
        if let AuthMode::Basic(credentials) = &self.auth {
            if credentials.username.trim().is_empty() {
                return Err(ResponderConfigError::MissingCredentials);
            }
            if credentials.password.expose().trim().is_empty() {
                return Err(ResponderConfigError::BlankPassword { key: "BillingAdapterPassword".into() });
            }
        }
        Ok(())
    }

    /// Sets the registered endpoint's path (`ResponderBasePath`).
    pub fn base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// Serves only the base path and the root (not any prefix).
    pub fn strict_base_path(mut self) -> Self {
        self.any_path_prefix = false;
        self
    }

    /// Sets the decision budget.
    pub fn decision_budget(mut self, budget: Duration) -> Self {
        self.decision_budget = budget;
        self
    }

    /// Sets the failure mode.
    pub fn failure_mode(mut self, mode: FailureMode) -> Self {
        self.failure_mode = mode;
        self
    }

    /// Sets the idempotency window (zero disables the cache).
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// Sets the largest accepted body.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the body read timeout.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.body_read_timeout = timeout;
        self
    }

    /// Sets the price encoding.
    pub fn price_encoding(mut self, encoding: PriceEncoding) -> Self {
        self.price_encoding = encoding;
        self
    }

    /// Reads `Method` `"1"`, `"2"`, `"3"` as Put, Patch, Delete (`MethodNumericOrdinals`).
    pub fn method_numeric_ordinals(mut self, enabled: bool) -> Self {
        self.method_numeric_ordinals = enabled;
        self
    }

    /// Sets the answer for unknown price ids.
    pub fn unknown_price_status(mut self, status: UnknownPriceStatus) -> Self {
        self.unknown_price_status = status;
        self
    }

    /// The base path as lower-case segments (`/wap/` → `["wap"]`).
    pub(crate) fn base_segments(&self) -> Vec<String> {
        self.base_path.split('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect()
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "$true" => Some(true),
        "false" | "0" | "no" | "$false" => Some(false),
        _ => None,
    }
}

/// Connection settings of [`serve`](crate::serve): header read timeout, keep-alive, graceful shutdown and TLS.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long a client may take to send its request headers (30 s); slower → the connection is closed.
    pub header_read_timeout: Duration,
    /// Keep connections open between requests (default `true`).
    pub keep_alive: bool,
    /// How long a graceful shutdown waits for open connections to finish (10 s) before closing them.
    pub shutdown_grace: Duration,
    /// Connections served at once (default [`DEFAULT_MAX_CONNECTIONS`], 1,024). A connection past the limit is
    /// answered `503 Service Unavailable` with `Retry-After: 1` and a text body, then closed (over TLS it is closed
    /// without a handshake).
    pub max_connections: usize,
    /// HTTPS (feature `rustls`): `None` serves plain HTTP.
    #[cfg(feature = "rustls")]
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive: true,
            shutdown_grace: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Sets the header read timeout.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets how many connections are served at once (at least 1); see [`ServerConfig::max_connections`].
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets how long a graceful shutdown waits.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves HTTPS with this certificate and key.
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }
}

#[cfg(test)]
#[allow(deprecated)] // the key/value API is still tested while it exists
mod tests {
    use super::*;

    #[test]
    fn settings_use_the_spec_names_and_defaults() {
        let c = ResponderConfig::from_settings([
            ("BillingAdapterUsername", "wapcaller"),
            ("BillingAdapterPassword", "S3cure!pass"),
            ("ResponderBasePath", "/wap/"),
            ("pricingresponseformat", "Text"),
            ("ApprovalFailureMode", "approve"),
            ("ApprovalTimeBudgetMilliseconds", "1500"),
            ("UsageServiceBatchSize", "100"),
        ])
        .unwrap();
        assert_eq!(c.auth, AuthMode::Basic(BasicCredentials::new("wapcaller", "S3cure!pass")));
        assert_eq!(c.base_segments(), vec!["wap".to_owned()]);
        assert_eq!(c.price_encoding, PriceEncoding::Text);
        assert_eq!(c.failure_mode, FailureMode::Approve);
        assert_eq!(c.decision_budget, Duration::from_millis(1500));
        assert!(!c.pricing_enabled, "spec default of PricingResponderEnabled is false");
        assert!(c.approval_enabled);
    }

    #[test]
    fn basic_without_credentials_is_refused_and_none_is_explicit() {
        assert_eq!(
            ResponderConfig::from_settings([("BillingAdapterUsername", "x")]).unwrap_err(),
            ResponderConfigError::MissingCredentials
        );
        let c = ResponderConfig::from_settings([("ResponderAuthenticationMode", "None")]).unwrap();
        assert_eq!(c.auth, AuthMode::None);
        let err = ResponderConfig::from_settings([("ResponderAuthenticationMode", "Windows")]).unwrap_err();
        assert!(err.to_string().contains("ResponderAuthenticationMode"), "{err}");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = ResponderConfig::from_settings([
            ("ResponderAuthenticationMode", "None"),
            ("PricingUnknownIdStatus", "500"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PricingUnknownIdStatus"), "{err}");
    }

    #[test]
    fn blank_passwords_are_refused() {
        for password in ["", " ", "\t  "] {
            let err = ResponderConfig::from_settings([
                ("BillingAdapterUsername", "WAPCALLER"),
                ("BillingAdapterPassword", password),
            ])
            .unwrap_err();
            assert_eq!(
                err,
                ResponderConfigError::BlankPassword { key: "BillingAdapterPassword".into() },
                "{password:?}"
            );
            assert!(err.to_string().contains("BillingAdapterPassword"), "{err}");
            let in_code = ResponderConfig::basic(BasicCredentials::new("wapcaller", password));
            assert!(matches!(in_code.validate(), Err(ResponderConfigError::BlankPassword { .. })), "{password:?}");
        }
        assert!(ResponderConfig::basic(BasicCredentials::new(" ", "pw")).validate().is_err());
        assert!(ResponderConfig::basic(BasicCredentials::new("u", "pw")).validate().is_ok());
        assert!(ResponderConfig::without_authentication().validate().is_ok());
    }

    #[test]
    fn method_numeric_ordinals_is_read() {
        let c = ResponderConfig::from_settings([
            ("ResponderAuthenticationMode", "None"),
            ("MethodNumericOrdinals", "True"),
        ])
        .unwrap();
        assert!(c.method_numeric_ordinals);
        let c = ResponderConfig::from_settings([("ResponderAuthenticationMode", "None")]).unwrap();
        assert!(!c.method_numeric_ordinals);
    }
}
