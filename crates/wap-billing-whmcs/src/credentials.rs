//! [`Credentials`]: how a request authenticates to WHMCS.

use std::fmt;

use wap_types::Secret;

/// How requests authenticate to WHMCS's API. Secrets never show in `Debug` output.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// API Authentication Credentials (WHMCS 7.2 and later): `identifier` and `secret`, bound to an API role.
    ApiCredential {
        /// The credential's identifier (not secret, but kept out of logs anyway).
        identifier: String,
        /// The credential's secret.
        secret: Secret,
    },
    /// The older form (every version, the only one before 7.2): an administrator's `username` and the MD5 of
    /// the password, lowercase hex, as WHMCS expects it.
    AdminLogin {
        /// The administrator's username.
        username: String,
        /// `md5(password)`, computed once when the credentials are made.
        password_md5: Secret,
    },
}

impl Credentials {
    /// API Authentication Credentials (WHMCS 7.2+).
    pub fn api_credential(identifier: impl Into<String>, secret: impl Into<Secret>) -> Self {
        Credentials::ApiCredential { identifier: identifier.into(), secret: secret.into() }
    }

    /// An administrator's login: the password is hashed (MD5, as WHMCS requires) here and the plain text dropped.
    pub fn admin_login(username: impl Into<String>, password: &Secret) -> Self {
        Credentials::AdminLogin {
            username: username.into(),
            password_md5: Secret::new(crate::md5::hex(password.expose().as_bytes())),
        }
    }

    /// An administrator's login whose password is already MD5-hashed (32 hex digits, as stored in configuration).
    pub fn admin_login_md5(username: impl Into<String>, password_md5: impl Into<Secret>) -> Self {
        Credentials::AdminLogin { username: username.into(), password_md5: password_md5.into() }
    }

    /// The form fields that carry these credentials.
    pub(crate) fn form_fields(&self) -> [(&'static str, &str); 2] {
        match self {
            Credentials::ApiCredential { identifier, secret } => {
                [("identifier", identifier.as_str()), ("secret", secret.expose())]
            }
            Credentials::AdminLogin { username, password_md5 } => {
                [("username", username.as_str()), ("password", password_md5.expose())]
            }
        }
    }

    /// What kind of credentials these are, for logs and errors.
    pub fn mode(&self) -> &'static str {
        match self {
            Credentials::ApiCredential { .. } => "API credential",
            Credentials::AdminLogin { .. } => "admin login",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::ApiCredential { .. } => {
                f.debug_struct("ApiCredential").field("identifier", &"***").field("secret", &"***").finish()
            }
            Credentials::AdminLogin { username, .. } => {
                f.debug_struct("AdminLogin").field("username", username).field("password_md5", &"***").finish()
            }
        }
    }
}
