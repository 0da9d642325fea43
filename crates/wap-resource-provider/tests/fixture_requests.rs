//! The spec fixtures as table-driven tests over real HTTP (raw hyper client → real server):
//! `requests.json` (the eight operations, usage and 401), `usage-queries.json` (the `/usage` rules, on both
//! ledger backends) and `uri-translation-cases.json`.

mod common;

use std::net::SocketAddr;

use common::{fixture_bytes, fixture_json, send, BackupVaults, VaultUsage};
use http::Method;
use serde_json::Value;
use wap_resource_provider::{EndpointAuth, RpServer, RunningServer, TenantUriMapping, UsageLedger, UsageSource};
use wap_types::rp::{
    LifecycleState, QuotaUpdateResultBatch, RpSubscriptionState, RpUsageRecord, ServiceUsageSummary, Subscription,
};
use wap_types::{BasicCredentials, ResourceProviderError, ServiceQuotaSetting};

const B4A1: &str = "b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796";

/// The usage store of `usage-queries.json`: ids 23450..=23453, the last two being the records of `usage-page.json`.
async fn seed_usage_store(ledger: &UsageLedger) {
    let page: Vec<RpUsageRecord> = wap_types::json::page_from_slice(&fixture_bytes("usage-page.json")).unwrap();
    assert_eq!(page.iter().map(|r| r.event_id).collect::<Vec<_>>(), [23452, 23453]);
    let mut records = Vec::new();
    for i in 0..2 {
        let mut r = page[0].clone();
        r.resource_id = Some(format!("vault-early-{i}"));
        records.push(r);
    }
    records.extend(page);
    ledger.advance_ids_past(23449).await.unwrap();
    let ids = ledger.append_all(records).await.unwrap();
    assert_eq!(ids, 23450..=23453);
    // The fixture's collector has received every record: only served records may be acknowledged.
    wap_resource_provider::UsageSource::record_served(ledger, 23453).await.unwrap();
}

