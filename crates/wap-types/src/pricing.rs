//! The pricing API: `GET planPrice` / `GET addonPrice` and the price answer (docs/protocol/approval-and-pricing.md §4).

use std::fmt;

/// Why a pricing query is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PriceQueryError {
    /// `id` absent or empty.
    #[error("query parameter `id` is required")]
    MissingId,
}

fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.trim_start_matches('?').as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}

fn find(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

fn encode(pairs: &[(&str, Option<&str>)]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            ser.append_pair(k, v);
        }
    }
    ser.finish()
}

/// `GET planPrice?id=&region=&username=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanPriceQuery {
    /// `id`: the plan id.
    pub id: String,
    /// `region`.
    pub region: Option<String>,
    /// `username`: the tenant (e-mail).
    pub username: Option<String>,
}

impl PlanPriceQuery {
    /// Reads a query string; names match ignoring case; `id` is required.
    pub fn from_query(query: &str) -> Result<Self, PriceQueryError> {
        let pairs: Vec<_> = query_pairs(query).collect();
        let id = find(&pairs, "id").filter(|v| !v.is_empty()).ok_or(PriceQueryError::MissingId)?;
        Ok(PlanPriceQuery { id, region: find(&pairs, "region"), username: find(&pairs, "username") })
    }

    /// The query string WAP sends (exact lower-case names).
    pub fn to_query(&self) -> String {
        encode(&[("id", Some(&self.id)), ("region", self.region.as_deref()), ("username", self.username.as_deref())])
    }
}

/// `GET addonPrice?id=&region=&username=&subscriptionid=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddonPriceQuery {
    /// `id`: the add-on id.
    pub id: String,
    /// `region`.
    pub region: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `subscriptionid` (also read as `subscriptionId`).
    pub subscription_id: Option<String>,
}

impl AddonPriceQuery {
    /// Reads a query string; names match ignoring case; `id` is required.
    pub fn from_query(query: &str) -> Result<Self, PriceQueryError> {
        let pairs: Vec<_> = query_pairs(query).collect();
        let id = find(&pairs, "id").filter(|v| !v.is_empty()).ok_or(PriceQueryError::MissingId)?;
        Ok(AddonPriceQuery {
            id,
            region: find(&pairs, "region"),
            username: find(&pairs, "username"),
            subscription_id: find(&pairs, "subscriptionid"),
        })
    }

    /// The query string WAP sends (exact lower-case names).
    pub fn to_query(&self) -> String {
        encode(&[
            ("id", Some(&self.id)),
            ("region", self.region.as_deref()),
            ("username", self.username.as_deref()),
            ("subscriptionid", self.subscription_id.as_deref()),
        ])
    }
}

/// How a price is encoded on the wire (`PricingResponseFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PriceEncoding {
    /// A JSON string literal, `application/json; charset=utf-8` (default).
    #[default]
    Json,
    /// Raw text, `text/plain; charset=utf-8`.
    Text,
}

impl PriceEncoding {
    /// The `Content-Type` of this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            PriceEncoding::Json => "application/json; charset=utf-8",
            PriceEncoding::Text => "text/plain; charset=utf-8",
        }
    }
}

/// The default `PricingMaxLength`.
pub const DEFAULT_PRICE_MAX_LENGTH: usize = 256;

/// A price answer: a short, unformatted string such as `Silver: $25.00 per month + usage`; `""` for unknown ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PriceAnswer(String);

impl PriceAnswer {
    /// A price, sanitized: control characters (line breaks included) removed, cut to `max_len` characters.
    pub fn new(text: &str, max_len: usize) -> Self {
        PriceAnswer(text.chars().filter(|c| !c.is_control()).take(max_len).collect())
    }

    /// The empty price (unknown id or lookup failure).
    pub fn unknown() -> Self {
        PriceAnswer(String::new())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the price is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The response body in an encoding.
    pub fn encode(&self, encoding: PriceEncoding) -> Vec<u8> {
        match encoding {
            PriceEncoding::Json => serde_json::to_vec(&self.0).unwrap_or_else(|_| b"\"\"".to_vec()),
            PriceEncoding::Text => self.0.as_bytes().to_vec(),
        }
    }

    /// Reads a response body in either encoding: a JSON string literal, or else raw text.
    pub fn decode(body: &[u8]) -> Self {
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        if let Ok(s) = serde_json::from_slice::<String>(body) {
            return PriceAnswer(s);
        }
        PriceAnswer(String::from_utf8_lossy(body).into_owned())
    }
}

impl fmt::Display for PriceAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
