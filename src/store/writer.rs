//! The writer thread: the only owner of `events.redb`.
//!
//! It blocks for the first batch, takes whatever else is already queued (up
//! to `max_commit_bytes`), writes all of it in one write transaction, commits
//! with `Durability::Immediate`, and only then reports outcomes (group
//! commit). While it commits, new batches queue up, so the group grows with
//! the load: one fsync serves many clients.
//!
//! In the same transaction it assigns sequence numbers (the per-workspace
//! counter is a row in the same commit, so numbers are never reused),
//! checks and writes de-duplication records of acked batches, and expires a
//! bounded number of old de-duplication records.
//!
//! Between groups it runs retention ([`super::retention`]): one small
//! transaction when due, so a backlog of expired data alternates with
//! ingest instead of holding it up.
//!
//! The forwarder's cursors ([`Cursors`]) ride along with the next group
//! (or get a transaction of their own when no batch comes), and relayed
//! batches (`pipeline::Relayed`) move their origin's high-water mark in the
//! transaction that stores them. With `ack = "replicated"` the answers of
//! committed batches go to the forwarder's [`Gate`] instead of the client.
//!
//! When a commit fails (disk full, I/O error), nothing in it is reported
//! stored: every batch gets `Unavailable` and the database is closed (redb
//! refuses further use after an I/O error). Until the next attempt is due,
//! batches are refused at once; then the database is reopened, which also
//! reloads the sequence counters as committed, and the next group is tried.
//! The wait doubles with every failed attempt (reopen or commit) up to
//! [`BACKOFF_MAX`], so a full disk costs one failed commit per wait rather
//! than one per batch, and resets once a commit succeeds.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata};

use super::StoreError;
use super::events::{self, CHUNK_BYTES_KEY, DEDUP, DEDUP_EXPIRY, FORWARD_CURSOR, META, ORIGINS, SEQ};
use super::query::{Committed, EventsHandle};
use super::retention::{self, Policy, Schedule};
use super::rows::ChunkRows;
use crate::forward::Gate;
use crate::metrics::{Metrics, Stage};
use crate::pipeline::{Batch, Outcome, Relayed};

/// Most expired de-duplication records removed per commit.
const EXPIRE_PER_COMMIT: usize = 1024;
/// What one de-duplication record costs on disk (its row, its expiry row and
/// their share of the B-trees), counted against `[retention] max_bytes`.
pub const DEDUP_RECORD_BYTES: u64 = 128;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Most origins (edge node, incarnation, workspace) whose high-water marks
/// are kept; past it the one not heard from for longest is forgotten.
pub const MAX_ORIGINS: u64 = 65_536;

/// Opens the events database; called again after a failed commit.
pub type Opener = Box<dyn FnMut() -> Result<Database, StoreError> + Send>;

/// What the writer needs.
pub struct WriterConfig {
    /// For messages only.
    pub path: PathBuf,
    pub opener: Opener,
    pub dedup_window: Duration,
    /// De-duplication records a workspace may hold; new acked batches of a
    /// workspace at the cap are answered `unavailable`.
    pub max_dedup_records: u64,
    pub max_commit_bytes: usize,
    pub retention: Policy,
    /// With `ack = "replicated"`: where answers wait for JetStream.
    pub gate: Option<Arc<Gate>>,
}

impl WriterConfig {
    /// A writer on `path` with the standard opener.
    pub fn new(path: PathBuf, cache_bytes: usize, dedup_window: Duration, max_commit_bytes: usize) -> WriterConfig {
        let p = path.clone();
        WriterConfig {
            path,
            opener: Box::new(move || events::open(&p, cache_bytes)),
            dedup_window,
            max_dedup_records: u64::MAX,
            max_commit_bytes,
            retention: Policy::default(),
            gate: None,
        }
    }
}

/// The running writer thread.
pub struct Writer {
    thread: JoinHandle<()>,
    events: EventsHandle,
    cursors: Cursors,
}

/// Where the forwarder reports its progress: the latest cursor per
/// workspace, committed by the writer with its next transaction. Never
/// blocks; reports between two commits are merged (the highest wins).
#[derive(Debug, Clone)]
pub struct Cursors {
    pending: Arc<Mutex<HashMap<u32, u64>>>,
    wake: crossbeam_channel::Sender<()>,
}

impl Cursors {
    /// Events of `workspace` before `next` are in JetStream.
    pub fn advance(&self, workspace: u32, next: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let at = pending.entry(workspace).or_insert(next);
        *at = (*at).max(next);
        drop(pending);
        let _ = self.wake.try_send(());
    }

    fn take(&self) -> HashMap<u32, u64> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what a failed commit did not write (unless newer came since).
    fn restore(&self, cursors: HashMap<u32, u64>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (ws, next) in cursors {
            let at = pending.entry(ws).or_insert(next);
            *at = (*at).max(next);
        }
    }
}

