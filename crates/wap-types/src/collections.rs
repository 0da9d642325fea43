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
/// Values are strings on the wire (`"2048"`, `"0.75"`); a number or boolean sent instead is kept as its JSON text,
/// a nested object or array (`{"Cpu": {"Cores": 2}}`, `["1"]`) as its compact JSON text (members in the order
/// received) and a `null` value as `""`, so a record never fails over a meter's type. `null` for the whole map
/// reads as empty.
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
        impl<'de> serde::de::Visitor<'de> for V {
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
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<LenientString, A::Error> {
                let mut text = String::new();
                JsonText::write_map(&mut text, map)?;
                Ok(LenientString(text))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<LenientString, A::Error> {
                let mut text = String::new();
                JsonText::write_seq(&mut text, seq)?;
                Ok(LenientString(text))
            }
        }
        d.deserialize_any(V)
    }
}

/// Any JSON value, written back as compact JSON text while it is read (members in the order received). Used for
/// nested meter values; works with any self-describing deserializer.
struct JsonText(String);

impl JsonText {
    fn write_map<'de, A: serde::de::MapAccess<'de>>(out: &mut String, mut map: A) -> Result<(), A::Error> {
        out.push('{');
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if !first {
                out.push(',');
            }
            first = false;
            write_json_string(out, &key);
            out.push(':');
            out.push_str(&map.next_value::<JsonText>()?.0);
        }
        out.push('}');
        Ok(())
    }

    fn write_seq<'de, A: serde::de::SeqAccess<'de>>(out: &mut String, mut seq: A) -> Result<(), A::Error> {
        out.push('[');
        let mut first = true;
        while let Some(value) = seq.next_element::<JsonText>()? {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&value.0);
        }
        out.push(']');
        Ok(())
    }
}

fn write_json_string(out: &mut String, s: &str) {
    // Serializing a `str` cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

impl<'de> serde::Deserialize<'de> for JsonText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonText, E> {
                let mut out = String::with_capacity(v.len() + 2);
                write_json_string(&mut out, v);
                Ok(JsonText(out))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<JsonText, E> {
                Ok(JsonText(serde_json::Number::from_f64(v).map(|n| n.to_string()).unwrap_or_else(|| "null".into())))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<JsonText, E> {
                Ok(JsonText(v.to_string()))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<JsonText, E> {
                Ok(JsonText("null".into()))
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<JsonText, E> {
                Ok(JsonText("null".into()))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<JsonText, D::Error> {
                <JsonText as serde::Deserialize>::deserialize(d)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<JsonText, A::Error> {
                let mut out = String::new();
                JsonText::write_map(&mut out, map)?;
                Ok(JsonText(out))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<JsonText, A::Error> {
                let mut out = String::new();
                JsonText::write_seq(&mut out, seq)?;
                Ok(JsonText(out))
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
