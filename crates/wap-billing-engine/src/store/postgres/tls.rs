//! TLS to PostgreSQL through rustls (`ring` provider), with libpq's `sslmode` and `sslrootcert` honoured from the
//! URL (tokio-postgres itself knows only `disable`, `prefer` and `require`, and no CA file).
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (libpq's default) | if the server offers it, else plain | as `require` |
//! | `require` | always | not checked; with a CA file (the engine's or `sslrootcert`) checked as `verify-ca` (libpq does the same) |
//! | `verify-ca` | always | signed by the CA file (or the system's roots without one) |
//! | `verify-full` | always | as `verify-ca`, and issued for the host of the URL (DNS name or IP address) |

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{redact_url, StoreError};

/// libpq's `sslmode`, as the engine honours it (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it (libpq's default).
    #[default]
    Prefer,
    /// TLS always; the certificate is checked only when a CA file is given.
    Require,
    /// TLS always; the certificate must be signed by the CA.
    VerifyCa,
    /// TLS always; the certificate must be signed by the CA and issued for the host.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's name (`disable`, `allow` — taken as `prefer` —, `prefer`, `require`, `verify-ca`,
    /// `verify-full`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// libpq's name.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A PostgreSQL URL split into what tokio-postgres parses and the TLS settings it does not know.
#[derive(Clone)]
pub(crate) struct TlsUrl {
    /// The URL without `sslmode` and `sslrootcert`.
    pub(crate) url: String,
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL's query (or a `key=value` connection string).
pub(crate) fn split_tls(url: &str) -> Result<TlsUrl, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl { url: redact_url(url), reason };
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, StoreError> {
        match key {
            "sslmode" => {
                mode = Some(SslMode::from_name(value).ok_or_else(|| {
                    invalid(format!(
                        "`sslmode` {value:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ))
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let lower = url.trim_start().to_ascii_lowercase();
    let stripped = if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let value = percent_decode(v);
                    if !take(k, &value)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // key=value form (values with spaces must be quoted; sslmode and sslrootcert never need to be).
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            let (k, v) = token.split_once('=').unwrap_or((token, ""));
            if !take(k.trim(), v.trim_matches('\''))? {
                kept.push(token);
            }
        }
        kept.join(" ")
    };
    Ok(TlsUrl { url: stripped, mode: mode.unwrap_or_default(), root_cert })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TlsUrl {
    /// tokio-postgres's mode for this one.
    pub(crate) fn postgres_mode(&self) -> tokio_postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }

    /// The rustls connector: which certificates are accepted follows the mode and the CA file (`ca_file`, the
    /// engine's setting, or else the URL's `sslrootcert`).
    pub(crate) fn connector(&self, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_file = ca_file.or(self.root_cert.as_deref());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_setup(format!("TLS versions: {e}")))?;
        let verify = match self.mode {
            SslMode::Disable => Verify::Nothing,
            SslMode::Prefer | SslMode::Require if ca_file.is_none() => Verify::Nothing,
            SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Verify::Chain,
            SslMode::VerifyFull => Verify::ChainAndHost,
        };
        let config = match verify {
            Verify::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth(),
            Verify::Chain | Verify::ChainAndHost => {
                let roots = Arc::new(roots(ca_file)?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                    .build()
                    .map_err(|e| tls_setup(format!("certificate verifier: {e}")))?;
                if verify == Verify::ChainAndHost {
                    builder.with_webpki_verifier(webpki).with_no_client_auth()
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                        .with_no_client_auth()
                }
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndHost,
}

fn tls_setup(message: String) -> StoreError {
    StoreError::Database {
        backend: "postgres",
        message: format!("TLS to the state database: {message}"),
        retryable: false,
    }
}

/// The CA file's certificates, or the system's roots without one.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| tls_setup(format!("cannot read the CA file {}: {e}", path.display())))?;
            let mut found = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| tls_setup(format!("the CA file {} is not PEM: {e}", path.display())))?;
                roots.add(cert).map_err(|e| {
                    tls_setup(format!("a certificate in the CA file {} is unusable: {e}", path.display()))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(tls_setup(format!("the CA file {} holds no PEM certificate", path.display())));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(tls_setup(
                    "no CA file given and no system root certificate found (set the CA file or sslrootcert)".into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// `require` / `prefer` without a CA file: encryption without authentication, as libpq does (the handshake
/// signatures are still checked).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to the CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A failed connection whose cause is TLS (a certificate refused, a server without TLS under `require`): a clear,
/// permanent error naming the cause, or `None` for other failures.
pub(crate) fn tls_failure(e: &tokio_postgres::Error, mode: SslMode) -> Option<StoreError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                return Some(tls_refused(tls, mode));
            }
        }
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls_refused(tls, mode));
        }
        source = s.source();
    }
    let text = e.to_string();
    if text.contains("server does not support TLS") {
        return Some(StoreError::Database {
            backend: "postgres",
            message: format!("TLS to the state database: the server does not support TLS (sslmode={mode})"),
            retryable: false,
        });
    }
    None
}

fn tls_refused(e: &rustls::Error, mode: SslMode) -> StoreError {
    let hint = match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the server's certificate is not signed by the configured CA: check the CA file / sslrootcert)"
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => " (the server's certificate is not issued for the host in the URL; sslmode=verify-ca skips that check)",
        _ => "",
    };
    StoreError::Database {
        backend: "postgres",
        message: format!("TLS to the state database failed (sslmode={mode}): {e}{hint}"),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let t =
            split_tls("postgres://u:p@h/db?sslmode=verify-full&connect_timeout=3&sslrootcert=%2Ftmp%2Fca.pem").unwrap();
        assert_eq!(t.url, "postgres://u:p@h/db?connect_timeout=3");
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/tmp/ca.pem")));
        let t = split_tls("postgres://h/db").unwrap();
        assert_eq!((t.url.as_str(), t.mode, t.root_cert), ("postgres://h/db", SslMode::Prefer, None));
        let t = split_tls("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!((t.url.as_str(), t.mode), ("postgres://h/db", SslMode::Disable));
        let t = split_tls("host=h user=u sslmode=verify-ca sslrootcert=/ca.pem dbname=x").unwrap();
        assert_eq!((t.url.as_str(), t.mode), ("host=h user=u dbname=x", SslMode::VerifyCa));
        let Err(err) = split_tls("postgres://u:hunter2@h/db?sslmode=sometimes") else { panic!("accepted") };
        let text = err.to_string();
        assert!(text.contains("sslmode") && text.contains("sometimes") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_permanent_error() {
        let t = split_tls("postgres://h/db?sslmode=verify-full").unwrap();
        let Err(err) = t.connector(Some(Path::new("/nonexistent/ca.pem"))) else { panic!("accepted") };
        assert!(err.to_string().contains("cannot read the CA file /nonexistent/ca.pem"), "{err}");
        assert!(!err.is_retryable());
        let dir = std::env::temp_dir().join(format!("wap-billing-empty-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        let Err(err) = t.connector(Some(&dir)) else { panic!("accepted") };
        assert!(err.to_string().contains("holds no PEM certificate"), "{err}");
        let _ = std::fs::remove_file(&dir);
        assert!(split_tls("postgres://h/db?sslmode=require").unwrap().connector(None).is_ok());
    }
}