impl Writer {
    /// Opens the database (so start-up fails on a locked or too-new store)
    /// and starts the thread. It exits when every pipeline sender is gone and
    /// the channel is drained.
    pub fn spawn(mut config: WriterConfig, rx: Receiver<Batch>, metrics: Arc<Metrics>) -> Result<Writer, StoreError> {
        let db = Arc::new((config.opener)()?);
        let next_seq = events::load_next_seqs(&db, &config.path)?;
        let stored_bytes = events::stored_bytes(&db, &config.path)?;
        let dedup = events::dedup_counts(&db, &config.path)?;
        metrics.store.stored_chunk_bytes.store(stored_bytes, Ordering::Relaxed);
        metrics.store.dedup_records.store(dedup.values().sum(), Ordering::Relaxed);
        let retention = Schedule::new(config.retention);
        let retry = Retry { at: Instant::now(), backoff: BACKOFF_MIN };
        let events = EventsHandle::new(config.path.clone());
        events.set(Some(db.clone()));
        let shared = events.clone();
        let (wake, woken) = crossbeam_channel::bounded(1);
        let cursors = Cursors { pending: Arc::new(Mutex::new(HashMap::new())), wake };
        let state = State {
            config,
            db: Some(db),
            shared,
            next_seq,
            stored_bytes,
            dedup,
            retention,
            metrics,
            failing_since: None,
            retry,
            cursors: cursors.clone(),
            woken,
        };
        let thread = std::thread::Builder::new()
            .name("sluice-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Invalid { reason: format!("cannot start writer thread: {e}") })?;
        Ok(Writer { thread, events, cursors })
    }

    /// Where the forwarder reports its cursors.
    pub fn cursors(&self) -> Cursors {
        self.cursors.clone()
    }

    /// A read handle on the database this writer owns, for queries.
    pub fn events(&self) -> EventsHandle {
        self.events.clone()
    }

    /// Waits for the final commit.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("writer thread panicked; data not yet committed was not acknowledged");
        }
    }
}

struct State {
    config: WriterConfig,
    db: Option<Arc<Database>>,
    /// Where readers find `db`; emptied while it is closed.
    shared: EventsHandle,
    /// Next sequence number per workspace, as committed.
    next_seq: HashMap<u32, u64>,
    /// Bytes of stored chunk values, as committed.
    stored_bytes: u64,
    /// De-duplication records per workspace, as committed.
    dedup: HashMap<u32, u64>,
    retention: Schedule,
    metrics: Arc<Metrics>,
    failing_since: Option<Instant>,
    retry: Retry,
    cursors: Cursors,
    /// Signalled when cursors are pending.
    woken: Receiver<()>,
}

impl Drop for State {
    /// Readers must not keep the file open once the writer has stopped.
    fn drop(&mut self) {
        self.shared.set(None);
    }
}

/// When to try the store again after a failure, and the wait after that.
struct Retry {
    at: Instant,
    backoff: Duration,
}

