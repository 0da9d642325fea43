//! The notification caller: the eight calls WAP's Service Management API makes on a resource provider's
//! notification endpoint (docs/protocol/resource-provider.md §4), with WAP's headers (docs/protocol/resource-provider.md §4.1).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_TYPE, REFERER};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::de::DeserializeOwned;
use wap_types::{QuotaUpdateBatch, Subscription};

use crate::approval::join_endpoint;
use crate::client::{send, OutRequest};
use crate::error::{redact_url, SimError};
use crate::ids::guid_from;
use crate::sim::Inner;

/// A resource provider's answer to a notification call: any status (the caller decides what is expected).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RpResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The URL called (without credentials).
    pub url: String,
}

impl RpResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as `T` (errors name the JSON path of the bad member).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, SimError> {
        wap_types::json::from_slice(&self.body)
            .map_err(|e| SimError::InvalidResponse { url: self.url.clone(), message: e.to_string() })
    }
}

/// Percent-encodes a principal the way WAP does (`corp\wapadmin` → `corp%5cwapadmin`: lower-case hex, RFC 3986
/// unreserved characters and `@` kept).
pub(crate) fn encode_principal(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 8);
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Makes the eight notification calls on one registered resource provider.
#[derive(Clone)]
pub struct NotificationCaller {
    inner: Arc<Inner>,
    rp_name: String,
    principal_id: String,
    accept_language: String,
    plan_id: Option<String>,
    session_id: String,
}

impl fmt::Debug for NotificationCaller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationCaller")
            .field("rp_name", &self.rp_name)
            .field("principal_id", &self.principal_id)
            .field("accept_language", &self.accept_language)
            .field("plan_id", &self.plan_id)
            .finish_non_exhaustive()
    }
}

impl NotificationCaller {
    pub(crate) fn new(inner: Arc<Inner>, rp_name: &str) -> Self {
        let session_id = guid_from(&mut inner.data.lock().unwrap_or_else(|e| e.into_inner()).rng);
        NotificationCaller {
            inner,
            rp_name: rp_name.to_owned(),
            principal_id: "corp\\wapadmin".into(),
            accept_language: "en-US".into(),
            plan_id: None,
            session_id,
        }
    }

    /// The administrator sent as `x-ms-principal-id` (raw; sent percent-encoded). Default `corp\wapadmin`.
    pub fn principal_id(mut self, principal: impl Into<String>) -> Self {
        self.principal_id = principal.into();
        self
    }

    /// `Accept-Language` (default `en-US`).
    pub fn accept_language(mut self, language: impl Into<String>) -> Self {
        self.accept_language = language.into();
        self
    }

    /// The plan whose quota an Update/Validate Quota concerns (shown in `Referer`).
    pub fn for_plan(mut self, plan_id: impl Into<String>) -> Self {
        self.plan_id = Some(plan_id.into());
        self
    }

    /// The `x-ms-client-session-id` sent with every call of this caller.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// `POST subscriptions` (Create Subscription; 201, or 202 when asynchronous).
    pub async fn create_subscription(&self, s: &Subscription) -> Result<RpResponse, SimError> {
        let referer = format!("subscriptions/{}", s.subscription_id);
        self.call(Method::POST, "subscriptions", None, Some(json(s)), Some(referer), true).await
    }

    /// `GET subscriptions/{id}`.
    pub async fn get_subscription(&self, subscription_id: &str) -> Result<RpResponse, SimError> {
        let path = format!("subscriptions/{subscription_id}");
        self.call(Method::GET, &path, None, None, Some(path.clone()), true).await
    }

    /// `PUT subscriptions/{id}` (Update Subscription).
    pub async fn update_subscription(&self, s: &Subscription) -> Result<RpResponse, SimError> {
        let path = format!("subscriptions/{}", s.subscription_id);
        self.call(Method::PUT, &path, None, Some(json(s)), Some(path.clone()), true).await
    }

