//! Pieces every form-posting billing-system client needs (WHMCS's `includes/api.php`, HostBill's
//! `admin/api.php`): an HTTP client that posts a form with a whole-call timeout and a body limit
//! ([`FormPostClient`]), the classification of what failed below the billing system's envelope
//! ([`TransportFailure`]), tolerant readers of PHP's JSON scalars ([`scalar`]), and the fault queue of the
//! billing-system doubles ([`fault`]).
//!
//! A billing-system crate keeps its own envelope, error texts and typed calls; this module holds only what does
//! not depend on the vendor.

pub mod fault;
pub mod scalar;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
type HttpClient = hyper_util::client::legacy::Client<Connector, Full<Bytes>>;

/// The most of an answer read by default (billing answers are small; a larger one is a misconfigured endpoint).
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;
/// How much of a body [`snippet`] keeps.
pub const SNIPPET: usize = 200;

/// Why a call failed below the billing system's envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// Could not connect: the request was not sent.
    Connect,
    /// No complete answer within the call timeout. The request may have been applied.
    Timeout(Duration),
    /// The connection broke after the request was (maybe) sent. The request may have been applied.
    Interrupted,
    /// HTTP 5xx with no envelope. The request may have been applied.
    ServerError,
    /// A body that is not JSON (an HTML error page, a proxy's page, maintenance).
    NotJson,
}

impl TransportFailure {
    /// Whether the request certainly did not reach the billing system (only [`TransportFailure::Connect`]).
    pub fn certainly_not_sent(self) -> bool {
        matches!(self, TransportFailure::Connect)
    }
}

/// A failed exchange: what failed, the HTTP status when there was one, and a description that never contains the
/// request body (where the credentials are).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failure:?}{}: {detail}", status.map(|s| format!(" (HTTP {s})")).unwrap_or_default())]
#[non_exhaustive]
pub struct TransportError {
    /// What failed.
    pub failure: TransportFailure,
    /// The HTTP status, when an answer began.
    pub status: Option<u16>,
    /// A description (socket error chain, or the first bytes of a body).
    pub detail: String,
}

impl TransportError {
    /// A transport error.
    pub fn new(failure: TransportFailure, status: Option<u16>, detail: impl Into<String>) -> Self {
        TransportError { failure, status, detail: detail.into() }
    }
}

/// A client configuration error (bad URL, TLS set-up).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormPostConfigError(pub String);

/// An answer: HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body (at most the client's body limit).
    pub body: Bytes,
}

/// Posts `application/x-www-form-urlencoded` bodies to one endpoint over HTTP or HTTPS (rustls, the system's
/// roots), with a whole-call timeout and a body limit. Cheap to clone; clones share the connection pool. It never
/// retries and never logs the body.
#[derive(Clone)]
pub struct FormPostClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    endpoint: Uri,
    timeout: Duration,
    max_body: usize,
    user_agent: HeaderValue,
}

impl fmt::Debug for FormPostClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormPostClient")
            .field("endpoint", &self.inner.endpoint.to_string())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl FormPostClient {
    /// A client posting to `endpoint` (`http` or `https`, no credentials in it), each call cut at `timeout`.
    pub fn new(endpoint: &str, timeout: Duration, user_agent: &str) -> Result<Self, FormPostConfigError> {
        let uri: Uri = endpoint
            .trim()
            .parse()
            .map_err(|e| FormPostConfigError(format!("the endpoint {endpoint:?} is not a URL: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
            return Err(FormPostConfigError(format!("the endpoint {endpoint:?} is not an http(s) URL")));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(FormPostConfigError("the endpoint must not carry credentials".into()));
        }
        if timeout.is_zero() {
            return Err(FormPostConfigError("the timeout must be > 0".into()));
        }
        let user_agent = HeaderValue::from_str(user_agent)
            .map_err(|_| FormPostConfigError(format!("invalid User-Agent {user_agent:?}")))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| FormPostConfigError(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        Ok(FormPostClient {
            inner: Arc::new(Inner { http, endpoint: uri, timeout, max_body: DEFAULT_MAX_BODY, user_agent }),
        })
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Uri {
        &self.inner.endpoint
    }

    /// The whole-call timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Posts `body` (already form-encoded) and reads the answer, whatever its status.
    pub async fn post(&self, body: String) -> Result<FormAnswer, TransportError> {
        let i = &self.inner;
        let request = http::Request::post(i.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(USER_AGENT, i.user_agent.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| {
                TransportError::new(TransportFailure::Connect, None, format!("cannot build the request: {e}"))
            })?;
        let exchange = async {
            let response = i.http.request(request).await.map_err(|e| {
                let failure = if e.is_connect() { TransportFailure::Connect } else { TransportFailure::Interrupted };
                TransportError::new(failure, None, error_chain(&e))
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), i.max_body)
                .collect()
                .await
                .map_err(|e| TransportError::new(TransportFailure::Interrupted, Some(status), e.to_string()))?
                .to_bytes();
            Ok::<_, TransportError>(FormAnswer { status, body })
        };
        match tokio::time::timeout(i.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::new(TransportFailure::Timeout(i.timeout), None, "no answer in time")),
        }
    }
}

/// A form body from pairs (`key=value&…`, percent-encoded).
pub fn encode_form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    form.finish()
}

/// The first [`SNIPPET`] bytes of a body, control characters escaped (for error messages).
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SNIPPET)]);
    text.chars().flat_map(char::escape_default).collect()
}

/// An error and its sources, joined with `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert!(FormPostClient::new("ftp://x/", Duration::from_secs(1), "t").is_err());
        assert!(FormPostClient::new("http://u:p@x/", Duration::from_secs(1), "t").is_err());
        assert!(FormPostClient::new("http://x/", Duration::ZERO, "t").is_err());
        assert!(FormPostClient::new("https://x/admin/api.php", Duration::from_secs(1), "t").is_ok());
    }

    #[test]
    fn snippet_escapes_and_cuts() {
        let body = format!("<html>\n{}", "x".repeat(500));
        let s = snippet(body.as_bytes());
        assert!(s.starts_with("<html>\\n"));
        assert!(s.len() < 220);
        assert_eq!(encode_form([("a", "b c"), ("k[x]", "&")]), "a=b+c&k%5Bx%5D=%26");
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect_and_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let c = FormPostClient::new(&format!("http://{addr}/api.php"), Duration::from_secs(5), "t").unwrap();
        let e = c.post("a=b".into()).await.unwrap_err();
        assert_eq!(e.failure, TransportFailure::Connect, "{e}");
        assert!(e.failure.certainly_not_sent());
    }
}
