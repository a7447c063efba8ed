use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::metric;
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
    let a = append(req, 99, &mut b, usize::MAX).unwrap();
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

#[test]
fn records_past_the_request_limit_are_an_error() {
    // A large resource repeats in every record: 50 small records, 50 copies.
    let mut req = logs(vec![LogRecord::default(); 50]);
    let resource = req.resource_logs[0].resource.as_mut().unwrap();
    resource.attributes.push(kv("big", Value::StringValue("r".repeat(10_000))));
    let req = Request::Logs(req);
    let mut b = BlockBuilder::default();
    assert_eq!(append(&req, 1, &mut b, 100_000), Err(OtlpError::TooLarge { limit: 100_000 }));
    let mut b = BlockBuilder::default();
    assert_eq!(append(&req, 1, &mut b, 1_000_000).unwrap().stored, 50);
}

/// The protobuf path reads one item at a time; it must store what decoding
/// the whole request would.
#[test]
fn streaming_protobuf_stores_what_a_whole_decode_stores() {
    let bodies: [(Signal, &[u8]); 3] = [
        (Signal::Logs, include_bytes!("../../../tests/fixtures/otlp/py-logs.pb")),
        (Signal::Metrics, include_bytes!("../../../tests/fixtures/otlp/py-metrics.pb")),
        (Signal::Traces, include_bytes!("../../../tests/fixtures/otlp/py-traces.pb")),
    ];
    for (signal, body) in bodies {
        let (whole, a) = stored(&decode(signal, Format::Protobuf, body).unwrap());
        let mut b = BlockBuilder::default();
        let s = stream::append(signal, body, 99, &mut b, usize::MAX).unwrap();
        assert_eq!((s, b.finish().0), (a, whole), "{signal:?}");
    }
    // Fields out of order, a resource sent twice (merged), a metric whose
    // data changes kind (the last wins), unknown fields.
    let mut resource = Resource { attributes: vec![kv("a", Value::IntValue(1))], ..Default::default() };
    let mut req = logs(vec![LogRecord { severity_number: 9, ..Default::default() }]);
    let mut body = Vec::new();
    let rl = &mut req.resource_logs[0];
    rl.resource = None;
    let mut group = Vec::new();
    prost::encoding::message::encode(2, &rl.scope_logs[0], &mut group);
    prost::encoding::message::encode(1, &resource, &mut group);
    resource.attributes = vec![kv("b", Value::IntValue(2))];
    prost::encoding::message::encode(1, &resource, &mut group);
    prost::encoding::uint64::encode(99, &7, &mut group);
    prost::encoding::bytes::encode(1, &group, &mut body);
    let (whole, a) = stored(&decode(Signal::Logs, Format::Protobuf, &body).unwrap());
    let mut b = BlockBuilder::default();
    assert_eq!(stream::append(Signal::Logs, &body, 99, &mut b, usize::MAX).unwrap(), a);
    let block = b.finish().0;
    assert_eq!(block, whole);
    let r = record::records(&block).next().unwrap().unwrap();
    assert_eq!(json_field(&r, tag::RESOURCE), serde_json::json!({"a": 1, "b": 2}));
}

#[test]
fn a_metric_whose_data_changes_kind_keeps_the_last() {
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, NumberDataPoint, Sum, number_data_point};
    let point = |v| NumberDataPoint { value: Some(number_data_point::Value::AsInt(v)), ..Default::default() };
    let gauge = Metric {
        name: "m".into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(1), point(2)] })),
        ..Default::default()
    };
    let sum = Metric {
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point(3)],
            aggregation_temporality: 1,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let sum2 = Metric {
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![point(4)],
            aggregation_temporality: 2,
            is_monotonic: false,
        })),
        ..Default::default()
    };
    // Concatenated messages merge: name from the first, a sum of points 3 and 4.
    let mut m = gauge.encode_to_vec();
    m.extend(sum.encode_to_vec());
    m.extend(sum2.encode_to_vec());
    let mut sm = Vec::new();
    prost::encoding::bytes::encode(2, &m, &mut sm);
    let mut rm = Vec::new();
    prost::encoding::bytes::encode(2, &sm, &mut rm);
    let mut body = Vec::new();
    prost::encoding::bytes::encode(1, &rm, &mut body);
    let (whole, a) = stored(&decode(Signal::Metrics, Format::Protobuf, &body).unwrap());
    assert_eq!(a.stored, 2);
    let mut b = BlockBuilder::default();
    assert_eq!(stream::append(Signal::Metrics, &body, 99, &mut b, usize::MAX).unwrap(), a);
    assert_eq!(b.finish().0, whole);
    let rs: Vec<_> = record::records(&whole).map(Result::unwrap).collect();
    assert_eq!(rs[1].get(tag::METRIC_INT), Some(&4i64.to_le_bytes()[..]));
    // Temporality 2 (cumulative, Tell's 1) was sent last; `false` is proto3's
    // default, never on the wire, so `true` stays.
    assert_eq!((rs[1].get_u8(tag::TEMPORALITY), rs[1].get_u8(tag::MONOTONIC)), (Some(1), Some(1)));
}

#[test]
fn oversized_items_and_shared_parts_are_rejected_unread() {
    let huge = LogRecord {
        body: Some(AnyValue { value: Some(Value::StringValue("x".repeat(stream::MAX_ITEM_BYTES))) }),
        ..Default::default()
    };
    let body = logs(vec![huge, LogRecord::default()]).encode_to_vec();
    let mut b = BlockBuilder::default();
    let a = stream::append(Signal::Logs, &body, 1, &mut b, usize::MAX).unwrap();
    assert_eq!((a.stored, a.rejected), (1, 1));
    // A resource over the record limit: every record refused, none written.
    let mut req = logs(vec![LogRecord::default(); 1000]);
    let attrs = &mut req.resource_logs[0].resource.as_mut().unwrap().attributes;
    attrs.push(kv("big", Value::StringValue("r".repeat(MAX_RECORD_BYTES))));
    let mut b = BlockBuilder::default();
    let a = stream::append(Signal::Logs, &req.encode_to_vec(), 1, &mut b, usize::MAX).unwrap();
    assert_eq!((a.stored, a.rejected, b.len_bytes()), (0, 1000, 0));
}

#[test]
fn json_bodies_of_many_objects_are_refused_before_decoding() {
    let mut body = String::from(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":["#);
    body.push_str(&vec!["{}"; 5000].join(","));
    body.push_str("]}]}]}");
    let mut b = BlockBuilder::default();
    let err = records(Signal::Logs, Format::Json, body.as_bytes(), 1, &mut b, 1 << 20).unwrap_err();
    assert!(matches!(err, OtlpError::TooManyObjects { objects: 5003, limit: 4096 }), "{err}");
    assert_eq!(records(Signal::Logs, Format::Json, body.as_bytes(), 1, &mut b, 4 << 20).unwrap().stored, 5000);
}

#[test]
fn bad_protobuf_envelopes_are_errors() {
    for body in [&b"\x0a\x05\x12"[..], b"\x08\x01", b"\x0a\x02\x12\x05", b"\x0b"] {
        let mut b = BlockBuilder::default();
        assert!(
            matches!(stream::append(Signal::Logs, body, 1, &mut b, usize::MAX), Err(OtlpError::Protobuf(..))),
            "{body:?}"
        );
        assert!(decode(Signal::Logs, Format::Protobuf, body).is_err(), "prost agrees: {body:?}");
    }
}
