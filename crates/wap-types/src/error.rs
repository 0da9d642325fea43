//! [`Error`]: the crate's one top-level error, and [`Result`].

#[cfg(feature = "body")]
use crate::body::BodyReadError;
use crate::cursor::CursorError;
use crate::datetime::DateTimeParseError;
use crate::json::JsonError;
use crate::pricing::PriceQueryError;

/// Any error of this crate: a payload that is not the expected JSON ([`JsonError`], naming the JSON path), a
/// date-time ([`DateTimeParseError`]), a `lastID`/`batchSize` query value ([`CursorError`]), a pricing query
/// ([`PriceQueryError`]) or a request body (`BodyReadError`, feature `body`). `?` converts each.
///
/// ```
/// use wap_types::{Result, WapDateTime};
///
/// fn parse(text: &str) -> Result<WapDateTime> {
///     Ok(WapDateTime::parse(text)?) // a DateTimeParseError converts
/// }
/// assert!(parse("2015-06-02T08:00:00").is_ok());
/// let err = parse("yesterday").unwrap_err();
/// assert!(err.to_string().contains("yesterday"), "{err}");
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// JSON that is not the expected type.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A date-time that does not parse.
    #[error(transparent)]
    DateTime(#[from] DateTimeParseError),
    /// A `lastID` / `batchSize` query value that is not valid.
    #[error(transparent)]
    Cursor(#[from] CursorError),
    /// A pricing query that is not valid.
    #[error(transparent)]
    PriceQuery(#[from] PriceQueryError),
    /// A request body that could not be read.
    #[cfg(feature = "body")]
    #[error(transparent)]
    Body(#[from] BodyReadError),
}

impl Error {
    /// Whether the same input may succeed later: only a body whose read failed; bad data stays bad.
    pub fn is_retryable(&self) -> bool {
        match self {
            #[cfg(feature = "body")]
            Error::Body(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
