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
//! Connections are served by the toolkit's `net::http::serve_http` (head
//! deadline, per-address cap, graceful shutdown then abort); bodies are read
//! at the minimum transfer rate, charged as they arrive.

pub mod auth;
pub mod body;
pub mod cors;
pub mod ingest;
pub mod limit;
pub mod reply;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::cors::Cors;
use self::limit::RateLimits;
use crate::auth::keys::KeyRegistry;
use crate::config::HttpSource;
use crate::metrics::SourceMetrics;
use crate::net::accept::AcceptLimits;
use crate::net::deadline::Timeouts;
use crate::net::http::{HttpServer, serve_http};
use crate::net::tls::Tls;
use crate::pipeline::Pipeline;

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
    /// Body deadlines (`[pipeline] frame_timeout`, `min_transfer_rate`).
    pub timeouts: Timeouts,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
    /// Set when the listener has a `tls` table.
    pub tls: Option<Arc<Tls>>,
}

/// Everything a request needs, shared by all connections.
pub struct HttpContext {
    pub name: String,
    pub config: HttpSource,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
    pub ack_timeout: Duration,
    pub timeouts: Timeouts,
    pub abort: CancellationToken,
    pub tls: Option<Arc<Tls>>,
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
            timeouts: d.timeouts,
            abort: d.abort,
            tls: d.tls,
        }
    }
}

/// Serves the listener until `shutdown`; connections run on `tracker`.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: CancellationToken, tracker: TaskTracker) {
    tracker.spawn(limit::housekeep(ctx.clone(), |c: &HttpContext| &c.limits, shutdown.clone()));
    let c = &ctx.config;
    let server = HttpServer {
        name: "http",
        limits: AcceptLimits { max_connections: c.max_connections.0, per_address: c.max_connections_per_address.0 },
        head_timeout: c.idle_timeout,
        metrics: ctx.metrics.clone(),
        shutdown,
        abort: ctx.abort.clone(),
        tls: ctx.tls.clone(),
    };
    serve_http(listener, server, tracker, move |req, peer| {
        let ctx = ctx.clone();
        async move { routes::handle(&ctx, req, peer).await }
    })
    .await;
}
