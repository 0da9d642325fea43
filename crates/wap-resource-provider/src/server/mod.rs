//! The hyper server for the notification and usage endpoints (and the provider's own mounted routes).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::EndpointAuth;
use crate::handler::NotificationHandler;
use crate::usage::{GapHoldBack, UsageSource, DEFAULT_USAGE_GAP_GRACE};

mod app;
mod respond;
mod routes;

use app::{AppInner, Limits, Mount, NotificationEndpoint, UsageEndpoint};
pub use app::{MountPrefix, RpApp};

/// A boxed error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The body of every response.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// The request a mounted service receives: the body already read (under the size and time limits), the
/// [`CallContext`](crate::CallContext) and the [`MountPrefix`] in its extensions.
pub type MountedRequest = Request<Full<Bytes>>;

/// The server could not be configured or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Nothing to serve: no notification handler, usage source or mounted service.
    #[error("the server has no endpoint: configure a notification handler, a usage source or a mount")]
    NoEndpoint,
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration is not usable.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// An endpoint's Basic credentials have an empty user name, or a password that is empty or whitespace: anyone
    /// who knows the user name would be let in.
    #[error(
        "the {endpoint} endpoint's Basic credentials are blank (empty user name, or empty or whitespace password)"
    )]
    BlankCredentials {
        /// `notification`, `usage`, or `mount <prefix>`.
        endpoint: String,
    },
}

impl ServerError {
    /// Whether starting again later may succeed (a port in use); configuration errors are permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ServerError::Bind { .. })
    }
}

/// Builds and starts a resource provider server.
///
/// Defaults: body limit 1 MiB, header and body read timeouts 30 s, `/usage` pages of at most 10,000 records,
/// `x-ms-principal-id` tolerated when absent, graceful shutdown grace period 10 s, at most
/// [`DEFAULT_MAX_CONNECTIONS`] (1,024) connections served at once.
pub struct RpServer {
    provider_name: Arc<str>,
    notification: Option<NotificationEndpoint>,
    usage: Option<UsageEndpoint>,
    mounts: Vec<Mount>,
    limits: Limits,
    header_read_timeout: Duration,
    shutdown_grace: Duration,
    max_connections: usize,
    require_principal_id: bool,
    usage_gap_grace: Duration,
    #[cfg(feature = "rustls")]
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for RpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpServer")
            .field("provider_name", &self.provider_name)
            .field("notification_base", &self.notification.as_ref().map(|n| &n.base))
            .field("usage_base", &self.usage.as_ref().map(|u| &u.base))
            .field("mounts", &self.mounts.iter().map(|m| &m.prefix).collect::<Vec<_>>())
            .field("limits", &self.limits)
            .finish()
    }
}

