//! [`Error`]: everything a Usage Service call can fail with, classified for retrying.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use url::Url;
use wap_types::JsonError;

use crate::retry_after::RetryAfter;

/// A boxed source error.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong on the connection (see [`Error::Transport`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection could be opened (refused, unreachable, DNS, connect timeout).
    Connect,
    /// The connection was reset or closed before a complete response head arrived.
    Reset,
    /// The response body ended before its announced length (or chunked end).
    IncompleteBody,
    /// Any other I/O or protocol failure.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportErrorKind::Connect => "connect error",
            TransportErrorKind::Reset => "connection reset",
            TransportErrorKind::IncompleteBody => "incomplete body",
            TransportErrorKind::Other => "transport error",
        })
    }
}

/// Why a `200` body is not a usable page (see [`Error::Decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The JSON ends early: a truncated body (retryable).
    Truncated,
    /// Not JSON at all, or JSON that is not an array (an HTML error page, an object): a WAP-side fault
    /// (retryable).
    NotAPage,
    /// Valid JSON array, but an element does not fit its type (e.g. `[3].EventId` is a string). Identical bytes will
    /// not improve: an adapter-side error (not retried). Typed pages report such an element as
    /// [`Error::MalformedRecord`] at its position instead, after the records before it.
    WrongType,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeErrorKind::Truncated => "truncated JSON",
            DecodeErrorKind::NotAPage => "not a JSON array",
            DecodeErrorKind::WrongType => "element of the wrong type",
        })
    }
}

/// An error of a Usage Service call. URLs never carry credentials; messages never contain them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A network failure: connect error, reset, incomplete body, protocol error.
    #[error("{kind} talking to {url}: {}", chain_text(source.as_ref()))]
    Transport {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The request (connect, response head and body) took longer than the configured timeout.
    #[error("request to {url} timed out after {after:?}")]
    Timeout {
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The server answered with a status other than `200`/`204`: any other 2xx (not a page: retryable, like a 5xx),
    /// a 3xx (redirects are not followed), a 4xx or a 5xx.
    #[error("{url} answered HTTP {status}{}: {body_snippet:?}", config_hint(*.status))]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The start of the response body (at most 512 bytes, lossy UTF-8, control characters removed).
        body_snippet: String,
        /// The `Retry-After` header, if the server sent a valid one.
        retry_after: Option<RetryAfter>,
    },
    /// A `200` body that is not a usable page.
    #[error("{kind} in the page from {url}: {source}")]
    Decode {
        /// Why the body is not usable.
        kind: DecodeErrorKind,
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The parse error, naming the JSON path of the bad member (`[3].Entity.State`).
        #[source]
        source: JsonError,
    },
    /// The response body is larger than the configured limit.
    #[error("the page from {url} is larger than {limit} bytes")]
    BodyTooLarge {
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The limit in bytes.
        limit: usize,
    },
    /// The TLS handshake failed (untrusted or mismatching certificate, protocol error).
    #[error("TLS failure talking to {url}: {source}")]
    Tls {
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The underlying `rustls::Error`.
        #[source]
        source: BoxError,
    },
    /// The request started at a record that cannot be read as its feed's type (see
    /// [`MalformedRecord`](crate::MalformedRecord)): the records before it were delivered on earlier pages, and the
    /// same record comes back on every retry. Not retried; adapter side (like [`DecodeErrorKind::WrongType`]). A
    /// consumer halts on it; skipping it is an operator's decision
    /// ([`MalformedRecord::skip_start`](crate::MalformedRecord::skip_start)).
    #[error("{record} (from {url}); raw record: {}", raw_excerpt(&record.raw))]
    MalformedRecord {
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The record: its id (when readable), the JSON path of the bad member and its raw JSON.
        record: Box<crate::feed::MalformedRecord>,
    },
    /// The request started at a record with `EventId = i64::MAX` under `StartIdInclusive = true`: the cursor
    /// cannot advance past it (`startId` would be `i64::MAX + 1`), so the feed cannot continue. Not retried.
    #[error(
        "{url} returned EventId {event_id}: the cursor cannot advance past it (startId would exceed i64::MAX); the \
         feed cannot continue"
    )]
    CursorCannotAdvance {
        /// The request URL (without credentials).
        url: Box<Url>,
        /// The id that cannot be continued after.
        event_id: i64,
    },
    /// The client configuration is invalid (bad URL, unreadable CA file, malformed pin, …).
    #[error("invalid Usage Service client configuration: {0}")]
    Config(String),
}

/// At most 512 characters of a malformed record's JSON for the error message (the whole text is in the record).
fn raw_excerpt(raw: &str) -> String {
    const MAX: usize = 512;
    match raw.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &raw[..cut]),
        None => raw.to_owned(),
    }
}

/// An error and its sources as one line (`client error (Connect): tcp connect error: Connection refused`), each
/// message once.
pub(crate) fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

fn config_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (configuration error: check UsageServiceUsername / UsageServicePassword)",
        201..=299 => " (only 200 and 204 are pages)",
        300..=399 => " (redirects are not followed)",
        _ => "",
    }
}

