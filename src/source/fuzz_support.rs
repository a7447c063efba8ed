//! The stateful fuzz target `acked_session` (see `fuzz/README.md`), in the
//! style of redb's own fuzzer: a random sequence of operations runs against
//! the real acked path — a raw TCP listener on 127.0.0.1, the pipeline, the
//! writer thread and `events.redb` on a disk that fails on demand — while a
//! model records what the client was told. The input is a list of ops:
//!
//! | op (first byte % 8) | then | does |
//! |---|---|---|
//! | 0, 1 | `who`, `id`, `n` | send an acked batch of `n % 3 + 1` events as producer `who % 3`, batch id `id % 8`; `who & 0x80`: a wrong key |
//! | 2 | `who`, `n` | send a Tell (unacked) batch |
//! | 3 | | read every outstanding ack |
//! | 4 | `cut` | send part of an acked batch, then hang up (acks unread) |
//! | 5 | | hang up; the next send reconnects |
//! | 6 | `what` | the disk: full (0), broken (1), or healthy again |
//! | 7 | `reserved` | an acked frame with reserved flags |
//!
//! Every frame is written in pieces, with the server run between pieces, so
//! frames arrive split at arbitrary bytes. What must hold:
//!
//! - acks come back in frame order, one per acked frame; a wrong key is
//!   `bad_key`, reserved flags `malformed`;
//! - `stored` is answered only for a batch not committed before, and
//!   `duplicate` only for one that was, with the same sequence range;
//! - `unavailable` only after the disk has failed at least once;
//! - afterwards, in the store: every batch acknowledged `stored` or
//!   `duplicate` exactly once, at its range, with its events in order;
//!   every other batch sent with a valid key at most once (its ack was lost
//!   or it was refused); nothing sent with a wrong key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tell_encoding::{EventParams, EventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::keys::{KeyInfo, KeyRegistry, digest};
use crate::client::tell_batch;
use crate::codec::ack::{ACK_LEN, Ack, Status};
use crate::codec::frame::{ACKED_HEADER_LEN, AckedHeader, encode_acked, encode_tell};
use crate::config::{Count, TcpSource};
use crate::metrics::Metrics;
use crate::net::deadline::Timeouts;
use crate::pipeline::Pipeline;
use crate::record::tag;
use crate::source::tcp::{TcpContext, serve};
use crate::store::fault::{self, Disk};
use crate::store::query::{EventsHandle, Query, Sink};
use crate::store::reader::StoredEvent;
use crate::store::writer::{Opener, Writer, WriterConfig};

const KEY: [u8; 16] = [0x5a; 16];
const WRONG_KEY: [u8; 16] = [0xa5; 16];
const WORKSPACE: u32 = 1;
const PRODUCERS: u8 = 3;
const BATCH_IDS: u8 = 8;
/// Ops run per input at most (each may commit).
const MAX_OPS: usize = 48;
/// Longest wait for one ack: far above any commit, so running out is a finding.
const ACK_WAIT: Duration = Duration::from_secs(20);

/// Events in a batch at most.
const MAX_EVENTS: u8 = 3;

/// What the client knows of one (producer, batch id). A resend under the
/// same id may hold another number of events (the client's mistake): the
/// first copy committed is the one kept, and a duplicate names its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Sent with a valid key; its outcome is unknown (ack lost, refused as
    /// unavailable, or not yet read).
    Maybe,
    /// Acknowledged as stored or duplicate: committed at this range.
    Committed { first_seq: u64, count: u32 },
}

/// An acked frame whose ack has not been read yet.
#[derive(Debug, Clone, Copy)]
struct Sent {
    producer: u8,
    batch_id: u64,
    events: u8,
    /// What the frame must be answered if not stored: `bad_key`, `malformed`.
    refused_as: Option<Status>,
}

struct Model {
    known: HashMap<(u8, u64), Known>,
    /// Tell batches sent with a valid key: stored at most once each.
    tell: HashMap<u64, u8>,
    disk_failed: bool,
}

