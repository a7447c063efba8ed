use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::*;
use crate::record::{self, Record};

fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn logs(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::StringValue("checkout".into()))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope { name: "lib".into(), version: "1.2".into(), ..Default::default() }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn stored(req: &Request) -> (Vec<u8>, Appended) {
    let mut b = BlockBuilder::default();
    let a = append(req, 99, &mut b);
    (b.finish().0, a)
}

fn json_field(r: &Record<'_>, t: u8) -> serde_json::Value {
    serde_json::from_slice(r.get(t).expect("field")).expect("json")
}

#[test]
fn a_log_record_keeps_every_field() {
    let lr = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: 1_700_000_000_200_000_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue { value: Some(Value::StringValue("payment failed".into())) }),
        attributes: vec![kv("order", Value::IntValue(42)), kv("retry", Value::BoolValue(true))],
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        flags: 1,
        event_name: "payment.failed".into(),
        ..Default::default()
    };
    let req = decode(Signal::Logs, Format::Protobuf, &logs(vec![lr]).encode_to_vec()).unwrap();
    assert_eq!(items(&req), 1);
    let (block, a) = stored(&req);
    assert_eq!(a, Appended { stored: 1, rejected: 0, problem: None });
    let r = record::records(&block).next().unwrap().unwrap();
    assert_eq!((r.kind, r.received_at_ms), (Kind::Log, 99));
    assert_eq!(r.get_u64(tag::TIMESTAMP), Some(1_700_000_000_123));
    assert_eq!(r.get_u64(tag::TIME_NS), Some(1_700_000_000_123_456_789));
    assert_eq!(r.get_u64(tag::OBSERVED_NS), Some(1_700_000_000_200_000_000));
    assert_eq!((r.get_u8(tag::SEVERITY_NUMBER), r.get_u8(tag::LEVEL)), (Some(17), Some(3)));
    assert_eq!(r.get(tag::SEVERITY_TEXT), Some(&b"ERROR"[..]));
    assert_eq!(r.get(tag::SERVICE), Some(&b"checkout"[..]));
    assert_eq!(json_field(&r, tag::BODY), serde_json::json!("payment failed"));
    assert_eq!(json_field(&r, tag::ATTRIBUTES), serde_json::json!({"order": 42, "retry": true}));
    assert_eq!(json_field(&r, tag::RESOURCE), serde_json::json!({"service.name": "checkout"}));
    assert_eq!(json_field(&r, tag::SCOPE), serde_json::json!({"name": "lib", "version": "1.2"}));
    assert_eq!(r.get(tag::TRACE_ID), Some(&[7u8; 16][..]));
    assert_eq!(r.get(tag::SPAN_ID), Some(&[9u8; 8][..]));
    assert_eq!(r.get(tag::EVENT_NAME), Some(&b"payment.failed"[..]));
}

#[test]
fn bad_records_are_rejected_one_by_one() {
    let good = LogRecord { severity_number: 9, ..Default::default() };
    let bad_id = LogRecord { trace_id: vec![1; 15], ..Default::default() };
    let bad_severity = LogRecord { severity_number: 25, ..Default::default() };
    let huge = LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue("x".repeat(MAX_RECORD_BYTES))) }),
        ..Default::default()
    };
    let req = Request::Logs(logs(vec![good.clone(), bad_id, bad_severity, huge, good]));
    let (block, a) = stored(&req);
    assert_eq!((a.stored, a.rejected), (2, 3));
    assert_eq!(a.problem.as_deref(), Some("trace_id is 15 bytes; it must be 16"));
    assert_eq!(record::records(&block).count(), 2);
}

#[test]
fn json_takes_integers_as_numbers_or_strings_and_hex_ids() {
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
      "scopeLogs":[{"logRecords":[
        {"timeUnixNano":"1700000000000000001","severityNumber":9,"body":{"stringValue":"a"},
         "attributes":[{"key":"n","value":{"intValue":"12"}},{"key":"m","value":{"intValue":13}}],
         "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","unknownField":1},
        {"timeUnixNano":1700000000000000002,"body":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.5}}]}}}
      ]}]}]}"#;
    let req = decode(Signal::Logs, Format::Json, body).unwrap();
    let (block, a) = stored(&req);
    assert_eq!(a.stored, 2);
    let rs: Vec<_> = record::records(&block).map(Result::unwrap).collect();
    assert_eq!(rs[0].get_u64(tag::TIME_NS), Some(1_700_000_000_000_000_001));
    assert_eq!(rs[1].get_u64(tag::TIME_NS), Some(1_700_000_000_000_000_002));
    assert_eq!(json_field(&rs[0], tag::ATTRIBUTES), serde_json::json!({"n": 12, "m": 13}));
    assert_eq!(hex::encode(rs[0].get(tag::TRACE_ID).unwrap()), "5b8efff798038103d269b633813fc60c");
    assert_eq!(json_field(&rs[1], tag::BODY), serde_json::json!({"k": 1.5}));
    assert_eq!(decode(Signal::Logs, Format::Json, b"{}").unwrap(), Request::Logs(Default::default()));
}

