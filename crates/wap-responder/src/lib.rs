#![doc = include_str!("../README.md")]

mod approver;
mod auth;
mod cache;
mod config;
mod error;
mod pricing;
mod request;
mod routing;
mod server;
mod service;
mod settings;
#[cfg(feature = "rustls")]
mod tls;

pub use approver::{AddOnApproval, FnApprover, SubscriptionApproval, SubscriptionApprover};
#[allow(deprecated)]
pub use config::ConfigError;
pub use config::{
    AuthMode, FailureMode, ResponderConfig, ResponderConfigError, ServerConfig, UnknownPriceStatus,
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_DECISION_BUDGET, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDEMPOTENCY_CAPACITY,
    DEFAULT_IDEMPOTENCY_WINDOW, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_PRICE_MAX_LENGTH,
};
pub use error::{Error, Result};
pub use pricing::{FnPricing, NoPricing, PriceTable, PricingResponder};
pub use routing::Route;
pub use server::{serve, serve_until, ResponderServer};
pub use service::{Responder, ResponderFuture, ResponderResponse, WWW_AUTHENTICATE_VALUE};
pub use settings::ResponderSettings;
#[cfg(feature = "rustls")]
pub use tls::{TlsConfig, TlsError};

pub use wap_types::{BasicCredentials, Decision, PriceEncoding};

/// The `async-trait` attribute, to implement [`SubscriptionApprover`] and [`PricingResponder`] without a direct
/// dependency on `async-trait`: `#[wap_responder::async_trait]`.
pub use async_trait::async_trait;