/// Runs one input; panics on a broken invariant.
pub fn acked_session_input(data: &[u8]) {
    let dir = ScratchDir::new();
    let disk = Disk::new();
    let path = dir.path().join(crate::store::EVENTS_FILE);
    // Tables and format first, on the healthy disk, as the daemon's start does.
    drop(crate::store::events::open(&path, 1 << 20).expect("create events.redb"));
    let (p, d) = (path.clone(), disk.clone());
    let opener: Opener = Box::new(move || fault::open_db(&p, d.clone()));
    let mut config = WriterConfig::new(path, 1 << 20, Duration::from_secs(3600), 1 << 20);
    config.opener = opener;
    let (pipeline, rx) = Pipeline::new(64 << 20);
    let metrics = Arc::new(Metrics::default());
    let writer = Writer::spawn(config, rx, metrics.clone()).expect("writer");
    let keys = Arc::new(KeyRegistry::from_digests([(digest(&KEY), KeyInfo { id: 1, workspace: WORKSPACE })]));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let model = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ctx = Arc::new(TcpContext {
            name: "tcp".into(),
            // Wrong keys are answered, never a reason to hang up here.
            config: TcpSource { max_bad_keys: Count(usize::MAX), ..TcpSource::at(addr) },
            pipeline,
            keys,
            metrics: metrics.source("tcp", crate::metrics::ListenerKind::Tcp),
            ack_timeout: ACK_WAIT,
            timeouts: Timeouts {
                idle: Duration::from_secs(60),
                untrusted_idle: Duration::from_secs(60),
                frame: Duration::from_secs(60),
                min_rate: 1,
            },
            abort: CancellationToken::new(),
            tls: None,
        });
        let (shutdown, tracker) = (CancellationToken::new(), TaskTracker::new());
        let server = tokio::spawn(serve(listener, ctx, shutdown.clone(), tracker.clone()));
        let mut session = Session { addr: addr.to_string(), conn: None, outstanding: Vec::new(), split: 1 };
        let mut model = Model { known: HashMap::new(), tell: HashMap::new(), disk_failed: false };
        let mut ops = Ops(data);
        for _ in 0..MAX_OPS {
            let Some(op) = ops.byte() else { break };
            session.split = op >> 3;
            session.step(op % 8, &mut ops, &mut model, &disk).await;
        }
        disk.free();
        disk.set_broken(false);
        session.read_acks(&mut model).await;
        session.hang_up();
        shutdown.cancel();
        server.await.expect("server task");
        tracker.close();
        tracker.wait().await;
        model
    });
    drop(runtime);
    writer.join();
    check_store(dir.path(), &model);
}

/// A data dir of its own, removed afterwards (`tempfile` is only a dev-dependency).
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sluice-acked-session-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        ScratchDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads ops' arguments; missing bytes read as 0.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }
}

struct Session {
    addr: String,
    conn: Option<TcpStream>,
    outstanding: Vec<Sent>,
    /// Seeds the sizes of the pieces a frame is written in.
    split: u8,
}

impl Session {
    async fn step(&mut self, op: u8, ops: &mut Ops<'_>, model: &mut Model, disk: &Disk) {
        match op {
            0 | 1 => {
                let (who, id, n) = (ops.arg(), ops.arg(), ops.arg());
                self.send_acked(who, id, n, 0, model).await;
            }
            2 => {
                let (who, n) = (ops.arg(), ops.arg());
                let batch_id = 1000 + model.tell.len() as u64;
                let key = if who & 0x80 != 0 { WRONG_KEY } else { KEY };
                let events = n % 3 + 1;
                let mut frame = Vec::new();
                encode_tell(&batch(&key, who % PRODUCERS + 10, batch_id, events), &mut frame);
                if self.write(&frame).await && key == KEY {
                    model.tell.insert(batch_id, events);
                }
            }
            3 => self.read_acks(model).await,
            4 => {
                let cut = ops.arg();
                let (who, id) = (cut % PRODUCERS, u64::from(cut / PRODUCERS) % u64::from(BATCH_IDS));
                let mut frame = Vec::new();
                let body = batch(&KEY, who, id, 1);
                encode_acked(&AckedHeader { producer: producer(who), batch_id: id }, &body, &mut frame);
                let keep = 1 + usize::from(cut) % (frame.len() - 1);
                self.write(&frame[..keep]).await;
                self.hang_up();
            }
            5 => self.hang_up(),
            6 => match ops.arg() % 3 {
                0 => {
                    disk.full_at(0);
                    model.disk_failed = true;
                }
                1 => {
                    disk.set_broken(true);
                    model.disk_failed = true;
                }
                _ => {
                    disk.free();
                    disk.set_broken(false);
                }
            },
            _ => {
                let (who, id, flags) = (ops.arg(), ops.arg(), ops.arg());
                self.send_acked(who, id, 1, u16::from(flags) | 1, model).await;
            }
        }
    }

