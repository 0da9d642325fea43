//! One test per tolerance rule of the spec: each fails if the rule is removed.

use serde_json::json;
use wap_types::rp::{AuthenticationMode, Endpoint};
use wap_types::*;

fn parse<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap()
}

#[test]
fn method_is_read_in_any_case_with_zero_as_post_and_unknown_kept() {
    for (raw, want) in [
        ("POST", EventMethod::Post),
        ("Post", EventMethod::Post),
        ("post", EventMethod::Post),
        ("0", EventMethod::Post),
        ("PUT", EventMethod::Put),
        ("pUt", EventMethod::Put),
        ("Patch", EventMethod::Patch),
        ("PATCH", EventMethod::Patch),
        ("DELETE", EventMethod::Delete),
        ("Delete", EventMethod::Delete),
        ("MERGE", EventMethod::Other("MERGE".into())),
        ("1", EventMethod::Other("1".into())),
    ] {
        let m: EventMethod = serde_json::from_value(json!(raw)).unwrap();
        assert_eq!(m, want, "{raw}");
    }
    assert!(EventMethod::Other("MERGE".into()).is_update(), "unknown verbs are handled as updates");
    assert_eq!(EventMethod::parse("3").with_numeric_ordinals(), EventMethod::Delete);
    assert_eq!(EventMethod::parse("2").with_numeric_ordinals(), EventMethod::Patch);
    assert_eq!(EventMethod::parse("1").with_numeric_ordinals(), EventMethod::Put);
    assert_eq!(serde_json::to_value(EventMethod::Other("MERGE".into())).unwrap(), json!("MERGE"));
}

#[test]
fn unknown_enum_integers_are_kept_not_rejected() {
    let plan: Plan = parse(json!({"Id": "p", "State": 9, "ConfigState": 4, "QuotaSyncState": 77}));
    assert_eq!(plan.state, Some(PlanState::Unknown(9)));
    assert_eq!(plan.config_state, Some(ConfigState::Unknown(4)));
    assert_eq!(plan.quota_sync_state, Some(SyncState::Unknown(77)));
    let written = serde_json::to_value(&plan).unwrap();
    assert_eq!(written["State"], 9);
    let sub: rp::Subscription = parse(json!({"SubscriptionId": "s", "State": 5, "LifecycleState": 42}));
    assert_eq!(sub.state, RpSubscriptionState::Unknown(5));
    assert_eq!(sub.lifecycle_state, Some(LifecycleState::Unknown(42)));
}

