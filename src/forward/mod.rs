//! Forwarding committed events to NATS JetStream (`[forward.nats]`).
//!
//! The forwarder follows the writer's commit notices and never reads
//! uncommitted data: it reads committed chunks through a read snapshot. For
//! each workspace one task publishes its events in sequence order, one
//! message at a time ([`message::build`], at most the server's
//! `max_payload`), to `<subject_prefix>.<workspace>` with
//! `Nats-Msg-Id = node:incarnation:workspace:first_seq`. It waits for the
//! PubAck, then hands the workspace's new cursor to the writer
//! ([`Cursors`]), which commits it in `events.redb`; a restarted node
//! resumes after the last acknowledged message (a message published again
//! after a crash is a duplicate JetStream or the central node drops).
//! Workspaces run in parallel; within one, a failed publish is retried with
//! the same message id until acknowledged, so order survives retries.
//!
//! While NATS is unreachable, ingest goes on and the lag grows
//! (`sluice_forward_lag_events`); retention keeps what is not forwarded
//! (unless `[forward] retention_may_drop_unforwarded`).
//!
//! A duplicate PubAck is checked against the stored message (its id and
//! event count), so a message cut differently before a crash moves the
//! cursor only as far as JetStream really holds.

pub mod connect;
mod gate;
pub mod message;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, Context, stream};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

pub use gate::Gate;

use crate::config::{AckMode, Encoding, NatsForward};
use crate::metrics::Metrics;
use crate::store::query::{Committed, EventsHandle, ForwardState};
use crate::store::writer::Cursors;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Entries a workspace keeps for its lag in bytes (see `Progress::pending`).
const MAX_PENDING: usize = 4096;
/// How often answers held too long are released as `unavailable`.
const GATE_SWEEP: Duration = Duration::from_millis(100);

/// What the forwarder needs from the daemon.
pub struct Deps {
    pub events: EventsHandle,
    pub cursors: Cursors,
    pub gate: Option<Arc<Gate>>,
    pub metrics: Arc<Metrics>,
}

/// The gate `ack = "replicated"` needs, made before the writer starts;
/// answers wait at most `ack_timeout` (`[pipeline]`).
pub fn gate_for(config: &NatsForward, ack_timeout: Duration) -> Option<Arc<Gate>> {
    (config.ack == AckMode::Replicated).then(|| Arc::new(Gate::new(ack_timeout)))
}

/// Runs the forwarder until `shutdown`.
pub async fn run(config: NatsForward, deps: Deps, shutdown: CancellationToken) {
    // Before the state is read: a commit after it is then a notice.
    let mut notices = deps.events.subscribe();
    let state = match deps.events.forward_state() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "forwarder cannot read its cursors; not forwarding");
            return;
        }
    };
    deps.metrics.forward.enabled.store(true, Ordering::Relaxed);
    let node = config.node();
    let client = match connect::connect(&config.servers, &config.auth(), &format!("sluice-forward-{node}")).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "forwarder not started");
            return;
        }
    };
    let js = jetstream::new(client.clone());
    if let Some(gate) = deps.gate.clone() {
        for (&ws, &cursor) in &state.cursors {
            gate.acked(ws, cursor);
        }
        tokio::spawn(sweep_gate(gate, deps.metrics.clone(), shutdown.clone()));
    }
    let mut ready = reach_stream(js.clone(), config.clone(), shutdown.clone());
    let mut lanes = Lanes::new(&state, deps.metrics.clone(), deps.events.clone());
    let mut deps = Some(deps);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            stream = &mut ready, if lanes.shared.is_none() => {
                let (Ok(stream), Some(deps)) = (stream, deps.take()) else { return };
                tracing::info!(stream = %config.stream, node = %node, incarnation = format!("{:016x}", state.incarnation),
                    "forwarding committed events to NATS JetStream");
                let (config, node, incarnation, shutdown) = (config.clone(), node.clone(), state.incarnation, shutdown.clone());
                lanes.start(Shared { js: js.clone(), client: client.clone(), stream, config, node, incarnation, deps, shutdown });
            }
            notice = notices.recv() => match notice {
                Ok(c) => lanes.committed(&c),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => lanes.look_again(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Creates or opens the stream in the background (retrying until it works);
/// the receiver gets it once it is there.
fn reach_stream(js: Context, config: NatsForward, shutdown: CancellationToken) -> oneshot::Receiver<stream::Stream> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        if let Some(stream) = ensure_stream(&js, &config, &shutdown).await {
            let _ = tx.send(stream);
        }
    });
    rx
}

