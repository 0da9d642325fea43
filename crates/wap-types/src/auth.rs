//! HTTP Basic credentials as WAP uses them: sent by the billing adapter to the Usage Service, by WAP to the
//! approval/pricing responder and to resource providers.
//!
//! Rules (approval-and-pricing.md §3.2, resource-provider.md §1): the scheme name is matched in any case
//! (`basic` is accepted), the user name ignoring case, the password exactly and in constant time. Credentials are
//! UTF-8 (RFC 7617). The password never shows in `Debug` output.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// A user name and password for HTTP Basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// The user name.
    pub username: String,
    /// The password (redacted in `Debug`).
    pub password: Secret,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("username", &self.username).field("password", &"***").finish()
    }
}

impl BasicCredentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        BasicCredentials { username: username.into(), password: password.into() }
    }

    /// The `Authorization` header value: `Basic base64(user ":" password)`.
    pub fn header_value(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.username, self.password.expose())))
    }

    /// Reads an `Authorization` header value (scheme in any case). `None` if it is not Basic or not decodable.
    pub fn parse_header(value: &str) -> Option<BasicCredentials> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some(BasicCredentials::new(user, pass))
    }

    /// Whether `presented` are these credentials: user name ignoring ASCII case, password exactly, both compared
    /// without an early exit on the password.
    pub fn matches(&self, presented: &BasicCredentials) -> bool {
        let user_ok = self.username.len() == presented.username.len()
            && self
                .username
                .to_ascii_lowercase()
                .as_bytes()
                .ct_eq(presented.username.to_ascii_lowercase().as_bytes())
                .into();
        let pass_ok: bool = self.password.expose().as_bytes().ct_eq(presented.password.expose().as_bytes()).into();
        user_ok & pass_ok
    }

    /// Checks an `Authorization` header value against these credentials.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        header.and_then(BasicCredentials::parse_header).is_some_and(|p| self.matches(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_matches_the_spec_examples() {
        let c = BasicCredentials::new("usagereader", "Us4ge-Read");
        assert_eq!(c.header_value(), "Basic dXNhZ2VyZWFkZXI6VXM0Z2UtUmVhZA==");
        let w = BasicCredentials::new("wapcaller", "S3cure!pass");
        assert!(w.verify_header(Some("basic d2FwY2FsbGVyOlMzY3VyZSFwYXNz")));
        assert!(!w.verify_header(Some("Basic d2FwY2FsbGVyOndyb25n")));
        assert!(!w.verify_header(None));
        assert!(!w.verify_header(Some("Bearer abc")));
        assert!(!w.verify_header(Some("Basic !!!")));
    }

    #[test]
    fn user_name_ignores_case_password_does_not() {
        let c = BasicCredentials::new("RpAdmin", "R3source#Key");
        assert!(c.matches(&BasicCredentials::new("rpadmin", "R3source#Key")));
        assert!(!c.matches(&BasicCredentials::new("rpadmin", "r3source#key")));
        assert!(!c.matches(&BasicCredentials::new("rpadmin2", "R3source#Key")));
        let p = BasicCredentials::parse_header(&c.header_value()).unwrap();
        assert_eq!(p, c);
        assert!(!format!("{c:?}").contains("R3source"));
    }
}
