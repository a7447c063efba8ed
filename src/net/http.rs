//! The one HTTP/1.1 server of the admin API and HTTP ingest (and OTLP).
//!
//! [`serve_http`] runs a listener's accept loop and serves each connection
//! with hyper: a request head (and, between requests, the keep-alive idle
//! time) is bounded by `head_timeout`; a body is read through [`BodyReader`],
//! whose deadline grows only with bytes received at the minimum rate; on
//! shutdown each connection finishes the request it is serving (its commit
//! is awaited and answered) and closes; past the drain deadline (`abort`)
//! connections are dropped, whatever their peer does. A listener with TLS
//! runs `net::tls`'s handshake first and serves the session the same way.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{AcceptLimits, Listener, accept_loop};
use super::deadline::Timeouts;
use super::tls::Tls;
use crate::metrics::{Cut, SourceMetrics};

/// How one HTTP listener is served.
pub struct HttpServer {
    pub name: &'static str,
    pub limits: AcceptLimits,
    /// Time to send a request head, and keep-alive idle time between requests.
    pub head_timeout: Duration,
    pub metrics: Arc<SourceMetrics>,
    pub shutdown: CancellationToken,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
    /// Set when the listener has a `tls` table.
    pub tls: Option<Arc<Tls>>,
}

/// Most bytes of a request head (hyper's read buffer; its default is about
/// 400 KiB). A head is read before any key is checked, so this is what a
/// keyless connection can make the daemon hold; longer heads get 431.
pub const MAX_HEAD_BYTES: usize = 64 << 10;

/// Serves `listener` until shutdown: `handle` answers each request.
pub async fn serve_http<H, Fut, B>(listener: TcpListener, server: HttpServer, tracker: TaskTracker, handle: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = Arc::new(server);
    let me = Listener { name: server.name, limits: server.limits, metrics: &server.metrics };
    let shutdown = server.shutdown.clone();
    let conn_server = server.clone();
    accept_loop(listener, me, shutdown, tracker, move |stream, peer, slot| {
        let (server, handle) = (conn_server.clone(), handle.clone());
        async move {
            // Best effort: NODELAY only changes latency.
            stream.set_nodelay(true).ok();
            match server.tls.clone() {
                None => serve_connection(stream, &server, handle, peer).await,
                Some(tls) => {
                    let deadline = server.head_timeout;
                    if let Some(stream) = tls.handshake(stream, peer, deadline, server.name, &server.metrics).await {
                        serve_connection(stream, &server, handle, peer).await;
                    }
                }
            }
            drop(slot);
        }
    })
    .await;
}

/// Serves one connection's requests until it ends, shutdown or the abort.
async fn serve_connection<IO, H, Fut, B>(io: IO, server: &HttpServer, handle: H, peer: SocketAddr)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let m = &server.metrics;
    m.connections_open.fetch_add(1, Ordering::Relaxed);
    m.connections_total.fetch_add(1, Ordering::Relaxed);
    let service = service_fn(move |req| {
        let handle = handle.clone();
        async move { Ok::<_, Infallible>(handle(req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.head_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = server.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = server.abort.cancelled() => Ok(()),
            }
        }
        _ = server.abort.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        if e.is_timeout() {
            m.cut(Cut::SlowFrame);
        }
        tracing::debug!(listener = server.name, %peer, error = %e, "http connection ended with an error");
    }
    m.connections_open.fetch_sub(1, Ordering::Relaxed);
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not complete by its deadline: too slow a trickle (counted as a cut).
    #[error("the body did not arrive at the minimum rate")]
    TooSlow,
    #[error("cannot read the body: {0}")]
    Read(hyper::Error),
}

/// Reads a request body piece by piece under a deadline that only bytes
/// received at the minimum rate can push back.
pub struct BodyReader {
    body: Incoming,
    timeouts: Timeouts,
    start: Instant,
    received: u64,
    last: Instant,
}

impl BodyReader {
    pub fn new(body: Incoming, timeouts: Timeouts) -> BodyReader {
        let now = Instant::now();
        BodyReader { body, timeouts, start: now, received: 0, last: now }
    }

    /// When the body must be complete, given what has arrived so far.
    pub fn deadline(&self) -> Instant {
        self.timeouts.frame_deadline(self.start, self.received, self.last)
    }

    /// The next piece of data, `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        loop {
            let frame = match tokio::time::timeout_at(self.deadline(), self.body.frame()).await {
                Err(_) => return Err(BodyError::TooSlow),
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => return Err(BodyError::Read(e)),
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                self.received += data.len() as u64;
                self.last = Instant::now();
                return Ok(Some(data));
            }
        }
    }
}
