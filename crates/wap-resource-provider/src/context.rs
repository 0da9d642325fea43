//! [`CallContext`]: who called, in which language, under which request and session ids.
//!
//! Built by the server from WAP's headers (docs/protocol/resource-provider.md §4.1) and handed to every
//! [`NotificationHandler`](crate::NotificationHandler) call and, as a request extension, to mounted routes.

use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// `x-ms-principal-id`: the caller's principal, sent percent-encoded.
pub const PRINCIPAL_ID_HEADER: &str = "x-ms-principal-id";
/// `x-ms-client-principal-id`: listed on Get Default Quota instead of `x-ms-principal-id`; read as an alias.
pub const CLIENT_PRINCIPAL_ID_HEADER: &str = "x-ms-client-principal-id";
/// `x-ms-principal-liveid`.
pub const PRINCIPAL_LIVE_ID_HEADER: &str = "x-ms-principal-liveid";
/// `x-ms-client-request-id`: opaque request id, logged.
pub const REQUEST_ID_HEADER: &str = "x-ms-client-request-id";
/// `x-ms-client-session-id`: opaque session id, logged.
pub const SESSION_ID_HEADER: &str = "x-ms-client-session-id";

/// The caller's principal id: the header value as sent and percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalId {
    raw: String,
    decoded: String,
    lossy: bool,
    source: PrincipalIdSource,
}

/// Which header carried the principal id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PrincipalIdSource {
    /// `x-ms-principal-id`.
    PrincipalId,
    /// `x-ms-client-principal-id` (the alias of Get Default Quota).
    ClientPrincipalId,
}

impl PrincipalId {
    /// Reads a header value: percent-decoded as UTF-8 (`corp%5cadmin` = `corp\admin`). Bytes that are not UTF-8
    /// after decoding become U+FFFD and [`PrincipalId::is_lossy`] is set; the raw value is kept either way.
    pub fn from_header(raw: impl Into<String>, source: PrincipalIdSource) -> Self {
        let raw = raw.into();
        let (decoded, lossy) = match percent_decode_str(&raw).decode_utf8() {
            Ok(text) => (text.into_owned(), false),
            Err(_) => (percent_decode_str(&raw).decode_utf8_lossy().into_owned(), true),
        };
        PrincipalId { raw, decoded, lossy, source }
    }

    /// The decoded principal, e.g. `corp\wapadmin` or `ana@fabrikam.test`.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The header value as sent, e.g. `corp%5cwapadmin`.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Whether decoding met bytes that are not UTF-8 (replaced by U+FFFD in [`PrincipalId::decoded`]).
    pub fn is_lossy(&self) -> bool {
        self.lossy
    }

    /// Which header carried it.
    pub fn source(&self) -> PrincipalIdSource {
        self.source
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.decoded)
    }
}

/// One language of an `Accept-Language` header with its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct LanguagePreference {
    /// The language tag as sent (`en-US`, `pt`, `*`).
    pub tag: String,
    /// Its weight, `q` (1.0 when absent).
    pub quality: f32,
}

/// Parses an `Accept-Language` value into tags ordered by weight (highest first, stable for equal weights);
/// entries with `q=0` or an unreadable weight are dropped.
pub fn parse_accept_language(value: &str) -> Vec<LanguagePreference> {
    let mut out: Vec<LanguagePreference> = value
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            if tag.is_empty() {
                return None;
            }
            let mut quality = 1.0f32;
            for p in parts {
                let p = p.trim();
                if let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                    quality = q.trim().parse().ok().filter(|q: &f32| (0.0..=1.0).contains(q))?;
                }
            }
            (quality > 0.0).then(|| LanguagePreference { tag: tag.to_owned(), quality })
        })
        .collect();
    out.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    out
}

/// Everything a notification call or mounted route knows about its caller.
///
/// Built by the server; build one in unit tests of a handler with [`CallContext::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct CallContext {
    provider_name: Arc<str>,
    principal_id: Option<PrincipalId>,
    principal_live_id: Option<String>,
    request_id: Option<String>,
    session_id: Option<String>,
    accept_language: Option<String>,
    referer: Option<String>,
}

