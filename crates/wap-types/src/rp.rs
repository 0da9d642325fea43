//! The resource provider contract: notification objects, the RP usage record and the registration object
//! (docs/protocol/resource-provider.md).
//!
//! The RP-side [`Subscription`] uses its **own** state numbering ([`RpSubscriptionState`]), distinct from
//! [`AdminSubscriptionState`](crate::AdminSubscriptionState): a suspension is `1` here and `2` on the billing feed.

use std::fmt;

use chrono::TimeDelta;

use crate::catalog::ServiceQuotaSetting;
use crate::collections::StringMap;
use crate::datetime::WapDateTime;
use crate::secret::Secret;
use crate::usage::UsageRecord;
use crate::wire::{wire_int_enum, wire_object};

wire_int_enum! {
    /// `Subscription.State` on a resource provider (the **RP** numbering).
    #[derive(Default)]
    pub enum RpSubscriptionState {
        /// 0: active.
        #[default]
        Active = 0,
        /// 1: suspended.
        Suspended = 1,
        /// 2: being deleted.
        DeletePending = 2,
    }
}

wire_int_enum! {
    /// `Subscription.LifecycleState`: provisioning progress of an asynchronous resource provider.
    pub enum LifecycleState {
        /// 0: done.
        Provisioned = 0,
        /// 1: being created (answered with 202).
        Provisioning = 1,
        /// 2: being updated.
        Updating = 2,
        /// 3: being deleted.
        Deleting = 3,
        /// 4: deleted.
        Deleted = 4,
        /// 5: failed; see `LastErrorMessage`.
        OutOfSync = 5,
    }
}

wire_int_enum! {
    /// `AuthenticationMode` of a registered endpoint (default Basic, as the spec requires of resource providers).
    #[derive(Default)]
    pub enum AuthenticationMode {
        /// 0: none.
        None = 0,
        /// 1: HTTP Basic.
        #[default]
        Basic = 1,
        /// 2: Windows.
        Windows = 2,
    }
}

wire_int_enum! {
    /// `ResourceProvider.Type`.
    pub enum ResourceProviderType {
        /// 0: a standard resource provider.
        Standard = 0,
        /// 1: a usage provider.
        UsageProvider = 1,
        /// 2: a cloud service provider.
        CloudServiceProvider = 2,
    }
}

wire_object! {
    /// A subscription as WAP sends it to a resource provider (create/update bodies, get responses).
    pub struct Subscription {
        /// `SubscriptionId` (read also as `SubscriptionID`).
        subscription_id: String => "SubscriptionId" | "SubscriptionID", required;
        /// `SubscriptionName`.
        subscription_name: Option<String> => "SubscriptionName";
        /// `State`: the **RP** numbering (0 Active, 1 Suspended, 2 DeletePending).
        state: RpSubscriptionState => "State";
        /// `LifecycleState` (read also as `LifeCycleState`): required only for asynchronous providers.
        lifecycle_state: Option<LifecycleState> => "LifecycleState" | "LifeCycleState";
        /// `LastErrorMessage`.
        last_error_message: Option<String> => "LastErrorMessage";
        /// `QuotaSettings`.
        quota_settings: Option<Vec<ServiceQuotaSetting>> => "QuotaSettings";
        /// `AdminId`: the account admin (e-mail).
        admin_id: Option<String> => "AdminId";
        /// `CoAdminIds` (read also as `CoAdmins`).
        co_admin_ids: Option<Vec<String>> => "CoAdminIds" | "CoAdmins";
    }
}

wire_object! {
    /// The body of Update Quota and Validate Quota (`PUT quota`).
    pub struct QuotaUpdateBatch {
        /// `BaseQuota`: the plan quota.
        base_quota: Option<Vec<ServiceQuotaSetting>> => "BaseQuota";
        /// `AddOnQuotas`: one list per add-on.
        add_on_quotas: Option<Vec<Vec<ServiceQuotaSetting>>> => "AddOnQuotas";
        /// `SubscriptionIdsToUpdate`.
        subscription_ids_to_update: Option<Vec<String>> => "SubscriptionIdsToUpdate";
    }
}

wire_object! {
    /// The answer of Update Quota.
    pub struct QuotaUpdateResultBatch {
        /// `UpdatedSubscriptionIds`: applied.
        updated_subscription_ids: Option<Vec<String>> => "UpdatedSubscriptionIds";
        /// `FailedSubscriptionIds`: not applied (WAP marks them out of sync).
        failed_subscription_ids: Option<Vec<String>> => "FailedSubscriptionIds";
        /// `Error`: one representative error, `null` on success.
        error: Option<ResourceProviderError> => "Error";
    }
}

wire_object! {
    /// The error body of every 4xx/5xx a resource provider answers.
    pub struct ResourceProviderError {
        /// `Code`.
        code: String => "Code";
        /// `Message`: localized per `Accept-Language`.
        message: String => "Message";
        /// `ExtendedCode`.
        extended_code: Option<String> => "ExtendedCode";
        /// `MessageTemplate`.
        message_template: Option<String> => "MessageTemplate";
        /// `Parameters`.
        parameters: Option<Vec<String>> => "Parameters";
        /// `InnerErrors`.
        inner_errors: Option<Vec<ResourceProviderError>> => "InnerErrors";
    }
}

