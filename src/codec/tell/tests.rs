//! Tests of the Tell batch decoder, with real SDK bytes.

use super::*;
use crate::record::{Record, records, split_label};
use flatbuffers::{FlatBufferBuilder, WIPOffset};
use proptest::prelude::*;
use tell_encoding::{
    BatchParams, EventParams, EventType, HistogramParams, LabelParam, LogEntryParams, LogEventType, LogLevel,
    MetricEntryParams, MetricType, SchemaType, Temporality, encode_batch, encode_event_data_into, encode_log_data_into,
    encode_metric_data_into,
};

const KEY: [u8; 16] = *b"0123456789abcdef";
const DEVICE: [u8; 16] = [0xd1; 16];
const SESSION: [u8; 16] = [0x5e; 16];
const RECEIVED: u64 = 1_700_000_000_123;

fn batch(schema_type: SchemaType, batch_id: u64, data: &[u8]) -> Vec<u8> {
    encode_batch(&BatchParams { api_key: &KEY, schema_type, version: 0, batch_id, data })
}

fn events_batch(events: &[EventParams<'_>]) -> Vec<u8> {
    let mut data = Vec::new();
    encode_event_data_into(&mut data, events);
    batch(SchemaType::Event, 7, &data)
}

fn logs_batch(logs: &[LogEntryParams<'_>]) -> Vec<u8> {
    let mut data = Vec::new();
    encode_log_data_into(&mut data, logs);
    batch(SchemaType::Log, 8, &data)
}

fn metrics_batch(metrics: &[MetricEntryParams<'_>]) -> Vec<u8> {
    let mut data = Vec::new();
    encode_metric_data_into(&mut data, metrics);
    batch(SchemaType::Metric, 9, &data)
}

/// Decodes a whole batch into a fresh block.
fn decode(buf: &[u8]) -> Result<(Vec<u8>, u32), TellError> {
    let view = decode_batch(buf)?;
    let mut out = BlockBuilder::default();
    let n = append_items(&view, RECEIVED, &mut out)?;
    let (block, count) = out.finish();
    assert_eq!(n, count);
    Ok((block, count))
}

fn all(block: &[u8]) -> Vec<Record<'_>> {
    records(block).collect::<Result<_, _>>().expect("block decodes")
}

/// Every field of a record, in stored order.
fn fields(r: &Record<'_>) -> Vec<(u8, Vec<u8>)> {
    r.fields().map(|(t, v)| (t, v.to_vec())).collect()
}

fn f(tag: u8, v: impl AsRef<[u8]>) -> (u8, Vec<u8>) {
    (tag, v.as_ref().to_vec())
}

fn full_event(payload: &[u8]) -> EventParams<'_> {
    EventParams {
        event_type: EventType::Identify,
        timestamp: 1_700_000_000_000,
        service: Some("checkout"),
        device_id: Some(&DEVICE),
        session_id: Some(&SESSION),
        event_name: Some("Order Placed"),
        payload: Some(payload),
    }
}

#[test]
fn envelope_fields_and_sdk_defaults() {
    let view_buf = events_batch(&[]);
    let view = decode_batch(&view_buf).unwrap();
    assert_eq!(view.api_key, KEY);
    assert_eq!(view.schema, Schema::Event);
    assert_eq!(view.version, tell_encoding::DEFAULT_VERSION, "encoder turns version 0 into 100");
    assert_eq!(view.batch_id, 7);
    // The encoder omits batch_id when it is 0; absent reads as 0.
    let no_id = batch(SchemaType::Log, 0, b"xyz");
    let view = decode_batch(&no_id).unwrap();
    assert_eq!((view.batch_id, view.schema, view.data), (0, Schema::Log, &b"xyz"[..]));
}

#[test]
fn batch_id_is_read_despite_4_byte_alignment() {
    // tell-encoding puts batch_id at offset 36 (4 mod 8): the stock u64
    // verifier would refuse every SDK batch that has an id.
    let buf = batch(SchemaType::Event, u64::MAX - 1, &[]);
    assert_eq!(decode_batch(&buf).unwrap().batch_id, u64::MAX - 1);
}

#[test]
fn events_with_every_field() {
    let payload = br#"{"order":42,"total":19.99}"#;
    let mut second = full_event(b"{}");
    second.event_type = EventType::Track;
    second.timestamp = 1;
    let buf = events_batch(&[full_event(payload), second]);
    let (block, count) = decode(&buf).unwrap();
    assert_eq!(count, 2);
    let recs = all(&block);
    assert_eq!((recs[0].kind, recs[0].received_at_ms), (Kind::Event, RECEIVED));
    assert_eq!(
        fields(&recs[0]),
        vec![
            f(tag::TIMESTAMP, 1_700_000_000_000u64.to_le_bytes()),
            f(tag::SERVICE, "checkout"),
            f(tag::DEVICE_ID, DEVICE),
            f(tag::SESSION_ID, SESSION),
            f(tag::EVENT_NAME, "Order Placed"),
            f(tag::PAYLOAD, payload),
            f(tag::EVENT_TYPE, [EventType::Identify as u8]),
        ]
    );
    assert_eq!(recs[1].get_u64(tag::TIMESTAMP), Some(1));
    assert_eq!(recs[1].get_u8(tag::EVENT_TYPE), Some(EventType::Track as u8));
    assert_eq!(recs[1].get(tag::PAYLOAD), Some(&b"{}"[..]));
}

#[test]
fn events_with_optional_fields_absent() {
    let bare = EventParams {
        event_type: EventType::Unknown,
        timestamp: 0,
        service: None,
        device_id: None,
        session_id: None,
        event_name: None,
        payload: None,
    };
    let (block, _) = decode(&events_batch(&[bare])).unwrap();
    let recs = all(&block);
    assert_eq!(fields(&recs[0]), vec![f(tag::TIMESTAMP, 0u64.to_le_bytes()), f(tag::EVENT_TYPE, [0])]);
}

#[test]
fn empty_strings_and_vectors_are_present_fields() {
    let mut event = full_event(b"");
    event.service = Some("");
    event.event_name = Some("");
    let (block, _) = decode(&events_batch(&[event])).unwrap();
    let recs = all(&block);
    assert_eq!(recs[0].get(tag::SERVICE), Some(&b""[..]));
    assert_eq!(recs[0].get(tag::EVENT_NAME), Some(&b""[..]));
    assert_eq!(recs[0].get(tag::PAYLOAD), Some(&b""[..]));
}

#[test]
fn logs_with_every_field_and_with_none() {
    let full = LogEntryParams {
        event_type: LogEventType::Enrich,
        session_id: Some(&SESSION),
        level: LogLevel::Warning,
        timestamp: 1_700_000_000_555,
        source: Some("web-01"),
        service: Some("api"),
        payload: Some(br#"{"message":"slow"}"#),
    };
    let bare = LogEntryParams {
        event_type: LogEventType::Unknown,
        session_id: None,
        level: LogLevel::Emergency,
        timestamp: 3,
        source: None,
        service: None,
        payload: None,
    };
    let (block, count) = decode(&logs_batch(&[full, bare])).unwrap();
    assert_eq!(count, 2);
    let recs = all(&block);
    assert_eq!(recs[0].kind, Kind::Log);
    assert_eq!(
        fields(&recs[0]),
        vec![
            f(tag::TIMESTAMP, 1_700_000_000_555u64.to_le_bytes()),
            f(tag::SESSION_ID, SESSION),
            f(tag::LEVEL, [LogLevel::Warning as u8]),
            f(tag::SOURCE, "web-01"),
            f(tag::SERVICE, "api"),
            f(tag::PAYLOAD, br#"{"message":"slow"}"#),
            f(tag::LOG_TYPE, [LogEventType::Enrich as u8]),
        ]
    );
    assert_eq!(
        fields(&recs[1]),
        vec![f(tag::TIMESTAMP, 3u64.to_le_bytes()), f(tag::LEVEL, [0]), f(tag::LOG_TYPE, [0])]
    );
}

fn histogram_bytes(h: &HistogramParams) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&h.count.to_le_bytes());
    v.extend_from_slice(&h.sum.to_le_bytes());
    v.extend_from_slice(&h.min.to_le_bytes());
    v.extend_from_slice(&h.max.to_le_bytes());
    for (upper, count) in &h.buckets {
        v.extend_from_slice(&upper.to_le_bytes());
        v.extend_from_slice(&count.to_le_bytes());
    }
    v
}

fn label_field(key: &str, value: &str) -> (u8, Vec<u8>) {
    let mut b = BlockBuilder::default();
    b.begin(Kind::Metric, 0);
    b.label(key.as_bytes(), value.as_bytes());
    b.end();
    let (block, _) = b.finish();
    let recs = all(&block);
    fields(&recs[0]).remove(0)
}

#[test]
fn metrics_with_every_field() {
    let hist = HistogramParams {
        count: 1000,
        sum: 45.5,
        min: 0.0001,
        max: 2.3,
        buckets: vec![(0.01, 300), (1.0, 998), (f64::INFINITY, 1000)],
    };
    let labels = [LabelParam { key: "method", value: "GET" }, LabelParam { key: "path", value: "/api" }];
    let metric = MetricEntryParams {
        metric_type: MetricType::Histogram,
        timestamp: 1_749_587_340_000_000_000,
        name: "http_request_duration_seconds",
        value: -1.5,
        source: Some("server-1"),
        service: Some("api"),
        labels: &labels,
        temporality: Temporality::Delta,
        histogram: Some(&hist),
        session_id: Some(&SESSION),
    };
    // "/api" ends at an odd offset, and tell-encoding writes the
    // histogram's vtable right there: the stock verifier refuses that.
    let (block, _) = decode(&metrics_batch(&[metric])).unwrap();
    let recs = all(&block);
    assert_eq!(recs[0].kind, Kind::Metric);
    assert_eq!(
        fields(&recs[0]),
        vec![
            f(tag::TIMESTAMP, 1_749_587_340_000_000_000u64.to_le_bytes()),
            f(tag::METRIC_NAME, "http_request_duration_seconds"),
            f(tag::METRIC_VALUE, (-1.5f64).to_le_bytes()),
            f(tag::SOURCE, "server-1"),
            f(tag::SERVICE, "api"),
            label_field("method", "GET"),
            label_field("path", "/api"),
            f(tag::METRIC_TYPE, [MetricType::Histogram as u8]),
            f(tag::TEMPORALITY, [Temporality::Delta as u8]),
            f(tag::SESSION_ID, SESSION),
            f(tag::HISTOGRAM, histogram_bytes(&hist)),
        ]
    );
    let labels: Vec<_> =
        recs[0].fields().filter(|(t, _)| *t == tag::LABEL).map(|(_, v)| split_label(v).unwrap()).collect();
    assert_eq!(labels, vec![(&b"method"[..], &b"GET"[..]), (&b"path"[..], &b"/api"[..])]);
}

#[test]
fn metrics_with_optional_fields_absent() {
    let empty_hist = HistogramParams { count: 0, sum: 0.0, min: 0.0, max: 0.0, buckets: vec![] };
    let gauge = |histogram| MetricEntryParams {
        metric_type: MetricType::Gauge,
        timestamp: 5,
        name: "cpu",
        value: 0.25,
        source: None,
        service: None,
        labels: &[],
        temporality: Temporality::Unspecified,
        histogram,
        session_id: None,
    };
    let (block, count) = decode(&metrics_batch(&[gauge(None), gauge(Some(&empty_hist))])).unwrap();
    assert_eq!(count, 2);
    let recs = all(&block);
    let base = vec![
        f(tag::TIMESTAMP, 5u64.to_le_bytes()),
        f(tag::METRIC_NAME, "cpu"),
        f(tag::METRIC_VALUE, 0.25f64.to_le_bytes()),
        f(tag::METRIC_TYPE, [MetricType::Gauge as u8]),
        f(tag::TEMPORALITY, [0]),
    ];
    assert_eq!(fields(&recs[0]), base);
    let mut with_hist = base;
    with_hist.push(f(tag::HISTOGRAM, [0u8; 32]));
    assert_eq!(fields(&recs[1]), with_hist);
}

#[test]
fn appends_after_existing_records_and_counts_only_its_own() {
    let mut out = BlockBuilder::default();
    out.begin(Kind::Syslog, 1);
    out.bytes(tag::RAW, b"earlier");
    out.end();
    let buf = events_batch(&[full_event(b"{}"), full_event(b"[]"), full_event(b"0")]);
    let n = append_items(&decode_batch(&buf).unwrap(), RECEIVED, &mut out).unwrap();
    assert_eq!((n, out.count()), (3, 4));
    let (block, _) = out.finish();
    let kinds: Vec<_> = all(&block).iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![Kind::Syslog, Kind::Event, Kind::Event, Kind::Event]);
}

