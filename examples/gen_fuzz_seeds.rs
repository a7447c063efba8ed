//! Writes the seed corpora of the fuzz targets in `fuzz/` from real bytes:
//! batches made with `tell-encoding`, frames captured from the published
//! `tell` SDK talking to a loopback socket, a backup stream of a fresh data
//! dir, plus truncated and broken variants.
//!
//! ```text
//! cargo run --example gen_fuzz_seeds [-- OUT_DIR]      (default: fuzz/corpus)
//! ```
//!
//! Seeds are overwritten by name; stale ones are not deleted.
//!
//! Frame seeds start with the control byte `frame_decoder_input` reads
//! (piece-size seed; high bit = small frame limit), then the stream.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice::codec::frame::{ACKED_MAGIC, AckedHeader, encode_acked, encode_tell};
use sluice::codec::tell::decode_batch;
use tell_encoding::{
    BatchParams, EventParams, EventType, HistogramParams, LabelParam, LogEntryParams, LogEventType, LogLevel,
    MetricEntryParams, MetricType, SchemaType, Temporality, encode_batch, encode_event_data_into, encode_log_data_into,
    encode_metric_data_into,
};

const KEY: [u8; 16] = *b"sluice-fuzz-seed";
const DEVICE: [u8; 16] = [0xd1; 16];
const SESSION: [u8; 16] = [0x5e; 16];

fn main() {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus"));
    let mut batches = encoded_batches();
    let sdk = capture_sdk();
    for frame in split_tell_frames(&sdk) {
        let view = decode_batch(&frame).expect("the SDK's batches decode");
        batches.push((format!("sdk_{:?}", view.schema).to_lowercase(), frame));
    }
    let batches: Vec<(String, Vec<u8>)> = batches.into_iter().flat_map(with_truncations).collect();
    write_all(&root.join("batch_decoder"), &batches);
    write_all(&root.join("frame_decoder"), &frame_streams(&batches, &sdk));
    write_all(&root.join("backup_dump"), &backup_dumps());
}

/// A real backup stream of a fresh data dir (workspace 1, one streaming
/// key), whole, cut short and with one byte flipped.
fn backup_dumps() -> Vec<(String, Vec<u8>)> {
    use sluice::store::backup::Snapshot;
    use sluice::store::control::ControlStore;
    use sluice::store::query::EventsHandle;
    let dir = tempfile::tempdir().expect("temp dir");
    let control = ControlStore::open(dir.path()).expect("control store");
    control.create_key("seed", 1, "gen_fuzz_seeds").expect("a key");
    let events = EventsHandle::open(dir.path(), 1 << 20).expect("events store");
    let mut whole = Vec::new();
    Snapshot::take(&events, &control).expect("snapshot").dump(&mut whole).expect("dump");
    let mut flipped = whole.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    vec![
        ("dump_cut_last".into(), whole[..whole.len() - 1].to_vec()),
        ("dump_cut_2_3".into(), whole[..whole.len() * 2 / 3].to_vec()),
        ("dump_flipped".into(), flipped),
        ("dump_whole".into(), whole),
    ]
}

fn batch(schema_type: SchemaType, batch_id: u64, data: &[u8]) -> Vec<u8> {
    encode_batch(&BatchParams { api_key: &KEY, schema_type, version: 0, batch_id, data })
}

fn event(payload: Option<&[u8]>, full: bool) -> EventParams<'_> {
    EventParams {
        event_type: EventType::Track,
        timestamp: 1_700_000_000_000,
        service: full.then_some("checkout"),
        device_id: full.then_some(&DEVICE),
        session_id: full.then_some(&SESSION),
        event_name: full.then_some("Order Placed"),
        payload,
    }
}

fn log(full: bool) -> LogEntryParams<'static> {
    LogEntryParams {
        event_type: LogEventType::Log,
        session_id: full.then_some(&SESSION),
        level: LogLevel::Warning,
        timestamp: 1_700_000_000_001,
        source: full.then_some("web-01"),
        service: full.then_some("api"),
        payload: full.then_some(br#"{"message":"slow request","ms":812}"#),
    }
}

fn metric<'a>(labels: &'a [LabelParam<'a>], hist: Option<&'a HistogramParams>) -> MetricEntryParams<'a> {
    MetricEntryParams {
        metric_type: if hist.is_some() { MetricType::Histogram } else { MetricType::Gauge },
        timestamp: 1_700_000_000_002,
        name: "http_request_duration_seconds",
        value: 0.25,
        source: Some("server-1"),
        service: Some("api"),
        labels,
        temporality: Temporality::Cumulative,
        histogram: hist,
        session_id: hist.map(|_| &SESSION),
    }
}