    /// `DELETE subscriptions/{id}` (200, or 202 when asynchronous).
    pub async fn delete_subscription(&self, subscription_id: &str) -> Result<RpResponse, SimError> {
        let path = format!("subscriptions/{subscription_id}");
        self.call(Method::DELETE, &path, None, None, Some(path.clone()), true).await
    }

    /// `GET subscriptions/{id}/usagesummary`.
    pub async fn usage_summary(&self, subscription_id: &str) -> Result<RpResponse, SimError> {
        let path = format!("subscriptions/{subscription_id}/usagesummary");
        self.call(Method::GET, &path, None, None, Some(format!("subscriptions/{subscription_id}")), true).await
    }

    /// `PUT quota` (Update Quota).
    pub async fn update_quota(&self, batch: &QuotaUpdateBatch) -> Result<RpResponse, SimError> {
        let referer = self.plan_id.as_ref().map(|p| format!("plans/{p}/quota"));
        self.call(Method::PUT, "quota", None, Some(json(batch)), referer, true).await
    }

    /// `PUT quota?validateOnly=true` (Validate Quota: 200, or 400 + ResourceProviderError).
    pub async fn validate_quota(&self, batch: &QuotaUpdateBatch) -> Result<RpResponse, SimError> {
        let referer = self.plan_id.as_ref().map(|p| format!("plans/{p}/quota"));
        self.call(Method::PUT, "quota", Some("validateOnly=true"), Some(json(batch)), referer, true).await
    }

    /// `GET defaultquota` (sent with `x-ms-client-principal-id` instead of `x-ms-principal-id`, as documented).
    pub async fn default_quota(&self) -> Result<RpResponse, SimError> {
        self.call(Method::GET, "defaultquota", None, None, None, false).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        body: Option<Bytes>,
        referer: Option<String>,
        principal_header: bool,
    ) -> Result<RpResponse, SimError> {
        let reg = {
            let rps = self.inner.rps.lock().unwrap_or_else(|e| e.into_inner());
            rps.get(&self.rp_name.to_ascii_lowercase())
                .map(|s| s.registration.clone())
                .ok_or_else(|| SimError::UnknownResourceProvider(self.rp_name.clone()))?
        };
        let endpoint = reg
            .notification_endpoint
            .clone()
            .ok_or(SimError::NoEndpoint { rp: reg.name.clone(), endpoint: "notification" })?;
        let mut url = join_endpoint(&endpoint, path);
        url.set_query(query);
        let request_id = {
            let mut data = self.inner.data.lock().unwrap_or_else(|e| e.into_inner());
            format!("{}-{}", guid_from(&mut data.rng), chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ"))
        };
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        let mut push = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.push((HeaderName::from_static(name), v));
            }
        };
        let principal = encode_principal(&self.principal_id);
        push(if principal_header { "x-ms-principal-id" } else { "x-ms-client-principal-id" }, &principal);
        push("x-ms-client-request-id", &request_id);
        push("x-ms-client-session-id", &self.session_id);
        if let Ok(v) = HeaderValue::from_str(&self.accept_language) {
            headers.push((ACCEPT_LANGUAGE, v));
        }
        if let Some(r) = referer {
            if let Ok(v) = HeaderValue::from_str(&format!("{}{r}", self.inner.admin_api_base)) {
                headers.push((REFERER, v));
            }
        }
        if body.is_some() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8")));
        }
        if let Some(c) = &reg.notification_auth {
            if let Ok(mut v) = HeaderValue::from_str(&c.header_value()) {
                v.set_sensitive(true);
                headers.push((AUTHORIZATION, v));
            }
        }
        let shown = redact_url(&url);
        let r = send(&self.inner.outbound, OutRequest { method, url, headers, body, timeout: reg.timeout }).await?;
        Ok(RpResponse { status: r.status, headers: r.headers, body: r.body, url: shown })
    }
}

fn json<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_encoded_like_wap() {
        assert_eq!(encode_principal("corp\\wapadmin"), "corp%5cwapadmin");
        assert_eq!(encode_principal("admin@corp.test"), "admin@corp.test");
        assert_eq!(encode_principal("a b"), "a%20b");
    }
}
