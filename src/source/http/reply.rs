//! Answers: `202 {"accepted":N,"first_seq":S}`, `207` with per-item
//! results, and errors as `{"error":{"code","message"}}` (plus the item's
//! `line` or `item` when one is to blame).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Map, Value, json};

use crate::codec::jsonl::{ItemOutcome, ItemProblem, Position};
use crate::metrics::{Refusal, SourceMetrics};

pub type Resp = Response<Full<Bytes>>;

/// Seconds a client is told to wait when the pipeline is full or a commit failed.
pub const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// A request that stores nothing, and what to tell the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: StatusCode,
    /// Stable, machine-readable.
    pub code: &'static str,
    /// For people.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
    /// The item to blame, for bad JSON.
    pub at: Option<Position>,
    /// How the refusal is counted (`sluice_frames_refused_total{reason}`).
    pub counted_as: Option<Refusal>,
}

impl Refused {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
        Refused { status, code, message: message.into(), retry_after: None, at: None, counted_as: None }
    }

    pub fn counted(mut self, why: Refusal) -> Refused {
        self.counted_as = Some(why);
        self
    }

    pub fn bad_key(code: &'static str, message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::UNAUTHORIZED, code, message).counted(Refusal::BadKey)
    }

    pub fn too_large(code: &'static str, message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::PAYLOAD_TOO_LARGE, code, message).counted(Refusal::TooLarge)
    }

    pub fn malformed(code: &'static str, message: impl Into<String>) -> Refused {
        Refused::new(StatusCode::BAD_REQUEST, code, message).counted(Refusal::Malformed)
    }

    /// 503: the pipeline is full, a commit failed, or the daemon is stopping.
    pub fn unavailable(message: impl Into<String>) -> Refused {
        let mut r = Refused::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message).counted(Refusal::Unavailable);
        r.retry_after = Some(BUSY_RETRY_AFTER_SECS);
        r
    }

    pub fn rate_limited(retry_after: Option<u64>) -> Refused {
        let mut r = Refused::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; see Retry-After")
            .counted(Refusal::RateLimited);
        r.retry_after = retry_after;
        r
    }

    pub fn response(&self) -> Resp {
        let mut error = Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        if let Some(at) = self.at {
            let (name, n) = position(at);
            error.insert(name.into(), n.into());
        }
        let mut resp = json_response(self.status, &json!({ "error": error }));
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

fn position(at: Position) -> (&'static str, u32) {
    match at {
        Position::Line(n) => ("line", n),
        Position::Item(n) => ("item", n),
    }
}

/// 202: everything in the request is stored (`first_seq` is null for an empty body).
pub fn accepted(count: u32, first_seq: Option<u64>) -> Resp {
    json_response(StatusCode::ACCEPTED, &json!({ "accepted": count, "first_seq": first_seq }))
}

/// 207: some items stored, some refused; one result per item in body order.
/// Stored items have consecutive sequence numbers from `first_seq`.
pub fn partial(outcomes: &[ItemOutcome], first_seq: u64) -> Resp {
    let mut seq = first_seq;
    let mut accepted = 0u32;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let (name, n) = position(o.at);
            let mut m = Map::new();
            m.insert(name.into(), n.into());
            match &o.error {
                None => {
                    m.insert("seq".into(), seq.into());
                    seq += 1;
                    accepted += 1;
                }
                Some(p) => {
                    m.insert("error".into(), problem_json(p));
                }
            }
            Value::Object(m)
        })
        .collect();
    let rejected = outcomes.len() as u32 - accepted;
    let body = json!({ "accepted": accepted, "rejected": rejected, "first_seq": first_seq, "results": results });
    json_response(StatusCode::MULTI_STATUS, &body)
}

fn problem_json(p: &ItemProblem) -> Value {
    json!({ "code": p.code(), "message": p.to_string() })
}

/// Counts and logs a refusal and finishes `resp`, its answer in the
/// listener's encoding: a 401 closes the connection (a client without a key
/// that pipelines requests and never reads its answers cannot keep it), a
/// 405 names the methods `allow`ed. HTTP ingest and OTLP refuse through it.
pub fn refusal(
    metrics: &SourceMetrics,
    refused: &Refused,
    peer: SocketAddr,
    allow: &'static str,
    mut resp: Resp,
) -> Resp {
    if let Some(why) = refused.counted_as {
        metrics.refuse(why);
    }
    if refused.status == StatusCode::UNAUTHORIZED {
        metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if refused.status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    tracing::debug!(%peer, status = refused.status.as_u16(), code = refused.code, "request refused");
    resp
}

pub fn json_response(status: StatusCode, value: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(resp: Resp) -> Value {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_carry_code_message_position_and_retry_after() {
        let mut r = Refused::malformed("invalid_json", "line 2: bad");
        r.at = Some(Position::Line(2));
        let resp = r.response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(resp).await, json!({"error": {"code": "invalid_json", "message": "line 2: bad", "line": 2}}));
        let resp = Refused::unavailable("full").response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    #[tokio::test]
    async fn partial_results_number_the_stored_items() {
        let bad = ItemProblem::NotAnObject { message: "x".into() };
        let outcomes = [
            ItemOutcome { at: Position::Line(1), error: None },
            ItemOutcome { at: Position::Line(3), error: Some(bad) },
            ItemOutcome { at: Position::Line(4), error: None },
        ];
        let v = body(partial(&outcomes, 10)).await;
        assert_eq!(
            (v["accepted"].clone(), v["rejected"].clone(), v["first_seq"].clone()),
            (json!(2), json!(1), json!(10))
        );
        assert_eq!(v["results"][0], json!({"line": 1, "seq": 10}));
        assert_eq!(v["results"][1]["error"]["code"], "not_an_object");
        assert_eq!(v["results"][2], json!({"line": 4, "seq": 11}));
    }
}
