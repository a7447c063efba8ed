//! Building responses: JSON, empty, text, a stream; and the rate-limit headers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Frame;
use serde::Serialize;

use super::error::ApiError;
use crate::net::body_stream::BodyReceiver;

pub type Resp = Response<Body>;

/// A whole body, or one streamed from a channel (Server-Sent Events) that
/// ends when the sender is dropped.
#[derive(Debug)]
pub enum Body {
    Full(Full<Bytes>),
    Stream(BodyReceiver),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx),
            Body::Stream(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Stream(_) => false,
        }
    }
}

/// A `text/event-stream` answer fed by `rx`.
pub fn event_stream(rx: BodyReceiver) -> Resp {
    stream(rx, "text/event-stream")
}

/// A 200 answer of unknown length (chunked) fed by `rx`, ending when the
/// sender is dropped.
pub fn stream(rx: BodyReceiver, content_type: &'static str) -> Resp {
    let mut r = Response::new(Body::Stream(rx));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub fn json(status: StatusCode, value: &impl Serialize) -> Result<Resp, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(with_type(status, body, "application/json"))
}

pub fn no_content() -> Resp {
    let mut r = Response::new(Body::Full(Full::new(Bytes::new())));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub fn text(body: String, content_type: &'static str) -> Resp {
    with_type(StatusCode::OK, body.into_bytes(), content_type)
}

/// An error answer; a 503 (something a retry can fix) says when to retry.
pub fn error(e: &ApiError) -> Resp {
    let mut r = with_type(e.status, e.body(), "application/json");
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn with_type(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Resp {
    let mut r = Response::new(Body::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
