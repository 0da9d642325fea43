//! [`RetryAfter`]: the `Retry-After` response header (RFC 9110 §10.2.3), in seconds or as an HTTP-date.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, NaiveDateTime, Utc};

/// A parsed `Retry-After` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 120`: wait this long.
    Delay(Duration),
    /// `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`: wait until then (wall-clock time).
    At(SystemTime),
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

    /// How long to wait from `now` (wall-clock): the delay, or the time until the date (zero if it has passed).
    pub fn delay_from(&self, now: SystemTime) -> Duration {
        match self {
            RetryAfter::Delay(d) => *d,
            RetryAfter::At(at) => at.duration_since(now).unwrap_or(Duration::ZERO),
        }
    }
}

fn parse_http_date(v: &str) -> Option<SystemTime> {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (chrono's RFC 2822 reader accepts "GMT").
    if let Ok(dt) = DateTime::parse_from_rfc2822(v) {
        return Some(dt.with_timezone(&Utc).into());
    }
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    if let Some(rest) = v.strip_suffix(" GMT") {
        if let Some((_, date)) = rest.split_once(", ") {
            if let Ok(n) = NaiveDateTime::parse_from_str(date, "%d-%b-%y %H:%M:%S") {
                return Some(n.and_utc().into());
            }
        }
    }
    // asctime: "Sun Nov  6 08:49:37 1994"
    let collapsed = v.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Ok(n) = NaiveDateTime::parse_from_str(&collapsed, "%a %b %e %H:%M:%S %Y") {
        return Some(n.and_utc().into());
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
        let expected = Some(RetryAfter::At(at(784_111_777)));
        assert_eq!(RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
        assert_eq!(RetryAfter::parse("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
        assert_eq!(RetryAfter::parse("Sun Nov  6 08:49:37 1994"), expected);
    }

    #[test]
    fn delay_from_a_date_is_relative_to_now_and_never_negative() {
        let r = RetryAfter::At(at(1_000));
        assert_eq!(r.delay_from(at(970)), Duration::from_secs(30));
        assert_eq!(r.delay_from(at(2_000)), Duration::ZERO);
        assert_eq!(RetryAfter::Delay(Duration::from_secs(7)).delay_from(at(5)), Duration::from_secs(7));
    }
}
