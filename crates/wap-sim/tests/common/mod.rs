//! Test support: a plain hyper HTTP/1.1 client, and small in-test servers (subscriber, resource provider) that
//! record what they receive.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use url::Url;

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A keep-alive HTTP/1.1 connection made with hyper's client API.
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Conn {
    pub async fn open(base: &Url) -> Result<Conn, Box<dyn std::error::Error + Send + Sync>> {
        let host = format!("{}:{}", base.host_str().unwrap(), base.port_or_known_default().unwrap());
        let stream = TcpStream::connect(&host).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, host })
    }

    /// `GET path_and_query` with an optional `Authorization` value.
    pub async fn get(
        &mut self,
        path_and_query: &str,
        authorization: Option<&str>,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        self.request("GET", path_and_query, authorization).await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        authorization: Option<&str>,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("Host", &self.host)
            .header("Accept", "application/json");
        if let Some(a) = authorization {
            b = b.header("Authorization", a);
        }
        self.sender.ready().await?;
        let response = self.sender.send_request(b.body(Empty::new())?).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
    }
}

/// One `GET` on a fresh connection.
pub async fn get_once(
    base: &Url,
    path_and_query: &str,
    authorization: Option<&str>,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    Conn::open(base).await?.get(path_and_query, authorization).await
}

/// A request an in-test server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// What an in-test server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
    pub content_type: Option<&'static str>,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, body: Bytes::new(), content_type: None, delay: None }
    }
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply { status, body: body.into(), content_type: Some("application/json; charset=utf-8"), delay: None }
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = Some(d);
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A small HTTP server on loopback that records requests and answers with `handler`.
pub struct TestServer {
    pub url: Url,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let handler = handler.clone();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handler = handler.clone();
                        let recorded = recorded.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let rec = Recorded {
                                method: parts.method.to_string(),
                                path_and_query: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            recorded.lock().unwrap().push(rec.clone());
                            let reply = handler(&rec);
                            if let Some(d) = reply.delay {
                                tokio::time::sleep(d).await;
                            }
                            let mut r = Response::new(Full::new(reply.body));
                            *r.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
                            if let Some(ct) = reply.content_type {
                                r.headers_mut().insert("content-type", http::HeaderValue::from_static(ct));
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        TestServer { url: Url::parse(&format!("http://{addr}/")).unwrap(), requests, task }
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fixtures directory of the repository.
pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/spec/fixtures")
}
