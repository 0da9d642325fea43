//! Reading an approval body: one `UsageEvent` whose `Entity` is classified by shape (approval-and-pricing.md
//! §3.2) and parsed once, straight from its JSON text, with errors naming the JSON path of the bad member
//! (`Entity.PlanId`).

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use wap_types::{AdminSubscription, ApprovalEntity, ApprovalOperation, PlanAddonReference, UsageEvent};

/// A body that is not a valid approval request: the JSON path of the problem and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyError {
    pub(crate) path: String,
    pub(crate) message: String,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at {}: {}", self.path, self.message)
    }
}

/// A parsed approval call.
// Built once per request and moved into the approver: boxing the large variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum ParsedApproval {
    /// A subscription event (A, B, E).
    Subscription(UsageEvent<AdminSubscription>, ApprovalOperation),
    /// An add-on event (C, D, add-on update).
    AddOn(UsageEvent<PlanAddonReference>, ApprovalOperation),
}

impl ParsedApproval {
    pub(crate) fn event_id(&self) -> i64 {
        match self {
            ParsedApproval::Subscription(e, _) => e.event_id,
            ParsedApproval::AddOn(e, _) => e.event_id,
        }
    }

    pub(crate) fn operation(&self) -> ApprovalOperation {
        match self {
            ParsedApproval::Subscription(_, op) | ParsedApproval::AddOn(_, op) => *op,
        }
    }
}

/// Whether an object has `AddOnId` and no `SubscriptionID` (member names in any ASCII case).
struct Shape {
    add_on: bool,
}

impl<'de> serde::Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (AdminSubscription or PlanAddonReference)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                let (mut add_on_id, mut subscription_id) = (false, false);
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("AddOnId") {
                        add_on_id = true;
                    } else if key.eq_ignore_ascii_case("SubscriptionID") {
                        subscription_id = true;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
                Ok(Shape { add_on: add_on_id && !subscription_id })
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses the entity; only a failure pays for path tracking (a second parse that finds the bad member's path).
fn typed<T: serde::de::DeserializeOwned>(raw: &RawValue) -> Result<T, BodyError> {
    if let Ok(value) = serde_json::from_str(raw.get()) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." { "Entity".to_owned() } else { format!("Entity.{inner}") };
        BodyError { path, message: e.into_inner().to_string() }
    })
}

/// Parses an approval body (a UTF-8 BOM is tolerated).
pub(crate) fn parse_approval(body: &[u8]) -> Result<ParsedApproval, BodyError> {
    let body = wap_types::json::strip_bom(body);
    // Fast path without path tracking; a failure is parsed again to name the bad member.
    let event: UsageEvent<Box<RawValue>> = match serde_json::from_slice(body) {
        Ok(event) => event,
        Err(_) => wap_types::json::from_slice(body).map_err(|e| BodyError { path: e.path, message: e.message })?,
    };
    // Fast path: most calls are subscription events, and an entity that parses as a subscription has a
    // `SubscriptionID` (a required member), so it is one by the shape rule.
    let subscription = match serde_json::from_str::<AdminSubscription>(event.entity.get()).ok() {
        Some(subscription) => subscription,
        None => {
            let shape: Shape = typed(&event.entity)?;
            if shape.add_on {
                let entity: PlanAddonReference = typed(&event.entity)?;
                let event = event.map_entity(|_| ApprovalEntity::AddOn(entity));
                let operation = event.operation();
                return Ok(ParsedApproval::AddOn(
                    event.map_entity(|e| match e {
                        ApprovalEntity::AddOn(a) => a,
                        ApprovalEntity::Subscription(_) => PlanAddonReference::default(),
                    }),
                    operation,
                ));
            }
            typed(&event.entity)?
        }
    };
    let event = event.map_entity(|_| ApprovalEntity::Subscription(Box::new(subscription)));
    let operation = event.operation();
    Ok(ParsedApproval::Subscription(
        event.map_entity(|e| match e {
            ApprovalEntity::Subscription(s) => *s,
            ApprovalEntity::AddOn(_) => AdminSubscription::default(),
        }),
        operation,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wap_types::ApprovalRequest;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/spec/fixtures/approval/");
        std::fs::read(format!("{dir}{name}")).unwrap()
    }

    #[test]
    fn classification_and_content_match_wap_types() {
        for name in [
            "create-subscription.json",
            "delete-subscription.json",
            "update-subscription.json",
            "create-subscription-addon.json",
            "delete-subscription-addon.json",
        ] {
            let body = fixture(name);
            let reference: ApprovalRequest = wap_types::json::from_slice(&body).unwrap();
            let parsed = parse_approval(&body).unwrap();
            assert_eq!(parsed.operation(), reference.operation(), "{name}");
            assert_eq!(parsed.event_id(), reference.event_id, "{name}");
            match (&parsed, &reference.entity) {
                (ParsedApproval::Subscription(e, _), ApprovalEntity::Subscription(s)) => {
                    assert_eq!(&e.entity, s.as_ref(), "{name}");
                    assert_eq!(e.entity_parent_id, reference.entity_parent_id);
                    assert_eq!(e.raw_entity().get(), reference.raw_entity().get());
                }
                (ParsedApproval::AddOn(e, _), ApprovalEntity::AddOn(a)) => {
                    assert_eq!(&e.entity, a, "{name}");
                    assert_eq!(e.entity_parent_id, reference.entity_parent_id);
                }
                _ => panic!("{name}: classified differently"),
            }
        }
    }

    #[test]
    fn errors_name_the_member() {
        let err = parse_approval(
            br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": {"SubscriptionID": "s", "PlanId": 4}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "Entity.PlanId");
        let err = parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": [1]}"#).unwrap_err();
        assert_eq!(err.path, "Entity");
        let err = parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": null}"#).unwrap_err();
        assert!(err.message.contains("Entity"), "{err}");
        let err = parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST"}"#).unwrap_err();
        assert!(err.message.contains("Entity"), "{err}");
        let err = parse_approval(br#"{"EventId": true}"#).unwrap_err();
        assert_eq!(err.path, "EventId");
        // A member in another case still classifies (names are read ignoring case).
        let p = parse_approval(
            br#"{"eventid": 3, "state": 2, "method": "delete", "entity": {"addonid": "a"}, "entityparentid": "s"}"#,
        )
        .unwrap();
        assert_eq!(p.operation(), ApprovalOperation::DeleteSubscriptionAddOn);
    }
}
