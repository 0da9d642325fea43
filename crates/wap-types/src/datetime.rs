//! [`WapDateTime`]: every date-time form WAP sends, read exactly and written back unchanged.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};

/// How a date-time was spelled on the wire, so it can be written back byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TextForm {
    /// Fraction digits (0 = no fraction, 1..=7).
    fraction_digits: u8,
    /// The offset as sent.
    offset: OffsetForm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OffsetForm {
    /// No offset: UTC by the spec's rule.
    None,
    /// `Z` (`lower` when sent as `z`).
    Zulu { lower: bool },
    /// `±HH:MM`, in minutes east of UTC.
    Minutes(i16),
    /// `-00:00` (RFC 3339's "offset unknown"): UTC, written back with its minus sign.
    MinusZero,
}

/// The canonical form this crate writes for values it creates: `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
const CANONICAL: TextForm = TextForm { fraction_digits: 7, offset: OffsetForm::Zulu { lower: false } };

/// A WAP date-time.
///
/// Reads every form in the spec: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1–7 digits, and an optional `Z`
/// or `±HH:MM`. A value without an offset is UTC. `0001-01-01T00:00:00` (.NET `DateTime.MinValue`) parses and
/// means "not set" ([`WapDateTime::is_unset`]).
///
/// A value read from the wire is written back exactly as it was read; a value the program creates
/// ([`WapDateTime::from_utc`]) is written `YYYY-MM-DDTHH:MM:SS.fffffffZ`. Equality compares both the instant and
/// the written form; compare [`WapDateTime::to_utc`] for the instant alone.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct WapDateTime {
    utc: DateTime<Utc>,
    form: TextForm,
}

