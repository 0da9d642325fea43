//! The outbound HTTP/1.1 client of the simulator (approval, pricing, usage collection, notifications): one
//! connection per call, a timeout over the whole exchange, a bounded response body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

use crate::error::{redact_url, SimError};

/// The largest response body read (64 MiB); a larger one fails the call.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Shared outbound settings.
#[derive(Clone, Default)]
pub(crate) struct Outbound {
    #[cfg(feature = "rustls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound").finish_non_exhaustive()
    }
}

/// One outbound request.
#[derive(Debug)]
pub(crate) struct OutRequest {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Option<Bytes>,
    pub(crate) timeout: Duration,
}

/// A complete response.
#[derive(Debug, Clone)]
pub(crate) struct OutResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Sends a request and reads the whole response within the timeout.
pub(crate) async fn send(out: &Outbound, req: OutRequest) -> Result<OutResponse, SimError> {
    let shown = redact_url(&req.url);
    let timeout = req.timeout;
    match tokio::time::timeout(timeout, exchange(out, req, &shown)).await {
        Ok(r) => r,
        Err(_) => Err(SimError::Timeout { url: shown, after: timeout }),
    }
}

async fn exchange(out: &Outbound, req: OutRequest, shown: &str) -> Result<OutResponse, SimError> {
    let url = &req.url;
    let host = url.host_str().ok_or_else(|| SimError::Connect { url: shown.into(), message: "no host".into() })?;
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect(format!("{host}:{port}"))
        .await
        .map_err(|e| SimError::Connect { url: shown.into(), message: e.to_string() })?;
    let _ = tcp.set_nodelay(true);
    let target = match url.query() {
        Some(q) => format!("{}?{}", url.path(), q),
        None => url.path().to_owned(),
    };
    let host_header = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let mut builder = Request::builder().method(req.method.clone()).uri(target).header(HOST, host_header);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let body = req.body.clone().unwrap_or_default();
    let request =
        builder.body(Full::new(body)).map_err(|e| SimError::Http { url: shown.into(), message: e.to_string() })?;
    match url.scheme() {
        "http" => round_trip(TokioIo::new(tcp), request, shown).await,
        #[cfg(feature = "rustls")]
        "https" => {
            let config = match &out.tls {
                Some(c) => c.clone(),
                None => crate::tls::client_config()?,
            };
            let name = rustls::pki_types::ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
                .map_err(|e| SimError::Connect { url: shown.into(), message: e.to_string() })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| SimError::Connect { url: shown.into(), message: format!("TLS: {e}") })?;
            round_trip(TokioIo::new(tls), request, shown).await
        }
        #[cfg(not(feature = "rustls"))]
        "https" => {
            let _ = out;
            Err(SimError::TlsUnavailable)
        }
        other => Err(SimError::Connect { url: shown.into(), message: format!("unsupported scheme {other:?}") }),
    }
}

async fn round_trip<I>(io: I, request: Request<Full<Bytes>>, shown: &str) -> Result<OutResponse, SimError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http_err = |e: &dyn std::fmt::Display| SimError::Http { url: shown.into(), message: e.to_string() };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| http_err(&e))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await.map_err(|e| http_err(&e))?.to_bytes();
        Ok(OutResponse { status: parts.status.as_u16(), headers: parts.headers, body })
    }
    .await;
    driver.abort();
    result
}
