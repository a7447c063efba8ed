//! OTLP answers, in the request's encoding: a 200 carries the signal's
//! `Export*ServiceResponse` (with `partial_success` when records were
//! refused); every error a `google.rpc.Status` with a gRPC code that
//! matches the HTTP status, plus `Retry-After` on 429 and 503.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message;

use crate::codec::otlp::{Appended, Format, Signal};
use crate::source::http::reply::{Refused, Resp};

/// `google.rpc.Status`, the body of every OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// 200 after the commit: the signal's export response.
pub fn success(signal: Signal, format: Format, appended: &Appended) -> Resp {
    let rejected = i64::from(appended.rejected);
    let message = appended.problem.clone().unwrap_or_default();
    let partial = appended.rejected > 0;
    let body = match format {
        Format::Protobuf => match signal {
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial
                    .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial
                    .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message: message }),
            }
            .encode_to_vec(),
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial
                    .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
            }
            .encode_to_vec(),
        },
        Format::Json if !partial => b"{}".to_vec(),
        Format::Json => {
            let field = match signal {
                Signal::Logs => "rejectedLogRecords",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Traces => "rejectedSpans",
            };
            // int64 as a string, as the protobuf JSON mapping writes it.
            let partial = serde_json::json!({ field: rejected.to_string(), "errorMessage": message });
            serde_json::json!({ "partialSuccess": partial }).to_string().into_bytes()
        }
    };
    response(StatusCode::OK, format, body)
}

/// An error answer: the status and headers of `refused`, a `google.rpc.Status` body.
pub fn refused(format: Format, refused: &Refused) -> Resp {
    let status = Status { code: grpc_code(refused.status), message: format!("{}: {}", refused.code, refused.message) };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::json!({ "code": status.code, "message": status.message }).to_string().into_bytes(),
    };
    let mut resp = response(refused.status, format, body);
    if let Some(secs) = refused.retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// The gRPC code that says the same as an HTTP status (google/rpc/code.proto).
fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::REQUEST_TIMEOUT => 4,                                  // DEADLINE_EXCEEDED
        StatusCode::NOT_FOUND => 5,                                        // NOT_FOUND
        StatusCode::FORBIDDEN => 7,                                        // PERMISSION_DENIED
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8, // RESOURCE_EXHAUSTED
        StatusCode::METHOD_NOT_ALLOWED => 12,                              // UNIMPLEMENTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
        StatusCode::UNAUTHORIZED => 16,                                    // UNAUTHENTICATED
        _ => 2,                                                            // UNKNOWN
    }
}

fn response(status: StatusCode, format: Format, body: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let ct = match format {
        Format::Protobuf => "application/x-protobuf",
        Format::Json => "application/json",
    };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn bytes(resp: Resp) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn success_and_partial_success_in_both_encodings() {
        let all = Appended { stored: 3, rejected: 0, problem: None };
        assert!(bytes(success(Signal::Logs, Format::Protobuf, &all)).await.is_empty());
        assert_eq!(bytes(success(Signal::Traces, Format::Json, &all)).await, "{}");
        let some = Appended { stored: 2, rejected: 1, problem: Some("too big".into()) };
        let pb = ExportMetricsServiceResponse::decode(bytes(success(Signal::Metrics, Format::Protobuf, &some)).await)
            .unwrap();
        let p = pb.partial_success.unwrap();
        assert_eq!((p.rejected_data_points, p.error_message.as_str()), (1, "too big"));
        let json: serde_json::Value =
            serde_json::from_slice(&bytes(success(Signal::Traces, Format::Json, &some)).await).unwrap();
        assert_eq!(json, serde_json::json!({"partialSuccess": {"rejectedSpans": "1", "errorMessage": "too big"}}));
    }

    #[tokio::test]
    async fn errors_are_statuses_with_retry_after() {
        let resp = refused(Format::Protobuf, &Refused::unavailable("full"));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/x-protobuf");
        let status = Status::decode(bytes(resp).await).unwrap();
        assert_eq!((status.code, status.message.as_str()), (14, "unavailable: full"));
        let resp = refused(Format::Json, &Refused::malformed("bad_body", "nope"));
        let json: serde_json::Value = serde_json::from_slice(&bytes(resp).await).unwrap();
        assert_eq!(json, serde_json::json!({"code": 3, "message": "bad_body: nope"}));
    }
}
