//! [`ResponderSettings`]: the responder's settings as a serde structure, the `[responder]` section of the
//! `wap-billing` settings file. The spec's setting names (`BillingAdapterUsername`, `ApprovalFailureMode`, …) are
//! accepted as aliases.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # std::env::set_var("DOC_RESPONDER_PASSWORD", "pw");
//! use wap_responder::ResponderSettings;
//!
//! let settings: ResponderSettings = serde_json::from_str(
//!     r#"{"BillingAdapterUsername": "wapcaller", "password_env": "DOC_RESPONDER_PASSWORD", "approval_failure_mode": "approve"}"#,
//! )?;
//! let config = settings.to_config("responder")?;
//! assert_eq!(config.failure_mode, wap_responder::FailureMode::Approve);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wap_types::settings::key_path;
use wap_types::{BasicCredentials, PriceEncoding, Secret, SecretSource, SettingProblem};

use crate::{FailureMode, ResponderConfig, UnknownPriceStatus};

/// The responder's settings (the `[responder]` section), with the spec's defaults
/// (docs/protocol/approval-and-pricing.md §5). The password is given by exactly one of `password`, `password_env` or `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ResponderSettings {
    /// `SubscriptionResponderEnabled` (true).
    #[serde(alias = "SubscriptionResponderEnabled")]
    pub enabled: bool,
    /// `PricingResponderEnabled` (false).
    #[serde(alias = "PricingResponderEnabled")]
    pub pricing_enabled: bool,
    /// `ResponderListenAddress` (`0.0.0.0:8443`): where a server started from these settings listens.
    #[serde(alias = "ResponderListenAddress")]
    pub listen: String,
    /// `ResponderBasePath` (`/`).
    #[serde(alias = "ResponderBasePath")]
    pub base_path: String,
    /// `ResponderAuthenticationMode`: `basic` (default) or `none`.
    #[serde(alias = "ResponderAuthenticationMode")]
    pub authentication: String,
    /// `BillingAdapterUsername`: what WAP presents. Required with `basic`.
    #[serde(alias = "BillingAdapterUsername")]
    pub username: Option<String>,
    /// `BillingAdapterPassword` (prefer `password_env` or `password_file`).
    #[serde(alias = "BillingAdapterPassword")]
    pub password: Option<Secret>,
    /// The environment variable holding the password.
    pub password_env: Option<String>,
    /// The file holding the password.
    pub password_file: Option<PathBuf>,
    /// `ApprovalTimeBudgetMilliseconds` (30000).
    #[serde(alias = "ApprovalTimeBudgetMilliseconds")]
    pub approval_time_budget_ms: u64,
    /// `ApprovalFailureMode`: `deny` (default) or `approve`.
    #[serde(alias = "ApprovalFailureMode")]
    pub approval_failure_mode: String,
    /// `PricingResponseFormat`: `json` (default) or `text`.
    #[serde(alias = "PricingResponseFormat")]
    pub pricing_response_format: String,
    /// `PricingMaxLength` (256).
    #[serde(alias = "PricingMaxLength")]
    pub pricing_max_length: usize,
    /// `PricingUnknownIdStatus`: 200 (default; an empty price) or 404.
    #[serde(alias = "PricingUnknownIdStatus")]
    pub pricing_unknown_id_status: u16,
    /// `MethodNumericOrdinals` (false): must match the engine's (the `wap-billing` program sets both from
    /// `usage_service.method_numeric_ordinals`).
    #[serde(alias = "MethodNumericOrdinals")]
    pub method_numeric_ordinals: bool,
}

impl Default for ResponderSettings {
    fn default() -> Self {
        ResponderSettings {
            enabled: true,
            pricing_enabled: false,
            listen: "0.0.0.0:8443".to_owned(),
            base_path: "/".to_owned(),
            authentication: "basic".to_owned(),
            username: None,
            password: None,
            password_env: None,
            password_file: None,
            approval_time_budget_ms: 30_000,
            approval_failure_mode: "deny".to_owned(),
            pricing_response_format: "json".to_owned(),
            pricing_max_length: crate::config::DEFAULT_PRICE_MAX_LENGTH,
            pricing_unknown_id_status: 200,
            method_numeric_ordinals: false,
        }
    }
}

impl ResponderSettings {
    /// The password's sources.
    pub fn secret(&self) -> SecretSource {
        SecretSource::new(self.password.clone(), self.password_env.clone(), self.password_file.clone())
    }

    /// `listen` as an address.
    pub fn listen_addr(&self, prefix: &str) -> Result<SocketAddr, SettingProblem> {
        self.listen.parse().map_err(|_| {
            SettingProblem::new(
                key_path(prefix, "listen"),
                "an address such as 0.0.0.0:8443",
                format!("{:?}", self.listen),
            )
        })
    }

