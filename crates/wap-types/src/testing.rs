//! Realistic wire values for tests (feature `testing`): usage records, plan and subscription events, approval bodies,
//! with WAP's spellings and plausible values, so a test does not hand-write WAP's JSON.
//!
//! ```
//! use wap_types::testing::{approval_body, usage_record, UsageRecordBuilder};
//! use wap_types::{EventMethod, UsageRecord};
//!
//! let r: UsageRecord = usage_record(41, "2f6d1c0e-5a4b-4f1e-9c6b-0c8f2d3e4a51");
//! assert_eq!(r.resources.get("DatabaseCount").map(String::as_str), Some("1"));
//!
//! let web = UsageRecordBuilder::new(42, "2f6d1c0e-5a4b-4f1e-9c6b-0c8f2d3e4a51")
//!     .provider("webspaces")
//!     .meter("TotalIncomingRequestBytes", "1048576")
//!     .build();
//! assert_eq!(web.provider_name.as_deref(), Some("webspaces"));
//!
//! let body = approval_body(7, EventMethod::Post, "2f6d1c0e-5a4b-4f1e-9c6b-0c8f2d3e4a51", "GoldPlan", "ann@contoso.test");
//! assert_eq!(body["State"], 2);
//! ```

use chrono::{TimeDelta, TimeZone, Utc};
use serde_json::{json, Value};

use crate::{
    AdminSubscription, AdminSubscriptionState, ConfigState, EventMethod, NotificationState, Plan, PlanAddon,
    PlanAdvertisement, PlanState, StringMap, SyncState, UsageEvent, UsageRecord, WapDateTime,
};

/// 2015-05-28T14:00:00Z plus `hours`: a fixed, realistic time base (WAP's documentation examples are from 2015).
fn hour(hours: i64) -> WapDateTime {
    let base = Utc.with_ymd_and_hms(2015, 5, 28, 14, 0, 0).single().expect("a valid date");
    WapDateTime::from_utc(base + TimeDelta::hours(hours))
}

/// Builds a [`UsageRecord`] as WAP's `/usage` serves it.
#[derive(Debug, Clone)]
pub struct UsageRecordBuilder {
    record: UsageRecord,
}

impl UsageRecordBuilder {
    /// A one-hour `mysqlservers` record for `subscription` (no meter yet), hour number `event_id` of the base day.
    pub fn new(event_id: i64, subscription: &str) -> Self {
        UsageRecordBuilder {
            record: UsageRecord {
                event_id,
                external_record_id: Some(event_id.to_string()),
                resource_id: None,
                start_time: hour(event_id % 10_000),
                end_time: hour(event_id % 10_000 + 1),
                provider_name: Some("mysqlservers".into()),
                service_type: Some("Default".into()),
                subscription_id: subscription.to_owned(),
                properties: Some(StringMap::new()),
                resources: StringMap::new(),
                ..Default::default()
            },
        }
    }

    /// `ProviderName` (`sqlservers`, `mysqlservers`, `webspaces`, `systemcenter`, or a custom provider).
    pub fn provider(mut self, provider: &str) -> Self {
        self.record.provider_name = Some(provider.to_owned());
        self
    }

    /// Adds a meter to `Resources` (values are strings on the wire).
    pub fn meter(mut self, name: &str, value: &str) -> Self {
        self.record.resources.insert(name.to_owned(), value.to_owned());
        self
    }

    /// `ResourceId` (a resource name when the provider aggregates per resource).
    pub fn resource(mut self, id: &str) -> Self {
        self.record.resource_id = Some(id.to_owned());
        self
    }

    /// The collection interval, as hours from the base time.
    pub fn hours(mut self, from: i64, to: i64) -> Self {
        self.record.start_time = hour(from);
        self.record.end_time = hour(to);
        self
    }

    /// The record.
    pub fn build(self) -> UsageRecord {
        self.record
    }
}