#[test]
fn empty_batch_appends_nothing() {
    assert_eq!(decode(&events_batch(&[])).unwrap().1, 0);
    assert_eq!(decode(&logs_batch(&[])).unwrap().1, 0);
    assert_eq!(decode(&metrics_batch(&[])).unwrap().1, 0);
}

#[test]
fn unknown_schema_is_refused_and_leaves_block_alone() {
    let mut data = Vec::new();
    encode_event_data_into(&mut data, &[full_event(b"{}")]);
    let buf = batch(SchemaType::Unknown, 1, &data);
    let view = decode_batch(&buf).unwrap();
    assert_eq!(view.schema, Schema::Other(0));
    let mut out = BlockBuilder::default();
    let err = append_items(&view, RECEIVED, &mut out).unwrap_err();
    assert!(matches!(err, TellError::UnsupportedSchema { schema: 0 }));
    assert_eq!((out.count(), out.len_bytes()), (0, 0));
}

#[test]
fn schema_round_trips_through_u8() {
    for b in 0..=u8::MAX {
        assert_eq!(Schema::from_u8(b).as_u8(), b);
    }
}

/// Builds a Batch with flatc's own builder (aligned, shared vtables).
fn flatc_batch(key: &[u8], schema: u8, data: &[u8]) -> Vec<u8> {
    let mut b = FlatBufferBuilder::new();
    let key = b.create_vector(key);
    let data = b.create_vector(data);
    let start = b.start_table();
    b.push_slot_always::<WIPOffset<_>>(slot(0), key);
    b.push_slot::<u8>(slot(1), schema, 0);
    b.push_slot::<u8>(slot(2), 100, 0);
    b.push_slot::<u64>(slot(3), 77, 0);
    b.push_slot_always::<WIPOffset<_>>(slot(4), data);
    let root = b.end_table(start);
    b.finish_minimal(root);
    b.finished_data().to_vec()
}