/// Every workspace's lane. Lanes exist (and the lag is known) from the
/// start, so notices are followed while NATS is away; their tasks start
/// once the stream is reached.
struct Lanes {
    lanes: HashMap<u32, Arc<Lane>>,
    /// The cursors as committed at start (for workspaces first seen later).
    cursors: HashMap<u32, u64>,
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
    events: EventsHandle,
}

impl Lanes {
    fn new(state: &ForwardState, metrics: Arc<Metrics>, events: EventsHandle) -> Lanes {
        let mut lanes = Lanes { lanes: HashMap::new(), cursors: state.cursors.clone(), shared: None, metrics, events };
        for (&ws, &next) in &state.next_seqs {
            lanes.open(ws, next);
        }
        lanes
    }

    /// The stream is there: every lane starts publishing.
    fn start(&mut self, shared: Shared) {
        let shared = Arc::new(shared);
        for (&ws, lane) in &self.lanes {
            tokio::spawn(forward_workspace(shared.clone(), ws, lane.clone()));
        }
        self.shared = Some(shared);
    }

    fn open(&mut self, ws: u32, committed: u64) -> Arc<Lane> {
        let (cursors, shared, metrics) = (&self.cursors, &self.shared, &self.metrics);
        let lane = self.lanes.entry(ws).or_insert_with(|| {
            let lane = Arc::new(Lane::new(committed, cursors.get(&ws).copied().unwrap_or(1), metrics));
            if let Some(s) = shared {
                tokio::spawn(forward_workspace(s.clone(), ws, lane.clone()));
            }
            lane
        });
        lane.clone()
    }

    fn committed(&mut self, c: &Committed) {
        let metrics = self.metrics.clone();
        self.open(c.workspace, c.first_seq).committed(c, &metrics);
    }

    /// Missed notices: every lane looks again (lag bytes are then estimates).
    fn look_again(&mut self) {
        let Ok(now) = self.events.forward_state() else { return };
        let metrics = self.metrics.clone();
        for (ws, next) in now.next_seqs {
            self.open(ws, next).caught_up_to(next, &metrics);
        }
    }
}

/// What every workspace task shares.
struct Shared {
    js: Context,
    client: async_nats::Client,
    stream: stream::Stream,
    config: NatsForward,
    node: String,
    incarnation: u64,
    deps: Deps,
    shutdown: CancellationToken,
}

/// One workspace's progress, shared between the notice loop and its task.
struct Lane {
    wake: Notify,
    progress: std::sync::Mutex<Progress>,
}

struct Progress {
    /// The next sequence number to be committed, as far as notices told.
    committed: u64,
    /// The next sequence number JetStream does not have.
    cursor: u64,
    /// Chunks committed since start and not yet forwarded: (end, bytes), at
    /// most [`MAX_PENDING`] entries.
    pending: VecDeque<(u64, u64)>,
}

impl Progress {
    fn lag(&self) -> u64 {
        self.committed.saturating_sub(self.cursor)
    }
}

impl Lane {
    fn new(committed: u64, cursor: u64, metrics: &Metrics) -> Lane {
        let progress = Progress { committed, cursor, pending: VecDeque::new() };
        metrics.forward.lag_events.fetch_add(progress.lag(), Ordering::Relaxed);
        Lane { wake: Notify::new(), progress: std::sync::Mutex::new(progress) }
    }