impl RpServer {
    /// A server for the provider registered as `provider_name`.
    pub fn builder(provider_name: impl Into<Arc<str>>) -> Self {
        RpServer {
            provider_name: provider_name.into(),
            notification: None,
            usage: None,
            mounts: Vec::new(),
            limits: Limits {
                max_body_bytes: 1024 * 1024,
                body_read_timeout: Duration::from_secs(30),
                max_usage_page: 10_000,
            },
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            require_principal_id: false,
            usage_gap_grace: DEFAULT_USAGE_GAP_GRACE,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }

    /// The notification endpoint at `base_path` (the path of `NotificationEndpoint.ForwardingAddress`, e.g.
    /// `/admin`), checked with `auth`, answered by `handler`.
    pub fn notification(mut self, base_path: &str, auth: EndpointAuth, handler: impl NotificationHandler) -> Self {
        self.notification =
            Some(NotificationEndpoint { base: routes::normalize_base(base_path), auth, handler: Arc::new(handler) });
        self
    }

    /// The usage endpoint: `GET <base_path>usage`, checked with `auth`, served from `source` (e.g. a
    /// [`UsageLedger`](crate::UsageLedger)).
    pub fn usage(mut self, base_path: &str, auth: EndpointAuth, source: impl UsageSource) -> Self {
        self.usage = Some(UsageEndpoint {
            base: routes::normalize_base(base_path),
            auth,
            source: Arc::new(source),
            gaps: GapHoldBack::default(),
        });
        self
    }

    /// How long a gap in `EventId`s is waited for before the records after it are served, for a usage source
    /// that does not promise visibility in id order ([`UsageSource::ids_visible_in_order`]; the built-in ledger
    /// does, and is never held back). Default 5 s ([`DEFAULT_USAGE_GAP_GRACE`]); zero serves every page as read.
    pub fn usage_gap_grace(mut self, grace: Duration) -> Self {
        self.usage_gap_grace = grace;
        self
    }

    /// Mounts the provider's own routes (admin or tenant resources) under `prefix`, behind `auth` and the same
    /// limits. The notification and usage routes win where they overlap; the longest prefix wins among mounts.
    /// A 4xx/5xx the service answers without a body gets a `ResourceProviderError` body.
    pub fn mount<S, B>(mut self, prefix: &str, auth: EndpointAuth, service: S) -> Self
    where
        S: tower_service::Service<MountedRequest, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.mounts.push(Mount { prefix: routes::normalize_base(prefix), auth, service: app::mount_fn(service) });
        self.mounts.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));
        self
    }

    /// The largest request body accepted (413 above it). Default 1 MiB.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// How long a client may take to send the request headers (the connection is closed after). Default 30 s.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a client may take to send the request body (408 after). Default 30 s.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_read_timeout = timeout;
        self
    }

    /// The most records one `/usage` answer holds, whatever `batchSize` asks (≥ 1). Default 10,000.
    pub fn max_usage_page(mut self, records: usize) -> Self {
        self.limits.max_usage_page = records.max(1);
        self
    }

    /// Strict mode: answer 400 when `x-ms-principal-id` (or its alias) is missing, except on Get Default Quota.
    /// Off by default: the spec (docs/protocol/resource-provider.md §4.1) tolerates its absence, since rejecting would break provisioning.
    pub fn require_principal_id(mut self, required: bool) -> Self {
        self.require_principal_id = required;
        self
    }

    /// How many connections are served at once (at least 1; default [`DEFAULT_MAX_CONNECTIONS`], 1,024). A
    /// connection past the limit is answered `503 Service Unavailable` with `Retry-After: 1` and a text body, then
    /// closed (over TLS it is closed without a handshake).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// How long shutdown waits for requests in flight before closing their connections. Default 10 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves HTTPS with this rustls configuration (WAP requires HTTPS in production).
    #[cfg(feature = "rustls")]
    pub fn tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Serves HTTPS with a PEM certificate chain and private key (PKCS#8, PKCS#1 or SEC1), TLS 1.2 and 1.3,
    /// rustls with the ring provider.
    #[cfg(feature = "rustls")]
    pub fn tls_pem(self, cert_chain_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, ServerError> {
        let certs = rustls_pemfile::certs(&mut &cert_chain_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServerError::Tls(format!("certificate chain: {e}")))?;
        if certs.is_empty() {
            return Err(ServerError::Tls("no certificate in the PEM chain".into()));
        }
        let key = rustls_pemfile::private_key(&mut &private_key_pem[..])
            .map_err(|e| ServerError::Tls(format!("private key: {e}")))?
            .ok_or_else(|| ServerError::Tls("no private key in the PEM".into()))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        Ok(self.tls(Arc::new(config)))
    }

    /// Builds the application without a listener (to embed it in another server).
    pub fn build(self) -> Result<RpApp, ServerError> {
        self.split().map(|(app, _)| app)
    }

    fn split(self) -> Result<(RpApp, ServeOptions), ServerError> {
        if self.notification.is_none() && self.usage.is_none() && self.mounts.is_empty() {
            return Err(ServerError::NoEndpoint);
        }
        let endpoints = self
            .notification
            .iter()
            .map(|n| ("notification".to_owned(), &n.auth))
            .chain(self.usage.iter().map(|u| ("usage".to_owned(), &u.auth)))
            .chain(self.mounts.iter().map(|m| (format!("mount {}", m.prefix), &m.auth)));
        for (endpoint, auth) in endpoints {
            if auth.has_blank_credentials() {
                return Err(ServerError::BlankCredentials { endpoint });
            }
        }
        let mut usage = self.usage;
        if let Some(u) = usage.as_mut() {
            u.gaps = GapHoldBack::new(self.usage_gap_grace);
        }
        let app = RpApp {
            inner: Arc::new(AppInner {
                provider_name: self.provider_name,
                notification: self.notification,
                usage,
                mounts: self.mounts,
                limits: self.limits,
                require_principal_id: self.require_principal_id,
            }),
        };
        let options = ServeOptions {
            header_read_timeout: self.header_read_timeout,
            shutdown_grace: self.shutdown_grace,
            max_connections: self.max_connections,
            #[cfg(feature = "rustls")]
            tls: self.tls.map(tokio_rustls::TlsAcceptor::from),
        };
        Ok((app, options))
    }

    /// Binds `addr` (port 0 picks a free one) and starts serving.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningServer, ServerError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        self.serve(listener)
    }

    /// Starts serving on an already bound listener.
    pub fn serve(self, listener: TcpListener) -> Result<RunningServer, ServerError> {
        let local_addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
        let (app, options) = self.split()?;
        #[cfg(feature = "rustls")]
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        #[cfg(not(feature = "rustls"))]
        let scheme = "http";
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, options, rx));
        tracing::info!(%local_addr, scheme, "resource provider server listening");
        Ok(RunningServer { local_addr, scheme, shutdown: tx, task: Some(task) })
    }
}

