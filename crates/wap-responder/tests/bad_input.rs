//! Every bad-input case with a raw client: wrong or missing credentials, oversized bodies, malformed JSON, wrong
//! method, unknown path, disabled responders, slow clients (headers and body), and `Expect: 100-continue`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wap_responder::{PriceTable, Responder, ResponderConfig, ServerConfig};

use common::*;

fn approver() -> Arc<CatalogApprover> {
    Arc::new(CatalogApprover::new(["Silverq7k2d9w"], ["ExtraDbm4t9r2"], ["90f94f4c-4679-406a-b6f4-4814d281b3fc"]))
}

#[tokio::test]
async fn missing_wrong_or_foreign_credentials_get_401_with_a_challenge() {
    let approver = approver();
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let body = fixture("create-subscription.json");
    let wrong_user = wap_responder::BasicCredentials::new("someone", PASSWORD).header_value();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong password", Some(wap_responder::BasicCredentials::new(USER, "s3cure!pass").header_value())),
        ("wrong user", Some(wrong_user)),
        ("not Basic", Some("Bearer abc".to_owned())),
        ("not base64", Some("Basic !!!".to_owned())),
        ("no colon", Some("Basic d2FwY2FsbGVy".to_owned())),
    ];
    for (name, header) in cases {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(h) = &header {
            headers.push(("Authorization", h));
        }
        let a = send(server.local_addr(), "POST", "/wap/subscriptions", &headers, &body).await;
        assert_eq!(a.status, 401, "{name}");
        assert_eq!(a.header("www-authenticate"), Some("Basic realm=\"wap-billing\""), "{name}");
        assert!(!a.text().contains(PASSWORD), "{name}: no credential in the answer");
    }
    // Pricing is protected by the same credentials.
    let a = send(server.local_addr(), "GET", "/planPrice?id=x", &[], b"").await;
    assert_eq!(a.status, 404, "pricing is off on this responder");
    assert_eq!(approver.calls(), 0);

    // The user name is compared ignoring case; the scheme name too.
    let upper = wap_responder::BasicCredentials::new("WAPCALLER", PASSWORD).header_value().replace("Basic", "BASIC");
    let a = send(server.local_addr(), "POST", "/wap/subscriptions", &[("Authorization", &upper)], &body).await;
    assert_eq!(a.status, 204, "{}", a.text());
    server.shutdown().await;
}