#[test]
fn undecodable_bodies_are_errors() {
    assert!(matches!(decode(Signal::Traces, Format::Protobuf, b"\xff\xff\xff"), Err(OtlpError::Protobuf(..))));
    assert!(matches!(decode(Signal::Metrics, Format::Json, b"{\"resourceMetrics\":7}"), Err(OtlpError::Json(..))));
    assert!(matches!(decode(Signal::Logs, Format::Json, b"not json"), Err(OtlpError::Json(..))));
}

/// Real exporters' bytes (tests/fixtures/otlp/README.md): every item stored, with its fields.
#[test]
fn real_exporters_bodies_decode_with_their_fields() {
    let cases: [(Signal, Format, &[u8], u32); 4] = [
        (Signal::Logs, Format::Protobuf, include_bytes!("../../../tests/fixtures/otlp/py-logs.pb"), 5),
        (Signal::Metrics, Format::Protobuf, include_bytes!("../../../tests/fixtures/otlp/py-metrics.pb"), 6),
        (Signal::Traces, Format::Protobuf, include_bytes!("../../../tests/fixtures/otlp/py-traces.pb"), 4),
        (Signal::Logs, Format::Json, include_bytes!("../../../tests/fixtures/otlp/js-logs.json"), 5),
    ];
    let mut all = Vec::new();
    for (signal, format, body, n) in cases {
        let req = decode(signal, format, body).unwrap_or_else(|e| panic!("{signal:?} {format:?}: {e}"));
        assert_eq!(items(&req), u64::from(n));
        let (block, a) = stored(&req);
        assert_eq!(a, Appended { stored: n, rejected: 0, problem: None }, "{signal:?} {format:?}");
        all.push(block);
    }
    let logs: Vec<_> = record::records(&all[3]).map(Result::unwrap).collect();
    assert_eq!(logs[1].get(tag::SERVICE), Some(&b"otlp-test-js"[..]));
    assert_eq!(json_field(&logs[0], tag::BODY), serde_json::json!("otlp-test-js run fixture-1 log 0"));
    let attrs = json_field(&logs[0], tag::ATTRIBUTES);
    assert_eq!(attrs["http"]["route"]["versioned"], true);
    assert_eq!(attrs["http"]["status"], 200);
    assert_eq!(hex::encode(logs[1].get(tag::TRACE_ID).unwrap()), "f7443f515a21639c3647f4705b8127a9");
    assert_eq!(logs[1].get_u64(tag::TIME_NS), Some(1_796_053_392_872_000_000));
    let spans: Vec<_> = record::records(&all[2]).map(Result::unwrap).collect();
    let parent = spans.iter().find(|r| r.get(tag::SPAN_NAME) == Some(&b"otlp-test-parent"[..])).unwrap();
    assert_eq!(hex::encode(parent.get(tag::SPAN_ID).unwrap()), "3fb6cf34a0c74712");
    assert_eq!(parent.get_u8(tag::SPAN_KIND), Some(2));
    let failed = spans.iter().find(|r| r.get_u8(tag::STATUS_CODE) == Some(2)).expect("a span with status error");
    assert!(failed.get(tag::SPAN_LINKS).is_some());
    let points: Vec<_> = record::records(&all[1]).map(Result::unwrap).collect();
    let gauge = points.iter().find(|r| r.get(tag::METRIC_NAME) == Some(&b"otlp_test.temperature"[..])).unwrap();
    assert_eq!(gauge.get_f64(tag::METRIC_VALUE), Some(21.5));
    let exp = points.iter().find(|r| r.get(tag::EXP_HISTOGRAM).is_some()).unwrap();
    assert_eq!(json_field(exp, tag::EXP_HISTOGRAM)["count"], 5);
}
