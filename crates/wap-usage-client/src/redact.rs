//! [`RedactedUrl`]: an endpoint URL as configured, which may carry credentials (`https://user:pass@host/`) and so
//! never shows them in `Debug`, `Display` or error messages.

use std::fmt;

use url::Url;

/// A URL text as configured. Its `Debug` and `Display` print it without user information: a URL that parses has
/// its user name and password replaced by `***`; one that does not parse is printed without anything up to its
/// last `@` (after the scheme), so no part of a password shows even when the URL is malformed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedactedUrl(String);

impl RedactedUrl {
    pub(crate) fn new(raw: impl Into<String>) -> Self {
        RedactedUrl(raw.into())
    }

    /// The URL as configured, credentials included: only for parsing.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The printable form (see the type's documentation).
    pub(crate) fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn redact(raw: &str) -> String {
    // `user:pass@host` (no scheme) parses as a URL of scheme `user` whose path holds the password: only URLs with
    // an authority are printed as parsed.
    if let Some(mut url) = Url::parse(raw).ok().filter(|u| !u.cannot_be_a_base()) {
        if url.username().is_empty() && url.password().is_none() {
            return url.to_string();
        }
        if url.set_username("***").is_ok() && url.set_password(None).is_ok() {
            return url.to_string();
        }
    }
    strip_userinfo(raw)
}

/// Drops everything between the scheme's `://` (if any) and the last `@`: no user information at all.
fn strip_userinfo(raw: &str) -> String {
    let Some(at) = raw.rfind('@') else { return raw.to_owned() };
    let prefix = match raw.find("://") {
        Some(i) if i < at => &raw[..i + 3],
        _ => "",
    };
    format!("{prefix}{}", &raw[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_urls_lose_their_user_information() {
        let u = RedactedUrl::new("https://usagereader:S3cr%3At@wap.test:30022/base/");
        assert_eq!(u.to_string(), "https://***@wap.test:30022/base/");
        assert_eq!(format!("{u:?}"), "\"https://***@wap.test:30022/base/\"");
        assert_eq!(RedactedUrl::new("https://:S3cr3t@wap.test/").to_string(), "https://***@wap.test/");
        assert_eq!(RedactedUrl::new("https://wap.test:30022/").to_string(), "https://wap.test:30022/");
    }

    #[test]
    fn unparsable_urls_print_no_user_information_at_all() {
        for (raw, shown) in [
            ("http://user:S3cr3t@wap.test:99999/", "http://wap.test:99999/"),
            ("http://user:S3cr3t@wap test/", "http://wap test/"),
            ("http://u:a://b@[::1/", "http://[::1/"),
            ("user:S3cr3t@wap.test", "wap.test"),
            ("no credentials here", "no credentials here"),
            ("user:S3cr3t@wap.test:30022", "wap.test:30022"),
        ] {
            let u = RedactedUrl::new(raw);
            assert!(
                Url::parse(raw).map_or(true, |u| u.cannot_be_a_base()),
                "{raw} should not parse as a URL with a host"
            );
            assert_eq!(u.to_string(), shown, "{raw}");
            for secret in ["S3cr3t", "a://b"] {
                assert!(!format!("{u} {u:?}").contains(secret), "{raw}");
            }
        }
    }
}