fn encoded_batches() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut data = Vec::new();
    let mut add = |name: &str, schema, id, data: &[u8]| out.push((name.to_string(), batch(schema, id, data)));

    encode_event_data_into(&mut data, &[event(Some(br#"{"order":42}"#), true), event(None, false)]);
    add("event_full_and_bare", SchemaType::Event, 1, &data);
    data.clear();
    encode_event_data_into(&mut data, &[]);
    add("event_empty", SchemaType::Event, 0, &data);
    data.clear();
    encode_log_data_into(&mut data, &[log(true), log(false)]);
    add("log_full_and_bare", SchemaType::Log, 2, &data);
    data.clear();
    let hist = HistogramParams { count: 4, sum: 2.5, min: 0.1, max: 1.5, buckets: vec![(0.5, 2), (f64::INFINITY, 4)] };
    // "/api" leaves the histogram's vtable at an odd offset (see tell.rs).
    let labels = [LabelParam { key: "method", value: "GET" }, LabelParam { key: "path", value: "/api" }];
    encode_metric_data_into(&mut data, &[metric(&labels, Some(&hist)), metric(&[], None)]);
    add("metric_histogram_and_gauge", SchemaType::Metric, 3, &data);
    add("unknown_schema", SchemaType::Unknown, 4, &data);
    out
}

/// Batches that also get truncated seeds: one of each schema.
const TRUNCATE: &[&str] = &["event_full_and_bare", "log_full_and_bare", "metric_histogram_and_gauge", "sdk_metric"];

/// The batch itself, and for [`TRUNCATE`] also one byte short and cut
/// inside its payload.
fn with_truncations((name, bytes): (String, Vec<u8>)) -> Vec<(String, Vec<u8>)> {
    if !TRUNCATE.contains(&name.as_str()) {
        return vec![(name, bytes)];
    }
    let short = bytes[..bytes.len() - 1].to_vec();
    let half = bytes[..bytes.len() * 2 / 3].to_vec();
    vec![(format!("{name}_cut_last"), short), (format!("{name}_cut_2_3"), half), (name, bytes)]
}

fn frame_streams(batches: &[(String, Vec<u8>)], sdk: &[u8]) -> Vec<(String, Vec<u8>)> {
    let whole: Vec<&[u8]> = batches.iter().filter(|(n, _)| !n.contains("_cut_")).map(|(_, b)| &b[..]).collect();
    let mut mixed = Vec::new();
    for (i, b) in whole.iter().enumerate() {
        if i % 2 == 0 {
            encode_tell(b, &mut mixed);
        } else {
            encode_acked(&AckedHeader { producer: [i as u8; 16], batch_id: i as u64 }, b, &mut mixed);
        }
    }
    let with_control = |control: u8, stream: &[u8]| [&[control][..], stream].concat();
    vec![
        ("sdk_stream".into(), with_control(0x00, sdk)),
        ("sdk_stream_small_pieces".into(), with_control(0x2a, sdk)),
        ("mixed_tell_and_acked".into(), with_control(0x05, &mixed)),
        ("mixed_small_frame_limit".into(), with_control(0x85, &mixed)),
        ("mixed_cut_midway".into(), with_control(0x07, &mixed[..mixed.len() / 2])),
        ("acked_bad_version".into(), with_control(0x01, &[ACKED_MAGIC, 2, 0, 0])),
        ("impossible_length".into(), with_control(0x02, &[0x7f, 0, 0, 0, 1, 2, 3])),
    ]
}

/// Runs the published SDK against a loopback socket; returns its bytes.
fn capture_sdk() -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let reader = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("SDK connects");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut wire = Vec::new();
        let _ = stream.read_to_end(&mut wire); // EOF when the SDK closes
        wire
    });
    let key: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    let config = tell::TellConfig::builder(key)
        .endpoint(addr.to_string())
        .service("shop")
        .source("host-1")
        .enable_session()
        .build()
        .expect("config");
    let client = tell::Tell::new(config).expect("client");
    client.track("user_1", "Page Viewed", tell::props! { "url" => "/home", "n" => 3 });
    client.identify("user_1", tell::props! { "plan" => "pro" });
    client.log_error("payment failed", Some("billing"), tell::props! { "code" => 402 });
    client.log_debug("cache miss", None, tell::props! {});
    client.gauge("cpu_percent", 45.5, &[("core", "0")]);
    client.counter("requests_total", 3.0, &[]);
    let hist = tell::HistogramParams { count: 3, sum: 0.6, min: 0.1, max: 0.3, buckets: vec![(0.5, 3)] };
    client.histogram("latency", hist, &[("route", "/api/x")]);
    client.close_blocking().expect("SDK flushes");
    drop(client);
    reader.join().expect("reader")
}

/// Splits a stream of Tell frames (`len:u32be batch`) into batches.
fn split_tell_frames(mut wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some((head, rest)) = wire.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*head) as usize;
        let Some(batch) = rest.get(..len) else { break };
        out.push(batch.to_vec());
        wire = &rest[len..];
    }
    out
}

fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("create corpus dir");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("write seed");
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}
