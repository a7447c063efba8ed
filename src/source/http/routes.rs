//! One request, checked in order: route, key, rate limit, content type and
//! encoding, body (limit, budget), decoding, commit. Each check can only
//! refuse; nothing is stored until every check has passed. The rate-limit
//! and CORS headers go on whatever the answer is.

use std::net::SocketAddr;

use http::request::Parts;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;

use super::HttpContext;
use super::auth::{query_param, request_key};
use super::body::{self, Budget};
use super::cors::Cors;
use super::ingest::{self, Route};
use super::reply::{self, Refused, Resp};
use crate::auth::client_ip::client_ip;
use crate::auth::ratelimit::Verdict;
use crate::metrics::Refusal;

const ALLOW: &str = "POST, OPTIONS";

/// What a request asks for.
enum Target {
    Post(Route),
    Preflight,
}

/// Answers one request; never fails (refusals become JSON error answers).
pub async fn handle(ctx: &HttpContext, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let (parts, body) = req.into_parts();
    let origin = ctx.cors.allowed(&parts.headers);
    let mut verdict = None;
    let result = match target(&parts) {
        Ok(Target::Post(route)) => serve(ctx, route, &parts, body, peer, &mut verdict).await,
        Ok(Target::Preflight) => Ok(Cors::preflight(origin.clone())),
        Err(refused) => Err(refused),
    };
    let mut resp = result.unwrap_or_else(|refused| refuse(ctx, &refused, peer));
    if let Some(v) = verdict {
        v.write_headers(resp.headers_mut());
    }
    Cors::apply(&mut resp, origin);
    resp
}

fn target(parts: &Parts) -> Result<Target, Refused> {
    let route = match parts.uri.path() {
        "/v1/events" => Route::Events,
        "/v1/logs" => Route::Logs,
        "/v1/ingest" => Route::Ingest,
        path => return Err(Refused::new(StatusCode::NOT_FOUND, "not_found", format!("no endpoint at {path}"))),
    };
    match parts.method {
        Method::POST => Ok(Target::Post(route)),
        Method::OPTIONS => Ok(Target::Preflight),
        _ => Err(Refused::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST")),
    }
}

/// Counts and logs a refusal, and builds its answer.
fn refuse(ctx: &HttpContext, refused: &Refused, peer: SocketAddr) -> Resp {
    reply::refusal(&ctx.metrics, refused, peer, ALLOW, refused.response())
}

async fn serve(
    ctx: &HttpContext,
    route: Route,
    parts: &Parts,
    body: Incoming,
    peer: SocketAddr,
    verdict: &mut Option<Verdict>,
) -> Result<Resp, Refused> {
    let started = std::time::Instant::now();
    let query = parts.uri.query();
    let allow_query = ctx.config.query_token && route != Route::Ingest;
    let raw_key = request_key(&parts.headers, query, allow_query)?;
    let key =
        ctx.keys.lookup(&raw_key).ok_or_else(|| Refused::bad_key("unknown_key", "unknown or revoked streaming key"))?;
    let client = client_ip(peer.ip(), &parts.headers, |ip| ctx.config.trusts(ip));
    if let Some(v) = ctx.limits.check(key.id, client) {
        *verdict = Some(v);
        if !v.allowed {
            return Err(Refused::rate_limited(v.retry_after_secs));
        }
    }
    if route == Route::Ingest {
        check_batch_type(parts)?;
    }
    let limit = ctx.config.max_body_bytes.0;
    let mut budget = Budget::new(&ctx.pipeline, ctx.config.busy_timeout);
    let plain = body::receive(body, &parts.headers, limit, ctx.timeouts, &mut budget, &ctx.metrics).await?;
    let peer_text = if client == peer.ip() { peer.to_string() } else { client.to_string() };
    let partial = query_param(query, "partial").is_some_and(|v| v == "true" || v == "1");
    let req = ingest::Request { route, raw_key, key, peer: &peer_text, partial };
    let answer = ingest::store(ctx, &req, plain, &mut budget).await?;
    // The head read to the answer ready (after the commit): HTTP's ack latency.
    ctx.metrics.ack_seconds.observe_duration(started.elapsed());
    Ok(answer)
}

/// `/v1/ingest` takes `application/x-flatbuffers` or `application/octet-stream`.
fn check_batch_type(parts: &Parts) -> Result<(), Refused> {
    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-flatbuffers")
        || essence.eq_ignore_ascii_case("application/octet-stream")
    {
        return Ok(());
    }
    let message = format!("Content-Type `{ct}`: send application/x-flatbuffers or application/octet-stream");
    Err(Refused::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message).counted(Refusal::Malformed))
}
