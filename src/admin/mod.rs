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

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use state::{AdminDeps, AdminState};

/// A client must send a request's headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often rate-limiter memory is trimmed.
const LIMITER_HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Builds the state, then serves until `shutdown`. If the state cannot be
/// built (control store error, bad secret), logs it and stops the daemon.
pub async fn run(listener: TcpListener, deps: AdminDeps, shutdown: CancellationToken, tracker: TaskTracker) {
    let state = match tokio::task::spawn_blocking(move || AdminState::build(deps)).await {
        Ok(Ok(state)) => Arc::new(state),
        Ok(Err(e)) => return fail(&shutdown, e.to_string()),
        Err(e) => return fail(&shutdown, e.to_string()),
    };
    tracker.spawn(housekeep(state.clone(), shutdown.clone()));
    let max = state.config.max_connections.0;
    let accept_shutdown = shutdown.clone();
    crate::source::accept_loop(listener, max, accept_shutdown, tracker, move |stream, peer, permit| {
        let (state, shutdown) = (state.clone(), shutdown.clone());
        async move {
            connection(state, stream, peer, shutdown).await;
            drop(permit);
        }
    })
    .await;
}

fn fail(shutdown: &CancellationToken, error: String) {
    tracing::error!(%error, "the admin API cannot start; stopping");
    shutdown.cancel();
}

/// Serves one connection; on shutdown finishes the request in progress and closes.
async fn connection(state: Arc<AdminState>, stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(dispatch::handle(state, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
    }
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
