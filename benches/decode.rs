//! The per-frame work of the acked path, in items per second:
//!
//! - `tell_decode`: `decode_batch` + `append_items` of one 500-event batch,
//!   events of about 200 bytes on the wire as the SDK encodes them: one
//!   repeated payload, and the `sluice bench` workload's distinct ones;
//! - `chunk_encode`: that workload batch's records encoded as one stored
//!   chunk (zstd), what `ChunkBuilder::seal` does per frame. The ratio of
//!   chunk to wire bytes is printed once;
//! - `jsonl_decode`: one 500-line `POST /v1/events` body of the `sluice
//!   bench http` workload (the same events as JSON lines) into records.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::cli::bench::workload::{Generator, Pool};
use sluice::codec::jsonl::{JsonlDecoder, Stream};
use sluice::codec::tell::{append_items, decode_batch};
use sluice::record::BlockBuilder;
use sluice::store::chunk::{ChunkMeta, encode};
use tell_encoding::{BatchParams, EventParams, EventType, SchemaType, encode_batch, encode_event_data_into};

const EVENTS: usize = 500;
/// With this payload every encoded event is 200 bytes.
const PAYLOAD: &[u8] = br#"{"user_id":"user_12345","url":"/products/42","ref":"search"}"#;

fn event_batch() -> Vec<u8> {
    let device = [0x11; 16];
    let session = [0x22; 16];
    let events: Vec<_> = (0..EVENTS)
        .map(|i| EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000 + i as u64,
            service: Some("checkout"),
            device_id: Some(&device),
            session_id: Some(&session),
            event_name: Some("Page Viewed"),
            payload: Some(PAYLOAD),
        })
        .collect();
    let mut data = Vec::new();
    encode_event_data_into(&mut data, &events);
    encode_batch(&BatchParams {
        api_key: &[7; 16],
        schema_type: SchemaType::Event,
        version: 0,
        batch_id: 1,
        data: &data,
    })
}

/// A batch of the `sluice bench tcp` workload: distinct, realistic payloads
/// from a fixed seed.
fn workload_batch() -> Vec<u8> {
    let mut generator = Generator::new(std::sync::Arc::new(Pool::new(200, 42)), 7);
    let mut batch = Vec::new();
    generator.batch_into(&mut batch, &[7; 16], 1, EVENTS);
    batch
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("tell_decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    for (name, batch) in [("repeated", event_batch()), ("workload", workload_batch())] {
        let mut out = BlockBuilder::with_capacity(2 * batch.len());
        group.bench_function(format!("{EVENTS}_events_{}B_each_{name}", batch.len() / EVENTS), |b| {
            b.iter(|| {
                out.clear();
                let view = decode_batch(black_box(&batch)).expect("valid batch");
                append_items(&view, 0, &mut out).expect("valid batch")
            })
        });
    }
    group.finish();
}

fn chunk_encode(c: &mut Criterion) {
    let batch = workload_batch();
    let mut block = BlockBuilder::with_capacity(2 * batch.len());
    append_items(&decode_batch(&batch).expect("valid batch"), 0, &mut block).expect("valid batch");
    let (records, count) = block.finish();
    let meta = ChunkMeta { listener: "tcp", peer: "127.0.0.1:40000", count, min_received_ms: 0, max_received_ms: 0 };
    let chunk = encode(&meta, &records);
    eprintln!(
        "chunk_encode: {} wire bytes, {} record bytes, {} chunk bytes ({:.2} of the wire)",
        batch.len(),
        records.len(),
        chunk.len(),
        chunk.len() as f64 / batch.len() as f64
    );
    let mut group = c.benchmark_group("chunk_encode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(format!("{EVENTS}_workload_events"), |b| {
        b.iter(|| encode(black_box(&meta), black_box(&records)))
    });
    group.finish();
}

fn jsonl_decode(c: &mut Criterion) {
    let mut generator = Generator::new(std::sync::Arc::new(Pool::new(200, 42)), 7);
    let mut body = Vec::new();
    generator.jsonl_into(&mut body, EVENTS);
    let mut decoder = JsonlDecoder::new(Stream::Events, EVENTS);
    let mut out = BlockBuilder::with_capacity(2 * body.len());
    let mut group = c.benchmark_group("jsonl_decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(format!("{EVENTS}_workload_lines_{}B_each", body.len() / EVENTS), |b| {
        b.iter(|| {
            out.clear();
            decoder.decode(black_box(&body), 0, false, &mut out).expect("valid body")
        })
    });
    group.finish();
}

criterion_group!(benches, decode, chunk_encode, jsonl_decode);
criterion_main!(benches);
