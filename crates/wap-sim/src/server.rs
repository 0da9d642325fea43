//! The Usage Service: a hyper HTTP/1.1 server (optionally TLS) for `GET /usage` and the six `/billing/*` feeds.
//!
//! Rules (docs/protocol/usage-service.md §1–2): Basic auth checked first (401 + `WWW-Authenticate` otherwise); unknown path →
//! 404; a method other than `GET` → 405; `startId` inclusive; `batchSize` capped at the configured maximum;
//! pages ascending by `EventId` as bare JSON arrays; `[]` past the end.
//!
//! Query defaults (undocumented in WAP, decided here): `startId` missing or empty = 0 (all retained history);
//! negative = from the oldest; not an integer → 400. `batchSize` missing or empty = 100; 0 or negative → 400;
//! not an integer → 400; above the maximum → the maximum. Parameter names match ignoring ASCII case; the first
//! occurrence wins; unknown parameters are ignored.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wap_types::FeedKind;

use crate::faults::FaultKind;
use crate::log::RequestLogEntry;
use crate::sim::Inner;
use crate::usage::PageItem;

/// Boxed error of a response body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type of the simulator's servers.
pub(crate) type SimBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The realm announced with 401 answers.
pub(crate) const REALM: &str = "WAP Usage Service";

/// A TCP stream that is reset (RST, zero linger) instead of closed when the handler asked for it.
struct ConnStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ConnStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// TLS acceptor when TLS is on.
#[cfg(feature = "rustls")]
pub(crate) type Acceptor = tokio_rustls::TlsAcceptor;
/// TLS acceptor placeholder when the crate is built without TLS.
#[cfg(not(feature = "rustls"))]
pub(crate) type Acceptor = std::convert::Infallible;

/// Accepts connections until shutdown.
pub(crate) async fn run(
    listener: TcpListener,
    inner: Arc<Inner>,
    tls: Option<Acceptor>,
    mut shutdown: watch::Receiver<bool>,
    max_connections: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => r,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(limit = max_connections, "connection refused: at the connection limit");
            if tls.is_none() {
                tokio::spawn(refuse_connection(tcp, max_connections));
            }
            continue;
        };
        let inner = inner.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let reset = Arc::new(AtomicBool::new(false));
            let stream = ConnStream { inner: tcp, reset: reset.clone() };
            match tls {
                None => serve(TokioIo::new(stream), inner, reset, shutdown).await,
                #[cfg(feature = "rustls")]
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve(TokioIo::new(tls), inner, reset, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                },
                #[cfg(not(feature = "rustls"))]
                Some(never) => match never {},
            }
        });
    }
}

/// Answers a connection past the limit: `503 Service Unavailable` with `Retry-After: 1` and a text body, then
/// closes it after reading (and discarding) what the client already sent, so the answer is not lost to a reset.
/// The whole exchange is bounded by one second and 64 KiB.
async fn refuse_connection(mut stream: TcpStream, limit: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = format!("the server is serving its limit of {limit} connections; retry later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            let n = stream.read(&mut sink).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<(), io::Error>(())
    })
    .await;
}

async fn serve<I>(io: I, inner: Arc<Inner>, reset: Arc<AtomicBool>, mut shutdown: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let stop = shutdown.clone();
    let svc = service_fn(move |req| handle(inner.clone(), reset.clone(), stop.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn).await;
        }
    }
}

