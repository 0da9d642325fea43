//! `UsageEvent::try_from_slice` (the single-pass reader) against the serde path: the same event, the same raw
//! entity text, and `None` exactly where the serde path fails.

use std::path::PathBuf;

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::Value;
use wap_types::*;

fn read(rel: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/spec/fixtures");
    std::fs::read(dir.join(rel)).unwrap()
}

/// Both readers on `bytes`: they agree on success, on the value and on the raw entity text.
fn agree<T: DeserializeOwned + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<UsageEvent<T>> {
    let serde_path: Result<UsageEvent<T>, _> = json::from_slice(bytes);
    let single = UsageEvent::<T>::try_from_slice(bytes);
    match (&serde_path, &single) {
        (Ok(a), Some(b)) => {
            assert_eq!(a, b, "{}", String::from_utf8_lossy(bytes));
            assert_eq!(a.raw_entity(), b.raw_entity());
            assert!(serde_json::value::RawValue::from_string(b.raw_entity().to_owned()).is_ok());
        }
        (Err(_), None) => {}
        // An escaped member name is left to the serde path (which reads it): the only allowed difference.
        (Ok(_), None) => assert!(bytes.contains(&b'\\'), "single pass refused: {}", String::from_utf8_lossy(bytes)),
        (Err(e), Some(b)) => panic!("serde path failed ({e}) but single pass read {b:?}"),
    }
    let via_from_slice = UsageEvent::<T>::from_slice(bytes);
    assert_eq!(via_from_slice.is_ok(), serde_path.is_ok());
    single
}

/// Every event of a fixture page, one at a time, as the compact and the pretty text.
fn each_event<T: DeserializeOwned + PartialEq + std::fmt::Debug>(rel: &str) -> usize {
    let page: Vec<Value> = serde_json::from_slice(&read(rel)).unwrap();
    for event in &page {
        for text in [serde_json::to_vec(event).unwrap(), serde_json::to_vec_pretty(event).unwrap()] {
            assert!(agree::<T>(&text).is_some(), "{rel}: {event}");
        }
    }
    page.len()
}

#[test]
fn every_fixture_event_reads_the_same_in_one_pass() {
    let mut n = 0;
    n += each_event::<Plan>("usage-service/plans-events.json");
    n += each_event::<PlanAddon>("usage-service/addons-events.json");
    n += each_event::<PlanAddonReference>("usage-service/plan-addons-events.json");
    n += each_event::<ResourceProviderReference>("usage-service/plan-services-events.json");
    n += each_event::<AdminSubscription>("usage-service/subscriptions-events.json");
    n += each_event::<AdminSubscription>("usage-service/subscriptions-events-states.json");
    n += each_event::<PlanAddonReference>("usage-service/subscription-addons-events.json");
    assert!(n >= 10, "{n} events");
    for name in ["create-subscription.json", "delete-subscription.json", "update-subscription.json"] {
        let bytes = read(&format!("approval/{name}"));
        let event = agree::<AdminSubscription>(&bytes).expect(name);
        // the raw text is the exact range of the input
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains(event.raw_entity()), "{name}");
    }
    for name in ["create-subscription-addon.json", "delete-subscription-addon.json"] {
        let bytes = read(&format!("approval/{name}"));
        assert!(agree::<PlanAddonReference>(&bytes).is_some(), "{name}");
        // an add-on entity is not a subscription (no SubscriptionID): both readers refuse it
        assert!(agree::<AdminSubscription>(&bytes).is_none(), "{name}");
    }
}

#[test]
#[allow(clippy::useless_format)] // every case written the same way, with or without the shared entity
fn malformed_and_unusual_envelopes_get_the_same_answer() {
    let entity = r#"{"SubscriptionID":"s-1","PlanId":"p"}"#;
    let cases = [
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity}}}"#),
        format!("\u{feff}{{\"EventId\":1,\"State\":2,\"Method\":\"POST\",\"Entity\":{entity}}}"),
        format!(r#" {{ "eventid" : 1 , "STATE":2 ,"method":"0","entity": {entity} , "Extra":[1,{{"a":null}}]}} "#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity},"EntityParentId":null}}"#),
        format!(
            r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity},"NotificationEventTimeCreated":"2015-06-03T10:31:05.4423178Z"}}"#
        ),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{{"SubscriptionID":"x"}},"Entity":{entity}}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{{"SubscriptionID":"s","Unknown":"\u00e9\n"}}}}"#),
        format!(r#"{{"Event\u0049d":1,"State":2,"Method":"POST","Entity":{entity}}}"#),
        // failures
        String::new(),
        "[]".to_owned(),
        "{}".to_owned(),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity}}} x"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity},}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity}"#),
        format!(r#"{{"EventId":"1","State":2,"Method":"POST","Entity":{entity}}}"#),
        format!(r#"{{"EventId":1.5,"State":2,"Method":"POST","Entity":{entity}}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":null}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST"}}"#),
        format!(r#"{{"State":2,"Method":"POST","Entity":{entity}}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{{"PlanId":"p"}}}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{{"SubscriptionID":"s","PlanId":4}}}}"#),
        format!(r#"{{"EventId":1 "State":2,"Method":"POST","Entity":{entity}}}"#),
        format!(r#"{{"EventId"1,"State":2,"Method":"POST","Entity":{entity}}}"#),
        format!(r#"{{"EventId":1,"State":2,"Method":"POST","Entity":{entity}}}}}"#),
    ];
    let mut read_ok = 0;
    for case in &cases {
        read_ok += usize::from(agree::<AdminSubscription>(case.as_bytes()).is_some());
    }
    assert_eq!(read_ok, 7, "the first seven read in one pass (the escaped name goes to the serde path)");
    // invalid UTF-8 inside an unknown member of the entity: refused by both
    let mut bytes = br#"{"EventId":1,"State":2,"Method":"POST","Entity":{"SubscriptionID":"s","Note":"#.to_vec();
    bytes.extend_from_slice(b"\"\xff\"}}");
    assert!(agree::<AdminSubscription>(&bytes).is_none());
    // errors still name the member
    let err = UsageEvent::<AdminSubscription>::from_slice(cases[20].as_bytes()).unwrap_err();
    assert_eq!(err.path, "Entity.PlanId");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any byte changed in a valid event: the two readers still agree.
    #[test]
    fn single_byte_changes_get_the_same_answer(at in 0usize..400, byte in any::<u8>()) {
        let mut bytes = read("approval/create-subscription.json");
        let at = at % bytes.len();
        bytes[at] = byte;
        agree::<AdminSubscription>(&bytes);
    }

    /// Any prefix of a valid event: the two readers still agree (all but the whole text fail).
    #[test]
    fn truncations_get_the_same_answer(cut in 0usize..2000) {
        let bytes = read("approval/create-subscription.json");
        let cut = cut % (bytes.len() + 1);
        agree::<AdminSubscription>(&bytes[..cut]);
    }
}