    async fn send_acked(&mut self, who: u8, id: u8, n: u8, flags: u16, model: &mut Model) {
        let valid = who & 0x80 == 0;
        let (p, batch_id, events) = (who % PRODUCERS, u64::from(id % BATCH_IDS), n % MAX_EVENTS + 1);
        let body = batch(if valid { &KEY } else { &WRONG_KEY }, p, batch_id, events);
        let mut frame = Vec::with_capacity(ACKED_HEADER_LEN + body.len());
        encode_acked(&AckedHeader { producer: producer(p), batch_id }, &body, &mut frame);
        frame[2..4].copy_from_slice(&flags.to_be_bytes());
        let refused_as = if flags != 0 {
            Some(Status::Malformed)
        } else if !valid {
            Some(Status::BadKey)
        } else {
            None
        };
        if !self.write(&frame).await {
            // Hung up under us: the frame may or may not have arrived whole.
            if refused_as.is_none() {
                maybe(model, p, batch_id);
            }
            return;
        }
        if refused_as.is_none() {
            maybe(model, p, batch_id);
        }
        self.outstanding.push(Sent { producer: p, batch_id, events, refused_as });
    }

    /// Writes a frame in pieces, letting the server run between them; false
    /// if the connection failed (it is dropped; outstanding acks are lost).
    async fn write(&mut self, frame: &[u8]) -> bool {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            self.conn = Some(stream);
        }
        let mut seed = u32::from(self.split) | 0x100;
        let mut rest = frame;
        while !rest.is_empty() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let take = (1 + (seed >> 16) as usize % 64).min(rest.len());
            let Some(conn) = self.conn.as_mut() else { return false };
            if conn.write_all(&rest[..take]).await.is_err() {
                self.hang_up();
                return false;
            }
            rest = &rest[take..];
            tokio::task::yield_now().await;
        }
        true
    }

    /// Reads the ack of every outstanding frame and checks it.
    async fn read_acks(&mut self, model: &mut Model) {
        let Some(conn) = self.conn.as_mut() else { return };
        for sent in std::mem::take(&mut self.outstanding) {
            let mut buf = [0u8; ACK_LEN];
            match tokio::time::timeout(ACK_WAIT, conn.read_exact(&mut buf)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("connection failed before the ack of batch {}: {e}", sent.batch_id),
                Err(_) => panic!("no ack for batch {} within {ACK_WAIT:?}", sent.batch_id),
            }
            let ack = Ack::decode(&buf).expect("a valid ack");
            assert_eq!(ack.batch_id, sent.batch_id, "acks out of frame order");
            check_ack(&ack, &sent, model);
        }
    }

    fn hang_up(&mut self) {
        self.conn = None;
        // Their acks are lost; each batch stays `Maybe` in the model.
        self.outstanding.clear();
    }
}

fn check_ack(ack: &Ack, sent: &Sent, model: &mut Model) {
    if let Some(want) = sent.refused_as {
        assert_eq!(ack.status, want, "batch {} answered {:?}", sent.batch_id, ack.status);
        return;
    }
    let id = (sent.producer, sent.batch_id);
    let before = model.known.get(&id).copied();
    match ack.status {
        Status::Stored => {
            assert!(
                !matches!(before, Some(Known::Committed { .. })),
                "batch {id:?} stored again after it was committed: {before:?}"
            );
            assert_eq!(ack.count, u32::from(sent.events), "stored count of {id:?}");
            model.known.insert(id, committed(ack));
        }
        Status::Duplicate => match before {
            Some(Known::Committed { first_seq, count }) => {
                assert_eq!((ack.first_seq, ack.count), (first_seq, count), "duplicate of {id:?} names another range");
            }
            Some(Known::Maybe) => {
                model.known.insert(id, committed(ack));
            }
            None => panic!("batch {id:?} answered duplicate but never sent before"),
        },
        Status::Unavailable => {
            assert!(model.disk_failed, "batch {id:?} answered unavailable on a healthy disk");
        }
        other => panic!("batch {id:?} with a valid key answered {other:?}"),
    }
}

