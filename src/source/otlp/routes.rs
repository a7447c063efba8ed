//! One OTLP request, checked in order: route, key, rate limit, content
//! type and encoding, body (limit, budget), decoding, commit. Each check can
//! only refuse; nothing is stored until every check has passed. The
//! rate-limit headers go on whatever the answer is.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use http::request::Parts;
use http::{HeaderMap, Method, Request, StatusCode, header};
use hyper::body::Incoming;

use super::OtlpContext;
use super::reply;
use crate::auth::client_ip::client_ip;
use crate::auth::keys::{KEY_LEN, KeyInfo};
use crate::auth::ratelimit::Verdict;
use crate::codec::otlp::{self, Appended, Format, OtlpError, Signal};
use crate::metrics::Refusal;
use crate::source::http::auth::{key_pair, request_key};
use crate::source::http::body::{self, Budget};
use crate::source::http::ingest::{self, Destination};
use crate::source::http::reply::{self as http_reply, Refused, Resp};
use crate::store::chunk::ChunkBuilder;
use crate::store::now_ms;

/// A request's stored records may take this many times `max_body_bytes`
/// (each record carries its resource and scope); more is refused with 413.
/// It also bounds what a JSON body may decode into (`codec::otlp::records`).
const RECORDS_PER_BODY_BYTE: usize = 4;

/// Answers one request; never fails (refusals become `google.rpc.Status` answers).
pub async fn handle(ctx: &OtlpContext, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let (parts, body) = req.into_parts();
    // Answers use the request's encoding; protobuf when it names neither.
    let format = content_format(&parts.headers).unwrap_or(Format::Protobuf);
    let mut verdict = None;
    let result = match target(&parts) {
        Ok(signal) => serve(ctx, signal, &parts, body, peer, &mut verdict).await,
        Err(refused) => Err(refused),
    };
    let mut resp = result.unwrap_or_else(|refused| refuse(ctx, format, &refused, peer));
    if let Some(v) = verdict {
        v.write_headers(resp.headers_mut());
    }
    resp
}

