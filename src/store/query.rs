//! Queries over one workspace's events: pages for the admin API, and
//! streamed scans for exports.
//!
//! Every query is a range scan over `chunks` keyed `(workspace, first_seq)`:
//!
//! - a sequence window (`since`, a cursor) seeks straight to the chunk that
//!   holds the first wanted sequence number;
//! - a time window (`from`/`to` on `received_at`) is turned into a sequence
//!   position by a binary search over chunk headers (`chunk::peek`, no
//!   decompression), then walked; chunks whose `[min, max]` received-at
//!   range misses the window are skipped on their header alone.
//!
//! The binary search assumes received-at times grow with sequence numbers
//! up to [`TIME_SKEW_MS`]: an event is committed within that long of being
//! received (the ack timeout and batching delays are far shorter). Starting
//! and stopping points are widened by that much, so only a clock stepped
//! back by more than it could hide events from a time window.
//!
//! Each page reads one row more than it returns, to know whether another
//! page exists (no `next_cursor` on the last one). [`Page::rows_read`]
//! counts every decoded row looked at: for a sequence or time window with
//! no other filter it is at most the page size plus one chunk. Filters that
//! can match rarely (`listener`, `kind`, `service`, `text`) stop after
//! [`Query::max_scan_rows`] rows and say so in [`Page::scan_limited`]; the
//! cursor then continues where the scan stopped.
//!
//! A page is one use of [`Snapshot::stream`], which hands every selected
//! event to a [`Sink`]: the page's sink collects `limit + 1` of them; the
//! export's encodes them into a stream and decides itself when to stop
//! (no scan limit then; it stops when its client goes away).
//!
//! The database handle is shared with the writer thread through
//! [`EventsHandle`]; reads run in their own read transaction (one consistent
//! snapshot) on the blocking pool, never on the async executor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase};

use super::reader::StoredEvent;
use super::{Cause, Op, StoreError, chunk, events, rows};
use crate::record::{self, Kind};

/// How far received-at times may run out of sequence order, in ms.
pub const TIME_SKEW_MS: u64 = 10 * 60 * 1000;
/// Largest page a query may ask for.
pub const MAX_PAGE: usize = 1000;

/// Commit notices a live tail may fall behind by before it is dropped.
const NOTICE_BACKLOG: usize = 4096;

/// A chunk the writer has just committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub workspace: u32,
    pub first_seq: u64,
    pub count: u32,
    /// The chunk bytes stored.
    pub bytes: u64,
}

/// See [`EventsHandle::forward_state`].
#[derive(Debug, Clone, Default)]
pub struct ForwardState {
    pub incarnation: u64,
    pub cursors: std::collections::HashMap<u32, u64>,
    pub next_seqs: std::collections::HashMap<u32, u64>,
}

/// A shared read handle on `events.redb`, kept current by the writer (which
/// closes and reopens the database after a failed commit), and the writer's
/// commit notices for live tails.
#[derive(Clone, Debug)]
pub struct EventsHandle {
    slot: Arc<RwLock<Option<Arc<Database>>>>,
    path: PathBuf,
    notices: tokio::sync::broadcast::Sender<Committed>,
}

impl EventsHandle {
    /// An empty handle; the writer fills it once the database is open.
    pub(crate) fn new(path: PathBuf) -> EventsHandle {
        let (notices, _) = tokio::sync::broadcast::channel(NOTICE_BACKLOG);
        EventsHandle { slot: Arc::new(RwLock::new(None)), path, notices }
    }

    /// Announces a commit. Never blocks: a receiver that falls more than
    /// [`NOTICE_BACKLOG`] notices behind loses the oldest and is told so.
    pub(crate) fn publish(&self, c: Committed) {
        let _ = self.notices.send(c);
    }

