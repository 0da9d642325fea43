//! Property tests: generated objects and date-times round-trip exactly.

use std::collections::BTreeMap;

use proptest::prelude::*;
use wap_types::*;

fn date_text() -> impl Strategy<Value = String> {
    (
        1i32..=9999,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        0usize..=7,
        0u32..10_000_000,
        0u8..4,
        -14i32..=14,
        prop::bool::ANY,
    )
        .prop_map(|(y, mo, d, h, mi, s, digits, ticks, offset_kind, off_h, half)| {
            let mut t = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
            if digits > 0 {
                t.push('.');
                t.push_str(&format!("{ticks:07}")[..digits]);
            }
            match offset_kind {
                0 => {}
                1 => t.push('Z'),
                _ => {
                    let sign = if off_h < 0 { '-' } else { '+' };
                    t.push_str(&format!("{sign}{:02}:{}", off_h.unsigned_abs(), if half { "30" } else { "00" }));
                }
            }
            t
        })
}

fn string_map() -> impl Strategy<Value = StringMap> {
    prop::collection::btree_map("[A-Za-z]{1,12}", "[0-9.]{0,8}", 0..6)
        .prop_map(|m: BTreeMap<String, String>| StringMap(m))
}

prop_compose! {
    fn usage_record()(
        id in 1i64..i64::MAX,
        ext in prop::option::of("[0-9]{1,6}"),
        resource in prop::option::of("\\PC{0,12}"),
        start in date_text(),
        end in date_text(),
        provider in prop::option::of("[a-z]{3,12}"),
        sub in "[0-9a-fA-F-]{36}",
        props in prop::option::of(string_map()),
        resources in string_map(),
    ) -> UsageRecord {
        UsageRecord {
            event_id: id,
            external_record_id: ext,
            resource_id: resource,
            start_time: start.parse().unwrap(),
            end_time: end.parse().unwrap(),
            provider_name: provider,
            service_type: Some("Default".into()),
            subscription_id: sub,
            properties: props,
            resources,
            extra: Default::default(),
        }
    }
}

proptest! {
    #[test]
    fn date_times_are_written_back_exactly(text in date_text()) {
        let v = WapDateTime::parse(&text).unwrap();
        prop_assert_eq!(v.to_string(), text);
        let again = WapDateTime::parse(&v.to_string()).unwrap();
        prop_assert_eq!(again, v);
    }

    #[test]
    fn canonical_form_round_trips(secs in -62_135_596_800i64..253_402_300_799, ticks in 0u32..10_000_000) {
        let utc = chrono::DateTime::from_timestamp(secs, ticks * 100).unwrap();
        let v = WapDateTime::from_utc(utc);
        prop_assert_eq!(v.to_utc(), utc);
        let text = v.to_string();
        prop_assert!(text.ends_with('Z') && text.len() == 28, "{}", text);
        prop_assert_eq!(WapDateTime::parse(&text).unwrap(), v);
    }

    #[test]
    fn usage_records_round_trip(records in prop::collection::vec(usage_record(), 0..8)) {
        let bytes = serde_json::to_vec(&records).unwrap();
        let back: Vec<UsageRecord> = json::page_from_slice(&bytes).unwrap();
        prop_assert_eq!(back, records);
    }

    #[test]
    fn subscription_events_round_trip(
        id in 0i64..1_000_000,
        method in prop::sample::select(vec!["POST", "Post", "0", "PUT", "Patch", "DELETE", "Merge"]),
        state in 0i64..6,
        plan in prop::option::of("[A-Za-z0-9]{4,16}"),
        admins in prop::option::of(prop::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.test", 0..3)),
        created in prop::option::of(date_text()),
        extra_value in prop::option::of(any::<i32>()),
    ) {
        let mut entity = AdminSubscription::with_id(format!("sub-{id}"));
        entity.plan_id = plan;
        entity.co_admin_names = admins;
        entity.state = Some(AdminSubscriptionState::from_code(state));
        entity.created = created.map(|c| c.parse().unwrap());
        if let Some(v) = extra_value {
            entity.extra.insert("Unknown".into(), v.into());
        }
        let event = UsageEvent::new(id, NotificationState::from_code(state), EventMethod::parse(method), entity);
        let bytes = serde_json::to_vec(&event).unwrap();
        let back: UsageEvent<AdminSubscription> = json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&back, &event);
        let raw: serde_json::Value = serde_json::from_str(back.raw_entity()).unwrap();
        prop_assert_eq!(raw, serde_json::to_value(&event.entity).unwrap());
    }
}
