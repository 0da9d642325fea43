//! [`EventMethod`]: the verb of a usage event, read tolerantly.

use std::fmt;

/// The `Method` of a [`UsageEvent`](crate::UsageEvent).
///
/// Read case-insensitively (`"POST"`, `"Post"`, `"post"` are all [`EventMethod::Post`]); `"0"` is `Post` (seen on a
/// new plan). Anything else is kept as [`EventMethod::Other`] and handled as an update: a page never fails over a
/// verb. `"1"`, `"2"`, `"3"` stay `Other` unless [`EventMethod::with_numeric_ordinals`] is applied (the
/// `MethodNumericOrdinals` setting).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventMethod {
    /// Created (`POST`, `Post`, `0`).
    Post,
    /// Replaced (`PUT`).
    Put,
    /// Partially updated: only changed members are present (`Patch`).
    Patch,
    /// Deleted (`DELETE`).
    Delete,
    /// A verb this crate does not know, kept as sent.
    Other(String),
}

impl EventMethod {
    /// Parses a wire value (never fails).
    pub fn parse(raw: &str) -> Self {
        let t = raw.trim();
        if t.eq_ignore_ascii_case("post") || t == "0" {
            EventMethod::Post
        } else if t.eq_ignore_ascii_case("put") {
            EventMethod::Put
        } else if t.eq_ignore_ascii_case("patch") {
            EventMethod::Patch
        } else if t.eq_ignore_ascii_case("delete") {
            EventMethod::Delete
        } else {
            EventMethod::Other(raw.to_owned())
        }
    }

    /// Reads `"1"`, `"2"`, `"3"` as Put, Patch, Delete (the documentation's order); the
    /// `MethodNumericOrdinals = true` setting. Other values are unchanged.
    pub fn with_numeric_ordinals(self) -> Self {
        match &self {
            EventMethod::Other(raw) => match raw.trim() {
                "1" => EventMethod::Put,
                "2" => EventMethod::Patch,
                "3" => EventMethod::Delete,
                _ => self,
            },
            _ => self,
        }
    }

    /// The text written on the wire: `POST`, `PUT`, `Patch`, `DELETE` (WAP's habits), or the kept text.
    pub fn as_wire(&self) -> &str {
        match self {
            EventMethod::Post => "POST",
            EventMethod::Put => "PUT",
            EventMethod::Patch => "Patch",
            EventMethod::Delete => "DELETE",
            EventMethod::Other(raw) => raw,
        }
    }

    /// Whether the event creates its entity.
    pub fn is_create(&self) -> bool {
        matches!(self, EventMethod::Post)
    }

    /// Whether the event deletes its entity.
    pub fn is_delete(&self) -> bool {
        matches!(self, EventMethod::Delete)
    }

    /// Whether the event is handled as an update (Put, Patch, or an unknown verb).
    pub fn is_update(&self) -> bool {
        matches!(self, EventMethod::Put | EventMethod::Patch | EventMethod::Other(_))
    }
}

impl fmt::Display for EventMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_wire())
    }
}

impl serde::Serialize for EventMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_wire())
    }
}

impl<'de> serde::Deserialize<'de> for EventMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = EventMethod;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a method name such as \"POST\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EventMethod, E> {
                Ok(EventMethod::parse(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<EventMethod, E> {
                Ok(EventMethod::parse(&v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<EventMethod, E> {
                Ok(EventMethod::parse(&v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}
