//! The version check: `getHostBillversion` against the version the adapter was configured for.

use crate::client::HostBillClient;
use crate::error::Error;

/// The outcome of [`check_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionCheck {
    /// HostBill reports the expected version (or a version under it: `4.9` accepts `4.9.8`).
    Matches {
        /// What HostBill reported.
        reported: String,
    },
    /// HostBill reports another version and the mismatch was explicitly allowed: the adapter starts (and says so).
    MismatchAllowed {
        /// What HostBill reported.
        reported: String,
        /// What was expected.
        expected: String,
    },
}

impl VersionCheck {
    /// What HostBill reported.
    pub fn reported(&self) -> &str {
        match self {
            VersionCheck::Matches { reported } | VersionCheck::MismatchAllowed { reported, .. } => reported,
        }
    }
}

/// Why the version check refused to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// HostBill reports another version than expected, and the mismatch is not allowed.
    #[error(
        "HostBill reports version {reported:?}, the adapter is configured for {expected:?}: refusing to start \
         (set the expected version, or allow a version mismatch explicitly)"
    )]
    Mismatch {
        /// What HostBill reported.
        reported: String,
        /// What was expected.
        expected: String,
    },
    /// `getHostBillversion` failed.
    #[error("cannot read HostBill's version: {0}")]
    Call(#[from] Error),
}

/// Whether `reported` is `expected` or a version under it (`4.9` matches `4.9.8`, not `4.91`).
pub fn version_matches(reported: &str, expected: &str) -> bool {
    let (r, e) = (reported.trim(), expected.trim());
    if e.is_empty() {
        return false;
    }
    r.eq_ignore_ascii_case(e)
        || r.len() > e.len() && r[..e.len()].eq_ignore_ascii_case(e) && r[e.len()..].starts_with('.')
}

/// Asks HostBill its version (`getHostBillversion`) and compares it with `expected`. A mismatch is refused
/// unless `allow_mismatch` (then logged at warn level).
pub async fn check_version(
    client: &HostBillClient,
    expected: &str,
    allow_mismatch: bool,
) -> Result<VersionCheck, VersionError> {
    let reported = client.get_version().await?;
    if version_matches(&reported, expected) {
        return Ok(VersionCheck::Matches { reported });
    }
    if allow_mismatch {
        tracing::warn!(reported, expected, "HostBill version mismatch allowed by configuration");
        return Ok(VersionCheck::MismatchAllowed { reported, expected: expected.to_owned() });
    }
    Err(VersionError::Mismatch { reported, expected: expected.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_by_component() {
        assert!(version_matches("4.9.8", "4.9.8"));
        assert!(version_matches("4.9.8", "4.9"));
        assert!(!version_matches("4.91", "4.9"));
        assert!(!version_matches("2024.1", "4.9.8"));
        assert!(!version_matches("4.9.8", ""));
    }
}
