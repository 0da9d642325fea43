//! Usage shaped for billing APIs: one line per (subscription, resource, meter, period) per sync instead of one
//! call per record ([`UsageShape::PerMeter`]).
//!
//! Billing APIs such as WHMCS's and HostBill's take metered usage as a quantity per item and period, not as WAP's
//! individual records. A usage handler that returns [`UsageShape::PerMeter`] from
//! [`UsageHandler::usage_shape`](crate::UsageHandler::usage_shape) receives each batch (the uncommitted records of
//! a page) as [`UsageLines`]: the records summed per subscription, provider, resource, meter and period, each line
//! carrying the `EventId` range and count of the records it sums. The batch is still committed as one unit; on
//! the journaled path its [`Intent`](crate::journal::Intent) covers the batch's whole range.

use std::collections::BTreeMap;

use wap_types::UsageRecord;

use crate::handler::HandlerError;

/// How a usage handler takes usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum UsageShape {
    /// The records themselves ([`UsageHandler::apply_usage`](crate::UsageHandler::apply_usage)).
    #[default]
    PerRecord,
    /// Lines summed per (subscription, resource, meter, period)
    /// ([`UsageHandler::apply_usage_lines`](crate::UsageHandler::apply_usage_lines)).
    PerMeter {
        /// The period a record belongs to, by its `StartTime` (UTC).
        period: UsagePeriod,
    },
}

/// The billing period of a usage line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UsagePeriod {
    /// The UTC day of the record's `StartTime`: `YYYY-MM-DD`.
    Day,
    /// The UTC month of the record's `StartTime`: `YYYY-MM`.
    Month,
}

impl UsagePeriod {
    /// The period of a record.
    pub fn of(self, record: &UsageRecord) -> String {
        let start = record.start_time.to_utc();
        match self {
            UsagePeriod::Day => start.format("%Y-%m-%d").to_string(),
            UsagePeriod::Month => start.format("%Y-%m").to_string(),
        }
    }
}

/// One aggregated usage line.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct UsageLine {
    /// `SubscriptionId`, ASCII lower case (WAP sends GUIDs in both cases).
    pub subscription_id: String,
    /// `ProviderName` (empty when absent).
    pub provider: String,
    /// `ResourceId` (empty when absent).
    pub resource_id: String,
    /// The meter (a key of `Resources`, as received).
    pub meter: String,
    /// The period, see [`UsagePeriod`].
    pub period: String,
    /// The sum of the meter's values.
    pub quantity: f64,
    /// How many records contributed.
    pub records: u64,
    /// The lowest contributing `EventId`.
    pub first_event_id: i64,
    /// The highest contributing `EventId` (records of other lines may lie in between).
    pub last_event_id: i64,
}

/// One batch as aggregated lines, with the records they sum.
#[derive(Debug, Clone, Copy)]
pub struct UsageLines<'a> {
    /// The lines, ordered by subscription, provider, resource, meter and period.
    pub lines: &'a [UsageLine],
    /// The records of the batch, ascending by `EventId` (the lines cover exactly these).
    pub records: &'a [UsageRecord],
    /// Which call this is for the batch's first record in this run: 1, 2, …
    pub attempt: u32,
    /// The lease generation (fencing token) this call runs under (see
    /// [`EventContext::generation`](crate::EventContext::generation)).
    pub generation: i64,
    /// When this call is cut (see [`EventContext::deadline`](crate::EventContext::deadline)).
    pub deadline: tokio::time::Instant,
}

impl UsageLines<'_> {
    /// The batch's first `EventId`.
    pub fn first_event_id(&self) -> i64 {
        self.records.first().map_or(0, |r| r.event_id)
    }

    /// The batch's last `EventId`.
    pub fn last_event_id(&self) -> i64 {
        self.records.last().map_or(0, |r| r.event_id)
    }
}

