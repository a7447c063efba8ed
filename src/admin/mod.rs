//! The admin API: hyper 1.x HTTP/1.1 on its own listener (`[admin]`).
//!
//! ```text
//!  accept (permit first) ─► hyper connection ─► dispatch: route ─► rate limit ─► token ─► role
//!                                                                   ─► body (limit) ─► handler ─► JSON
//! ```
//!
//! - [`routes`]: the route table (the one list of endpoints; `docs/api.md` follows it).
//! - [`dispatch`]: per-request checks in order, rate-limit headers.
//! - [`handlers`]: one file per resource.
//! - [`state`]: shared state, start-up (JWT secret, sessions, setup token).
//!
//! Handlers never block the executor: redb goes through
//! [`state::AdminState::db`] (spawn_blocking), argon2 through
//! [`crate::auth::password::Hasher`].

pub mod dispatch;
pub mod error;
pub mod export;
pub mod handlers;
pub mod query;
pub mod request;
pub mod response;
pub mod routes;
pub mod state;
pub mod tail;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::net::accept::AcceptLimits;
use crate::net::http::{HttpServer, serve_http};
use state::{AdminDeps, AdminState};

/// How often rate-limiter memory is trimmed.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Builds the state, then serves until `shutdown`. If the state cannot be
/// built (control store error, bad secret), logs it and stops the daemon.
pub async fn run(
    listener: TcpListener,
    deps: AdminDeps,
    shutdown: CancellationToken,
    abort: CancellationToken,
    tracker: TaskTracker,
) {
    let tls = deps.tls.clone();
    let state = match tokio::task::spawn_blocking(move || AdminState::build(deps)).await {
        Ok(Ok(state)) => Arc::new(state),
        Ok(Err(e)) => return fail(&shutdown, e.to_string()),
        Err(e) => return fail(&shutdown, e.to_string()),
    };
    tracker.spawn(housekeep(state.clone(), shutdown.clone()));
    let c = &state.config;
    let server = HttpServer {
        name: "admin",
        limits: AcceptLimits { max_connections: c.max_connections.0, per_address: c.max_connections_per_address.0 },
        // A request head (and keep-alive idle time): `[pipeline] frame_timeout`.
        head_timeout: state.timeouts.frame,
        metrics: state.metrics.source("admin", crate::metrics::ListenerKind::Admin),
        shutdown,
        abort,
        tls,
    };
    serve_http(listener, server, tracker, move |req, peer| dispatch::handle(state.clone(), req, peer)).await;
}

fn fail(shutdown: &CancellationToken, error: String) {
    tracing::error!(%error, "the admin API cannot start; stopping");
    shutdown.cancel();
}

async fn housekeep(state: Arc<AdminState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(LIMITER_HOUSEKEEPING);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        state.ip_limit.housekeep();
        state.token_limit.housekeep();
    }
}