async fn start(config: &Value, handler: BackupVaults, ledger: UsageLedger) -> RunningServer {
    let creds = BasicCredentials::new(config["username"].as_str().unwrap(), config["password"].as_str().unwrap());
    RpServer::builder("backup")
        .notification(config["notificationBasePath"].as_str().unwrap(), EndpointAuth::basic(creds.clone()), handler)
        .usage(config["usageBasePath"].as_str().unwrap(), EndpointAuth::basic(creds), ledger)
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

fn subscription_fixture(name: &str) -> Subscription {
    wap_types::json::from_slice(&fixture_bytes(name)).unwrap()
}

#[tokio::test]
async fn requests_fixture_over_http() {
    let spec = fixture_json("requests.json");
    let config = &spec["config"];
    let provider = BackupVaults::new(1);
    // f7b608be… exists (active) before WAP deletes it; b4a1… uses one vault of 73,400,320 KB.
    let mut trial = subscription_fixture("subscription-delete-pending.json");
    trial.state = RpSubscriptionState::Active;
    trial.lifecycle_state = Some(LifecycleState::Provisioned);
    provider.seed(trial);
    provider.set_usage(B4A1, VaultUsage { vaults: 1, protected_kb: 73_400_320 });
    let ledger = UsageLedger::in_memory();
    seed_usage_store(&ledger).await;
    let server = start(config, provider.clone(), ledger.clone()).await;
    let addr = server.local_addr();

    let common: Vec<(String, String)> = spec["commonHeaders"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let cases = spec["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 13);
    for case in cases {
        let op = case["operation"].as_str().unwrap();
        let omit: Vec<&str> =
            case["omitHeaders"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let mut headers: Vec<(String, String)> =
            common.iter().filter(|(k, _)| !omit.iter().any(|o| o.eq_ignore_ascii_case(k))).cloned().collect();
        if let Some(extra) = case["headers"].as_object() {
            for (k, v) in extra {
                headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
                headers.push((k.clone(), v.as_str().unwrap().to_owned()));
            }
        }
        let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let body = match (&case["bodyFile"], &case["rawBody"]) {
            (Value::String(f), _) => Some(fixture_bytes(f)),
            (_, Value::String(raw)) => Some(raw.clone().into_bytes()),
            _ => None,
        };
        let method: Method = case["method"].as_str().unwrap().parse().unwrap();
        let resp = send(addr, method, case["path"].as_str().unwrap(), &header_refs, body).await;
        let expected: Vec<u16> =
            case["expectStatus"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u16).collect();
        assert!(
            expected.contains(&resp.status.as_u16()),
            "{op}: status {} not in {expected:?}; body {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
        if resp.status.as_u16() >= 400 {
            resp.rp_error();
        }
        check_response(op, &resp, case["responseFile"].as_str());
    }

    // Every notification call carried the decoded principal (the alias on Get Default Quota), the request and
    // session ids and the language; the Referer reached Update Quota.
    let seen = provider.seen();
    assert_eq!(seen.len(), 11, "{seen:#?}");
    for call in &seen {
        assert_eq!(call.principal.as_deref(), Some("corp\\wapadmin"), "{call:?}");
        assert_eq!(call.principal_raw.as_deref(), Some("corp%5cwapadmin"), "{call:?}");
        assert_eq!(call.request_id.as_deref(), Some("c6754482-eea3-41a3-bba3-667e2c79c470-2015-06-02 08:14:09Z"));
        assert_eq!(call.session_id.as_deref(), Some("01289116-1176-4cba-b259-0584bd79b094"));
        assert_eq!(call.accept_language.as_deref(), Some("en-US"));
    }
    let quota_call = seen.iter().find(|c| c.operation == "update_quota").unwrap();
    assert_eq!(quota_call.referer.as_deref(), Some("https://wapadmin01.corp.test:30004/plans/Silverq7k2d9w/quota"));
    // The usage call acknowledged 23451: only the two records of the page remain.
    assert_eq!(ledger.stats().await.unwrap().pending, 2);
    // The rejected create reached nothing: the doc-spelling create is the last create seen.
    assert_eq!(seen.iter().filter(|c| c.operation == "create").count(), 2);
    // The async delete left f7b608be… DeletePending/Deleting, exactly as subscription-delete-pending.json.
    let expected_pending = subscription_fixture("subscription-delete-pending.json");
    assert_eq!(provider.subscription(&expected_pending.subscription_id), Some(expected_pending));
    server.shutdown().await;
}

fn check_response(op: &str, resp: &common::RawResponse, response_file: Option<&str>) {
    match op {
        o if o.starts_with("Create Subscription (doc") => {
            let got: Subscription = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got.subscription_id, "ac4579dd-cfd3-4762-92cb-78ca11cead00");
            assert_eq!(got.lifecycle_state, Some(LifecycleState::Provisioning));
            // Unknown members are kept and written back; the doc spelling is written the WAP way.
            assert_eq!(got.extra.get("RequestedBy"), Some(&Value::from("TenantAPI")));
            let text = String::from_utf8_lossy(&resp.body);
            assert!(text.contains("\"SubscriptionId\"") && text.contains("\"LifecycleState\""), "{text}");
        }
        "Create Subscription" | "Get Subscription" => {
            let expected = subscription_fixture(response_file.unwrap());
            let got: Subscription = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got.subscription_id, expected.subscription_id, "{op}");
            assert_eq!(got.state, expected.state, "{op}");
            assert_eq!(got.lifecycle_state, expected.lifecycle_state, "{op}");
            assert_eq!(got.last_error_message, expected.last_error_message, "{op}");
            if op == "Create Subscription" {
                assert_eq!(resp.status, 202, "an asynchronous create answers 202");
            }
        }
        o if o.starts_with("Update Subscription") => {
            let expected = subscription_fixture(response_file.unwrap());
            let got: Subscription = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got, expected);
        }
        "Get Subscription Usage Summary" => {
            let expected: ServiceUsageSummary =
                wap_types::json::from_slice(&fixture_bytes("usage-summary.json")).unwrap();
            let got: ServiceUsageSummary = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got, expected);
        }
        "Update Quota" => {
            let expected: QuotaUpdateResultBatch =
                wap_types::json::from_slice(&fixture_bytes("quota-update-result.json")).unwrap();
            let got: QuotaUpdateResultBatch = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got, expected);
            assert_eq!(resp.json(), fixture_json("quota-update-result.json"), "byte-level shape, nulls included");
        }
        "Validate Quota (valid)" | "Delete Subscription" | "Delete Subscription of an unknown id" => {
            assert!(resp.body.is_empty(), "{op}: no body expected, got {:?}", resp.body);
            if op == "Delete Subscription" {
                assert_eq!(resp.status, 202, "the test provider deletes asynchronously");
            }
        }
        o if o.starts_with("Validate Quota (invalid") => {
            let expected: ResourceProviderError =
                wap_types::json::from_slice(&fixture_bytes("quota-validate-error.json")).unwrap();
            assert_eq!(resp.rp_error(), expected);
        }
        o if o.starts_with("Get Default Quota") => {
            let expected: Vec<ServiceQuotaSetting> =
                wap_types::json::from_slice(&fixture_bytes("default-quota.json")).unwrap();
            let got: Vec<ServiceQuotaSetting> = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got, expected);
        }
        "Usage" => {
            let expected: Vec<RpUsageRecord> = wap_types::json::from_slice(&fixture_bytes("usage-page.json")).unwrap();
            let got: Vec<RpUsageRecord> = wap_types::json::from_slice(&resp.body).unwrap();
            assert_eq!(got, expected, "records come back exactly as appended, date forms included");
        }
        o if o.contains("wrong credentials") => {
            let challenge = resp.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(challenge.starts_with("Basic "), "challenge {challenge:?}");
            assert_eq!(resp.rp_error().code, "Unauthorized");
        }
        other => panic!("case {other:?} has no check"),
    }
}

