//! HTTPS for the responder (feature `rustls`, ring provider): a PEM certificate chain and private key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The PEM text is malformed.
    #[error("malformed PEM ({what}): {source}")]
    Pem {
        /// Which input (certificate or key).
        what: &'static str,
        /// The parse error.
        source: std::io::Error,
    },
    /// No certificate in the certificate PEM.
    #[error("no CERTIFICATE found in the certificate PEM")]
    NoCertificate,
    /// No private key in the key PEM.
    #[error("no private key (PKCS#8, PKCS#1 or SEC1) found in the key PEM")]
    NoPrivateKey,
    /// rustls refused the certificate or key (e.g. they do not match).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server TLS configuration for [`ServerConfig::tls`](crate::ServerConfig::tls).
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// From PEM text: the certificate chain (leaf first) and the private key.
    pub fn from_pem(cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_chain_pem[..])
            .collect::<Result<_, _>>()
            .map_err(|source| TlsError::Pem { what: "certificate", source })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &private_key_pem[..])
            .map_err(|source| TlsError::Pem { what: "private key", source })?
            .ok_or(TlsError::NoPrivateKey)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig::from_rustls(Arc::new(config)))
    }

    /// From PEM files (`cert_path`: chain, leaf first; `key_path`: private key).
    pub fn from_pem_files(cert_path: impl AsRef<Path>, key_path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.to_owned(), source });
        TlsConfig::from_pem(&read(cert_path.as_ref())?, &read(key_path.as_ref())?)
    }

    /// From a ready rustls configuration.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        TlsConfig { acceptor: TlsAcceptor::from(config) }
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}
