//! The seven Usage Service feeds as a type-level list: each knows its path and its item type.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::catalog::{Plan, PlanAddon, PlanAddonReference, ResourceProviderReference};
use crate::event::UsageEvent;
use crate::subscription::AdminSubscription;
use crate::usage::UsageRecord;

/// Anything that carries a feed sequence number.
pub trait HasEventId {
    /// The `EventId`.
    fn event_id(&self) -> i64;
}

impl HasEventId for UsageRecord {
    fn event_id(&self) -> i64 {
        self.event_id
    }
}

impl<T> HasEventId for UsageEvent<T> {
    fn event_id(&self) -> i64 {
        self.event_id
    }
}

/// One feed of the Usage Service (port 30022).
pub trait Feed: Send + Sync + 'static {
    /// The path, with WAP's exact casing (`/usage`, `/billing/plans`, …).
    const PATH: &'static str;
    /// The runtime name of the feed.
    const KIND: FeedKind;
    /// One element of a page.
    type Item: DeserializeOwned + Serialize + HasEventId + Clone + fmt::Debug + Send + Sync + 'static;
}

/// A `/billing/*` feed: its items are [`UsageEvent`]s of `Entity`.
pub trait EventFeed: Feed<Item = UsageEvent<Self::Entity>> {
    /// The entity type of the feed's events.
    type Entity: DeserializeOwned + Serialize + Clone + fmt::Debug + Send + Sync + 'static;
}

macro_rules! feeds {
    ($( $(#[$m:meta])* $name:ident => $kind:ident, $path:literal, $item:ty $(, entity $entity:ty)?; )*) => {
        $(
            $(#[$m])*
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
            pub struct $name;

            impl Feed for $name {
                const PATH: &'static str = $path;
                const KIND: FeedKind = FeedKind::$kind;
                type Item = $item;
            }

            $( impl EventFeed for $name { type Entity = $entity; } )?
        )*
    };
}

feeds! {
    /// `/usage`: usage records.
    UsageFeed => Usage, "/usage", UsageRecord;
    /// `/billing/plans`: plan events.
    PlansFeed => Plans, "/billing/plans", UsageEvent<Plan>, entity Plan;
    /// `/billing/addons`: add-on events.
    AddonsFeed => Addons, "/billing/addons", UsageEvent<PlanAddon>, entity PlanAddon;
    /// `/billing/planAddons`: plan ↔ add-on link events (parent = plan).
    PlanAddonsFeed => PlanAddons, "/billing/planAddons", UsageEvent<PlanAddonReference>, entity PlanAddonReference;
    /// `/billing/planServices`: plan ↔ resource provider link events (parent = plan).
    PlanServicesFeed => PlanServices, "/billing/planServices", UsageEvent<ResourceProviderReference>, entity ResourceProviderReference;
    /// `/billing/subscriptions`: subscription events.
    SubscriptionsFeed => Subscriptions, "/billing/subscriptions", UsageEvent<AdminSubscription>, entity AdminSubscription;
    /// `/billing/subscriptionAddons`: subscription add-on events (parent = subscription).
    SubscriptionAddonsFeed => SubscriptionAddons, "/billing/subscriptionAddons", UsageEvent<PlanAddonReference>, entity PlanAddonReference;
}

/// The seven feeds, by name at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedKind {
    /// `/billing/plans`
    Plans,
    /// `/billing/addons`
    Addons,
    /// `/billing/planAddons`
    PlanAddons,
    /// `/billing/planServices`
    PlanServices,
    /// `/billing/subscriptions`
    Subscriptions,
    /// `/billing/subscriptionAddons`
    SubscriptionAddons,
    /// `/usage`
    Usage,
}

impl FeedKind {
    /// All seven feeds, event feeds in dependency order, then usage.
    pub const ALL: [FeedKind; 7] = [
        FeedKind::Plans,
        FeedKind::Addons,
        FeedKind::PlanAddons,
        FeedKind::PlanServices,
        FeedKind::Subscriptions,
        FeedKind::SubscriptionAddons,
        FeedKind::Usage,
    ];

    /// The six event feeds in the order a notification cycle drains them (docs/protocol/adapter-engine.md §6).
    pub const EVENT_FEEDS: [FeedKind; 6] = [
        FeedKind::Plans,
        FeedKind::Addons,
        FeedKind::PlanAddons,
        FeedKind::PlanServices,
        FeedKind::Subscriptions,
        FeedKind::SubscriptionAddons,
    ];

    /// The request path with WAP's casing.
    pub fn path(self) -> &'static str {
        match self {
            FeedKind::Usage => UsageFeed::PATH,
            FeedKind::Plans => PlansFeed::PATH,
            FeedKind::Addons => AddonsFeed::PATH,
            FeedKind::PlanAddons => PlanAddonsFeed::PATH,
            FeedKind::PlanServices => PlanServicesFeed::PATH,
            FeedKind::Subscriptions => SubscriptionsFeed::PATH,
            FeedKind::SubscriptionAddons => SubscriptionAddonsFeed::PATH,
        }
    }

    /// A short stable name (`usage`, `plans`, `addons`, `planAddons`, `planServices`, `subscriptions`,
    /// `subscriptionAddons`): the last path segment, used as a key in state stores and metrics.
    pub fn name(self) -> &'static str {
        let path = self.path();
        path.rsplit('/').next().unwrap_or(path)
    }

    /// The feed for a path (exact or any ASCII case, with or without a trailing slash).
    pub fn from_path(path: &str) -> Option<FeedKind> {
        let p = path.trim_end_matches('/');
        FeedKind::ALL.into_iter().find(|k| k.path().eq_ignore_ascii_case(p))
    }

    /// The feed for a [`name`](FeedKind::name) (any ASCII case).
    pub fn from_name(name: &str) -> Option<FeedKind> {
        FeedKind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Whether this is one of the six event feeds.
    pub fn is_event_feed(self) -> bool {
        self != FeedKind::Usage
    }
}

impl fmt::Display for FeedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
