//! WHMCS's version: reading it ([`detect_version`]) and the start-up check ([`check_version`]).

use std::fmt;
use std::str::FromStr;

use crate::client::WhmcsClient;
use crate::error::{Error, ErrorKind};

/// A WHMCS version such as `8.13.1` (from `8.13.1-release.1`, `7.10.2` or `5.2.7`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WhmcsVersion {
    /// Numeric components (`[8, 13, 1]`), at least one.
    components: Vec<u32>,
}

impl WhmcsVersion {
    /// The version `major.minor.patch`.
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        WhmcsVersion { components: vec![major, minor, patch] }
    }

    /// The numeric components.
    pub fn components(&self) -> &[u32] {
        &self.components
    }

    /// The major version.
    pub fn major(&self) -> u32 {
        self.components[0]
    }

    /// Whether this version is at least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        let mine = (self.components[0], self.components.get(1).copied().unwrap_or(0));
        mine >= (major, minor)
    }

    /// Whether `self` matches `pattern`: equal on every component `pattern` has (`8` matches `8.13.1`, `8.13`
    /// matches `8.13.1`, `8.13.1` matches only itself).
    pub fn matches(&self, pattern: &WhmcsVersion) -> bool {
        pattern.components.iter().enumerate().all(|(i, c)| self.components.get(i).copied().unwrap_or(0) == *c)
    }
}

impl fmt::Display for WhmcsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.components.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// The text is not a WHMCS version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a WHMCS version (expected digits separated by dots, such as 8.13.1)")]
pub struct InvalidVersion(pub String);

impl FromStr for WhmcsVersion {
    type Err = InvalidVersion;

    /// Reads `8.13.1`, `8.13.1-release.1`, `v7.10.2`, `5.2.7 `: the dotted numbers before any `-`, `+` or space.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix(['v', 'V']).unwrap_or(t);
        let core = t.split(['-', '+', ' ']).next().unwrap_or_default();
        let components: Result<Vec<u32>, _> = core.split('.').map(str::parse).collect();
        match components {
            Ok(c) if !c.is_empty() && c.len() <= 4 => Ok(WhmcsVersion { components: c }),
            _ => Err(InvalidVersion(s.to_owned())),
        }
    }
}

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionSource {
    /// `WhmcsDetails` (WHMCS 8.0+).
    WhmcsDetails,
    /// `GetConfigurationValue setting=Version` (WHMCS 7.x).
    ConfigurationValue,
    /// The operator's configured version: WHMCS could not tell (5.x has no version action).
    Configured,
}

/// Reads WHMCS's version: `WhmcsDetails` (8.0+); when WHMCS does not know that action, `GetConfigurationValue
/// setting=Version` (7.x); when that is unknown or refused too, `configured` (the operator's statement, needed
/// for 5.x). Authentication, permission, IP and transport errors are returned as they are, not papered over.
pub async fn detect_version(
    client: &WhmcsClient,
    configured: Option<&WhmcsVersion>,
) -> Result<(WhmcsVersion, VersionSource), Error> {
    let parse = |action: &str, text: &str| {
        text.parse::<WhmcsVersion>().map_err(|e| Error::Decode {
            action: action.to_owned(),
            path: "$.version".into(),
            detail: e.to_string(),
        })
    };
    match client.whmcs_details().await {
        Ok((version, canonical)) => {
            let text = if version.trim().is_empty() { canonical } else { version };
            return Ok((parse("WhmcsDetails", &text)?, VersionSource::WhmcsDetails));
        }
        Err(e) if e.kind() == ErrorKind::UnknownAction => {}
        Err(e) => return Err(e),
    }
    match client.get_configuration_value("Version").await {
        Ok(text) if !text.trim().is_empty() => {
            return Ok((parse("GetConfigurationValue", &text)?, VersionSource::ConfigurationValue));
        }
        Ok(_) => {}
        // Unknown action (before 7.0) or `Invalid name for parameter setting`.
        Err(e) if matches!(e.kind(), ErrorKind::UnknownAction | ErrorKind::Validation) => {}
        Err(e) => return Err(e),
    }
    configured.cloned().map(|v| (v, VersionSource::Configured)).ok_or_else(|| {
        Error::Config(
            "WHMCS does not report its version (no WhmcsDetails, no GetConfigurationValue Version); configure the \
             installed version"
                .into(),
        )
    })
}

/// WHMCS reported another version than the one expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "WHMCS reports version {found} ({reported_by:?}), the configuration expects {expected}; allow an unexpected version \
     explicitly to run anyway"
)]
pub struct VersionMismatch {
    /// The expected version (pattern).
    pub expected: WhmcsVersion,
    /// The version found.
    pub found: WhmcsVersion,
    /// Where `found` came from.
    pub reported_by: VersionSource,
}

/// The outcome of a passing [`check_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionCheck {
    /// No version expected: nothing to check.
    NotConfigured,
    /// The version matches.
    Matches,
    /// It does not match, and the mismatch was explicitly allowed (a warning is logged).
    MismatchAllowed,
}

/// The start-up check: with an `expected` version, a `found` version that does not [match](WhmcsVersion::matches)
/// it is refused unless `allow_mismatch` (then a warning is logged). The engine's own check compares the text it
/// is given; pass it `found.to_string()`, or use this for the component-wise comparison (`8.13` accepts
/// `8.13.1`).
pub fn check_version(
    expected: Option<&WhmcsVersion>,
    found: &WhmcsVersion,
    source: VersionSource,
    allow_mismatch: bool,
) -> Result<VersionCheck, VersionMismatch> {
    let Some(expected) = expected else {
        return Ok(VersionCheck::NotConfigured);
    };
    if found.matches(expected) {
        return Ok(VersionCheck::Matches);
    }
    if allow_mismatch {
        tracing::warn!(%expected, %found, ?source, "WHMCS version differs from the expected one; running anyway (explicitly allowed)");
        return Ok(VersionCheck::MismatchAllowed);
    }
    Err(VersionMismatch { expected: expected.clone(), found: found.clone(), reported_by: source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> WhmcsVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_whmcs_version_texts() {
        assert_eq!(v("8.0.0-release.1"), WhmcsVersion::new(8, 0, 0));
        assert_eq!(v(" v7.10.2 "), WhmcsVersion::new(7, 10, 2));
        assert_eq!(v("5.2.7").to_string(), "5.2.7");
        for bad in ["", "eight", "8..1", "8.x", "1.2.3.4.5"] {
            assert!(bad.parse::<WhmcsVersion>().is_err(), "{bad}");
        }
        assert!(v("7.10.2") > v("7.9.9"));
        assert!(v("8.1").at_least(8, 0) && !v("7.10").at_least(8, 0) && v("7.8.0").at_least(7, 8));
    }

    #[test]
    fn check_matches_by_components_and_refuses_a_mismatch() {
        let found = v("8.13.1");
        let src = VersionSource::WhmcsDetails;
        assert_eq!(check_version(None, &found, src, false), Ok(VersionCheck::NotConfigured));
        for ok in ["8", "8.13", "8.13.1"] {
            assert_eq!(check_version(Some(&v(ok)), &found, src, false), Ok(VersionCheck::Matches), "{ok}");
        }
        for bad in ["7", "8.1", "8.13.2", "8.13.1.1"] {
            let err = check_version(Some(&v(bad)), &found, src, false).unwrap_err();
            assert_eq!(err.found, found);
            assert!(err.to_string().contains("8.13.1"), "{err}");
            assert_eq!(check_version(Some(&v(bad)), &found, src, true), Ok(VersionCheck::MismatchAllowed));
        }
    }
}
