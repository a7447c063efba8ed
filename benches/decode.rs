//! Tell batch decoding: `decode_batch` + `append_items` of one 500-event
//! batch (events of about 200 bytes on the wire, as the SDK encodes them),
//! reported in items per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::codec::tell::{append_items, decode_batch};
use sluice::record::BlockBuilder;
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

fn decode(c: &mut Criterion) {
    let batch = event_batch();
    let mut out = BlockBuilder::with_capacity(2 * batch.len());
    let mut group = c.benchmark_group("tell_decode");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(format!("{EVENTS}_events_{}B_each", batch.len() / EVENTS), |b| {
        b.iter(|| {
            out.clear();
            let view = decode_batch(black_box(&batch)).expect("valid batch");
            append_items(&view, 0, &mut out).expect("valid batch")
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
