//! Date-times written the way WAP writes them on each wire.

use chrono::{DateTime, Utc};
use wap_types::WapDateTime;

/// `t` written with `digits` fraction digits and no offset (usage records: 0; pull feeds: 3).
pub(crate) fn wap_time(t: DateTime<Utc>, digits: usize) -> WapDateTime {
    WapDateTime::from_utc(t).with_fraction_digits(digits.min(7) as u8).without_offset()
}

/// The current time as the pull feeds write it (3 fraction digits, no offset).
pub(crate) fn feed_now() -> WapDateTime {
    wap_time(Utc::now(), 3)
}
