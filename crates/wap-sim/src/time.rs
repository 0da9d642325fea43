//! Date-times written the way WAP writes them on each wire.

use chrono::{DateTime, Timelike, Utc};
use wap_types::WapDateTime;

/// `t` written with `digits` fraction digits and no offset (usage records: 0; pull feeds: 3).
pub(crate) fn wap_time(t: DateTime<Utc>, digits: usize) -> WapDateTime {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let text = if digits == 0 {
        base
    } else {
        let ticks = format!("{:07}", t.nanosecond() % 1_000_000_000 / 100);
        format!("{base}.{}", &ticks[..digits.min(7)])
    };
    WapDateTime::parse(&text).unwrap_or_else(|_| WapDateTime::from_utc(t))
}

/// The current time as the pull feeds write it (3 fraction digits, no offset).
pub(crate) fn feed_now() -> WapDateTime {
    wap_time(Utc::now(), 3)
}
