//! [`UsageServiceSettings`]: the client's settings as a serde structure, the `[usage_service]` section of the
//! `wap-billing` settings file. WAP's sample `app.config` names (`UsageServiceEndpoint`, …) are accepted as aliases.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # std::env::set_var("DOC_USAGE_PASSWORD", "pw");
//! use wap_usage_client::UsageServiceSettings;
//!
//! let settings: UsageServiceSettings = serde_json::from_str(
//!     r#"{"endpoint": "https://wap.example:30022/", "username": "UsageClient", "password_env": "DOC_USAGE_PASSWORD"}"#,
//! )?;
//! assert!(settings.validate("usage_service").is_empty());
//! let client = settings.client_builder("usage_service")?.build()?;
//! # let _ = client;
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wap_types::settings::key_path;
use wap_types::{Secret, SecretSource, SettingProblem};

use crate::UsageClientBuilder;

/// The Usage Service client's settings (the `[usage_service]` section). Every field has the spec's default; the
/// serde aliases are WAP's sample `app.config` names. The password is given by exactly one of `password`,
/// `password_env` (an environment variable's name) or `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct UsageServiceSettings {
    /// `UsageServiceEndpoint`: the base URL, e.g. `https://wap.example:30022/`. Required.
    #[serde(alias = "UsageServiceEndpoint")]
    pub endpoint: Option<String>,
    /// `UsageServiceUsername`. Required.
    #[serde(alias = "UsageServiceUsername")]
    pub username: Option<String>,
    /// `UsageServicePassword` (prefer `password_env` or `password_file`).
    #[serde(alias = "UsageServicePassword")]
    pub password: Option<Secret>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
    /// `UsageServiceBatchSize` (100; 1..=10000).
    #[serde(alias = "UsageServiceBatchSize")]
    pub batch_size: u32,
    /// `DisableSslVerification` (false).
    #[serde(alias = "DisableSslVerification")]
    pub disable_ssl_verification: bool,
    /// `UsageServiceCaFile`: a PEM bundle of trusted CAs.
    #[serde(alias = "UsageServiceCaFile")]
    pub ca_file: Option<PathBuf>,
    /// `UsageServicePinnedCertSha256`: hex SHA-256 of the server certificate's DER.
    #[serde(alias = "UsageServicePinnedCertSha256")]
    pub pinned_cert_sha256: Option<String>,
    /// `UsageServiceTimeoutSeconds` (120).
    #[serde(alias = "UsageServiceTimeoutSeconds")]
    pub timeout_seconds: u64,
    /// `StartIdInclusive` (true).
    #[serde(alias = "StartIdInclusive")]
    pub start_id_inclusive: bool,
    /// `MethodNumericOrdinals` (false).
    #[serde(alias = "MethodNumericOrdinals")]
    pub method_numeric_ordinals: bool,
}

impl Default for UsageServiceSettings {
    fn default() -> Self {
        UsageServiceSettings {
            endpoint: None,
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            batch_size: 100,
            disable_ssl_verification: false,
            ca_file: None,
            pinned_cert_sha256: None,
            timeout_seconds: 120,
            start_id_inclusive: true,
            method_numeric_ordinals: false,
        }
    }
}

impl UsageServiceSettings {
    /// The password's sources.
    pub fn secret(&self) -> SecretSource {
        SecretSource::new(self.password.clone(), self.password_env.clone(), self.password_file.clone())
    }

