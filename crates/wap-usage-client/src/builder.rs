//! [`UsageClientBuilder`]: every setting of a [`UsageClient`](crate::UsageClient), with the configuration key
//! names of docs/protocol/approval-and-pricing.md §5.

use std::sync::Arc;
use std::time::Duration;

use url::Url;
use wap_types::cursor::{clamp_batch_size, DEFAULT_BATCH_SIZE};
use wap_types::{BasicCredentials, StartIdMode};

use crate::client::UsageClient;
use crate::clock::{Clock, TokioClock};
use crate::error::Error;
use crate::redact::RedactedUrl;
use crate::retry::RetryPolicy;

/// The request timeout default: 120 s (`UsageServiceTimeoutSeconds`, same as WAP's
/// `OutgoingCallsDefaultTimeoutInSeconds`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The connect timeout default: 30 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The pause of `follow` once caught up: 60 s (`SyncIntervalMilliseconds`, WAP's advice of polling once a minute).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The largest response body accepted by default: 256 MiB (a page of 10,000 records is a few MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The configuration keys [`UsageClientBuilder::setting`] understands.
pub const SETTING_KEYS: [&str; 12] = [
    "UsageServiceEndpoint",
    "UsageServiceUsername",
    "UsageServicePassword",
    "UsageServiceBatchSize",
    "DisableSslVerification",
    "UsageServiceCaFile",
    "UsageServicePinnedCertSha256",
    "UsageServiceTimeoutSeconds",
    "StartIdInclusive",
    "MethodNumericOrdinals",
    "SyncIntervalMilliseconds",
    "UsageServiceUserAgent",
];

/// Builds a [`UsageClient`]. Start with [`UsageClient::builder`].
///
/// Setters never fail; problems (a malformed URL or pin, an unreadable CA file, a zero timeout or poll interval,
/// pins together with `DisableSslVerification`) are reported by [`build`](Self::build) as [`Error::Config`], naming
/// the configuration key. Credentials never show in its `Debug` output nor in its errors, including those embedded
/// in the endpoint URL (even a URL that does not parse).
#[derive(Debug, Clone)]
pub struct UsageClientBuilder {
    base_url: Option<RedactedUrl>,
    credentials: Option<BasicCredentials>,
    batch_size: u32,
    start_id_mode: StartIdMode,
    method_numeric_ordinals: bool,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    retry: RetryPolicy,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    max_body_bytes: usize,
    pool_idle_timeout: Duration,
    pool_max_idle_per_host: usize,
    #[cfg(feature = "rustls")]
    tls: crate::tls::TlsOptions,
    problems: Vec<String>,
}

impl Default for UsageClientBuilder {
    fn default() -> Self {
        UsageClientBuilder {
            base_url: None,
            credentials: None,
            batch_size: DEFAULT_BATCH_SIZE,
            start_id_mode: StartIdMode::Inclusive,
            method_numeric_ordinals: false,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("wap-usage-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            retry: RetryPolicy::default(),
            clock: Arc::new(TokioClock),
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 8,
            #[cfg(feature = "rustls")]
            tls: crate::tls::TlsOptions::new(),
            problems: Vec::new(),
        }
    }
}

impl UsageClientBuilder {
    /// A builder with the defaults (batch 100, timeout 120 s, `StartIdInclusive = true`, verify TLS).
    pub fn new() -> Self {
        Self::default()
    }

    /// The Usage Service base URL (`UsageServiceEndpoint`), e.g. `https://wapadmin01:30022/`. Feed paths are
    /// appended to its path. User information in the URL (`https://user:pass@host/`) is removed from the URL and
    /// used as the credentials unless [`credentials`](Self::credentials) is called.
    pub fn base_url(mut self, url: impl AsRef<str>) -> Self {
        self.base_url = Some(RedactedUrl::new(url.as_ref()));
        self
    }

    /// The Basic credentials (`UsageServiceUsername` / `UsageServicePassword`).
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<wap_types::Secret>) -> Self {
        self.credentials = Some(BasicCredentials::new(username, password));
        self
    }

