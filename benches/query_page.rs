//! First page of `GET /api/v1/events` queries on a large store: 10M events
//! (two workspaces, chunks of 500) received over ten days, written through
//! the real pipeline and writer. Measures the store query the handler runs
//! (`EventsHandle::query`) for one hour of one workspace, a sequence window
//! and the newest page.
//!
//! `cargo bench --bench query_page` builds the store once under
//! `target/bench-data/` (reused by later runs; delete it to rebuild). Under
//! `cargo test` the store has 20k events, so the bench only runs through.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::export::event_json;
use sluice::metrics::Metrics;
use sluice::pipeline::{Batch, Outcome, Pipeline};
use sluice::record::{BlockBuilder, Kind, tag};
use sluice::store::chunk::{self, ChunkMeta};
use sluice::store::query::{EventsHandle, Order, Query};
use sluice::store::writer::{Writer, WriterConfig};

const PER_CHUNK: u32 = 500;
const WORKSPACES: u32 = 2;
const START_MS: u64 = 1_760_000_000_000;
const SPAN_MS: u64 = 10 * 86_400_000;
const HOUR_MS: u64 = 3_600_000;
const PAGE: usize = 100;

/// One chunk of `workspace`, its events received evenly over `[from, to]`.
fn chunk_at(i: u64, from: u64, to: u64) -> Vec<u8> {
    let mut b = BlockBuilder::default();
    for e in 0..u64::from(PER_CHUNK) {
        let at = from + (to - from) * e / u64::from(PER_CHUNK);
        b.begin(Kind::Event, at);
        b.u64(tag::TIMESTAMP, at);
        b.str(tag::EVENT_NAME, "Page Viewed");
        b.bytes(tag::DEVICE_ID, &(i ^ e).to_le_bytes().repeat(2));
        let payload = format!("{{\"url\":\"/pricing/{e}\",\"plan\":\"team\",\"amount\":{}}}", (i * 31 + e) % 10_000);
        b.bytes(tag::PAYLOAD, payload.as_bytes());
        b.end();
    }
    let meta =
        ChunkMeta { listener: "tcp", peer: "10.0.0.1:1", count: PER_CHUNK, min_received_ms: from, max_received_ms: to };
    chunk::encode(&meta, b.finished())
}

/// Writes `events` events (split over the workspaces) through a real writer.
fn build(dir: &Path, events: u64) {
    let chunks = events / u64::from(PER_CHUNK);
    let step = SPAN_MS / (chunks / u64::from(WORKSPACES));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (pipeline, rx) = Pipeline::new(256 << 20);
    let config = WriterConfig::new(dir.join("events.redb"), 64 << 20, Duration::from_secs(900), 16 << 20);
    let writer = Writer::spawn(config, rx, Arc::new(Metrics::default())).expect("writer");
    let started = Instant::now();
    runtime.block_on(async {
        let mut waits = std::collections::VecDeque::new();
        for i in 0..chunks {
            let workspace = 1 + (i % u64::from(WORKSPACES)) as u32;
            let from = START_MS + (i / u64::from(WORKSPACES)) * step;
            let chunk = chunk_at(i, from, from + step - 1);
            let permit = pipeline.reserve(chunk.len()).await;
            let (tx, done) = tokio::sync::oneshot::channel();
            let submitted = Instant::now();
            let batch = Batch {
                workspace,
                count: PER_CHUNK,
                chunk,
                dedup: None,
                relayed: None,
                reply: Some(tx),
                permit,
                submitted,
            };
            pipeline.submit(batch).expect("writer running");
            waits.push_back(done);
            while waits.len() > 256 {
                let outcome = waits.pop_front().expect("queued").await;
                assert!(matches!(outcome, Ok(Outcome::Stored { .. })));
            }
        }
        for w in waits {
            assert!(matches!(w.await, Ok(Outcome::Stored { .. })));
        }
    });
    drop(pipeline);
    writer.join();
    eprintln!("built {events} events in {:?}", started.elapsed());
}

/// The store to query: 10M events under `cargo bench`, 20k otherwise.
fn store() -> (PathBuf, Option<tempfile::TempDir>) {
    if !std::env::args().any(|a| a == "--bench") {
        let tmp = tempfile::tempdir().expect("temp dir");
        build(tmp.path(), 20_000);
        return (tmp.path().to_path_buf(), Some(tmp));
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../bench-data/query-10M");
    if !dir.join("complete").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench data dir");
        build(&dir, 10_000_000);
        std::fs::write(dir.join("complete"), b"").expect("marker");
    }
    (dir, None)
}

fn query(workspace: u32) -> Query {
    Query::unfiltered(workspace, PAGE, 100_000)
}

fn query_page(c: &mut Criterion) {
    let (dir, _tmp) = store();
    let events = EventsHandle::open(&dir, 32 << 20).expect("open store");
    let hour_from = START_MS + SPAN_MS / 2;
    let one_hour = Query { from_ms: Some(hour_from), to_ms: Some(hour_from + HOUR_MS), ..query(1) };
    let page = events.query(&one_hour, event_json).expect("query");
    // Full under `cargo bench` (~1,000 events an hour); the small store has fewer.
    assert!(!page.events.is_empty());
    let first = page.events[0]["received_at"].as_u64().expect("received_at");
    assert!((hour_from..hour_from + HOUR_MS).contains(&first), "{first}");
    eprintln!("one hour, first page: {} rows read, {} chunks skipped", page.rows_read, page.chunks_skipped);
    assert!(page.rows_read <= (PAGE + 1) as u64 + u64::from(PER_CHUNK), "{} rows read", page.rows_read);

    let mut group = c.benchmark_group("query_first_page");
    group.bench_function("one_hour_of_one_workspace", |b| {
        b.iter(|| events.query(&one_hour, event_json).expect("query"))
    });
    let middle = Query { since: Some(2_000_000), ..query(1) };
    group.bench_function("since_seq", |b| b.iter(|| events.query(&middle, event_json).expect("query")));
    let newest = Query { order: Order::Desc, ..query(2) };
    group.bench_function("newest_desc", |b| b.iter(|| events.query(&newest, event_json).expect("query")));
    group.finish();
}

criterion_group!(benches, query_page);
criterion_main!(benches);