impl ResourceProviderError {
    /// An error with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ResourceProviderError { code: code.into(), message: message.into(), ..Default::default() }
    }
}

impl fmt::Display for ResourceProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ResourceProviderError {}

wire_object! {
    /// The answer of Get Subscription Usage Summary.
    pub struct ServiceUsageSummary {
        /// `ServiceName`: the resource provider name.
        service_name: String => "ServiceName";
        /// `ServiceDisplayName`.
        service_display_name: Option<String> => "ServiceDisplayName";
        /// `RetrievedSuccessfully`.
        retrieved_successfully: bool => "RetrievedSuccessfully";
        /// `ErrorMessage`: why retrieval failed.
        error_message: Option<String> => "ErrorMessage";
        /// `Usages`.
        usages: Option<Vec<ServiceUsage>> => "Usages";
    }
}

wire_object! {
    /// One line of a usage summary (`Usage` in the documentation).
    pub struct ServiceUsage {
        /// `DisplayName`.
        display_name: Option<String> => "DisplayName";
        /// `CurrentValue`.
        current_value: i64 => "CurrentValue";
        /// `Limit` (-1 = unlimited).
        limit: i64 => "Limit";
        /// `UnitDisplayName`.
        unit_display_name: Option<String> => "UnitDisplayName";
        /// `GroupId`.
        group_id: Option<String> => "GroupId";
        /// `GroupDisplayName`.
        group_display_name: Option<String> => "GroupDisplayName";
    }
}

wire_object! {
    /// One record of a resource provider's `GET usage?lastID=&batchSize=` answer.
    pub struct RpUsageRecord {
        /// `EventId`: unique, ≥ 1, strictly increasing; comes back as `lastID`.
        event_id: i64 => "EventId", required;
        /// `ExternalRecordId`: contract only; omitted by providers.
        external_record_id: Option<String> => "ExternalRecordId";
        /// `ProviderName`: contract only; the collector fills it.
        provider_name: Option<String> => "ProviderName";
        /// `ResourceId`: the resource name when aggregating per resource.
        resource_id: Option<String> => "ResourceId";
        /// `StartTime`.
        start_time: WapDateTime => "StartTime", required;
        /// `EndTime`.
        end_time: WapDateTime => "EndTime", required;
        /// `ServiceType`, e.g. `Default`.
        service_type: Option<String> => "ServiceType";
        /// `SubscriptionId`.
        subscription_id: String => "SubscriptionId" | "SubscriptionID", required;
        /// `Properties`.
        properties: Option<StringMap> => "Properties";
        /// `Resources`: the meters, values as strings.
        resources: StringMap => "Resources";
    }
}

impl RpUsageRecord {
    /// The record as WAP's usage collector stores it on the Usage Service: `ProviderName` = the resource
    /// provider's name, `ExternalRecordId` = this record's `EventId`, `EventId` = the Usage Service's sequence.
    pub fn into_usage_record(self, usage_service_event_id: i64, provider_name: &str) -> UsageRecord {
        UsageRecord {
            event_id: usage_service_event_id,
            external_record_id: Some(self.event_id.to_string()),
            resource_id: self.resource_id,
            start_time: self.start_time,
            end_time: self.end_time,
            provider_name: Some(provider_name.to_owned()),
            service_type: self.service_type,
            subscription_id: self.subscription_id,
            properties: self.properties,
            resources: self.resources,
            extra: self.extra,
        }
    }
}

wire_object! {
    /// A registered endpoint of a resource provider.
    pub struct Endpoint {
        /// `ForwardingAddress`: the base URL WAP calls.
        forwarding_address: String => "ForwardingAddress", required;
        /// `AuthenticationMode`.
        authentication_mode: AuthenticationMode => "AuthenticationMode";
        /// `AuthenticationUsername` (read also as `AuthenticationUserName`).
        authentication_username: Option<String> => "AuthenticationUsername" | "AuthenticationUserName";
        /// `AuthenticationPassword` (redacted in `Debug`).
        authentication_password: Option<Secret> => "AuthenticationPassword";
    }
}

wire_object! {
    /// The tenant endpoint: an [`Endpoint`] plus the URI translation templates.
    pub struct TenantEndpoint {
        /// `ForwardingAddress`.
        forwarding_address: String => "ForwardingAddress", required;
        /// `AuthenticationMode`.
        authentication_mode: AuthenticationMode => "AuthenticationMode";
        /// `AuthenticationUsername` (read also as `AuthenticationUserName`).
        authentication_username: Option<String> => "AuthenticationUsername" | "AuthenticationUserName";
        /// `AuthenticationPassword` (redacted in `Debug`).
        authentication_password: Option<Secret> => "AuthenticationPassword";
        /// `SourceUriTemplate`, e.g. `{subid}/services/sqlservers/{*path}`.
        source_uri_template: Option<String> => "SourceUriTemplate";
        /// `TargetUriTemplate`, e.g. `{subid}/{*path}`.
        target_uri_template: Option<String> => "TargetUriTemplate";
    }
}

