//! `GET /health` and `GET /metrics` (Prometheus text or OpenMetrics).

use std::sync::atomic::Ordering;

use http::StatusCode;
use serde_json::json;

use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::metrics::expose::{Format, render};

pub async fn health(cx: &Ctx) -> Result<Resp, ApiError> {
    let s = &cx.state;
    let setup_required = s.setup_token().is_some();
    let listeners: Vec<_> =
        s.listeners.iter().map(|(name, addr)| json!({"name": name, "address": addr.to_string()})).collect();
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": s.started.elapsed().as_secs(),
        "setup_required": setup_required,
        "listeners": listeners,
        "streaming_keys": s.control.keys().len(),
        "sessions": s.auth.sessions.len(),
        "inflight_bytes": s.metrics.inflight_bytes.load(Ordering::Relaxed),
    });
    response::json(StatusCode::OK, &body)
}

/// The Prometheus text format, or OpenMetrics when `Accept` asks for it.
pub fn metrics(cx: &Ctx) -> Result<Resp, ApiError> {
    let accept = cx.headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    Ok(response::text(render(&cx.state.metrics, format), format.content_type()))
}
