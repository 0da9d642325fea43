//! [`RetryAfter`]: the `Retry-After` response header (RFC 9110 §10.2.3), in seconds or as an HTTP-date.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

/// A parsed `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`: wait this long.
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: wait until then (wall-clock time). Kept as a
    /// `chrono::DateTime`, never converted to a `SystemTime` (whose range is platform-dependent: on Windows a date
    /// before 1601 cannot be one).
    At(DateTime<Utc>),
}

impl RetryAfter {
    /// Parses a header value: a non-negative integer of seconds, or an HTTP-date in any of the three forms of RFC
    /// 9110 (IMF-fixdate, RFC 850, asctime). `None` for anything else.
    pub fn parse(value: &str) -> Option<RetryAfter> {
        let v = value.trim();
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            // Saturate absurdly large values instead of rejecting them.
            let secs = v.parse::<u64>().unwrap_or(u64::MAX);
            return Some(RetryAfter::Delay(Duration::from_secs(secs)));
        }
        parse_http_date(v).map(RetryAfter::At)
    }

    /// How long to wait from `now` (wall-clock): the delay, or the time until the date (zero if it has passed, or
    /// if `now` cannot be placed on chrono's calendar). Never panics, whatever the date.
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(d) => *d,
            RetryAfter::At(at) => match system_time_to_utc(now) {
                Some(now) => at.signed_duration_since(now).to_std().unwrap_or(Duration::ZERO),
                None => Duration::ZERO,
            },
        }
    }
}

/// A wall-clock time as a `DateTime<Utc>`, without chrono's panicking `From<SystemTime>`: `None` when out of range.
fn system_time_to_utc(t: SystemTime) -> Option<DateTime<Utc>> {
    let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => (i64::try_from(after.as_secs()).ok()?, after.subsec_nanos()),
        Err(e) => {
            let before = e.duration();
            let secs = i64::try_from(before.as_secs()).ok()?;
            match before.subsec_nanos() {
                0 => (secs.checked_neg()?, 0),
                n => (secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n),
            }
        }
    };
    Utc.timestamp_opt(secs, nanos).single()
}

fn parse_http_date(v: &str) -> Option<DateTime<Utc>> {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (chrono's RFC 2822 reader accepts "GMT").
    if let Ok(dt) = DateTime::parse_from_rfc2822(v) {
        return Some(dt.with_timezone(&Utc));
    }
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    if let Some(rest) = v.strip_suffix(" GMT") {
        if let Some((_, date)) = rest.split_once(", ") {
            if let Ok(n) = NaiveDateTime::parse_from_str(date, "%d-%b-%y %H:%M:%S") {
                return Some(n.and_utc());
            }
        }
    }
    // asctime: "Sun Nov  6 08:49:37 1994"
    let collapsed = v.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(n) = NaiveDateTime::parse_from_str(&collapsed, "%a %b %e %H:%M:%S %Y") {
        return Some(n.and_utc());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds() {
        assert_eq!(RetryAfter::parse("120"), Some(RetryAfter::Delay(Duration::from_secs(120))));
        assert_eq!(RetryAfter::parse(" 0 "), Some(RetryAfter::Delay(Duration::ZERO)));
        assert_eq!(
            RetryAfter::parse("99999999999999999999999"),
            Some(RetryAfter::Delay(Duration::from_secs(u64::MAX)))
        );
        assert_eq!(RetryAfter::parse("-5"), None);
        assert_eq!(RetryAfter::parse("1.5"), None);
        assert_eq!(RetryAfter::parse(""), None);
        assert_eq!(RetryAfter::parse("soon"), None);
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        // 784111777 = Sun, 06 Nov 1994 08:49:37 GMT
        let expected = Some(RetryAfter::At(Utc.timestamp_opt(784_111_777, 0).unwrap()));
        assert_eq!(RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(RetryAfter::parse("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(RetryAfter::parse("Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn delay_from_a_date_is_relative_to_now_and_never_negative() {
        let r = RetryAfter::At(Utc.timestamp_opt(1_000, 0).unwrap());
        assert_eq!(r.delay_from(at(970)), Duration::from_secs(30));
        assert_eq!(r.delay_from(at(2_000)), Duration::ZERO);
        assert_eq!(RetryAfter::Delay(Duration::from_secs(7)).delay_from(at(5)), Duration::from_secs(7));
    }

    #[test]
    fn dates_far_from_the_epoch_never_panic() {
        // before 1601 (the start of Windows' FILETIME, where `SystemTime` ends there) and before 1970
        for (text, secs) in
            [("Wed, 01 Jan 1000 00:00:00 GMT", -30_610_224_000i64), ("Sat, 01 Jan 1600 00:00:00 GMT", -11_676_096_000)]
        {
            let r = RetryAfter::parse(text).unwrap();
            assert_eq!(r, RetryAfter::At(Utc.timestamp_opt(secs, 0).unwrap()), "{text}");
            assert_eq!(r.delay_from(SystemTime::now()), Duration::ZERO);
        }
        let far = RetryAfter::parse("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert!(far.delay_from(SystemTime::now()) > Duration::from_secs(200 * 365 * 86_400));
        // a wall clock before the epoch, with a fraction
        let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_millis(1_500);
        let r = RetryAfter::At(Utc.timestamp_opt(0, 0).unwrap());
        assert_eq!(r.delay_from(before_epoch), Duration::from_millis(1_500));
        // a wall clock chrono cannot represent: no delay, no panic
        if let Some(far_future) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64)) {
            assert_eq!(r.delay_from(far_future), Duration::ZERO);
        }
    }
}
