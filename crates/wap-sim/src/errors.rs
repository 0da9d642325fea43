//! [`Error`]: the crate's one top-level error, and [`Result`].

use crate::admin::AdminError;
use crate::error::SimError;

/// Any error of this crate: starting the simulator or one of its outbound calls ([`SimError`]), or an admin
/// change it refused ([`AdminError`]). `?` converts each.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use wap_sim::{Result, WapSim};
///
/// async fn start() -> Result<WapSim> {
///     Ok(WapSim::builder().seed(1).start().await?) // a SimError converts
/// }
/// let sim = start().await.unwrap();
/// assert!(!sim.usage_ids().is_empty());
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Starting the simulator, loading data, or an outbound call.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// An admin change the simulated WAP refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl Error {
    /// Whether the same call may succeed later (see [`SimError::is_retryable`]); admin refusals are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Sim(e) => e.is_retryable(),
            Error::Admin(_) => false,
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
