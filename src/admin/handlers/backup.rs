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

use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{Body, Resp};
use crate::net::body_stream::{BodySender, Stop, StreamShape};
use crate::store::backup::Snapshot;
use crate::store::control::{AuditEntry, DEFAULT_WORKSPACE};

/// Bytes per piece handed to the body.
const PIECE_BYTES: usize = 64 * 1024;
/// Pieces buffered between the dump and the client.
const PIECES: usize = 16;
/// How long the client may leave the buffer full before the dump gives up.
const STALL: Duration = Duration::from_secs(120);

pub async fn backup(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    if caller.workspace() != DEFAULT_WORKSPACE {
        return Err(ApiError::forbidden(format!(
            "a backup holds every workspace: it needs an admin of workspace {DEFAULT_WORKSPACE}"
        )));
    }
    let (events, control) = (cx.state.events.clone(), cx.state.control.clone());
    let snapshot = match tokio::task::spawn_blocking(move || Snapshot::take(&events, control.store())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(ApiError::internal(format!("backup task failed: {e}"))),
    };
    // A piece grows past PIECE_BYTES only to hold one whole row.
    let shape = StreamShape { capacity: PIECES, max_bytes: PIECES * PIECE_BYTES * 2, keep: 0, stall: STALL };
    let (tx, rx) = cx.state.open_stream(shape)?;
    let sink = ChannelWriter { tx, buf: Vec::with_capacity(PIECE_BYTES) };
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
    if let Err(e) = state.control.store().append_audit(entry) {
        tracing::error!(action = "backup", error = %e, "could not write the audit log");
    }
}

/// A blocking writer feeding the response body in [`PIECE_BYTES`] pieces.
struct ChannelWriter {
    tx: BodySender,
    buf: Vec<u8>,
}

impl ChannelWriter {
    /// Hands the buffered bytes to the body, waiting (bounded) for room.
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE_BYTES)));
        self.tx.send_blocking(piece).map_err(|stop| {
            let kind = match stop {
                Stop::Gone => io::ErrorKind::BrokenPipe,
                Stop::Stalled => io::ErrorKind::TimedOut,
                Stop::Shutdown => io::ErrorKind::Other,
            };
            io::Error::new(kind, stop.to_string())
        })
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
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::net::body_stream::{BodyReceiver, Streams};

    /// A writer as the dump gets it (its runtime must outlive it).
    fn writer(capacity: usize) -> (ChannelWriter, BodyReceiver, CancellationToken, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let shutdown = CancellationToken::new();
        let shape = StreamShape { capacity, max_bytes: capacity * PIECE_BYTES * 2, keep: 0, stall: STALL };
        let (tx, rx) = {
            let _in_runtime = rt.enter();
            Streams::new(1).open(shape, shutdown.clone()).unwrap()
        };
        (ChannelWriter { tx, buf: Vec::new() }, rx, shutdown, rt)
    }

    #[test]
    fn bytes_arrive_in_pieces_and_the_rest_on_flush() {
        let (mut w, mut rx, _, _rt) = writer(PIECES);
        w.write_all(&vec![1u8; PIECE_BYTES + 10]).unwrap();
        w.write_all(b"tail").unwrap();
        assert_eq!(rx.try_recv().unwrap().len(), PIECE_BYTES + 10);
        assert!(rx.try_recv().is_err(), "a small write waits for the piece to fill");
        w.flush().unwrap();
        assert_eq!(&rx.try_recv().unwrap()[..], b"tail");
    }

    #[test]
    fn a_client_that_went_away_stops_the_dump() {
        let (mut w, rx, _, _rt) = writer(PIECES);
        drop(rx);
        let e = w.write_all(&vec![0u8; PIECE_BYTES]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn shutdown_stops_a_dump_whose_client_stopped_reading() {
        let (mut w, _rx, shutdown, _rt) = writer(1);
        w.write_all(&vec![0u8; PIECE_BYTES]).unwrap();
        shutdown.cancel();
        let started = Instant::now();
        let e = w.write_all(&vec![0u8; PIECE_BYTES]).unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
        assert!(started.elapsed() < STALL);
    }
}
