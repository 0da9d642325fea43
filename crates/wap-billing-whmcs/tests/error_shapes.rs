//! One test per error shape WHMCS (or what stands in front of it) produces, against the double or a raw socket:
//! each is classified, and only the transient ones are retryable.

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{client, prepared, IDENTIFIER, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wap_billing_whmcs::double::{Fault, FaultKind, Profile, WhmcsDouble};
use wap_billing_whmcs::{
    Credentials, Error, ErrorKind, NewBillableItem, NewClient, NewOrder, OrderItem, Secret, TransportFailure,
    WhmcsClient,
};

fn kind<T: std::fmt::Debug>(r: Result<T, Error>) -> (ErrorKind, Error) {
    let e = r.unwrap_err();
    (e.kind(), e)
}

#[tokio::test]
async fn wrong_secret_is_auth_and_permanent() {
    for status in [200, 403] {
        let double = prepared().auth_error_status(status).start().await.unwrap();
        let c = WhmcsClient::builder()
            .url(double.url())
            .credentials(Credentials::api_credential(IDENTIFIER, "wrong"))
            .build()
            .unwrap();
        let (k, e) = kind(c.get_products(None).await);
        assert_eq!(k, ErrorKind::Auth, "{e}");
        assert!(!e.is_retryable());
        assert!(e.certainly_not_applied());
        assert_eq!(e.api_message(), Some("Authentication Failed"));
        assert!(matches!(e, Error::Api { status: s, .. } if s == status));
    }
}

#[tokio::test]
async fn address_outside_the_allow_list_is_ip_refused_unless_the_access_key_is_sent() {
    let double =
        prepared().allowed_ips([IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))]).access_key("k3y!@#").start().await.unwrap();
    let (k, e) = kind(client(&double).get_products(None).await);
    assert_eq!(k, ErrorKind::IpRefused, "{e}");
    assert_eq!(e.api_message(), Some("Invalid IP 127.0.0.1"));
    assert!(!e.is_retryable());

    let with_key = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential(IDENTIFIER, SECRET))
        .access_key("k3y!@#")
        .build()
        .unwrap();
    assert_eq!(with_key.get_products(None).await.unwrap().len(), 2);

    let wrong_key = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential(IDENTIFIER, SECRET))
        .access_key("k3y!@")
        .build()
        .unwrap();
    assert_eq!(kind(wrong_key.get_products(None).await).0, ErrorKind::IpRefused);
}

#[tokio::test]
async fn action_outside_the_api_role_is_permission() {
    let double = WhmcsDouble::builder()
        .api_credential_with_role("limited", "s", ["GetClients", "AddClient"])
        .auth_error_status(403)
        .start()
        .await
        .unwrap();
    let c = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential("limited", "s"))
        .build()
        .unwrap();
    let id = c.add_client(&NewClient::from_email("a@example.com")).await.unwrap();
    let (k, e) = kind(c.add_billable_item(&NewBillableItem::new(id, "x", "1.00")).await);
    assert_eq!(k, ErrorKind::Permission, "{e}");
    assert_eq!(e.api_message(), Some(r#"Invalid Permissions: API action "addbillableitem" is not allowed"#));
    assert!(!e.is_retryable());
    assert!(double.billable_items().is_empty());
}

#[tokio::test]
async fn action_the_version_lacks_is_unknown_action() {
    let double = prepared().profile(Profile::v7()).start().await.unwrap();
    let (k, e) = kind(client(&double).whmcs_details().await);
    assert_eq!(k, ErrorKind::UnknownAction, "{e}");
    assert_eq!(e.api_message(), Some("Command Not Found"));
}

#[tokio::test]
async fn missing_objects_are_not_found() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    for r in [
        c.accept_order(999, false).await,
        c.module_suspend(999, None).await,
        c.set_addon_status(999, "Active").await,
        c.add_order(&NewOrder::new(999, "mailin").item(OrderItem::product(1))).await.map(drop),
        c.add_billable_item(&NewBillableItem::new(999, "x", "1")).await.map(drop),
    ] {
        let (k, e) = kind(r);
        assert_eq!(k, ErrorKind::NotFound, "{e}");
        assert!(!e.is_retryable());
    }
}

#[tokio::test]
async fn refused_parameters_are_validation() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let mut no_email = NewClient::from_email("");
    no_email.firstname = "A".into();
    let (k, e) = kind(c.add_client(&no_email).await);
    assert_eq!((k, e.api_message()), (ErrorKind::Validation, Some("You did not enter your email address")));
    let id = c.add_client(&NewClient::from_email("v@example.com")).await.unwrap();
    let (k, e) = kind(c.add_order(&NewOrder::new(id, "bitcoin").item(OrderItem::product(1))).await);
    assert_eq!(k, ErrorKind::Validation, "{e}");
    assert!(e.api_message().unwrap().starts_with("Invalid Payment Method"));
    let (k, _) = kind(c.add_order(&NewOrder::new(id, "mailin")).await);
    assert_eq!(k, ErrorKind::Validation);
    assert!(double.orders().is_empty(), "a refused order creates nothing");
}

