//! The `Authorization` check of every request: the configured Basic credentials, with the header WAP sends for
//! them precomputed, so that the usual request costs one constant-time comparison and no decoding.

use http::HeaderValue;
use subtle::ConstantTimeEq;
use wap_types::BasicCredentials;

/// Checks `Authorization` headers against one set of Basic credentials.
pub(crate) struct BasicCheck {
    credentials: BasicCredentials,
    /// `Basic base64(user:password)`, as WAP writes it for these credentials.
    canonical: Box<[u8]>,
}

impl BasicCheck {
    pub(crate) fn new(credentials: &BasicCredentials) -> Self {
        BasicCheck { canonical: credentials.header_value().into_bytes().into(), credentials: credentials.clone() }
    }

    /// Whether `header` carries the credentials. The exact canonical header is compared in constant time; any other
    /// spelling (scheme or user name in another case, extra spaces) is decoded and compared by
    /// [`BasicCredentials::verify_header`], also in constant time on the password.
    pub(crate) fn verify(&self, header: Option<&HeaderValue>) -> bool {
        let Some(header) = header else { return false };
        let presented = header.as_bytes();
        if presented.len() == self.canonical.len() && bool::from(presented.ct_eq(&self.canonical)) {
            return true;
        }
        self.credentials.verify_header(header.to_str().ok())
    }
}

impl std::fmt::Debug for BasicCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `canonical` encodes the password: never shown.
        f.debug_struct("BasicCheck").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn canonical_and_other_spellings_pass_wrong_ones_fail() {
        let credentials = BasicCredentials::new("WapCaller", "S3cure!pass");
        let check = BasicCheck::new(&credentials);
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(check.verify(Some(&header(&credentials.header_value()))));
        assert!(check.verify(Some(&header(&format!("basic {}", b64("wapcaller:S3cure!pass"))))));
        assert!(check.verify(Some(&header(&format!("Basic   {} ", b64("WAPCALLER:S3cure!pass"))))));
        assert!(!check.verify(Some(&header(&format!("Basic {}", b64("WapCaller:S3cure!pasS"))))));
        assert!(!check.verify(Some(&header(&format!("Basic {}", b64("WapCaller:S3cure!pass!"))))));
        assert!(!check.verify(Some(&header(&format!("Bearer {}", b64("WapCaller:S3cure!pass"))))));
        assert!(!check.verify(Some(&header("Basic"))));
        assert!(!check.verify(None));
        assert!(!format!("{check:?}").contains(&b64("WapCaller:S3cure!pass")));
        assert!(!format!("{check:?}").contains("S3cure"));
    }
}