wire_object! {
    /// The registration object of a resource provider (`POST /resourceproviders` on the Admin API).
    pub struct ResourceProvider {
        /// `Name`: also the `services/<name>` segment and `ServiceName` in quotas and usage.
        name: String => "Name", required;
        /// `DisplayName`.
        display_name: Option<String> => "DisplayName";
        /// `Description`.
        description: Option<String> => "Description";
        /// `Enabled`.
        enabled: bool => "Enabled";
        /// `PassThroughEnabled`: admin/tenant proxying.
        pass_through_enabled: bool => "PassThroughEnabled";
        /// `AllowAnonymousAccess`.
        allow_anonymous_access: bool => "AllowAnonymousAccess";
        /// `AllowMultipleInstances`.
        allow_multiple_instances: bool => "AllowMultipleInstances";
        /// `AdminEndpoint`.
        admin_endpoint: Option<Endpoint> => "AdminEndpoint";
        /// `TenantEndpoint`.
        tenant_endpoint: Option<TenantEndpoint> => "TenantEndpoint";
        /// `UsageEndpoint`.
        usage_endpoint: Option<Endpoint> => "UsageEndpoint";
        /// `HealthCheckEndpoint` (registration field only).
        health_check_endpoint: Option<Endpoint> => "HealthCheckEndpoint";
        /// `NotificationEndpoint`.
        notification_endpoint: Option<Endpoint> => "NotificationEndpoint";
        /// `InstanceId` (a GUID; optional on create).
        instance_id: Option<String> => "InstanceId";
        /// `InstanceDisplayName`.
        instance_display_name: Option<String> => "InstanceDisplayName";
        /// `MaxQuotaUpdateBatchSize`: most subscriptions per Update Quota call (default 5).
        max_quota_update_batch_size: Option<i64> => "MaxQuotaUpdateBatchSize";
        /// `SubscriptionStatusPollingInterval` (a .NET TimeSpan; default `00:00:10`).
        subscription_status_polling_interval: Option<TimeSpan> => "SubscriptionStatusPollingInterval";
        /// `Type`.
        provider_type: Option<ResourceProviderType> => "Type";
        /// `Settings`: key/value strings.
        settings: Option<Vec<ServiceQuotaSetting>> => "Settings";
    }
}

/// A .NET `TimeSpan` as text: read `[-][d.]hh:mm:ss[.fffffff]`, written `hh:mm:ss` (or `d.hh:mm:ss` from 24 h,
/// with a 7-digit fraction when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TimeSpan(pub TimeDelta);

impl TimeSpan {
    /// A span of whole seconds.
    pub fn from_secs(secs: i64) -> Self {
        TimeSpan(TimeDelta::seconds(secs))
    }

    /// Parses the .NET constant form.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let (neg, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let mut parts = t.split(':');
        let (h_part, m_part, s_part) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let (days, hours) = match h_part.split_once('.') {
            Some((d, h)) => (d.parse::<i64>().ok()?, h.parse::<i64>().ok()?),
            None => (0, h_part.parse::<i64>().ok()?),
        };
        let minutes = m_part.parse::<i64>().ok()?;
        let (secs, ticks) = match s_part.split_once('.') {
            Some((s, f)) => {
                if f.is_empty() || f.len() > 7 || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let mut ticks = f.parse::<i64>().ok()?;
                for _ in f.len()..7 {
                    ticks *= 10;
                }
                (s.parse::<i64>().ok()?, ticks)
            }
            None => (s_part.parse::<i64>().ok()?, 0),
        };
        if !(0..24).contains(&hours) || !(0..60).contains(&minutes) || !(0..60).contains(&secs) || days < 0 {
            return None;
        }
        let total = TimeDelta::days(days)
            + TimeDelta::hours(hours)
            + TimeDelta::minutes(minutes)
            + TimeDelta::seconds(secs)
            + TimeDelta::nanoseconds(ticks * 100);
        Some(TimeSpan(if neg { -total } else { total }))
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < TimeDelta::zero();
        let abs = self.0.abs();
        let total_secs = abs.num_seconds();
        let ticks = (abs - TimeDelta::seconds(total_secs)).num_nanoseconds().unwrap_or(0) / 100;
        let (days, rem) = (total_secs / 86_400, total_secs % 86_400);
        if neg {
            f.write_str("-")?;
        }
        if days > 0 {
            write!(f, "{days}.")?;
        }
        write!(f, "{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60)?;
        if ticks > 0 {
            write!(f, ".{ticks:07}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for TimeSpan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TimeSpan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TimeSpan::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("invalid TimeSpan {text:?}, expected [d.]hh:mm:ss[.fffffff]"))
        })
    }
}
