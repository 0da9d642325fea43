//! HTTPS (feature `rustls`): an approval over TLS with a self-signed certificate, and bad PEM input.
#![cfg(feature = "rustls")]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wap_responder::{Responder, ServerConfig, TlsConfig, TlsError};

use common::*;

#[tokio::test]
async fn approvals_are_answered_over_https() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let tls = TlsConfig::from_pem(cert_pem.as_bytes(), cert.key_pair.serialize_pem().as_bytes()).unwrap();
    let approver = Arc::new(CatalogApprover::new(["Silverq7k2d9w"], [], []));
    let server = start_with(Responder::new(approver.clone(), basic_config()), ServerConfig::default().tls(tls)).await;
    assert!(server.url().starts_with("https://127.0.0.1:"));
    assert_eq!(server.endpoint_url("/wap"), format!("{}wap/", server.url()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio::time::timeout(STEP, connector.connect(name, tcp)).await.unwrap().unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/wap/subscriptions")
        .header("Host", "localhost")
        .header("Authorization", auth_header())
        .body(Full::new(Bytes::from(fixture("create-subscription.json"))))
        .unwrap();
    let response = tokio::time::timeout(STEP, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), 204);
    let _ = response.into_body().collect().await;
    assert_eq!(approver.calls(), 1);

    // A plain-HTTP client on the TLS port gets no answer and the connection is closed.
    let text = raw_exchange(server.local_addr(), b"GET /planPrice?id=x HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!text.contains("HTTP/1.1 200"), "{text:?}");
    server.shutdown().await;
}

#[test]
fn bad_pem_is_refused_with_a_clear_error() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = cert.key_pair.serialize_pem();
    assert!(matches!(TlsConfig::from_pem(b"", key.as_bytes()), Err(TlsError::NoCertificate)));
    assert!(matches!(TlsConfig::from_pem(cert.cert.pem().as_bytes(), b"nothing"), Err(TlsError::NoPrivateKey)));
    let mismatch = TlsConfig::from_pem(cert.cert.pem().as_bytes(), other.key_pair.serialize_pem().as_bytes());
    assert!(matches!(mismatch, Err(TlsError::Rustls(_))), "{mismatch:?}");
    let missing = TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/cert.pem"), "{missing}");
}
