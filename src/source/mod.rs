//! Listeners. A source owns its sockets and nothing else: it turns frames
//! into batches of records and hands them to the pipeline.
//!
//! The accept loop here is shared: a connection permit is taken *before*
//! `accept`, so the connection limit holds even under a connect flood (the
//! excess waits in the kernel backlog); accept errors back off instead of
//! spinning; every connection task is tracked so shutdown can wait for it.
//! On shutdown, connections the kernel has already completed (the backlog)
//! are still accepted and drained: their clients may have written data
//! believing it delivered.

pub mod http;
pub mod syslog;
pub mod tcp;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for one more connection from the backlog.
const BACKLOG_POLL: Duration = Duration::from_millis(1);

/// Accepts connections until `shutdown`, at most `max_connections` at once,
/// running `handle` for each on `tracker`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    max_connections: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                tracker.spawn(handle(stream, peer, permit));
            }
            Err(e) => {
                // Typically EMFILE/ENFILE: wait for descriptors to free up.
                tracing::warn!(error = %e, ?backoff, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drain_backlog(&listener, &permits, &tracker, &handle).await;
}

/// Accepts the connections already waiting in the backlog, while permits last.
async fn drain_backlog<F, Fut>(listener: &TcpListener, permits: &Arc<Semaphore>, tracker: &TaskTracker, handle: &F)
where
    F: Fn(TcpStream, SocketAddr, OwnedSemaphorePermit) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    while let Ok(permit) = permits.clone().try_acquire_owned() {
        match tokio::time::timeout(BACKLOG_POLL, listener.accept()).await {
            Ok(Ok((stream, peer))) => {
                tracker.spawn(handle(stream, peer, permit));
            }
            _ => return,
        }
    }
}
