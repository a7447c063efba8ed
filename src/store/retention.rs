//! Retention: deleting the oldest chunks once they are older than
//! `max_age` or while the stored chunk bytes exceed `max_bytes`.
//!
//! It runs on the writer thread (the only owner of `events.redb`), between
//! group commits, one small transaction at a time: at most
//! [`MAX_CHUNKS_PER_TRIM`] chunks or [`MAX_BYTES_PER_TRIM`] bytes. A backlog
//! (a limit lowered on a full store) is worked off one slice per loop of the
//! writer, so a commit group waits for at most one slice.
//!
//! Oldest-first: by age, each workspace is trimmed from its first chunk on
//! while the chunk's newest event is past the cutoff. By size, the chunk
//! whose oldest event is the oldest of any workspace's first chunk goes
//! first, so all workspaces lose their oldest data, not one workspace all
//! of its data. redb reuses the pages of deleted rows for later commits, so
//! the file stops growing once ingest and retention balance; it does not
//! shrink.
//!
//! While forwarding runs (and `[forward] retention_may_drop_unforwarded` is
//! not set), a chunk is never deleted before the forwarder's cursor has
//! passed it: the store then grows past its limits until NATS takes the
//! backlog, and a full disk refuses ingest as always.
//!
//! The stored size is the sum of the chunk rows' values (compressed), kept
//! in the `meta` table under [`CHUNK_BYTES_KEY`] in the same transactions
//! that add and delete chunks, so it never needs a scan. The file is larger
//! by redb's page overhead.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use redb::{ReadableTable, WriteTransaction};

use super::chunk;
use super::events::{CHUNK_BYTES_KEY, FORWARD_CURSOR, META, SEQ};
use super::rows::ChunkRows;

/// Most chunks deleted in one transaction.
pub const MAX_CHUNKS_PER_TRIM: usize = 256;
/// Most chunk bytes deleted in one transaction.
pub const MAX_BYTES_PER_TRIM: u64 = 32 << 20;

/// The limits, as configured in `[retention]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
    /// How often the age limit is looked at (the size limit is also looked
    /// at after every commit that takes the store over it).
    pub check_every: Duration,
    /// Keep chunks the forwarder has not passed yet.
    pub hold_unforwarded: bool,
}

impl Policy {
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// What one transaction deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub chunks: u64,
    pub events: u64,
    pub bytes: u64,
    /// Deleted for age; the rest were deleted for size.
    pub events_by_age: u64,
    /// The transaction stopped at its budget: more is due at once.
    pub more: bool,
}

/// When the writer should trim next.
#[derive(Debug)]
pub struct Schedule {
    policy: Policy,
    next: Instant,
    /// The last trim found nothing to delete: the size trigger waits for the
    /// interval too (so a counter that disagrees with the rows cannot make
    /// every loop of the writer trim).
    idle: bool,
}

impl Schedule {
    pub fn new(policy: Policy) -> Schedule {
        Schedule { policy, next: Instant::now(), idle: false }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// How long the writer may wait for a batch before trimming is due;
    /// `None` when retention is off.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        (!self.policy.is_off()).then(|| self.next.saturating_duration_since(now))
    }

    /// Whether to trim now, given the stored bytes as committed.
    pub fn due(&self, now: Instant, stored_bytes: u64) -> bool {
        if self.policy.is_off() {
            return false;
        }
        now >= self.next || (!self.idle && self.policy.max_bytes.is_some_and(|max| stored_bytes > max))
    }

    /// After a trim: again at once if it stopped at its budget, else after the interval.
    pub fn done(&mut self, now: Instant, t: &Trimmed) {
        self.next = if t.more { now } else { now + self.policy.check_every };
        self.idle = t.chunks == 0;
    }
}

/// Deletes up to one slice of chunks inside `tx`; the caller commits (or,
/// when nothing was deleted, drops the transaction).
pub fn trim(tx: &WriteTransaction, policy: &Policy, now_ms: u64, stored_bytes: u64) -> Result<Trimmed, redb::Error> {
    let mut out = Trimmed::default();
    let workspaces: Vec<u32> = {
        let seq = tx.open_table(SEQ)?;
        seq.iter()?.map(|r| r.map(|(k, _)| k.value())).collect::<Result<_, _>>()?
    };
    let held = if policy.hold_unforwarded {
        let cursors = tx.open_table(FORWARD_CURSOR)?;
        let rows: Vec<(u32, u64)> =
            cursors.iter()?.map(|r| r.map(|(k, v)| (k.value(), v.value()))).collect::<Result<_, _>>()?;
        Some(rows.into_iter().collect::<std::collections::HashMap<_, _>>())
    } else {
        None
    };
    // Whether the forwarder has yet to pass this chunk.
    let unforwarded = |ws: u32, f: &First| {
        held.as_ref().is_some_and(|c| f.seq.saturating_add(u64::from(f.count)) > c.get(&ws).copied().unwrap_or(1))
    };
    let mut chunks = ChunkRows::open(tx)?;
    if let Some(age) = policy.max_age {
        let cutoff = now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        for &ws in &workspaces {
            trim_by_age(&mut chunks, ws, cutoff, &unforwarded, &mut out)?;
            if out.more {
                break;
            }
        }
        out.events_by_age = out.events;
    }
    if let Some(max) = policy.max_bytes
        && !out.more
    {
        let excess = stored_bytes.saturating_sub(out.bytes).saturating_sub(max);
        trim_by_size(&mut chunks, &workspaces, excess, &unforwarded, &mut out)?;
    }
    if out.chunks > 0 {
        tx.open_table(META)?.insert(CHUNK_BYTES_KEY, stored_bytes.saturating_sub(out.bytes))?;
    }
    Ok(out)
}

