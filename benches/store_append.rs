//! Store append: chunks of 500 events through the pipeline into the writer
//! thread, each group committed durably. Measures events committed per second
//! with the real fsync, on the disk the temp dir lives on.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::metrics::Metrics;
use sluice::pipeline::{Batch, Outcome, Pipeline};
use sluice::record::{BlockBuilder, Kind, tag};
use sluice::store::chunk::{self, ChunkMeta};
use sluice::store::writer::{Writer, WriterConfig};

const EVENTS: u32 = 500;
const BATCHES: usize = 64;

fn chunk_of_events(n: u32, salt: u64) -> Vec<u8> {
    let mut b = BlockBuilder::default();
    for i in 0..n {
        b.begin(Kind::Event, 1_700_000_000_000);
        b.u64(tag::TIMESTAMP, 1_700_000_000_000 + u64::from(i));
        b.str(tag::EVENT_NAME, "Page Viewed");
        b.bytes(tag::DEVICE_ID, &(salt ^ u64::from(i)).to_le_bytes().repeat(2));
        let payload = format!(
            "{{\"url\":\"/pricing/{i}\",\"referrer\":\"https://news.example/{salt}\",\"plan\":\"team\",\"amount\":{},\"ok\":true}}",
            salt.wrapping_mul(u64::from(i) + 7) % 10_000
        );
        b.bytes(tag::PAYLOAD, payload.as_bytes());
        b.end();
    }
    let meta = ChunkMeta { listener: "tcp", peer: "127.0.0.1:1", count: n, min_received_ms: 1, max_received_ms: 1 };
    chunk::encode(&meta, b.finished())
}

fn store_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (pipeline, rx) = Pipeline::new(256 << 20);
    let config = WriterConfig::new(dir.path().join("events.redb"), 32 << 20, Duration::from_secs(900), 16 << 20);
    let writer = Writer::spawn(config, rx, Arc::new(Metrics::default())).expect("writer");
    let chunks: Vec<Vec<u8>> = (0..BATCHES as u64).map(|s| chunk_of_events(EVENTS, s)).collect();

    let mut group = c.benchmark_group("store_append");
    group.throughput(Throughput::Elements(u64::from(EVENTS) * BATCHES as u64));
    group.sample_size(20);
    group.bench_function("64x500_events", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let mut waits = Vec::with_capacity(BATCHES);
                for chunk in &chunks {
                    let permit = pipeline.reserve(chunk.len()).await;
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let batch = Batch {
                        workspace: 1,
                        count: EVENTS,
                        chunk: chunk.clone(),
                        dedup: None,
                        relayed: None,
                        reply: Some(tx),
                        permit,
                        submitted: std::time::Instant::now(),
                    };
                    pipeline.submit(batch).expect("writer running");
                    waits.push(rx);
                }
                for w in waits {
                    assert!(matches!(w.await, Ok(Outcome::Stored { .. })));
                }
            })
        })
    });
    group.finish();
    drop(pipeline);
    writer.join();
}

criterion_group!(benches, store_append);
criterion_main!(benches);