fn slot(id: u16) -> u16 {
    4 + 2 * id
}

/// EventData with `n` slots that all point at one event table.
fn flatc_events(name: &[u8], payload: &[u8], n: usize) -> Vec<u8> {
    let mut b = FlatBufferBuilder::new();
    let name = b.create_byte_string(name);
    let payload = b.create_vector(payload);
    let start = b.start_table();
    b.push_slot::<u64>(slot(1), 99, 0);
    b.push_slot_always::<WIPOffset<_>>(slot(5), name);
    b.push_slot_always::<WIPOffset<_>>(slot(6), payload);
    b.push_slot::<u8>(slot(0), 1, 0);
    let event = b.end_table(start);
    let events = b.create_vector(&vec![event; n]);
    let start = b.start_table();
    b.push_slot_always::<WIPOffset<_>>(slot(0), events);
    let root = b.end_table(start);
    b.finish_minimal(root);
    b.finished_data().to_vec()
}

#[test]
fn flatc_built_batches_decode_and_invalid_utf8_is_kept() {
    let name = b"caf\xc3\xa9 \xff\xfe";
    let buf = flatc_batch(&KEY, 1, &flatc_events(name, b"{}", 2));
    let view = decode_batch(&buf).unwrap();
    assert_eq!((view.version, view.batch_id), (100, 77));
    let (block, count) = decode(&buf).unwrap();
    assert_eq!(count, 2);
    let recs = all(&block);
    assert_eq!(recs[1].get(tag::EVENT_NAME), Some(&name[..]));
    assert_eq!(recs[1].get_u64(tag::TIMESTAMP), Some(99));
    assert_eq!(recs[1].get_u8(tag::EVENT_TYPE), Some(1));
}

