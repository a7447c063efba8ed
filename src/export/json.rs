//! A stored event as JSON: what queries, tails and exports show.
//!
//! Syslog records are stored raw; their fields are parsed here, at read
//! time, in the zone the listener recorded (see `codec::syslog::parse`).

use serde_json::{Map, Number, Value};

use crate::codec::syslog::{parse, record_zone};
use crate::record::{self, Kind, Record, flag, tag};
use crate::store::reader::StoredEvent;

/// One event as a JSON object: `seq`, `workspace`, `received_at` (ms since
/// the epoch), `listener`, `peer`, `kind`, for events relayed from an edge
/// node `origin_node` and `origin_seq`, and every decoded field under its
/// own name. Fields with unknown tags are left out; of a repeated field the
/// first wins (labels are collected).
pub fn event_json(ev: &StoredEvent<'_>) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), ev.seq.into());
    m.insert("workspace".into(), ev.workspace.into());
    m.insert("received_at".into(), ev.record.received_at_ms.into());
    m.insert("listener".into(), ev.listener.into());
    m.insert("peer".into(), ev.peer().into_owned().into());
    m.insert("kind".into(), ev.record.kind.name().into());
    if let Some((node, seq)) = ev.origin {
        m.insert("origin_node".into(), node.into());
        m.insert("origin_seq".into(), seq.into());
    }

    let mut labels: Option<Map<String, Value>> = None;
    for (t, bytes) in ev.record.fields() {
        let (name, value) = match t {
            tag::TIMESTAMP => ("timestamp", u64_le(bytes).map(Value::from)),
            tag::SERVICE => ("service", Some(lossy(bytes))),
            tag::DEVICE_ID => ("device_id", Some(uuid(bytes))),
            tag::SESSION_ID => ("session_id", Some(uuid(bytes))),
            tag::EVENT_NAME => ("event_name", Some(lossy(bytes))),
            tag::PAYLOAD => ("payload", Some(payload(bytes))),
            tag::EVENT_TYPE => ("event_type", one_byte(bytes).map(|b| event_type_name(b).into())),
            tag::LOG_TYPE => ("log_type", one_byte(bytes).map(|b| log_type_name(b).into())),
            tag::LEVEL => ("level", one_byte(bytes).map(|b| level_name(b).into())),
            tag::SOURCE => ("source", Some(lossy(bytes))),
            tag::METRIC_NAME => ("name", Some(lossy(bytes))),
            tag::METRIC_VALUE => ("value", f64_le(bytes).map(f64_json)),
            tag::METRIC_TYPE => ("metric_type", one_byte(bytes).map(|b| metric_type_name(b).into())),
            tag::TEMPORALITY => ("temporality", one_byte(bytes).map(|b| temporality_name(b).into())),
            tag::LABEL => {
                if let Some((k, v)) = record::split_label(bytes) {
                    let key = String::from_utf8_lossy(k).into_owned();
                    labels.get_or_insert_default().insert(key, lossy(v));
                }
                continue;
            }
            tag::HISTOGRAM => ("histogram", histogram(bytes)),
            tag::RAW => ("raw", Some(lossy(bytes))),
            tag::FLAGS => ("flags", one_byte(bytes).map(flags)),
            t => match otel_field(t, bytes) {
                Some((name, value)) => (name, value),
                None => continue,
            },
        };
        if let Some(value) = value {
            m.entry(name).or_insert(value);
        }
    }
    if let Some(labels) = labels {
        m.insert("labels".into(), Value::Object(labels));
    } else if ev.record.kind == Kind::Metric && !m.contains_key("attributes") {
        m.insert("labels".into(), Value::Object(Map::new()));
    }
    if ev.record.kind == Kind::Syslog {
        enrich_syslog(&ev.record, &mut m);
    }
    Value::Object(m)
}

