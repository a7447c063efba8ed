//! `GET /api/v1/events/tail`: Server-Sent Events of events as they are
//! committed, filtered like `GET /api/v1/events` (`since`, `from`, `to`,
//! `listener`, `kind`, `service`, `q`; no `limit`, `order` or `cursor`).
//!
//! ```text
//!  writer thread ── commit notice (broadcast, never blocks) ──► tail task
//!  tail task ── read the new rows (blocking pool) ──► bounded channel ──► SSE body
//! ```
//!
//! Each event is `id: SEQ` + `data: JSON`. A reader that does not keep up is
//! dropped; ingest never waits for it: when the channel to it stays full for
//! [`SLOW_READER`], or the tail task falls the writer's notice backlog
//! behind, the stream ends with `event: dropped`. Shutdown ends it with
//! `event: shutdown`. A comment line every [`KEEPALIVE`] keeps proxies from
//! timing the stream out and notices a client that went away.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use super::error::ApiError;
use super::request::Ctx;
use super::response::{self, Resp};
use crate::net::body_stream::{BodySender, Stop, StreamShape};
use crate::store::query::{Committed, EventsHandle, Query};

/// SSE frames buffered per reader before it counts as slow.
const TAIL_BUFFER: usize = 1024;
/// Bytes of SSE frames buffered per reader before it counts as slow.
const TAIL_BUFFER_BYTES: usize = 256 << 10;
/// Events read from the store at a time: a tail waiting on a slow reader
/// holds one page, so pages are small (a query page may hold 1000).
const TAIL_PAGE: usize = 64;
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a reader may leave a full buffer untouched before it is dropped.
const SLOW_READER: Duration = Duration::from_secs(5);

pub async fn tail(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    let raw = cx.query.as_deref().unwrap_or("");
    for pair in raw.split('&') {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if matches!(key, "limit" | "order" | "cursor") {
            return Err(ApiError::invalid(format!("{key}: not for a live tail")));
        }
    }
    let max_scan = cx.state.config.query_max_scan_rows.0 as u64;
    let mut q = super::query::parse(raw, caller.workspace(), max_scan)?;
    q.limit = TAIL_PAGE;
    // Subscribe before anything is read, so no commit falls in between.
    let notices = cx.state.events.subscribe();
    let shape = StreamShape { capacity: TAIL_BUFFER, max_bytes: TAIL_BUFFER_BYTES, keep: 1, stall: SLOW_READER };
    let (tx, rx) = cx.state.open_stream(shape)?;
    let feed = Feed { events: cx.state.events.clone(), q, tx, metrics: cx.state.metrics.clone() };
    tokio::spawn(feed.run(notices, cx.state.shutdown.clone()));
    Ok(response::event_stream(rx))
}

struct Feed {
    events: EventsHandle,
    /// The filters; `since` is the next sequence number to send.
    q: Query,
    tx: BodySender,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Why a feed stopped.
enum End {
    /// The client went away.
    Gone,
    /// The client is too slow (or the feed fell behind the commits).
    Dropped(&'static str),
    Shutdown,
    Failed,
}

impl Feed {
    async fn run(mut self, mut notices: broadcast::Receiver<Committed>, shutdown: tokio_util::sync::CancellationToken) {
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        // A first frame, so the client sees the stream open before any commit.
        // (A daemon already stopping ends the stream with its notice at once.)
        if let Err(end) = self.push(Bytes::from_static(b": open\n\n")).await {
            return self.finish(end);
        }
        let end = loop {
            if self.q.since.is_some()
                && let Err(end) = self.catch_up().await
            {
                break end;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break End::Shutdown,
                // The client hung up: give the stream slot back now, not at the next keepalive.
                _ = self.tx.closed() => break End::Gone,
                _ = keepalive.tick() => {
                    if let Err(end) = self.push(Bytes::from_static(b": keepalive\n\n")).await {
                        break end;
                    }
                }
                n = notices.recv() => match n {
                    Ok(c) if c.workspace == self.q.workspace => {
                        // Without `since`, the tail starts at the first commit after it opened.
                        self.q.since.get_or_insert(c.first_seq);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => break End::Dropped("fell behind the commits"),
                    Err(broadcast::error::RecvError::Closed) => break End::Shutdown,
                },
            }
        };
        self.finish(end);
    }

    /// Sends everything committed from `since` on that the filters select.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let (events, q) = (self.events.clone(), self.q.clone());
            let page = match tokio::task::spawn_blocking(move || events.query(&q, crate::export::event_json)).await {
                Ok(Ok(p)) => p,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "live tail cannot read the store");
                    return Err(End::Failed);
                }
                Err(_) => return Err(End::Failed),
            };
            let mut last = None;
            for ev in &page.events {
                let seq = ev.get("seq").and_then(serde_json::Value::as_u64).unwrap_or(0);
                self.push(Bytes::from(format!("id: {seq}\ndata: {ev}\n\n"))).await?;
                last = Some(seq);
            }
            if let Some(seq) = last {
                self.q.since = Some(seq.saturating_add(1));
            }
            match page.next_cursor {
                Some(c) => self.q.since = Some(c),
                None => {
                    // Rows scanned but filtered out need not be read again.
                    let seen = self.q.since.unwrap_or(0);
                    self.q.since = Some(seen.max(last.map_or(0, |s| s + 1)));
                    return Ok(());
                }
            }
        }
    }

    /// Queues one frame, keeping the last slot for the drop notice. A reader
    /// that takes nothing for [`SLOW_READER`] while the buffer is full is
    /// dropped (a backlog being replayed waits that long, live data too:
    /// the writer is never waited for, the broadcast backlog bounds the rest).
    async fn push(&self, frame: Bytes) -> Result<(), End> {
        self.tx.send(frame).await.map_err(|stop| match stop {
            Stop::Gone => End::Gone,
            Stop::Stalled => End::Dropped("reader too slow"),
            Stop::Shutdown => End::Shutdown,
        })
    }

    fn finish(self, end: End) {
        let frame = match end {
            End::Gone | End::Failed => return,
            End::Dropped(reason) => {
                self.metrics.tail_dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(workspace = self.q.workspace, reason, "live tail dropped");
                format!("event: dropped\ndata: {{\"reason\":\"{reason}\"}}\n\n")
            }
            End::Shutdown => "event: shutdown\ndata: {}\n\n".to_owned(),
        };
        self.tx.send_last(Bytes::from(frame));
    }
}