/// Why a text is not a WAP date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WAP date-time {text:?}: {reason}")]
#[non_exhaustive]
pub struct DateTimeParseError {
    /// The text (cut to 64 characters).
    pub text: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl WapDateTime {
    /// .NET `DateTime.MinValue`, `0001-01-01T00:00:00`, which WAP sends for "not set".
    pub fn unset() -> Self {
        let naive = NaiveDate::from_ymd_opt(1, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default();
        WapDateTime {
            utc: Utc.from_utc_datetime(&naive),
            form: TextForm { fraction_digits: 0, offset: OffsetForm::None },
        }
    }

    /// A value created by the program; written in the canonical form. Precision is cut to 100 ns (.NET ticks).
    pub fn from_utc(utc: DateTime<Utc>) -> Self {
        let nanos = utc.nanosecond() % 1_000_000_000;
        let utc = utc - Duration::nanoseconds(i64::from(nanos % 100));
        WapDateTime { utc, form: CANONICAL }
    }

    /// The current time, in the canonical form.
    pub fn now() -> Self {
        Self::from_utc(Utc::now())
    }

    /// The instant, in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.utc
    }

    /// Whether this is `0001-01-01T00:00:00` (as written, before any offset), WAP's "not set".
    pub fn is_unset(&self) -> bool {
        let local = self.local();
        local.year() == 1 && local.ordinal() == 1 && local.num_seconds_from_midnight() == 0 && local.nanosecond() == 0
    }

    /// `None` for the "not set" value, the instant otherwise.
    pub fn as_set(&self) -> Option<DateTime<Utc>> {
        (!self.is_unset()).then_some(self.utc)
    }

    /// The same instant, to be written in the canonical form.
    pub fn canonical(self) -> Self {
        WapDateTime { utc: self.utc, form: CANONICAL }
    }

    /// Whether two values are the same instant, whatever their written forms.
    pub fn same_instant(&self, other: &WapDateTime) -> bool {
        self.utc == other.utc
    }

    fn offset_minutes(&self) -> i64 {
        match self.form.offset {
            OffsetForm::Minutes(m) => i64::from(m),
            _ => 0,
        }
    }

    fn local(&self) -> NaiveDateTime {
        self.utc.naive_utc() + Duration::minutes(self.offset_minutes())
    }

    /// Parses one WAP date-time (see the type's documentation for the forms).
    pub fn parse(text: &str) -> Result<Self, DateTimeParseError> {
        parse(text).map_err(|reason| DateTimeParseError { text: text.chars().take(64).collect(), reason })
    }

    /// The same instant cut to `digits` fraction digits (0–7), to be written with that many digits.
    ///
    /// For values the program creates in a form WAP uses elsewhere, e.g. the pull feeds' 3 digits:
    /// `WapDateTime::from_utc(t).with_fraction_digits(3).without_offset()`.
    pub fn with_fraction_digits(self, digits: u8) -> Self {
        let digits = digits.min(7);
        let unit = 10u32.pow(9 - u32::from(digits));
        let nanos = self.utc.nanosecond() % 1_000_000_000;
        let utc = self.utc - Duration::nanoseconds(i64::from(nanos % unit));
        WapDateTime { utc, form: TextForm { fraction_digits: digits, offset: self.form.offset } }
    }

    /// The same instant, written in UTC without an offset (as WAP writes usage records and feed events).
    pub fn without_offset(self) -> Self {
        WapDateTime { utc: self.utc, form: TextForm { offset: OffsetForm::None, ..self.form } }
    }

    /// The same instant, written in UTC with a `Z` (as WAP writes approval calls).
    pub fn with_utc_designator(self) -> Self {
        WapDateTime { utc: self.utc, form: TextForm { offset: OffsetForm::Zulu { lower: false }, ..self.form } }
    }

    /// Renders the wire text into `buf` (at most 33 bytes) and returns its length.
    fn render(&self, buf: &mut [u8; 40]) -> usize {
        fn put(buf: &mut [u8; 40], at: usize, value: u32, width: usize) {
            let mut v = value;
            for i in (0..width).rev() {
                buf[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        let local = self.local();
        let year = local.year();
        if !(0..=9999).contains(&year) {
            // Outside .NET's range: only reachable for values shifted by an offset; write the instant canonically.
            let text = format!("{}.{:07}Z", self.utc.format("%Y-%m-%dT%H:%M:%S"), self.utc.nanosecond() / 100);
            let n = text.len().min(40);
            buf[..n].copy_from_slice(&text.as_bytes()[..n]);
            return n;
        }
        put(buf, 0, year as u32, 4);
        buf[4] = b'-';
        put(buf, 5, local.month(), 2);
        buf[7] = b'-';
        put(buf, 8, local.day(), 2);
        buf[10] = b'T';
        put(buf, 11, local.hour(), 2);
        buf[13] = b':';
        put(buf, 14, local.minute(), 2);
        buf[16] = b':';
        put(buf, 17, local.second(), 2);
        let mut len = 19;
        let digits = usize::from(self.form.fraction_digits);
        if digits > 0 {
            let ticks = (local.nanosecond() % 1_000_000_000) / 100; // 7 digits
            buf[len] = b'.';
            let mut all = [0u8; 40];
            put(&mut all, 0, ticks, 7);
            buf[len + 1..len + 1 + digits].copy_from_slice(&all[..digits]);
            len += 1 + digits;
        }
        match self.form.offset {
            OffsetForm::None => {}
            OffsetForm::Zulu { lower } => {
                buf[len] = if lower { b'z' } else { b'Z' };
                len += 1;
            }
            OffsetForm::MinusZero => {
                buf[len..len + 6].copy_from_slice(b"-00:00");
                len += 6;
            }
            OffsetForm::Minutes(m) => {
                buf[len] = if m < 0 { b'-' } else { b'+' };
                let m = u32::from(m.unsigned_abs());
                put(buf, len + 1, m / 60, 2);
                buf[len + 3] = b':';
                put(buf, len + 4, m % 60, 2);
                len += 6;
            }
        }
        len
    }

    /// Writes the value into `out` as it will appear on the wire (without quotes).
    pub fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut buf = [0u8; 40];
        let len = self.render(&mut buf);
        out.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

fn digits(b: &[u8], what: &'static str) -> Result<u32, &'static str> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return Err(what);
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Ok(n)
}

fn parse(text: &str) -> Result<WapDateTime, &'static str> {
    let b = text.as_bytes();
    if b.len() < 19 {
        return Err("too short: expected YYYY-MM-DDTHH:MM:SS");
    }
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') || b[13] != b':' || b[16] != b':' {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    if b[10] == b't' {
        return Err("the date and time must be separated by 'T'");
    }
    let year = digits(&b[0..4], "year is not a number")?;
    let month = digits(&b[5..7], "month is not a number")?;
    let day = digits(&b[8..10], "day is not a number")?;
    let hour = digits(&b[11..13], "hour is not a number")?;
    let minute = digits(&b[14..16], "minute is not a number")?;
    let second = digits(&b[17..19], "second is not a number")?;
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or("no such date")?;
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    let mut fraction_digits = 0u8;
    if let Some((&b'.', tail)) = rest.split_first() {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err("a '.' must be followed by 1 to 7 fraction digits");
        }
        if n > 7 {
            return Err("more than 7 fraction digits");
        }
        let mut ticks = digits(&tail[..n], "fraction is not a number")?;
        for _ in n..7 {
            ticks *= 10;
        }
        nanos = ticks * 100;
        fraction_digits = n as u8;
        rest = &tail[n..];
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos).ok_or("no such time of day")?;
    let offset = match rest {
        [] => OffsetForm::None,
        [b'Z'] => OffsetForm::Zulu { lower: false },
        [b'z'] => OffsetForm::Zulu { lower: true },
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2], "offset hours are not a number")?;
            let m = digits(&[*m1, *m2], "offset minutes are not a number")?;
            if h > 23 || m > 59 {
                return Err("offset out of range");
            }
            let total = (h * 60 + m) as i16;
            match (*sign, total) {
                (b'-', 0) => OffsetForm::MinusZero,
                (b'-', _) => OffsetForm::Minutes(-total),
                _ => OffsetForm::Minutes(total),
            }
        }
        _ => return Err("expected nothing, 'Z' or an offset ±HH:MM after the time"),
    };
    let local = NaiveDateTime::new(date, time);
    let minutes = match offset {
        OffsetForm::Minutes(m) => i64::from(m),
        _ => 0,
    };
    let utc = if minutes == 0 {
        Utc.from_utc_datetime(&local)
    } else {
        Utc.from_utc_datetime(&(local - Duration::minutes(minutes)))
    };
    Ok(WapDateTime { utc, form: TextForm { fraction_digits, offset } })
}

