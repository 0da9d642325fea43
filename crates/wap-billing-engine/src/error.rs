//! [`Error`]: the crate's one top-level error (every error of the engine converts into it with `?`), and
//! [`Result`].

use crate::adapter::AdapterError;
use crate::config::EngineConfigError;
use crate::handler::HandlerError;
use crate::source::SourceError;
use crate::store::StoreError;

/// Any error of this crate, for code that calls several parts of it (`?` converts each). Match on the variant for
/// the specific error; [`Error::is_retryable`] classifies them all.
///
/// ```
/// use wap_billing_engine::{EngineConfig, Result};
///
/// fn settings() -> Result<EngineConfig> {
///     let mut builder = EngineConfig::builder();
///     builder.set("SyncIntervalMilliseconds", "5000")?; // an EngineConfigError converts
///     Ok(builder.build()?)
/// }
/// assert_eq!(settings()?.sync_interval.as_millis(), 5_000);
/// # Ok::<(), wap_billing_engine::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Starting the adapter or waiting on it ([`AdapterError`]).
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// A setting ([`EngineConfigError`]).
    #[error(transparent)]
    Config(#[from] EngineConfigError),
    /// The state store ([`StoreError`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A billing-system handler ([`HandlerError`]).
    #[error(transparent)]
    Handler(#[from] HandlerError),
    /// A feed source ([`SourceError`]).
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl Error {
    /// Whether trying again may succeed without anyone acting: a retryable store or source error, a
    /// `DependencyNotReady` or failed handler call (the engine retries those itself), a wait that timed out with
    /// no problem reported. Settings are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Adapter(e) => e.is_retryable(),
            Error::Config(_) => false,
            Error::Store(e) => e.is_retryable(),
            Error::Handler(_) => true,
            Error::Source(e) => e.is_retryable(),
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
