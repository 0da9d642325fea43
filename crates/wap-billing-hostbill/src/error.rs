//! [`Error`] and its classification ([`ErrorKind`]): what the engine retries and what halts it.

use wap_billing_engine::billing_http::{TransportError, TransportFailure};

/// What kind of failure an [`Error`] is; decides [`Error::is_retryable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The API ID or key was refused. Permanent: fix the configuration.
    Auth,
    /// The key is not allowed this function (HostBill's per-key function allow-list).
    Permission,
    /// The caller's address is not in the key's IP allow-list.
    IpRefused,
    /// HostBill does not know the call (an older version, or a misspelt call).
    UnknownCall,
    /// The object named by the request does not exist.
    NotFound,
    /// Any other refusal (a missing or wrong parameter, a module's own error text). Permanent.
    Validation,
    /// The request may not have reached HostBill or its answer was lost: connection failure, timeout, HTTP 5xx, a
    /// non-JSON body (an HTML error page, a proxy, maintenance). **The request may have been applied.**
    Transient,
    /// A 2xx response whose JSON is not HostBill's envelope, or a field of the wrong type. Permanent.
    Decode,
    /// The client was configured wrongly (bad URL, TLS set-up).
    Config,
}

impl ErrorKind {
    /// Whether repeating the same request may succeed. Only [`ErrorKind::Transient`] is.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// An error from a HostBill call. Never contains the API key (a test renders every variant with a sentinel key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// HostBill answered `success: false`.
    #[error("HostBill {call} refused ({kind:?}, HTTP {status}): {}", messages.join("; "))]
    Api {
        /// The call.
        call: String,
        /// The classification of the messages.
        kind: ErrorKind,
        /// HostBill's `error` list (or the values of its `error` object), verbatim.
        messages: Vec<String>,
        /// The HTTP status of the answer.
        status: u16,
    },
    /// The request failed below HostBill's envelope.
    #[error("HostBill {call}: {source}")]
    Transport {
        /// The call.
        call: String,
        /// What failed.
        #[source]
        source: TransportError,
    },
    /// The answer was JSON but not what the call returns.
    #[error("HostBill {call}: unexpected answer at {path}: {detail}")]
    Decode {
        /// The call.
        call: String,
        /// Where in the answer (JSON path).
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The client was configured wrongly.
    #[error("HostBill client configuration: {0}")]
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

    /// Whether the request is known **not** to have been applied: HostBill refused it, or it never left. False
    /// when the request may have been sent: a caller of a non-idempotent call must look the result up first.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            Error::Api { .. } | Error::Config(_) => true,
            Error::Transport { source, .. } => source.failure.certainly_not_sent(),
            Error::Decode { .. } => false,
        }
    }

    /// The transport failure, for an [`Error::Transport`].
    pub fn transport_failure(&self) -> Option<TransportFailure> {
        match self {
            Error::Transport { source, .. } => Some(source.failure),
            _ => None,
        }
    }

    /// HostBill's messages, for an [`Error::Api`].
    pub fn api_messages(&self) -> &[String] {
        match self {
            Error::Api { messages, .. } => messages,
            _ => &[],
        }
    }
}

/// Classifies HostBill's error messages. HostBill documents the envelope but not the texts of its
/// authentication, IP and permission refusals, so the rules match words, not exact texts: the first message
/// that matches a rule decides.
pub fn classify_messages(messages: &[String]) -> ErrorKind {
    for m in messages {
        let l = m.trim().to_ascii_lowercase();
        let about_key = l.contains("api key") || l.contains("api id") || l.contains("api_id") || l.contains("api_key");
        let refused = ["invalid", "incorrect", "wrong", "not valid", "failed"].iter().any(|w| l.contains(w));
        if l.contains("ip")
            && (l.contains("not allowed") || l.contains("denied") || l.contains("unauthori"))
            && l.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| w == "ip")
        {
            return ErrorKind::IpRefused;
        }
        if about_key && refused || l.contains("authentication failed") || l.contains("authorization failed") {
            return ErrorKind::Auth;
        }
        if (l.contains("function") || l.contains("method") || l.contains("call"))
            && (l.contains("not allowed")
                || l.contains("no access")
                || l.contains("disabled")
                || l.contains("permission"))
        {
            return ErrorKind::Permission;
        }
        if l.contains("unknown call")
            || l.contains("unknown method")
            || l.contains("method not found")
            || l.contains("function does not exist")
            || l.contains("call not found")
        {
            return ErrorKind::UnknownCall;
        }
        if l.contains("not found")
            || l.contains("does not exist")
            || l.contains("doesn't exist")
            || l.contains("no such")
        {
            return ErrorKind::NotFound;
        }
    }
    ErrorKind::Validation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(m: &str) -> ErrorKind {
        classify_messages(&[m.to_owned()])
    }

    #[test]
    fn messages_are_classified() {
        assert_eq!(k("Wrong parameter"), ErrorKind::Validation);
        assert_eq!(k("Invalid API ID or API Key"), ErrorKind::Auth);
        assert_eq!(k("Authentication failed"), ErrorKind::Auth);
        assert_eq!(k("Your IP is not allowed to use the API: 127.0.0.1"), ErrorKind::IpRefused);
        assert_eq!(k("API access denied for IP 10.0.0.1"), ErrorKind::IpRefused);
        assert_eq!(k("Function addOrder is not allowed for this API key"), ErrorKind::Permission);
        assert_eq!(k("Unknown call: fooBar"), ErrorKind::UnknownCall);
        assert_eq!(k("Account not found"), ErrorKind::NotFound);
        assert_eq!(k("Client does not exist"), ErrorKind::NotFound);
        assert_eq!(classify_messages(&[]), ErrorKind::Validation);
        assert!(ErrorKind::Transient.is_retryable() && !ErrorKind::Auth.is_retryable());
    }
}
