//! [`Error`]: the crate's one top-level error, and [`Result`].

use crate::config::ResponderConfigError;
#[cfg(feature = "rustls")]
use crate::tls::TlsError;

/// Any error of this crate: settings ([`ResponderConfigError`]), TLS set-up (`TlsError`, feature `rustls`) or serving
/// ([`std::io::Error`] from [`serve`](crate::serve)). `?` converts each.
///
/// ```
/// use wap_responder::{ResponderConfig, Result};
///
/// fn settings(pairs: &[(&str, &str)]) -> Result<ResponderConfig> {
///     Ok(ResponderConfig::from_settings(pairs.iter().copied())?) // a ResponderConfigError converts
/// }
/// let err = settings(&[("BillingAdapterUserName", "wap"), ("BillingAdapterPassword", " ")]).unwrap_err();
/// assert!(err.to_string().contains("BillingAdapterPassword"), "{err}");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting ([`ResponderConfigError`]).
    #[error(transparent)]
    Config(#[from] ResponderConfigError),
    /// TLS set-up ([`TlsError`]).
    #[cfg(feature = "rustls")]
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding or serving.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether trying again may succeed unchanged: only an interrupted or timed-out I/O call; settings and
    /// certificates are permanent until changed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Config(e) => e.is_retryable(),
            #[cfg(feature = "rustls")]
            Error::Tls(_) => false,
            Error::Io(e) => matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut),
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