#[test]
fn wrong_key_length_is_refused() {
    for len in [0, 15, 17, 32] {
        let buf = flatc_batch(&vec![1u8; len], 1, &flatc_events(b"e", b"", 1));
        assert!(matches!(decode_batch(&buf), Err(TellError::BadKeyLength { len: l }) if l == len));
    }
}

#[test]
fn missing_required_fields_are_refused() {
    let mut b = FlatBufferBuilder::new();
    let key = b.create_vector(&KEY);
    let start = b.start_table();
    b.push_slot_always::<WIPOffset<_>>(slot(0), key);
    let root = b.end_table(start);
    b.finish_minimal(root);
    let err = decode_batch(b.finished_data()).unwrap_err();
    assert!(matches!(err, TellError::Malformed { part: Part::Envelope, .. }), "{err}");
    // EventData without its events vector.
    let mut b = FlatBufferBuilder::new();
    let start = b.start_table();
    let root = b.end_table(start);
    b.finish_minimal(root);
    let buf = flatc_batch(&KEY, 1, b.finished_data());
    let err = decode(&buf).unwrap_err();
    assert!(matches!(err, TellError::Malformed { part: Part::Data, .. }), "{err}");
}

#[test]
fn offsets_that_repeat_the_same_bytes_hit_the_apparent_size_limit() {
    // 20k slots pointing at one 4 KiB payload: ~80 KiB of input that
    // would expand to ~80 MiB of records.
    let data = flatc_events(b"e", &[b'x'; 4096], 20_000);
    assert!(data.len() < 100_000);
    let buf = flatc_batch(&KEY, 1, &data);
    let mut out = BlockBuilder::default();
    let err = append_items(&decode_batch(&buf).unwrap(), RECEIVED, &mut out).unwrap_err();
    let TellError::Malformed { source, .. } = err else { panic!("{err}") };
    assert!(matches!(source, Malformed::TooMuchWork), "{source}");
    assert_eq!(out.count(), 0);
}

