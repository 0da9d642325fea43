// The fuzzing entry points, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the bounded
// property-based run in `cargo test` (`tests/fuzz_entry_points.rs`). Each function takes arbitrary bytes and
// panics only when an invariant is broken: a parser panicking, a round trip that is not exact, a server answering
// outside its documented statuses.

use wap_types::cursor::{parse_batch_size, LastId};
use wap_types::{
    AdminSubscription, BasicCredentials, EventMethod, Plan, PlanAddon, PlanAddonReference, ResourceProviderReference,
    RpUsageRecord, UsageEvent, UsageRecord, WapDateTime,
};

/// Parses, writes back and parses again: the typed values must be equal.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(first) = wap_types::json::from_slice::<T>(bytes) {
        let written = serde_json::to_vec(&first).expect("a parsed value serializes");
        let again: T = wap_types::json::from_slice(&written)
            .unwrap_or_else(|e| panic!("written form does not parse: {e}\n{}", String::from_utf8_lossy(&written)));
        assert_eq!(first, again, "round trip changed the value");
    }
}

/// Every wire parser of `wap-types`: pages of each feed, single events, approval bodies, RP records, dates,
/// methods, Basic headers, cursors.
pub(crate) fn wire(bytes: &[u8]) {
    round_trip::<Vec<UsageRecord>>(bytes);
    round_trip::<Vec<UsageEvent<Plan>>>(bytes);
    round_trip::<Vec<UsageEvent<PlanAddon>>>(bytes);
    round_trip::<Vec<UsageEvent<PlanAddonReference>>>(bytes);
    round_trip::<Vec<UsageEvent<ResourceProviderReference>>>(bytes);
    round_trip::<Vec<UsageEvent<AdminSubscription>>>(bytes);
    round_trip::<Vec<RpUsageRecord>>(bytes);
    // The single-pass readers must agree with the serde path.
    let single = UsageEvent::<AdminSubscription>::from_slice(bytes);
    let serde = wap_types::json::from_slice::<UsageEvent<AdminSubscription>>(bytes);
    assert_eq!(single.is_ok(), serde.is_ok(), "single-pass and serde readers disagree on acceptance");
    if let (Ok(a), Ok(b)) = (single, serde) {
        assert_eq!(a, b, "single-pass and serde readers disagree on the value");
        assert_eq!(a.raw_entity(), b.raw_entity());
    }
    let _ = UsageEvent::<PlanAddonReference>::try_from_slice(bytes);

    let text = String::from_utf8_lossy(bytes);
    if let Ok(t) = WapDateTime::parse(&text) {
        let written = t.to_string();
        let again = WapDateTime::parse(&written).unwrap_or_else(|e| panic!("{written:?} does not parse: {e}"));
        assert_eq!(again.to_string(), written, "a date is written back exactly");
    }
    let method = EventMethod::parse(&text);
    let _ = method.with_numeric_ordinals();
    if let Some(c) = BasicCredentials::parse_header(&text) {
        let header = c.header_value();
        assert_eq!(BasicCredentials::parse_header(&header).as_ref(), Some(&c), "Basic header round trip");
    }
    for part in text.split('&') {
        let _ = LastId::parse_query(Some(part));
        let _ = parse_batch_size(Some(part), 100);
    }
}