    /// Every problem, each named by its key path under `prefix` (the section's path, e.g. `usage_service`; empty
    /// for none). The password is read (from its variable or file) to check that it is there.
    pub fn validate(&self, prefix: &str) -> Vec<SettingProblem> {
        let at = |key: &str| key_path(prefix, key);
        let mut p = Vec::new();
        match self.endpoint.as_deref() {
            None => {
                p.push(SettingProblem::new(at("endpoint"), "the Usage Service URL (https://HOST:30022/)", "nothing"))
            }
            Some(e) => match url::Url::parse(e) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    if url.password().is_some() || !url.username().is_empty() {
                        p.push(SettingProblem::new(
                            at("endpoint"),
                            "a URL without credentials (use username and password_env/password_file)",
                            "a URL with user information",
                        ));
                    }
                }
                Ok(url) => p.push(SettingProblem::new(
                    at("endpoint"),
                    "an http or https URL with a host",
                    format!("scheme {:?}", url.scheme()),
                )),
                Err(err) => p.push(SettingProblem::new(at("endpoint"), "a URL", format!("{err}"))),
            },
        }
        if self.username.as_deref().is_none_or(|s| s.trim().is_empty()) {
            p.push(SettingProblem::new(at("username"), "the Usage Service user name", "nothing"));
        }
        match self.secret().resolve(&at("password")) {
            Ok(Some(_)) => {}
            Ok(None) => p.push(SettingProblem::new(
                at("password"),
                "the Usage Service password (password_env or password_file)",
                "nothing",
            )),
            Err(e) => p.push(e),
        }
        if !(1..=10_000).contains(&self.batch_size) {
            p.push(SettingProblem::new(at("batch_size"), "1..=10000", self.batch_size.to_string()));
        }
        if self.timeout_seconds == 0 {
            p.push(SettingProblem::new(at("timeout_seconds"), "at least 1", "0"));
        }
        if let Some(f) = &self.ca_file {
            if !f.is_file() {
                p.push(SettingProblem::new(at("ca_file"), "a readable PEM file", f.display().to_string()));
            }
        }
        if let Some(pin) = &self.pinned_cert_sha256 {
            let hex: String = pin.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                p.push(SettingProblem::new(
                    at("pinned_cert_sha256"),
                    "64 hex digits (SHA-256 of the certificate)",
                    format!("{} characters", pin.len()),
                ));
            }
            if self.disable_ssl_verification {
                p.push(SettingProblem::new(
                    at("disable_ssl_verification"),
                    "false when a certificate is pinned (a pin needs verification)",
                    "true",
                ));
            }
        }
        p
    }

    /// A [`UsageClientBuilder`] with these settings (the password read from its source), for further options
    /// (clock, retry policy) before [`build`](UsageClientBuilder::build). The first problem
    /// [`validate`](Self::validate) finds is returned instead.
    pub fn client_builder(&self, prefix: &str) -> Result<UsageClientBuilder, SettingProblem> {
        if let Some(first) = self.validate(prefix).into_iter().next() {
            return Err(first);
        }
        let password = self.secret().resolve(&key_path(prefix, "password"))?.unwrap_or_default();
        let mut b = UsageClientBuilder::new()
            .base_url(self.endpoint.as_deref().unwrap_or_default())
            .credentials(self.username.clone().unwrap_or_default(), password)
            .batch_size(self.batch_size)
            .start_id_inclusive(self.start_id_inclusive)
            .method_numeric_ordinals(self.method_numeric_ordinals)
            .timeout(Duration::from_secs(self.timeout_seconds));
        #[cfg(feature = "rustls")]
        {
            b = b.disable_ssl_verification(self.disable_ssl_verification);
            if let Some(ca) = &self.ca_file {
                b = b.ca_file(ca.clone());
            }
            if let Some(pin) = &self.pinned_cert_sha256 {
                b = b.pinned_certificate_sha256_hex(pin);
            }
        }
        #[cfg(not(feature = "rustls"))]
        if self.disable_ssl_verification || self.ca_file.is_some() || self.pinned_cert_sha256.is_some() {
            return Err(SettingProblem::new(
                key_path(prefix, "ca_file"),
                "no TLS setting (wap-usage-client is built without its `rustls` feature)",
                "a TLS setting",
            ));
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_config_names_and_defaults() {
        let s: UsageServiceSettings = serde_json::from_str(
            r#"{"UsageServiceEndpoint": "https://wap.example:30022/", "UsageServiceUsername": "u",
                "UsageServicePassword": "usage-sentinel-1", "StartIdInclusive": false}"#,
        )
        .unwrap();
        assert_eq!(s.batch_size, 100);
        assert_eq!(s.timeout_seconds, 120);
        assert!(!s.start_id_inclusive);
        assert!(s.validate("usage_service").is_empty());
        assert!(!format!("{s:?}").contains("usage-sentinel-1"));
        let client = s.client_builder("usage_service").unwrap().build().unwrap();
        assert_eq!(client.start_id_mode(), wap_types::StartIdMode::Exclusive);
    }

    #[test]
    fn problems_name_their_key_path() {
        let s: UsageServiceSettings =
            serde_json::from_str(r#"{"endpoint": "ftp://x/", "batch_size": 0, "password": "p"}"#).unwrap();
        let paths: Vec<String> = s.validate("usage_service").into_iter().map(|p| p.path).collect();
        assert_eq!(paths, ["usage_service.endpoint", "usage_service.username", "usage_service.batch_size"]);
        assert_eq!(s.client_builder("wap").unwrap_err().path, "wap.endpoint");
        let e = serde_json::from_str::<UsageServiceSettings>(r#"{"endpont": "x"}"#).unwrap_err();
        assert!(e.to_string().contains("endpont"), "{e}");
    }
}