#[test]
fn a_16_mib_batch_of_100k_events_is_within_limits() {
    let payload = br#"{"n":12345678901234}"#;
    let events: Vec<_> = (0..100_000).map(|_| full_event(payload)).collect();
    let buf = events_batch(&events);
    assert!(buf.len() < 16 << 20, "{}", buf.len());
    assert_eq!(decode(&buf).unwrap().1, 100_000);
}

#[test]
fn label_and_bucket_heavy_metrics_are_within_limits() {
    // Labels and buckets are the tables with the most read work per
    // input byte (about 1.05× and 1.3×).
    let keys: Vec<String> = (0..5000).map(|i| format!("k{}", i % 7)).collect();
    let labels: Vec<_> = keys.iter().map(|k| LabelParam { key: k, value: "" }).collect();
    let buckets = (0..20_000).map(|i| (f64::from(i), 0)).collect();
    let hist = HistogramParams { count: 1, sum: 1.0, min: 1.0, max: 1.0, buckets };
    let metric = MetricEntryParams {
        metric_type: MetricType::Histogram,
        timestamp: 1,
        name: "",
        value: 0.0,
        source: None,
        service: None,
        labels: &labels,
        temporality: Temporality::Delta,
        histogram: Some(&hist),
        session_id: None,
    };
    let (block, _) = decode(&metrics_batch(&[metric])).unwrap();
    let recs = all(&block);
    assert_eq!(recs[0].fields().filter(|(t, _)| *t == tag::LABEL).count(), 5000);
    assert_eq!(recs[0].get(tag::HISTOGRAM).map(<[u8]>::len), Some(32 + 16 * 20_000));
}

