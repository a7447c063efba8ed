//! Building responses: JSON, empty, text; and the rate-limit headers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

use super::error::ApiError;
use crate::auth::ratelimit::Verdict;

pub type Resp = Response<Full<Bytes>>;

pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Resp, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(with_type(status, body, "application/json"))
}

pub fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub fn text(body: String, content_type: &'static str) -> Resp {
    with_type(StatusCode::OK, body.into_bytes(), content_type)
}

pub fn error(e: &ApiError) -> Resp {
    with_type(e.status, e.body(), "application/json")
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Adds `X-RateLimit-Limit`, `-Remaining`, `-Reset` and, on refusal, `Retry-After`.
pub fn add_rate_headers(resp: &mut Resp, v: &Verdict) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(v.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(v.reset_secs));
    if let Some(retry) = v.retry_after_secs {
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    }
}
