//! The double's settings: version profile, answer style, and injectable faults.

use crate::version::WhmcsVersion;

/// Which WHMCS the double behaves as. What changes with the version:
///
/// | From | Change |
/// |---|---|
/// | 7.0 | `GetConfigurationValue` exists (`setting=Version` answers the version) |
/// | 7.2 | API credentials (`identifier` + `secret`, also accepted in `username` + `password`) and API roles |
/// | 7.8 | `AddOrder` answers `serviceids` (before: `productids`) |
/// | 8.0 | `WhmcsDetails` exists |
///
/// Earlier versions answer `Command Not Found` to the actions they lack, and `Authentication Failed` to API
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The version reported and acted out.
    pub version: WhmcsVersion,
}

impl Profile {
    /// WHMCS 5.2.7 (the version Microsoft's sample targeted): admin login only, no version action.
    pub fn v5_2() -> Self {
        Profile { version: WhmcsVersion::new(5, 2, 7) }
    }

    /// WHMCS 7.10.2: API credentials, `GetConfigurationValue`, no `WhmcsDetails`.
    pub fn v7() -> Self {
        Profile { version: WhmcsVersion::new(7, 10, 2) }
    }

    /// WHMCS 8.13.1: `WhmcsDetails`.
    pub fn v8() -> Self {
        Profile { version: WhmcsVersion::new(8, 13, 1) }
    }

    /// Any version.
    pub fn version(version: WhmcsVersion) -> Self {
        Profile { version }
    }

    pub(crate) fn has_api_credentials(&self) -> bool {
        self.version.at_least(7, 2)
    }
}

/// How ids and counts are written. WHMCS's documentation shows strings; newer installations send numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Numbers {
    /// `"id": "1"` (the default).
    #[default]
    Strings,
    /// `"id": 1`.
    Integers,
}

/// How an empty list is written (PHP's empty array has several JSON shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EmptyList {
    /// `"clients": {"client": []}` (the default).
    #[default]
    Nested,
    /// `"clients": []`.
    BareArray,
    /// No `clients` key at all.
    Missing,
}

/// What `AddClient` does with an email address a client already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DuplicateEmail {
    /// Refuse with `Duplicate Email Address` (the default; WHMCS keeps emails unique).
    #[default]
    Reject,
    /// Create a second client: shows callers that rely on the refusal instead of looking up first.
    Allow,
}

/// A fault the double injects into matching requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub(crate) action: Option<String>,
    pub(crate) kind: FaultKind,
    pub(crate) skip: usize,
    pub(crate) times: usize,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Answer with this HTTP status and a plain-text body; nothing is applied.
    Status(u16),
    /// Answer 500 with an HTML error page; nothing is applied.
    HtmlErrorPage,
    /// Answer 200 with an HTML page (a proxy or maintenance page); nothing is applied.
    HtmlOkPage,
    /// Apply the request, then answer 500 with an HTML error page.
    ErrorPageAfterCommit,
    /// Apply the request, then never answer (the caller times out): the change is committed.
    TimeoutAfterCommit,
    /// Apply the request, then close the connection without an answer.
    DropAfterCommit,
}

impl FaultKind {
    /// Whether the request is applied before the fault shows (the caller cannot tell from the answer).
    pub fn commits(self) -> bool {
        matches!(self, FaultKind::ErrorPageAfterCommit | FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit)
    }
}

impl Fault {
    /// A fault on the next request for `action` (any case).
    pub fn on(action: &str, kind: FaultKind) -> Self {
        Fault { action: Some(action.to_ascii_lowercase()), kind, skip: 0, times: 1 }
    }

    /// A fault on the next request, whatever its action.
    pub fn any(kind: FaultKind) -> Self {
        Fault { action: None, kind, skip: 0, times: 1 }
    }

    /// Lets `n` matching requests through first.
    pub fn after(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Applies to `n` matching requests (default 1).
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    pub(crate) fn matches(&self, action: &str) -> bool {
        self.action.as_deref().is_none_or(|a| a == action)
    }
}