/// The OpenTelemetry fields (`codec::otlp`); `None` for tags that are not theirs.
fn otel_field(t: u8, bytes: &[u8]) -> Option<(&'static str, Option<Value>)> {
    Some(match t {
        tag::ATTRIBUTES => ("attributes", Some(payload(bytes))),
        tag::RESOURCE => ("resource", Some(payload(bytes))),
        tag::SCOPE => ("scope", Some(payload(bytes))),
        tag::BODY => ("body", Some(payload(bytes))),
        tag::TRACE_ID => ("trace_id", Some(Value::String(hex::encode(bytes)))),
        tag::SPAN_ID => ("span_id", Some(Value::String(hex::encode(bytes)))),
        tag::PARENT_SPAN_ID => ("parent_span_id", Some(Value::String(hex::encode(bytes)))),
        tag::TIME_NS => ("time_unix_nano", u64_le(bytes).map(Value::from)),
        tag::OBSERVED_NS => ("observed_time_unix_nano", u64_le(bytes).map(Value::from)),
        tag::START_NS => ("start_time_unix_nano", u64_le(bytes).map(Value::from)),
        tag::END_NS => ("end_time_unix_nano", u64_le(bytes).map(Value::from)),
        tag::SEVERITY_NUMBER => ("severity_number", one_byte(bytes).map(Value::from)),
        tag::SEVERITY_TEXT => ("severity_text", Some(lossy(bytes))),
        tag::SPAN_NAME => ("name", Some(lossy(bytes))),
        tag::SPAN_KIND => ("span_kind", one_byte(bytes).map(|b| span_kind_name(b).into())),
        tag::STATUS_CODE => ("status_code", one_byte(bytes).map(|b| status_code_name(b).into())),
        tag::STATUS_MESSAGE => ("status_message", Some(lossy(bytes))),
        tag::SPAN_EVENTS => ("events", Some(payload(bytes))),
        tag::SPAN_LINKS => ("links", Some(payload(bytes))),
        tag::TRACE_STATE => ("trace_state", Some(lossy(bytes))),
        tag::OTLP_FLAGS => ("otlp_flags", bytes.try_into().ok().map(u32::from_le_bytes).map(Value::from)),
        tag::METRIC_INT => ("value", bytes.try_into().ok().map(i64::from_le_bytes).map(Value::from)),
        tag::METRIC_UNIT => ("unit", Some(lossy(bytes))),
        tag::METRIC_DESCRIPTION => ("description", Some(lossy(bytes))),
        tag::MONOTONIC => ("monotonic", one_byte(bytes).map(|b| Value::Bool(b != 0))),
        tag::EXP_HISTOGRAM => ("exponential_histogram", Some(payload(bytes))),
        tag::SUMMARY => ("summary", Some(payload(bytes))),
        tag::EXEMPLARS => ("exemplars", Some(payload(bytes))),
        tag::DROPPED => ("dropped", Some(payload(bytes))),
        tag::METADATA => ("metadata", Some(payload(bytes))),
        // Already folded into `peer`; unknown tags are skipped.
        _ => return None,
    })
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn one_byte(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b] => Some(*b),
        _ => None,
    }
}

fn u64_le(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_le_bytes)
}

fn f64_le(bytes: &[u8]) -> Option<f64> {
    bytes.try_into().ok().map(f64::from_le_bytes)
}

/// A number, or for NaN and the infinities (which JSON lacks) a string.
fn f64_json(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => "NaN".into(),
        None if v > 0.0 => "+Inf".into(),
        None => "-Inf".into(),
    }
}

/// 16 bytes as 8-4-4-4-12 hex; anything else as plain hex.
fn uuid(bytes: &[u8]) -> Value {
    if bytes.len() != 16 {
        return Value::String(hex::encode(bytes));
    }
    let h = hex::encode(bytes);
    Value::String(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// Payloads are JSON as sent by Tell SDKs; anything else is shown as text.
fn payload(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| lossy(bytes))
}

/// `count:u64 sum:f64 min:f64 max:f64 (upper:f64 count:u64)*`, little-endian.
fn histogram(bytes: &[u8]) -> Option<Value> {
    const HEAD: usize = 32;
    if bytes.len() < HEAD || !(bytes.len() - HEAD).is_multiple_of(16) {
        return None;
    }
    let word = |i: usize| -> [u8; 8] { bytes[i..i + 8].try_into().expect("8 bytes") };
    let buckets: Vec<Value> = bytes[HEAD..]
        .chunks_exact(16)
        .map(|b| {
            let upper = f64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let count = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
            Value::Array(vec![f64_json(upper), count.into()])
        })
        .collect();
    let mut m = Map::new();
    m.insert("count".into(), u64::from_le_bytes(word(0)).into());
    m.insert("sum".into(), f64_json(f64::from_le_bytes(word(8))));
    m.insert("min".into(), f64_json(f64::from_le_bytes(word(16))));
    m.insert("max".into(), f64_json(f64::from_le_bytes(word(24))));
    m.insert("buckets".into(), Value::Array(buckets));
    Some(Value::Object(m))
}

fn flags(bits: u8) -> Value {
    let mut out = Vec::new();
    if bits & flag::TRUNCATED != 0 {
        out.push(Value::from("truncated"));
    }
    if bits & flag::UNPARSED != 0 {
        out.push(Value::from("unparsed"));
    }
    Value::Array(out)
}

/// Tell `EventType` numbering.
fn event_type_name(b: u8) -> &'static str {
    match b {
        1 => "track",
        2 => "identify",
        3 => "group",
        4 => "alias",
        5 => "enrich",
        6 => "context",
        _ => "unknown",
    }
}