/// The first chunk of a workspace: its key, size, event count and received-at range.
struct First {
    seq: u64,
    bytes: u64,
    count: u32,
    min_ms: u64,
    max_ms: u64,
}

fn first_chunk(chunks: &ChunkRows<'_>, ws: u32) -> Result<Option<First>, redb::Error> {
    let Some(row) = chunks.chunks.range((ws, 0)..=(ws, u64::MAX))?.next() else { return Ok(None) };
    let (k, v) = row?;
    let (seq, head) = (k.value().1, v.value());
    // A damaged header reads as "received at 0": the oldest, so it goes first
    // rather than pinning everything behind it forever.
    let (count, min_ms, max_ms) = chunk::peek(head).unwrap_or((0, 0, 0));
    Ok(Some(First { seq, bytes: chunks.stored_len((ws, seq), head)?, count, min_ms, max_ms }))
}

/// Deletes one chunk and counts it; false once the slice's budget is spent.
fn delete(chunks: &mut ChunkRows<'_>, ws: u32, first: &First, out: &mut Trimmed) -> Result<bool, redb::Error> {
    out.bytes += chunks.remove((ws, first.seq))?;
    out.chunks += 1;
    out.events += u64::from(first.count);
    out.more = out.chunks >= MAX_CHUNKS_PER_TRIM as u64 || out.bytes >= MAX_BYTES_PER_TRIM;
    Ok(!out.more)
}

/// Tells chunks that must stay (not forwarded yet).
type Keep<'a> = dyn Fn(u32, &First) -> bool + 'a;

fn trim_by_age(
    chunks: &mut ChunkRows<'_>,
    ws: u32,
    cutoff: u64,
    keep: &Keep<'_>,
    out: &mut Trimmed,
) -> Result<(), redb::Error> {
    while let Some(first) = first_chunk(chunks, ws)? {
        if first.max_ms >= cutoff || keep(ws, &first) || !delete(chunks, ws, &first, out)? {
            break;
        }
    }
    Ok(())
}

