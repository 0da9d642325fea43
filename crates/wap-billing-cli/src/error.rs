//! [`Error`]: the crate's one top-level error, and [`Result`].

use crate::compose::StartError;
use crate::export::ExportError;
use crate::ops::OpsError;
use crate::settings::SettingsError;

/// Any error of the `wap-billing` program's library: reading the settings ([`SettingsError`]), starting the
/// adapter ([`StartError`]), an operator command ([`OpsError`]) or a usage export ([`ExportError`]). `?` converts
/// each.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The adapter could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// An operator command failed.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// A usage export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
}

impl Error {
    /// Whether running the same command again may succeed unchanged: a Usage Service error that says so (a
    /// timeout, a 5xx); settings, refusals and files are permanent until someone acts.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Export(ExportError::Client(e)) if e.is_retryable())
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