impl State {
    fn run(mut self, rx: Receiver<Batch>) {
        loop {
            if self.db.is_none() {
                if !self.refuse_until(&rx, self.retry.at) {
                    return;
                }
                if !self.reopen() {
                    self.back_off();
                    continue;
                }
            }
            // Nothing to wait for but batches and cursors: a day is "forever".
            let wait = self.retention.wait(Instant::now()).unwrap_or(Duration::from_secs(86_400));
            let first = crossbeam_channel::select! {
                recv(rx) -> first => first.map(Some).map_err(|_| RecvTimeoutError::Disconnected),
                recv(self.woken) -> _ => Ok(None),
                default(wait) => Err(RecvTimeoutError::Timeout),
            };
            match first {
                Ok(Some(first)) => {
                    let group = self.gather(&rx, first);
                    self.commit_group(group);
                }
                Ok(None) => self.commit_group(Vec::new()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.db.is_some() && self.retention.due(Instant::now(), self.measured_bytes()) {
                self.trim();
            }
        }
    }

    /// What `[retention] max_bytes` limits: stored chunks plus de-dup records.
    fn measured_bytes(&self) -> u64 {
        let records: u64 = self.dedup.values().sum();
        self.stored_bytes.saturating_add(records.saturating_mul(DEDUP_RECORD_BYTES))
    }

    /// One retention transaction. A failure is logged and tried again at
    /// the next interval: retention never refuses ingest.
    fn trim(&mut self) {
        let Some(db) = self.db.as_ref() else { return };
        let policy = *self.retention.policy();
        let result = db.begin_write().map_err(redb::Error::from).and_then(|tx| {
            let t = retention::trim(&tx, &policy, super::now_ms(), self.measured_bytes())?;
            if t.chunks > 0 {
                tx.commit()?;
            }
            Ok(t)
        });
        match result {
            Ok(t) => {
                self.retention.done(Instant::now(), &t);
                if t.chunks == 0 {
                    return;
                }
                self.stored_bytes = self.stored_bytes.saturating_sub(t.bytes);
                let store = &self.metrics.store;
                store.stored_chunk_bytes.store(self.stored_bytes, Ordering::Relaxed);
                store.events_expired_age.fetch_add(t.events_by_age, Ordering::Relaxed);
                store.events_expired_size.fetch_add(t.events - t.events_by_age, Ordering::Relaxed);
                tracing::debug!(chunks = t.chunks, events = t.events, bytes = t.bytes, "retention deleted old events");
            }
            Err(e) => {
                self.retention.done(Instant::now(), &retention::Trimmed::default());
                tracing::warn!(error = %e, "retention transaction failed; trying again later");
            }
        }
    }

    /// Answers `Unavailable` to every batch that arrives before `at`, so
    /// clients learn at once to retry instead of waiting out their timeout.
    /// False once the pipeline is closed and drained.
    fn refuse_until(&self, rx: &Receiver<Batch>, at: Instant) -> bool {
        loop {
            match rx.recv_deadline(at) {
                Ok(batch) => self.refuse(self.gather(rx, batch)),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// Schedules the next attempt after a failure.
    fn back_off(&mut self) {
        self.retry.at = Instant::now() + self.retry.backoff;
        self.retry.backoff = (self.retry.backoff * 2).min(BACKOFF_MAX);
    }

    /// The first batch plus whatever is queued, up to the commit size.
    fn gather(&self, rx: &Receiver<Batch>, first: Batch) -> Vec<Batch> {
        let mut bytes = first.bytes();
        let mut group = vec![first];
        while bytes < self.config.max_commit_bytes {
            match rx.try_recv() {
                Ok(b) => {
                    bytes += b.bytes();
                    group.push(b);
                }
                Err(_) => break,
            }
        }
        group
    }

    fn refuse(&self, group: Vec<Batch>) {
        for mut b in group {
            b.complete(Outcome::Unavailable);
        }
    }

    /// Opens the database again and reloads the counters from it rather than
    /// keeping ours: a commit that reported failure may still have reached
    /// the disk (say the last fsync failed), and only the file knows.
    fn reopen(&mut self) -> bool {
        match (self.config.opener)().and_then(|db| {
            let seqs = events::load_next_seqs(&db, &self.config.path)?;
            let bytes = events::stored_bytes(&db, &self.config.path)?;
            let dedup = events::dedup_counts(&db, &self.config.path)?;
            Ok((db, seqs, bytes, dedup))
        }) {
            Ok((db, seqs, bytes, dedup)) => {
                let db = Arc::new(db);
                self.shared.set(Some(db.clone()));
                self.db = Some(db);
                self.next_seq = seqs;
                self.stored_bytes = bytes;
                self.dedup = dedup;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "events database still unavailable");
                false
            }
        }
    }

    /// Writes and commits a group, then reports the outcomes.
    fn commit_group(&mut self, group: Vec<Batch>) {
        let started = Instant::now();
        for b in &group {
            self.metrics.stages.observe(Stage::Queue, started.saturating_duration_since(b.submitted));
        }
        let Some(db) = self.db.as_ref() else {
            self.refuse(group);
            return;
        };
        let cursors = self.cursors.take();
        if group.is_empty() && cursors.is_empty() {
            return;
        }
        let counters = Counters {
            next_seq: &self.next_seq,
            stored_bytes: self.stored_bytes,
            dedup: &self.dedup,
            max_dedup: self.config.max_dedup_records,
        };
        match write_group(db, &group, &cursors, counters, self.config.dedup_window) {
            Ok(done) if group.is_empty() => self.committed(group, done),
            Ok(done) => {
                let bytes = group.iter().map(Batch::bytes).sum();
                self.metrics.store.observe_commit(started.elapsed(), group.len(), bytes);
                self.metrics.stages.observe(Stage::Write, done.write);
                self.metrics.stages.observe(Stage::Commit, done.commit);
                self.committed(group, done);
            }
            Err(e) => {
                self.cursors.restore(cursors);
                self.commit_failed(group, e);
            }
        }
    }

    /// Adopts the committed counters and answers every batch.
    fn committed(&mut self, mut group: Vec<Batch>, done: Done) {
        self.next_seq.extend(done.next_seq);
        self.stored_bytes = done.stored_bytes;
        for (ws, delta) in done.dedup_delta {
            let n = self.dedup.entry(ws).or_insert(0);
            *n = n.saturating_add_signed(delta);
        }
        self.metrics.store.dedup_records.store(self.dedup.values().sum(), Ordering::Relaxed);
        self.metrics.store.stored_chunk_bytes.store(done.stored_bytes, Ordering::Relaxed);
        self.retry.backoff = BACKOFF_MIN;
        let store = &self.metrics.store;
        let mut stored = 0u64;
        for (batch, outcome) in group.iter_mut().zip(done.outcomes) {
            match outcome {
                Outcome::Stored { count, first_seq } => {
                    stored += u64::from(count);
                    if count > 0 {
                        let bytes = batch.bytes() as u64;
                        self.shared.publish(Committed { workspace: batch.workspace, first_seq, count, bytes });
                    }
                    store.chunk_bytes_stored.fetch_add(batch.bytes() as u64, Ordering::Relaxed);
                }
                Outcome::Duplicate { .. } => {
                    store.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Unavailable => {}
            }
            match (&self.config.gate, batch.reply.take()) {
                (Some(gate), Some(reply)) => gate.hold(batch.workspace, outcome, reply),
                (None, Some(reply)) => {
                    let _ = reply.send(outcome);
                }
                (_, None) => {}
            }
        }
        store.events_stored.fetch_add(stored, Ordering::Relaxed);
        if let Some(since) = self.failing_since.take() {
            tracing::info!(after = ?since.elapsed(), "commits succeed again; ingest resumed");
        }
    }

    /// Refuses the whole group and closes the database. ERROR once per
    /// streak of failures: an operator must act (free space, check the disk);
    /// the repeats while it lasts are only warnings.
    fn commit_failed(&mut self, group: Vec<Batch>, e: redb::Error) {
        self.metrics.store.commit_failures.fetch_add(1, Ordering::Relaxed);
        let batches = group.len();
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            tracing::error!(error = %e, batches, path = %self.config.path.display(),
                "commit failed; nothing in it was acknowledged, clients are told to retry");
        } else {
            tracing::warn!(error = %e, batches, "commit failed again");
        }
        self.refuse(group);
        // redb will not continue after an I/O error: close it, reopen later
        // (a query still holding it delays the reopen until it finishes).
        self.shared.set(None);
        self.db = None;
        self.back_off();
    }
}

/// What a successful transaction did.
struct Done {
    outcomes: Vec<Outcome>,
    /// Counters to adopt once the commit has returned.
    next_seq: HashMap<u32, u64>,
    stored_bytes: u64,
    /// De-dup records added (or expired, negative) per workspace.
    dedup_delta: HashMap<u32, i64>,
    /// The transaction before its commit, and the commit (fsync).
    write: Duration,
    commit: Duration,
}

/// The committed counters a transaction starts from.
struct Counters<'a> {
    next_seq: &'a HashMap<u32, u64>,
    stored_bytes: u64,
    dedup: &'a HashMap<u32, u64>,
    max_dedup: u64,
}

fn write_group(
    db: &Database,
    group: &[Batch],
    cursors: &HashMap<u32, u64>,
    counters: Counters<'_>,
    window: Duration,
) -> Result<Done, redb::Error> {
    let began = Instant::now();
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    let now = super::now_ms();
    let mut filing = Filing {
        committed: counters.next_seq,
        next_seq: HashMap::new(),
        stored_bytes: counters.stored_bytes,
        dedup: counters.dedup,
        max_dedup: counters.max_dedup,
        dedup_delta: HashMap::new(),
        now,
        cutoff: now.saturating_sub(window.as_millis() as u64),
    };
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut chunks = ChunkRows::open(&tx)?;
        let mut dedup = tx.open_table(DEDUP)?;
        let mut expiry = tx.open_table(DEDUP_EXPIRY)?;
        let mut origins = tx.open_table(ORIGINS)?;
        for batch in group {
            let outcome = match &batch.relayed {
                Some(r) => filing.relay(batch.workspace, r, &mut chunks, &mut origins)?,
                None => filing.file(batch, &mut chunks, &mut dedup, &mut expiry)?,
            };
            outcomes.push(outcome);
        }
        let mut forward = tx.open_table(FORWARD_CURSOR)?;
        for (ws, next) in cursors {
            let at = forward.get(*ws)?.map_or(0, |g| g.value());
            if *next > at {
                forward.insert(*ws, *next)?;
            }
        }
        for ws in expire(&mut dedup, &mut expiry, filing.cutoff)? {
            *filing.dedup_delta.entry(ws).or_insert(0) -= 1;
        }
        let mut seq = tx.open_table(SEQ)?;
        for (ws, next) in &filing.next_seq {
            seq.insert(*ws, *next)?;
        }
        tx.open_table(META)?.insert(CHUNK_BYTES_KEY, filing.stored_bytes)?;
    }
    let write = began.elapsed();
    tx.commit()?;
    Ok(Done {
        outcomes,
        next_seq: filing.next_seq,
        stored_bytes: filing.stored_bytes,
        dedup_delta: filing.dedup_delta,
        write,
        commit: began.elapsed().saturating_sub(write),
    })
}

type DedupTable<'t> = redb::Table<'t, (u32, u128, u64), (u64, u32, u64)>;
type ExpiryTable<'t> = redb::Table<'t, (u64, u32, u128, u64), ()>;

/// The state of one transaction while its batches are filed.
struct Filing<'a> {
    committed: &'a HashMap<u32, u64>,
    next_seq: HashMap<u32, u64>,
    /// Stored chunk bytes including this transaction's chunks.
    stored_bytes: u64,
    /// De-dup records per workspace as committed, the cap, and this transaction's changes.
    dedup: &'a HashMap<u32, u64>,
    max_dedup: u64,
    dedup_delta: HashMap<u32, i64>,
    now: u64,
    /// De-dup records committed before this are outside the window.
    cutoff: u64,
}

impl Filing<'_> {
    /// Stores one batch, or finds it is a duplicate inside the window.
    fn file(
        &mut self,
        batch: &Batch,
        chunks: &mut ChunkRows<'_>,
        dedup: &mut DedupTable<'_>,
        expiry: &mut ExpiryTable<'_>,
    ) -> Result<Outcome, redb::Error> {
        let ws = batch.workspace;
        // An empty batch needs no record: answering `stored` (count 0) twice is harmless.
        let key = batch.dedup.filter(|_| batch.count > 0).map(|h| (ws, u128::from_be_bytes(h.producer), h.batch_id));
        let mut replaces = false;
        if let Some(k) = key {
            let prev = dedup.get(k)?.map(|g| g.value());
            // A record older than the window is not consulted, even if the
            // bounded sweep has not removed it yet: the window is exact.
            if let Some((first_seq, count, at)) = prev
                && at >= self.cutoff
            {
                return Ok(Outcome::Duplicate { first_seq, count });
            }
            replaces = prev.is_some();
            // At the cap, refuse rather than evict a record inside the window.
            let held = self.dedup.get(&ws).copied().unwrap_or(0);
            let now_held = held.saturating_add_signed(self.dedup_delta.get(&ws).copied().unwrap_or(0));
            if !replaces && now_held >= self.max_dedup {
                return Ok(Outcome::Unavailable);
            }
        }
        let committed = self.committed;
        let next = self.next_seq.entry(ws).or_insert_with(|| committed.get(&ws).copied().unwrap_or(1));
        let first_seq = *next;
        if batch.count > 0 {
            chunks.insert((ws, first_seq), batch.chunk.as_slice())?;
            *next += u64::from(batch.count);
            self.stored_bytes += batch.chunk.len() as u64;
        }
        if let Some(k) = key {
            dedup.insert(k, (first_seq, batch.count, self.now))?;
            expiry.insert((self.now, k.0, k.1, k.2), ())?;
            if !replaces {
                *self.dedup_delta.entry(ws).or_insert(0) += 1;
            }
        }
        Ok(Outcome::Stored { first_seq, count: batch.count })
    }
}

