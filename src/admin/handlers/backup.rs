//! `GET /api/v1/backup`: a consistent dump of both databases, streamed.
//!
//! Sensitive: the dump holds every workspace, every user's password hash,
//! the streaming-key digests, the sessions and the JWT signing secret. So it
//! needs the admin role *in workspace 1* (the server's own workspace): an
//! admin of another workspace must not read the others.
//!
//! ```text
//!  handler ── Snapshot::take (blocking pool) ── 503 if events.redb is reopening
//!  dump task (blocking pool) ── 64 KiB pieces ──► bounded channel ──► chunked body
//! ```
//!
//! Memory is bounded by the channel: [`PIECES`] pieces of [`PIECE_BYTES`]
//! (a piece grows past that only to hold one whole row). A client
//! that goes away closes the channel and the dump stops; one that stops
//! reading for [`STALL`], or a daemon shutting down, stops it too. A dump
//! that stops early simply ends the body without its trailer, which the
//! client detects (see `store::backup::format`). The whole download is one
//! request for the rate limiter. The outcome is audit-logged as `backup`.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{Body, Resp};
use crate::store::StoreError;
use crate::store::backup::Snapshot;
use crate::store::control::{AuditEntry, DEFAULT_WORKSPACE};

/// Bytes per piece handed to the body.
const PIECE_BYTES: usize = 64 * 1024;
/// Pieces buffered between the dump and the client.
const PIECES: usize = 16;
/// How long the client may leave the buffer full before the dump gives up.
const STALL: Duration = Duration::from_secs(120);
/// How often a full buffer is looked at again.
const FULL_POLL: Duration = Duration::from_millis(5);

pub async fn backup(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    if caller.workspace() != DEFAULT_WORKSPACE {
        return Err(ApiError::forbidden(format!(
            "a backup holds every workspace: it needs an admin of workspace {DEFAULT_WORKSPACE}"
        )));
    }
    let (events, control) = (cx.state.events.clone(), cx.state.control.clone());
    let snapshot = match tokio::task::spawn_blocking(move || Snapshot::take(&events, &control)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e @ StoreError::Db { .. })) => {
            tracing::warn!(error = %e, "backup cannot open a snapshot");
            return Err(ApiError::unavailable("the event store is unavailable; retry shortly"));
        }
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::internal(format!("backup task failed: {e}"))),
    };
    let (tx, rx) = mpsc::channel(PIECES);
    let sink = ChannelWriter { tx, buf: Vec::with_capacity(PIECE_BYTES), shutdown: cx.state.shutdown.clone() };
    let entry = super::entry(cx, "backup", "ok", Some("server".into()));
    let state = cx.state.clone();
    tokio::task::spawn_blocking(move || run(snapshot, sink, entry, &state));
    let mut resp = Response::new(Body::Stream(rx));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.sluice.backup"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Runs the dump and audit-logs how it went (blocking).
fn run(snapshot: Snapshot, sink: ChannelWriter, mut entry: AuditEntry, state: &Arc<crate::admin::state::AdminState>) {
    let started = Instant::now();
    match snapshot.dump(sink) {
        Ok(stats) => {
            tracing::info!(
                rows = stats.counts.rows,
                bytes = stats.bytes,
                seconds = started.elapsed().as_secs_f64(),
                actor = entry.actor.as_deref().unwrap_or(""),
                "backup sent"
            );
            entry.detail = Some(format!("{} rows, {} bytes", stats.counts.rows, stats.bytes));
        }
        Err(e) => {
            tracing::warn!(error = %e, "backup stopped before its end");
            entry.outcome = "failed".into();
            entry.detail = Some(e.to_string());
        }
    }
    entry.at_ms = crate::store::now_ms();
    if let Err(e) = state.control.append_audit(entry) {
        tracing::error!(action = "backup", error = %e, "could not write the audit log");
    }
}

/// A blocking writer feeding the response body in [`PIECE_BYTES`] pieces.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    shutdown: CancellationToken,
}

impl ChannelWriter {
    /// Hands the buffered bytes to the body, waiting (bounded) for room.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE_BYTES)));
        let deadline = Instant::now() + STALL;
        loop {
            match self.tx.try_send(piece) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"));
                }
                Err(mpsc::error::TrySendError::Full(back)) => piece = back,
            }
            if self.shutdown.is_cancelled() {
                return Err(io::Error::other("the daemon is shutting down"));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"));
            }
            std::thread::sleep(FULL_POLL);
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(capacity: usize) -> (ChannelWriter, mpsc::Receiver<Bytes>, CancellationToken) {
        let (tx, rx) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        (ChannelWriter { tx, buf: Vec::new(), shutdown: shutdown.clone() }, rx, shutdown)
    }

    #[test]
    fn bytes_arrive_in_pieces_and_the_rest_on_flush() {
        let (mut w, mut rx, _) = writer(PIECES);
        w.write_all(&vec![1u8; PIECE_BYTES + 10]).unwrap();
        w.write_all(b"tail").unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), PIECE_BYTES + 10);
        assert!(rx.try_recv().is_err(), "a small write waits for the piece to fill");
        w.flush().unwrap();
        assert_eq!(&rx.try_recv().unwrap()[..], b"tail");
    }

    #[test]
    fn a_client_that_went_away_stops_the_dump() {
        let (mut w, rx, _) = writer(PIECES);
        drop(rx);
        let e = w.write_all(&vec![0u8; PIECE_BYTES]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn shutdown_stops_a_dump_whose_client_stopped_reading() {
        let (mut w, _rx, shutdown) = writer(1);
        w.write_all(&vec![0u8; PIECE_BYTES]).unwrap();
        shutdown.cancel();
        let started = Instant::now();
        let e = w.write_all(&vec![0u8; PIECE_BYTES]).unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
        assert!(started.elapsed() < STALL);
    }
}