#[tokio::test]
async fn mode_none_ignores_the_header_and_pricing_uses_the_same_credentials() {
    let server = start(Responder::new(approver(), ResponderConfig::without_authentication())).await;
    let a = send(
        server.local_addr(),
        "POST",
        "/subscriptions",
        &[("Authorization", "Basic Zm9vOmJhcg==")],
        &fixture("create-subscription.json"),
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text());
    let a = send(server.local_addr(), "POST", "/subscriptions", &[], &fixture("delete-subscription.json")).await;
    assert_eq!(a.status, 204, "{}", a.text());
    server.shutdown().await;

    let priced = Responder::with_pricing(approver(), PriceTable::new().plan("p", "1 EUR"), basic_config());
    let server = start(priced).await;
    let a = send(server.local_addr(), "GET", "/planPrice?id=p", &[], b"").await;
    assert_eq!(a.status, 401);
    let a = send(server.local_addr(), "GET", "/planPrice?id=p", &[("Authorization", &auth_header())], b"").await;
    assert_eq!((a.status, a.text().as_str()), (200, "\"1 EUR\""));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_whether_declared_or_streamed() {
    let approver = approver();
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let addr = server.local_addr();
    let auth = auth_header();

    // Declared too large: refused from the header, before the body is read.
    let big = vec![b' '; 1024 * 1024 + 1];
    let a = send(addr, "POST", "/wap/subscriptions", &[("Authorization", &auth)], &big).await;
    assert_eq!(a.status, 413, "{}", a.text());
    assert!(a.text().contains("1048576"), "the limit is named: {}", a.text());

    // Exactly the limit is read (and is then not valid JSON: whitespace only).
    let at_limit = vec![b' '; 1024 * 1024];
    let a = send(addr, "POST", "/wap/subscriptions", &[("Authorization", &auth)], &at_limit).await;
    assert_eq!(a.status, 400, "{}", a.text());

    // Chunked with no length: counted while streaming.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /wap/subscriptions HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut answer = String::new();
    for _ in 0..20 {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if stream.write_all(&frame).await.is_err() {
            break; // the server answered and closed
        }
    }
    answer.push_str(&read_to_close(&mut stream).await);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(approver.calls(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let approver = approver();
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("truncated", br#"{"EventId": 7702, "State": 2,"#, "EOF"),
        ("not JSON", b"<xml/>", "invalid JSON"),
        ("array", b"[]", "invalid JSON"),
        ("empty", b"", "empty"),
        ("EventId of the wrong type", br#"{"EventId": "seven", "State": 2, "Method": "POST", "Entity": {"SubscriptionID": "s"}}"#, "EventId"),
        ("Entity missing", br#"{"EventId": 1, "State": 2, "Method": "POST"}"#, "Entity"),
        ("Entity null", br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": null}"#, "Entity"),
        (
            "bad member inside the entity",
            br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": {"SubscriptionID": "s", "PlanId": 42}}"#,
            "Entity.PlanId",
        ),
        (
            "bad date",
            br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": {"SubscriptionID": "s"}, "NotificationEventTimeCreated": "yesterday"}"#,
            "NotificationEventTimeCreated",
        ),
        ("trailing garbage", br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": {"SubscriptionID": "s"}} x"#, "invalid JSON"),
    ];
    for (name, body, needle) in cases {
        let a = approve(server.local_addr(), "/wap/subscriptions", body).await;
        assert_eq!(a.status, 400, "{name}: {}", a.text());
        assert!(a.text().contains(needle), "{name}: {:?} should name {needle:?}", a.text());
        assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"), "{name}");
    }
    // A BOM is tolerated.
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend(fixture("create-subscription.json"));
    assert_eq!(approve(server.local_addr(), "/wap/subscriptions", &with_bom).await.status, 204);
    assert_eq!(approver.calls(), 1, "only the valid request reached the approver");
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_methods_get_405_and_unknown_paths_404() {
    let responder = Responder::with_pricing(approver(), PriceTable::new(), basic_config());
    let server = start(responder).await;
    let addr = server.local_addr();
    let auth = auth_header();
    let h = [("Authorization", auth.as_str())];
    for (method, path, allow) in [
        ("GET", "/wap/subscriptions", "POST, PUT"),
        ("DELETE", "/wap/subscriptionAddons", "POST, PUT"),
        ("PATCH", "/subscriptions/", "POST, PUT"),
        ("POST", "/wap/planPrice", "GET"),
        ("PUT", "/addonPrice", "GET"),
        ("HEAD", "/addonPrice", "GET"),
    ] {
        let a = send(addr, method, path, &h, b"{}").await;
        assert_eq!(a.status, 405, "{method} {path}");
        assert_eq!(a.header("allow"), Some(allow), "{method} {path}");
    }
    for path in ["/", "/wap/", "/wap/subscription", "/wap/subscriptions/extra", "/usage", "/wap/planPrices"] {
        let a = send(addr, "POST", path, &h, b"{}").await;
        assert_eq!(a.status, 404, "{path}");
        assert!(!a.body.is_empty(), "{path}: says why");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn disabled_responders_and_foreign_prefixes_get_404() {
    let mut config = basic_config().strict_base_path().base_path("/wap/");
    config.approval_enabled = false;
    config.pricing_enabled = true;
    let server = start(Responder::with_pricing(approver(), PriceTable::new().plan("p", "x"), config)).await;
    let addr = server.local_addr();
    let auth = auth_header();
    let a = approve(addr, "/wap/subscriptions", &fixture("create-subscription.json")).await;
    assert_eq!(a.status, 404);
    let h = [("Authorization", auth.as_str())];
    assert_eq!(send(addr, "GET", "/wap/planPrice?id=p", &h, b"").await.status, 200);
    assert_eq!(send(addr, "GET", "/planPrice?id=p", &h, b"").await.status, 200, "the root is served");
    assert_eq!(send(addr, "GET", "/other/planPrice?id=p", &h, b"").await.status, 404, "strict prefix");
    server.shutdown().await;

    let mut config = basic_config();
    config.pricing_enabled = false;
    let server = start(Responder::with_pricing(approver(), PriceTable::new().plan("p", "x"), config)).await;
    assert_eq!(send(server.local_addr(), "GET", "/planPrice?id=p", &h, b"").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_gets_a_continue_then_the_decision() {
    let approver = approver();
    let server = start(Responder::new(approver.clone(), basic_config())).await;
    let body = fixture("create-subscription.json");
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /wap/subscriptions HTTP/1.1\r\nHost: billing\r\nContent-Type: application/json; charset=utf-8\r\n\
         Authorization: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        auth_header(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Like WAP's .NET client: wait for the interim answer before sending the body.
    let interim = read_until(&mut stream, "\r\n\r\n").await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue\r\n"), "{interim:?}");
    stream.write_all(&body).await.unwrap();
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer:?}");
    assert_eq!(approver.calls(), 1);

    // Bad credentials: the final 401 comes without a 100, and the body is never needed.
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /wap/subscriptions HTTP/1.1\r\nHost: billing\r\nAuthorization: Basic d2FwY2FsbGVyOndyb25n\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");

    // Too large: 413 without a 100.
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /wap/subscriptions HTTP/1.1\r\nHost: billing\r\nAuthorization: {}\r\nContent-Length: 5000000\r\n\
         Expect: 100-continue\r\n\r\n",
        auth_header()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert_eq!(approver.calls(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start_with(
        Responder::new(approver(), basic_config()),
        ServerConfig::default().header_read_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(b"POST /wap/subscriptions HTTP/1.1\r\nHost: billing\r\nContent-Le").await.unwrap();
    // The server closes the connection by itself (read_to_close panics if it does not within the step bound).
    let answer = read_to_close(&mut stream).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    // A connection that sends nothing at all is closed too.
    let mut idle = TcpStream::connect(server.local_addr()).await.unwrap();
    let answer = read_to_close(&mut idle).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408() {
    let approver = approver();
    let config = basic_config().body_read_timeout(Duration::from_millis(300));
    let server = start(Responder::new(approver.clone(), config)).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "POST /wap/subscriptions HTTP/1.1\r\nHost: billing\r\nAuthorization: {}\r\nContent-Length: 500\r\n\r\n{{\"EventId\": 1,",
        auth_header()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until(&mut stream, "\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(approver.calls(), 0);
    server.shutdown().await;
}