fn committed(ack: &Ack) -> Known {
    Known::Committed { first_seq: ack.first_seq, count: ack.count }
}

/// Records a send: a batch known to be committed stays so (a resend is a duplicate).
fn maybe(model: &mut Model, producer: u8, batch_id: u64) {
    model.known.entry((producer, batch_id)).or_insert(Known::Maybe);
}

fn producer(p: u8) -> [u8; 16] {
    [p.wrapping_add(1); 16]
}

/// A Tell batch of `events` events named `p<producer>b<batch id>e<index>`.
fn batch(key: &[u8; 16], producer: u8, batch_id: u64, events: u8) -> Vec<u8> {
    let names: Vec<String> = (0..events).map(|i| format!("p{producer}b{batch_id}e{i}")).collect();
    let params: Vec<EventParams<'_>> = names
        .iter()
        .map(|name| EventParams {
            event_type: EventType::Track,
            timestamp: 1,
            service: None,
            device_id: None,
            session_id: None,
            event_name: Some(name),
            payload: None,
        })
        .collect();
    tell_batch(key, batch_id, &params)
}

/// Every event's sequence number and name, in order.
struct Names(Vec<(u64, String)>);

impl Sink for Names {
    fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
        let name = ev.record.get(tag::EVENT_NAME).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
        self.0.push((ev.seq, name));
        true
    }
}

fn check_store(dir: &std::path::Path, model: &Model) {
    let events = EventsHandle::open(dir, 1 << 20).expect("reopen events.redb");
    let q = Query::unfiltered(WORKSPACE, usize::MAX, u64::MAX);
    let mut names = Names(Vec::new());
    events.snapshot().expect("snapshot").stream(&q, &mut names).expect("scan");
    let mut copies: HashMap<String, Vec<u64>> = HashMap::new();
    for (seq, name) in &names.0 {
        copies.entry(name.clone()).or_default().push(*seq);
    }
    let mut accounted = 0;
    for (&(p, batch_id), known) in &model.known {
        // The stored copy's events: each at most once, e0, e1, … in a row.
        let (mut seqs, mut present) = (Vec::new(), Vec::new());
        for i in 0..MAX_EVENTS {
            let found = copies.get(&format!("p{p}b{batch_id}e{i}")).cloned().unwrap_or_default();
            assert!(found.len() <= 1, "event {i} of batch p{p}b{batch_id} stored {} times", found.len());
            if !found.is_empty() {
                present.push(i);
            }
            seqs.extend(found);
        }
        let start = seqs.first().copied().unwrap_or(0);
        let in_a_row: Vec<u64> = (start..start + seqs.len() as u64).collect();
        assert_eq!(present, (0..present.len() as u8).collect::<Vec<_>>(), "part of batch p{p}b{batch_id} stored");
        assert_eq!(seqs, in_a_row, "batch p{p}b{batch_id} is not one copy in order");
        if let Known::Committed { first_seq, count } = *known {
            assert_eq!(
                (start, seqs.len() as u32),
                (first_seq, count),
                "acknowledged batch p{p}b{batch_id} not at its range"
            );
        }
        accounted += seqs.len();
    }
    for (&batch_id, &events) in &model.tell {
        let stored = copies.keys().filter(|n| n.ends_with(&format!("b{batch_id}e0"))).count();
        assert!(stored <= 1, "Tell batch {batch_id} stored {stored} times");
        if stored == 1 {
            accounted += usize::from(events);
        }
    }
    assert_eq!(accounted, names.0.len(), "the store holds events nobody sent with a valid key: {:?}", names.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_with_every_op_keeps_the_model() {
        // Acked sends, a resend (duplicate), a Tell batch, a wrong key,
        // reserved flags, a cut frame, a hang-up, a full disk and recovery.
        let ops: &[u8] = &[
            0, 0, 1, 2, 0, 1, 0, 3, 2, 0, 1, 3, 0, 0x80, 2, 0, 7, 1, 3, 4, 3, 4, 7, 5, 0, 0, 1, 0, 6, 0, 0, 1, 4, 0, 3,
            6, 2, 0, 2, 5, 0, 3, 0, 1, 1, 0, 3,
        ];
        acked_session_input(ops);
    }
}