impl fmt::Display for WapDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl fmt::Debug for WapDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WapDateTime({self})")
    }
}

impl FromStr for WapDateTime {
    type Err = DateTimeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WapDateTime::parse(s)
    }
}

impl Default for WapDateTime {
    /// The "not set" value, `0001-01-01T00:00:00`.
    fn default() -> Self {
        WapDateTime::unset()
    }
}

impl From<DateTime<Utc>> for WapDateTime {
    fn from(utc: DateTime<Utc>) -> Self {
        WapDateTime::from_utc(utc)
    }
}

impl PartialOrd for WapDateTime {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WapDateTime {
    /// Orders by instant, then by written form (so that the order agrees with equality).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.utc.cmp(&other.utc).then_with(|| self.to_string().cmp(&other.to_string()))
    }
}

impl serde::Serialize for WapDateTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 40];
        let len = self.render(&mut buf);
        s.serialize_str(std::str::from_utf8(&buf[..len]).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for WapDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = WapDateTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date-time YYYY-MM-DDTHH:MM:SS[.fffffff][Z|±HH:MM]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<WapDateTime, E> {
                WapDateTime::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_of_the_spec_and_writes_it_back() {
        for text in [
            "2015-06-02T08:00:00",
            "2015-06-02T08:00:00.250",
            "2015-05-28T14:02:11.207",
            "2015-06-04T07:55:19.5",
            "2015-05-29T16:20:41.61",
            "2015-06-03T10:31:05.4423178Z",
            "2015-06-03T12:15:44.3170000Z",
            "2015-06-02T08:00:00.0000000Z",
            "0001-01-01T00:00:00",
            "2015-06-02T10:00:00+02:00",
            "2015-06-02T03:00:00.5-05:30",
            "2015-06-02T08:00:00-00:00",
            "2015-06-02T08:00:00.1234567+00:00",
        ] {
            let v = WapDateTime::parse(text).unwrap();
            assert_eq!(v.to_string(), text);
        }
    }

    #[test]
    fn no_offset_means_utc_and_offsets_are_applied() {
        let plain = WapDateTime::parse("2015-06-02T08:00:00").unwrap();
        let z = WapDateTime::parse("2015-06-02T08:00:00Z").unwrap();
        let plus = WapDateTime::parse("2015-06-02T10:00:00+02:00").unwrap();
        assert!(plain.same_instant(&z));
        assert!(plain.same_instant(&plus));
        assert_ne!(plain, z, "written forms differ");
        assert_eq!(plain.to_utc().to_rfc3339(), "2015-06-02T08:00:00+00:00");
    }

    #[test]
    fn minus_zero_is_utc_and_round_trips_exactly() {
        let minus = WapDateTime::parse("2015-06-02T08:00:00-00:00").unwrap();
        let plus = WapDateTime::parse("2015-06-02T08:00:00+00:00").unwrap();
        assert!(minus.same_instant(&plus) && minus.same_instant(&WapDateTime::parse("2015-06-02T08:00:00Z").unwrap()));
        assert_eq!(minus.to_string(), "2015-06-02T08:00:00-00:00");
        assert_eq!(serde_json::to_string(&minus).unwrap(), "\"2015-06-02T08:00:00-00:00\"");
        assert_ne!(minus, plus, "written forms differ");
        assert!(WapDateTime::parse("0001-01-01T00:00:00-00:00").unwrap().is_unset());
    }

    #[test]
    fn fraction_digits_scale_to_ticks() {
        let a = WapDateTime::parse("2015-06-04T07:55:19.5").unwrap();
        assert_eq!(a.to_utc().nanosecond(), 500_000_000);
        let b = WapDateTime::parse("2015-06-03T10:31:05.4423178Z").unwrap();
        assert_eq!(b.to_utc().nanosecond(), 442_317_800);
    }

    #[test]
    fn year_one_is_unset() {
        let v = WapDateTime::parse("0001-01-01T00:00:00").unwrap();
        assert!(v.is_unset());
        assert_eq!(v.as_set(), None);
        assert!(!WapDateTime::parse("0001-01-01T00:00:01").unwrap().is_unset());
        assert_eq!(WapDateTime::default(), v);
    }

    #[test]
    fn created_values_use_the_canonical_form() {
        let utc = Utc.with_ymd_and_hms(2026, 11, 21, 9, 5, 3).unwrap() + Duration::nanoseconds(123_456_789);
        let v = WapDateTime::from_utc(utc);
        assert_eq!(v.to_string(), "2026-11-21T09:05:03.1234567Z");
        let reparsed = WapDateTime::parse(&v.to_string()).unwrap();
        assert_eq!(reparsed, v);
        assert_eq!(
            WapDateTime::parse("2015-06-02T08:00:00").unwrap().canonical().to_string(),
            "2015-06-02T08:00:00.0000000Z"
        );
    }

    #[test]
    fn created_values_can_take_the_forms_wap_writes() {
        let utc = Utc.with_ymd_and_hms(2015, 6, 3, 10, 31, 5).unwrap() + Duration::nanoseconds(442_317_800);
        let feed = WapDateTime::from_utc(utc).with_fraction_digits(3).without_offset();
        assert_eq!(feed.to_string(), "2015-06-03T10:31:05.442");
        assert_eq!(WapDateTime::parse(&feed.to_string()).unwrap(), feed);
        let usage = WapDateTime::from_utc(utc).with_fraction_digits(0).without_offset();
        assert_eq!(usage.to_string(), "2015-06-03T10:31:05");
        assert_eq!(WapDateTime::parse(&usage.to_string()).unwrap(), usage);
        let approval = usage.with_fraction_digits(7).with_utc_designator();
        assert_eq!(approval.to_string(), "2015-06-03T10:31:05.0000000Z");
        assert_eq!(serde_json::to_string(&feed).unwrap(), "\"2015-06-03T10:31:05.442\"");
    }

    #[test]
    fn rejects_malformed_text_with_a_reason() {
        for bad in [
            "",
            "2015-06-02",
            "2015-06-02 08:00:00",
            "2015-13-02T08:00:00",
            "2015-06-02T25:00:00",
            "2015-06-02T08:00:00.",
            "2015-06-02T08:00:00.12345678",
            "2015-06-02T08:00:00+0200",
            "2015-06-02T08:00:00Zjunk",
            "abcd-06-02T08:00:00",
        ] {
            let err = WapDateTime::parse(bad).unwrap_err();
            assert!(!err.reason.is_empty(), "{bad}");
        }
    }
}