fn ledgers_for_query_cases(
    dir: &std::path::Path,
    i: usize,
) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = UsageLedger>>>> {
    let path = dir.join(format!("case-{i}.db"));
    vec![Box::pin(async { UsageLedger::in_memory() }), Box::pin(async move { UsageLedger::open(path).await.unwrap() })]
}

#[tokio::test]
async fn usage_queries_fixture_on_both_backends() {
    let spec = fixture_json("usage-queries.json");
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "username": common::USER, "password": common::PASSWORD, "notificationBasePath": "/admin/", "usageBasePath": "/"
    });
    let cases = spec["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 12);
    for (i, case) in cases.iter().enumerate() {
        for make in ledgers_for_query_cases(dir.path(), i) {
            let ledger = make.await;
            let backend = ledger.backend_name();
            seed_usage_store(&ledger).await;
            let server = start(&config, BackupVaults::default(), ledger.clone()).await;
            let query = case["query"].as_str().unwrap();
            let path = if query.is_empty() { "/usage".to_owned() } else { format!("/usage?{query}") };
            let auth = common::basic_header();
            let resp = send(server.local_addr(), Method::GET, &path, &[("authorization", auth.as_str())], None).await;
            let what = format!("{backend} {path}");
            assert_eq!(resp.status.as_u16() as u64, case["expectStatus"].as_u64().unwrap(), "{what}");
            let stats = ledger.stats().await.unwrap();
            if resp.status != 200 {
                let e = resp.rp_error();
                assert_eq!(e.code, "InvalidUsageQuery", "{what}");
                assert!(e.message.contains("lastID") || e.message.contains("batchSize"), "{what}: {}", e.message);
                assert_eq!(stats.pending, 4, "{what}: a rejected query acknowledges nothing");
                server.shutdown().await;
                continue;
            }
            let got: Vec<i64> =
                resp.json().as_array().unwrap().iter().map(|r| r["EventId"].as_i64().unwrap()).collect();
            let want: Vec<i64> =
                case["expectEventIds"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(got, want, "{what}");
            let acked = case["expectAcknowledgedUpTo"].as_i64();
            assert_eq!(stats.acknowledged_through, acked.unwrap_or(0), "{what}");
            let remaining: Vec<i64> = (23450..=23453).filter(|id| acked.is_none_or(|a| *id > a)).collect();
            assert_eq!(stats.pending, remaining.len() as u64, "{what}");
            // What is left is exactly what was not acknowledged.
            let rest = ledger.records_after(wap_types::LastId::NONE, 100).await.unwrap();
            assert_eq!(rest.event_ids(), remaining, "{what}");
            server.shutdown().await;
        }
    }
}

#[test]
fn uri_translation_cases() {
    let cases = fixture_json("uri-translation-cases.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let rp_name = case["rpName"].as_str().unwrap_or("backup");
        let mapping = TenantUriMapping::new(
            rp_name,
            case["forwardingAddress"].as_str().unwrap(),
            case["sourceUriTemplate"].as_str(),
            case["targetUriTemplate"].as_str().unwrap(),
        )
        .unwrap();
        let got = mapping.translate(case["incoming"].as_str().unwrap());
        assert_eq!(got.as_deref(), case["expected"].as_str(), "{name}");
        // The provider reads the subscription id back from what it received.
        if let Some(url) = got {
            let after_scheme = url.split_once("://").unwrap().1;
            let path = &after_scheme[after_scheme.find('/').unwrap()..];
            let path = path.split('?').next().unwrap();
            let bound = mapping.parse_forwarded(path).unwrap_or_else(|| panic!("{name}: {path}"));
            assert_eq!(bound.subscription_id(), Some("b4a1ea4d-1f3b-4a9f-9d85-1df14e3a5796"), "{name}");
        }
    }
}

#[test]
fn registration_builder_emits_the_spec_object() {
    let auth = EndpointAuth::basic(BasicCredentials::new("rpadmin", "R3source#Key"));
    let registration = wap_resource_provider::RegistrationBuilder::new("backup")
        .display_name("Backup Vaults")
        .admin_endpoint("https://rp.corp.test:30030/admin", &auth)
        .tenant_endpoint(
            "https://rp.corp.test:30030/",
            &auth,
            Some("{subid}/services/backup/{*path}"),
            "subscriptions/{subid}/{*path}",
        )
        .usage_endpoint("https://rp.corp.test:30030/", &auth)
        .notification_endpoint("https://rp.corp.test:30030/admin", &auth)
        .instance_id("D3C076F8-B0D9-4D11-8A38-D070009CB540")
        .instance_display_name("Backup Vaults (Lisbon)")
        .max_quota_update_batch_size(5)
        .subscription_status_polling_interval(std::time::Duration::from_secs(10))
        .provider_type(wap_types::rp::ResourceProviderType::Standard)
        .setting("Region", "pt-lisbon-1")
        .build()
        .unwrap();
    let got: Value = serde_json::from_str(&registration.to_json()).unwrap();
    assert_eq!(got, fixture_json("registration.json"));
    let redacted = registration.to_redacted_json();
    assert!(!redacted.contains("R3source#Key") && redacted.contains("\"***\""));
    let ps = registration.powershell_script();
    assert!(!ps.contains("R3source#Key"), "{ps}");
    for needle in [
        "New-MgmtSvcResourceProviderConfiguration",
        "Add-MgmtSvcResourceProviderConfiguration -ResourceProvider $rp",
        "-Name 'backup'",
        "-NotificationForwardingAddress 'https://rp.corp.test:30030/admin'",
        "-UsageAuthenticationMode Basic",
        "-UsageAuthenticationUserName 'rpadmin'",
        "-UsageAuthenticationPassword $usagePassword",
        "$usagePassword = '<password of the usage endpoint>'",
        "-TenantSourceUriTemplate '{subid}/services/backup/{*path}'",
        "-TenantTargetUriTemplate 'subscriptions/{subid}/{*path}'",
        "$rp.MaxQuotaUpdateBatchSize = 5",
        "[TimeSpan]::Parse('00:00:10')",
        "# Setting Region = 'pt-lisbon-1'",
    ] {
        assert!(ps.contains(needle), "missing {needle:?} in\n{ps}");
    }

    // Target only: the implicit source is registered explicitly (the project always registers both).
    let target_only: wap_types::ResourceProvider =
        wap_types::json::from_slice(&fixture_bytes("registration-target-only.json")).unwrap();
    let tenant = target_only.tenant_endpoint.unwrap();
    let none = EndpointAuth::none();
    let r = wap_resource_provider::RegistrationBuilder::new(&target_only.name)
        .tenant_endpoint(&tenant.forwarding_address, &none, None, tenant.target_uri_template.as_deref().unwrap())
        .build()
        .unwrap();
    let t = r.resource_provider().tenant_endpoint.as_ref().unwrap();
    assert_eq!(t.source_uri_template.as_deref(), Some("{subid}/services/sqlservers/{*path}"));
    assert_eq!(t.authentication_mode, wap_types::rp::AuthenticationMode::None);

    // Bad input is refused with a reason.
    let err = wap_resource_provider::RegistrationBuilder::new("back up").build().unwrap_err();
    assert!(err.to_string().contains("letters and digits"), "{err}");
    let err = wap_resource_provider::RegistrationBuilder::new("backup")
        .usage_endpoint("http://rp.corp.test/", &auth)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("HTTPS"), "{err}");
    let err = wap_resource_provider::RegistrationBuilder::new("backup")
        .usage_endpoint("https://user:pw@rp.corp.test/", &auth)
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("R3source"), "{err}");
    let err = wap_resource_provider::RegistrationBuilder::new("backup")
        .tenant_endpoint("https://rp.corp.test/", &auth, Some("{subid}/x"), "{subid}/{*path}")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("path"), "{err}");
}
