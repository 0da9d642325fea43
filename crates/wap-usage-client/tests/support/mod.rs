//! Test servers on loopback: a raw HTTP/1.1 server whose answers are scripted (or computed per request), so tests
//! control every byte (truncated bodies, resets, stalls) and run on the test's own runtime (deterministic under
//! `tokio::time::pause()`).

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Writes these bytes and keeps the connection open for the next request.
    Raw(Vec<u8>),
    /// Writes these bytes and closes the connection.
    RawThenClose(Vec<u8>),
    /// Never answers (the connection stays open).
    Stall,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`.
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// A header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }
}

type Handler = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A loopback HTTP/1.1 server answering with a [`Handler`].
pub struct TestServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// A server answering requests with `replies` in order (a `500` once they run out).
    pub async fn scripted(replies: Vec<Reply>) -> TestServer {
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        TestServer::with_handler(Arc::new(move |_req: &RecordedRequest| {
            queue.lock().unwrap().pop_front().unwrap_or_else(|| Reply::Raw(response(500, &[], b"script exhausted")))
        }))
        .await
    }

    /// A server answering each request with `handler`.
    pub async fn with_handler(handler: Handler) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let log = requests.clone();
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(req) = read_head(&mut sock, &mut buf).await else { return };
                        log.lock().unwrap().push(req.clone());
                        match handler(&req) {
                            Reply::Raw(bytes) => {
                                if sock.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Reply::RawThenClose(bytes) => {
                                let _ = sock.write_all(&bytes).await;
                                let _ = sock.shutdown().await;
                                return;
                            }
                            Reply::Stall => {
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
            }
        });
        TestServer { addr, requests, connections, task }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// How many TCP connections were accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_head(sock: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<RecordedRequest> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let target = first.next()?.to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Some(RecordedRequest { method, target, headers });
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete HTTP/1.1 response with `Content-Length`.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A `200` JSON response.
pub fn json_ok(body: &[u8]) -> Vec<u8> {
    response(200, &[("Content-Type", "application/json")], body)
}

/// A usage record as JSON with the given id.
pub fn usage_json(id: i64) -> serde_json::Value {
    serde_json::json!({
        "EventId": id,
        "ExternalRecordId": id.to_string(),
        "StartTime": "2015-06-02T08:00:00",
        "EndTime": "2015-06-02T08:03:00",
        "ProviderName": "mysqlservers",
        "ServiceType": "Default",
        "SubscriptionId": format!("sub-{}", id % 3),
        "Properties": null,
        "Resources": {"DatabaseCount": "1"}
    })
}

/// An in-memory `/usage` feed with `startId` (inclusive) / `batchSize` semantics, whose ids can change while a test
/// runs.
#[derive(Clone, Default)]
pub struct FeedStore {
    ids: Arc<Mutex<Vec<i64>>>,
}

impl FeedStore {
    /// A store holding `ids` (ascending).
    pub fn new(ids: impl IntoIterator<Item = i64>) -> Self {
        FeedStore { ids: Arc::new(Mutex::new(ids.into_iter().collect())) }
    }

    /// Appends ids.
    pub fn append(&self, ids: impl IntoIterator<Item = i64>) {
        self.ids.lock().unwrap().extend(ids);
    }

    /// Deletes ids below `id` (retention).
    pub fn purge_below(&self, id: i64) {
        self.ids.lock().unwrap().retain(|&i| i >= id);
    }

    /// The handler serving `/usage` from this store (`startId` inclusive).
    pub fn handler(&self) -> Handler {
        self.handler_with(true)
    }

    /// The handler of a server that reads `startId` as exclusive (`EventId > startId`).
    pub fn exclusive_handler(&self) -> Handler {
        self.handler_with(false)
    }

    fn handler_with(&self, inclusive: bool) -> Handler {
        let store = self.clone();
        Arc::new(move |req: &RecordedRequest| {
            let start: i64 = req.query("startId").and_then(|v| v.parse().ok()).unwrap_or(0);
            let batch: usize = req.query("batchSize").and_then(|v| v.parse().ok()).unwrap_or(100);
            let page: Vec<serde_json::Value> = store
                .ids
                .lock()
                .unwrap()
                .iter()
                .filter(|&&i| if inclusive { i >= start } else { i > start })
                .take(batch)
                .map(|&i| usage_json(i))
                .collect();
            Reply::Raw(json_ok(serde_json::to_string(&page).unwrap().as_bytes()))
        })
    }
}