/// One sample of each schema, with every field set.
fn samples() -> Vec<Vec<u8>> {
    let hist = HistogramParams { count: 2, sum: 3.0, min: 1.0, max: 2.0, buckets: vec![(1.0, 1), (2.0, 2)] };
    let labels = [LabelParam { key: "k", value: "v" }];
    let metric = MetricEntryParams {
        metric_type: MetricType::Counter,
        timestamp: 9,
        name: "n",
        value: 1.0,
        source: Some("s"),
        service: Some("svc"),
        labels: &labels,
        temporality: Temporality::Cumulative,
        histogram: Some(&hist),
        session_id: Some(&SESSION),
    };
    let log = LogEntryParams {
        event_type: LogEventType::Log,
        session_id: Some(&SESSION),
        level: LogLevel::Info,
        timestamp: 4,
        source: Some("src"),
        service: Some("svc"),
        payload: Some(b"{}"),
    };
    vec![events_batch(&[full_event(b"{\"a\":1}")]), logs_batch(&[log]), metrics_batch(&[metric])]
}

/// Decodes `buf` into a block that already holds a record and checks the
/// all-or-nothing contract either way.
fn check_all_or_nothing(buf: &[u8]) -> bool {
    let mut out = BlockBuilder::default();
    out.begin(Kind::Log, 1);
    out.bytes(tag::PAYLOAD, b"before");
    out.end();
    let before = (out.count(), out.len_bytes());
    let result = decode_batch(buf).and_then(|view| append_items(&view, RECEIVED, &mut out));
    match result {
        Ok(n) => {
            assert_eq!(out.count(), before.0 + n);
            let (block, _) = out.finish();
            assert_eq!(records(&block).filter(|r| r.is_ok()).count() as u32, before.0 + n);
            true
        }
        Err(_) => {
            assert_eq!((out.count(), out.len_bytes()), before);
            false
        }
    }
}

#[test]
fn every_prefix_of_a_valid_batch_errors_without_panicking() {
    for buf in samples() {
        assert!(check_all_or_nothing(&buf));
        for cut in 0..buf.len() {
            // `data` is the last thing in the buffer: any cut reaches it.
            assert!(!check_all_or_nothing(&buf[..cut]), "prefix {cut} of {} decoded", buf.len());
        }
    }
}

