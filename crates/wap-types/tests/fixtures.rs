//! Every file under the spec's `fixtures/` parses into its type and round-trips without losing a member.
//!
//! The fixtures are copied unchanged into `testdata/spec/fixtures/` so this runs from a plain clone; when
//! `WAP_BILLING_UPSTREAM_FIXTURES` names the upstream fixture directory (`.ci/run` sets it), the copy is compared with it.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use wap_types::*;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/spec/fixtures")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Spellings the writer normalises: (read as, written as).
const ALIASES: &[(&str, &str)] = &[
    ("Addons", "AddOns"),
    ("MaxOccurrencesPerPlan", "MaxOccurencesPerPlan"),
    ("LifeCycleState", "LifecycleState"),
    ("CoAdmins", "CoAdminIds"),
    ("SubscriptionId", "SubscriptionID"),
    ("SubscriptionID", "SubscriptionId"),
    ("AquisitionTime", "AcquisitionTime"),
    ("AuthenticationUserName", "AuthenticationUsername"),
];

/// Asserts that everything in `original` is in `written`: same values, member names equal ignoring case or
/// through an alias; a `null` may be written for a missing member and vice versa.
fn assert_nothing_lost(original: &Value, written: &Value, path: &str) {
    match (original, written) {
        (Value::Object(o), Value::Object(w)) => {
            for (k, v) in o {
                let found = w.iter().find(|(wk, _)| wk.eq_ignore_ascii_case(k)).or_else(|| {
                    ALIASES
                        .iter()
                        .filter(|(from, _)| from.eq_ignore_ascii_case(k))
                        .find_map(|(_, to)| w.iter().find(|(wk, _)| wk.eq_ignore_ascii_case(to)))
                });
                match found {
                    Some((_, wv)) => assert_nothing_lost(v, wv, &format!("{path}.{k}")),
                    None => assert!(v.is_null(), "{path}.{k} was lost (value {v})"),
                }
            }
        }
        (Value::Array(o), Value::Array(w)) => {
            assert_eq!(o.len(), w.len(), "{path}: array length changed");
            for (i, (a, b)) in o.iter().zip(w).enumerate() {
                assert_nothing_lost(a, b, &format!("{path}[{i}]"));
            }
        }
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{path}"),
        // A verb is written in WAP's own form (`POST` for `Post` or `"0"`): same meaning, other spelling.
        (Value::String(a), Value::String(b)) if path.ends_with(".Method") => {
            assert_eq!(EventMethod::parse(a), EventMethod::parse(b), "{path}")
        }
        (a, b) => assert_eq!(a, b, "{path}"),
    }
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(rel: &str) -> T {
    let bytes = read(rel);
    let parsed: T = json::from_slice(&bytes).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let written = serde_json::to_vec(&parsed).unwrap();
    let reparsed: T = json::from_slice(&written).unwrap_or_else(|e| panic!("{rel} (re-read): {e}"));
    assert_eq!(parsed, reparsed, "{rel}: parse → write → parse changed the value");
    let original: Value = serde_json::from_slice(&bytes).unwrap();
    let written: Value = serde_json::from_slice(&written).unwrap();
    assert_nothing_lost(&original, &written, rel);
    parsed
}

/// Every `.json` file in the fixtures, so that a new fixture without a test fails here.
fn all_fixture_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["usage-service", "approval", "resource-provider"] {
        for entry in std::fs::read_dir(fixtures_dir().join(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".json") {
                out.push(format!("{dir}/{name}"));
            }
        }
    }
    out.sort();
    out
}