impl CallContext {
    /// A context with no headers, for the provider called `provider_name`.
    pub fn new(provider_name: impl Into<Arc<str>>) -> Self {
        CallContext {
            provider_name: provider_name.into(),
            principal_id: None,
            principal_live_id: None,
            request_id: None,
            session_id: None,
            accept_language: None,
            referer: None,
        }
    }

    /// Reads WAP's headers (docs/protocol/resource-provider.md §4.1). `x-ms-principal-id` wins over its alias `x-ms-client-principal-id`.
    pub fn from_headers(provider_name: Arc<str>, headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let principal_id = text(PRINCIPAL_ID_HEADER)
            .map(|v| PrincipalId::from_header(v, PrincipalIdSource::PrincipalId))
            .or_else(|| {
                text(CLIENT_PRINCIPAL_ID_HEADER)
                    .map(|v| PrincipalId::from_header(v, PrincipalIdSource::ClientPrincipalId))
            });
        CallContext {
            provider_name,
            principal_id,
            principal_live_id: text(PRINCIPAL_LIVE_ID_HEADER),
            request_id: text(REQUEST_ID_HEADER),
            session_id: text(SESSION_ID_HEADER),
            accept_language: text(http::header::ACCEPT_LANGUAGE.as_str()),
            referer: text(http::header::REFERER.as_str()),
        }
    }

    /// Sets the principal id from a raw (percent-encoded) `x-ms-principal-id` value.
    pub fn with_principal_id(mut self, raw: impl Into<String>) -> Self {
        self.principal_id = Some(PrincipalId::from_header(raw, PrincipalIdSource::PrincipalId));
        self
    }

    /// Sets `Accept-Language`.
    pub fn with_accept_language(mut self, value: impl Into<String>) -> Self {
        self.accept_language = Some(value.into());
        self
    }

    /// Sets `x-ms-client-request-id`.
    pub fn with_request_id(mut self, value: impl Into<String>) -> Self {
        self.request_id = Some(value.into());
        self
    }

    /// Sets `x-ms-client-session-id`.
    pub fn with_session_id(mut self, value: impl Into<String>) -> Self {
        self.session_id = Some(value.into());
        self
    }

    /// Sets `Referer`.
    pub fn with_referer(mut self, value: impl Into<String>) -> Self {
        self.referer = Some(value.into());
        self
    }

    /// The resource provider's registered name (`ServiceName` of usage summaries).
    pub fn provider_name(&self) -> &str {
        &self.provider_name
    }

    /// The caller's principal (`x-ms-principal-id`, or its alias `x-ms-client-principal-id`); `None` when WAP
    /// did not send one (tolerated unless the server requires it).
    pub fn principal_id(&self) -> Option<&PrincipalId> {
        self.principal_id.as_ref()
    }

    /// `x-ms-principal-liveid`.
    pub fn principal_live_id(&self) -> Option<&str> {
        self.principal_live_id.as_deref()
    }

    /// `x-ms-client-request-id` (opaque; GUID + `-` + timestamp).
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// `x-ms-client-session-id`.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// `Accept-Language` as sent.
    pub fn accept_language(&self) -> Option<&str> {
        self.accept_language.as_deref()
    }

    /// `Referer`: the Admin API URL behind the call (`…:30004/subscriptions/<id>`, `…:30004/plans/<id>/quota`).
    pub fn referer(&self) -> Option<&str> {
        self.referer.as_deref()
    }

    /// The caller's languages, most wanted first.
    pub fn languages(&self) -> Vec<LanguagePreference> {
        self.accept_language.as_deref().map(parse_accept_language).unwrap_or_default()
    }