/// Sums records into lines. A meter value that is not a number fails, naming its record
/// ([`HandlerError::for_record`]); an empty value counts as 0.
pub fn aggregate(records: &[UsageRecord], period: UsagePeriod) -> Result<Vec<UsageLine>, HandlerError> {
    type Key = (String, String, String, String, String);
    let mut lines: BTreeMap<Key, UsageLine> = BTreeMap::new();
    for r in records {
        let p = period.of(r);
        for (meter, value) in r.resources.iter() {
            let text = value.trim();
            let quantity = if text.is_empty() {
                0.0
            } else {
                text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                    HandlerError::failed(format!(
                        "usage record {}: meter {meter:?} is not a number: {value:?}",
                        r.event_id
                    ))
                    .for_record(r.event_id)
                })?
            };
            let key = (
                r.subscription_id.to_ascii_lowercase(),
                r.provider_name.clone().unwrap_or_default(),
                r.resource_id.clone().unwrap_or_default(),
                meter.clone(),
                p.clone(),
            );
            let line = lines.entry(key).or_insert_with_key(|k| UsageLine {
                subscription_id: k.0.clone(),
                provider: k.1.clone(),
                resource_id: k.2.clone(),
                meter: k.3.clone(),
                period: k.4.clone(),
                quantity: 0.0,
                records: 0,
                first_event_id: r.event_id,
                last_event_id: r.event_id,
            });
            line.quantity += quantity;
            line.records += 1;
            line.first_event_id = line.first_event_id.min(r.event_id);
            line.last_event_id = line.last_event_id.max(r.event_id);
        }
    }
    Ok(lines.into_values().collect())
}

#[cfg(test)]
mod tests {
    use wap_types::{StringMap, WapDateTime};

    use super::*;

    fn record(id: i64, sub: &str, start: &str, meters: &[(&str, &str)]) -> UsageRecord {
        let mut resources = StringMap::default();
        for (k, v) in meters {
            resources.insert((*k).to_owned(), (*v).to_owned());
        }
        UsageRecord {
            event_id: id,
            subscription_id: sub.into(),
            provider_name: Some("mysqlservers".into()),
            start_time: WapDateTime::parse(start).unwrap(),
            end_time: WapDateTime::parse(start).unwrap(),
            resources,
            ..Default::default()
        }
    }

    #[test]
    fn sums_per_subscription_meter_and_period_with_the_contributing_range() {
        let records = [
            record(10, "SUB-A", "2026-11-30T23:00:00Z", &[("cpu", "1.5"), ("disk", "2")]),
            record(11, "sub-b", "2026-12-01T01:00:00Z", &[("cpu", "4")]),
            record(12, "sub-a", "2026-11-30T23:30:00Z", &[("cpu", "0.5")]),
            record(13, "sub-a", "2026-12-01T00:00:00Z", &[("cpu", "7")]),
        ];
        let lines = aggregate(&records, UsagePeriod::Month).unwrap();
        let summary: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l.subscription_id.as_str(),
                    l.meter.as_str(),
                    l.period.as_str(),
                    l.quantity,
                    l.records,
                    l.first_event_id,
                    l.last_event_id,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("sub-a", "cpu", "2026-11", 2.0, 2, 10, 12),
                ("sub-a", "cpu", "2026-12", 7.0, 1, 13, 13),
                ("sub-a", "disk", "2026-11", 2.0, 1, 10, 10),
                ("sub-b", "cpu", "2026-12", 4.0, 1, 11, 11),
            ]
        );
        let days = aggregate(&records[..1], UsagePeriod::Day).unwrap();
        assert_eq!(days[0].period, "2026-11-30");
    }

    #[test]
    fn a_meter_that_is_not_a_number_names_its_record() {
        let records = [
            record(1, "s", "2026-12-01T00:00:00Z", &[("cpu", "1")]),
            record(2, "s", "2026-12-01T00:00:00Z", &[("cpu", "lots")]),
        ];
        let err = aggregate(&records, UsagePeriod::Day).unwrap_err();
        assert_eq!(err.record_event_id(), Some(2));
    }
}
