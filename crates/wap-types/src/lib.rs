#![doc = include_str!("../README.md")]

mod wire;

pub mod approval;
pub mod auth;
#[cfg(feature = "body")]
pub mod body;
pub mod catalog;
pub mod collections;
pub mod cursor;
pub mod datetime;
mod error;
pub mod event;
pub mod feed;
pub mod json;
pub mod method;
pub mod pricing;
pub mod rp;
pub mod secret;
pub mod settings;
pub mod states;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usage;

pub use approval::{ApprovalEntity, ApprovalOperation, ApprovalRequest, Decision};
pub use auth::BasicCredentials;
pub use catalog::{
    Plan, PlanAddon, PlanAddonReference, PlanAdvertisement, ResourceProviderReference, ServiceQuota,
    ServiceQuotaSetting,
};
pub use collections::{OrEmpty, StringMap};
pub use cursor::{LastId, StartId, StartIdMode};
pub use datetime::WapDateTime;
pub use error::{Error, Result};
pub use event::UsageEvent;
pub use feed::{
    AddonsFeed, EventFeed, Feed, FeedKind, HasEventId, PlanAddonsFeed, PlanServicesFeed, PlansFeed,
    SubscriptionAddonsFeed, SubscriptionsFeed, UsageFeed,
};
pub use json::JsonError;
pub use method::EventMethod;
pub use pricing::{AddonPriceQuery, PlanPriceQuery, PriceAnswer, PriceEncoding};
pub use rp::{
    LifecycleState, QuotaUpdateBatch, QuotaUpdateResultBatch, ResourceProvider, ResourceProviderError,
    RpSubscriptionState, RpUsageRecord, ServiceUsageSummary, Subscription,
};
pub use secret::Secret;
pub use settings::{SecretSource, SettingProblem};
pub use states::{AdminSubscriptionState, ConfigState, NotificationState, PlanState, PullAction, SyncState, UserState};
pub use subscription::{AdminSubscription, SubscriptionService, User};
pub use usage::UsageRecord;
pub use wire::Extra;

/// Whether two WAP ids (GUIDs) are the same, ignoring ASCII case (WAP sends both cases).
pub fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}