/// Waits until the simulator shuts down.
pub(crate) async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn full(body: impl Into<Bytes>) -> SimBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// A JSON error body the way ASP.NET Web API writes one.
pub(crate) fn error_json(message: &str, detail: Option<&str>) -> Bytes {
    let v = match detail {
        Some(d) => serde_json::json!({"Message": message, "MessageDetail": d}),
        None => serde_json::json!({"Message": message}),
    };
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

fn json_response(status: StatusCode, body: Bytes) -> Response<SimBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

/// Why a query is refused.
fn bad_query(detail: String) -> (StatusCode, Bytes) {
    (StatusCode::BAD_REQUEST, error_json("The request is invalid.", Some(&detail)))
}

/// Reads `startId` and `batchSize`.
pub(crate) fn parse_paging(query: Option<&str>, max_batch: u32) -> Result<(i64, usize), (StatusCode, Bytes)> {
    let mut start: Option<String> = None;
    let mut batch: Option<String> = None;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k.eq_ignore_ascii_case("startId") && start.is_none() {
            start = Some(v.into_owned());
        } else if k.eq_ignore_ascii_case("batchSize") && batch.is_none() {
            batch = Some(v.into_owned());
        }
    }
    let start_id = match start.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(s) => s.parse::<i64>().map_err(|_| bad_query(format!("startId must be an integer, got {:?}", cut(s))))?,
    };
    let batch = match batch.as_deref().map(str::trim) {
        None | Some("") => i64::from(wap_types::cursor::DEFAULT_BATCH_SIZE),
        Some(s) => {
            s.parse::<i64>().map_err(|_| bad_query(format!("batchSize must be an integer, got {:?}", cut(s))))?
        }
    };
    if batch < 1 {
        return Err(bad_query(format!("batchSize must be at least 1, got {batch}")));
    }
    Ok((start_id, batch.min(i64::from(max_batch.max(1))) as usize))
}

fn cut(s: &str) -> String {
    s.chars().take(32).collect()
}

/// Serialises one page of a feed. Returns the body and the number of items.
pub(crate) fn build_page(inner: &Inner, feed: FeedKind, start_id: i64, limit: usize) -> (Vec<u8>, usize) {
    if feed == FeedKind::Usage {
        let (items, generator) = {
            let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
            (data.usage.page(start_id, limit), data.usage.generator.clone())
        };
        let mut buf = Vec::with_capacity(items.len() * 480 + 2);
        buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            match item {
                PageItem::Generated(id) => generator.write_json(*id, &mut buf),
                PageItem::Stored(record) => {
                    let _ = serde_json::to_writer(&mut buf, &**record);
                }
            }
        }
        buf.push(b']');
        (buf, items.len())
    } else {
        let values = {
            let data = inner.data.lock().unwrap_or_else(|e| e.into_inner());
            data.feeds.store.page(feed, start_id, limit)
        };
        (serde_json::to_vec(&values).unwrap_or_else(|_| b"[]".to_vec()), values.len())
    }
}

fn log(inner: &Inner, entry: RequestLogEntry) {
    let mut log = inner.log.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() >= crate::log::MAX_LOG_ENTRIES {
        log.pop_front();
    }
    log.push_back(entry);
}

