//! Reading an approval body: one `UsageEvent` whose `Entity` is classified by shape (approval-and-pricing.md
//! §3.2) and parsed once, straight from its JSON text, with errors naming the JSON path of the bad member
//! (`Entity.PlanId`).

use std::fmt;

use wap_types::{
    AdminSubscription, ApprovalEntity, ApprovalOperation, ApprovalRequest, PlanAddonReference, UsageEvent,
};

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
#[derive(Debug)]
pub(crate) enum ParsedApproval {
    /// A subscription event (A, B, E). Boxed: the request's futures move it several times before the approver.
    Subscription(Box<UsageEvent<AdminSubscription>>, ApprovalOperation),
    /// An add-on event (C, D, add-on update).
    AddOn(Box<UsageEvent<PlanAddonReference>>, ApprovalOperation),
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

/// Parses an approval body (a UTF-8 BOM is tolerated) with wap-types' [`ApprovalRequest`]: the entity is classified
/// by shape and parsed once; errors name the JSON path of the bad member (`Entity.PlanId`).
pub(crate) fn parse_approval(body: &[u8]) -> Result<ParsedApproval, BodyError> {
    // Fast path: most calls carry a subscription, and an entity that parses as one (it has the required
    // `SubscriptionID`) is one by the shape rule, so parsing `UsageEvent<AdminSubscription>` directly (in one pass
    // over the entity) gives what the general path gives. Anything else takes the general path, which
    // classifies add-ons and names the bad member of a malformed body.
    if let Some(event) = UsageEvent::<AdminSubscription>::try_from_slice(body) {
        let operation = ApprovalOperation::for_subscription(&event.method);
        return Ok(ParsedApproval::Subscription(Box::new(event), operation));
    }
    let request: ApprovalRequest =
        wap_types::json::from_slice(body).map_err(|e| BodyError { path: e.path, message: e.message })?;
    let operation = request.operation();
    Ok(match request.entity {
        ApprovalEntity::Subscription(_) => ParsedApproval::Subscription(
            Box::new(request.map_entity(|e| match e {
                ApprovalEntity::Subscription(s) => *s,
                ApprovalEntity::AddOn(_) => AdminSubscription::default(),
            })),
            operation,
        ),
        ApprovalEntity::AddOn(_) => ParsedApproval::AddOn(
            Box::new(request.map_entity(|e| match e {
                ApprovalEntity::AddOn(a) => a,
                ApprovalEntity::Subscription(_) => PlanAddonReference::default(),
            })),
            operation,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                    assert_eq!(e.raw_entity(), reference.raw_entity());
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
