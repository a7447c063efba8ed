//! `GET /api/v1/events/export`: every selected event of the token's
//! workspace in one streamed answer, NDJSON or CSV ([`crate::export`]).
//!
//! Parameters: the filters of `GET /api/v1/events` (`workspace`, `since`,
//! `from`, `to`, `listener`, `kind`, `q`), `format` (`ndjson`, the default,
//! or `csv`) and `limit` (at most this many events in all; default no
//! limit). `order` and `cursor` are unknown here (400): an export runs
//! oldest first, to the end.
//!
//! ```text
//!  blocking pool: one read snapshot ── range scan (store::query) ── encode ─► 64 KiB chunks
//!        ─► bounded channel (16 chunks) ─► chunked HTTP body
//! ```
//!
//! Memory stays bounded whatever the size of the export: the scan waits
//! while the channel is full. It stops when the client goes away, and ends
//! the stream with the format's error trailer when it cannot finish: a
//! storage error, a damaged chunk, shutdown, or a client that takes nothing
//! for [`STALLED_READER`]. The last channel slot is kept for that trailer;
//! each such export is counted in `sluice_exports_cut_total`.
//! One export is one request against the token's rate limit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::ApiError;
use super::query::{check_window, filter, number, pairs, unfiltered, unknown};
use super::request::Ctx;
use super::response::{self, Resp};
use crate::export::event_json;
use crate::export::{Encoder, Format};
use crate::metrics::Metrics;
use crate::net::body_stream::{BodySender, Stop, StreamShape};
use crate::store::StoreError;
use crate::store::query::{EventsHandle, Query, ScanStats, Sink};
use crate::store::reader::StoredEvent;

/// Chunks queued for the client, the last one kept for the trailer.
const EXPORT_BUFFER: usize = 16;
/// Bytes gathered before a chunk is queued.
const CHUNK_BYTES: usize = 64 * 1024;
/// How long a client may leave a full buffer untouched before the export is cut.
const STALLED_READER: Duration = Duration::from_secs(60);

/// What an export was asked for.
#[derive(Debug, Clone)]
struct Request {
    q: Query,
    format: Format,
    limit: Option<u64>,
}

pub async fn export(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    let req = parse(cx.query.as_deref().unwrap_or(""), caller.workspace())?;
    let format = req.format;
    let shape = StreamShape {
        capacity: EXPORT_BUFFER,
        max_bytes: EXPORT_BUFFER * CHUNK_BYTES * 2,
        keep: 1,
        stall: STALLED_READER,
    };
    let (tx, rx) = cx.state.open_stream(shape)?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let job = Job { events: cx.state.events.clone(), req, tx, metrics: cx.state.metrics.clone() };
    tokio::task::spawn_blocking(move || job.run(ready_tx));
    // Errors before the first byte are still proper error answers.
    match ready_rx.await {
        Ok(Ok(())) => Ok(response::stream(rx, format.content_type())),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(_) => Err(ApiError::internal("export task failed")),
    }
}

/// Parses the query string into an export of the caller's workspace.
fn parse(raw: &str, workspace: u32) -> Result<Request, ApiError> {
    // No scan limit: one export reads to the end; it stops when its client goes.
    let mut req = Request { q: unfiltered(workspace, u64::MAX), format: Format::Ndjson, limit: None };
    for pair in pairs(raw) {
        let (k, v) = pair?;
        if filter(&mut req.q, k, &v)? {
            continue;
        }
        match k {
            "format" => {
                req.format = Format::from_name(&v).ok_or_else(|| ApiError::invalid("format: ndjson or csv"))?;
            }
            "limit" => match number::<u64>(k, &v)? {
                0 => return Err(ApiError::invalid("limit: at least 1")),
                n => req.limit = Some(n),
            },
            other => return Err(unknown(other)),
        }
    }
    check_window(&req.q)?;
    Ok(req)
}

/// One export, run on the blocking pool.
struct Job {
    events: EventsHandle,
    req: Request,
    tx: BodySender,
    metrics: Arc<Metrics>,
}

