//! HTTPS (feature `rustls`): the endpoints over TLS with a self-signed certificate, checked by a real client.
#![cfg(feature = "rustls")]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use wap_resource_provider::{EndpointAuth, RpServer, UsageLedger};
use wap_types::{BasicCredentials, RpUsageRecord, StringMap, WapDateTime};

#[tokio::test]
async fn usage_is_served_over_https() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let creds = BasicCredentials::new("collector", "C0llect!");
    let ledger = UsageLedger::in_memory();
    ledger
        .append(RpUsageRecord {
            subscription_id: "s1".into(),
            start_time: WapDateTime::now(),
            end_time: WapDateTime::now(),
            resources: [("StorageGB", "3")].into_iter().collect::<StringMap>(),
            ..Default::default()
        })
        .await
        .unwrap();
    let server = RpServer::builder("secure")
        .usage("/", EndpointAuth::basic(creds.clone()), ledger)
        .tls_pem(cert.cert.pem().as_bytes(), cert.key_pair.serialize_pem().as_bytes())
        .unwrap()
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    assert!(server.base_url().starts_with("https://"));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    let tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/usage?lastID=&batchSize=10")
        .header("host", "localhost")
        .header("authorization", creds.header_value())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let page: Vec<RpUsageRecord> = wap_types::json::page_from_slice(&body).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].event_id, 1);

    // Plain HTTP on the TLS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(b"GET /usage HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Bad PEM is a clear error.
    let err = RpServer::builder("secure").tls_pem(b"not pem", b"not pem").unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    server.shutdown().await;
}