async fn handle(
    inner: Arc<Inner>,
    reset: Arc<AtomicBool>,
    shutdown: watch::Receiver<bool>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let method = req.method().clone();
    let path_and_query = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    let mut entry = RequestLogEntry {
        method: method.to_string(),
        path_and_query,
        status: 0,
        authorized: false,
        fault: None,
        items: 0,
    };
    let auth = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    entry.authorized = inner.credentials.verify_header(auth);
    if !entry.authorized {
        entry.status = 401;
        log(&inner, entry);
        let mut r = json_response(
            StatusCode::UNAUTHORIZED,
            error_json("Authorization has been denied for this request.", None),
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")).unwrap_or(HeaderValue::from_static("Basic")),
        );
        return Ok(r);
    }
    let Some(feed) = FeedKind::from_path(req.uri().path()) else {
        entry.status = 404;
        log(&inner, entry);
        let detail = format!("No HTTP resource was found that matches the request URI '{}'.", req.uri().path());
        return Ok(json_response(StatusCode::NOT_FOUND, error_json(&detail, None)));
    };
    if method != Method::GET {
        entry.status = 405;
        log(&inner, entry);
        let mut r = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            error_json("The requested resource does not support this HTTP method.", Some(method.as_str())),
        );
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET"));
        return Ok(r);
    }
    let (start_id, limit) = match parse_paging(req.uri().query(), inner.max_batch) {
        Ok(p) => p,
        Err((status, body)) => {
            entry.status = status.as_u16();
            log(&inner, entry);
            return Ok(json_response(status, body));
        }
    };
    let fault = inner.faults.lock().unwrap_or_else(|e| e.into_inner()).decide(req.uri().path());
    entry.fault = fault.map(|f| f.0);
    match fault {
        Some((FaultKind::Status500Html, _)) => {
            entry.status = 500;
            log(&inner, entry);
            let mut r = Response::new(full(IIS_500));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return Ok(r);
        }
        Some((FaultKind::Status503Empty, _)) => {
            entry.status = 503;
            log(&inner, entry);
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Ok(r);
        }
        Some((FaultKind::Stall, _)) => {
            entry.status = 0;
            log(&inner, entry);
            until_shutdown(shutdown).await;
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return Ok(r);
        }
        Some((FaultKind::Delay(d), _)) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = until_shutdown(shutdown.clone()) => {}
            }
        }
        _ => {}
    }
    let (body, items) = build_page(&inner, feed, start_id, limit);
    entry.status = 200;
    entry.items = items;
    log(&inner, entry);
    match fault {
        Some((kind @ (FaultKind::ResetMidBody | FaultKind::TruncatedJson), chunked)) => {
            if kind == FaultKind::ResetMidBody {
                reset.store(true, Ordering::SeqCst);
            }
            let total = body.len();
            let body = Bytes::from(body);
            let half = body.slice(..total / 2);
            let frames = stream::unfold(0u8, move |step| {
                let half = half.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, BoxError>(Frame::data(half)), 1)),
                        1 => {
                            // Let the first half reach the client before the connection goes.
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            Some((Err(BoxError::from("fault injected: body cut")), 2))
                        }
                        _ => None,
                    }
                }
            });
            let mut r = Response::new(StreamBody::new(frames).boxed());
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
            let content_length = kind == FaultKind::ResetMidBody || !chunked;
            if content_length {
                r.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(total as u64));
            }
            Ok(r)
        }
        _ => Ok(json_response(StatusCode::OK, Bytes::from(body))),
    }
}

/// The body of an IIS 500 page.
const IIS_500: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \
\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\r\n<head>\r\n\
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=iso-8859-1\"/>\r\n<title>500 - Internal server error.</title>\r\n\
</head>\r\n<body>\r\n<div id=\"header\"><h1>Server Error</h1></div>\r\n<div id=\"content\">\r\n\
<div class=\"content-container\"><fieldset>\r\n<h2>500 - Internal server error.</h2>\r\n\
<h3>There is a problem with the resource you are looking for, and it cannot be displayed.</h3>\r\n</fieldset></div>\r\n\
</div>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_parameters_follow_the_documented_defaults() {
        assert_eq!(parse_paging(None, 10_000).unwrap(), (0, 100));
        assert_eq!(parse_paging(Some("startId=5&batchSize=7"), 10_000).unwrap(), (5, 7));
        assert_eq!(parse_paging(Some("StartId=5&BATCHSIZE=50000"), 10_000).unwrap(), (5, 10_000));
        assert_eq!(parse_paging(Some("startId=&batchSize="), 10_000).unwrap(), (0, 100));
        assert_eq!(parse_paging(Some("startId=-3&batchSize=2"), 10_000).unwrap(), (-3, 2));
        assert_eq!(parse_paging(Some("startId=1&startId=9"), 10_000).unwrap().0, 1);
        for bad in ["startId=abc", "batchSize=ten", "batchSize=0", "batchSize=-1", "startId=1.5"] {
            let (status, body) = parse_paging(Some(bad), 10_000).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let detail = v["MessageDetail"].as_str().unwrap();
            assert!(detail.contains(if bad.starts_with("start") { "startId" } else { "batchSize" }), "{detail}");
        }
    }
}