    /// Changes the progress and the lag gauges with it.
    fn update(&self, metrics: &Metrics, f: impl FnOnce(&mut Progress) -> (u64, u64)) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        let before = p.lag();
        let (bytes_added, bytes_done) = f(&mut p);
        let after = p.lag();
        drop(p);
        let lag = &metrics.forward.lag_events;
        if after > before {
            lag.fetch_add(after - before, Ordering::Relaxed);
        } else {
            sub(lag, before - after);
        }
        metrics.forward.lag_bytes.fetch_add(bytes_added, Ordering::Relaxed);
        sub(&metrics.forward.lag_bytes, bytes_done);
    }

    fn committed(&self, c: &Committed, metrics: &Metrics) {
        let end = c.first_seq + u64::from(c.count);
        self.update(metrics, |p| {
            p.committed = p.committed.max(end);
            if end <= p.cursor {
                return (0, 0); // already forwarded: the task read it before this notice came
            }
            // Bounded while NATS is away: later chunks join the last entry
            // (their bytes then leave the gauge when all of it is forwarded).
            let full = p.pending.len() >= MAX_PENDING;
            match p.pending.back_mut() {
                Some(back) if full => *back = (end, back.1 + c.bytes),
                _ => p.pending.push_back((end, c.bytes)),
            }
            (c.bytes, 0)
        });
        self.wake.notify_one();
    }

    fn caught_up_to(&self, next: u64, metrics: &Metrics) {
        self.update(metrics, |p| {
            p.committed = p.committed.max(next);
            (0, 0)
        });
        self.wake.notify_one();
    }

    /// JetStream has everything before `cursor`.
    fn forwarded(&self, cursor: u64, metrics: &Metrics) {
        self.update(metrics, |p| {
            p.cursor = p.cursor.max(cursor);
            p.committed = p.committed.max(cursor);
            let mut done = 0;
            while p.pending.front().is_some_and(|(end, _)| *end <= cursor) {
                done += p.pending.pop_front().map_or(0, |(_, b)| b);
            }
            (0, done)
        });
    }
}

fn sub(a: &std::sync::atomic::AtomicU64, n: u64) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
}

