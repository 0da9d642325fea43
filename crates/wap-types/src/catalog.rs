//! Plans, add-ons and their parts (docs/protocol/usage-service.md §3.5–§3.9, §3.11).
//!
//! In a Patch event only changed members are present, so every member except the identifier is an `Option`:
//! `None` means "missing or `null`" (unchanged, in a Patch). Collections read `null`, missing and `[]` alike
//! through [`OrEmpty::or_empty`](crate::OrEmpty::or_empty).

use crate::datetime::WapDateTime;
use crate::states::{ConfigState, PlanState, SyncState};
use crate::wire::wire_object;

wire_object! {
    /// A plan (`/billing/plans`).
    pub struct Plan {
        /// `Id`: the plan id.
        id: String => "Id", required;
        /// `DisplayName`: unique display name.
        display_name: Option<String> => "DisplayName";
        /// `State`: private, public or decommissioned.
        state: Option<PlanState> => "State";
        /// `ConfigState`.
        config_state: Option<ConfigState> => "ConfigState";
        /// `QuotaSyncState`.
        quota_sync_state: Option<SyncState> => "QuotaSyncState";
        /// `LastErrorMessage`.
        last_error_message: Option<String> => "LastErrorMessage";
        /// `Advertisements`: localized names.
        advertisements: Option<Vec<PlanAdvertisement>> => "Advertisements";
        /// `ServiceQuotas`: services and quotas.
        service_quotas: Option<Vec<ServiceQuota>> => "ServiceQuotas";
        /// `SubscriptionCount`.
        subscription_count: Option<i64> => "SubscriptionCount";
        /// `MaxSubscriptionsPerAccount`: -1 = unlimited.
        max_subscriptions_per_account: Option<i64> => "MaxSubscriptionsPerAccount";
        /// `AddOnReferences`: linked add-ons.
        add_on_references: Option<Vec<PlanAddonReference>> => "AddOnReferences";
        /// `AddOns` (read also as `Addons`).
        add_ons: Option<Vec<PlanAddon>> => "AddOns" | "Addons";
        /// `InvitationCode`.
        invitation_code: Option<String> => "InvitationCode";
        /// `Price` (a string).
        price: Option<String> => "Price";
    }
}

wire_object! {
    /// A plan add-on (`/billing/addons`).
    pub struct PlanAddon {
        /// `Id`: the add-on id.
        id: String => "Id", required;
        /// `DisplayName`.
        display_name: Option<String> => "DisplayName";
        /// `State`.
        state: Option<PlanState> => "State";
        /// `ConfigState`.
        config_state: Option<ConfigState> => "ConfigState";
        /// `QuotaSyncState`.
        quota_sync_state: Option<SyncState> => "QuotaSyncState";
        /// `LastErrorMessage`.
        last_error_message: Option<String> => "LastErrorMessage";
        /// `Advertisements`.
        advertisements: Option<Vec<PlanAdvertisement>> => "Advertisements";
        /// `ServiceQuotas`: the quota the add-on adds.
        service_quotas: Option<Vec<ServiceQuota>> => "ServiceQuotas";
        /// `SubscriptionCount`.
        subscription_count: Option<i64> => "SubscriptionCount";
        /// `AssociatedPlans`: linked plans.
        associated_plans: Option<Vec<Plan>> => "AssociatedPlans";
        /// `MaxOccurencesPerPlan` (the documentation's spelling; read also as `MaxOccurrencesPerPlan`).
        max_occurrences_per_plan: Option<i64> => "MaxOccurencesPerPlan" | "MaxOccurrencesPerPlan";
        /// `Price` (a string).
        price: Option<String> => "Price";
    }
}

wire_object! {
    /// A service and its quota in a plan or add-on.
    pub struct ServiceQuota {
        /// `ServiceName`: the resource provider name.
        service_name: String => "ServiceName";
        /// `ServiceInstanceId` (a GUID, often upper-case).
        service_instance_id: Option<String> => "ServiceInstanceId";
        /// `ServiceDisplayName`.
        service_display_name: Option<String> => "ServiceDisplayName";
        /// `ServiceInstanceDisplayName`.
        service_instance_display_name: Option<String> => "ServiceInstanceDisplayName";
        /// `ConfigState`.
        config_state: Option<ConfigState> => "ConfigState";
        /// `QuotaSyncState`.
        quota_sync_state: Option<SyncState> => "QuotaSyncState";
        /// `Settings`: often `[]`.
        settings: Option<Vec<ServiceQuotaSetting>> => "Settings";
    }
}

wire_object! {
    /// One quota setting: a resource-provider-defined key and a string value (often JSON text).
    pub struct ServiceQuotaSetting {
        /// `Key`.
        key: String => "Key", required;
        /// `Value`: always a string.
        value: String => "Value";
    }
}

impl ServiceQuotaSetting {
    /// A setting with the given key and value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        ServiceQuotaSetting { key: key.into(), value: value.into(), extra: Default::default() }
    }
}

wire_object! {
    /// A localized name and description of a plan or add-on.
    pub struct PlanAdvertisement {
        /// `LanguageCode`, e.g. `en-us`.
        language_code: String => "LanguageCode";
        /// `DisplayName`.
        display_name: Option<String> => "DisplayName";
        /// `Description`.
        description: Option<String> => "Description";
    }
}

wire_object! {
    /// A link to an add-on: on `/billing/subscriptionAddons` (an add-on bought by a subscription, parent =
    /// subscription) and `/billing/planAddons` (an add-on linked to a plan, parent = plan; shape decided).
    pub struct PlanAddonReference {
        /// `AddOnId`: the catalogue add-on id, the link's identifier. Never `null` on the wire
        /// (docs/protocol/usage-service.md §3.9), so not an `Option`, like `Id` and `SubscriptionID`; a record
        /// without it reads as an empty id rather than failing its page (the `planAddons` shape is a guess, docs/protocol/usage-service.md §2).
        add_on_id: String => "AddOnId";
        /// `AddOnInstanceId` (read also as `InstanceId`): the instance in a subscription, `null` at purchase.
        add_on_instance_id: Option<String> => "AddOnInstanceId" | "InstanceId";
        /// `AcquisitionTime` (read also as `AquisitionTime`).
        acquisition_time: Option<WapDateTime> => "AcquisitionTime" | "AquisitionTime";
    }
}

wire_object! {
    /// A resource provider linked to a plan (`/billing/planServices`; shape decided after the sample).
    pub struct ResourceProviderReference {
        /// `Name`: the resource provider name.
        name: String => "Name";
        /// `InstanceId`.
        instance_id: Option<String> => "InstanceId";
        /// `ConfigState`.
        config_state: Option<ConfigState> => "ConfigState";
    }
}