#[test]
fn enums_sent_as_names_are_accepted_in_any_case() {
    let plan: Plan = parse(json!({"Id": "p", "State": "public", "ConfigState": "Configured"}));
    assert_eq!(plan.state, Some(PlanState::Public));
    assert_eq!(plan.config_state, Some(ConfigState::Configured));
    let bad = json::from_slice::<Plan>(br#"{"Id": "p", "State": "Sideways"}"#).unwrap_err();
    assert_eq!(bad.path, "State");
}

#[test]
fn null_missing_and_empty_collections_all_read_as_empty() {
    for entity in [
        json!({"SubscriptionID": "s", "CoAdminNames": null, "AddOns": null, "Services": null}),
        json!({"SubscriptionID": "s"}),
        json!({"SubscriptionID": "s", "CoAdminNames": [], "AddOns": [], "Services": []}),
    ] {
        let sub: AdminSubscription = parse(entity.clone());
        assert!(sub.co_admin_names.or_empty().is_empty(), "{entity}");
        assert!(sub.add_ons.or_empty().is_empty(), "{entity}");
        assert!(sub.services.or_empty().is_empty(), "{entity}");
    }
    // In a Patch, missing/null (unchanged) and [] (now empty) stay distinguishable.
    let missing: AdminSubscription = parse(json!({"SubscriptionID": "s"}));
    let empty: AdminSubscription = parse(json!({"SubscriptionID": "s", "CoAdminNames": []}));
    assert_eq!(missing.co_admin_names, None);
    assert_eq!(empty.co_admin_names, Some(vec![]));
    let record: UsageRecord = parse(json!({"EventId": 1, "StartTime": "2015-06-02T08:00:00",
        "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": null}));
    assert!(record.resources.is_empty());
}

#[test]
fn every_spelling_pair_is_read_and_wap_spelling_is_written() {
    let plan: Plan = parse(json!({"Id": "p", "Addons": [{"Id": "a", "MaxOccurrencesPerPlan": 3}]}));
    assert_eq!(plan.add_ons.or_empty()[0].max_occurrences_per_plan, Some(3));
    let w = serde_json::to_value(&plan).unwrap();
    assert!(w.get("AddOns").is_some() && w.get("Addons").is_none());
    assert_eq!(w["AddOns"][0]["MaxOccurencesPerPlan"], 3);

    let sub: AdminSubscription = parse(json!({"SubscriptionId": "s1"}));
    assert_eq!(sub.subscription_id, "s1");
    assert!(serde_json::to_value(&sub).unwrap().get("SubscriptionID").is_some());

    let rp_sub: rp::Subscription = parse(json!({"SubscriptionID": "s2", "LifeCycleState": 1, "CoAdmins": ["x"]}));
    assert_eq!(rp_sub.subscription_id, "s2");
    assert_eq!(rp_sub.lifecycle_state, Some(LifecycleState::Provisioning));
    assert_eq!(rp_sub.co_admin_ids.or_empty(), ["x".to_string()]);
    let w = serde_json::to_value(&rp_sub).unwrap();
    for key in ["SubscriptionId", "LifecycleState", "CoAdminIds"] {
        assert!(w.get(key).is_some(), "{key} written");
    }
    for key in ["SubscriptionID", "LifeCycleState", "CoAdmins"] {
        assert!(w.get(key).is_none(), "{key} not written");
    }

    let r: PlanAddonReference =
        parse(json!({"AddOnId": "a", "InstanceId": "i", "AquisitionTime": "2015-06-01T09:12:44.183"}));
    assert_eq!(r.add_on_instance_id.as_deref(), Some("i"));
    assert_eq!(r.acquisition_time.unwrap().to_string(), "2015-06-01T09:12:44.183");
    let w = serde_json::to_value(&r).unwrap();
    assert!(w.get("AddOnInstanceId").is_some() && w.get("AcquisitionTime").is_some());

    let e: Endpoint =
        parse(json!({"ForwardingAddress": "https://x/", "AuthenticationMode": 1, "AuthenticationUserName": "u"}));
    assert_eq!(e.authentication_username.as_deref(), Some("u"));
    assert_eq!(e.authentication_mode, AuthenticationMode::Basic);
    assert!(serde_json::to_value(&e).unwrap().get("AuthenticationUsername").is_some());
}

#[test]
fn member_names_match_ignoring_case() {
    let record: UsageRecord = parse(json!({"eventid": 7, "STARTTIME": "2015-06-02T08:00:00",
        "endTime": "2015-06-02T08:03:00", "subscriptionid": "s", "resources": {"DatabaseCount": "2"}}));
    assert_eq!(record.event_id, 7);
    assert_eq!(record.metric("databasecount"), Some(2.0));
    let event: UsageEvent<Plan> = parse(json!({"eventId": 3, "state": 0, "method": "post", "entity": {"id": "p"}}));
    assert_eq!(event.entity.id, "p");
}

#[test]
fn unknown_members_survive_parse_write_parse() {
    let original = json!({"EventId": 5, "State": 0, "Method": "POST", "CorrelationId": "c-1",
        "Entity": {"Id": "p", "MarketingTag": "summer", "Nested": {"a": [1, 2]}}});
    let event: UsageEvent<Plan> = parse(original);
    let written = serde_json::to_value(&event).unwrap();
    assert_eq!(written["CorrelationId"], "c-1");
    assert_eq!(written["Entity"]["MarketingTag"], "summer");
    assert_eq!(written["Entity"]["Nested"], json!({"a": [1, 2]}));
    let again: UsageEvent<Plan> = parse(written);
    assert_eq!(again, event);
}

#[test]
fn meters_sent_as_numbers_are_kept_as_text() {
    let record: UsageRecord = parse(json!({"EventId": 1, "StartTime": "2015-06-02T08:00:00",
        "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": {"A": 2048, "B": 0.75, "C": null}}));
    assert_eq!(record.resources.get("A").map(String::as_str), Some("2048"));
    assert_eq!(record.metric("B"), Some(0.75));
    assert_eq!(record.resources.get("C").map(String::as_str), Some(""));
}

#[test]
fn nested_meter_values_are_kept_as_their_json_text() {
    // Fails the whole record (and so the page) as a wrong type if nested values are not tolerated.
    let page = br#"[{"EventId": 1, "StartTime": "2015-06-02T08:00:00", "EndTime": "2015-06-02T08:03:00",
        "SubscriptionId": "s",
        "Resources": {"Cpu": {"Cores": 2, "Name": "x\"y", "Load": [0.5, null, true]}, "Disks": ["1"], "Mem": "2048"},
        "Properties": {"Tags": {"b": 1, "a": {}}, "Empty": []}}]"#;
    let records = json::page_from_slice::<UsageRecord>(page).unwrap();
    let r = &records[0];
    assert_eq!(r.resources.get("Cpu").unwrap(), r#"{"Cores":2,"Name":"x\"y","Load":[0.5,null,true]}"#);
    assert_eq!(r.resources.get("Disks").unwrap(), r#"["1"]"#);
    assert_eq!(r.metric("Mem"), Some(2048.0));
    assert_eq!(r.metric("Cpu"), None, "a nested value is not a number");
    let props = r.properties.as_ref().unwrap();
    assert_eq!(props.get("Tags").unwrap(), r#"{"b":1,"a":{}}"#, "members stay in the order received");
    assert_eq!(props.get("Empty").unwrap(), "[]");
    // the kept text is valid JSON of the same value
    let cpu: serde_json::Value = serde_json::from_str(r.resources.get("Cpu").unwrap()).unwrap();
    assert_eq!(cpu, json!({"Cores": 2, "Name": "x\"y", "Load": [0.5, null, true]}));
    // also through a `serde_json::Value` (not only from bytes)
    let from_value: UsageRecord = serde_json::from_value(json!({"EventId": 2, "StartTime": "2015-06-02T08:00:00",
        "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": {"Cpu": {"Cores": 2}}}))
    .unwrap();
    assert_eq!(from_value.resources.get("Cpu").unwrap(), r#"{"Cores":2}"#);
}

#[test]
fn parse_errors_name_the_json_path_of_the_bad_member() {
    let page = br#"[
      {"EventId": 1, "StartTime": "2015-06-02T08:00:00", "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": {}},
      {"EventId": 2, "StartTime": "yesterday", "EndTime": "2015-06-02T08:03:00", "SubscriptionId": "s", "Resources": {}}
    ]"#;
    let err = json::page_from_slice::<UsageRecord>(page).unwrap_err();
    assert_eq!(err.path, "[1].StartTime");
    assert!(err.to_string().contains("[1].StartTime"), "{err}");
    assert!(err.message.contains("yesterday"), "{err}");

    let events = br#"[{"EventId": 1, "State": 0, "Method": "POST",
        "Entity": {"Id": "p", "ServiceQuotas": [{"ServiceName": "x", "ConfigState": "half"}]}}]"#;
    let err = json::page_from_slice::<UsageEvent<Plan>>(events).unwrap_err();
    let text = err.to_string();
    assert_eq!(err.path, "[0].Entity.ServiceQuotas[0].ConfigState", "{text}");

    let missing = json::from_slice::<UsageRecord>(br#"{"StartTime": "2015-06-02T08:00:00"}"#).unwrap_err();
    assert!(missing.message.contains("EventId"), "{missing}");
    let null_entity =
        json::from_slice::<UsageEvent<Plan>>(br#"{"EventId": 1, "State": 0, "Method": "POST", "Entity": null}"#)
            .unwrap_err();
    assert!(null_entity.message.contains("Entity"), "{null_entity}");
}

#[test]
fn pages_tolerate_bom_empty_bodies_and_pretty_empty_arrays_but_not_objects() {
    assert!(json::page_from_slice::<UsageRecord>(b"").unwrap().is_empty());
    assert!(json::page_from_slice::<UsageRecord>(b"[\n\n  ]").unwrap().is_empty());
    assert!(json::page_from_slice::<UsageRecord>(b"\xEF\xBB\xBF[]").unwrap().is_empty());
    let not_array = json::page_from_slice::<UsageRecord>(br#"{"error": "x"}"#).unwrap_err();
    assert!(not_array.message.contains("array"));
    let truncated = json::page_from_slice::<UsageRecord>(br#"[{"EventId": 1, "StartTi"#).unwrap_err();
    assert!(truncated.is_eof, "a truncated body is reported as such");
}

#[test]
fn cursors_keep_their_own_off_by_one_rules() {
    // Usage Service: startId inclusive, continue at highest + 1.
    let start = StartId::resume(Some(4102), StartIdMode::Inclusive);
    assert_eq!(start.get(), 4103);
    assert!(start.includes(4103) && !start.includes(4102));
    assert_eq!(StartId::resume(Some(4102), StartIdMode::Exclusive).get(), 4102);
    assert_eq!(StartId::resume(None, StartIdMode::Inclusive), StartId::BEGINNING);
    assert_eq!(start.next_after_page([4105, 4103]).get(), 4106);
    assert_eq!(start.next_after_page([]), start);
    // Resource provider: lastID acknowledges up to and including it; answers hold ids after it.
    let last = LastId::new(23451);
    assert!(last.acknowledges(23451) && !last.acknowledges(23452));
    assert!(last.admits(23452) && !last.admits(23451));
    assert_eq!(LastId::parse_query(Some("")).unwrap(), LastId::NONE);
    assert_eq!(LastId::parse_query(Some("0")).unwrap(), LastId::NONE);
    assert_eq!(LastId::parse_query(None).unwrap(), LastId::NONE);
    assert!(LastId::parse_query(Some("abc")).is_err());
    assert!(LastId::parse_query(Some("-5")).is_err());
    assert!(!LastId::NONE.acknowledges(1));
    assert_eq!(last.after_page([23452, 23453]).get(), Some(23453));
    assert_eq!(LastId::NONE.to_query_value(), "");
    assert_eq!(cursor::parse_batch_size(None, 1000).unwrap(), 1000);
    assert_eq!(cursor::parse_batch_size(Some("0"), 1000).unwrap(), 0);
    assert!(cursor::parse_batch_size(Some("ten"), 1000).is_err());
    assert_eq!(cursor::clamp_batch_size(50_000), 10_000);
    assert_eq!(cursor::clamp_batch_size(0), 1);
}

#[test]
fn feeds_know_their_paths_and_order() {
    assert_eq!(UsageFeed::PATH, "/usage");
    assert_eq!(PlanAddonsFeed::PATH, "/billing/planAddons");
    assert_eq!(SubscriptionAddonsFeed::KIND, FeedKind::SubscriptionAddons);
    assert_eq!(FeedKind::from_path("/billing/subscriptionaddons/"), Some(FeedKind::SubscriptionAddons));
    assert_eq!(
        FeedKind::EVENT_FEEDS.map(FeedKind::name),
        ["plans", "addons", "planAddons", "planServices", "subscriptions", "subscriptionAddons"]
    );
    for kind in FeedKind::ALL {
        assert_eq!(FeedKind::from_name(kind.name()), Some(kind));
    }
}

#[test]
fn admin_and_rp_subscription_states_are_distinct_numberings() {
    assert_eq!(AdminSubscriptionState::Suspended.code(), 2);
    assert_eq!(RpSubscriptionState::Suspended.code(), 1);
    assert_eq!(AdminSubscriptionState::from_code(1), AdminSubscriptionState::Active);
    assert_eq!(RpSubscriptionState::from_code(1), RpSubscriptionState::Suspended);
}

#[test]
fn prices_are_sanitized_and_decoded_in_both_encodings() {
    let p = PriceAnswer::new("Silver:\r\n $25.00\tper month", 256);
    assert_eq!(p.as_str(), "Silver: $25.00per month");
    assert_eq!(PriceAnswer::new(&"x".repeat(300), 256).as_str().len(), 256);
    assert_eq!(PriceAnswer::decode(b"\"Extra: $4\"").as_str(), "Extra: $4");
    assert_eq!(PriceAnswer::decode(b"Extra: $4").as_str(), "Extra: $4");
    assert_eq!(p.encode(PriceEncoding::Text), p.as_str().as_bytes());
    let q =
        AddonPriceQuery::from_query("id=ExtraDbm4t9r2&region=westeurope&username=ana%40fabrikam.test&subscriptionId=s")
            .unwrap();
    assert_eq!(q.username.as_deref(), Some("ana@fabrikam.test"));
    assert_eq!(q.subscription_id.as_deref(), Some("s"));
    assert!(q.to_query().contains("subscriptionid=s"));
    assert!(PlanPriceQuery::from_query("region=x").is_err());
    assert!(PlanPriceQuery::from_query("id=&region=x").is_err());
}

#[test]
fn decisions_map_to_statuses_as_wap_reads_them() {
    assert_eq!(Decision::Approve.status_code(), 204);
    assert_eq!(Decision::deny("overdue").status_code(), 403);
    assert!(Decision::from_status(204).is_approve());
    assert!(Decision::from_status(399).is_approve());
    assert!(!Decision::from_status(400).is_approve());
    assert!(!Decision::from_status(500).is_approve());
}

#[test]
fn approval_entity_errors_name_the_member_inside_the_entity() {
    let body = br#"{"EventId": 7702, "State": 2, "Method": "POST",
        "Entity": {"SubscriptionID": "s", "PlanId": 42}}"#;
    let err = json::from_slice::<ApprovalRequest>(body).unwrap_err();
    assert_eq!(err.path, "Entity.PlanId", "{err}");
    let add_on = br#"{"EventId": 7710, "State": 2, "Method": "Post",
        "Entity": {"AddOnId": "a", "AcquisitionTime": "soon"}, "EntityParentId": "s"}"#;
    let err = json::from_slice::<ApprovalRequest>(add_on).unwrap_err();
    assert_eq!(err.path, "Entity.AcquisitionTime", "{err}");
    let not_object =
        json::from_slice::<ApprovalRequest>(br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": 5}"#);
    assert!(not_object.is_err());
}
