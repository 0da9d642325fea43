//! Collection helpers: `null` ≡ missing ≡ `[]`, and string-valued metric maps.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Reads an optional collection as a slice: `None` (the member was `null` or missing) is empty.
///
/// Collections are `Option<Vec<T>>` because in a Patch event a missing or `null` member means "unchanged" while
/// `[]` means "now empty"; in a full record all three mean empty, which is what [`OrEmpty::or_empty`] gives.
pub trait OrEmpty<T> {
    /// The items, or an empty slice.
    fn or_empty(&self) -> &[T];
}

impl<T> OrEmpty<T> for Option<Vec<T>> {
    fn or_empty(&self) -> &[T] {
        self.as_deref().unwrap_or(&[])
    }
}

/// A JSON object of string values, as in `UsageRecord.Resources` and `.Properties`.
///
/// Values are strings on the wire (`"2048"`, `"0.75"`); a number or boolean sent instead is kept as its JSON text
/// and a `null` value as `""`, so a record never fails over a meter's type. `null` for the whole map reads as
/// empty.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct StringMap(pub BTreeMap<String, String>);

impl StringMap {
    /// An empty map.
    pub fn new() -> Self {
        StringMap(BTreeMap::new())
    }

    /// The value under `key`, matched exactly first and then ignoring ASCII case.
    pub fn get_ignore_case(&self, key: &str) -> Option<&str> {
        if let Some(v) = self.0.get(key) {
            return Some(v);
        }
        self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    /// The value under `key` read as a decimal number (`None` when absent or not a number).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get_ignore_case(key).and_then(|v| v.trim().parse::<f64>().ok())
    }
}

impl Deref for StringMap {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for StringMap {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for StringMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for StringMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        StringMap(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl serde::Serialize for StringMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// One value of a [`StringMap`], read leniently.
struct LenientString(String);

impl<'de> serde::Deserialize<'de> for LenientString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = LenientString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LenientString, E> {
                Ok(LenientString(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<LenientString, E> {
                Ok(LenientString(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<LenientString, E> {
                Ok(LenientString(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<LenientString, E> {
                Ok(LenientString(if v { "True".into() } else { "False".into() }))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<LenientString, E> {
                Ok(LenientString(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for StringMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StringMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<StringMap, E> {
                Ok(StringMap::new())
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<StringMap, E> {
                Ok(StringMap::new())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StringMap, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, LenientString>()? {
                    out.insert(k, v.0);
                }
                Ok(StringMap(out))
            }
        }
        d.deserialize_any(V)
    }
}