impl Error {
    /// Whether retrying the same request may succeed: connect errors, resets, incomplete or truncated bodies,
    /// timeouts, bodies that are not a JSON array, and the statuses 408, 429, 5xx and the 2xx other than 200/204
    /// (e.g. a proxy's `202`). Never 400, 401, 403, 404, other 4xx, 3xx, TLS or configuration errors, nor an
    /// element of the wrong type.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } => true,
            Error::Status { status, .. } => matches!(status, 201..=299 | 408 | 429 | 500..=599),
            Error::Decode { kind, .. } => matches!(kind, DecodeErrorKind::Truncated | DecodeErrorKind::NotAPage),
            Error::BodyTooLarge { .. }
            | Error::Tls { .. }
            | Error::MalformedRecord { .. }
            | Error::CursorCannotAdvance { .. }
            | Error::Config(_) => false,
        }
    }

    /// Whether the fault is on the WAP side (docs/protocol/usage-service.md §2.2: network, timeout, TLS, any non-success status,
    /// a body that is not a page). The spec's adapter retries these forever (401/403 logged as configuration
    /// errors); only [`DecodeErrorKind::WrongType`] (adapter side) and [`Error::Config`] are not WAP-side.
    pub fn is_wap_side(&self) -> bool {
        match self {
            Error::Decode { kind, .. } => *kind != DecodeErrorKind::WrongType,
            Error::MalformedRecord { .. } | Error::Config(_) => false,
            _ => true,
        }
    }

    /// Whether this is an authentication or authorization failure (401/403): the credentials are wrong.
    pub fn is_auth_error(&self) -> bool {
        matches!(self, Error::Status { status: 401 | 403, .. })
    }

    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request URL (without credentials), if the error belongs to a request.
    pub fn url(&self) -> Option<&Url> {
        match self {
            Error::Transport { url, .. }
            | Error::Timeout { url, .. }
            | Error::Status { url, .. }
            | Error::Decode { url, .. }
            | Error::BodyTooLarge { url, .. }
            | Error::Tls { url, .. }
            | Error::MalformedRecord { url, .. }
            | Error::CursorCannotAdvance { url, .. } => Some(url),
            Error::Config(_) => None,
        }
    }

    /// The JSON path of the bad member, for [`Error::Decode`] (`[3].EventId`; `.` for the whole body) and
    /// [`Error::MalformedRecord`].
    pub fn json_path(&self) -> Option<&str> {
        match self {
            Error::Decode { source, .. } => Some(&source.path),
            Error::MalformedRecord { record, .. } => Some(&record.path),
            _ => None,
        }
    }

    /// The `Retry-After` the server sent with an error status.
    pub fn retry_after(&self) -> Option<&RetryAfter> {
        match self {
            Error::Status { retry_after, .. } => retry_after.as_ref(),
            _ => None,
        }
    }
}

/// The start of a body as printable text: at most `max` bytes, lossy UTF-8, control characters replaced by spaces,
/// whitespace runs collapsed.
pub(crate) fn body_snippet(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let text = String::from_utf8_lossy(cut);
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() { ' ' } else { c };
        if c == ' ' {
            if !last_space && !out.is_empty() {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("https://wap.test:30022/usage?startId=0&batchSize=100").unwrap()
    }

    fn status(code: u16) -> Error {
        Error::Status { status: code, url: Box::new(url()), body_snippet: String::new(), retry_after: None }
    }

    #[test]
    fn status_classification_follows_the_issue() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status(code).is_retryable(), "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 405, 410, 422] {
            assert!(!status(code).is_retryable(), "{code}");
            assert!(status(code).is_wap_side(), "{code}");
        }
        assert!(status(401).is_auth_error() && status(403).is_auth_error() && !status(404).is_auth_error());
        assert!(status(401).to_string().contains("configuration error"));
        assert!(status(302).to_string().contains("redirects are not followed"));
    }

    #[test]
    fn decode_kinds() {
        let json = wap_types::json::from_slice::<i64>(b"\"x\"").unwrap_err();
        let wrong = Error::Decode { kind: DecodeErrorKind::WrongType, url: Box::new(url()), source: json };
        assert!(!wrong.is_retryable() && !wrong.is_wap_side());
        assert_eq!(wrong.json_path(), Some("."));
        let json = wap_types::json::from_slice::<i64>(b"").unwrap_err();
        let truncated = Error::Decode { kind: DecodeErrorKind::Truncated, url: Box::new(url()), source: json };
        assert!(truncated.is_retryable() && truncated.is_wap_side());
    }

    #[test]
    fn snippet_is_bounded_and_printable() {
        let s = body_snippet(b"<html>\r\n  <body>\tServer\x00Error</body>\n</html>", 1000);
        assert_eq!(s, "<html> <body> Server Error</body> </html>");
        assert_eq!(body_snippet(&[b'a'; 2000], 512).len(), 512);
        assert_eq!(body_snippet(b"", 512), "");
        // a cut in the middle of a multi-byte character does not panic
        assert_eq!(body_snippet("é".as_bytes(), 1), "\u{fffd}");
    }
}
