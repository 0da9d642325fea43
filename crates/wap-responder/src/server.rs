//! [`serve`]: a hyper HTTP/1.1 server around a [`Responder`], with header read timeout, keep-alive, optional TLS
//! and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::approver::SubscriptionApprover;
use crate::config::ServerConfig;
use crate::pricing::PricingResponder;
use crate::service::Responder;

/// A running responder server (see [`serve`]). Dropping the handle leaves the server running until the runtime
/// stops; call [`ResponderServer::shutdown`] to stop it gracefully.
#[derive(Debug)]
pub struct ResponderServer {
    local_addr: SocketAddr,
    https: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ResponderServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's root URL, e.g. `http://127.0.0.1:8443/` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr)
    }

    /// The endpoint to register with WAP (`-Endpoint`): the root URL plus `base_path`, with a trailing slash.
    pub fn endpoint_url(&self, base_path: &str) -> String {
        let path = base_path.trim_matches('/');
        if path.is_empty() {
            self.url()
        } else {
            format!("{}{path}/", self.url())
        }
    }

    /// Stops accepting, lets requests in flight finish (up to [`ServerConfig::shutdown_grace`]), then closes the
    /// remaining connections.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Serves `responder` on `listener` in a background task (call inside a Tokio runtime).
///
/// Connections are HTTP/1.1 (what WAP speaks), kept alive, with [`ServerConfig::header_read_timeout`] for slow
/// clients; with a TLS configuration (feature `rustls`) each connection is a TLS handshake first (bounded by the
/// same timeout).
///
/// A configuration that fails [`ResponderConfig::validate`](crate::ResponderConfig::validate) (a blank password) is
/// refused with an [`io::ErrorKind::InvalidInput`] error carrying the [`ResponderConfigError`](crate::ResponderConfigError).
pub fn serve<A, P>(
    listener: TcpListener,
    responder: Responder<A, P>,
    config: ServerConfig,
) -> io::Result<ResponderServer>
where
    A: SubscriptionApprover,
    P: PricingResponder,
{
    if let Some(problem) = responder.config_error() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, problem.clone()));
    }
    let local_addr = listener.local_addr()?;
    #[cfg(feature = "rustls")]
    let https = config.tls.is_some();
    #[cfg(not(feature = "rustls"))]
    let https = false;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, responder, config, async move {
        let _ = stopped.await;
    }));
    tracing::info!(%local_addr, https, "approval and pricing responder listening");
    Ok(ResponderServer { local_addr, https, stop: Some(stop), task })
}

/// Serves `responder` on `listener` until `signal` completes, then shuts down gracefully (e.g. with
/// `tokio::signal::ctrl_c()`). A configuration that fails [`ResponderConfig::validate`](crate::ResponderConfig::validate)
/// is not served: the error is logged and the function returns at once.
pub async fn serve_until<A, P, F>(listener: TcpListener, responder: Responder<A, P>, config: ServerConfig, signal: F)
where
    A: SubscriptionApprover,
    P: PricingResponder,
    F: Future + Send + 'static,
{
    if let Some(problem) = responder.config_error() {
        tracing::error!(error = %problem, "responder not started: its configuration is invalid");
        return;
    }
    run(listener, responder, config, signal).await
}

async fn run<A, P, F>(listener: TcpListener, responder: Responder<A, P>, config: ServerConfig, signal: F)
where
    A: SubscriptionApprover,
    P: PricingResponder,
    F: Future,
{
    // Each connection gets its own stop channel (cheap to poll, nothing shared between connections); dropping
    // the sender asks the connection to finish its request in flight and close.
    let mut stops: HashMap<tokio::task::Id, oneshot::Sender<()>> = HashMap::new();
    let mut connections = JoinSet::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout).keep_alive(config.keep_alive);
    let mut signal = std::pin::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    if connections.len() >= config.max_connections.max(1) {
                        tracing::warn!(%peer, limit = config.max_connections, "connection refused: at the connection limit");
                        #[cfg(feature = "rustls")]
                        let plain = config.tls.is_none();
                        #[cfg(not(feature = "rustls"))]
                        let plain = true;
                        if plain {
                            tokio::spawn(refuse_connection(stream, config.max_connections));
                        }
                        continue;
                    }
                    let (stop, stopped) = oneshot::channel();
                    let connection = serve_connection(stream, peer, responder.clone(), builder.clone(), &config, stopped);
                    let id = connections.spawn(connection).id();
                    stops.insert(id, stop);
                }
                Err(e) => {
                    // E.g. out of file descriptors: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                stops.remove(&id);
            }
            _ = &mut signal => break,
        }
    }
    drop(listener);
    tracing::info!(open_connections = connections.len(), "responder shutting down");
    drop(stops);
    let drained =
        tokio::time::timeout(config.shutdown_grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open_connections = connections.len(), "shutdown grace period over: closing connections");
    }
    connections.shutdown().await;
}

/// The responder as a hyper service whose future type is concrete, so hyper keeps each request's future inside
/// the connection's state instead of a box allocated per request (the `Service` impl of [`Responder`] must box).
fn inline_service<A, P>(
    responder: Responder<A, P>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = crate::service::ResponderResponse,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<crate::service::ResponderResponse, std::convert::Infallible>> + Send + 'static,
> + Clone
where
    A: SubscriptionApprover,
    P: PricingResponder,
{
    hyper::service::service_fn(move |request| {
        let answer = responder.handle_owned(request);
        async move { Ok(answer.await) }
    })
}

/// Drives a hyper connection; once `stop` fires (or its sender is dropped) the connection finishes the request in
/// flight and closes.
async fn drive<C>(connection: C, mut stop: oneshot::Receiver<()>, peer: SocketAddr)
where
    C: hyper_util::server::graceful::GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    let result = std::future::poll_fn(|cx| {
        if !stopping && std::pin::Pin::new(&mut stop).poll(cx).is_ready() {
            stopping = true;
            connection.as_mut().graceful_shutdown();
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn serve_connection<A, P>(
    stream: TcpStream,
    peer: SocketAddr,
    responder: Responder<A, P>,
    builder: hyper::server::conn::http1::Builder,
    config: &ServerConfig,
    stop: oneshot::Receiver<()>,
) -> impl Future<Output = ()> + Send + 'static
where
    A: SubscriptionApprover,
    P: PricingResponder,
{
    #[cfg(feature = "rustls")]
    let tls = config.tls.clone();
    let handshake_timeout = config.header_read_timeout;
    async move {
        #[cfg(feature = "rustls")]
        if let Some(tls) = tls {
            let stream = match tokio::time::timeout(handshake_timeout, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            drive(builder.serve_connection(TokioIo::new(stream), inline_service(responder)), stop, peer).await;
            return;
        }
        let _ = handshake_timeout;
        drive(builder.serve_connection(TokioIo::new(stream), inline_service(responder)), stop, peer).await;
    }
}

/// Answers a connection past [`ServerConfig::max_connections`]: `503 Service Unavailable` with `Retry-After: 1` and
/// a text body, then closes it after reading (and discarding) what the client already sent, so the answer is not
/// lost to a reset. The whole exchange is bounded by one second and 64 KiB.
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
