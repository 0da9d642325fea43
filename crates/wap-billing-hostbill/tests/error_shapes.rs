//! One test per error shape HostBill (or what stands in front of it) produces — over wiremock for the raw shapes,
//! over the double for its allow-lists and faults: each is classified, only the transient ones are retryable, and
//! the API key never shows in an error.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{client, client_with_timeout, prepared, API_ID, API_KEY};
use wap_billing_hostbill::double::{ErrorTexts, Fault, FaultKind, HostBillDouble, PageBase, Profile};
use wap_billing_hostbill::{
    check_version, Error, ErrorKind, HostBillClient, NewClient, NewUsage, TransportFailure, VersionCheck, VersionError,
};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn mock(status: u16, body: &str, content_type: &str) -> (MockServer, HostBillClient) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/admin/api.php"))
        .and(body_string_contains("call=getClientAccounts"))
        .and(body_string_contains(format!("api_key={API_KEY}")))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body.to_owned(), content_type))
        .mount(&server)
        .await;
    let c = HostBillClient::builder()
        .url(server.uri())
        .credentials(API_ID, API_KEY)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    (server, c)
}

fn no_key(e: &Error) {
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(API_KEY), "the key leaked: {shown}");
}

async fn wired(status: u16, body: &str, content_type: &str) -> Error {
    let (_server, c) = mock(status, body, content_type).await;
    let e = c.get_client_accounts(1).await.unwrap_err();
    no_key(&e);
    e
}

const JSON: &str = "application/json";

#[tokio::test]
async fn documented_wrong_parameter_is_validation_and_permanent() {
    let e = wired(
        200,
        r#"{"success":false,"call":"getClientAccounts","server_time":1679594592,"error":["Wrong parameter"]}"#,
        JSON,
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::Validation, "{e}");
    assert_eq!(e.api_messages(), ["Wrong parameter"]);
    assert!(!e.is_retryable() && e.certainly_not_applied());
}

