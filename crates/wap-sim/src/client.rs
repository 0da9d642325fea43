//! The outbound HTTP/1.1 client of the simulator (approval, pricing, usage collection, notifications): one
//! connection per call, a timeout over the whole exchange, a bounded response body.

use std::future::Future;
use std::pin::Pin;
#[cfg(feature = "rustls")]
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{EXPECT, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use url::Url;

use crate::error::{redact_url, SimError};

/// How long a call sent with `Expect: 100-continue` waits for `100 Continue` before sending its body anyway: 350 ms,
/// the default of .NET's `HttpWebRequest`, which WAP uses.
pub(crate) const CONTINUE_WAIT: Duration = Duration::from_millis(350);

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
    let expects_continue =
        req.headers.iter().any(|(k, v)| k == EXPECT && v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let request = if expects_continue && !body.is_empty() {
        // As .NET's HttpWebRequest (WAP): the body waits for `100 Continue`, or CONTINUE_WAIT; a final answer
        // first (a 401, say) means it is never sent.
        let (go, wait) = oneshot::channel();
        let go = std::sync::Mutex::new(Some(go));
        let mut request = builder
            .body(OutBody::AfterContinue(AfterContinue::new(body, wait)))
            .map_err(|e| SimError::Http { url: shown.into(), message: e.to_string() })?;
        hyper::ext::on_informational(&mut request, move |response| {
            if response.status() == http::StatusCode::CONTINUE {
                if let Some(go) = go.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = go.send(());
                }
            }
        });
        request
    } else {
        builder
            .body(OutBody::Now(Full::new(body)))
            .map_err(|e| SimError::Http { url: shown.into(), message: e.to_string() })?
    };
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

async fn round_trip<I>(io: I, request: Request<OutBody>, shown: &str) -> Result<OutResponse, SimError>
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

/// An outbound request body.
#[derive(Debug)]
pub(crate) enum OutBody {
    /// Sent with the headers.
    Now(Full<Bytes>),
    /// Sent after `100 Continue` (see [`CONTINUE_WAIT`]).
    AfterContinue(AfterContinue),
}

/// A body held back until the server answers `100 Continue` or [`CONTINUE_WAIT`] has passed.
#[derive(Debug)]
pub(crate) struct AfterContinue {
    data: Option<Bytes>,
    len: u64,
    go: Option<oneshot::Receiver<()>>,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// A final answer came first: never sent.
    refused: bool,
}

impl AfterContinue {
    fn new(data: Bytes, go: oneshot::Receiver<()>) -> Self {
        let len = data.len() as u64;
        AfterContinue {
            data: Some(data),
            len,
            go: Some(go),
            timer: Box::pin(tokio::time::sleep(CONTINUE_WAIT)),
            refused: false,
        }
    }
}

impl hyper::body::Body for OutBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            OutBody::Now(full) => Pin::new(full).poll_frame(cx),
            OutBody::AfterContinue(body) => {
                if body.data.is_none() {
                    return Poll::Ready(None);
                }
                if let Some(go) = body.go.as_mut() {
                    match Pin::new(go).poll(cx) {
                        // `100 Continue`: send.
                        Poll::Ready(Ok(())) => {}
                        // The callback is gone: hyper drops it when the final answer arrives, and then the body
                        // is never sent (the connection is closed after that answer).
                        Poll::Ready(Err(_)) => {
                            body.refused = true;
                            body.go = None;
                            return Poll::Pending;
                        }
                        // No answer yet: send once the wait is over.
                        Poll::Pending => {
                            if body.timer.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                    }
                    body.go = None;
                } else if body.refused {
                    return Poll::Pending;
                }
                Poll::Ready(body.data.take().map(|d| Ok(hyper::body::Frame::data(d))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OutBody::Now(full) => full.is_end_stream(),
            OutBody::AfterContinue(body) => body.data.is_none(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            OutBody::Now(full) => full.size_hint(),
            OutBody::AfterContinue(body) => hyper::body::SizeHint::with_exact(body.len),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads a request head; returns it and any bytes read after it.
    async fn read_head(sock: &mut TcpStream) -> (String, Vec<u8>) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = buf.split_off(end + 4);
                return (String::from_utf8(buf).unwrap(), rest);
            }
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the head");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Bytes that arrive within `wait` (until the peer closes).
    async fn bytes_within(sock: &mut TcpStream, wait: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        got
    }

    fn call(addr: std::net::SocketAddr, body: &'static str) -> OutRequest {
        OutRequest {
            method: Method::POST,
            url: Url::parse(&format!("http://{addr}/wap/subscriptions")).unwrap(),
            headers: vec![(EXPECT, HeaderValue::from_static("100-continue"))],
            body: Some(Bytes::from_static(body.as_bytes())),
            timeout: Duration::from_secs(10),
        }
    }

    /// An HTTPS server with `tls` answering one request 204; returns its address.
    #[cfg(feature = "rustls")]
    async fn https_server(tls: crate::tls::ServerTls) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let acceptor = tls.acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(sock).await else { return };
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        addr
    }

    #[cfg(feature = "rustls")]
    #[tokio::test]
    async fn outbound_https_verifies_against_trusted_certificates_when_given() {
        let get = |addr: std::net::SocketAddr| OutRequest {
            method: Method::GET,
            url: Url::parse(&format!("https://{addr}/planPrice?id=p")).unwrap(),
            headers: Vec::new(),
            body: None,
            timeout: Duration::from_secs(10),
        };
        let server = crate::tls::self_signed(vec!["127.0.0.1".into()]).unwrap();
        let server_pem = server.cert_pem.clone();
        let addr = https_server(server).await;
        let other_pem = crate::tls::self_signed(vec!["127.0.0.1".into()]).unwrap().cert_pem;

        // default: any certificate
        let any = Outbound { tls: Some(crate::tls::client_config().unwrap()) };
        assert_eq!(send(&any, get(addr)).await.unwrap().status, 204);
        // trusting the server's own certificate
        let trusting = Outbound { tls: Some(crate::tls::verifying_client_config(&[server_pem]).unwrap()) };
        assert_eq!(send(&trusting, get(addr)).await.unwrap().status, 204);
        // trusting another certificate only: refused
        let other = Outbound { tls: Some(crate::tls::verifying_client_config(&[other_pem]).unwrap()) };
        let err = send(&other, get(addr)).await.unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        // a certificate for another name: refused even when trusted
        let misnamed = crate::tls::self_signed(vec!["billing.other.test".into()]).unwrap();
        let misnamed_pem = misnamed.cert_pem.clone();
        let addr = https_server(misnamed).await;
        let trusting = Outbound { tls: Some(crate::tls::verifying_client_config(&[misnamed_pem]).unwrap()) };
        let err = send(&trusting, get(addr)).await.unwrap_err();
        assert!(err.to_string().contains("TLS"), "{err}");
        // not a certificate
        assert!(crate::tls::verifying_client_config(&["no pem here".to_owned()]).is_err());
    }

    #[tokio::test]
    async fn the_body_waits_for_100_continue() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (head, early) = read_head(&mut sock).await;
            assert!(head.to_ascii_lowercase().contains("expect: 100-continue"), "{head}");
            assert!(head.to_ascii_lowercase().contains("content-length: 9"), "{head}");
            let early = [early, bytes_within(&mut sock, Duration::from_millis(200)).await].concat();
            assert!(early.is_empty(), "body sent before 100 Continue: {early:?}");
            sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.unwrap();
            let mut body = [0u8; 9];
            sock.read_exact(&mut body).await.unwrap();
            sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            body
        });
        let response = send(&Outbound::default(), call(addr, "{\"a\":123}")).await.unwrap();
        assert_eq!(response.status, 204);
        assert_eq!(&server.await.unwrap(), b"{\"a\":123}");
    }

    #[tokio::test]
    async fn a_final_answer_before_100_continue_means_the_body_is_never_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let (_, early) = read_head(&mut sock).await;
            sock.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno").await.unwrap();
            [early, bytes_within(&mut sock, CONTINUE_WAIT + Duration::from_millis(300)).await].concat()
        });
        let response = send(&Outbound::default(), call(addr, "secret body")).await.unwrap();
        assert_eq!((response.status, &response.body[..]), (401, &b"no"[..]));
        assert!(server.await.unwrap().is_empty(), "the body was sent after a final answer");
    }

    #[tokio::test]
    async fn without_an_interim_answer_the_body_follows_after_the_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, early) = {
                let (mut sock, _) = listener.accept().await.unwrap();
                let (_, early) = read_head(&mut sock).await;
                (sock, early)
            };
            let head_at = Instant::now();
            let mut body = early;
            let mut chunk = [0u8; 64];
            while body.len() < 4 {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0);
                body.extend_from_slice(&chunk[..n]);
            }
            let waited = head_at.elapsed();
            sock.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            (body, waited)
        });
        let response = send(&Outbound::default(), call(addr, "body")).await.unwrap();
        assert_eq!(response.status, 204);
        let (body, waited) = server.await.unwrap();
        assert_eq!(body, b"body");
        assert!(waited >= CONTINUE_WAIT - Duration::from_millis(50), "sent after {waited:?}");
    }
}