type OriginTable<'t> = redb::Table<'t, (&'static str, u64, u32), (u64, u64)>;

impl Filing<'_> {
    /// Stores the events of a relayed batch that lie past its origin's
    /// high-water mark (a redelivered or re-sent message is skipped, or cut
    /// where it overlaps), and moves the mark. `Unavailable` when events
    /// before it are missing (the message is delivered again later).
    fn relay(
        &mut self,
        ws: u32,
        r: &Relayed,
        chunks: &mut ChunkRows<'_>,
        origins: &mut OriginTable<'_>,
    ) -> Result<Outcome, redb::Error> {
        let key = (r.node.as_str(), r.incarnation, ws);
        let mark = origins.get(key)?.map(|g| g.value().0);
        if mark.is_some_and(|m| m < r.from_seq) && !r.accept_gap {
            return Ok(Outcome::Unavailable);
        }
        let skip_below = mark.unwrap_or(0);
        let committed = self.committed;
        let next = self.next_seq.entry(ws).or_insert_with(|| committed.get(&ws).copied().unwrap_or(1));
        let first_seq = *next;
        let mut stored = 0u32;
        let mut at = r.first_seq;
        for (value, count) in &r.parts {
            let end = at.saturating_add(u64::from(*count));
            if end > skip_below && *count > 0 {
                let cut = (at < skip_below).then(|| super::chunk::slice(value, (skip_below - at) as u32, *count));
                let (value, count) = match cut {
                    None => (std::borrow::Cow::Borrowed(value.as_slice()), *count),
                    Some(Ok((v, c))) => (std::borrow::Cow::Owned(v), c),
                    Some(Err(e)) => {
                        // The consumer decoded it before; only a bug gets here.
                        tracing::warn!(node = %r.node, error = %e, "a relayed chunk did not cut; stored whole");
                        (std::borrow::Cow::Borrowed(value.as_slice()), *count)
                    }
                };
                chunks.insert((ws, *next), &value)?;
                *next += u64::from(count);
                stored += count;
                self.stored_bytes += value.len() as u64;
            }
            at = end;
        }
        let new = mark.is_none();
        origins.insert(key, (mark.unwrap_or(0).max(at), self.now))?;
        if new && origins.len()? > MAX_ORIGINS {
            forget_oldest_origin(origins)?;
        }
        Ok(match stored {
            0 => Outcome::Duplicate { first_seq: 0, count: 0 },
            count => Outcome::Stored { first_seq, count },
        })
    }
}