#[test]
fn every_prefix_of_the_payload_errors_or_decodes_without_panicking() {
    for buf in samples() {
        let view = decode_batch(&buf).unwrap();
        for cut in 0..view.data.len() {
            let short = BatchView { data: &view.data[..cut], ..view };
            let mut out = BlockBuilder::default();
            if append_items(&short, RECEIVED, &mut out).is_err() {
                assert_eq!((out.count(), out.len_bytes()), (0, 0));
            }
        }
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
fn rng(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_byte_flips_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let mut decoded = 0;
    for buf in samples() {
        for _ in 0..3000 {
            let mut bad = buf.clone();
            for _ in 0..=rng(&mut state) % 3 {
                let at = (rng(&mut state) % bad.len() as u64) as usize;
                bad[at] ^= 1 << (rng(&mut state) % 8);
            }
            decoded += usize::from(check_all_or_nothing(&bad));
        }
    }
    // Many flips land in payload bytes and still decode.
    assert!(decoded > 0);
}

fn opt(tag: u8, v: Option<impl AsRef<[u8]>>) -> Option<(u8, Vec<u8>)> {
    v.map(|v| f(tag, v))
}

proptest! {
    #[test]
    fn any_sdk_event_round_trips(
        kind in 0u8..7,
        timestamp: u64,
        service in prop::option::of(".{0,9}"),
        device: Option<[u8; 16]>,
        session: Option<[u8; 16]>,
        name in prop::option::of(".{0,9}"),
        payload in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        use EventType::*;
        let event_type = [Unknown, Track, Identify, Group, Alias, Enrich, Context][usize::from(kind)];
        let params = EventParams {
            event_type,
            timestamp,
            service: service.as_deref(),
            device_id: device.as_ref(),
            session_id: session.as_ref(),
            event_name: name.as_deref(),
            payload: payload.as_deref(),
        };
        let (block, _) = decode(&events_batch(&[params])).unwrap();
        let expected: Vec<_> = [
            Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
            opt(tag::SERVICE, service),
            opt(tag::DEVICE_ID, device),
            opt(tag::SESSION_ID, session),
            opt(tag::EVENT_NAME, name),
            opt(tag::PAYLOAD, payload),
            Some(f(tag::EVENT_TYPE, [kind])),
        ]
        .into_iter()
        .flatten()
        .collect();
        prop_assert_eq!(fields(&all(&block)[0]), expected);
    }

    #[test]
    fn any_sdk_log_round_trips(
        level in 0u8..9,
        timestamp: u64,
        session: Option<[u8; 16]>,
        source in prop::option::of(".{0,9}"),
        service in prop::option::of(".{0,9}"),
        payload in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        use LogLevel::*;
        let levels = [Emergency, Alert, Critical, Error, Warning, Notice, Info, Debug, Trace];
        let params = LogEntryParams {
            event_type: LogEventType::Log,
            session_id: session.as_ref(),
            level: levels[usize::from(level)],
            timestamp,
            source: source.as_deref(),
            service: service.as_deref(),
            payload: payload.as_deref(),
        };
        let (block, _) = decode(&logs_batch(&[params])).unwrap();
        let expected: Vec<_> = [
            Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
            opt(tag::SESSION_ID, session),
            Some(f(tag::LEVEL, [level])),
            opt(tag::SOURCE, source),
            opt(tag::SERVICE, service),
            opt(tag::PAYLOAD, payload),
            Some(f(tag::LOG_TYPE, [LogEventType::Log as u8])),
        ]
        .into_iter()
        .flatten()
        .collect();
        prop_assert_eq!(fields(&all(&block)[0]), expected);
    }

    /// Random string lengths move every table and vtable around, which
    /// is how the unaligned histogram vtable shows up.
    #[test]
    fn any_sdk_metric_round_trips(
        name in ".{0,9}",
        value: f64,
        timestamp: u64,
        source in prop::option::of(".{0,9}"),
        service in prop::option::of(".{0,9}"),
        labels in prop::collection::vec((".{0,7}", ".{0,7}"), 0..4),
        hist in prop::option::of((any::<(u64, f64, f64, f64)>(), prop::collection::vec(any::<(f64, u64)>(), 0..4))),
        session: Option<[u8; 16]>,
    ) {
        let label_params: Vec<_> = labels.iter().map(|(k, v)| LabelParam { key: k, value: v }).collect();
        let hist = hist.map(|((count, sum, min, max), buckets)| HistogramParams { count, sum, min, max, buckets });
        let params = |labels| MetricEntryParams {
            metric_type: MetricType::Gauge,
            timestamp,
            name: &name,
            value,
            source: source.as_deref(),
            service: service.as_deref(),
            labels,
            temporality: Temporality::Cumulative,
            histogram: hist.as_ref(),
            session_id: session.as_ref(),
        };
        // Two entries, so the second starts wherever the first ended.
        let (block, _) = decode(&metrics_batch(&[params(&label_params), params(&[])])).unwrap();
        let mut expected: Vec<_> = [
            Some(f(tag::TIMESTAMP, timestamp.to_le_bytes())),
            Some(f(tag::METRIC_NAME, &name)),
            Some(f(tag::METRIC_VALUE, value.to_le_bytes())),
            opt(tag::SOURCE, source),
            opt(tag::SERVICE, service),
        ]
        .into_iter()
        .flatten()
        .collect();
        expected.extend(labels.iter().map(|(k, v)| label_field(k, v)));
        expected.push(f(tag::METRIC_TYPE, [MetricType::Gauge as u8]));
        expected.push(f(tag::TEMPORALITY, [Temporality::Cumulative as u8]));
        expected.extend(opt(tag::SESSION_ID, session));
        expected.extend(hist.as_ref().map(|h| f(tag::HISTOGRAM, histogram_bytes(h))));
        let recs = all(&block);
        prop_assert_eq!(recs.len(), 2);
        prop_assert_eq!(fields(&recs[0]), expected);
    }
}

/// Runs the published `tell` SDK against a loopback socket and returns
/// the bytes it wrote.
fn capture_sdk(drive: impl FnOnce(&tell::Tell)) -> Vec<u8> {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        let mut wire = Vec::new();
        // EOF once the SDK closes; a timeout just ends the capture.
        let _ = stream.read_to_end(&mut wire);
        wire
    });
    let config = tell::TellConfig::builder(hex_key())
        .endpoint(addr.to_string())
        .service("shop")
        .source("host-1")
        .build()
        .unwrap();
    let client = tell::Tell::new(config).unwrap();
    drive(&client);
    client.close_blocking().unwrap();
    drop(client);
    reader.join().unwrap()
}