struct ServeOptions {
    header_read_timeout: Duration,
    shutdown_grace: Duration,
    max_connections: usize,
    #[cfg(feature = "rustls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Default [`RpServer::max_connections`]: connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Answers a connection past [`RpServer::max_connections`]: `503 Service Unavailable` with `Retry-After: 1` and a
/// text body, then closes it after reading (and discarding) what the client already sent, so the answer is not lost
/// to a reset. The whole exchange is bounded by one second and 64 KiB.
async fn refuse_connection(mut stream: tokio::net::TcpStream, limit: usize) {
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
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Resolves once shutdown is signalled (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn accept_loop(listener: TcpListener, app: RpApp, options: ServeOptions, mut shutdown: watch::Receiver<bool>) {
    let options = Arc::new(options);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if connections.len() >= options.max_connections {
                        tracing::warn!(%peer, limit = options.max_connections, "connection refused: at the connection limit");
                        #[cfg(feature = "rustls")]
                        let plain = options.tls.is_none();
                        #[cfg(not(feature = "rustls"))]
                        let plain = true;
                        if plain {
                            tokio::spawn(refuse_connection(stream, options.max_connections));
                        }
                        continue;
                    }
                    let app = app.clone();
                    let options = Arc::clone(&options);
                    let shutdown = shutdown.clone();
                    connections.spawn(async move { connection(stream, peer, app, options, shutdown).await });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let grace = options.shutdown_grace;
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: RpApp,
    options: Arc<ServeOptions>,
    shutdown: watch::Receiver<bool>,
) {
    #[cfg(feature = "rustls")]
    if let Some(acceptor) = &options.tls {
        match tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => serve_io(tls, peer, app, &options, shutdown).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
        return;
    }
    serve_io(stream, peer, app, &options, shutdown).await;
}

async fn serve_io<I>(io: I, peer: SocketAddr, app: RpApp, options: &ServeOptions, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.handle(req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error during shutdown");
            }
        }
    }
}

/// A running server. Dropping it stops accepting connections (like [`RunningServer::shutdown`] without
/// waiting).
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    scheme: &'static str,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://127.0.0.1:PORT/` (or `https://…`).
    pub fn base_url(&self) -> String {
        format!("{}://{}/", self.scheme, self.local_addr)
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), closes idle connections, and
    /// returns when every connection is closed.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