/// Creates the stream if missing; sets the configured de-dup window on one
/// that has another. Retries until it works or shutdown.
async fn ensure_stream(js: &Context, config: &NatsForward, shutdown: &CancellationToken) -> Option<stream::Stream> {
    let want = stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{}.>", config.subject_prefix)],
        num_replicas: config.replicas,
        duplicate_window: config.duplicate_window,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let result = async {
            let mut stream = js.get_or_create_stream(want.clone()).await.map_err(|e| e.to_string())?;
            let info = stream.info().await.map_err(|e| e.to_string())?.clone();
            if info.config.duplicate_window != config.duplicate_window {
                let mut cfg = info.config.clone();
                cfg.duplicate_window = config.duplicate_window;
                js.update_stream(cfg).await.map_err(|e| e.to_string())?;
                tracing::info!(stream = %config.stream, window = ?config.duplicate_window, "set the stream's duplicate window");
            }
            if info.config.num_replicas != config.replicas {
                tracing::warn!(stream = %config.stream, has = info.config.num_replicas, configured = config.replicas,
                    "the stream exists with another replica count; left as it is");
            }
            Ok::<_, String>(stream)
        }
        .await;
        match result {
            Ok(stream) => return Some(stream),
            Err(e) => {
                tracing::warn!(stream = %config.stream, error = %e, "cannot create or open the JetStream stream; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Publishes one workspace's committed events, in order, for ever.
async fn forward_workspace(shared: Arc<Shared>, ws: u32, lane: Arc<Lane>) {
    let metrics = shared.deps.metrics.clone();
    let mut cursor = lane.progress.lock().unwrap_or_else(|e| e.into_inner()).cursor;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let limit = shared.client.max_payload().saturating_sub(message::HEADER_ROOM).max(4096);
        let (events, encoding) = (shared.deps.events.clone(), shared.config.encoding);
        let built = tokio::task::spawn_blocking(move || {
            events.snapshot().and_then(|snap| message::build(&snap, ws, cursor, limit, encoding))
        })
        .await;
        let msg = match built {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = lane.wake.notified() => {}
                }
                continue;
            }
            Ok(Err(e)) => {
                tracing::warn!(workspace = ws, error = %e, "forwarder cannot read the store; retrying");
                tokio::time::sleep(BACKOFF_MAX).await;
                continue;
            }
            Err(_) => return,
        };
        metrics.forward.too_large.fetch_add(u64::from(msg.too_large), Ordering::Relaxed);
        let end = if msg.count == 0 {
            msg.end
        } else {
            match publish(&shared, &msg).await {
                Some(end) => end,
                None => return,
            }
        };
        lane.forwarded(end, &metrics);
        cursor = end;
        shared.deps.cursors.advance(ws, cursor);
        if let Some(gate) = &shared.deps.gate {
            gate.acked(ws, cursor);
        }
    }
}

/// Publishes until JetStream has the message; returns the new cursor
/// (`None` on shutdown).
async fn publish(shared: &Shared, msg: &message::Message) -> Option<u64> {
    let metrics = &shared.deps.metrics.forward;
    let id = format!("{}:{:016x}:{}:{}", shared.node, shared.incarnation, msg.workspace, msg.first_seq);
    let subject = format!("{}.{}", shared.config.subject_prefix, msg.workspace);
    let headers = headers(shared, msg);
    let body = bytes::Bytes::copy_from_slice(&msg.body);
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let publish =
            jetstream::message::PublishMessage::build().payload(body.clone()).headers(headers.clone()).message_id(&id);
        let result = async {
            let ack = shared.js.send_publish(subject.clone(), publish).await.map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        let outcome = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            r = result => r,
        };
        let checked = match outcome {
            Ok(ack) if ack.duplicate => stored_end(shared, ack.sequence, &id).await,
            Ok(_) => Ok(msg.end),
            Err(e) => Err(e),
        };
        match checked {
            Ok(end) => {
                metrics.puback_seconds.observe_duration(started.elapsed());
                metrics.messages.fetch_add(1, Ordering::Relaxed);
                metrics.events.fetch_add(end.saturating_sub(msg.first_seq), Ordering::Relaxed);
                if failures > 0 {
                    tracing::info!(workspace = msg.workspace, failures, "publishing to JetStream works again");
                }
                return Some(end.max(msg.first_seq + 1));
            }
            Err(e) => {
                metrics.failures.fetch_add(1, Ordering::Relaxed);
                if failures == 0 {
                    tracing::warn!(workspace = msg.workspace, id = %id, error = %e, "publish to JetStream failed; retrying");
                } else {
                    tracing::debug!(workspace = msg.workspace, id = %id, error = %e, "publish failed again");
                }
                failures += 1;
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// For a duplicate PubAck: the end of the events the stored message holds,
/// once it is confirmed to be ours (an older server can answer "duplicate"
/// for a message it does not hold, nats-server #6415).
async fn stored_end(shared: &Shared, sequence: u64, id: &str) -> Result<u64, String> {
    let stored = shared.stream.get_raw_message(sequence).await.map_err(|e| format!("duplicate not confirmed: {e}"))?;
    let header = |name: &str| stored.headers.get(name).map(|v| v.as_str().to_string());
    if header("Nats-Msg-Id").as_deref() != Some(id) {
        return Err(format!("JetStream said duplicate, but message {sequence} is another one"));
    }
    let first: u64 = header(message::header::FIRST_SEQ).and_then(|v| v.parse().ok()).ok_or("no first seq")?;
    let count: u64 = header(message::header::COUNT).and_then(|v| v.parse().ok()).ok_or("no count")?;
    Ok(first + count)
}

fn headers(shared: &Shared, msg: &message::Message) -> HeaderMap {
    use message::header as h;
    let mut m = HeaderMap::new();
    m.insert(h::NODE, shared.node.as_str());
    m.insert(h::INCARNATION, format!("{:016x}", shared.incarnation).as_str());
    m.insert(h::WORKSPACE, msg.workspace.to_string().as_str());
    m.insert(h::FROM_SEQ, msg.from_seq.to_string().as_str());
    m.insert(h::FIRST_SEQ, msg.first_seq.to_string().as_str());
    m.insert(h::COUNT, msg.count.to_string().as_str());
    let format = match shared.config.encoding {
        Encoding::Chunk => message::CHUNK_FORMAT,
        Encoding::Ndjson => message::NDJSON_FORMAT,
    };
    m.insert(h::FORMAT, format);
    m
}

/// Releases answers held past `ack_timeout` as `unavailable`.
async fn sweep_gate(gate: Arc<Gate>, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(GATE_SWEEP);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                gate.expire(Instant::now());
                metrics.forward.held.store(gate.held() as u64, Ordering::Relaxed);
            }
        }
    }
}
