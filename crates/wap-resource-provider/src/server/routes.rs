//! Path routing: which endpoint a request path belongs to.

use http::Method;
use percent_encoding::percent_decode_str;

/// A notification operation's path (relative to the notification base path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotificationPath {
    /// `subscriptions`
    Subscriptions,
    /// `subscriptions/{id}`
    Subscription(String),
    /// `subscriptions/{id}/usagesummary`
    UsageSummary(String),
    /// `quota`
    Quota,
    /// `defaultquota`
    DefaultQuota,
}

impl NotificationPath {
    /// Parses the path below the base (no leading `/`; one trailing `/` tolerated).
    pub(crate) fn parse(rest: &str) -> Option<Self> {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let segs: Vec<&str> = rest.split('/').collect();
        let is = |s: &str, lit: &str| s.eq_ignore_ascii_case(lit);
        let id = |s: &str| {
            let decoded = percent_decode_str(s).decode_utf8().ok()?.trim().to_owned();
            (!decoded.is_empty()).then_some(decoded)
        };
        match segs.as_slice() {
            [s] if is(s, "subscriptions") => Some(NotificationPath::Subscriptions),
            [s, i] if is(s, "subscriptions") => id(i).map(NotificationPath::Subscription),
            [s, i, u] if is(s, "subscriptions") && is(u, "usagesummary") => id(i).map(NotificationPath::UsageSummary),
            [q] if is(q, "quota") => Some(NotificationPath::Quota),
            [d] if is(d, "defaultquota") => Some(NotificationPath::DefaultQuota),
            _ => None,
        }
    }

    /// The methods this path accepts.
    pub(crate) fn allowed(&self) -> &'static [Method] {
        match self {
            NotificationPath::Subscriptions => &[Method::POST, Method::PUT, Method::DELETE],
            NotificationPath::Subscription(_) => &[Method::GET, Method::PUT, Method::DELETE],
            NotificationPath::UsageSummary(_) | NotificationPath::DefaultQuota => &[Method::GET],
            NotificationPath::Quota => &[Method::PUT],
        }
    }
}

/// Normalizes a base path: leading and trailing `/`.
pub(crate) fn normalize_base(base: &str) -> String {
    let trimmed = base.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}/")
    }
}

/// The part of `path` below `base` (a normalized base, matched ignoring ASCII case), without leading `/`.
pub(crate) fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if path.len() + 1 == base.len() && base.get(..path.len()).is_some_and(|b| b.eq_ignore_ascii_case(path)) {
        return Some("");
    }
    let head = path.get(..base.len())?;
    head.eq_ignore_ascii_case(base).then(|| &path[base.len()..])
}

/// Whether the path below a base is the usage resource.
pub(crate) fn is_usage(rest: &str) -> bool {
    rest.strip_suffix('/').unwrap_or(rest).eq_ignore_ascii_case("usage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_paths_parse_case_insensitively() {
        assert_eq!(NotificationPath::parse("subscriptions"), Some(NotificationPath::Subscriptions));
        assert_eq!(NotificationPath::parse("Subscriptions/"), Some(NotificationPath::Subscriptions));
        assert_eq!(NotificationPath::parse("subscriptions/abc"), Some(NotificationPath::Subscription("abc".into())));
        assert_eq!(
            NotificationPath::parse("subscriptions/a%20b/UsageSummary"),
            Some(NotificationPath::UsageSummary("a b".into()))
        );
        assert_eq!(NotificationPath::parse("QUOTA"), Some(NotificationPath::Quota));
        assert_eq!(NotificationPath::parse("defaultquota"), Some(NotificationPath::DefaultQuota));
        assert_eq!(NotificationPath::parse("subscriptions//usagesummary"), None);
        assert_eq!(NotificationPath::parse("subscriptions/x/y"), None);
        assert_eq!(NotificationPath::parse("plans"), None);
        assert_eq!(NotificationPath::parse(""), None);
    }

    #[test]
    fn bases_strip_on_segment_boundaries() {
        assert_eq!(normalize_base("admin"), "/admin/");
        assert_eq!(normalize_base("/"), "/");
        assert_eq!(strip_base("/Admin/quota", "/admin/"), Some("quota"));
        assert_eq!(strip_base("/admin", "/admin/"), Some(""));
        assert_eq!(strip_base("/administrator/quota", "/admin/"), None);
        assert_eq!(strip_base("/usage", "/"), Some("usage"));
        assert!(is_usage("Usage/"));
        assert!(!is_usage("usages"));
    }
}