/// Removes the high-water mark not updated for longest.
fn forget_oldest_origin(origins: &mut OriginTable<'_>) -> Result<(), redb::Error> {
    let mut oldest: Option<((String, u64, u32), u64)> = None;
    for row in origins.iter()? {
        let (k, v) = row?;
        let updated = v.value().1;
        if oldest.as_ref().is_none_or(|(_, at)| updated < *at) {
            let (node, inc, ws) = k.value();
            oldest = Some(((node.to_string(), inc, ws), updated));
        }
    }
    if let Some(((node, inc, ws), _)) = oldest {
        tracing::warn!(node, workspace = ws, "forgetting the high-water mark of the origin heard from longest ago");
        origins.remove((node.as_str(), inc, ws))?;
    }
    Ok(())
}

/// Removes up to [`EXPIRE_PER_COMMIT`] de-dup records committed before
/// `cutoff`; returns the workspace of each record removed.
fn expire(dedup: &mut DedupTable<'_>, expiry: &mut ExpiryTable<'_>, cutoff: u64) -> Result<Vec<u32>, redb::Error> {
    let mut removed = Vec::new();
    for _ in 0..EXPIRE_PER_COMMIT {
        let key = match expiry.first()? {
            Some((k, _)) if k.value().0 < cutoff => k.value(),
            _ => break,
        };
        expiry.remove(key)?;
        let record = (key.1, key.2, key.3);
        // The batch may have been stored again after its window: keep that newer record.
        let at = dedup.get(record)?.map(|g| g.value().2);
        if at == Some(key.0) {
            dedup.remove(record)?;
            removed.push(key.1);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use redb::ReadableDatabase;
    use tokio::sync::oneshot;

    use super::*;
    use crate::pipeline::DedupId;
    use crate::pipeline::{MIN_CHARGE, Pipeline};
    use crate::store::fault::{self, Disk};

    const WS: u32 = 1;
    const EVENTS_PER_BATCH: u32 = 2;
    /// Fills a chunk after its tag; stripped when reading back.
    const PAD: char = '.';

    /// A real writer and pipeline on a database whose disk can fail.
    struct Harness {
        pipeline: Pipeline,
        writer: Writer,
        disk: Arc<Disk>,
        metrics: Arc<Metrics>,
        path: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Harness {
        fn start() -> Harness {
            Harness::with_window(Duration::from_secs(60))
        }

        fn with_window(window: Duration) -> Harness {
            Harness::with_limits(window, u64::MAX)
        }

        fn with_limits(window: Duration, max_dedup_records: u64) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(super::super::EVENTS_FILE);
            drop(events::open(&path, 1 << 20).unwrap());
            let disk = Disk::new();
            let (p, d) = (path.clone(), disk.clone());
            let opener: Opener = Box::new(move || fault::open_db(&p, d.clone()));
            let config = WriterConfig {
                path: path.clone(),
                opener,
                dedup_window: window,
                max_dedup_records,
                max_commit_bytes: 1 << 20,
                retention: Policy::default(),
                gate: None,
            };
            let (pipeline, rx) = Pipeline::new(4096 * MIN_CHARGE);
            let metrics = Arc::new(Metrics::default());
            let writer = Writer::spawn(config, rx, metrics.clone()).unwrap();
            Harness { pipeline, writer, disk, metrics, path, _dir: dir }
        }

        /// Hands on a batch whose chunk is `tag` padded to `len` bytes.
        fn submit(&self, tag: &str, len: usize, dedup: Option<DedupId>) -> oneshot::Receiver<Outcome> {
            self.submit_counted(tag, len, dedup, EVENTS_PER_BATCH)
        }

        fn submit_counted(
            &self,
            tag: &str,
            len: usize,
            dedup: Option<DedupId>,
            count: u32,
        ) -> oneshot::Receiver<Outcome> {
            let (reply, rx) = oneshot::channel();
            let mut chunk = tag.as_bytes().to_vec();
            chunk.resize(len.max(tag.len()), PAD as u8);
            let permit = self.pipeline.try_reserve(chunk.len()).expect("budget");
            let workspace = WS;
            let batch = Batch {
                workspace,
                count,
                chunk,
                dedup,
                relayed: None,
                reply: Some(reply),
                permit,
                submitted: Instant::now(),
            };
            self.pipeline.submit(batch).expect("writer running");
            rx
        }

        fn send(&self, tag: &str, dedup: Option<DedupId>) -> Outcome {
            self.submit(tag, 0, dedup).blocking_recv().expect("an outcome")
        }

        fn failures(&self) -> u64 {
            self.metrics.store.commit_failures.load(Ordering::Relaxed)
        }

        /// Sends small batches until one is stored again.
        fn until_resumed(&self, ledger: &mut Ledger) {
            let deadline = Instant::now() + Duration::from_secs(10);
            for i in 0.. {
                assert!(Instant::now() < deadline, "ingest did not resume");
                let tag = format!("after-{i}");
                let outcome = self.send(&tag, None);
                ledger.record(tag, outcome);
                if matches!(outcome, Outcome::Stored { .. }) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        /// Stops the writer and reads back every stored chunk's tag by first seq.
        fn stop(self) -> BTreeMap<u64, String> {
            drop(self.pipeline);
            self.writer.join();
            let db = events::open(&self.path, 1 << 20).unwrap();
            let tx = db.begin_read().unwrap();
            let chunks = tx.open_table(events::CHUNKS).unwrap();
            let tails = tx.open_table(events::CHUNK_TAILS).unwrap();
            let tag = |k: (u32, u64), v: &[u8]| {
                let value = crate::store::rows::join(&tails, k, v).unwrap();
                String::from_utf8_lossy(&value).trim_end_matches(PAD).to_string()
            };
            chunks.iter().unwrap().map(|r| r.unwrap()).map(|(k, v)| (k.value().1, tag(k.value(), v.value()))).collect()
        }
    }

    /// What the writer answered, by batch tag.
    #[derive(Default)]
    struct Ledger {
        stored: BTreeMap<u64, String>,
        refused: Vec<String>,
    }

    impl Ledger {
        fn record(&mut self, tag: String, outcome: Outcome) {
            match outcome {
                Outcome::Stored { first_seq, count } => {
                    assert_eq!(count, EVENTS_PER_BATCH);
                    assert!(self.stored.insert(first_seq, tag).is_none(), "seq {first_seq} reused");
                }
                Outcome::Unavailable => self.refused.push(tag),
                other => panic!("{tag}: unexpected {other:?}"),
            }
        }

        fn send_stored(&mut self, h: &Harness, tag: &str) {
            let outcome = h.send(tag, None);
            assert!(matches!(outcome, Outcome::Stored { .. }), "{tag}: {outcome:?}");
            self.record(tag.to_string(), outcome);
        }

        /// On disk is exactly what was reported stored, at its sequence
        /// numbers, and numbering ran on from the last committed batch:
        /// refused batches used up no numbers.
        fn check(&self, on_disk: &BTreeMap<u64, String>) {
            assert_eq!(on_disk, &self.stored, "refused: {:?}", self.refused);
            let seqs: Vec<u64> = self.stored.keys().copied().collect();
            let expected: Vec<u64> = (0..seqs.len() as u64).map(|i| 1 + i * u64::from(EVENTS_PER_BATCH)).collect();
            assert_eq!(seqs, expected);
        }
    }

    #[test]
    fn a_broken_disk_refuses_everything_and_ingest_resumes_by_itself() {
        let h = Harness::start();
        let mut ledger = Ledger::default();
        for i in 0..3 {
            ledger.send_stored(&h, &format!("before-{i}"));
        }

        h.disk.set_broken(true);
        let acked = DedupId { producer: [9; 16], batch_id: 7 };
        assert_eq!(h.send("acked-7", Some(acked)), Outcome::Unavailable);
        // Long enough for several reopen attempts while the disk still fails.
        let until = Instant::now() + Duration::from_millis(400);
        for i in 0.. {
            if Instant::now() > until {
                break;
            }
            // Several at once, so that whole groups are refused too.
            let tags: Vec<String> = (0..4).map(|j| format!("during-{i}-{j}")).collect();
            let pending: Vec<_> = tags.iter().map(|t| h.submit(t, 0, None)).collect();
            for (tag, rx) in tags.into_iter().zip(pending) {
                let outcome = rx.blocking_recv().unwrap();
                assert_eq!(outcome, Outcome::Unavailable, "{tag}");
                ledger.record(tag, outcome);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(h.failures() >= 1, "failed commits are counted");

        h.disk.set_broken(false);
        h.until_resumed(&mut ledger);
        // The refused acked batch left no de-dup record: its retry is stored, once.
        let retry = h.send("acked-7", Some(acked));
        let Outcome::Stored { first_seq, count } = retry else { panic!("retry of a refused batch: {retry:?}") };
        assert_eq!(h.send("acked-7", Some(acked)), Outcome::Duplicate { first_seq, count });
        ledger.record("acked-7".into(), retry);
        ledger.send_stored(&h, "last");
        ledger.check(&h.stop());
    }

    #[test]
    fn a_full_disk_costs_one_failed_commit_per_backoff_not_one_per_batch() {
        const BIG: usize = 512 * 1024;
        let h = Harness::start();
        let mut ledger = Ledger::default();
        ledger.send_stored(&h, "before");

        // The database still opens; only commits that need room fail.
        h.disk.full_at(std::fs::metadata(&h.path).unwrap().len());
        for i in 0..40 {
            let tag = format!("big-{i}");
            let outcome = h.submit(&tag, BIG, None).blocking_recv().unwrap();
            assert_eq!(outcome, Outcome::Unavailable, "{tag}");
            ledger.record(tag, outcome);
            std::thread::sleep(Duration::from_millis(1));
        }
        // Batches come every millisecond or so; commits are tried after
        // waits of 50, 100, 200 ms and so on. Even on a very slow machine
        // that is a handful of attempts for the 40 batches.
        let failures = h.failures();
        assert!((1..=10).contains(&failures), "{failures} failed commits for 40 batches");

        h.disk.free();
        h.until_resumed(&mut ledger);
        let outcome = h.submit("big-after", BIG, None).blocking_recv().unwrap();
        ledger.record("big-after".into(), outcome);
        assert!(matches!(outcome, Outcome::Stored { .. }), "{outcome:?}");
        ledger.check(&h.stop());
    }

    #[test]
    fn the_dedup_window_is_exact_and_a_late_retry_is_stored_again() {
        let window = Duration::from_millis(300);
        let h = Harness::with_window(window);
        let id = Some(DedupId { producer: [5; 16], batch_id: 9 });
        let Outcome::Stored { first_seq, .. } = h.send("first", id) else { panic!("stored") };
        assert_eq!(h.send("retry", id), Outcome::Duplicate { first_seq, count: EVENTS_PER_BATCH });
        std::thread::sleep(window + Duration::from_millis(50));
        // Outside the window the old record is not consulted, swept or not.
        let Outcome::Stored { first_seq: again, .. } = h.send("late", id) else { panic!("stored again") };
        assert!(again > first_seq);
        // Sweeping the old record (on later commits) must keep the new one.
        std::thread::sleep(Duration::from_millis(100));
        h.send("other", None);
        assert_eq!(h.send("late-retry", id), Outcome::Duplicate { first_seq: again, count: EVENTS_PER_BATCH });
        let on_disk = h.stop();
        let tags: Vec<&str> = on_disk.values().map(String::as_str).collect();
        assert_eq!(tags, ["first", "late", "other"]);
    }

    /// A relayed message from `edge` (incarnation 1): events `first..first + n`
    /// of the origin, in chunks of `per` events, the edge cursor at `from`.
    fn relayed(first: u64, n: u32, per: u32, from: u64, accept_gap: bool) -> Box<Relayed> {
        let mut parts = Vec::new();
        let mut at = first;
        while at < first + u64::from(n) {
            let k = per.min((first + u64::from(n) - at) as u32);
            let mut b = crate::store::chunk::ChunkBuilder::with_capacity(64);
            for i in 0..k {
                let block = b.records(1);
                block.begin(crate::record::Kind::Log, 1);
                block.u64(crate::record::tag::TIMESTAMP, at + u64::from(i));
                block.end();
            }
            let (value, _) = b.seal("tcp", "p");
            let origin = crate::store::chunk::Origin { node: "edge".into(), first_seq: at };
            parts.push((crate::store::chunk::with_origin(&value, &origin).unwrap(), k));
            at += u64::from(k);
        }
        Box::new(Relayed { node: "edge".into(), incarnation: 1, from_seq: from, first_seq: first, parts, accept_gap })
    }

    #[test]
    fn relayed_events_are_stored_once_in_origin_order() {
        let h = Harness::start();
        let send = |r: Box<Relayed>| {
            let (reply, rx) = oneshot::channel();
            let count = r.parts.iter().map(|(_, n)| *n).sum();
            let permit = h.pipeline.try_reserve(1).expect("budget");
            let batch = Batch {
                workspace: WS,
                count,
                chunk: Vec::new(),
                dedup: None,
                relayed: Some(r),
                reply: Some(reply),
                permit,
                submitted: Instant::now(),
            };
            h.pipeline.submit(batch).expect("writer running");
            rx.blocking_recv().unwrap()
        };
        assert_eq!(send(relayed(1, 4, 2, 1, false)), Outcome::Stored { first_seq: 1, count: 4 });
        assert_eq!(send(relayed(1, 4, 2, 1, false)), Outcome::Duplicate { first_seq: 0, count: 0 }, "redelivered");
        // Re-sent after a crash, cut differently: only events 5.. are new.
        assert_eq!(send(relayed(3, 5, 5, 3, false)), Outcome::Stored { first_seq: 5, count: 3 });
        // Events 8..10 never arrived: refused until they do, or until told to accept the gap.
        assert_eq!(send(relayed(10, 2, 2, 10, false)), Outcome::Unavailable);
        assert_eq!(send(relayed(8, 2, 2, 8, false)), Outcome::Stored { first_seq: 8, count: 2 });
        assert_eq!(send(relayed(10, 2, 2, 10, false)), Outcome::Stored { first_seq: 10, count: 2 });
        assert_eq!(send(relayed(20, 1, 1, 20, false)), Outcome::Unavailable);
        assert_eq!(send(relayed(20, 1, 1, 20, true)), Outcome::Stored { first_seq: 12, count: 1 });
        // Retention at the edge dropped 21..30 before forwarding: no gap.
        assert_eq!(send(relayed(30, 1, 1, 21, false)), Outcome::Stored { first_seq: 13, count: 1 });
        drop(h.pipeline);
        h.writer.join();
        let events = crate::store::query::EventsHandle::open(h._dir.path(), 1 << 20).unwrap();
        let q = crate::store::query::Query::unfiltered(WS, 100, u64::MAX);
        let page = events
            .query(&q, |e| {
                (e.seq, e.origin.map(|(n, s)| (n.to_string(), s)), e.record.get_u64(crate::record::tag::TIMESTAMP))
            })
            .unwrap();
        let origin_seqs: Vec<u64> = page.events.iter().map(|(_, o, _)| o.as_ref().unwrap().1).collect();
        assert_eq!(origin_seqs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 20, 30]);
        assert!(
            page.events.iter().all(|(_, o, ts)| Some(o.as_ref().unwrap().1) == *ts),
            "each event keeps its origin seq"
        );
        assert_eq!(page.events.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(), (1..=13).collect::<Vec<_>>());
    }

    #[test]
    fn dedup_records_are_capped_per_workspace_and_empty_batches_keep_none() {
        let h = Harness::with_limits(Duration::from_secs(60), 2);
        let id = |n| Some(DedupId { producer: [6; 16], batch_id: n });
        for n in 0..100 {
            let empty = h.submit_counted("", 0, id(1000 + n), 0).blocking_recv().unwrap();
            assert!(matches!(empty, Outcome::Stored { count: 0, .. }), "{empty:?}");
        }
        assert_eq!(h.metrics.store.dedup_records.load(Ordering::Relaxed), 0, "empty batches leave no record");
        let Outcome::Stored { first_seq, .. } = h.send("one", id(1)) else { panic!("stored") };
        assert!(matches!(h.send("two", id(2)), Outcome::Stored { .. }));
        assert_eq!(h.send("three", id(3)), Outcome::Unavailable, "at the cap: refused, nothing evicted");
        assert_eq!(h.send("one again", id(1)), Outcome::Duplicate { first_seq, count: EVENTS_PER_BATCH });
        assert!(matches!(h.send("unacked", None), Outcome::Stored { .. }), "unacked batches need no record");
        assert_eq!(h.metrics.store.dedup_records.load(Ordering::Relaxed), 2);
        let on_disk = h.stop();
        let tags: Vec<&str> = on_disk.values().map(String::as_str).collect();
        assert_eq!(tags, ["one", "two", "unacked"]);
    }
}
