//! Which of the four operations a request path names (docs/protocol/approval-and-pricing.md §3.2, §4).
//!
//! WAP appends `subscriptions`, `subscriptionAddons`, `planPrice` or `addonPrice` to the registered endpoint, and
//! the pricing documentation also names the root. The route is the last non-empty path segment, compared ignoring
//! ASCII case; a trailing slash is ignored.

use http::Method;

/// A responder route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `subscriptions`: approval of subscription events (and, per entity shape, add-on events).
    Subscriptions,
    /// `subscriptionAddons`: approval of subscription add-on events.
    SubscriptionAddons,
    /// `planPrice`.
    PlanPrice,
    /// `addonPrice`.
    AddonPrice,
}

impl Route {
    /// The path segment of this route, as WAP spells it.
    pub fn segment(self) -> &'static str {
        match self {
            Route::Subscriptions => "subscriptions",
            Route::SubscriptionAddons => "subscriptionAddons",
            Route::PlanPrice => "planPrice",
            Route::AddonPrice => "addonPrice",
        }
    }

    /// Whether this is an approval route.
    pub fn is_approval(self) -> bool {
        matches!(self, Route::Subscriptions | Route::SubscriptionAddons)
    }

    /// The methods WAP may use on this route: `POST`, `PUT` on approval, `GET` on pricing.
    pub fn allows(self, method: &Method) -> bool {
        if self.is_approval() {
            method == Method::POST || method == Method::PUT
        } else {
            method == Method::GET
        }
    }

    /// The `Allow` header value for a 405.
    pub fn allow_header(self) -> &'static str {
        if self.is_approval() {
            "POST, PUT"
        } else {
            "GET"
        }
    }

    fn from_segment(segment: &str) -> Option<Route> {
        [Route::Subscriptions, Route::SubscriptionAddons, Route::PlanPrice, Route::AddonPrice]
            .into_iter()
            .find(|r| r.segment().eq_ignore_ascii_case(segment))
    }

    /// Routes a path. With `any_prefix`, whatever precedes the last segment is accepted; otherwise the prefix must
    /// be empty (the root) or equal `base` (lower-case segments), ignoring ASCII case.
    pub(crate) fn resolve(path: &str, base: &[String], any_prefix: bool) -> Option<Route> {
        let mut segments = path.split('/').filter(|s| !s.is_empty());
        let last = segments.next_back()?;
        let route = Route::from_segment(last)?;
        if any_prefix {
            return Some(route);
        }
        let prefix: Vec<&str> = segments.collect();
        let at_root = prefix.is_empty();
        let at_base = prefix.len() == base.len() && prefix.iter().zip(base).all(|(p, b)| p.eq_ignore_ascii_case(b));
        (at_root || at_base).then_some(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segment_in_any_case_with_or_without_trailing_slash() {
        let base = vec!["wap".to_owned()];
        assert_eq!(Route::resolve("/wap/subscriptions", &base, true), Some(Route::Subscriptions));
        assert_eq!(Route::resolve("/SubscriptionAddons/", &base, true), Some(Route::SubscriptionAddons));
        assert_eq!(Route::resolve("/x/y/PLANPRICE", &base, true), Some(Route::PlanPrice));
        assert_eq!(Route::resolve("//wap//addonPrice//", &base, true), Some(Route::AddonPrice));
        assert_eq!(Route::resolve("/wap/subscriptions/extra", &base, true), None);
        assert_eq!(Route::resolve("/", &base, true), None);
        assert_eq!(Route::resolve("", &base, true), None);
    }

    #[test]
    fn strict_prefix_accepts_base_and_root_only() {
        let base = vec!["billing".to_owned(), "wap".to_owned()];
        assert_eq!(Route::resolve("/Billing/WAP/planPrice", &base, false), Some(Route::PlanPrice));
        assert_eq!(Route::resolve("/planPrice", &base, false), Some(Route::PlanPrice));
        assert_eq!(Route::resolve("/wap/planPrice", &base, false), None);
        assert_eq!(Route::resolve("/other/billing/wap/planPrice", &base, false), None);
    }

    #[test]
    fn methods_per_route() {
        assert!(Route::Subscriptions.allows(&Method::PUT));
        assert!(Route::SubscriptionAddons.allows(&Method::POST));
        assert!(!Route::Subscriptions.allows(&Method::GET));
        assert!(Route::AddonPrice.allows(&Method::GET));
        assert!(!Route::PlanPrice.allows(&Method::POST));
    }
}
