//! HTTP Basic credentials as WAP uses them: sent by the billing adapter to the Usage Service, by WAP to the
//! approval/pricing responder and to resource providers.
//!
//! Rules (docs/protocol/approval-and-pricing.md §3.2, docs/protocol/resource-provider.md §1): the scheme name is matched in any case
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
        self.matches_parts(presented.username.as_bytes(), presented.password.expose().as_bytes())
    }

    /// [`Self::matches`] on a presented user name and password.
    fn matches_parts(&self, user: &[u8], password: &[u8]) -> bool {
        let expected = self.username.as_bytes();
        let user_ok = user.len() == expected.len()
            && bool::from(user.iter().zip(expected).fold(subtle::Choice::from(1), |eq, (a, b)| {
                eq & a.to_ascii_lowercase().ct_eq(&b.to_ascii_lowercase())
            }));
        let pass_ok: bool = self.password.expose().as_bytes().ct_eq(password).into();
        user_ok & pass_ok
    }

    /// Checks an `Authorization` header value against these credentials, with the rules of [`Self::matches`].
    ///
    /// Called on every request a server receives, so it allocates nothing for credentials of usual length: the
    /// header is decoded into a buffer on the stack, which is wiped before returning.
    pub fn verify_header(&self, header: Option<&str>) -> bool {
        let Some((scheme, encoded)) = header.and_then(|h| h.trim().split_once(char::is_whitespace)) else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return false;
        }
        let encoded = encoded.trim().as_bytes();
        let needed = base64::decoded_len_estimate(encoded.len());
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let buffer: &mut [u8] = if needed <= stack.len() {
            &mut stack
        } else {
            heap.resize(needed, 0);
            &mut heap
        };
        let ok = match STANDARD.decode_slice(encoded, buffer) {
            Ok(len) => self.matches_decoded(&buffer[..len]),
            Err(_) => false,
        };
        buffer.fill(0);
        ok
    }

    /// Compares decoded `user ":" password` bytes (UTF-8) with these credentials.
    fn matches_decoded(&self, decoded: &[u8]) -> bool {
        if std::str::from_utf8(decoded).is_err() {
            return false;
        }
        let Some(colon) = decoded.iter().position(|&b| b == b':') else { return false };
        self.matches_parts(&decoded[..colon], &decoded[colon + 1..])
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
    fn verify_header_agrees_with_parse_and_match() {
        let c = BasicCredentials::new("RpAdmin", "R3source#Key");
        let long = BasicCredentials::new("RpAdmin", "x".repeat(1000));
        let headers = [
            c.header_value(),
            BasicCredentials::new("rpadmin", "R3source#Key").header_value(),
            BasicCredentials::new("rpadmin", "R3source#KeY").header_value(),
            BasicCredentials::new("rpadmin2", "R3source#Key").header_value(),
            BasicCredentials::new("rpadmi", "R3source#Key").header_value(),
            BasicCredentials::new("RpAdmin", "").header_value(),
            long.header_value(),
            format!("  basic   {}  ", STANDARD.encode("RpAdmin:R3source#Key")),
            format!("Basic {}", STANDARD.encode("RpAdminR3source#Key")),
            format!("Basic {}", STANDARD.encode(b"RpAdmin:R3source#Key\xff")),
            format!("Basic {}", STANDARD.encode("RpAdmin:R3source#Key:extra")),
            "Basic".to_owned(),
            "Basic !!!".to_owned(),
            "Bearer abc".to_owned(),
            String::new(),
        ];
        for credentials in [&c, &long] {
            for h in &headers {
                let reference = BasicCredentials::parse_header(h).is_some_and(|p| credentials.matches(&p));
                assert_eq!(credentials.verify_header(Some(h)), reference, "{h:?}");
            }
        }
        assert!(c.verify_header(Some(&headers[0])) && c.verify_header(Some(&headers[1])));
        assert!(long.verify_header(Some(&headers[6])), "credentials longer than the stack buffer");
        assert!(!c.verify_header(Some(&headers[2])) && !c.verify_header(Some(&headers[8])));
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
