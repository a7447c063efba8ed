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
//! When a commit fails (disk full, I/O error), nothing in it is reported
//! stored: every batch gets `Unavailable`, the database is closed and
//! reopened (redb refuses further use after an I/O error), and the thread
//! keeps answering `Unavailable` with a backoff until a commit succeeds again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use redb::{Database, Durability, ReadableTable};

use super::StoreError;
use super::events::{self, CHUNKS, DEDUP, DEDUP_EXPIRY, SEQ};
use crate::metrics::Metrics;
use crate::pipeline::{Batch, Outcome};

/// Most expired de-duplication records removed per commit.
const EXPIRE_PER_COMMIT: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Opens the events database; called again after a failed commit.
pub type Opener = Box<dyn FnMut() -> Result<Database, StoreError> + Send>;

/// What the writer needs.
pub struct WriterConfig {
    /// For messages only.
    pub path: PathBuf,
    pub opener: Opener,
    pub dedup_window: Duration,
    pub max_commit_bytes: usize,
}

impl WriterConfig {
    /// A writer on `path` with the standard opener.
    pub fn new(path: PathBuf, cache_bytes: usize, dedup_window: Duration, max_commit_bytes: usize) -> WriterConfig {
        let p = path.clone();
        WriterConfig { path, opener: Box::new(move || events::open(&p, cache_bytes)), dedup_window, max_commit_bytes }
    }
}

