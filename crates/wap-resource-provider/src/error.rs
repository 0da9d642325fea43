//! [`Error`]: the crate's one top-level error, and [`Result`].

use crate::handler::NotificationError;
use crate::ledger::UsageLedgerError;
use crate::registration::RegistrationError;
use crate::server::ServerError;
use crate::tenant::TemplateError;
use crate::usage::{UsageQueryError, UsageSourceError};

/// Any error of this crate, for a program that registers, serves and meters in one function: `?` converts each
/// specific error ([`RegistrationError`], [`ServerError`], [`UsageLedgerError`], …) into it.
///
/// ```
/// use wap_resource_provider::{Registration, RegistrationBuilder, Result};
///
/// fn register(name: &str) -> Result<Registration> {
///     Ok(RegistrationBuilder::new(name).build()?) // a RegistrationError converts
/// }
/// let err = register("not a name!").unwrap_err();
/// assert!(err.to_string().contains("not a name!"), "{err}");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A registration is not valid.
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    /// The server could not be configured or started.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A tenant URI template is not valid.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A `/usage` request is not valid.
    #[error(transparent)]
    UsageQuery(#[from] UsageQueryError),
    /// A usage source failed.
    #[error(transparent)]
    UsageSource(#[from] UsageSourceError),
    /// The usage ledger failed.
    #[error(transparent)]
    UsageLedger(#[from] UsageLedgerError),
    /// A notification call failed (status and `ResourceProviderError`).
    #[error(transparent)]
    Notification(#[from] NotificationError),
}

impl Error {
    /// Whether trying again later may succeed: as each specific error says (a port in use, busy storage, a 5xx);
    /// invalid settings, templates and requests are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Registration(_) | Error::Template(_) | Error::UsageQuery(_) => false,
            Error::Server(e) => e.is_retryable(),
            Error::UsageSource(e) => e.is_retryable(),
            Error::UsageLedger(e) => e.is_retryable(),
            Error::Notification(e) => e.is_retryable(),
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