#[tokio::test]
async fn an_error_hash_instead_of_a_list_is_read() {
    let e = wired(200, r#"{"success":false,"error":{"0":"Invalid API ID or API Key"}}"#, JSON).await;
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn auth_ip_and_permission_refusals_with_200_or_403() {
    for status in [200, 403] {
        let cases = [
            ("Invalid API ID or API Key", ErrorKind::Auth),
            ("IP address 10.1.2.3 is not allowed to use the API", ErrorKind::IpRefused),
            ("API function getClientAccounts is not allowed for this API ID", ErrorKind::Permission),
            ("Unknown call: getClientAccounts", ErrorKind::UnknownCall),
            ("Client not found", ErrorKind::NotFound),
        ];
        for (text, kind) in cases {
            let body = serde_json::json!({"success": false, "call": "getClientAccounts", "error": [text]}).to_string();
            let e = wired(status, &body, JSON).await;
            assert_eq!(e.kind(), kind, "{status} {text}: {e}");
            assert!(!e.is_retryable());
            assert!(matches!(e, Error::Api { status: s, .. } if s == status));
        }
    }
}

#[tokio::test]
async fn html_pages_and_5xx_are_transient() {
    let e = wired(500, "<html><body>Fatal error</body></html>", "text/html").await;
    assert_eq!((e.kind(), e.transport_failure()), (ErrorKind::Transient, Some(TransportFailure::ServerError)));
    assert!(e.is_retryable() && !e.certainly_not_applied(), "a 5xx may have been applied");
    let e = wired(200, "<html>Maintenance</html>", "text/html").await;
    assert_eq!((e.kind(), e.transport_failure()), (ErrorKind::Transient, Some(TransportFailure::NotJson)));
    assert!(e.to_string().contains("Maintenance"), "the body's first bytes are shown: {e}");
    let e = wired(503, r#"{"success":false,"error":["Service temporarily unavailable"]}"#, JSON).await;
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
}

#[tokio::test]
async fn a_success_of_the_wrong_shape_is_decode_naming_the_path() {
    let e = wired(200, r#"{"success":true,"accounts":[{"id":"x"}],"call":"getClientAccounts"}"#, JSON).await;
    assert_eq!(e.kind(), ErrorKind::Decode, "{e}");
    assert!(e.to_string().contains("$.accounts.0.id"), "{e}");
    let e = wired(200, r#"{"accounts":[]}"#, JSON).await;
    assert!(e.to_string().contains("$.success"), "{e}");
}

#[tokio::test]
async fn no_answer_in_time_is_a_timeout_that_may_have_been_applied() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let c = HostBillClient::builder()
        .url(format!("{}/admin/api.php", server.uri()))
        .credentials(API_ID, API_KEY)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let e = c.get_version().await.unwrap_err();
    assert!(matches!(e.transport_failure(), Some(TransportFailure::Timeout(_))), "{e}");
    assert!(e.is_retryable() && !e.certainly_not_applied());
    no_key(&e);
}

#[tokio::test]
async fn the_doubles_key_function_and_ip_allow_lists() {
    let double = prepared()
        .api_key_limited("reader", "reader-key", Some(["getClients", "getHostBillversion"]), None)
        .api_key_limited(
            "remote",
            "remote-key",
            None::<[&str; 0]>,
            Some(vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))]),
        )
        .start()
        .await
        .unwrap();
    let with = |id: &str, key: &str| HostBillClient::builder().url(double.url()).credentials(id, key).build().unwrap();
    let e = with(API_ID, "wrong").get_version().await.unwrap_err();
    assert_eq!((e.kind(), e.api_messages()), (ErrorKind::Auth, &["Invalid API ID or API Key".to_owned()][..]));
    let reader = with("reader", "reader-key");
    assert!(reader.find_clients_by_email("a@b.c").await.unwrap().is_empty());
    let e = reader.add_client(&NewClient::from_email("a@b.c")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    assert!(double.clients().is_empty(), "refused calls change nothing");
    let e = with("remote", "remote-key").get_version().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::IpRefused, "{e}");
    assert!(e.to_string().contains("127.0.0.1"));
    let e = client(&double).call("noSuchCall", &[]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownCall, "{e}");
    let e = client(&double).get_account_details(999).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Other texts for the undocumented refusals still classify (the texts are switchable in the double).
    let mut texts = ErrorTexts::default();
    texts.auth = "Authentication failed".into();
    texts.status = 403;
    let other = prepared().error_texts(texts).start().await.unwrap();
    let e = HostBillClient::builder()
        .url(other.url())
        .credentials(API_ID, "bad")
        .build()
        .unwrap()
        .get_version()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Api { kind: ErrorKind::Auth, status: 403, .. }), "{e}");
}

#[tokio::test]
async fn faults_after_commit_leave_the_change_and_creates_are_not_idempotent() {
    let double = prepared().start().await.unwrap();
    let c = client_with_timeout(&double, Duration::from_millis(300));
    let client_id = c.add_client(&NewClient::from_email("t@example.com")).await.unwrap();
    double.inject(Fault::on("addOrder", FaultKind::TimeoutAfterCommit));
    let e = c.add_order(client_id, 10, "m").await.unwrap_err();
    assert!(matches!(e.transport_failure(), Some(TransportFailure::Timeout(_))), "{e}");
    assert_eq!(double.accounts().len(), 1, "committed before the answer was lost");
    c.add_order(client_id, 10, "m").await.unwrap();
    assert_eq!(double.accounts().len(), 2, "a repeated addOrder makes a second account");
    let account = double.accounts()[0].id;
    double.inject(Fault::on("addAddonToAccount", FaultKind::DropAfterCommit));
    let e = c.add_addon_to_account(account, 20, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Transient, "{e}");
    c.add_addon_to_account(account, 20, None).await.unwrap();
    assert_eq!(c.get_account_addons(account).await.unwrap().len(), 2, "not idempotent");
    double.inject(Fault::on("meteredAddUsage", FaultKind::ErrorPageAfterCommit));
    let e = c.metered_add_usage(account, &NewUsage::new("cpu", 1.5)).await.unwrap_err();
    assert_eq!(e.transport_failure(), Some(TransportFailure::ServerError));
    c.metered_add_usage(account, &NewUsage::new("cpu", 1.5)).await.unwrap();
    assert_eq!(c.metered_get_usage(account).await.unwrap().len(), 2);
    double.inject(Fault::on("addClient", FaultKind::HtmlErrorPage));
    assert!(c.add_client(&NewClient::from_email("u@example.com")).await.is_err());
    assert_eq!(double.clients().len(), 1, "an error page before commit changes nothing");
    c.add_client(&NewClient::from_email("t@example.com")).await.unwrap();
    assert_eq!(c.find_clients_by_email("T@example.com").await.unwrap().len(), 2, "addClient repeats an email");
}

