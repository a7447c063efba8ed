//! `[sources.otlp]`: OTLP/HTTP ingest of OpenTelemetry logs, metrics and
//! traces (hyper 1.x through the toolkit's `serve_http`).
//!
//! ```text
//!  accept (permit first) ─► hyper connection ─► route ─► key ─► rate limit ─► content type
//!      ─► body (limit, budget, gzip/deflate/zstd) ─► codec::otlp (protobuf | JSON) ─► records
//!      ─► chunk ─► pipeline ─► commit ─► 200 Export*ServiceResponse
//! ```
//!
//! - `POST /v1/logs`, `/v1/metrics`, `/v1/traces` (the OTLP/HTTP paths), and
//!   the same under `/api/v2/otlp/{logs,metrics,traces}`.
//! - Bodies `application/x-protobuf` or `application/json`; the answer has
//!   the request's content type.
//! - The key: `Authorization: Bearer KEY`, `X-API-Key: KEY`, or
//!   `X-API-Key-ID: <id>` with `X-API-Key-Secret: KEY`.
//!
//! The 200 comes after the commit that holds the records (after the
//! JetStream PubAck with `ack = "replicated"`), with `partial_success` when
//! some records were refused. Errors carry a `google.rpc.Status`: 400 (do not
//! retry), 401, 413, 415, 429 and 503 (with `Retry-After`). See `docs/otlp.md`.
//!
//! The body checks (size limit on the wire and decompressed, the pipeline
//! budget, the minimum transfer rate), the rate limits and the commit are
//! HTTP ingest's (`source::http`); only routing, decoding and answers are here.
//! Files: [`routes`] (the order of checks), [`reply`] (answers).

pub mod reply;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::http::limit::{self, RateLimits};
use crate::auth::keys::KeyRegistry;
use crate::config::OtlpSource;
use crate::metrics::SourceMetrics;
use crate::net::accept::AcceptLimits;
use crate::net::deadline::Timeouts;
use crate::net::http::{HttpServer, serve_http};
use crate::net::tls::Tls;
use crate::pipeline::Pipeline;

/// Everything a request needs, shared by all connections.
pub struct OtlpContext {
    /// Listener name as stored with each record (`otlp`).
    pub name: String,
    pub config: OtlpSource,
    pub pipeline: Pipeline,
    pub keys: Arc<KeyRegistry>,
    pub metrics: Arc<SourceMetrics>,
    /// A request whose commit is not confirmed within this time gets 503.
    pub ack_timeout: Duration,
    /// Body deadlines (`[pipeline] frame_timeout`, `min_transfer_rate`).
    pub timeouts: Timeouts,
    /// Cancelled when connections must stop at once (the drain deadline passed).
    pub abort: CancellationToken,
    pub tls: Option<Arc<Tls>>,
    pub limits: RateLimits,
    /// Requests being decoded at once (see `routes`).
    pub decode_slots: tokio::sync::Semaphore,
}

/// Serves the listener until `shutdown`; connections run on `tracker`.
pub async fn serve(listener: TcpListener, ctx: Arc<OtlpContext>, shutdown: CancellationToken, tracker: TaskTracker) {
    tracker.spawn(limit::housekeep(ctx.clone(), |c: &OtlpContext| &c.limits, shutdown.clone()));
    let c = &ctx.config;
    let server = HttpServer {
        name: "otlp",
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
