//! `[sources.http]`: HTTP ingest (hyper 1.x, HTTP/1.1 with keep-alive).
//!
//! ```text
//!  accept (permit first) ─► hyper connection ─► route ─► key ─► rate limit ─► body (limit, budget,
//!      gzip/zstd) ─► decode (codec::jsonl | codec::tell) ─► chunk ─► pipeline ─► commit ─► 202
//! ```
//!
//! - `POST /v1/events`, `POST /v1/logs`: JSON lines or a JSON array
//!   (`codec::jsonl`), in the shapes the Tell SDKs send.
//! - `POST /v1/ingest`: one Tell FlatBuffers batch (`codec::tell`) whose
//!   embedded key must be the request's.
//!
//! The answer comes after the commit that holds the data (202, or 207 under
//! partial acceptance); a full pipeline or a failed commit is 503 with
//! `Retry-After`. See `docs/api.md` for every status.
//!
//! Files: [`routes`] (the order of checks), [`auth`] (key, client IP),
//! [`limit`] (rate limits), [`body`] (size limit, budget, decompression),
//! [`ingest`] (decode, commit), [`cors`], [`reply`] (answers).
//!
//! Shutdown: the accept loop stops, each connection finishes the request
//! it is serving (hyper's graceful shutdown: its commit is awaited and
//! answered) and closes; past the drain deadline (`abort`) connections are
//! dropped. The writer's final commit comes after.

pub mod auth;
pub mod body;
pub mod cors;
pub mod ingest;
pub mod limit;
pub mod reply;
pub mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::cors::Cors;
use self::limit::RateLimits;
use crate::auth::keys::KeyRegistry;
use crate::config::HttpSource;
use crate::metrics::SourceMetrics;
use crate::pipeline::Pipeline;

/// How often rate-limiter memory is trimmed.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// What the HTTP listener is built from.
pub struct HttpDeps {
    /// Listener name as stored with each event (the config section name).
    pub name: String,
    pub config: HttpSource,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
    /// A request whose commit is not confirmed within this time gets 503.
    pub ack_timeout: Duration,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
}

/// Everything a request needs, shared by all connections.
pub struct HttpContext {
    pub name: String,
    pub config: HttpSource,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
    pub ack_timeout: Duration,
    pub abort: CancellationToken,
    pub limits: RateLimits,
    pub cors: Cors,
}

impl HttpContext {
    pub fn new(d: HttpDeps) -> HttpContext {
        HttpContext {
            limits: RateLimits::new(&d.config.rate_limit),
            cors: Cors::new(&d.config.cors_origins),
            name: d.name,
            config: d.config,
            pipeline: d.pipeline,
            keys: d.keys,
            metrics: d.metrics,
            ack_timeout: d.ack_timeout,
            abort: d.abort,
        }
    }
}

/// Serves the listener until `shutdown`; connections run on `tracker`.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: CancellationToken, tracker: TaskTracker) {
    tracker.spawn(housekeep(ctx.clone(), shutdown.clone()));
    let max = ctx.config.max_connections.0;
    let accept_shutdown = shutdown.clone();
    crate::source::accept_loop(listener, max, accept_shutdown, tracker, move |stream, peer, permit| {
        let (ctx, shutdown) = (ctx.clone(), shutdown.clone());
        async move {
            connection(ctx, stream, peer, shutdown).await;
            drop(permit);
        }
    })
    .await;
}

/// Serves one connection; on shutdown finishes the request in progress and closes.
async fn connection(ctx: Arc<HttpContext>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    // Best effort: NODELAY only changes latency.
    stream.set_nodelay(true).ok();
    let metrics = ctx.metrics.clone();
    metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    metrics.connections_total.fetch_add(1, Ordering::Relaxed);
    let abort = ctx.abort.clone();
    let idle = ctx.config.idle_timeout;
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(routes::handle(&ctx, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = abort.cancelled() => Ok(()),
            }
        }
        _ = abort.cancelled() => Ok(()),
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "http connection ended with an error");
    }
    metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

async fn housekeep(ctx: Arc<HttpContext>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(LIMITER_HOUSEKEEPING);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        ctx.limits.housekeep();
    }
}