    /// Commit notices from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Committed> {
        self.notices.subscribe()
    }

    /// Opens `data_dir/events.redb` directly (no daemon holds it).
    pub fn open(data_dir: &Path, cache_bytes: usize) -> Result<EventsHandle, StoreError> {
        super::ensure_data_dir(data_dir)?;
        let path = data_dir.join(super::EVENTS_FILE);
        let db = events::open(&path, cache_bytes)?;
        let handle = EventsHandle::new(path);
        handle.set(Some(Arc::new(db)));
        Ok(handle)
    }

    pub(crate) fn set(&self, db: Option<Arc<Database>>) {
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = db;
    }

    fn get(&self) -> Result<Arc<Database>, StoreError> {
        let db = self.slot.read().unwrap_or_else(|e| e.into_inner()).clone();
        db.ok_or_else(|| StoreError::storage(&self.path, Op::Begin, Cause::Closed))
    }

    /// What the forwarder starts from: the incarnation, its cursors and
    /// every workspace's next sequence number, as committed.
    pub fn forward_state(&self) -> Result<ForwardState, StoreError> {
        let db = self.get()?;
        Ok(ForwardState {
            incarnation: events::incarnation(&db, &self.path)?,
            cursors: events::forward_cursors(&db, &self.path)?,
            next_seqs: events::load_next_seqs(&db, &self.path)?,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read snapshot of the whole database (for [`super::backup`]); fails
    /// while the writer reopens it after a failed commit.
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.get()?.begin_read().map_err(|e| StoreError::redb(&self.path, e))
    }

    /// Runs a query (blocking: call it from the blocking pool); `render`
    /// makes each selected event into what the page holds (the API's JSON:
    /// `export::event_json`).
    pub fn query<T>(&self, q: &Query, render: impl FnMut(&StoredEvent<'_>) -> T) -> Result<Page<T>, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let mut sink = PageSink { events: Vec::new(), want: limit + 1, render, last_seq: None };
        let stats = self.snapshot()?.stream(q, &mut sink)?;
        let mut page = Page {
            events: sink.events,
            next_cursor: stats.stopped_at,
            rows_read: stats.rows_read,
            scan_limited: stats.stopped_at.is_some(),
            chunks_skipped: stats.chunks_skipped,
            damaged_chunks: stats.damaged_chunks,
        };
        if page.events.len() > limit {
            // The extra row only tells that another page exists; it starts it.
            page.events.pop();
            page.next_cursor = sink.last_seq;
        }
        Ok(page)
    }

    /// A read transaction on the events as committed now (blocking: call it
    /// from the blocking pool). Everything read through it sees that one
    /// snapshot, however long it is kept.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let db = self.get()?;
        let tx = db.begin_read().map_err(|e| StoreError::redb(&self.path, e))?;
        let table = tx.open_table(events::CHUNKS).map_err(|e| StoreError::redb(&self.path, e))?;
        let tails = tx.open_table(events::CHUNK_TAILS).map_err(|e| StoreError::redb(&self.path, e))?;
        Ok(Snapshot { table, tails, path: self.path.clone() })
    }
}

/// One consistent view of the events (a redb read transaction).
pub struct Snapshot {
    table: Chunks,
    tails: Tails,
    path: PathBuf,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Hands `sink` every event of `q.workspace` that the filters select, in
    /// `q.order` from `q.since` / `q.cursor` on, until the sink says stop,
    /// the scan has looked at `q.max_scan_rows` rows (with a `listener`,
    /// `kind` or `text` filter), or the events run out. `q.limit` is not
    /// looked at: the sink decides how many it takes.
    pub fn stream(&self, q: &Query, sink: &mut impl Sink) -> Result<ScanStats, StoreError> {
        let mut scan = Scan { q, stats: ScanStats::default(), sink, path: &self.path, tails: &self.tails };
        let done = match q.order {
            Order::Asc => scan.asc(&self.table),
            Order::Desc => scan.desc(&self.table),
        };
        done.map_err(|e| StoreError::redb(&self.path, e))?;
        Ok(scan.stats)
    }

    /// Whole chunk values of `ws` in order, from the chunk holding `seq`
    /// (or the first after it) on, until at least `max_bytes` are read.
    pub fn chunk_values(&self, ws: u32, seq: u64, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let err = |e: redb::StorageError| StoreError::redb(&self.path, e);
        let start = holding(&self.table, ws, seq).map_err(|e| StoreError::redb(&self.path, e))?.unwrap_or(seq);
        let mut out = Vec::new();
        let mut bytes = 0;
        for row in self.table.range((ws, start)..=(ws, u64::MAX)).map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let first_seq = k.value().1;
            let value = rows::join(&self.tails, (ws, first_seq), v.value()).map_err(err)?.into_owned();
            bytes += value.len();
            out.push((first_seq, value));
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// The workspaces that have any stored event, in id order.
    pub fn workspaces(&self) -> Result<Vec<u32>, StoreError> {
        let mut out = Vec::new();
        let mut next = 0u32;
        // One seek per workspace, never a walk over its chunks.
        while let Some(row) = self.table.range((next, 0u64)..).map_err(|e| StoreError::redb(&self.path, e))?.next() {
            let ws = row.map_err(|e| StoreError::redb(&self.path, e))?.0.value().0;
            out.push(ws);
            match ws.checked_add(1) {
                Some(n) => next = n,
                None => break,
            }
        }
        Ok(out)
    }
}

/// Where a scan puts the events its filters select.
pub trait Sink {
    /// Takes one selected event; `false` ends the scan.
    fn event(&mut self, ev: &StoredEvent<'_>) -> bool;

    /// Asked before each chunk is read; `false` ends the scan (a client that
    /// went away, a shutdown), even while no row matches.
    fn keep_going(&mut self) -> bool {
        true
    }
}

/// Collects one page: up to `want` events, rendered.
struct PageSink<F, T> {
    events: Vec<T>,
    want: usize,
    render: F,
    /// Sequence number of the last event taken.
    last_seq: Option<u64>,
}

impl<F: FnMut(&StoredEvent<'_>) -> T, T> Sink for PageSink<F, T> {
    fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
        self.events.push((self.render)(ev));
        self.last_seq = Some(ev.seq);
        self.events.len() < self.want
    }
}

/// What a scan went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows decoded and looked at.
    pub rows_read: u64,
    /// Where the scan stopped at `max_scan_rows`: the sequence number of the
    /// first row it did not look at.
    pub stopped_at: Option<u64>,
    /// Chunks skipped on their header (time window) without decoding.
    pub chunks_skipped: u64,
    /// Chunks that did not decode (skipped, with a warning).
    pub damaged_chunks: u64,
}

/// A `from`/`to` bound as written by a user: unix milliseconds, or an RFC
/// 3339 time. `None` when it is neither, or before 1970.
pub fn time_ms(v: &str) -> Option<u64> {
    if let Ok(ms) = v.parse::<u64>() {
        return Some(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(v).ok()?;
    u64::try_from(t.timestamp_millis()).ok()
}

/// Which way to page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// One page's worth of filters and position.
#[derive(Debug, Clone)]
pub struct Query {
    pub workspace: u32,
    /// Only `seq >= since`.
    pub since: Option<u64>,
    /// Only `received_at >= from_ms`.
    pub from_ms: Option<u64>,
    /// Only `received_at <= to_ms`.
    pub to_ms: Option<u64>,
    pub listener: Option<String>,
    pub kind: Option<Kind>,
    /// Only records whose `service` is exactly this (Tell's service, OTLP's `service.name`).
    pub service: Option<String>,
    /// Substring of any stored field's bytes (case-sensitive).
    pub text: Option<String>,
    /// Events per page, 1..=[`MAX_PAGE`].
    pub limit: usize,
    pub order: Order,
    /// Where the page starts: a `next_cursor` from the previous page (a
    /// sequence number: the first one to return, ascending or descending).
    pub cursor: Option<u64>,
    /// Most rows one page looks at before it stops.
    pub max_scan_rows: u64,
}

impl Query {
    /// Every event of `workspace`, ascending from the start, `limit` a page,
    /// looking at no more than `max_scan_rows` rows for a filter.
    pub fn unfiltered(workspace: u32, limit: usize, max_scan_rows: u64) -> Query {
        Query {
            workspace,
            since: None,
            from_ms: None,
            to_ms: None,
            listener: None,
            kind: None,
            service: None,
            text: None,
            limit,
            order: Order::Asc,
            cursor: None,
            max_scan_rows,
        }
    }
}

/// One page of results.
#[derive(Debug, Default)]
pub struct Page<T> {
    pub events: Vec<T>,
    /// Sequence number the next page starts at; `None` on the last page.
    pub next_cursor: Option<u64>,
    /// Rows decoded and looked at.
    pub rows_read: u64,
    /// True when the page stopped at `max_scan_rows` before it was full.
    pub scan_limited: bool,
    /// Chunks skipped on their header (time window) without decoding.
    pub chunks_skipped: u64,
    /// Chunks that did not decode (skipped, with a warning).
    pub damaged_chunks: u64,
}

type Chunks = redb::ReadOnlyTable<(u32, u64), &'static [u8]>;
type Tails = redb::ReadOnlyTable<(u32, u64, u8), &'static [u8]>;

struct Scan<'a, S> {
    q: &'a Query,
    stats: ScanStats,
    sink: &'a mut S,
    path: &'a Path,
    tails: &'a Tails,
}

/// Whether to go on after a chunk.
#[derive(PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

impl<S: Sink> Scan<'_, S> {
    /// The lowest and highest sequence numbers the page may return.
    fn seq_bounds(&self) -> (u64, u64) {
        let mut lo = self.q.since.unwrap_or(0);
        let mut hi = u64::MAX;
        match (self.q.order, self.q.cursor) {
            (Order::Asc, Some(c)) => lo = lo.max(c),
            (Order::Desc, Some(c)) => hi = c,
            (_, None) => {}
        }
        (lo, hi)
    }

    fn asc(&mut self, table: &Chunks) -> Result<(), redb::Error> {
        let ws = self.q.workspace;
        let (lo, hi) = self.seq_bounds();
        let mut start = holding(table, ws, lo)?.unwrap_or(0);
        if let Some(from) = self.q.from_ms {
            start = start.max(last_starting_before(table, ws, from.saturating_sub(TIME_SKEW_MS))?.unwrap_or(0));
        }
        let stop_after = self.q.to_ms.map(|t| t.saturating_add(TIME_SKEW_MS));
        for row in table.range((ws, start)..=(ws, hi))? {
            let (key, value) = row?;
            let first_seq = key.value().1;
            let value = value.value();
            if !self.sink.keep_going() {
                break;
            }
            let Some((count, min, max)) = self.header(first_seq, value) else { continue };
            if first_seq.saturating_add(u64::from(count)) <= lo {
                continue;
            }
            if stop_after.is_some_and(|s| min > s) {
                break;
            }
            if self.misses_window(min, max) {
                self.stats.chunks_skipped += 1;
                continue;
            }
            if self.chunk(first_seq, value, (lo, hi), false)? == Flow::Done {
                break;
            }
        }
        Ok(())
    }

    fn desc(&mut self, table: &Chunks) -> Result<(), redb::Error> {
        let ws = self.q.workspace;
        let (lo, hi) = self.seq_bounds();
        let mut end = hi;
        if let Some(to) = self.q.to_ms {
            // Chunks after this one start after `to` + skew: nothing in them is due.
            match last_starting_before(table, ws, to.saturating_add(TIME_SKEW_MS).saturating_add(1))? {
                Some(k) => end = end.min(k),
                None => return Ok(()),
            }
        }
        let stop_below = self.q.from_ms.map(|f| f.saturating_sub(TIME_SKEW_MS));
        for row in table.range((ws, 0)..=(ws, end))?.rev() {
            let (key, value) = row?;
            let first_seq = key.value().1;
            let value = value.value();
            if !self.sink.keep_going() {
                break;
            }
            let Some((count, min, max)) = self.header(first_seq, value) else { continue };
            if first_seq.saturating_add(u64::from(count)) <= lo {
                break;
            }
            if stop_below.is_some_and(|s| max < s) {
                break;
            }
            if self.misses_window(min, max) {
                self.stats.chunks_skipped += 1;
                continue;
            }
            if self.chunk(first_seq, value, (lo, hi), true)? == Flow::Done {
                break;
            }
        }
        Ok(())
    }

    /// The chunk's count and received-at range; `None` (counted) if damaged.
    fn header(&mut self, first_seq: u64, value: &[u8]) -> Option<(u32, u64, u64)> {
        match chunk::peek(value) {
            Ok(h) => Some(h),
            Err(e) => {
                self.damaged(first_seq, &e);
                None
            }
        }
    }

    fn damaged(&mut self, first_seq: u64, why: &dyn std::fmt::Display) {
        let (path, workspace) = (self.path.display(), self.q.workspace);
        tracing::warn!(path = %path, workspace, first_seq, "query skips a damaged chunk: {why}");
        self.stats.damaged_chunks += 1;
    }

    fn misses_window(&self, min: u64, max: u64) -> bool {
        self.q.from_ms.is_some_and(|f| max < f) || self.q.to_ms.is_some_and(|t| min > t)
    }

    /// Looks at the rows of one chunk, in page order.
    fn chunk(&mut self, first_seq: u64, head: &[u8], (lo, hi): (u64, u64), reverse: bool) -> Result<Flow, redb::Error> {
        let value = rows::join(self.tails, (self.q.workspace, first_seq), head)?;
        let decoded = match chunk::decode(&value) {
            Ok(c) => c,
            Err(e) => {
                self.damaged(first_seq, &e);
                return Ok(Flow::More);
            }
        };
        if self.q.listener.as_deref().is_some_and(|l| l != decoded.listener) {
            return Ok(Flow::More);
        }
        let mut rows = Vec::with_capacity(decoded.count as usize);
        for rec in record::records(&decoded.block) {
            match rec {
                Ok(r) => rows.push(r),
                Err(e) => {
                    self.damaged(first_seq, &e);
                    break;
                }
            }
        }
        let mut order: Box<dyn Iterator<Item = (usize, record::Record<'_>)>> =
            if reverse { Box::new(rows.into_iter().enumerate().rev()) } else { Box::new(rows.into_iter().enumerate()) };
        let filtered =
            self.q.listener.is_some() || self.q.kind.is_some() || self.q.service.is_some() || self.q.text.is_some();
        for (i, record) in &mut order {
            let seq = first_seq.saturating_add(i as u64);
            if seq < lo || seq > hi {
                continue;
            }
            if filtered && self.stats.rows_read >= self.q.max_scan_rows {
                // Stop before this row; it is where the next page starts.
                self.stats.stopped_at = Some(seq);
                return Ok(Flow::Done);
            }
            self.stats.rows_read += 1;
            let ev = StoredEvent {
                seq,
                workspace: self.q.workspace,
                listener: &decoded.listener,
                chunk_peer: &decoded.peer,
                origin: decoded.origin.as_ref().map(|o| (o.node.as_str(), o.first_seq.saturating_add(i as u64))),
                record,
            };
            if self.matches(&ev) && !self.sink.event(&ev) {
                return Ok(Flow::Done);
            }
        }
        Ok(Flow::More)
    }

    fn matches(&self, ev: &StoredEvent<'_>) -> bool {
        let r = &ev.record;
        if self.q.from_ms.is_some_and(|f| r.received_at_ms < f) || self.q.to_ms.is_some_and(|t| r.received_at_ms > t) {
            return false;
        }
        if self.q.kind.is_some_and(|k| k != r.kind) {
            return false;
        }
        if let Some(s) = &self.q.service
            && r.get(record::tag::SERVICE) != Some(s.as_bytes())
        {
            return false;
        }
        match &self.q.text {
            Some(t) => {
                let finder = memchr::memmem::Finder::new(t.as_bytes());
                r.fields().any(|(_, bytes)| finder.find(bytes).is_some())
            }
            None => true,
        }
    }
}

/// The first sequence number of the chunk holding `seq` (the last chunk
/// starting at or before it).
fn holding(table: &Chunks, ws: u32, seq: u64) -> Result<Option<u64>, redb::Error> {
    Ok(match table.range((ws, 0)..=(ws, seq))?.next_back() {
        Some(row) => Some(row?.0.value().1),
        None => None,
    })
}

/// Binary search, by sequence number, for the last chunk whose earliest
/// received-at is before `t` (see the module docs for the ordering assumed).
/// `None` when even the first chunk is not.
fn last_starting_before(table: &Chunks, ws: u32, t: u64) -> Result<Option<u64>, redb::Error> {
    let min_of = |v: &[u8]| chunk::peek(v).map(|h| h.1).unwrap_or(0);
    let (first, last) = {
        let mut r = table.range((ws, 0)..=(ws, u64::MAX))?;
        let first = match r.next() {
            Some(row) => {
                let (k, v) = row?;
                (k.value().1, min_of(v.value()))
            }
            None => return Ok(None),
        };
        let last = match r.next_back() {
            Some(row) => row?.0.value().1,
            None => first.0,
        };
        (first, last)
    };
    if first.1 >= t {
        return Ok(None);
    }
    let (mut found, mut lo, mut hi) = (first.0, first.0, last.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let Some(row) = table.range((ws, 0)..=(ws, mid))?.next_back() else { break };
        let (k, v) = row?;
        let k = k.value().1;
        if min_of(v.value()) < t {
            found = found.max(k);
            lo = mid + 1;
        } else {
            hi = k;
        }
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::event_json;
    use crate::record::{BlockBuilder, tag};
    use crate::store::chunk::ChunkMeta;
    use serde_json::Value;

    const CHUNK: u64 = 10;
    const CHUNKS: u64 = 200;

    /// Workspace 1: `CHUNKS` chunks of `CHUNK` logs; event `seq` was received
    /// at `seq * 1000` ms and has service `s<seq>`; every 7th is an event kind
    /// and says "needle". Chunks alternate listeners `tcp` and `http`.
    /// Workspace 2 has one chunk that must never show up.
    fn sample() -> (tempfile::TempDir, EventsHandle) {
        let dir = tempfile::tempdir().unwrap();
        let handle = EventsHandle::open(dir.path(), 1 << 20).unwrap();
        let db = handle.get().unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(events::CHUNKS).unwrap();
            for (ws, c) in (0..CHUNKS).map(|c| (1u32, c)).chain(std::iter::once((2u32, 0))) {
                let first = 1 + c * CHUNK;
                let mut b = BlockBuilder::default();
                for seq in first..first + CHUNK {
                    let kind = if seq % 7 == 0 { Kind::Event } else { Kind::Log };
                    b.begin(kind, seq * 1000);
                    b.str(tag::SERVICE, &format!("s{seq}"));
                    b.bytes(tag::PAYLOAD, if seq % 7 == 0 { b"a needle here" } else { b"hay" });
                    b.end();
                }
                let (block, count) = b.finish();
                let listener = if c % 2 == 0 { "tcp" } else { "http" };
                let meta = ChunkMeta {
                    listener,
                    peer: "10.0.0.1:1",
                    count,
                    min_received_ms: first * 1000,
                    max_received_ms: (first + CHUNK - 1) * 1000,
                };
                t.insert((ws, first), chunk::encode(&meta, &block).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
        drop(db);
        (dir, handle)
    }

    fn query() -> Query {
        Query::unfiltered(1, 25, 1_000_000)
    }

    fn seqs(p: &Page<Value>) -> Vec<u64> {
        p.events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
    }

    /// Follows cursors to the end; returns every seq and the pages' row counts.
    fn all_pages(handle: &EventsHandle, mut q: Query) -> (Vec<u64>, Vec<u64>) {
        let (mut got, mut rows) = (Vec::new(), Vec::new());
        loop {
            let page = handle.query(&q, event_json).unwrap();
            got.extend(seqs(&page));
            rows.push(page.rows_read);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return (got, rows),
            }
            assert!(rows.len() < 1000, "cursor loops");
        }
    }

    #[test]
    fn pages_ascending_and_descending_cover_everything_once() {
        let (_dir, h) = sample();
        let total = CHUNK * CHUNKS;
        let (asc, rows) = all_pages(&h, Query { limit: 100, ..query() });
        assert_eq!(asc, (1..=total).collect::<Vec<_>>());
        assert!(rows.iter().all(|r| *r <= 100 + CHUNK), "{rows:?}");
        let (desc, _) = all_pages(&h, Query { limit: 33, order: Order::Desc, ..query() });
        assert_eq!(desc, (1..=total).rev().collect::<Vec<_>>());
        // The last page has no cursor even when it is exactly full.
        let last = h.query(&Query { since: Some(total - 99), limit: 100, ..query() }, event_json).unwrap();
        assert_eq!((last.events.len(), last.next_cursor), (100, None));
        // Another workspace is not visible, and an unknown one is empty.
        assert_eq!(seqs(&h.query(&Query { workspace: 2, limit: 1000, ..query() }, event_json).unwrap()).len(), 10);
        assert!(h.query(&Query { workspace: 3, ..query() }, event_json).unwrap().events.is_empty());
    }

    #[test]
    fn a_sequence_window_reads_at_most_a_page_plus_one_chunk() {
        let (_dir, h) = sample();
        let page = h.query(&Query { since: Some(1005), limit: 50, ..query() }, event_json).unwrap();
        assert_eq!(seqs(&page), (1005..1055).collect::<Vec<_>>());
        assert_eq!(page.next_cursor, Some(1055));
        assert!(page.rows_read <= 50 + CHUNK, "read {} rows", page.rows_read);
        let page = h
            .query(&Query { since: Some(500), cursor: Some(1200), order: Order::Desc, ..query() }, event_json)
            .unwrap();
        assert_eq!(seqs(&page), (1176..=1200).rev().collect::<Vec<_>>());
        assert!(page.rows_read <= 25 + CHUNK, "read {} rows", page.rows_read);
        // `since` bounds a descending scan from below.
        let (desc, _) = all_pages(&h, Query { since: Some(1990), order: Order::Desc, ..query() });
        assert_eq!(desc, (1990..=2000).rev().collect::<Vec<_>>());
    }

    #[test]
    fn a_time_window_seeks_and_reads_at_most_a_page_plus_one_chunk() {
        let (_dir, h) = sample();
        let (from, to) = (1_234_000, 1_500_000);
        let page = h.query(&Query { from_ms: Some(from), to_ms: Some(to), limit: 20, ..query() }, event_json).unwrap();
        assert_eq!(seqs(&page), (1234..1254).collect::<Vec<_>>());
        assert!(page.rows_read <= 20 + CHUNK, "read {} rows", page.rows_read);
        let desc = Query { from_ms: Some(from), to_ms: Some(to), limit: 20, order: Order::Desc, ..query() };
        let page = h.query(&desc, event_json).unwrap();
        assert_eq!(seqs(&page), (1481..=1500).rev().collect::<Vec<_>>());
        assert!(page.rows_read <= 20 + CHUNK, "read {} rows", page.rows_read);
        let (asc, rows) = all_pages(&h, Query { from_ms: Some(from), to_ms: Some(to), limit: 100, ..query() });
        assert_eq!(asc, (1234..=1500).collect::<Vec<_>>());
        assert!(rows.iter().all(|r| *r <= 100 + CHUNK), "{rows:?}");
        let (desc, _) = all_pages(&h, desc);
        assert_eq!(desc, (1234..=1500).rev().collect::<Vec<_>>());
        // Outside everything stored.
        assert!(h.query(&Query { from_ms: Some(10_000_000), ..query() }, event_json).unwrap().events.is_empty());
        let before = Query { to_ms: Some(500), order: Order::Desc, ..query() };
        assert!(h.query(&before, event_json).unwrap().events.is_empty());
    }

    #[test]
    fn filters_by_kind_listener_and_text() {
        let (_dir, h) = sample();
        let (needles, _) = all_pages(&h, Query { text: Some("needle".into()), ..query() });
        assert_eq!(needles, (1..=2000).filter(|s| s % 7 == 0).collect::<Vec<_>>());
        let (events, _) = all_pages(&h, Query { kind: Some(Kind::Event), order: Order::Desc, ..query() });
        assert_eq!(events, (1..=2000).rev().filter(|s| s % 7 == 0).collect::<Vec<_>>());
        // Chunk c (seqs 10c+1..=10c+10) came through http when c is odd.
        let (http, _) = all_pages(&h, Query { listener: Some("http".into()), ..query() });
        assert_eq!(http, (1..=2000).filter(|s| ((s - 1) / 10) % 2 == 1).collect::<Vec<_>>());
        let page = h.query(&Query { text: Some("s1234".into()), ..query() }, event_json).unwrap();
        assert_eq!(seqs(&page), vec![1234]);
        assert_eq!(page.events[0]["service"], "s1234");
        // `service` matches the whole service name, not a part of it.
        let (exact, _) = all_pages(&h, Query { service: Some("s1234".into()), ..query() });
        assert_eq!(exact, vec![1234]);
        let (part, _) = all_pages(&h, Query { service: Some("s123".into()), ..query() });
        assert_eq!(part, vec![123]);
    }

    /// Counts what a stream hands it; asks to stop after `chunks` chunks.
    struct Counting {
        seqs: Vec<u64>,
        chunks: usize,
    }

    impl Sink for Counting {
        fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
            self.seqs.push(ev.seq);
            true
        }
        fn keep_going(&mut self) -> bool {
            self.chunks = self.chunks.saturating_sub(1);
            self.chunks > 0
        }
    }

    #[test]
    fn a_stream_hands_over_every_match_and_stops_when_the_sink_says() {
        let (_dir, h) = sample();
        let snap = h.snapshot().unwrap();
        assert_eq!(snap.workspaces().unwrap(), [1, 2]);
        // No scan limit: a rare filter goes to the end in one scan.
        let q = Query { text: Some("needle".into()), max_scan_rows: u64::MAX, limit: 1, ..query() };
        let mut all = Counting { seqs: Vec::new(), chunks: usize::MAX };
        let stats = snap.stream(&q, &mut all).unwrap();
        assert_eq!(all.seqs, (1..=2000).filter(|s| s % 7 == 0).collect::<Vec<_>>());
        assert_eq!((stats.rows_read, stats.stopped_at), (2000, None));
        // A sink that stops between chunks ends the scan even while nothing matches.
        let q = Query { text: Some("nowhere".into()), max_scan_rows: u64::MAX, ..query() };
        let mut few = Counting { seqs: Vec::new(), chunks: 4 };
        let stats = snap.stream(&q, &mut few).unwrap();
        assert!(few.seqs.is_empty());
        assert_eq!(stats.rows_read, 3 * CHUNK);
    }

    #[test]
    fn a_text_search_stops_at_the_scan_limit_and_says_so() {
        let (_dir, h) = sample();
        let q = Query { text: Some("s1999".into()), max_scan_rows: 500, ..query() };
        let page = h.query(&q, event_json).unwrap();
        assert!(page.events.is_empty());
        assert!(page.scan_limited);
        assert_eq!((page.rows_read, page.next_cursor), (500, Some(501)));
        // Following the cursor finds it, never reading more than the limit per page.
        let (found, rows) = all_pages(&h, q);
        assert_eq!(found, vec![1999]);
        assert!(rows.iter().all(|r| *r <= 500), "{rows:?}");
        // Without a filter the limit does not apply: a window is bounded anyway.
        let page = h.query(&Query { limit: 1000, max_scan_rows: 10, ..query() }, event_json).unwrap();
        assert_eq!((page.events.len(), page.scan_limited), (1000, false));
    }
}
