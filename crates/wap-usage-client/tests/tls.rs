//! HTTPS toward a self-signed server on loopback (rustls + rcgen): extra CA, CA file, pinned fingerprint, the
//! explicit opt-out, and the failures.
#![allow(deprecated)] // also exercises UsageClientBuilder::setting, deprecated for UsageServiceSettings
#![cfg(feature = "rustls")]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wap_usage_client::{Error, RetryPolicy, StartId, UsageClient};

struct TlsServer {
    port: u16,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTPS server with a self-signed certificate for `names`, answering every request with a one-record page.
async fn tls_server(names: &[&str]) -> TlsServer {
    let certified =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert_der = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = br#"[{"EventId": 7, "StartTime": "2015-06-02T08:00:00", "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": {}}]"#;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    TlsServer { port, cert_pem: certified.cert.pem(), cert_der, task }
}

fn builder(url: String) -> wap_usage_client::UsageClientBuilder {
    UsageClient::builder().base_url(url).credentials("usagereader", "Us4ge-Read").retry_policy(RetryPolicy::disabled())
}

async fn fetch(client: UsageClient) -> Result<i64, Error> {
    let page = client.usage().page(StartId::BEGINNING, 10).await?;
    Ok(page.items[0].event_id)
}

#[tokio::test]
async fn a_self_signed_certificate_trusted_as_ca() {
    let server = tls_server(&["localhost", "127.0.0.1"]).await;
    for host in ["localhost", "127.0.0.1"] {
        let c = builder(format!("https://{host}:{}/", server.port))
            .use_system_roots(false)
            .add_ca_certificate_pem(&server.cert_pem)
            .build()
            .unwrap();
        assert_eq!(fetch(c).await.unwrap(), 7, "{host}");
    }

    // the same from a CA file (UsageServiceCaFile)
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wap.pem");
    std::fs::write(&file, &server.cert_pem).unwrap();
    let c = builder(format!("https://localhost:{}/", server.port))
        .setting("UsageServiceCaFile", file.to_str().unwrap())
        .build()
        .unwrap();
    assert_eq!(fetch(c).await.unwrap(), 7);
}

#[tokio::test]
async fn an_untrusted_or_misnamed_certificate_is_a_tls_error() {
    let server = tls_server(&["wapadmin01.corp.test"]).await;
    // system roots only: self-signed is unknown
    let c = builder(format!("https://127.0.0.1:{}/", server.port)).build();
    if let Ok(c) = c {
        let err = fetch(c).await.unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        assert!(!err.is_retryable() && err.is_wap_side());
    } // (a machine without any system root certificate refuses to build: also correct)

    // trusted, but issued to another name
    let c = builder(format!("https://127.0.0.1:{}/", server.port))
        .use_system_roots(false)
        .add_ca_certificate_pem(&server.cert_pem)
        .build()
        .unwrap();
    let err = fetch(c).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_pinned_fingerprint_trusts_exactly_that_certificate() {
    let server = tls_server(&["wapadmin01.corp.test"]).await;
    let pin: [u8; 32] = sha2::Sha256::digest(server.cert_der.as_ref()).into();
    // the name does not match, the pin decides
    let c = builder(format!("https://127.0.0.1:{}/", server.port)).pinned_certificate_sha256(pin).build().unwrap();
    assert_eq!(fetch(c).await.unwrap(), 7);

    let hex: String = pin.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    let c = builder(format!("https://127.0.0.1:{}/", server.port))
        .setting("UsageServicePinnedCertSha256", &hex)
        .build()
        .unwrap();
    assert_eq!(fetch(c).await.unwrap(), 7);

    let mut wrong = pin;
    wrong[0] ^= 0xff;
    let c = builder(format!("https://127.0.0.1:{}/", server.port)).pinned_certificate_sha256(wrong).build().unwrap();
    let err = fetch(c).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("matches no pinned fingerprint"), "{err}");
    let pin_hex: String = pin.iter().map(|b| format!("{b:02x}")).collect();
    assert!(err.to_string().contains(&pin_hex), "the presented fingerprint is named: {err}");

    assert!(matches!(
        builder("https://x/".into()).pinned_certificate_sha256_hex("12:34").build(),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn disabling_verification_is_an_explicit_opt_in() {
    let server = tls_server(&["wapadmin01.corp.test"]).await;
    let c = builder(format!("https://127.0.0.1:{}/", server.port))
        .use_system_roots(false)
        .danger_disable_certificate_verification()
        .build()
        .unwrap();
    assert_eq!(fetch(c).await.unwrap(), 7);
    let c = builder(format!("https://127.0.0.1:{}/", server.port))
        .use_system_roots(false)
        .setting("DisableSslVerification", "true")
        .build()
        .unwrap();
    assert_eq!(fetch(c).await.unwrap(), 7);
}
