//! Reading an approval body: one `UsageEvent` whose `Entity` is classified by shape
//! (docs/protocol/approval-and-pricing.md §3.2) and parsed once, straight from its JSON text, with errors naming the JSON path of the bad member
//! (`Entity.PlanId`).

use std::fmt;

use wap_types::{
    AdminSubscription, ApprovalEntity, ApprovalOperation, ApprovalRequest, EventMethod, PlanAddonReference, UsageEvent,
};

use crate::cache::RequestIdentity;
use crate::routing::Route;

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

    /// The body's `Method`, as read (after `MethodNumericOrdinals`).
    pub(crate) fn method(&self) -> &EventMethod {
        match self {
            ParsedApproval::Subscription(e, _) => &e.method,
            ParsedApproval::AddOn(e, _) => &e.method,
        }
    }

    /// The verb as sent when it is none of Post, Put, Patch, Delete (their WAP spellings, and `"0"`; `"1"`–`"3"`
    /// with `MethodNumericOrdinals`): such a call is not guessed to be an update (docs/protocol/approval-and-pricing.md §3.2).
    pub(crate) fn unknown_verb(&self) -> Option<&str> {
        match self.method() {
            EventMethod::Other(raw) => Some(raw),
            _ => None,
        }
    }

    /// What an earlier answer may be repeated for: `EventId`, route, operation and the entity's ids.
    pub(crate) fn identity(&self, route: Route) -> RequestIdentity {
        let (subscription_id, add_on_id, plan_id) = match self {
            ParsedApproval::Subscription(e, _) => {
                (Some(e.entity.subscription_id.clone()), None, e.entity.plan_id.clone())
            }
            ParsedApproval::AddOn(e, _) => (e.entity_parent_id.clone(), Some(e.entity.add_on_id.clone()), None),
        };
        RequestIdentity {
            event_id: self.event_id(),
            route,
            operation: self.operation(),
            subscription_id,
            add_on_id,
            plan_id,
        }
    }
}

/// Parses an approval body (a UTF-8 BOM is tolerated) with wap-types' [`ApprovalRequest`]: the entity is classified
/// by shape and parsed once; errors name the JSON path of the bad member (`Entity.PlanId`). With
/// `numeric_ordinals` (`MethodNumericOrdinals`, as the engine reads its feeds), `"1"`, `"2"`, `"3"` are Put, Patch,
/// Delete.
pub(crate) fn parse_approval(body: &[u8], numeric_ordinals: bool) -> Result<ParsedApproval, BodyError> {
    let read_method = |method: EventMethod| if numeric_ordinals { method.with_numeric_ordinals() } else { method };
    // Fast path: most calls carry a subscription, and an entity that parses as one (it has the required
    // `SubscriptionID`) is one by the shape rule, so parsing `UsageEvent<AdminSubscription>` directly (in one pass
    // over the entity) gives what the general path gives. Anything else takes the general path, which
    // classifies add-ons and names the bad member of a malformed body.
    if let Some(mut event) = UsageEvent::<AdminSubscription>::try_from_slice(body) {
        event.method = read_method(std::mem::replace(&mut event.method, EventMethod::Post));
        let operation = ApprovalOperation::for_subscription(&event.method);
        return Ok(ParsedApproval::Subscription(Box::new(event), operation));
    }
    let mut request: ApprovalRequest =
        wap_types::json::from_slice(body).map_err(|e| BodyError { path: e.path, message: e.message })?;
    request.method = read_method(std::mem::replace(&mut request.method, EventMethod::Post));
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
            let parsed = parse_approval(&body, false).unwrap();
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
            false,
        )
        .unwrap_err();
        assert_eq!(err.path, "Entity.PlanId");
        let err = parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": [1]}"#, false).unwrap_err();
        assert_eq!(err.path, "Entity");
        let err =
            parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST", "Entity": null}"#, false).unwrap_err();
        assert!(err.message.contains("Entity"), "{err}");
        let err = parse_approval(br#"{"EventId": 1, "State": 2, "Method": "POST"}"#, false).unwrap_err();
        assert!(err.message.contains("Entity"), "{err}");
        let err = parse_approval(br#"{"EventId": true}"#, false).unwrap_err();
        assert_eq!(err.path, "EventId");
        // A member in another case still classifies (names are read ignoring case).
        let p = parse_approval(
            br#"{"eventid": 3, "state": 2, "method": "delete", "entity": {"addonid": "a"}, "entityparentid": "s"}"#,
            false,
        )
        .unwrap();
        assert_eq!(p.operation(), ApprovalOperation::DeleteSubscriptionAddOn);
    }

    #[test]
    fn verbs_follow_the_numeric_ordinals_setting_and_unknown_ones_are_reported() {
        let body = |method: &str| {
            format!(r#"{{"EventId": 5, "State": 2, "Method": {method}, "Entity": {{"SubscriptionID": "s"}}}}"#)
        };
        for (method, ordinals, op, unknown) in [
            (r#""POST""#, false, ApprovalOperation::CreateSubscription, None),
            (r#""0""#, false, ApprovalOperation::CreateSubscription, None),
            (r#""Put""#, false, ApprovalOperation::UpdateSubscription, None),
            (r#""Patch""#, false, ApprovalOperation::UpdateSubscription, None),
            (r#""DELETE""#, false, ApprovalOperation::DeleteSubscription, None),
            (r#""3""#, true, ApprovalOperation::DeleteSubscription, None),
            (r#"3"#, true, ApprovalOperation::DeleteSubscription, None),
            (r#""1""#, true, ApprovalOperation::UpdateSubscription, None),
            (r#""3""#, false, ApprovalOperation::UpdateSubscription, Some("3")),
            (r#""Create""#, false, ApprovalOperation::UpdateSubscription, Some("Create")),
            (r#""""#, true, ApprovalOperation::UpdateSubscription, Some("")),
        ] {
            let parsed = parse_approval(body(method).as_bytes(), ordinals).unwrap();
            assert_eq!(parsed.unknown_verb(), unknown, "{method} ordinals={ordinals}");
            if unknown.is_none() {
                assert_eq!(parsed.operation(), op, "{method} ordinals={ordinals}");
            }
        }
    }
}