/// A `mysqlservers` record with `DatabaseCount` 1 and `TotalAllottedSpace` 1024 (MB).
pub fn usage_record(event_id: i64, subscription: &str) -> UsageRecord {
    UsageRecordBuilder::new(event_id, subscription)
        .meter("DatabaseCount", "1")
        .meter("TotalAllottedSpace", "1024")
        .build()
}

/// A public, configured plan offering `mysqlservers`.
pub fn plan(id: &str, name: &str) -> Plan {
    Plan {
        id: id.to_owned(),
        display_name: Some(name.to_owned()),
        state: Some(PlanState::Public),
        config_state: Some(ConfigState::Configured),
        quota_sync_state: Some(SyncState::InSync),
        advertisements: Some(vec![PlanAdvertisement {
            language_code: "en-us".into(),
            display_name: Some(name.to_owned()),
            description: None,
            extra: Default::default(),
        }]),
        service_quotas: Some(Vec::new()),
        subscription_count: Some(0),
        max_subscriptions_per_account: Some(1),
        add_on_references: Some(Vec::new()),
        add_ons: Some(Vec::new()),
        ..Default::default()
    }
}

/// A public, configured add-on.
pub fn add_on(id: &str, name: &str) -> PlanAddon {
    PlanAddon {
        id: id.to_owned(),
        display_name: Some(name.to_owned()),
        state: Some(PlanState::Public),
        config_state: Some(ConfigState::Configured),
        quota_sync_state: Some(SyncState::InSync),
        subscription_count: Some(0),
        max_occurrences_per_plan: Some(1),
        ..Default::default()
    }
}

/// An active subscription of `account` to `plan_id`.
pub fn subscription(id: &str, plan_id: &str, account: &str) -> AdminSubscription {
    AdminSubscription {
        subscription_id: id.to_owned(),
        subscription_name: Some(plan_id.to_owned()),
        account_admin_live_email_id: Some(account.to_owned()),
        co_admin_names: Some(Vec::new()),
        add_on_references: Some(Vec::new()),
        add_ons: Some(Vec::new()),
        state: Some(AdminSubscriptionState::Active),
        quota_sync_state: Some(SyncState::InSync),
        activation_sync_state: Some(SyncState::InSync),
        plan_id: Some(plan_id.to_owned()),
        services: Some(Vec::new()),
        created: Some(hour(0)),
        ..Default::default()
    }
}

/// A committed feed event (`NotificationState` 0, Acknowledged) at hour `event_id` of the base day.
pub fn event<T: serde::Serialize>(event_id: i64, method: EventMethod, entity: T) -> UsageEvent<T> {
    UsageEvent::new(event_id, NotificationState::Acknowledged, method, entity)
        .with_time_created(hour(event_id % 10_000))
}

/// The JSON body WAP posts to an approval subscriber for a subscription (`State` 2, PendingApproval), as the
/// responder receives it.
pub fn approval_body(event_id: i64, method: EventMethod, subscription_id: &str, plan_id: &str, account: &str) -> Value {
    let mut entity = subscription(subscription_id, plan_id, account);
    entity.state = Some(AdminSubscriptionState::None);
    let event = UsageEvent::new(event_id, NotificationState::PendingApproval, method, entity)
        .with_time_created(WapDateTime::now());
    serde_json::to_value(&event).unwrap_or_else(|_| json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_values_round_trip_through_their_wire_form() {
        let r = usage_record(5, "s-1");
        let again: UsageRecord = crate::json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(r, again);
        let e = event(9, EventMethod::Post, plan("P1", "Gold"));
        let text = serde_json::to_vec(&e).unwrap();
        let again: UsageEvent<Plan> = crate::json::from_slice(&text).unwrap();
        assert_eq!(again.entity.display_name.as_deref(), Some("Gold"));
        let body = approval_body(3, EventMethod::Delete, "s-1", "P1", "a@b.test");
        assert_eq!((body["EventId"].as_i64(), body["Method"].as_str()), (Some(3), Some("DELETE")));
    }
}