impl Job {
    fn run(self, ready: oneshot::Sender<Result<(), StoreError>>) {
        let snapshot = match self.events.snapshot() {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return;
        }
        let mut out = Out {
            encoder: Encoder::new(self.req.format),
            buf: Vec::with_capacity(CHUNK_BYTES * 2),
            tx: self.tx,
            left: self.req.limit,
            end: None,
        };
        let scanned = match out.encoder.header(&mut out.buf) {
            Ok(()) => snapshot.stream(&self.req.q, &mut out),
            Err(e) => {
                out.end = Some(End::Failed("internal", e.to_string()));
                Ok(ScanStats::default())
            }
        };
        let end = match (out.end.take(), scanned) {
            (Some(end), _) => end,
            (None, Err(e)) => {
                tracing::warn!(error = %e, "export cut by a storage error");
                End::Failed("storage", e.to_string())
            }
            (None, Ok(stats)) if stats.damaged_chunks > 0 => {
                let n = stats.damaged_chunks;
                End::Failed("damaged", format!("skipped {n} damaged chunk(s); the export is incomplete"))
            }
            (None, Ok(_)) => End::Complete,
        };
        out.finish(end, &self.metrics);
    }
}

/// How an export ended.
enum End {
    Complete,
    /// The client went away: nothing more to say.
    Gone,
    /// Cut short: the trailer's code and message.
    Failed(&'static str, String),
}

/// The scan's sink: encodes events and queues them in chunks.
struct Out {
    encoder: Encoder,
    buf: Vec<u8>,
    tx: BodySender,
    /// Events still wanted, when a limit was given.
    left: Option<u64>,
    /// Set when the sink stopped the scan for a reason of its own.
    end: Option<End>,
}

impl Sink for Out {
    fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
        if let Err(e) = self.encoder.event(&event_json(ev), &mut self.buf) {
            self.end = Some(End::Failed("internal", e.to_string()));
            return false;
        }
        if let Some(left) = &mut self.left {
            *left -= 1;
            if *left == 0 {
                self.end = Some(End::Complete);
                return false;
            }
        }
        self.buf.len() < CHUNK_BYTES || self.send()
    }

    fn keep_going(&mut self) -> bool {
        if self.tx.is_closed() {
            self.end = Some(End::Gone);
        } else if self.tx.is_shutting_down() {
            self.end = Some(End::Failed("shutdown", "the server is shutting down".into()));
        }
        self.end.is_none()
    }
}

impl Out {
    /// Queues the gathered bytes, waiting while the client is behind;
    /// `false` (with the reason in `end`) when the export must stop.
    fn send(&mut self) -> bool {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES * 2)));
        match self.tx.send_blocking(chunk) {
            Ok(()) => true,
            Err(Stop::Gone) => {
                self.end = Some(End::Gone);
                false
            }
            Err(Stop::Stalled) => {
                self.end = Some(End::Failed("stalled", "the client read nothing for too long".into()));
                false
            }
            Err(Stop::Shutdown) => {
                self.end = Some(End::Failed("shutdown", "the server is shutting down".into()));
                false
            }
        }
    }

    /// Queues what is left and, for a cut export, the trailer (in the slot
    /// kept for it, so it never waits).
    fn finish(mut self, end: End, metrics: &Metrics) {
        let end = match end {
            // The last bytes could not be queued: that cuts the export too.
            End::Complete if !self.buf.is_empty() && !self.send() => self.end.take().unwrap_or(End::Gone),
            other => other,
        };
        let End::Failed(code, message) = end else { return };
        metrics.exports_cut.fetch_add(1, Ordering::Relaxed);
        tracing::info!(code, %message, "export cut");
        if !self.buf.is_empty() && !self.send() {
            // Even the rest could not be queued: the trailer goes alone.
            self.buf.clear();
        }
        let mut trailer = Vec::new();
        if self.encoder.error(code, &message, &mut trailer).is_ok() {
            self.tx.send_last(Bytes::from(trailer));
        }
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn parses_filters_format_and_an_overall_limit() {
        let r = parse("format=csv&limit=50000&kind=log&q=disk&since=3&workspace=2", 2).unwrap();
        assert_eq!(
            (r.format, r.limit, r.q.since, r.q.text.as_deref()),
            (Format::Csv, Some(50_000), Some(3), Some("disk"))
        );
        assert_eq!(r.q.max_scan_rows, u64::MAX);
        let d = parse("", 1).unwrap();
        assert_eq!((d.format, d.limit), (Format::Ndjson, None));
        let status = |s: &str| parse(s, 2).unwrap_err().status;
        assert_eq!(status("workspace=3"), StatusCode::FORBIDDEN);
        for bad in ["format=xml", "limit=0", "order=desc", "cursor=4", "from=5&to=1", "kind=bird", "fromm=1"] {
            assert_eq!(status(bad), StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
