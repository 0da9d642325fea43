//! [`Error`] and its classification ([`ErrorKind`]): what the engine retries and what halts it.

use std::time::Duration;

/// What kind of failure an [`Error`] is; decides [`Error::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The credentials were refused (`Authentication Failed`). Permanent: fix the configuration.
    Auth,
    /// The credential's API role does not allow the action (`Invalid Permissions: API action "…" is not allowed`).
    Permission,
    /// The caller's address is not in WHMCS's API IP allow-list (`Invalid IP <address>`), and no valid access key
    /// was sent.
    IpRefused,
    /// WHMCS does not know the action (`Command Not Found`): an older version, or a misspelt action.
    UnknownAction,
    /// The object named by the request does not exist (`Client Not Found`, `Service ID Not Found`, …, and
    /// `Order ID not found or Status not Pending`).
    NotFound,
    /// A uniqueness rule refused the request (`Duplicate Email Address`): the object exists already; look it up.
    Duplicate,
    /// Any other refusal by WHMCS (a missing or invalid parameter, a module's own error text). Permanent.
    Validation,
    /// The request may not have reached WHMCS or its answer was lost: connection failure, timeout, HTTP 5xx, a
    /// non-JSON body (an HTML error page, a proxy, maintenance). **The request may have been applied.**
    Transient,
    /// A 2xx response whose JSON is not a WHMCS envelope, or a field of the wrong type. Permanent.
    Decode,
    /// The client was configured wrongly (bad URL, TLS setup).
    Config,
}

impl ErrorKind {
    /// Whether repeating the same request may succeed. Only [`ErrorKind::Transient`] is.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// Why a transport-level failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// Could not connect.
    Connect,
    /// No complete answer within the request timeout. The request may have been applied.
    Timeout(Duration),
    /// The connection broke after the request was (maybe) sent. The request may have been applied.
    Interrupted,
    /// HTTP 5xx with no WHMCS envelope.
    ServerError,
    /// A body that is not JSON (an HTML error page, a proxy's page, maintenance).
    NotJson,
}

/// An error from a WHMCS call. Never contains a credential (a test renders every variant with sentinel secrets).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// WHMCS answered `result=error` (or `status=error`).
    #[error("WHMCS {action} refused ({kind:?}, HTTP {status}): {message}")]
    Api {
        /// The action called.
        action: String,
        /// The classification of `message`.
        kind: ErrorKind,
        /// WHMCS's `message`, verbatim.
        message: String,
        /// The HTTP status of the answer (WHMCS may send errors with 200 or 403).
        status: u16,
    },
    /// The request failed below WHMCS's envelope.
    #[error("WHMCS {action}: {failure:?}{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
    Transport {
        /// The action called.
        action: String,
        /// What failed.
        failure: TransportFailure,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// A description (for a body: its first bytes, control characters escaped).
        detail: String,
    },
    /// The answer was JSON but not what the action returns.
    #[error("WHMCS {action}: unexpected answer at {path}: {detail}")]
    Decode {
        /// The action called.
        action: String,
        /// Where in the answer (JSON path).
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The client was configured wrongly.
    #[error("WHMCS client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The classification the engine acts on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Api { kind, .. } => *kind,
            Error::Transport { .. } => ErrorKind::Transient,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::Config(_) => ErrorKind::Config,
        }
    }

    /// Whether repeating the request may succeed (see [`ErrorKind::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
    }

    /// Whether the request is known **not** to have been applied. False for transport failures after the request
    /// may have been sent: a caller of a non-idempotent action must look the result up before repeating it.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            // WHMCS refused (an error envelope), or the request never left.
            Error::Api { .. } | Error::Config(_) => true,
            Error::Transport { failure, .. } => matches!(failure, TransportFailure::Connect),
            // A success we could not read: it may have been applied.
            Error::Decode { .. } => false,
        }
    }

    /// WHMCS's message, for an [`Error::Api`].
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Error::Api { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Classifies WHMCS's error `message`. The texts are WHMCS's documented or user-reported messages.
pub fn classify_message(message: &str) -> ErrorKind {
    let m = message.trim();
    let lower = m.to_ascii_lowercase();
    if lower.starts_with("authentication failed") {
        ErrorKind::Auth
    } else if lower.starts_with("invalid ip") {
        ErrorKind::IpRefused
    } else if lower.starts_with("invalid permissions") || lower.contains("api access") && lower.contains("permission") {
        ErrorKind::Permission
    } else if lower.starts_with("command not found") {
        ErrorKind::UnknownAction
    } else if lower.contains("duplicate") || lower.contains("already exists") {
        ErrorKind::Duplicate
    } else if lower.contains("not found") {
        ErrorKind::NotFound
    } else {
        ErrorKind::Validation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_messages_are_classified() {
        let cases = [
            ("Authentication Failed", ErrorKind::Auth),
            ("Invalid IP 127.0.0.1", ErrorKind::IpRefused),
            ("Invalid IP 2405:db8::1", ErrorKind::IpRefused),
            (r#"Invalid Permissions: API action "addbillableitem" is not allowed"#, ErrorKind::Permission),
            ("Command Not Found", ErrorKind::UnknownAction),
            ("Client Not Found", ErrorKind::NotFound),
            ("Client ID Not Found", ErrorKind::NotFound),
            ("Service ID Not Found", ErrorKind::NotFound),
            ("Addon ID Not Found", ErrorKind::NotFound),
            ("Order ID not found or Status not Pending", ErrorKind::NotFound),
            ("Duplicate Email Address", ErrorKind::Duplicate),
            ("You did not enter your email address", ErrorKind::Validation),
            ("Nothing to Update", ErrorKind::Validation),
            ("Invalid Payment Method. Valid options include mailin", ErrorKind::Validation),
        ];
        for (message, kind) in cases {
            assert_eq!(classify_message(message), kind, "{message}");
        }
        assert!(ErrorKind::Transient.is_retryable());
        for k in [ErrorKind::Auth, ErrorKind::Permission, ErrorKind::IpRefused, ErrorKind::Validation] {
            assert!(!k.is_retryable());
        }
    }
}
