//! WHMCS's `customfields` parameter: `base64(serialize(array(<field id> => <value>)))`, PHP's serialization.
//!
//! Only what custom fields need: an array of integer or string keys to string values. PHP turns a numeric-string key
//! such as `"1"` into the integer key `1`, and `s:N` counts UTF-8 bytes; both are reproduced.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One key of a serialized PHP array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PhpKey {
    /// An integer key (`i:N;`), what a numeric custom-field id becomes.
    Int(i64),
    /// A string key (`s:N:"…";`).
    Str(String),
}

impl PhpKey {
    fn from_field(key: &str) -> PhpKey {
        // PHP's rule: a decimal integer string without a leading zero (or "0") becomes an int key.
        let canonical = key == "0" || (!key.starts_with('0') && !key.starts_with("-0"));
        match key.parse::<i64>() {
            Ok(n) if canonical && n.to_string() == key => PhpKey::Int(n),
            _ => PhpKey::Str(key.to_owned()),
        }
    }

    /// The key as text (an int key in decimal).
    #[cfg_attr(not(feature = "double"), allow(dead_code))]
    pub(crate) fn as_text(&self) -> String {
        match self {
            PhpKey::Int(n) => n.to_string(),
            PhpKey::Str(s) => s.clone(),
        }
    }
}

/// `serialize(array(k => v, …))` for string values.
pub(crate) fn serialize_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let entries: Vec<(&str, &str)> = entries.into_iter().collect();
    let mut out = format!("a:{}:{{", entries.len());
    for (k, v) in entries {
        match PhpKey::from_field(k) {
            PhpKey::Int(n) => out.push_str(&format!("i:{n};")),
            PhpKey::Str(s) => out.push_str(&format!("s:{}:\"{}\";", s.len(), s)),
        }
        out.push_str(&format!("s:{}:\"{}\";", v.len(), v));
    }
    out.push('}');
    out
}

/// The `customfields` form value for `{field id => value}`: base64 of the PHP serialization.
///
/// ```
/// let encoded = wap_billing_whmcs::encode_custom_fields([("1", "Google")]);
/// assert_eq!(encoded, "YToxOntpOjE7czo2OiJHb29nbGUiO30=");
/// ```
pub fn encode_custom_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    STANDARD.encode(serialize_map(fields))
}

/// Reads what [`encode_custom_fields`] (or PHP) wrote: a base64 serialized array of scalar values.
/// Integer, float and boolean values come back as their text. `None` when the input is not such an array.
#[cfg_attr(not(feature = "double"), allow(dead_code))]
pub(crate) fn decode_custom_fields(encoded: &str) -> Option<Vec<(PhpKey, String)>> {
    let bytes = STANDARD.decode(encoded.trim()).ok()?;
    let mut p = Parser { s: &bytes, i: 0 };
    let n = p.header(b'a')?;
    p.expect(b'{')?;
    let mut out = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let key = match p.peek()? {
            b'i' => PhpKey::Int(p.int()?),
            b's' => PhpKey::Str(p.string()?),
            _ => return None,
        };
        let value = match p.peek()? {
            b's' => p.string()?,
            b'i' => p.int()?.to_string(),
            b'd' | b'b' => p.scalar_text()?,
            _ => return None,
        };
        out.push((key, value));
    }
    p.expect(b'}')?;
    Some(out)
}

#[cfg_attr(not(feature = "double"), allow(dead_code))]
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

#[cfg_attr(not(feature = "double"), allow(dead_code))]
impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.i += 1)
    }
    fn until(&mut self, end: u8) -> Option<&str> {
        let start = self.i;
        let len = self.s[start..].iter().position(|&c| c == end)?;
        self.i = start + len + 1;
        std::str::from_utf8(&self.s[start..start + len]).ok()
    }
    /// `t:N:` → N
    fn header(&mut self, tag: u8) -> Option<usize> {
        self.expect(tag)?;
        self.expect(b':')?;
        self.until(b':')?.parse().ok()
    }
    fn int(&mut self) -> Option<i64> {
        self.expect(b'i')?;
        self.expect(b':')?;
        self.until(b';')?.parse().ok()
    }
    fn scalar_text(&mut self) -> Option<String> {
        self.i += 1;
        self.expect(b':')?;
        Some(self.until(b';')?.to_owned())
    }
    fn string(&mut self) -> Option<String> {
        let len = self.header(b's')?;
        self.expect(b'"')?;
        let end = self.i.checked_add(len)?;
        let text = std::str::from_utf8(self.s.get(self.i..end)?).ok()?.to_owned();
        self.i = end;
        self.expect(b'"')?;
        self.expect(b';')?;
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keys_become_int_keys_and_lengths_count_bytes() {
        assert_eq!(serialize_map([("1", "Google")]), r#"a:1:{i:1;s:6:"Google";}"#);
        assert_eq!(serialize_map([("07", "x"), ("wap", "é")]), r#"a:2:{s:2:"07";s:1:"x";s:3:"wap";s:2:"é";}"#);
        assert_eq!(serialize_map([]), "a:0:{}");
    }

    #[test]
    fn decode_reads_what_encode_wrote() {
        let encoded = encode_custom_fields([("12", "sub-1\"quoted\";"), ("name", "ünï")]);
        let decoded = decode_custom_fields(&encoded).unwrap();
        assert_eq!(
            decoded,
            vec![(PhpKey::Int(12), "sub-1\"quoted\";".to_owned()), (PhpKey::Str("name".into()), "ünï".to_owned())]
        );
    }

    #[test]
    fn decode_rejects_garbage_without_panicking() {
        for bad in ["", "!!!", "YTox", "YToxOntpOjE7czo5OTk6IkdvIjt9"] {
            assert!(decode_custom_fields(bad).is_none(), "{bad}");
        }
    }
}
