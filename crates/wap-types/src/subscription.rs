//! Admin subscriptions and users (docs/protocol/usage-service.md §3.10–§3.11).

use crate::catalog::{PlanAddon, PlanAddonReference, ServiceQuotaSetting};
use crate::datetime::WapDateTime;
use crate::states::{AdminSubscriptionState, SyncState, UserState};
use crate::wire::wire_object;

wire_object! {
    /// A tenant subscription as the Usage Service and approval calls send it, with the **admin** state
    /// numbering ([`AdminSubscriptionState`]).
    ///
    /// Every member but the id is optional because a Patch carries only changed members.
    pub struct AdminSubscription {
        /// `SubscriptionID` (capital `ID`; read also as `SubscriptionId`).
        subscription_id: String => "SubscriptionID" | "SubscriptionId", required;
        /// `SubscriptionName`.
        subscription_name: Option<String> => "SubscriptionName";
        /// `AccountAdminLiveEmailId`: the tenant user (e-mail).
        account_admin_live_email_id: Option<String> => "AccountAdminLiveEmailId";
        /// `ServiceAdminLiveEmailId`.
        service_admin_live_email_id: Option<String> => "ServiceAdminLiveEmailId";
        /// `CoAdminNames`: `null` and `[]` both occur.
        co_admin_names: Option<Vec<String>> => "CoAdminNames";
        /// `AddOnReferences`.
        add_on_references: Option<Vec<PlanAddonReference>> => "AddOnReferences";
        /// `AddOns` (read also as `Addons`).
        add_ons: Option<Vec<PlanAddon>> => "AddOns" | "Addons";
        /// `State`: admin numbering (0 None, 1 Active, 2 Suspended, 3 DeletePending).
        state: Option<AdminSubscriptionState> => "State";
        /// `QuotaSyncState`.
        quota_sync_state: Option<SyncState> => "QuotaSyncState";
        /// `ActivationSyncState`.
        activation_sync_state: Option<SyncState> => "ActivationSyncState";
        /// `PlanId`.
        plan_id: Option<String> => "PlanId";
        /// `Services`: one per resource provider.
        services: Option<Vec<SubscriptionService>> => "Services";
        /// `LastErrorMessage`.
        last_error_message: Option<String> => "LastErrorMessage";
        /// `Features` (opaque).
        features: Option<Vec<serde_json::Value>> => "Features";
        /// `OfferFriendlyName`.
        offer_friendly_name: Option<String> => "OfferFriendlyName";
        /// `OfferCategory`.
        offer_category: Option<String> => "OfferCategory";
        /// `Created`: `0001-01-01T00:00:00` means not set.
        created: Option<WapDateTime> => "Created";
    }
}

impl AdminSubscription {
    /// A subscription with only its id set.
    pub fn with_id(subscription_id: impl Into<String>) -> Self {
        AdminSubscription { subscription_id: subscription_id.into(), ..Default::default() }
    }
}

wire_object! {
    /// One resource provider's service in a subscription.
    pub struct SubscriptionService {
        /// `Type`: the resource provider name.
        service_type: String => "Type";
        /// `State`: service state text.
        state: Option<String> => "State";
        /// `QuotaSyncState`.
        quota_sync_state: Option<SyncState> => "QuotaSyncState";
        /// `ActivationSyncState`.
        activation_sync_state: Option<SyncState> => "ActivationSyncState";
        /// `BaseQuotaSettings`.
        base_quota_settings: Option<Vec<ServiceQuotaSetting>> => "BaseQuotaSettings";
    }
}

wire_object! {
    /// A WAP user (tenant account). No endpoint serves it; defined for completeness.
    pub struct User {
        /// `Name`: the user name (e-mail).
        name: String => "Name", required;
        /// `Email`.
        email: Option<String> => "Email";
        /// `State`.
        state: Option<UserState> => "State";
        /// `CreatedTime`.
        created_time: Option<WapDateTime> => "CreatedTime";
        /// `SubscriptionCount`.
        subscription_count: Option<i64> => "SubscriptionCount";
        /// `ActivationSyncState`.
        activation_sync_state: Option<SyncState> => "ActivationSyncState";
        /// `LastErrorMessage`.
        last_error_message: Option<String> => "LastErrorMessage";
    }
}
