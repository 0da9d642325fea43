//! The billing approval API: WAP's blocking question "may this happen?" (docs/protocol/approval-and-pricing.md §3).

use std::fmt;

use crate::catalog::PlanAddonReference;
use crate::event::UsageEvent;
use crate::method::EventMethod;
use crate::subscription::AdminSubscription;

/// The entity of an approval call, classified by its **shape**: an entity with `AddOnId` and without
/// `SubscriptionID` is an add-on event whatever the path (WAP's example C arrives at `subscriptions`); every other
/// entity is a subscription event.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalEntity {
    /// A subscription (operations A, B, E).
    Subscription(Box<AdminSubscription>),
    /// A subscription add-on (operations C, D); the subscription is the event's `EntityParentId`.
    AddOn(PlanAddonReference),
}

impl serde::Serialize for ApprovalEntity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ApprovalEntity::Subscription(v) => v.serialize(s),
            ApprovalEntity::AddOn(v) => v.serialize(s),
        }
    }
}

/// The members that decide an approval entity's shape.
#[derive(Default)]
struct EntityShape {
    has_add_on_id: bool,
    has_subscription_id: bool,
}

impl<'de> serde::Deserialize<'de> for EntityShape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EntityShape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object (an AdminSubscription or a PlanAddonReference)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<EntityShape, A::Error> {
                let mut shape = EntityShape::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key.eq_ignore_ascii_case("AddOnId") {
                        shape.has_add_on_id = true;
                    } else if key.eq_ignore_ascii_case("SubscriptionID") {
                        shape.has_subscription_id = true;
                    }
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(shape)
            }
        }
        d.deserialize_map(V)
    }
}

/// Parses a nested document; on failure the error names the path inside it (joined by [`crate::json`]).
fn parse_nested<T: serde::de::DeserializeOwned, E: serde::de::Error>(text: &str) -> Result<T, E> {
    if let Ok(v) = serde_json::from_str(text) {
        return Ok(v);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            E::custom(e.into_inner())
        } else {
            E::custom(format_args!("{}{path}`: {}", crate::event::NESTED_PATH_PREFIX, e.into_inner()))
        }
    })
}

impl<'de> serde::Deserialize<'de> for ApprovalEntity {
    /// Reads the entity once as raw JSON, classifies it by its member names, then parses the typed entity.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        // Fast path: an entity that parses as a subscription has `SubscriptionID` (a required member), so it is
        // one by the shape rule; most approval calls are subscription events.
        if let Ok(subscription) = serde_json::from_str::<AdminSubscription>(raw.get()) {
            return Ok(ApprovalEntity::Subscription(Box::new(subscription)));
        }
        let shape: EntityShape = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if shape.has_add_on_id && !shape.has_subscription_id {
            parse_nested(raw.get()).map(ApprovalEntity::AddOn)
        } else {
            parse_nested(raw.get()).map(|s| ApprovalEntity::Subscription(Box::new(s)))
        }
    }
}

/// The body of an approval call: one [`UsageEvent`] with `State` = 2 (PendingApproval).
pub type ApprovalRequest = UsageEvent<ApprovalEntity>;

/// What an approval call asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalOperation {
    /// A: create a subscription.
    CreateSubscription,
    /// B: delete a subscription.
    DeleteSubscription,
    /// C: add an add-on to a subscription.
    CreateSubscriptionAddOn,
    /// D: remove an add-on from a subscription.
    DeleteSubscriptionAddOn,
    /// E: update a subscription: always approved.
    UpdateSubscription,
    /// An add-on event with a verb other than create or delete: approved like an update.
    UpdateSubscriptionAddOn,
}

impl ApprovalOperation {
    /// Classifies an approval call: entity shape first, then the body's `Method` (Post, including `"0"` →
    /// create; Delete → delete; anything else → update).
    pub fn classify(entity: &ApprovalEntity, method: &EventMethod) -> Self {
        match entity {
            ApprovalEntity::Subscription(_) => ApprovalOperation::for_subscription(method),
            ApprovalEntity::AddOn(_) => ApprovalOperation::for_add_on(method),
        }
    }

    /// The operation of a call whose entity is a subscription: Post (including `"0"`) → create, Delete → delete,
    /// anything else → update.
    pub fn for_subscription(method: &EventMethod) -> Self {
        match method {
            EventMethod::Post => ApprovalOperation::CreateSubscription,
            EventMethod::Delete => ApprovalOperation::DeleteSubscription,
            _ => ApprovalOperation::UpdateSubscription,
        }
    }

    /// The operation of a call whose entity is an add-on reference: Post (including `"0"`) → create, Delete →
    /// delete, anything else → update.
    pub fn for_add_on(method: &EventMethod) -> Self {
        match method {
            EventMethod::Post => ApprovalOperation::CreateSubscriptionAddOn,
            EventMethod::Delete => ApprovalOperation::DeleteSubscriptionAddOn,
            _ => ApprovalOperation::UpdateSubscriptionAddOn,
        }
    }

    /// Whether WAP requires this operation to be approved (updates).
    pub fn is_always_approved(self) -> bool {
        matches!(self, ApprovalOperation::UpdateSubscription | ApprovalOperation::UpdateSubscriptionAddOn)
    }

    /// The path segment WAP appends to the subscriber endpoint for this operation.
    pub fn path_segment(self) -> &'static str {
        match self {
            ApprovalOperation::CreateSubscription
            | ApprovalOperation::DeleteSubscription
            | ApprovalOperation::UpdateSubscription => "subscriptions",
            ApprovalOperation::CreateSubscriptionAddOn
            | ApprovalOperation::DeleteSubscriptionAddOn
            | ApprovalOperation::UpdateSubscriptionAddOn => "subscriptionAddons",
        }
    }
}

impl fmt::Display for ApprovalOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApprovalOperation::CreateSubscription => "create subscription",
            ApprovalOperation::DeleteSubscription => "delete subscription",
            ApprovalOperation::CreateSubscriptionAddOn => "create subscription add-on",
            ApprovalOperation::DeleteSubscriptionAddOn => "delete subscription add-on",
            ApprovalOperation::UpdateSubscription => "update subscription",
            ApprovalOperation::UpdateSubscriptionAddOn => "update subscription add-on",
        })
    }
}

impl UsageEvent<ApprovalEntity> {
    /// The operation this approval call asks about.
    pub fn operation(&self) -> ApprovalOperation {
        ApprovalOperation::classify(&self.entity, &self.method)
    }
}

/// An approval decision and its HTTP status (approve → 204, deny → 403).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Let the tenant's action happen.
    Approve,
    /// Refuse it, with a short reason (sent as the 403 body).
    Deny {
        /// Why (one line, no secrets: WAP may show or log it).
        reason: String,
    },
}

impl Decision {
    /// A denial with a reason.
    pub fn deny(reason: impl Into<String>) -> Self {
        Decision::Deny { reason: reason.into() }
    }

    /// The status answered to WAP: 204 to approve, 403 to deny.
    pub fn status_code(&self) -> u16 {
        match self {
            Decision::Approve => 204,
            Decision::Deny { .. } => 403,
        }
    }

    /// How WAP reads a subscriber's status: below 400 approves, 400 or above denies.
    pub fn from_status(status: u16) -> Self {
        if status < 400 {
            Decision::Approve
        } else {
            Decision::Deny { reason: format!("subscriber answered {status}") }
        }
    }

    /// Whether this approves.
    pub fn is_approve(&self) -> bool {
        matches!(self, Decision::Approve)
    }
}