#[tokio::test]
async fn paging_from_zero_or_one_and_ignored_filters_find_everything_once() {
    for (base, profile) in [(PageBase::Zero, Profile::current()), (PageBase::One, Profile::v4_9_8())] {
        let double = prepared().page_base(base).per_page(3).profile(profile).start().await.unwrap();
        let c = client(&double);
        for i in 0..8 {
            c.add_client(&NewClient::from_email(&format!("c{i}@example.com"))).await.unwrap();
        }
        let found = c.find_clients_by_email("c5@example.com").await.unwrap();
        assert_eq!(found.len(), 1, "{base:?}");
        assert_eq!(found[0].email, "c5@example.com");
        for i in 0..8 {
            let id = c.find_clients_by_email(&format!("c{i}@example.com")).await.unwrap()[0].id;
            c.add_order(id, 10, "m").await.unwrap();
        }
        let accounts = c.get_accounts().await.unwrap();
        assert_eq!(accounts.len(), 8, "{base:?}: every page once");
    }
}

#[tokio::test]
async fn keyed_collections_empty_as_arrays_and_prices_read() {
    let double = HostBillDouble::builder().api_key(API_ID, API_KEY).order_page(2, "Empty").start().await.unwrap();
    let c = client(&double);
    assert!(c.get_products(2).await.unwrap().is_empty(), "`products: []`");
    assert!(c.get_addons().await.unwrap().is_empty());
    let double = prepared().start().await.unwrap();
    let products = client(&double).get_products(1).await.unwrap();
    let gold = products.iter().find(|p| p.id == 10).unwrap();
    assert_eq!(
        (gold.name.as_str(), gold.prices["m"], gold.prices["a"], gold.setup["a"]),
        ("WAP Gold", 25.0, 250.0, 10.0)
    );
}

#[tokio::test]
async fn bulk_usage_is_refused_by_4_9_8_and_usage_is_readable_only_in_its_period() {
    let double = prepared().profile(Profile::v4_9_8()).start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("t@example.com")).await.unwrap();
    c.add_order(id, 10, "m").await.unwrap();
    let account = double.accounts()[0].id;
    let e = c.metered_add_usage_bulk(account, &[NewUsage::new("cpu", 1.0)]).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownCall, "{e}");
    c.metered_add_usage(account, &NewUsage::new("cpu", 2.0).rawoutput("m1")).await.unwrap();
    assert_eq!(c.metered_get_usage(account).await.unwrap()[0].rawoutput, "m1");
    double.close_period();
    assert!(c.metered_get_usage(account).await.unwrap().is_empty(), "an ended period is not shown");
    assert_eq!(double.usage().len(), 1, "but kept");
}

#[tokio::test]
async fn a_version_mismatch_is_refused_unless_allowed() {
    let double = prepared().profile(Profile::v4_9_8()).start().await.unwrap();
    let c = client(&double);
    assert_eq!(check_version(&c, "4.9", false).await.unwrap(), VersionCheck::Matches { reported: "4.9.8".into() });
    let e = check_version(&c, "2025.1", false).await.unwrap_err();
    assert!(matches!(&e, VersionError::Mismatch { reported, .. } if reported == "4.9.8"), "{e}");
    assert!(e.to_string().contains("refusing to start"));
    let allowed = check_version(&c, "2025.1", true).await.unwrap();
    assert!(matches!(allowed, VersionCheck::MismatchAllowed { .. }));
    double.set_version("2025.1.3");
    assert!(check_version(&c, "2025.1", false).await.is_ok());
}