fn parse_fixture(rel: &str) {
    let file = rel.rsplit('/').next().unwrap();
    match rel {
        r if r.starts_with("usage-service/usage-page") => {
            round_trip::<Vec<UsageRecord>>(rel);
        }
        "usage-service/plans-events.json" => {
            round_trip::<Vec<UsageEvent<Plan>>>(rel);
        }
        "usage-service/addons-events.json" => {
            round_trip::<Vec<UsageEvent<PlanAddon>>>(rel);
        }
        "usage-service/plan-addons-events.json" | "usage-service/subscription-addons-events.json" => {
            round_trip::<Vec<UsageEvent<PlanAddonReference>>>(rel);
        }
        "usage-service/plan-services-events.json" => {
            round_trip::<Vec<UsageEvent<ResourceProviderReference>>>(rel);
        }
        r if r.starts_with("usage-service/subscriptions-events") => {
            round_trip::<Vec<UsageEvent<AdminSubscription>>>(rel);
        }
        "usage-service/user.json" => {
            round_trip::<User>(rel);
        }
        r if r.starts_with("approval/") && file.ends_with("-response.json") => {
            let answer = PriceAnswer::decode(&read(rel));
            let as_json: String = json::from_slice(&read(rel)).unwrap();
            assert_eq!(answer.as_str(), as_json);
            assert_eq!(PriceAnswer::decode(&answer.encode(PriceEncoding::Json)), answer);
        }
        r if r.starts_with("approval/") && file != "requests.json" => {
            round_trip::<ApprovalRequest>(rel);
        }
        r if r.starts_with("resource-provider/default-quota") => {
            round_trip::<Vec<ServiceQuotaSetting>>(rel);
        }
        "resource-provider/quota-update-batch.json" => {
            round_trip::<QuotaUpdateBatch>(rel);
        }
        r if r.starts_with("resource-provider/quota-update-result") => {
            round_trip::<QuotaUpdateResultBatch>(rel);
        }
        "resource-provider/quota-validate-error.json" => {
            round_trip::<ResourceProviderError>(rel);
        }
        r if r.starts_with("resource-provider/registration") => {
            round_trip::<ResourceProvider>(rel);
        }
        r if r.starts_with("resource-provider/subscription-") => {
            round_trip::<Subscription>(rel);
        }
        r if r.starts_with("resource-provider/usage-page") => {
            round_trip::<Vec<RpUsageRecord>>(rel);
        }
        r if r.starts_with("resource-provider/usage-summary") => {
            round_trip::<ServiceUsageSummary>(rel);
        }
        // Test tables: consumed by the sim, client, responder and resource-provider tests; here they must be JSON
        // and every file they name must exist.
        r if file == "requests.json" || file == "usage-queries.json" || file == "uri-translation-cases.json" => {
            let table: Value = json::from_slice(&read(r)).unwrap();
            let dir = r.rsplit_once('/').unwrap().0;
            let mut named = Vec::new();
            collect_files(&table, &mut named);
            for f in named {
                assert!(fixtures_dir().join(dir).join(&f).exists(), "{r} names missing file {f}");
            }
        }
        other => panic!("fixture {other} has no type in this test: add it"),
    }
}

fn collect_files(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.ends_with("File") {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_owned());
                    }
                }
                collect_files(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_files(v, out)),
        _ => {}
    }
}

#[test]
fn every_fixture_parses_into_its_type_and_round_trips() {
    let files = all_fixture_files();
    assert!(files.len() >= 42, "expected the spec's fixtures, found {}", files.len());
    for rel in files {
        parse_fixture(&rel);
    }
}

#[test]
fn fixture_copy_matches_shared_spec_when_present() {
    let Some(shared) = std::env::var_os("WAP_BILLING_UPSTREAM_FIXTURES").map(PathBuf::from) else {
        eprintln!("skipped: WAP_BILLING_UPSTREAM_FIXTURES is not set");
        return;
    };
    if !shared.exists() {
        eprintln!("skipped: WAP_BILLING_UPSTREAM_FIXTURES names no directory");
        return;
    }
    let mut compared = 0;
    for dir in ["usage-service", "approval", "resource-provider"] {
        for entry in std::fs::read_dir(shared.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let ours = std::fs::read(fixtures_dir().join(dir).join(&name))
                .unwrap_or_else(|_| panic!("{dir}/{name} is upstream but not copied into testdata"));
            assert_eq!(ours, std::fs::read(entry.path()).unwrap(), "{dir}/{name} differs from the upstream copy");
            compared += 1;
        }
    }
    assert!(compared >= 42);
}

#[test]
fn usage_page_values_are_read_as_sent() {
    let page: Vec<UsageRecord> = json::from_slice(&read("usage-service/usage-page.json")).unwrap();
    assert_eq!(page.iter().map(|r| r.event_id).collect::<Vec<_>>(), [4101, 4102, 4105]);
    assert_eq!(page[0].external_record_id.as_deref(), Some("17"));
    assert_eq!(page[1].resources.get("TotalIncomingRequestBytes").map(String::as_str), Some("0.75"));
    assert_eq!(page[1].metric("totalincomingrequestbytes"), Some(0.75));
    assert!(page[0].properties.is_none());
    assert_eq!(page[1].start_time.to_string(), "2015-06-02T08:00:00.250");
    let unsorted: Vec<UsageRecord> = json::from_slice(&read("usage-service/usage-page-unsorted.json")).unwrap();
    assert!(same_id(&unsorted[0].subscription_id, &page[0].subscription_id));
    assert_eq!(unsorted[1].properties.as_ref().map(|p| p.len()), Some(0));
}

#[test]
fn plan_events_keep_patch_partial_and_unknown_members() {
    let events: Vec<UsageEvent<Plan>> = json::from_slice(&read("usage-service/plans-events.json")).unwrap();
    assert_eq!(events[0].method, EventMethod::Post);
    assert_eq!(events[1].method, EventMethod::Post, "\"0\" is Post");
    assert_eq!(events[2].method, EventMethod::Patch);
    assert_eq!(events[3].method, EventMethod::Delete);
    let patch = &events[2].entity;
    assert_eq!(patch.state, Some(PlanState::Public));
    assert_eq!(patch.display_name, None, "a Patch leaves absent members None");
    assert_eq!(events[0].entity.extra.get("MarketingTag"), Some(&Value::from("summer-2015")));
    assert_eq!(events[1].entity.price.as_deref(), Some("9.90"));
    assert_eq!(events[0].entity.service_quotas.or_empty()[1].settings.or_empty().len(), 2);
    assert!(events[1].entity.service_quotas.or_empty()[0].settings.or_empty().is_empty());
    assert!(events[2].raw_entity().contains("\"State\": 1"));
}

