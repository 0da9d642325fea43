//! TLS toward the Usage Service (feature `rustls`): system roots, extra CA certificates, a pinned server
//! certificate, or — by explicit opt-in only — no verification.
//!
//! WAP ships self-signed certificates (docs/protocol/usage-service.md §1), so the usual ways to trust port 30022 are
//!
//! * the self-signed certificate (or the CA that issued it) as an extra trust anchor (`UsageServiceCaFile`), which
//!   keeps host-name and validity checks;
//! * the SHA-256 fingerprint of the server certificate's DER (`UsageServicePinnedCertSha256`): the certificate is
//!   trusted if and only if its fingerprint is one of the pins; chain, name and validity are not checked (the pin is
//!   the trust decision), but the handshake signature still proves the server holds the certificate's key;
//! * `DisableSslVerification = true` ([`danger_disable_certificate_verification`]): any certificate is accepted.
//!   Use only on a trusted network.
//!
//! [`danger_disable_certificate_verification`]: crate::UsageClientBuilder::danger_disable_certificate_verification

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// How the server certificate is trusted.
#[derive(Clone, Default)]
pub(crate) struct TlsOptions {
    pub(crate) use_system_roots: bool,
    pub(crate) extra_ca_pem: Vec<Vec<u8>>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) pins: Vec<[u8; 32]>,
    pub(crate) disable_verification: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("use_system_roots", &self.use_system_roots)
            .field("extra_ca_certificates", &self.extra_ca_pem.len())
            .field("ca_files", &self.ca_files)
            .field("pins", &self.pins.iter().map(|p| hex(p)).collect::<Vec<_>>())
            .field("disable_verification", &self.disable_verification)
            .finish()
    }
}

impl TlsOptions {
    pub(crate) fn new() -> Self {
        TlsOptions { use_system_roots: true, ..Default::default() }
    }

    /// Builds the rustls configuration (ring provider, TLS 1.2 and 1.3).
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS protocol versions: {e}")))?;
        let algorithms = provider.signature_verification_algorithms;
        let config = if self.disable_verification {
            tracing::warn!(
                "TLS certificate verification toward the Usage Service is DISABLED (DisableSslVerification)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier { pins: None, algorithms }))
                .with_no_client_auth()
        } else if !self.pins.is_empty() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FingerprintVerifier {
                    pins: Some(self.pins.clone()),
                    algorithms,
                }))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(self.root_store()?).with_no_client_auth()
        };
        // ALPN (`http/1.1`) is set by the connector.
        Ok(config)
    }

    /// A configuration that trusts nothing, for a plain `http://` endpoint (the connector needs one).
    pub(crate) fn unused_config() -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS protocol versions: {e}")))?
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth())
    }

    fn root_store(&self) -> Result<RootCertStore, Error> {
        let mut roots = RootCertStore::empty();
        if self.use_system_roots {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!(error = %e, "could not load a system root certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "system root certificates loaded");
        }
        let mut pems: Vec<(String, Vec<u8>)> = self
            .extra_ca_pem
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("CA certificate #{}", i + 1), p.clone()))
            .collect();
        for path in &self.ca_files {
            let bytes = std::fs::read(path)
                .map_err(|e| Error::Config(format!("cannot read UsageServiceCaFile {}: {e}", path.display())))?;
            pems.push((path.display().to_string(), bytes));
        }
        for (name, pem) in pems {
            let certs = parse_pem_certificates(&pem).map_err(|e| Error::Config(format!("{name}: {e}")))?;
            for cert in certs {
                roots.add(cert).map_err(|e| Error::Config(format!("{name}: not a usable CA certificate: {e}")))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Config(
                "no trusted certificate: the system has no root certificates and no CA file, pin or \
                 DisableSslVerification was given"
                    .into(),
            ));
        }
        Ok(roots)
    }
}

/// Parses every `CERTIFICATE` block of a PEM text; at least one is required.
pub(crate) fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut reader = pem;
    let certs =
        rustls_pemfile::certs(&mut reader).collect::<Result<Vec<_>, _>>().map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(certs)
}

/// Parses a SHA-256 fingerprint written as 64 hex digits, optionally separated by `:`, spaces or `-` (any case).
pub(crate) fn parse_sha256_hex(text: &str) -> Result<[u8; 32], Error> {
    let digits: Vec<u8> = text.bytes().filter(|b| !matches!(b, b':' | b' ' | b'-' | b'\t')).collect();
    let bad = || Error::Config(format!("UsageServicePinnedCertSha256 must be 64 hex digits, got {:?}", text));
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 fingerprint of a certificate's DER.
pub(crate) fn certificate_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// Checks the server certificate by its SHA-256 fingerprint only: trusts exactly the pinned certificates, or any
/// certificate when `pins` is `None` (the explicit `DisableSslVerification` opt-in). Handshake signatures are
/// verified either way.
#[derive(Debug)]
struct FingerprintVerifier {
    pins: Option<Vec<[u8; 32]>>,
    algorithms: WebPkiSupportedAlgorithms,
}

#[derive(Debug)]
struct PinMismatch {
    presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server certificate SHA-256 {} matches no pinned fingerprint (UsageServicePinnedCertSha256)",
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for FingerprintVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pins) = &self.pins else {
            return Ok(ServerCertVerified::assertion());
        };
        let presented = certificate_sha256(end_entity.as_ref());
        let matched = pins.iter().fold(subtle::Choice::from(0u8), |acc, pin| acc | pin.ct_eq(&presented));
        if bool::from(matched) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PinMismatch {
                presented: hex(&presented),
            })))))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_forms() {
        let pin = [0xabu8; 32];
        let plain = hex(&pin);
        assert_eq!(parse_sha256_hex(&plain).unwrap(), pin);
        assert_eq!(parse_sha256_hex(&plain.to_uppercase()).unwrap(), pin);
        let colons = pin.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
        assert_eq!(parse_sha256_hex(&colons).unwrap(), pin);
        assert!(parse_sha256_hex("abcd").is_err());
        assert!(parse_sha256_hex(&"zz".repeat(32)).is_err());
        assert!(parse_sha256_hex(&"é".repeat(32)).is_err());
    }

    #[test]
    fn pem_parsing_reports_what_is_wrong() {
        assert!(parse_pem_certificates(b"not a pem").unwrap_err().contains("no PEM CERTIFICATE"));
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let certs = parse_pem_certificates(cert.cert.pem().as_bytes()).unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].as_ref(), cert.cert.der().as_ref());
    }

    #[test]
    fn empty_trust_store_is_a_configuration_error() {
        let opts = TlsOptions { use_system_roots: false, ..TlsOptions::new() };
        assert!(matches!(opts.client_config(), Err(Error::Config(m)) if m.contains("no trusted certificate")));
        let opts = TlsOptions { use_system_roots: false, extra_ca_pem: vec![b"junk".to_vec()], ..TlsOptions::new() };
        assert!(matches!(opts.client_config(), Err(Error::Config(m)) if m.contains("CA certificate #1")));
        let opts =
            TlsOptions { use_system_roots: false, ca_files: vec!["/nonexistent/ca.pem".into()], ..TlsOptions::new() };
        assert!(matches!(opts.client_config(), Err(Error::Config(m)) if m.contains("/nonexistent/ca.pem")));
        let opts = TlsOptions { use_system_roots: false, pins: vec![[1; 32]], ..TlsOptions::new() };
        assert!(opts.client_config().is_ok());
    }
}
