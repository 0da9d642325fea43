//! Parsing helpers whose errors name the JSON path of the bad member.

use serde::de::DeserializeOwned;

/// A payload that is not the expected JSON. The message names the path of the bad member (`[3].Entity.State`).
#[derive(Debug, thiserror::Error)]
#[error("invalid JSON at {path}: {message}")]
#[non_exhaustive]
pub struct JsonError {
    /// The JSON path of the bad member (`.` for the top level).
    pub path: String,
    /// What was wrong.
    pub message: String,
    /// Line of the error in the input (1-based; 0 when unknown).
    pub line: usize,
    /// Column of the error in the input (1-based; 0 when unknown).
    pub column: usize,
    /// Whether the input ended too early (a truncated body rather than a wrong one).
    pub is_eof: bool,
}

/// Strips a UTF-8 byte order mark.
pub fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Reads JSON text value by value, keeping the byte offset: for callers that take a document apart themselves (one
/// event's envelope in a single pass, a page's elements in slices). Each value is read with its own `Deserialize`,
/// from text checked to be UTF-8 once; `None` from any method means "not what was expected here", and the caller
/// then falls back to [`from_slice`] / [`page_from_slice`] for the error.
#[derive(Debug, Clone)]
pub struct JsonCursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> JsonCursor<'a> {
    /// A cursor at the start of `bytes` (a BOM is skipped); `None` if they are not UTF-8.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        Some(JsonCursor { text: std::str::from_utf8(strip_bom(bytes)).ok()?, at: 0 })
    }

    /// The byte offset reached (in the text after the BOM).
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Skips whitespace and returns the next byte without consuming it.
    pub fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while matches!(bytes.get(self.at), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    /// Skips whitespace and consumes `byte` if it comes next.
    pub fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.at += 1;
        }
        next
    }

    /// Skips whitespace and reads one value of type `V`; returns it with its exact text.
    pub fn value<V: serde::Deserialize<'a>>(&mut self) -> Option<(V, &'a str)> {
        self.peek();
        let start = self.at;
        let mut values = serde_json::Deserializer::from_str(self.text.get(start..)?).into_iter::<V>();
        let value = values.next()?.ok()?;
        self.at = start + values.byte_offset();
        Some((value, &self.text[start..self.at]))
    }

    /// Whether only whitespace remains.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }
}

/// Parses JSON bytes into `T`; a BOM is tolerated; errors name the path of the bad member.
///
/// The fast path parses without tracking paths; only a failed parse is repeated with path tracking to name the
/// bad member, so valid input pays nothing for good error messages.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let bytes = strip_bom(bytes);
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(fast_error) => Err(explain::<T>(bytes, fast_error)),
    }
}

/// Re-parses failed input with path tracking to name the bad member.
fn explain<T: DeserializeOwned>(bytes: &[u8], fast_error: serde_json::Error) -> JsonError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => path_error(e),
        Ok(_) => match de.end() {
            Err(e) => path_error_plain(".", e),
            Ok(()) => path_error_plain(".", fast_error),
        },
    }
}

/// Parses a page (a bare JSON array). An empty or whitespace-only body is an empty page (`200`/`204` with no body).
pub fn page_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, JsonError> {
    let body = strip_bom(bytes);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'[') {
        return Err(JsonError {
            path: ".".into(),
            message: "expected a JSON array (a page)".into(),
            line: 1,
            column: 1,
            is_eof: false,
        });
    }
    from_slice(body)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> JsonError {
    let path = e.path().to_string();
    path_error_plain(&path, e.into_inner())
}

fn path_error_plain(path: &str, e: serde_json::Error) -> JsonError {
    let mut path = path.to_owned();
    let mut message = e.to_string();
    // A nested document (an event's `Entity`) reports its own path inside the message: join the two.
    if let Some(rest) = message.strip_prefix(crate::event::NESTED_PATH_PREFIX) {
        if let Some((inner, msg)) = rest.split_once("`: ") {
            path = if path == "." { inner.to_owned() } else { format!("{path}.{inner}") };
            message = msg.to_owned();
        }
    }
    JsonError { path, message, line: e.line(), column: e.column(), is_eof: e.is_eof() }
}