/// Tell `LogEventType` numbering.
fn log_type_name(b: u8) -> &'static str {
    match b {
        1 => "log",
        2 => "enrich",
        _ => "unknown",
    }
}

/// RFC 5424 severities, plus Tell's 8 = trace.
fn level_name(b: u8) -> &'static str {
    match b {
        0 => "emergency",
        1 => "alert",
        2 => "critical",
        3 => "error",
        4 => "warning",
        5 => "notice",
        6 => "info",
        7 => "debug",
        8 => "trace",
        _ => "unknown",
    }
}

/// Tell `MetricType` numbering, extended for OTLP (`codec::otlp::metrics::metric_type`).
fn metric_type_name(b: u8) -> &'static str {
    match b {
        1 => "gauge",
        2 => "counter",
        3 => "histogram",
        4 => "exponential_histogram",
        5 => "summary",
        6 => "sum",
        _ => "unknown",
    }
}

/// OTLP `SpanKind` numbering.
fn span_kind_name(b: u8) -> &'static str {
    match b {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// OTLP `Status.StatusCode` numbering.
fn status_code_name(b: u8) -> &'static str {
    match b {
        1 => "ok",
        2 => "error",
        _ => "unset",
    }
}

/// Tell `Temporality` numbering.
fn temporality_name(b: u8) -> &'static str {
    match b {
        1 => "cumulative",
        2 => "delta",
        _ => "unspecified",
    }
}