    /// The Basic credentials as a [`BasicCredentials`] value.
    pub fn basic_credentials(mut self, credentials: BasicCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The default `batchSize` (`UsageServiceBatchSize`, default 100), clamped to `1..=10000`.
    pub fn batch_size(mut self, batch: u32) -> Self {
        self.batch_size = clamp_batch_size(batch);
        self
    }

    /// How the server reads `startId` (`StartIdInclusive`, default `true`): with `false` the next request sends the
    /// highest id processed instead of highest + 1.
    pub fn start_id_inclusive(mut self, inclusive: bool) -> Self {
        self.start_id_mode = if inclusive { StartIdMode::Inclusive } else { StartIdMode::Exclusive };
        self
    }

    /// The same as [`start_id_inclusive`](Self::start_id_inclusive), as a [`StartIdMode`].
    pub fn start_id_mode(mut self, mode: StartIdMode) -> Self {
        self.start_id_mode = mode;
        self
    }

    /// Reads the event `Method` values `"1"`, `"2"`, `"3"` as Put, Patch, Delete (`MethodNumericOrdinals`, default
    /// `false`: they stay `Other`).
    pub fn method_numeric_ordinals(mut self, enabled: bool) -> Self {
        self.method_numeric_ordinals = enabled;
        self
    }

    /// The timeout of one request attempt, connect, head and body included (`UsageServiceTimeoutSeconds`, default
    /// 120 s). Zero is refused by [`build`](Self::build).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The timeout of opening a TCP connection (default 30 s). Zero is refused by [`build`](Self::build).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `wap-usage-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How failed requests are retried (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The clock for back-off, timeouts and `follow` waits (default [`TokioClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How long `follow` waits after catching up before it polls again (`SyncIntervalMilliseconds`, default 60 s).
    /// Zero is refused by [`build`](Self::build).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The largest response body accepted (default 256 MiB); larger ones fail with [`Error::BodyTooLarge`].
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit.max(1);
        self
    }

    /// How long an idle keep-alive connection stays in the pool (default 90 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How many idle keep-alive connections are kept per host (default 8).
    pub fn pool_max_idle_per_host(mut self, max: usize) -> Self {
        self.pool_max_idle_per_host = max;
        self
    }

    /// Trusts the system's root certificates (default `true`). Turn off to trust only the given CA certificates.
    #[cfg(feature = "rustls")]
    pub fn use_system_roots(mut self, enabled: bool) -> Self {
        self.tls.use_system_roots = enabled;
        self
    }