    /// Every problem, each named by its key path under `prefix` (e.g. `responder`). Nothing is checked while the
    /// responder is disabled, except that pricing is not enabled without it. The password is read from its source.
    pub fn validate(&self, prefix: &str) -> Vec<SettingProblem> {
        let at = |key: &str| key_path(prefix, key);
        let mut p = Vec::new();
        if !self.enabled {
            if self.pricing_enabled {
                p.push(SettingProblem::new(at("pricing_enabled"), "false while enabled is false", "true"));
            }
            return p;
        }
        if let Err(e) = self.listen_addr(prefix) {
            p.push(e);
        }
        if !self.base_path.starts_with('/') {
            p.push(SettingProblem::new(at("base_path"), "a path starting with /", format!("{:?}", self.base_path)));
        }
        match self.authentication.to_ascii_lowercase().as_str() {
            "basic" => {
                if self.username.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    p.push(SettingProblem::new(
                        at("username"),
                        "the user name WAP presents (BillingAdapterUsername)",
                        "nothing",
                    ));
                }
                match self.secret().resolve(&at("password")) {
                    Ok(Some(_)) => {}
                    Ok(None) => p.push(SettingProblem::new(
                        at("password"),
                        "the password WAP presents (BillingAdapterPassword; password_env or password_file)",
                        "nothing",
                    )),
                    Err(e) => p.push(e),
                }
            }
            "none" => {}
            other => p.push(SettingProblem::new(at("authentication"), "basic or none", format!("{other:?}"))),
        }
        if !matches!(self.approval_failure_mode.to_ascii_lowercase().as_str(), "deny" | "approve") {
            p.push(SettingProblem::new(
                at("approval_failure_mode"),
                "deny or approve",
                format!("{:?}", self.approval_failure_mode),
            ));
        }
        if self.approval_time_budget_ms == 0 {
            p.push(SettingProblem::new(at("approval_time_budget_ms"), "a value above 0", "0"));
        }
        if !matches!(self.pricing_response_format.to_ascii_lowercase().as_str(), "json" | "text") {
            p.push(SettingProblem::new(
                at("pricing_response_format"),
                "json or text",
                format!("{:?}", self.pricing_response_format),
            ));
        }
        if self.pricing_max_length == 0 {
            p.push(SettingProblem::new(at("pricing_max_length"), "a value above 0", "0"));
        }
        if !matches!(self.pricing_unknown_id_status, 200 | 404) {
            p.push(SettingProblem::new(
                at("pricing_unknown_id_status"),
                "200 or 404",
                self.pricing_unknown_id_status.to_string(),
            ));
        }
        p
    }

    /// The [`ResponderConfig`] these settings describe (the password read from its source); the first problem
    /// [`validate`](Self::validate) finds otherwise.
    pub fn to_config(&self, prefix: &str) -> Result<ResponderConfig, SettingProblem> {
        if let Some(first) = self.validate(prefix).into_iter().next() {
            return Err(first);
        }
        let mut config = if self.authentication.eq_ignore_ascii_case("none") {
            ResponderConfig::without_authentication()
        } else {
            let password = self.secret().resolve(&key_path(prefix, "password"))?.unwrap_or_default();
            ResponderConfig::basic(BasicCredentials::new(self.username.clone().unwrap_or_default(), password.expose()))
        };
        config = config
            .base_path(self.base_path.clone())
            .decision_budget(Duration::from_millis(self.approval_time_budget_ms))
            .failure_mode(if self.approval_failure_mode.eq_ignore_ascii_case("approve") {
                FailureMode::Approve
            } else {
                FailureMode::Deny
            })
            .price_encoding(if self.pricing_response_format.eq_ignore_ascii_case("text") {
                PriceEncoding::Text
            } else {
                PriceEncoding::Json
            })
            .unknown_price_status(if self.pricing_unknown_id_status == 404 {
                UnknownPriceStatus::NotFound
            } else {
                UnknownPriceStatus::EmptyOk
            })
            .method_numeric_ordinals(self.method_numeric_ordinals);
        config.price_max_length = self.pricing_max_length;
        config.approval_enabled = self.enabled;
        config.pricing_enabled = self.pricing_enabled;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMode;

    #[test]
    fn spec_names_defaults_and_conversion() {
        let s: ResponderSettings = serde_json::from_str(
            r#"{"BillingAdapterUsername": "WAPCALLER", "BillingAdapterPassword": "responder-sentinel-1",
                "PricingResponseFormat": "text", "PricingUnknownIdStatus": 404, "ResponderBasePath": "/wap/"}"#,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("responder-sentinel-1"));
        let c = s.to_config("responder").unwrap();
        assert!(matches!(&c.auth, AuthMode::Basic(b) if b.username == "WAPCALLER"));
        assert_eq!(c.base_path, "/wap/");
        assert_eq!(c.decision_budget, Duration::from_secs(30));
        assert_eq!((c.failure_mode, c.price_encoding), (FailureMode::Deny, PriceEncoding::Text));
        assert_eq!(c.unknown_price_status, UnknownPriceStatus::NotFound);
        assert!(c.approval_enabled && !c.pricing_enabled, "pricing is off by default, as in the spec");
    }

    #[test]
    fn problems_name_their_key_path_and_never_the_password() {
        let s: ResponderSettings = serde_json::from_str(
            r#"{"username": "wapcaller", "password": "  ", "listen": "nowhere", "approval_failure_mode": "maybe",
                "pricing_unknown_id_status": 500}"#,
        )
        .unwrap();
        let paths: Vec<String> = s.validate("responder").into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "responder.listen",
                "responder.password",
                "responder.approval_failure_mode",
                "responder.pricing_unknown_id_status"
            ]
        );
        let none: ResponderSettings = serde_json::from_str(r#"{"authentication": "none"}"#).unwrap();
        assert!(matches!(none.to_config("responder").unwrap().auth, AuthMode::None));
        let off: ResponderSettings = serde_json::from_str(r#"{"enabled": false, "pricing_enabled": true}"#).unwrap();
        assert_eq!(off.validate("r")[0].path, "r.pricing_enabled");
    }
}