fn target(parts: &Parts) -> Result<Signal, Refused> {
    let path = parts.uri.path();
    let name = path.strip_prefix("/v1/").or_else(|| path.strip_prefix("/api/v2/otlp/"));
    let signal = match name {
        Some("logs") => Signal::Logs,
        Some("metrics") => Signal::Metrics,
        Some("traces") => Signal::Traces,
        _ => return Err(Refused::new(StatusCode::NOT_FOUND, "not_found", format!("no endpoint at {path}"))),
    };
    match parts.method {
        Method::POST => Ok(signal),
        _ => Err(Refused::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST")),
    }
}

/// Counts and logs a refusal, and builds its answer.
fn refuse(ctx: &OtlpContext, format: Format, refused: &Refused, peer: SocketAddr) -> Resp {
    http_reply::refusal(&ctx.metrics, refused, peer, "POST", reply::refused(format, refused))
}

async fn serve(
    ctx: &OtlpContext,
    signal: Signal,
    parts: &Parts,
    body: Incoming,
    peer: SocketAddr,
    verdict: &mut Option<Verdict>,
) -> Result<Resp, Refused> {
    let started = std::time::Instant::now();
    let key = authenticate(ctx, &parts.headers)?;
    let client = client_ip(peer.ip(), &parts.headers, |ip| ctx.config.trusts(ip));
    if let Some(v) = ctx.limits.check(key.id, client) {
        *verdict = Some(v);
        if !v.allowed {
            return Err(Refused::rate_limited(v.retry_after_secs));
        }
    }
    let format = content_format(&parts.headers).ok_or_else(|| unsupported_type(&parts.headers))?;
    let limit = ctx.config.max_body_bytes.0;
    let mut budget = Budget::new(&ctx.pipeline, ctx.config.busy_timeout);
    let plain = body::receive(body, &parts.headers, limit, ctx.timeouts, &mut budget, &ctx.metrics).await?;
    let body_len = plain.len();
    // Decoding is CPU work and, while it runs, memory beyond the body: a
    // few at a time, no more than there are cores.
    let slot = tokio::time::timeout(ctx.config.busy_timeout, ctx.decode_slots.acquire())
        .await
        .map_err(|_| Refused::unavailable("busy decoding other requests; retry"))?
        .map_err(|_| Refused::unavailable("the daemon is stopping; retry"))?;
    let max_records = limit.saturating_mul(RECORDS_PER_BODY_BYTE);
    let decoded = tokio::task::spawn_blocking(move || records(signal, format, &plain, max_records)).await;
    drop(slot);
    let (appended, mut chunk) = decoded.map_err(|_| Refused::unavailable("decoding failed; retry"))??;
    budget.cover(body_len + chunk.len_bytes()).await?;
    for _ in 0..appended.rejected {
        ctx.metrics.refuse(Refusal::Malformed);
    }
    if appended.stored > 0 {
        let peer_text = if client == peer.ip() { peer.to_string() } else { client.to_string() };
        let to = Destination {
            pipeline: &ctx.pipeline,
            ack_timeout: ctx.ack_timeout,
            listener: &ctx.name,
            workspace: key.workspace,
            peer: &peer_text,
        };
        ingest::commit(to, &mut chunk, &mut budget).await?;
        ctx.metrics.events_received.fetch_add(u64::from(appended.stored), Ordering::Relaxed);
    }
    // The head read to the answer ready (after the commit): the ack latency.
    ctx.metrics.ack_seconds.observe_duration(started.elapsed());
    Ok(reply::success(signal, format, &appended))
}

/// Decodes a body and writes its items as records (on the blocking pool:
/// a large body takes a while).
fn records(signal: Signal, format: Format, body: &[u8], max_bytes: usize) -> Result<(Appended, ChunkBuilder), Refused> {
    let received_at = now_ms();
    let mut chunk = ChunkBuilder::with_capacity(64 << 10);
    let appended = otlp::records(signal, format, body, received_at, chunk.records(received_at), max_bytes).map_err(
        |e| match e {
            OtlpError::TooLarge { .. } | OtlpError::TooManyObjects { .. } => {
                Refused::too_large("records_too_large", e.to_string())
            }
            e => Refused::malformed("undecodable", e.to_string()),
        },
    )?;
    Ok((appended, chunk))
}

/// The request's streaming key: `Authorization: Bearer`, `X-API-Key`, or
/// `X-API-Key-ID` with `X-API-Key-Secret` (whose id must be the key's).
fn authenticate(ctx: &OtlpContext, headers: &HeaderMap) -> Result<KeyInfo, Refused> {
    let unknown = || Refused::bad_key("unknown_key", "unknown or revoked streaming key");
    let (raw, id): ([u8; KEY_LEN], Option<u64>) = match key_pair(headers) {
        Some(pair) => pair.map(|(key, id)| (key, Some(id)))?,
        None => (request_key(headers, None, false).map_err(otlp_ways)?, None),
    };
    let key = ctx.keys.lookup(&raw).ok_or_else(unknown)?;
    match id {
        Some(id) if id != key.id => Err(Refused::bad_key("key_id_mismatch", "X-API-Key-ID is not the id of that key")),
        _ => Ok(key),
    }
}

/// A missing key is told the ways OTLP takes one (not HTTP ingest's `?token=`).
fn otlp_ways(r: Refused) -> Refused {
    match r.code {
        "missing_key" => Refused::bad_key(
            "missing_key",
            "send the streaming key as Authorization: Bearer KEY, X-API-Key: KEY, or X-API-Key-ID and X-API-Key-Secret",
        ),
        _ => r,
    }
}

/// `application/x-protobuf` or `application/json`, by the `Content-Type` essence.
fn content_format(headers: &HeaderMap) -> Option<Format> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf") {
        Some(Format::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Format::Json)
    } else {
        None
    }
}

fn unsupported_type(headers: &HeaderMap) -> Refused {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let message = format!("Content-Type `{ct}`: send application/x-protobuf or application/json");
    Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message).counted(Refusal::Malformed)
}