    /// Trusts the CA (or self-signed) certificate(s) of a PEM text in addition to the system roots.
    #[cfg(feature = "rustls")]
    pub fn add_ca_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.extra_ca_pem.push(pem.as_ref().to_vec());
        self
    }

    /// Trusts the CA certificate(s) of a PEM file (`UsageServiceCaFile`), read by [`build`](Self::build).
    #[cfg(feature = "rustls")]
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls.ca_files.push(path.into());
        self
    }

    /// Trusts exactly the server certificate whose DER has this SHA-256 (`UsageServicePinnedCertSha256`). Several
    /// pins may be added (certificate rotation). With a pin, chain, host name and validity are not checked; the
    /// handshake signature is. Combined with `DisableSslVerification = true`, [`build`](Self::build) fails.
    #[cfg(feature = "rustls")]
    pub fn pinned_certificate_sha256(mut self, sha256: [u8; 32]) -> Self {
        self.tls.pins.push(sha256);
        self
    }

    /// [`pinned_certificate_sha256`](Self::pinned_certificate_sha256) from 64 hex digits (`:`, spaces allowed).
    #[cfg(feature = "rustls")]
    pub fn pinned_certificate_sha256_hex(mut self, hex: impl AsRef<str>) -> Self {
        match crate::tls::parse_sha256_hex(hex.as_ref()) {
            Ok(pin) => self.tls.pins.push(pin),
            Err(e) => self.problems.push(e.to_string()),
        }
        self
    }

    /// **Dangerous**: accepts any server certificate (`DisableSslVerification = true`). Anyone on the network path
    /// can then read the credentials and alter the data. Prefer a CA file or a pin. Together with a pin it is a
    /// configuration error at [`build`](Self::build): a pin must never be silently ignored.
    #[cfg(feature = "rustls")]
    pub fn danger_disable_certificate_verification(mut self) -> Self {
        self.tls.disable_verification = true;
        self
    }

    /// `DisableSslVerification` as a boolean (`true` = [`danger_disable_certificate_verification`]).
    ///
    /// [`danger_disable_certificate_verification`]: Self::danger_disable_certificate_verification
    #[cfg(feature = "rustls")]
    pub fn disable_ssl_verification(mut self, disable: bool) -> Self {
        self.tls.disable_verification = disable;
        self
    }

    /// Applies one configuration key by its name (docs/protocol/approval-and-pricing.md §5; see [`SETTING_KEYS`]), the value as
    /// text. Unknown keys and malformed values are reported by [`build`](Self::build).
    ///
    /// Deprecated: deserialize a [`UsageServiceSettings`](crate::UsageServiceSettings) (the same keys, as serde
    /// aliases) and call its [`client_builder`](crate::UsageServiceSettings::client_builder).
    #[deprecated(
        since = "0.1.0",
        note = "deserialize a UsageServiceSettings (app.config names are aliases) and call client_builder"
    )]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        let v = value.trim();
        let bool_value = |s: &str| match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        };
        let bad = |what: &str| format!("{key}: {what}, got {value:?}");
        match key {
            "UsageServiceEndpoint" => self.base_url = Some(RedactedUrl::new(v)),
            "UsageServiceUsername" => {
                let password = self.credentials.take().map(|c| c.password).unwrap_or_default();
                self.credentials = Some(BasicCredentials { username: value.to_owned(), password });
            }
            "UsageServicePassword" => {
                let username = self.credentials.take().map(|c| c.username).unwrap_or_default();
                self.credentials = Some(BasicCredentials::new(username, value));
            }
            "UsageServiceBatchSize" => match v.parse::<u64>() {
                Ok(n) => self.batch_size = clamp_batch_size(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(_) => self.problems.push(bad("expected a positive integer")),
            },
            "UsageServiceTimeoutSeconds" => match v.parse::<u64>() {
                Ok(n) if n > 0 => self.timeout = Duration::from_secs(n),
                _ => self.problems.push(bad("expected a positive number of seconds")),
            },
            "SyncIntervalMilliseconds" => match v.parse::<u64>() {
                Ok(n) if n > 0 => self.poll_interval = Duration::from_millis(n),
                _ => self.problems.push(bad("expected a positive number of milliseconds")),
            },
            "StartIdInclusive" => match bool_value(v) {
                Some(b) => self = self.start_id_inclusive(b),
                None => self.problems.push(bad("expected true or false")),
            },
            "MethodNumericOrdinals" => match bool_value(v) {
                Some(b) => self.method_numeric_ordinals = b,
                None => self.problems.push(bad("expected true or false")),
            },
            "UsageServiceUserAgent" => self.user_agent = v.to_owned(),
            #[cfg(feature = "rustls")]
            "DisableSslVerification" => match bool_value(v) {
                Some(b) => self.tls.disable_verification = b,
                None => self.problems.push(bad("expected true or false")),
            },
            #[cfg(feature = "rustls")]
            "UsageServiceCaFile" => {
                if !v.is_empty() {
                    self.tls.ca_files.push(v.into());
                }
            }
            #[cfg(feature = "rustls")]
            "UsageServicePinnedCertSha256" => {
                if !v.is_empty() {
                    self = self.pinned_certificate_sha256_hex(v);
                }
            }
            #[cfg(not(feature = "rustls"))]
            "DisableSslVerification" | "UsageServiceCaFile" | "UsageServicePinnedCertSha256" => {
                self.problems.push(format!("{key} needs the `rustls` feature of wap-usage-client"))
            }
            _ => self.problems.push(format!("unknown Usage Service client setting {key:?}")),
        }
        self
    }

    /// Builds the client: checks the settings, loads certificates and creates the connection pool.
    pub fn build(self) -> Result<UsageClient, Error> {
        if let Some(p) = self.problems.first() {
            return Err(Error::Config(p.clone()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config(
                "UsageServiceTimeoutSeconds: the request timeout must be greater than zero".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            return Err(Error::Config("connect_timeout: the connect timeout must be greater than zero".into()));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::Config("SyncIntervalMilliseconds: the poll interval must be greater than zero".into()));
        }
        #[cfg(feature = "rustls")]
        if self.tls.disable_verification && !self.tls.pins.is_empty() {
            return Err(Error::Config(
                "UsageServicePinnedCertSha256 is set together with DisableSslVerification = true: a pin is a \
                 verification, so the two contradict each other; remove one of them"
                    .into(),
            ));
        }
        let raw = self.base_url.as_ref().ok_or_else(|| Error::Config("UsageServiceEndpoint is not set".into()))?;
        let mut url = Url::parse(raw.expose())
            .map_err(|e| Error::Config(format!("UsageServiceEndpoint {:?}: {e}", raw.redacted())))?;
        if url.cannot_be_a_base() {
            // `user:pass@host` without a scheme reads as the scheme `user`: name neither part.
            return Err(Error::Config(format!(
                "UsageServiceEndpoint {:?}: expected http:// or https:// followed by a host",
                raw.redacted()
            )));
        }
        let mut credentials = self.credentials.clone();
        if !url.username().is_empty() || url.password().is_some() {
            let decode = |s: &str| percent_decode(s);
            let from_url = BasicCredentials::new(decode(url.username()), decode(url.password().unwrap_or("")));
            credentials.get_or_insert(from_url);
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        match url.scheme() {
            "https" | "http" => {}
            other => return Err(Error::Config(format!("UsageServiceEndpoint: unsupported scheme {other:?}"))),
        }
        #[cfg(not(feature = "rustls"))]
        if url.scheme() == "https" {
            return Err(Error::Config(
                "UsageServiceEndpoint is https but wap-usage-client was built without the `rustls` feature".into(),
            ));
        }
        if url.host_str().is_none() {
            return Err(Error::Config(format!("UsageServiceEndpoint {url} has no host")));
        }
        url.set_query(None);
        url.set_fragment(None);
        let credentials = credentials
            .filter(|c| !c.username.is_empty())
            .ok_or_else(|| Error::Config("UsageServiceUsername / UsageServicePassword are not set".into()))?;
        UsageClient::from_parts(crate::client::ClientParts {
            base_url: url,
            credentials,
            batch_size: self.batch_size,
            start_id_mode: self.start_id_mode,
            method_numeric_ordinals: self.method_numeric_ordinals,
            timeout: self.timeout,
            connect_timeout: self.connect_timeout,
            user_agent: self.user_agent,
            retry: self.retry,
            clock: self.clock,
            poll_interval: self.poll_interval,
            max_body_bytes: self.max_body_bytes,
            pool_idle_timeout: self.pool_idle_timeout,
            pool_max_idle_per_host: self.pool_max_idle_per_host,
            #[cfg(feature = "rustls")]
            tls: self.tls,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
#[allow(deprecated)] // the key/value API is still tested while it exists
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_url_credentials() {
        assert_eq!(percent_decode("us%40er"), "us@er");
        assert_eq!(percent_decode("p%3Ass%25"), "p:ss%");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%4"), "bad%zz%4");
        assert_eq!(percent_decode("é%"), "é%");
    }

    #[tokio::test]
    async fn build_checks_the_configuration() {
        let err = |b: UsageClientBuilder| match b.build() {
            Err(Error::Config(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        };
        assert!(err(UsageClient::builder()).contains("UsageServiceEndpoint is not set"));
        assert!(err(UsageClient::builder().base_url("not a url").credentials("u", "p")).contains("not a url"));
        assert!(err(UsageClient::builder().base_url("ftp://h/").credentials("u", "p")).contains("unsupported scheme"));
        assert!(err(UsageClient::builder().base_url("http://h:30022/")).contains("UsageServiceUsername"));
        assert!(err(UsageClient::builder().setting("UsageServiceBatchSize", "many")).contains("UsageServiceBatchSize"));
        assert!(err(UsageClient::builder().setting("Nope", "1")).contains("unknown"));
        assert!(err(UsageClient::builder().setting("StartIdInclusive", "maybe")).contains("true or false"));
    }

    #[tokio::test]
    async fn settings_by_key_name() {
        let mut b = UsageClient::builder();
        for (k, v) in [
            ("UsageServiceEndpoint", "http://wap.test:30022/"),
            ("UsageServiceUsername", "usagereader"),
            ("UsageServicePassword", "Us4ge-Read"),
            ("UsageServiceBatchSize", "50000"),
            ("UsageServiceTimeoutSeconds", "30"),
            ("StartIdInclusive", "false"),
            ("MethodNumericOrdinals", "True"),
            ("SyncIntervalMilliseconds", "5000"),
        ] {
            b = b.setting(k, v);
        }
        let c = b.build().unwrap();
        assert_eq!(c.batch_size(), 10_000);
        assert_eq!(c.timeout(), Duration::from_secs(30));
        assert_eq!(c.start_id_mode(), StartIdMode::Exclusive);
        assert!(c.method_numeric_ordinals());
        assert_eq!(c.poll_interval(), Duration::from_millis(5000));
        assert_eq!(c.username(), "usagereader");
        let debug = format!("{c:?}");
        assert!(!debug.contains("Us4ge-Read") && debug.contains("usagereader"), "{debug}");
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_moved_out_of_it() {
        let c = UsageClient::builder().base_url("http://user%40corp:s3cr%3At@wap.test:30022/base/").build().unwrap();
        assert_eq!(c.base_url().as_str(), "http://wap.test:30022/base/");
        assert_eq!(c.username(), "user@corp");
        assert!(!format!("{c:?}").contains("s3cr"));
        // explicit credentials win
        let c = UsageClient::builder().base_url("http://a:b@wap.test/").credentials("x", "y").build().unwrap();
        assert_eq!(c.username(), "x");
        assert_eq!(c.base_url().as_str(), "http://wap.test/");
    }

    #[test]
    fn zero_timeouts_and_intervals_are_refused_with_the_key() {
        let err = |b: UsageClientBuilder| match b.base_url("http://wap.test/").credentials("u", "p").build() {
            Err(Error::Config(m)) => m,
            other => panic!("expected a configuration error, got {other:?}"),
        };
        assert!(err(UsageClient::builder().timeout(Duration::ZERO)).starts_with("UsageServiceTimeoutSeconds:"));
        assert!(err(UsageClient::builder().setting("UsageServiceTimeoutSeconds", "0"))
            .starts_with("UsageServiceTimeoutSeconds:"));
        assert!(err(UsageClient::builder().poll_interval(Duration::ZERO)).starts_with("SyncIntervalMilliseconds:"));
        assert!(err(UsageClient::builder().setting("SyncIntervalMilliseconds", "0"))
            .starts_with("SyncIntervalMilliseconds:"));
        assert!(err(UsageClient::builder().connect_timeout(Duration::ZERO)).starts_with("connect_timeout:"));
        let ok = UsageClient::builder().base_url("http://wap.test/").credentials("u", "p");
        assert!(ok.setting("SyncIntervalMilliseconds", "1").timeout(Duration::from_millis(1)).build().is_ok());
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn pins_with_disabled_verification_are_a_configuration_error() {
        let pin = "ab".repeat(32);
        let builders = [
            UsageClient::builder().pinned_certificate_sha256([7; 32]).danger_disable_certificate_verification(),
            UsageClient::builder().danger_disable_certificate_verification().pinned_certificate_sha256([7; 32]),
            UsageClient::builder()
                .setting("UsageServicePinnedCertSha256", &pin)
                .setting("DisableSslVerification", "true"),
        ];
        for b in builders {
            match b.base_url("https://wap.test:30022/").credentials("u", "p").build() {
                Err(Error::Config(m)) => {
                    assert!(m.contains("UsageServicePinnedCertSha256") && m.contains("DisableSslVerification"), "{m}")
                }
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
        let b = UsageClient::builder().setting("UsageServicePinnedCertSha256", &pin);
        let b = b.setting("DisableSslVerification", "false").base_url("https://wap.test:30022/");
        assert!(b.credentials("u", "p").build().is_ok(), "a pin alone is fine");
    }

    #[test]
    fn credentials_in_the_endpoint_never_show_in_debug_or_errors() {
        let b = UsageClient::builder().base_url("https://usagereader:S3cr3t-pw@wap.test:30022/");
        let debug = format!("{b:?}");
        assert!(!debug.contains("S3cr3t") && debug.contains("wap.test:30022"), "{debug}");
        let b = UsageClient::builder().setting("UsageServiceEndpoint", "https://usagereader:S3cr3t-pw@wap.test/");
        assert!(!format!("{b:?}").contains("S3cr3t"));
        // a URL that does not parse (port out of range, a space in the host, no scheme)
        for raw in [
            "https://usagereader:S3cr3t-pw@wap.test:99999/",
            "https://usagereader:S3cr3t-pw@wap test/",
            "usagereader:S3cr3t-pw@wap.test:30022",
        ] {
            let b = UsageClient::builder().base_url(raw).credentials("u", "p");
            assert!(!format!("{b:?}").contains("S3cr3t"), "{raw}");
            let err = b.build().unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(!text.contains("S3cr3t") && !text.contains("usagereader"), "{raw}: {text}");
            assert!(text.contains("UsageServiceEndpoint"), "{text}");
        }
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn https_needs_the_rustls_feature() {
        let err = UsageClient::builder().base_url("https://wap.test:30022/").credentials("u", "p").build().unwrap_err();
        assert!(err.to_string().contains("`rustls` feature"), "{err}");
        let err = UsageClient::builder().setting("UsageServiceCaFile", "/x.pem").build().unwrap_err();
        assert!(err.to_string().contains("`rustls` feature"), "{err}");
    }

    #[test]
    fn batch_size_is_clamped() {
        assert_eq!(UsageClientBuilder::new().batch_size(0).batch_size, 1);
        assert_eq!(UsageClientBuilder::new().batch_size(50_000).batch_size, 10_000);
        assert_eq!(UsageClientBuilder::new().batch_size_default(), 100);
    }

    impl UsageClientBuilder {
        fn batch_size_default(&self) -> u32 {
            self.batch_size
        }
    }
}