#[tokio::test]
async fn a_known_email_is_duplicate() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    c.add_client(&NewClient::from_email("dup@example.com")).await.unwrap();
    let (k, e) = kind(c.add_client(&NewClient::from_email("DUP@example.com")).await);
    assert_eq!(k, ErrorKind::Duplicate, "{e}");
    assert!(!e.is_retryable());
    assert_eq!(double.clients().len(), 1);
}

#[tokio::test]
async fn a_5xx_without_envelope_is_transient() {
    let double = prepared().start().await.unwrap();
    double.inject(Fault::on("GetProducts", FaultKind::Status(503)));
    let (k, e) = kind(client(&double).get_products(None).await);
    assert_eq!(k, ErrorKind::Transient, "{e}");
    assert!(matches!(e, Error::Transport { failure: TransportFailure::ServerError, status: Some(503), .. }));
    assert!(e.is_retryable());
    assert!(!e.certainly_not_applied());
    // The fault was used up: the retry succeeds.
    assert_eq!(client(&double).get_products(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_html_error_page_is_transient_with_a_snippet() {
    let double = prepared().start().await.unwrap();
    double.inject(Fault::any(FaultKind::HtmlErrorPage));
    let (k, e) = kind(client(&double).get_products(None).await);
    assert_eq!(k, ErrorKind::Transient);
    assert!(e.to_string().contains("<!DOCTYPE html>"), "{e}");

    double.inject(Fault::any(FaultKind::HtmlOkPage));
    let (k, e) = kind(client(&double).get_products(None).await);
    assert_eq!(k, ErrorKind::Transient);
    assert!(matches!(e, Error::Transport { failure: TransportFailure::NotJson, status: Some(200), .. }), "{e}");
}

#[tokio::test]
async fn a_timeout_after_the_change_was_committed_is_transient_and_maybe_applied() {
    let double = prepared().start().await.unwrap();
    let c = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential(IDENTIFIER, SECRET))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let id = c.add_client(&NewClient::from_email("t@example.com")).await.unwrap();
    double.inject(Fault::on("addbillableitem", FaultKind::TimeoutAfterCommit));
    let item = NewBillableItem::new(id, "usage 1-10", "3.00");
    let (k, e) = kind(c.add_billable_item(&item).await);
    assert_eq!(k, ErrorKind::Transient);
    assert!(matches!(e, Error::Transport { failure: TransportFailure::Timeout(_), .. }), "{e}");
    assert!(!e.certainly_not_applied());
    assert_eq!(double.billable_items().len(), 1, "the change was committed");
    // A blind retry of a non-idempotent create duplicates: that is what the journal exists for.
    c.add_billable_item(&item).await.unwrap();
    assert_eq!(double.billable_items().len(), 2);
}

#[tokio::test]
async fn a_dropped_connection_after_commit_is_transient() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("d@example.com")).await.unwrap();
    double.inject(Fault::on("AddOrder", FaultKind::DropAfterCommit));
    let (k, e) = kind(c.add_order(&NewOrder::new(id, "mailin").item(OrderItem::product(1))).await);
    assert_eq!(k, ErrorKind::Transient, "{e}");
    assert!(matches!(e, Error::Transport { failure: TransportFailure::Interrupted, .. }), "{e}");
    assert_eq!(double.services().len(), 1, "the order was committed");

    double.inject(Fault::on("AddOrder", FaultKind::ErrorPageAfterCommit));
    let (k, _) = kind(c.add_order(&NewOrder::new(id, "mailin").item(OrderItem::product(1))).await);
    assert_eq!(k, ErrorKind::Transient);
    assert_eq!(double.services().len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_not_applied() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let c = WhmcsClient::builder().url(url).credentials(Credentials::api_credential("i", "s")).build().unwrap();
    let (k, e) = kind(c.get_products(None).await);
    assert_eq!(k, ErrorKind::Transient);
    assert!(matches!(e, Error::Transport { failure: TransportFailure::Connect, .. }), "{e}");
    assert!(e.certainly_not_applied());
}

/// Serves one canned HTTP answer per connection on a raw socket.
async fn raw_server(answers: Vec<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        for answer in answers {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let _ = s.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                answer.len(),
                answer
            );
            let _ = s.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn a_success_without_the_expected_field_is_decode_with_its_path() {
    let url = raw_server(vec![
        r#"{"result":"success"}"#,
        r#"{"result":"success","clientid":"x1"}"#,
        r#"["not","an","object"]"#,
        r#"{"no":"result"}"#,
    ])
    .await;
    let c = WhmcsClient::builder().url(url).credentials(Credentials::api_credential("i", "s")).build().unwrap();
    let new = NewClient::from_email("x@example.com");
    for expected in ["$.clientid: missing", "$.clientid: expected an id", "$: not a JSON object", "$.result"] {
        let (k, e) = kind(c.add_client(&new).await);
        assert_eq!(k, ErrorKind::Decode, "{e}");
        assert!(e.to_string().contains(expected), "{e} lacks {expected}");
        assert!(!e.certainly_not_applied());
    }
}

#[tokio::test]
async fn an_error_reported_in_status_instead_of_result_is_read() {
    // WHMCS's GetEmails was reported to answer {"status":"error",...}.
    let url = raw_server(vec![r#"{"status":"error","message":"Client ID Not Found"}"#]).await;
    let c = WhmcsClient::builder().url(url).credentials(Credentials::api_credential("i", "s")).build().unwrap();
    let (k, _) = kind(c.call("GetEmails", &[("clientid", "5")]).await);
    assert_eq!(k, ErrorKind::NotFound);
}

const SENTINELS: [&str; 3] = ["S3NT1NEL-api-secret", "S3NT1NEL-admin-password", "S3NT1NEL-access-key"];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::Write::write(&mut *self.0.lock().unwrap(), buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_never_show_in_debug_display_errors_or_logs() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let md5_of_password = {
        // The hash is as good as the password to WHMCS: it must not show either.
        let c = Credentials::admin_login("admin", &Secret::new(SENTINELS[1]));
        let Credentials::AdminLogin { password_md5, .. } = &c else { unreachable!() };
        password_md5.expose().to_owned()
    };
    let double = prepared()
        .admin_login("admin", SENTINELS[1])
        .api_credential("ident", SENTINELS[0])
        .access_key(SENTINELS[2])
        .start()
        .await
        .unwrap();
    let mut renderings = Vec::new();
    let api = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential("ident", SENTINELS[0]))
        .access_key(SENTINELS[2])
        .timeout(Duration::from_millis(300));
    renderings.push(format!("{api:?}"));
    let api = api.build().unwrap();
    let admin = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::admin_login("admin", &Secret::new(SENTINELS[1])))
        .access_key(SENTINELS[2])
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    renderings.push(format!("{api:?} {admin:?}"));
    renderings.push(format!("{:?}", Credentials::admin_login("admin", &Secret::new(SENTINELS[1]))));
    renderings.push(format!("{:?}", Credentials::api_credential("ident", SENTINELS[0])));

    // Every error shape, through both credential modes.
    for c in [&api, &admin] {
        let id = c.add_client(&NewClient::from_email(format!("{}@example.com", renderings.len()))).await.unwrap();
        let mut errors = vec![
            c.accept_order(12345, false).await.unwrap_err(),
            c.add_client(&NewClient::from_email("")).await.unwrap_err(),
            c.call("NoSuchAction", &[]).await.unwrap_err(),
        ];
        double.inject(Fault::any(FaultKind::Status(502)));
        errors.push(c.get_products(None).await.unwrap_err());
        double.inject(Fault::any(FaultKind::HtmlErrorPage));
        errors.push(c.get_products(None).await.unwrap_err());
        double.inject(Fault::any(FaultKind::TimeoutAfterCommit));
        errors.push(c.add_billable_item(&NewBillableItem::new(id, "u", "1")).await.unwrap_err());
        double.inject(Fault::any(FaultKind::DropAfterCommit));
        errors.push(c.get_products(None).await.unwrap_err());
        for e in errors {
            renderings.push(format!("{e} {e:?}"));
        }
    }
    let wrong = WhmcsClient::builder()
        .url(double.url())
        .credentials(Credentials::api_credential("ident", format!("{}-wrong", SENTINELS[0])))
        .build()
        .unwrap();
    let e = wrong.get_products(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    renderings.push(format!("{e} {e:?} {wrong:?}"));
    let bad_url = WhmcsClient::builder()
        .url(format!("http://u:{}@h/", SENTINELS[0]))
        .credentials(Credentials::api_credential("i", SENTINELS[0]))
        .build();
    renderings.push(format!("{:?}", bad_url.unwrap_err()));
    renderings.push(format!("{double:?}"));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("WHMCS call"), "the calls are logged (at debug): {logs}");
    let all = renderings.join("\n") + &logs;
    for secret in SENTINELS.iter().copied().chain([md5_of_password.as_str()]) {
        assert!(!all.contains(secret), "{secret} leaked in:\n{all}");
    }
    let _ = std::io::stderr().flush();
}
