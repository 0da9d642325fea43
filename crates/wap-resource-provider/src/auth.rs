//! [`EndpointAuth`]: what each endpoint accepts (docs/protocol/resource-provider.md §1, §5).
//!
//! Each endpoint checks its own registered credentials: the Basic scheme in any case, the user name ignoring
//! case, the password exactly and in constant time ([`BasicCredentials::matches`]). `Bearer` is accepted only
//! when a [`BearerVerifier`] is configured.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use wap_types::rp::AuthenticationMode;
use wap_types::{BasicCredentials, Secret};

/// Checks a `Bearer` token.
pub trait BearerVerifier: Send + Sync + 'static {
    /// Whether `token` (the text after `Bearer `) is acceptable.
    fn verify(&self, token: &str) -> bool;
}

/// A single shared token, compared in constant time.
#[derive(Clone)]
pub struct StaticBearerToken(Secret);

impl StaticBearerToken {
    /// Accepts exactly `token`.
    pub fn new(token: impl Into<Secret>) -> Self {
        StaticBearerToken(token.into())
    }
}

impl fmt::Debug for StaticBearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticBearerToken(***)")
    }
}

impl BearerVerifier for StaticBearerToken {
    fn verify(&self, token: &str) -> bool {
        self.0.expose().as_bytes().ct_eq(token.as_bytes()).into()
    }
}

/// The authentication of one endpoint.
#[derive(Clone)]
pub struct EndpointAuth {
    basic: Option<BasicCredentials>,
    bearer: Option<Arc<dyn BearerVerifier>>,
}

impl fmt::Debug for EndpointAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointAuth")
            .field("basic", &self.basic)
            .field("bearer", &self.bearer.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// A header with a scheme this endpoint does not accept, or wrong credentials.
    Rejected,
}

impl EndpointAuth {
    /// Registered mode `None` (0): every request is accepted. Use only behind another authenticating layer.
    pub fn none() -> Self {
        EndpointAuth { basic: None, bearer: None }
    }

    /// Registered mode `Basic` (1) with these credentials.
    pub fn basic(credentials: BasicCredentials) -> Self {
        EndpointAuth { basic: Some(credentials), bearer: None }
    }

    /// Also accepts `Authorization: Bearer <token>` when `verifier` approves the token (the usage endpoint
    /// documentation lists Bearer; WAP's registration gives Basic).
    pub fn with_bearer(mut self, verifier: impl BearerVerifier) -> Self {
        self.bearer = Some(Arc::new(verifier));
        self
    }

    /// The mode to register for this endpoint: `Basic` when credentials are set, else `None`.
    pub fn mode(&self) -> AuthenticationMode {
        if self.basic.is_some() {
            AuthenticationMode::Basic
        } else {
            AuthenticationMode::None
        }
    }

    /// The Basic credentials, if any.
    pub fn basic_credentials(&self) -> Option<&BasicCredentials> {
        self.basic.as_ref()
    }

    /// Whether the Basic credentials are blank (an empty user name, or a password that is empty or whitespace):
    /// [`RpServer`](crate::RpServer) refuses to build with such an endpoint.
    pub fn has_blank_credentials(&self) -> bool {
        self.basic.as_ref().is_some_and(|c| c.username.trim().is_empty() || c.password.expose().trim().is_empty())
    }

    /// Whether anything is checked at all.
    pub fn is_open(&self) -> bool {
        self.basic.is_none() && self.bearer.is_none()
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn check(&self, header: Option<&str>) -> Result<(), AuthFailure> {
        if self.is_open() {
            return Ok(());
        }
        let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(AuthFailure::Missing);
        };
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            if let Some(expected) = &self.basic {
                if expected.verify_header(Some(value)) {
                    return Ok(());
                }
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(verifier) = &self.bearer {
                if verifier.verify(rest.trim()) {
                    return Ok(());
                }
            }
        }
        Err(AuthFailure::Rejected)
    }

    /// The `WWW-Authenticate` challenges of a 401.
    pub(crate) fn challenges(&self, realm: &str) -> Vec<String> {
        let realm = realm.replace(['"', '\\'], "");
        let mut out = Vec::new();
        if self.basic.is_some() || self.bearer.is_none() {
            out.push(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""));
        }
        if self.bearer.is_some() {
            out.push(format!("Bearer realm=\"{realm}\""));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer_are_checked_per_configuration() {
        let creds = BasicCredentials::new("rpadmin", "R3source#Key");
        let auth = EndpointAuth::basic(creds.clone());
        assert_eq!(auth.check(Some("Basic cnBhZG1pbjpSM3NvdXJjZSNLZXk=")), Ok(()));
        assert_eq!(auth.check(Some("basic cnBhZG1pbjpSM3NvdXJjZSNLZXk=")), Ok(()));
        assert_eq!(auth.check(Some("Basic cnBhZG1pbjp3cm9uZw==")), Err(AuthFailure::Rejected));
        assert_eq!(auth.check(None), Err(AuthFailure::Missing));
        assert_eq!(auth.check(Some("Bearer abc")), Err(AuthFailure::Rejected));
        let auth = auth.with_bearer(StaticBearerToken::new("abc"));
        assert_eq!(auth.check(Some("Bearer abc")), Ok(()));
        assert_eq!(auth.check(Some("bearer  abc ")), Ok(()));
        assert_eq!(auth.check(Some("Bearer abd")), Err(AuthFailure::Rejected));
        assert_eq!(auth.check(Some(&creds.header_value())), Ok(()));
        assert_eq!(EndpointAuth::none().check(None), Ok(()));
        assert_eq!(EndpointAuth::none().mode(), AuthenticationMode::None);
        assert!(!format!("{auth:?}").contains("R3source"));
        assert!(!format!("{:?}", StaticBearerToken::new("abc")).contains("abc"));
    }
}