#[test]
fn subscription_events_read_the_admin_numbering_and_year_one() {
    let events: Vec<UsageEvent<AdminSubscription>> =
        json::from_slice(&read("usage-service/subscriptions-events.json")).unwrap();
    assert_eq!(events[0].entity.subscription_id, "90f94f4c-4679-406a-b6f4-4814d281b3fc");
    assert_eq!(events[2].entity.state, Some(AdminSubscriptionState::Suspended));
    assert!(events[1].entity.created.unwrap().is_unset());
    assert_eq!(events[1].method, EventMethod::Post);
    let states: Vec<UsageEvent<AdminSubscription>> =
        json::from_slice(&read("usage-service/subscriptions-events-states.json")).unwrap();
    let actions: Vec<_> = states.iter().map(|e| e.state.pull_action()).collect();
    assert_eq!(actions, [PullAction::Apply, PullAction::Skip, PullAction::Hold, PullAction::Error]);
    assert_eq!(states[3].state, NotificationState::Unknown(7));
}

#[test]
fn subscription_add_on_events_keep_unknown_envelope_members() {
    let events: Vec<UsageEvent<PlanAddonReference>> =
        json::from_slice(&read("usage-service/subscription-addons-events.json")).unwrap();
    assert!(events[0].extra.contains_key("CorrelationId"));
    let written = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(written["CorrelationId"], "5e0b8f7e-2f2c-4d44-9a51-0d8f3f1c2a77");
    assert_eq!(events[1].entity.add_on_instance_id.as_deref(), Some("dd2e5343-8bc3-4100-97f6-849f183ef985"));
}

#[test]
fn approval_bodies_classify_by_entity_shape_then_method() {
    let cases = [
        ("approval/create-subscription.json", ApprovalOperation::CreateSubscription),
        ("approval/delete-subscription.json", ApprovalOperation::DeleteSubscription),
        ("approval/create-subscription-addon.json", ApprovalOperation::CreateSubscriptionAddOn),
        ("approval/delete-subscription-addon.json", ApprovalOperation::DeleteSubscriptionAddOn),
        ("approval/update-subscription.json", ApprovalOperation::UpdateSubscription),
    ];
    for (file, op) in cases {
        let req: ApprovalRequest = json::from_slice(&read(file)).unwrap();
        assert_eq!(req.operation(), op, "{file}");
        assert_eq!(req.state, NotificationState::PendingApproval);
    }
    let create: ApprovalRequest = json::from_slice(&read("approval/create-subscription.json")).unwrap();
    assert_eq!(create.notification_event_time_created.unwrap().to_string(), "2015-06-03T10:31:05.4423178Z");
    match &create.entity {
        ApprovalEntity::Subscription(s) => assert_eq!(s.state, Some(AdminSubscriptionState::None)),
        other => panic!("expected a subscription, got {other:?}"),
    }
}

#[test]
fn resource_provider_objects_use_their_own_numbering_and_spellings() {
    let doc: Subscription = json::from_slice(&read("resource-provider/subscription-create-doc-spelling.json")).unwrap();
    assert_eq!(doc.subscription_id, "ac4579dd-cfd3-4762-92cb-78ca11cead00");
    assert_eq!(doc.lifecycle_state, Some(LifecycleState::Provisioned));
    assert!(doc.extra.contains_key("RequestedBy"));
    let written = serde_json::to_value(&doc).unwrap();
    assert!(written.get("SubscriptionId").is_some() && written.get("LifecycleState").is_some());
    assert!(written.get("CoAdminIds").is_some() && written.get("CoAdmins").is_none());
    let suspend: Subscription = json::from_slice(&read("resource-provider/subscription-update-suspend.json")).unwrap();
    assert_eq!(suspend.state, RpSubscriptionState::Suspended);
    assert_eq!(suspend.state.code(), 1);
    let reg: ResourceProvider = json::from_slice(&read("resource-provider/registration.json")).unwrap();
    assert_eq!(reg.subscription_status_polling_interval.unwrap().to_string(), "00:00:10");
    let debug = format!("{reg:?}");
    assert!(!debug.contains("R3source#Key"), "credentials must not appear in Debug output");
    let target_only: ResourceProvider =
        json::from_slice(&read("resource-provider/registration-target-only.json")).unwrap();
    assert_eq!(target_only.usage_endpoint.unwrap().authentication_mode, rp::AuthenticationMode::None);
    let summary: ServiceUsageSummary = json::from_slice(&read("resource-provider/usage-summary.json")).unwrap();
    assert_eq!(summary.usages.or_empty()[1].limit, -1);
    assert_eq!(summary.usages.or_empty()[1].group_display_name, None);
}