/// The running writer thread.
pub struct Writer {
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens the database (so start-up fails on a locked or too-new store)
    /// and starts the thread. It exits when every pipeline sender is gone and
    /// the channel is drained.
    pub fn spawn(mut config: WriterConfig, rx: Receiver<Batch>, metrics: Arc<Metrics>) -> Result<Writer, StoreError> {
        let db = (config.opener)()?;
        let next_seq = events::load_next_seqs(&db, &config.path)?;
        let state = State { config, db: Some(db), next_seq, metrics, failing_since: None };
        let thread = std::thread::Builder::new()
            .name("sluice-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Invalid { reason: format!("cannot start writer thread: {e}") })?;
        Ok(Writer { thread })
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
    db: Option<Database>,
    /// Next sequence number per workspace, as committed.
    next_seq: HashMap<u32, u64>,
    metrics: Arc<Metrics>,
    failing_since: Option<Instant>,
}

impl State {
    fn run(mut self, rx: Receiver<Batch>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.db.is_none() && !self.reopen() {
                // Answer what is waiting, then wait a little before trying again.
                match rx.recv_timeout(backoff) {
                    Ok(batch) => self.refuse(self.gather(&rx, batch)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            let Ok(first) = rx.recv() else { return };
            let group = self.gather(&rx, first);
            if self.commit_group(group) {
                backoff = BACKOFF_MIN;
            }
        }
    }

    /// The first batch plus whatever is queued, up to the commit size.
    fn gather(&self, rx: &Receiver<Batch>, first: Batch) -> Vec<Batch> {
        let mut bytes = first.chunk.len();
        let mut group = vec![first];
        while bytes < self.config.max_commit_bytes {
            match rx.try_recv() {
                Ok(b) => {
                    bytes += b.chunk.len();
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

    fn reopen(&mut self) -> bool {
        match (self.config.opener)().and_then(|db| {
            let seqs = events::load_next_seqs(&db, &self.config.path)?;
            Ok((db, seqs))
        }) {
            Ok((db, seqs)) => {
                self.db = Some(db);
                self.next_seq = seqs;
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "events database still unavailable");
                false
            }
        }
    }

    /// Writes and commits a group; reports outcomes. False if the commit failed.
    fn commit_group(&mut self, mut group: Vec<Batch>) -> bool {
        let started = Instant::now();
        let Some(db) = self.db.as_ref() else {
            self.refuse(group);
            return false;
        };
        let result = write_group(db, &group, &self.next_seq, self.config.dedup_window);
        match result {
            Ok(done) => {
                self.metrics.store.observe_commit(started.elapsed());
                self.next_seq.extend(done.next_seq);
                let mut stored = 0u64;
                for (batch, outcome) in group.iter_mut().zip(done.outcomes) {
                    match outcome {
                        Outcome::Stored { count, .. } => {
                            stored += u64::from(count);
                            self.metrics
                                .store
                                .chunk_bytes_stored
                                .fetch_add(batch.chunk.len() as u64, Ordering::Relaxed);
                        }
                        Outcome::Duplicate { .. } => {
                            self.metrics.store.duplicates.fetch_add(1, Ordering::Relaxed);
                        }
                        Outcome::Unavailable => {}
                    }
                    batch.complete(outcome);
                }
                self.metrics.store.events_stored.fetch_add(stored, Ordering::Relaxed);
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(after = ?since.elapsed(), "commits succeed again; ingest resumed");
                }
                true
            }
            Err(e) => {
                self.metrics.store.commit_failures.fetch_add(1, Ordering::Relaxed);
                if self.failing_since.is_none() {
                    self.failing_since = Some(Instant::now());
                    tracing::error!(error = %e, batches = group.len(), "commit failed; nothing in it was acknowledged, clients are told to retry");
                } else {
                    tracing::warn!(error = %e, batches = group.len(), "commit failed again");
                }
                self.refuse(group);
                // redb will not continue after an I/O error: start afresh.
                self.db = None;
                false
            }
        }
    }
}

/// What a successful transaction did.
struct Done {
    outcomes: Vec<Outcome>,
    /// Counters to adopt once the commit has returned.
    next_seq: HashMap<u32, u64>,
}

fn write_group(
    db: &Database,
    group: &[Batch],
    committed: &HashMap<u32, u64>,
    window: Duration,
) -> Result<Done, redb::Error> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    let now = super::now_ms();
    let mut next_seq: HashMap<u32, u64> = HashMap::new();
    let mut outcomes = Vec::with_capacity(group.len());
    {
        let mut chunks = tx.open_table(CHUNKS)?;
        let mut dedup = tx.open_table(DEDUP)?;
        let mut expiry = tx.open_table(DEDUP_EXPIRY)?;
        for batch in group {
            let ws = batch.workspace;
            let key = batch.dedup.map(|h| (ws, u128::from_be_bytes(h.producer), h.batch_id));
            if let Some(k) = key
                && let Some(prev) = dedup.get(k)?
            {
                let (first_seq, count, _) = prev.value();
                outcomes.push(Outcome::Duplicate { first_seq, count });
                continue;
            }
            let next = next_seq.entry(ws).or_insert_with(|| committed.get(&ws).copied().unwrap_or(1));
            let first_seq = *next;
            if batch.count > 0 {
                chunks.insert((ws, first_seq), batch.chunk.as_slice())?;
                *next += u64::from(batch.count);
            }
            if let Some(k) = key {
                dedup.insert(k, (first_seq, batch.count, now))?;
                expiry.insert((now, k.0, k.1, k.2), ())?;
            }
            outcomes.push(Outcome::Stored { first_seq, count: batch.count });
        }
        expire(&mut dedup, &mut expiry, now.saturating_sub(window.as_millis() as u64))?;
        let mut seq = tx.open_table(SEQ)?;
        for (ws, next) in &next_seq {
            seq.insert(*ws, *next)?;
        }
    }
    tx.commit()?;
    Ok(Done { outcomes, next_seq })
}

type DedupTable<'t> = redb::Table<'t, (u32, u128, u64), (u64, u32, u64)>;
type ExpiryTable<'t> = redb::Table<'t, (u64, u32, u128, u64), ()>;

/// Removes up to [`EXPIRE_PER_COMMIT`] de-dup records committed before `cutoff`.
fn expire(dedup: &mut DedupTable<'_>, expiry: &mut ExpiryTable<'_>, cutoff: u64) -> Result<(), redb::Error> {
    for _ in 0..EXPIRE_PER_COMMIT {
        let key = match expiry.first()? {
            Some((k, _)) if k.value().0 < cutoff => k.value(),
            _ => break,
        };
        expiry.remove(key)?;
        dedup.remove((key.1, key.2, key.3))?;
    }
    Ok(())
}