/// Adds the parsed fields of a stored syslog record to its JSON object, and
/// `unparsed` to its `flags` when parsing failed.
fn enrich_syslog(record: &Record<'_>, m: &mut Map<String, Value>) {
    let Some(raw) = record.get(tag::RAW) else { return };
    let fields = parse(raw, record.received_at_ms, record_zone(record));
    fields.insert_json(m);
    let stored = record.get_u8(tag::FLAGS).unwrap_or(0);
    let bits = if fields.parsed { stored } else { stored | flag::UNPARSED };
    if bits != 0 {
        let mut names = Vec::new();
        if bits & flag::TRUNCATED != 0 {
            names.push(Value::from("truncated"));
        }
        if bits & flag::UNPARSED != 0 {
            names.push(Value::from("unparsed"));
        }
        m.insert("flags".into(), Value::Array(names));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::BlockBuilder;
    use crate::store::reader::StoredEvent;

    fn one(b: BlockBuilder) -> serde_json::Value {
        let (block, _) = b.finish();
        let record = record::records(&block).next().unwrap().unwrap();
        let ev = StoredEvent { seq: 42, workspace: 7, listener: "tcp", chunk_peer: "1.2.3.4:5", origin: None, record };
        event_json(&ev)
    }

    #[test]
    fn event_json_tell_event() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Event, 1_700_000_000_123);
        b.u64(tag::TIMESTAMP, 1_700_000_000_000);
        b.str(tag::SERVICE, "web");
        b.bytes(tag::DEVICE_ID, &[0x12; 16]);
        b.bytes(tag::SESSION_ID, &(0u8..16).collect::<Vec<_>>());
        b.str(tag::EVENT_NAME, "Signed Up");
        b.u8(tag::EVENT_TYPE, 1);
        b.bytes(tag::PAYLOAD, br#"{"plan":"pro","n":3}"#);
        b.bytes(200, b"future tag");
        b.end();
        assert_eq!(
            one(b),
            json!({
                "seq": 42, "workspace": 7, "received_at": 1_700_000_000_123u64,
                "listener": "tcp", "peer": "1.2.3.4:5", "kind": "event",
                "timestamp": 1_700_000_000_000u64, "service": "web",
                "device_id": "12121212-1212-1212-1212-121212121212",
                "session_id": "00010203-0405-0607-0809-0a0b0c0d0e0f",
                "event_name": "Signed Up", "event_type": "track",
                "payload": {"plan": "pro", "n": 3},
            })
        );
    }

    #[test]
    fn event_json_tell_log_keeps_source() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Log, 5);
        b.u8(tag::LOG_TYPE, 1);
        b.u8(tag::LEVEL, 3);
        b.str(tag::SOURCE, "db-host-1");
        b.str(tag::SERVICE, "api");
        b.bytes(tag::PAYLOAD, b"not json \xff");
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "log");
        assert_eq!(v["log_type"], "log");
        assert_eq!(v["level"], "error");
        assert_eq!(v["source"], "db-host-1");
        assert_eq!(v["payload"], "not json \u{fffd}");
        assert_eq!(v["peer"], "1.2.3.4:5");
    }

    #[test]
    fn event_json_metric_with_histogram() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Metric, 5);
        b.str(tag::METRIC_NAME, "http.latency");
        b.f64(tag::METRIC_VALUE, 0.25);
        b.u8(tag::METRIC_TYPE, 3);
        b.u8(tag::TEMPORALITY, 2);
        b.label(b"route", b"/a");
        b.label(b"code", b"200");
        let mut h = Vec::new();
        h.extend_from_slice(&10u64.to_le_bytes());
        for v in [2.5f64, 0.1, 0.9] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for (upper, count) in [(0.5f64, 7u64), (f64::INFINITY, 3)] {
            h.extend_from_slice(&upper.to_le_bytes());
            h.extend_from_slice(&count.to_le_bytes());
        }
        b.bytes(tag::HISTOGRAM, &h);
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "metric");
        assert_eq!(v["name"], "http.latency");
        assert_eq!(v["value"], 0.25);
        assert_eq!(v["metric_type"], "histogram");
        assert_eq!(v["temporality"], "delta");
        assert_eq!(v["labels"], json!({"route": "/a", "code": "200"}));
        assert_eq!(
            v["histogram"],
            json!({"count": 10, "sum": 2.5, "min": 0.1, "max": 0.9, "buckets": [[0.5, 7], ["+Inf", 3]]})
        );
    }

    #[test]
    fn event_json_syslog_with_peer_raw_and_flags() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Syslog, 5);
        b.str(tag::PEER, "192.168.1.9:514");
        b.bytes(tag::RAW, b"<13>hello \xfe");
        b.u8(tag::LEVEL, 5);
        b.u8(tag::FLAGS, flag::TRUNCATED | flag::UNPARSED);
        b.f64(tag::METRIC_VALUE, f64::NAN);
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "syslog");
        assert_eq!(v["peer"], "192.168.1.9:514");
        assert_eq!(v["raw"], "<13>hello \u{fffd}");
        assert_eq!(v["level"], "notice");
        assert_eq!(v["flags"], json!(["truncated", "unparsed"]));
        assert_eq!(v["value"], "NaN");
        assert!(v.get("labels").is_none());
    }

    #[test]
    fn enum_names() {
        let names: Vec<_> = (0..=7).map(event_type_name).collect();
        assert_eq!(names, ["unknown", "track", "identify", "group", "alias", "enrich", "context", "unknown"]);
        assert_eq!((0..=3).map(log_type_name).collect::<Vec<_>>(), ["unknown", "log", "enrich", "unknown"]);
        let levels: Vec<_> = (0..=9).map(level_name).collect();
        assert_eq!(
            levels,
            ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "trace", "unknown"]
        );
        assert_eq!(
            (0..=7).map(metric_type_name).collect::<Vec<_>>(),
            ["unknown", "gauge", "counter", "histogram", "exponential_histogram", "summary", "sum", "unknown"]
        );
        let kinds: Vec<_> = (0..=6).map(span_kind_name).collect();
        assert_eq!(kinds, ["unspecified", "internal", "server", "client", "producer", "consumer", "unspecified"]);
        assert_eq!((0..=3).map(status_code_name).collect::<Vec<_>>(), ["unset", "ok", "error", "unset"]);
        assert_eq!(
            (0..=3).map(temporality_name).collect::<Vec<_>>(),
            ["unspecified", "cumulative", "delta", "unspecified"]
        );
    }
}