    /// The best of `supported` for this caller: an exact tag match (ignoring case) first, then a match of the
    /// primary subtag (`pt-BR` wanted, `pt-PT` supported), in the caller's order; `*` or no header picks the
    /// first supported language. `None` only when `supported` is empty or nothing matches.
    pub fn preferred_language<'a>(&self, supported: &[&'a str]) -> Option<&'a str> {
        let wanted = self.languages();
        if wanted.is_empty() {
            return supported.first().copied();
        }
        let primary = |t: &str| t.split(['-', '_']).next().unwrap_or(t).to_ascii_lowercase();
        for pref in &wanted {
            if pref.tag == "*" {
                return supported.first().copied();
            }
            if let Some(s) = supported.iter().find(|s| s.eq_ignore_ascii_case(&pref.tag)) {
                return Some(s);
            }
            let p = primary(&pref.tag);
            if let Some(s) = supported.iter().find(|s| primary(s) == p) {
                return Some(s);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_id_is_percent_decoded_and_raw_kept() {
        let p = PrincipalId::from_header("corp%5cwapadmin", PrincipalIdSource::PrincipalId);
        assert_eq!(p.decoded(), "corp\\wapadmin");
        assert_eq!(p.raw(), "corp%5cwapadmin");
        assert!(!p.is_lossy());
        // The documentation's example: %e5%b8%83%e6%b4%be is UTF-8 for two CJK characters.
        let p = PrincipalId::from_header("%e5%b8%83%e6%b4%be", PrincipalIdSource::PrincipalId);
        assert_eq!(p.decoded(), "\u{5e03}\u{6d3e}");
        let p = PrincipalId::from_header("bad%ff", PrincipalIdSource::PrincipalId);
        assert!(p.is_lossy());
        assert_eq!(p.decoded(), "bad\u{fffd}");
    }

    #[test]
    fn headers_fill_the_context_and_the_alias_is_used_when_alone() {
        let mut h = HeaderMap::new();
        h.insert(CLIENT_PRINCIPAL_ID_HEADER, "corp%5cwapadmin".parse().unwrap());
        h.insert(REQUEST_ID_HEADER, "c675-2015-06-02 08:14:09Z".parse().unwrap());
        h.insert("accept-language", "pt-PT, en;q=0.5".parse().unwrap());
        let ctx = CallContext::from_headers("backup".into(), &h);
        let p = ctx.principal_id().unwrap();
        assert_eq!(p.decoded(), "corp\\wapadmin");
        assert_eq!(p.source(), PrincipalIdSource::ClientPrincipalId);
        assert_eq!(ctx.request_id(), Some("c675-2015-06-02 08:14:09Z"));
        assert_eq!(ctx.session_id(), None);
        h.insert(PRINCIPAL_ID_HEADER, "corp%5cother".parse().unwrap());
        let ctx = CallContext::from_headers("backup".into(), &h);
        assert_eq!(ctx.principal_id().unwrap().decoded(), "corp\\other");
        assert_eq!(ctx.principal_id().unwrap().source(), PrincipalIdSource::PrincipalId);
    }

    #[test]
    fn accept_language_orders_by_weight_and_matches_primary_subtags() {
        let prefs = parse_accept_language("en;q=0.5, pt-BR, de;q=0, fr;q=0.8, xx;q=abc");
        let tags: Vec<&str> = prefs.iter().map(|p| p.tag.as_str()).collect();
        assert_eq!(tags, ["pt-BR", "fr", "en"]);
        let ctx = CallContext::new("x").with_accept_language("en;q=0.5, pt-BR, fr;q=0.8");
        assert_eq!(ctx.preferred_language(&["en-US", "pt-PT"]), Some("pt-PT"));
        assert_eq!(ctx.preferred_language(&["de"]), None);
        let ctx = CallContext::new("x").with_accept_language("EN-us");
        assert_eq!(ctx.preferred_language(&["pt-PT", "en-US"]), Some("en-US"));
        assert_eq!(CallContext::new("x").preferred_language(&["pt-PT", "en-US"]), Some("pt-PT"));
    }
}
