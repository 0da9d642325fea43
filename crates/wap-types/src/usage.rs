//! [`UsageRecord`]: one element of the Usage Service's `/usage` feed.

use crate::collections::StringMap;
use crate::datetime::WapDateTime;
use crate::wire::wire_object;

wire_object! {
    /// One usage record of `GET /usage` on the Usage Service (docs/protocol/usage-service.md §3.1).
    ///
    /// Meters (`Resources`) and extra information (`Properties`) are string maps: numbers arrive as strings.
    pub struct UsageRecord {
        /// `EventId`: the Usage Service sequence number, the cursor of this feed.
        event_id: i64 => "EventId", required;
        /// `ExternalRecordId`: the id at the source (usually the resource provider's `EventId`), kept opaque.
        external_record_id: Option<String> => "ExternalRecordId";
        /// `ResourceId`: the resource name when the provider aggregates per resource.
        resource_id: Option<String> => "ResourceId";
        /// `StartTime`: start of the metered interval.
        start_time: WapDateTime => "StartTime", required;
        /// `EndTime`: end of the metered interval.
        end_time: WapDateTime => "EndTime", required;
        /// `ProviderName`: the source resource provider (`mysqlservers`, `sqlservers`, `webspaces`, …).
        provider_name: Option<String> => "ProviderName";
        /// `ServiceType`: the service level, e.g. `Default`.
        service_type: Option<String> => "ServiceType";
        /// `SubscriptionId`: the tenant subscription (a GUID; compare ignoring case).
        subscription_id: String => "SubscriptionId" | "SubscriptionID", required;
        /// `Properties`: extra information (`null` reads as `None`).
        properties: Option<StringMap> => "Properties";
        /// `Resources`: the meters, values as strings (`null` or missing reads as empty).
        resources: StringMap => "Resources";
    }
}

impl UsageRecord {
    /// A meter read as a number (`None` when absent or not a number); the key is matched ignoring case.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.resources.get_f64(key)
    }
}
