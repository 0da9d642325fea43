//! The two macros that define every wire object of this crate.
//!
//! WAP is a .NET service: its JSON reader matches member names ignoring case and its documentation spells some
//! members two ways. Serde's derive matches names exactly, so every object here is declared with
//! [`wire_object!`], which generates a struct plus `Serialize`/`Deserialize` impls that
//!
//! * read each member under its wire name, any listed alias, in any ASCII case;
//! * write the first (WAP's own) spelling;
//! * read a missing member of an `Option` (or other `Default`) type as `null`; a missing `required` member is an
//!   error naming the member;
//! * keep every unknown member in the object's `extra` map and write it back, so parse → write → parse loses
//!   nothing.
//!
//! Integer enums are declared with [`wire_int_enum!`]: unknown integers are kept as `Unknown(n)`, and the
//! variant's name (any case) or a numeric string is accepted as well.

/// Unknown JSON members of a wire object, kept so that nothing is lost on a round trip.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// Matches a JSON member name against a wire name, ignoring ASCII case.
#[inline]
pub(crate) fn name_matches(key: &str, wire: &str) -> bool {
    key.len() == wire.len() && key.eq_ignore_ascii_case(wire)
}

macro_rules! wire_object {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty => $wire:literal $(| $alias:literal)* $(, $req:ident)? ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
            /// Members this crate does not know, kept and written back unchanged.
            pub extra: $crate::wire::Extra,
        }

        const _: () = {
            use ::serde::de::{self, MapAccess, Visitor};
            use ::serde::ser::SerializeMap;
            use ::std::fmt;

            #[allow(non_camel_case_types)]
            enum __Field<'a> {
                $($field,)*
                __Other(::std::borrow::Cow<'a, str>),
            }

            impl<'a> __Field<'a> {
                #[inline]
                fn from_key(key: ::std::borrow::Cow<'a, str>) -> Self {
                    // Exact spellings first (the common case), then any ASCII case.
                    match key.as_ref() {
                        $( $wire $(| $alias)* => return __Field::$field, )*
                        _ => {}
                    }
                    $(
                        if $crate::wire::name_matches(&key, $wire)
                            $(|| $crate::wire::name_matches(&key, $alias))*
                        {
                            return __Field::$field;
                        }
                    )*
                    __Field::__Other(key)
                }
            }

            struct __FieldSeed;

            impl<'de> de::DeserializeSeed<'de> for __FieldSeed {
                type Value = __Field<'de>;
                fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                    struct KeyVisitor;
                    impl<'de> Visitor<'de> for KeyVisitor {
                        type Value = __Field<'de>;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            f.write_str("a member name")
                        }
                        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                            Ok(__Field::from_key(::std::borrow::Cow::Borrowed(v)))
                        }
                        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                            Ok(match __Field::from_key(::std::borrow::Cow::Borrowed(v)) {
                                __Field::__Other(_) => __Field::__Other(::std::borrow::Cow::Owned(v.to_owned())),
                                $( __Field::$field => __Field::$field, )*
                            })
                        }
                        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                            Ok(__Field::from_key(::std::borrow::Cow::Owned(v)))
                        }
                    }
                    d.deserialize_str(KeyVisitor)
                }
            }

            impl<'de> ::serde::Deserialize<'de> for $name {
                fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    struct ObjVisitor;
                    impl<'de> Visitor<'de> for ObjVisitor {
                        type Value = $name;
                        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                            f.write_str(concat!("a JSON object (", stringify!($name), ")"))
                        }
                        #[allow(unused_mut)]
                        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                            $( let mut $field: Option<$ty> = None; )*
                            let mut __extra = $crate::wire::Extra::new();
                            while let Some(__key) = map.next_key_seed(__FieldSeed)? {
                                match __key {
                                    $( __Field::$field => { $field = Some(map.next_value()?); } )*
                                    __Field::__Other(k) => {
                                        let v: ::serde_json::Value = map.next_value()?;
                                        __extra.insert(k.into_owned(), v);
                                    }
                                }
                            }
                            Ok($name {
                                $( $field: wire_object!(@finish $field, $wire $(, $req)?), )*
                                extra: __extra,
                            })
                        }
                    }
                    d.deserialize_map(ObjVisitor)
                }
            }

            impl ::serde::Serialize for $name {
                fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let count = [$(stringify!($field)),*].len() + self.extra.len();
                    let mut m = s.serialize_map(Some(count))?;
                    $( m.serialize_entry($wire, &self.$field)?; )*
                    for (k, v) in &self.extra {
                        m.serialize_entry(k, v)?;
                    }
                    m.end()
                }
            }
        };
    };
    (@finish $field:ident, $wire:literal, required) => {
        match $field {
            Some(v) => v,
            None => return Err(de::Error::missing_field($wire)),
        }
    };
    (@finish $field:ident, $wire:literal) => {
        $field.unwrap_or_default()
    };
}

macro_rules! wire_int_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $value:literal,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                $variant,
            )*
            /// A value this crate does not know, kept as sent.
            Unknown(i64),
        }

        impl $name {
            /// The integer sent on the wire.
            pub fn code(self) -> i64 {
                match self {
                    $( $name::$variant => $value, )*
                    $name::Unknown(n) => n,
                }
            }

            /// The value for a wire integer; unknown integers become `Unknown`.
            pub fn from_code(code: i64) -> Self {
                match code {
                    $( $value => $name::$variant, )*
                    n => $name::Unknown(n),
                }
            }

            /// Parses a variant name (any ASCII case) or a decimal integer.
            pub fn from_name(name: &str) -> Option<Self> {
                let name = name.trim();
                $( if name.eq_ignore_ascii_case(stringify!($variant)) { return Some($name::$variant); } )*
                name.parse::<i64>().ok().map($name::from_code)
            }

            /// Whether the value is one this crate knows.
            pub fn is_known(self) -> bool {
                !matches!(self, $name::Unknown(_))
            }
        }

        impl From<i64> for $name {
            fn from(code: i64) -> Self {
                $name::from_code(code)
            }
        }

        impl From<$name> for i64 {
            fn from(v: $name) -> i64 {
                v.code()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    $( $name::$variant => f.write_str(stringify!($variant)), )*
                    $name::Unknown(n) => write!(f, "Unknown({n})"),
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_i64(self.code())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> ::serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("an integer or a name of ", stringify!($name)))
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        Ok($name::from_code(v))
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        i64::try_from(v)
                            .map($name::from_code)
                            .map_err(|_| E::custom(concat!("integer out of range for ", stringify!($name))))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| {
                            E::custom(format!(concat!("unknown ", stringify!($name), " name {:?}"), v))
                        })
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

pub(crate) use wire_int_enum;
pub(crate) use wire_object;
