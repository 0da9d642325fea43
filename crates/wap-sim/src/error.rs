//! [`SimError`]: everything that can go wrong when starting the simulator or when it calls out.

use std::time::Duration;

/// An error of the simulator: starting it, loading data, or one of its outbound calls (approval, pricing,
/// usage collection, notifications).
///
/// URLs in messages never carry credentials; bodies are cut to a short snippet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The listening socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS set-up failed (certificate generation or configuration).
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// TLS was asked for, but the crate was built without the `rustls` feature.
    #[error("TLS is not available: wap-sim was built without the `rustls` feature")]
    TlsUnavailable,
    /// The configuration is not usable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A data file could not be loaded.
    #[error("cannot load {path}: {message}")]
    LoadData {
        /// The file.
        path: String,
        /// What was wrong (names the JSON path of the bad member where it applies).
        message: String,
    },
    /// An outbound call could not connect (refused, unreachable, TLS handshake failed).
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL called (without credentials).
        url: String,
        /// The cause.
        message: String,
    },
    /// An outbound call did not complete within its timeout.
    #[error("{url} did not answer within {after:?}")]
    Timeout {
        /// The URL called (without credentials).
        url: String,
        /// The timeout.
        after: Duration,
    },
    /// The connection broke during an outbound call (reset, truncated response, protocol error).
    #[error("HTTP exchange with {url} failed: {message}")]
    Http {
        /// The URL called (without credentials).
        url: String,
        /// The cause.
        message: String,
    },
    /// The peer answered with an unexpected status.
    #[error("{url} answered {status}: {body_snippet}")]
    Status {
        /// The URL called (without credentials).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body (at most 200 characters).
        body_snippet: String,
    },
    /// The peer's answer is not what the contract says (e.g. not a JSON array of usage records).
    #[error("invalid response from {url}: {message}")]
    InvalidResponse {
        /// The URL called (without credentials).
        url: String,
        /// What was wrong (names the JSON path of the bad member where it applies).
        message: String,
    },
    /// No resource provider with this name is registered.
    #[error("no resource provider named {0:?} is registered")]
    UnknownResourceProvider(String),
    /// The resource provider has no endpoint of this kind registered.
    #[error("resource provider {rp:?} has no {endpoint} endpoint registered")]
    NoEndpoint {
        /// The resource provider.
        rp: String,
        /// `usage` or `notification`.
        endpoint: &'static str,
    },
    /// A pricing query needs an enabled `BillingService` subscriber, and none is registered.
    #[error("no enabled BillingService subscriber is registered to answer pricing queries")]
    NoPricingSubscriber,
}

impl SimError {
    /// Whether the same call may succeed later (timeouts, connection problems, 5xx, 408, 429).
    pub fn is_retryable(&self) -> bool {
        match self {
            SimError::Connect { .. } | SimError::Timeout { .. } | SimError::Http { .. } => true,
            SimError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// The HTTP status of a [`SimError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            SimError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The URL as text without user name or password.
pub(crate) fn redact_url(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// The start of a body as text, at most 200 characters, control characters replaced.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(800)]);
    text.chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect()
}