fn hex_key() -> String {
    KEY.iter().map(|b| format!("{b:02x}")).collect()
}

/// Splits a captured stream into frames and decodes every batch.
fn decode_stream(wire: &[u8]) -> Vec<(Schema, Vec<u8>)> {
    use crate::codec::frame::{Frame, FrameDecoder};
    use tokio_util::codec::Decoder;
    let mut buf = bytes::BytesMut::from(wire);
    let mut decoder = FrameDecoder::new(crate::codec::frame::DEFAULT_MAX_FRAME);
    let mut batches = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
        let Frame::Tell { batch } = frame else { panic!("SDK sent {frame:?}") };
        let view = decode_batch(&batch).unwrap();
        assert_eq!((view.api_key, view.version), (KEY, 100));
        assert_ne!(view.batch_id, 0, "the SDK numbers its batches from 1");
        batches.push((view.schema, decode(&batch).unwrap().0));
    }
    assert!(buf.is_empty(), "{} trailing bytes", buf.len());
    batches
}

#[test]
fn real_sdk_bytes_decode() {
    let wire = capture_sdk(|client| {
        client.track("user_1", "Page Viewed", tell::props! { "url" => "/home" });
        client.log_info("Request handled", Some("http"), tell::props! { "status" => 200 });
        client.gauge("cpu_percent", 45.5, &[("core", "0")]);
        let hist = tell::HistogramParams { count: 3, sum: 0.6, min: 0.1, max: 0.3, buckets: vec![(0.5, 3)] };
        client.histogram("latency", hist, &[("route", "/api/x")]);
    });
    let batches = decode_stream(&wire);
    let find = |schema| batches.iter().find(|(s, _)| *s == schema).map(|(_, b)| b).expect("batch of schema");
    let events = find(Schema::Event);
    let event = &all(events)[0];
    assert_eq!(event.get(tag::EVENT_NAME), Some(&b"Page Viewed"[..]));
    assert_eq!(event.get(tag::SERVICE), Some(&b"shop"[..]));
    assert_eq!(event.get(tag::DEVICE_ID).map(<[u8]>::len), Some(16));
    assert_eq!(event.get_u8(tag::EVENT_TYPE), Some(EventType::Track as u8));
    assert!(event.get(tag::PAYLOAD).is_some_and(|p| p.windows(5).any(|w| w == b"/home")));
    let logs = find(Schema::Log);
    let log = &all(logs)[0];
    assert_eq!(log.get(tag::SOURCE), Some(&b"http"[..]));
    assert_eq!(log.get_u8(tag::LEVEL), Some(LogLevel::Info as u8));
    let metrics = find(Schema::Metric);
    let metrics = all(metrics);
    let latency = metrics.iter().find(|m| m.get(tag::METRIC_NAME) == Some(b"latency")).unwrap();
    assert_eq!(latency.get(tag::SOURCE), Some(&b"host-1"[..]));
    assert_eq!(latency.get(tag::HISTOGRAM).map(<[u8]>::len), Some(32 + 16));
    assert_eq!(latency.get(tag::LABEL).and_then(split_label), Some((&b"route"[..], &b"/api/x"[..])));
}

#[test]
fn the_key_of_a_real_batch_is_read_from_its_first_bytes() {
    let data = vec![7u8; 100_000];
    let bytes = batch(SchemaType::Event, 9, &data);
    let needed = (1..=bytes.len()).find(|&n| peek_api_key(&bytes[..n]).is_some()).unwrap();
    assert!(needed <= KEY_PREFIX_BYTES, "the key is near the start: {needed} bytes");
    assert_eq!(peek_api_key(&bytes[..needed]), Some(KEY));
    assert_eq!(peek_api_key(&bytes), Some(decode_batch(&bytes).unwrap().api_key));
    assert_eq!(peek_api_key(&bytes[..needed - 1]), None);
}

proptest! {
    #[test]
    fn peeking_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = peek_api_key(&bytes);
    }
}
