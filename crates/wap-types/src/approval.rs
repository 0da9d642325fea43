//! The billing approval API: WAP's blocking question "may this happen?" (approval-and-pricing.md §3).

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

impl<'de> serde::Deserialize<'de> for ApprovalEntity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let has = |name: &str| map.keys().any(|k| k.eq_ignore_ascii_case(name));
        let is_add_on = has("AddOnId") && !has("SubscriptionID");
        let value = serde_json::Value::Object(map);
        if is_add_on {
            PlanAddonReference::deserialize(value).map(ApprovalEntity::AddOn).map_err(D::Error::custom)
        } else {
            AdminSubscription::deserialize(value)
                .map(|s| ApprovalEntity::Subscription(Box::new(s)))
                .map_err(D::Error::custom)
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
        match (entity, method) {
            (ApprovalEntity::Subscription(_), EventMethod::Post) => ApprovalOperation::CreateSubscription,
            (ApprovalEntity::Subscription(_), EventMethod::Delete) => ApprovalOperation::DeleteSubscription,
            (ApprovalEntity::Subscription(_), _) => ApprovalOperation::UpdateSubscription,
            (ApprovalEntity::AddOn(_), EventMethod::Post) => ApprovalOperation::CreateSubscriptionAddOn,
            (ApprovalEntity::AddOn(_), EventMethod::Delete) => ApprovalOperation::DeleteSubscriptionAddOn,
            (ApprovalEntity::AddOn(_), _) => ApprovalOperation::UpdateSubscriptionAddOn,
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
