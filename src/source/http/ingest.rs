//! From a request's (decompressed) body to a committed batch: decode into a
//! record block (`codec::jsonl` or `codec::tell`), compress into a chunk,
//! hand it to the writer, and answer only once the commit that holds it has
//! returned (202), or failed (503, nothing stored: retry).
//!
//! All-or-nothing unless the client asked for partial acceptance: a body
//! with a bad item stores nothing and the answer names the first bad item.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use tokio::sync::oneshot;

use super::HttpContext;
use super::body::Budget;
use super::reply::{self, Refused, Resp};
use crate::auth::keys::{KEY_LEN, KeyInfo};
use crate::codec::jsonl::{BodyError, Decoded, JsonlDecoder, Stream};
use crate::codec::tell::{self, TellError};
use crate::metrics::Refusal;
use crate::pipeline::{Batch, Outcome, Pipeline};
use crate::record::BlockBuilder;
use crate::store::chunk::ChunkBuilder;
use crate::store::now_ms;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/events`: JSON lines or array of events.
    Events,
    /// `POST /v1/logs`: JSON lines or array of logs.
    Logs,
    /// `POST /v1/ingest`: one Tell FlatBuffers batch.
    Ingest,
}

/// An authenticated request, ready to store.
#[derive(Debug)]
pub struct Request<'a> {
    pub route: Route,
    /// The key the request was authenticated with (raw bytes).
    pub raw_key: [u8; KEY_LEN],
    pub key: KeyInfo,
    /// The client, as stored with each event.
    pub peer: &'a str,
    /// `?partial=true`: store the good items of a body with bad ones (207).
    pub partial: bool,
}

/// Stores the body; the answer is sent only after the commit.
pub async fn store(ctx: &HttpContext, req: &Request<'_>, body: Bytes, budget: &mut Budget) -> Result<Resp, Refused> {
    let received_at = now_ms();
    let mut chunk = ChunkBuilder::with_capacity(body.len() + body.len() / 4);
    let block = chunk.records(received_at);
    let decoded = match req.route {
        Route::Events => decode_json(ctx, req, &body, received_at, block)?,
        Route::Logs => decode_json(ctx, req, &body, received_at, block)?,
        Route::Ingest => decode_tell(req, &body, received_at, block)?,
    };
    let block = &mut chunk;
    if block.is_empty() {
        return match decoded.outcomes.iter().find_map(|o| o.error.clone().map(|p| (o.at, p))) {
            Some((at, problem)) => Err(item_refused(at, problem)),
            None => Ok(reply::accepted(0, None)),
        };
    }
    budget.cover(body.len() + block.len_bytes()).await?;
    drop(body);
    let count = block.count();
    let to = Destination {
        pipeline: &ctx.pipeline,
        ack_timeout: ctx.ack_timeout,
        listener: &ctx.name,
        workspace: req.key.workspace,
        peer: req.peer,
    };
    let first_seq = commit(to, block, budget).await?;
    ctx.metrics.events_received.fetch_add(u64::from(count), Ordering::Relaxed);
    // A 207: each refused item counts as one malformed refusal.
    for _ in 0..decoded.rejected {
        ctx.metrics.refuse(Refusal::Malformed);
    }
    Ok(match decoded.rejected {
        0 => reply::accepted(count, Some(first_seq)),
        _ => reply::partial(&decoded.outcomes, first_seq),
    })
}

fn decode_json(
    ctx: &HttpContext,
    req: &Request<'_>,
    body: &[u8],
    received_at: u64,
    block: &mut BlockBuilder,
) -> Result<Decoded, Refused> {
    let stream = if req.route == Route::Logs { Stream::Logs } else { Stream::Events };
    let mut decoder = JsonlDecoder::new(stream, ctx.config.max_lines.0);
    decoder.decode(body, received_at, req.partial, block).map_err(|e| match e {
        BodyError::TooManyItems { limit } => {
            Refused::too_large("too_many_lines", format!("more than {limit} events in one request (max_lines)"))
        }
        BodyError::Item { at, problem } => item_refused(at, problem),
        e @ BodyError::Array { .. } => Refused::malformed("invalid_json", e.to_string()),
    })
}

fn item_refused(at: crate::codec::jsonl::Position, problem: crate::codec::jsonl::ItemProblem) -> Refused {
    let mut r = Refused::malformed(problem.code(), format!("{at}: {problem}"));
    r.at = Some(at);
    r
}

/// One Tell batch, whose embedded key must be the request's.
fn decode_tell(req: &Request<'_>, body: &[u8], received_at: u64, block: &mut BlockBuilder) -> Result<Decoded, Refused> {
    let malformed = |e: TellError| match e {
        TellError::UnsupportedSchema { .. } => Refused::malformed("unsupported_schema", e.to_string()),
        e => Refused::malformed("malformed_batch", e.to_string()),
    };
    let view = tell::decode_batch(body).map_err(malformed)?;
    if view.api_key != req.raw_key {
        let message = "the batch's embedded key is not the key the request was sent with";
        return Err(Refused::new(StatusCode::FORBIDDEN, "key_mismatch", message).counted(Refusal::BadKey));
    }
    let stored = tell::append_items(&view, received_at, block).map_err(malformed)?;
    Ok(Decoded { stored, ..Decoded::default() })
}

/// Where a request's records go, and how long its answer may wait.
pub struct Destination<'a> {
    pub pipeline: &'a Pipeline,
    pub ack_timeout: Duration,
    /// The listener's name, stored with the chunk.
    pub listener: &'a str,
    pub workspace: u32,
    /// The client, stored with the chunk.
    pub peer: &'a str,
}

/// Seals the records as a chunk, hands it to the writer and waits for its
/// commit; the first sequence number. HTTP ingest and OTLP answer through it.
pub async fn commit(to: Destination<'_>, records: &mut ChunkBuilder, budget: &mut Budget) -> Result<u64, Refused> {
    let (chunk, count) = records.seal(to.listener, to.peer);
    let permit = budget.take_permit().await?;
    let (tx, rx) = oneshot::channel();
    let submitted = std::time::Instant::now();
    let batch =
        Batch { workspace: to.workspace, count, chunk, dedup: None, relayed: None, reply: Some(tx), permit, submitted };
    to.pipeline.submit(batch).map_err(|_| Refused::unavailable("the daemon is stopping; retry"))?;
    match tokio::time::timeout(to.ack_timeout, rx).await {
        Ok(Ok(Outcome::Stored { first_seq, .. } | Outcome::Duplicate { first_seq, .. })) => Ok(first_seq),
        Ok(Ok(Outcome::Unavailable)) => Err(Refused::unavailable("the commit failed; nothing was stored; retry")),
        Ok(Err(_)) => Err(Refused::unavailable("the writer stopped before the commit; retry")),
        Err(_) => Err(Refused::unavailable("the commit was not confirmed in time; retry")),
    }
}