/// Deletes oldest-first across workspaces until `excess` bytes are gone.
fn trim_by_size(
    chunks: &mut ChunkRows<'_>,
    workspaces: &[u32],
    excess: u64,
    keep: &Keep<'_>,
    out: &mut Trimmed,
) -> Result<(), redb::Error> {
    let mut freed = 0;
    let mut oldest = BinaryHeap::new();
    for &ws in workspaces {
        if let Some(f) = first_chunk(chunks, ws)? {
            oldest.push(Reverse((f.min_ms, ws)));
        }
    }
    while freed < excess {
        let Some(Reverse((_, ws))) = oldest.pop() else { break };
        let Some(first) = first_chunk(chunks, ws)? else { continue };
        if keep(ws, &first) {
            continue;
        }
        freed += first.bytes;
        if !delete(chunks, ws, &first, out)? {
            break;
        }
        if let Some(next) = first_chunk(chunks, ws)? {
            oldest.push(Reverse((next.min_ms, ws)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::ReadableDatabase;

    use super::*;
    use crate::store::chunk::ChunkMeta;
    use crate::store::events;

    /// A store with chunks of `bytes` raw bytes each, received at the given times.
    struct Store {
        db: redb::Database,
        _dir: tempfile::TempDir,
    }

    impl Store {
        fn new() -> Store {
            let dir = tempfile::tempdir().unwrap();
            let db = events::open(&dir.path().join("events.redb"), 1 << 20).unwrap();
            Store { db, _dir: dir }
        }

        fn add(&self, ws: u32, seq: u64, received_ms: u64, bytes: usize) {
            let meta = ChunkMeta {
                listener: "t",
                peer: "p",
                count: 1,
                min_received_ms: received_ms,
                max_received_ms: received_ms,
            };
            let value = chunk::encode(&meta, &vec![b'x'; bytes]);
            let tx = self.db.begin_write().unwrap();
            {
                let mut c = tx.open_table(events::CHUNKS).unwrap();
                c.insert((ws, seq), value.as_slice()).unwrap();
                tx.open_table(SEQ).unwrap().insert(ws, seq + 1).unwrap();
                let mut meta = tx.open_table(META).unwrap();
                let before = meta.get(CHUNK_BYTES_KEY).unwrap().map_or(0, |v| v.value());
                meta.insert(CHUNK_BYTES_KEY, before + value.len() as u64).unwrap();
            }
            tx.commit().unwrap();
        }

        fn stored(&self) -> u64 {
            events::stored_bytes(&self.db, std::path::Path::new("t")).unwrap()
        }

        fn trim(&self, policy: Policy, now_ms: u64) -> Trimmed {
            let stored = self.stored();
            let tx = self.db.begin_write().unwrap();
            let t = trim(&tx, &policy, now_ms, stored).unwrap();
            tx.commit().unwrap();
            t
        }

        fn keys(&self) -> Vec<(u32, u64)> {
            let tx = self.db.begin_read().unwrap();
            let c = tx.open_table(events::CHUNKS).unwrap();
            c.iter().unwrap().map(|r| r.unwrap().0.value()).collect()
        }
    }

    fn policy(max_age: Option<u64>, max_bytes: Option<u64>) -> Policy {
        Policy {
            max_age: max_age.map(Duration::from_millis),
            max_bytes,
            check_every: Duration::from_secs(1),
            hold_unforwarded: false,
        }
    }

    #[test]
    fn age_deletes_each_workspace_from_its_oldest_chunk_up_to_the_cutoff() {
        let s = Store::new();
        for (ws, seq, at) in [(1, 1, 100), (1, 2, 200), (1, 3, 900), (2, 1, 150), (2, 2, 950)] {
            s.add(ws, seq, at, 10);
        }
        let t = s.trim(policy(Some(500), None), 1000);
        assert_eq!((t.chunks, t.events, t.events_by_age, t.more), (3, 3, 3, false));
        assert_eq!(s.keys(), [(1, 3), (2, 2)]);
        assert_eq!(s.trim(policy(Some(500), None), 1000), Trimmed::default());
    }

    #[test]
    fn chunks_not_forwarded_yet_are_kept_by_age_and_by_size_unless_allowed() {
        let s = Store::new();
        for (ws, seq, at) in [(1, 1, 100), (1, 2, 200), (1, 3, 300), (2, 1, 150), (2, 2, 250)] {
            s.add(ws, seq, at, 1000);
        }
        // Workspace 1 is forwarded up to seq 2 (its cursor is 3), workspace 2 not at all.
        let tx = s.db.begin_write().unwrap();
        tx.open_table(FORWARD_CURSOR).unwrap().insert(1, 3).unwrap();
        tx.commit().unwrap();
        let held = |p: Policy| Policy { hold_unforwarded: true, ..p };
        let t = s.trim(held(policy(Some(10), None)), 1000);
        assert_eq!(t.chunks, 2, "by age, only what was forwarded");
        assert_eq!(s.keys(), [(1, 3), (2, 1), (2, 2)]);
        let t = s.trim(held(policy(None, Some(1))), 1000);
        assert_eq!(t.chunks, 0, "by size too: the store stays over its limit");
        let t = s.trim(policy(None, Some(1)), 1000);
        assert_eq!(t.chunks, 3, "retention_may_drop_unforwarded: as usual");
    }

    #[test]
    fn size_deletes_the_oldest_data_of_any_workspace_first_and_keeps_the_counter_exact() {
        let s = Store::new();
        for (ws, seq, at) in [(1, 1, 100), (2, 1, 200), (1, 2, 300), (2, 2, 400)] {
            s.add(ws, seq, at, 1000);
        }
        let one = s.stored() / 4;
        let t = s.trim(policy(None, Some(2 * one)), 1000);
        assert_eq!((t.chunks, t.bytes), (2, 2 * one));
        assert_eq!(s.keys(), [(1, 2), (2, 2)]);
        assert_eq!(s.stored(), 2 * one);
        // Under the limit nothing more goes.
        assert_eq!(s.trim(policy(None, Some(2 * one)), 1000).chunks, 0);
    }

    #[test]
    fn a_backlog_is_deleted_in_slices() {
        let s = Store::new();
        let n = MAX_CHUNKS_PER_TRIM as u64 + 10;
        for seq in 1..=n {
            s.add(1, seq, seq, 1);
        }
        let first = s.trim(policy(Some(1), None), 10_000);
        assert_eq!((first.chunks, first.more), (MAX_CHUNKS_PER_TRIM as u64, true));
        let second = s.trim(policy(Some(1), None), 10_000);
        assert_eq!((second.chunks, second.more), (10, false));
        assert!(s.keys().is_empty());
        assert_eq!(s.stored(), 0);
    }

    #[test]
    fn the_schedule_runs_on_its_interval_or_at_once_over_the_size_limit() {
        let t0 = Instant::now();
        let mut s = Schedule::new(policy(Some(1000), Some(100)));
        let some = Trimmed { chunks: 1, ..Trimmed::default() };
        s.done(t0, &some);
        assert!(!s.due(t0, 100));
        assert!(s.due(t0, 101));
        assert!(s.due(t0 + Duration::from_secs(1), 0));
        s.done(t0, &Trimmed { more: true, ..some });
        assert!(s.due(t0, 0));
        // Nothing found to delete: over the size limit waits for the interval.
        s.done(t0, &Trimmed::default());
        assert!(!s.due(t0, 101));
        assert!(s.due(t0 + Duration::from_secs(1), 101));
        assert_eq!(Schedule::new(Policy::default()).wait(t0), None);
    }
}
