//! Reading stored events back, and their JSON form.
//!
//! Chunks are keyed `(workspace, first_seq)`, so reading a workspace from a
//! sequence number on is a range scan: find the chunk holding `since` (the
//! greatest key `<= (workspace, since)`), then walk forward. Reading every
//! workspace does the same per workspace, jumping from one to the next with
//! a seek instead of visiting chunks it would skip.
//!
//! A scan runs in one read transaction, so it sees one consistent snapshot.
//! A damaged chunk is skipped with a warning and counted in
//! [`ScanStats::damaged_chunks`]; it never ends the scan.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase};
use serde_json::{Map, Number, Value};

use super::{StoreError, chunk, ensure_data_dir, events};
use crate::record::{self, Kind, Record, flag, tag};

/// Page cache for a reader: scans are sequential, a small cache suffices.
const READER_CACHE_BYTES: usize = 16 << 20;

/// Which events to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanFilter {
    /// Only this workspace; `None` reads every workspace, in id order.
    pub workspace: Option<u32>,
    /// Only events with `seq >= since` (per workspace).
    pub since: Option<u64>,
    /// At most this many events in total.
    pub limit: Option<u64>,
}

/// One stored event, borrowing from its decoded chunk.
#[derive(Debug, Clone)]
pub struct StoredEvent<'a> {
    pub seq: u64,
    pub workspace: u32,
    /// Config section name of the listener that took it, e.g. `tcp`.
    pub listener: &'a str,
    /// The connection's peer address (a record's own `PEER` field, when
    /// present, overrides it; see [`StoredEvent::peer`]).
    pub chunk_peer: &'a str,
    pub record: Record<'a>,
}

impl StoredEvent<'_> {
    /// The sender's address: the record's own (UDP) or the connection's.
    pub fn peer(&self) -> std::borrow::Cow<'_, str> {
        match self.record.get(tag::PEER) {
            Some(p) => String::from_utf8_lossy(p),
            None => std::borrow::Cow::Borrowed(self.chunk_peer),
        }
    }
}

/// What a scan went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Events handed to the callback.
    pub events: u64,
    /// Chunks (or the rest of a chunk) skipped because they did not decode.
    pub damaged_chunks: u64,
}

/// A read handle on `events.redb`.
///
/// redb allows one handle per file, so this is for a data dir no daemon
/// holds (opening it otherwise fails with [`StoreError::Locked`]).
pub struct EventReader {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EventReader {
    /// Opens `data_dir/events.redb`, creating the dir and an empty database
    /// (with the proper tables) if missing.
    pub fn open(data_dir: &Path) -> Result<EventReader, StoreError> {
        ensure_data_dir(data_dir)?;
        let path = data_dir.join(super::EVENTS_FILE);
        let db = events::open(&path, READER_CACHE_BYTES)?;
        Ok(EventReader { db, path })
    }

    /// Calls `f` for each event the filter selects, in (workspace, seq)
    /// order, until `f` returns `Ok(false)`, an error, or the limit is hit.
    ///
    /// The callback's error type absorbs storage errors, so callers using
    /// `anyhow::Error` (or their own enum with `From<StoreError>`) get one
    /// error type back.
    pub fn scan<E>(
        &self,
        filter: &ScanFilter,
        mut f: impl FnMut(&StoredEvent<'_>) -> Result<bool, E>,
    ) -> Result<ScanStats, E>
    where
        E: From<StoreError>,
    {
        let err = |e: &dyn std::fmt::Display| E::from(StoreError::db(&self.path, e));
        let mut stats = ScanStats::default();
        if filter.limit == Some(0) {
            return Ok(stats);
        }
        let tx = self.db.begin_read().map_err(|e| err(&e))?;
        let table = tx.open_table(events::CHUNKS).map_err(|e| err(&e))?;
        let since = filter.since.unwrap_or(0);

        let mut next_ws = filter.workspace.unwrap_or(0);
        loop {
            // The next workspace that has any chunk.
            let ws = match filter.workspace {
                Some(ws) => ws,
                None => {
                    let first = table.range((next_ws, 0u64)..).map_err(|e| err(&e))?.next();
                    match first {
                        Some(row) => row.map_err(|e| err(&e))?.0.value().0,
                        None => break,
                    }
                }
            };
            // The chunk holding `since`: the last key <= (ws, since).
            let start = match table.range((ws, 0u64)..=(ws, since)).map_err(|e| err(&e))?.next_back() {
                Some(row) => row.map_err(|e| err(&e))?.0.value().1,
                None => 0,
            };
            for row in table.range((ws, start)..=(ws, u64::MAX)).map_err(|e| err(&e))? {
                let (key, value) = row.map_err(|e| err(&e))?;
                let (_, first_seq) = key.value();
                let flow = self.scan_chunk(ws, first_seq, value.value(), since, filter.limit, &mut stats, &mut f)?;
                if flow.is_break() {
                    return Ok(stats);
                }
            }
            match (filter.workspace, ws.checked_add(1)) {
                (None, Some(n)) => next_ws = n,
                _ => break,
            }
        }
        Ok(stats)
    }

    /// Feeds the selected events of one chunk to `f`.
    #[allow(clippy::too_many_arguments)]
    fn scan_chunk<E>(
        &self,
        workspace: u32,
        first_seq: u64,
        value: &[u8],
        since: u64,
        limit: Option<u64>,
        stats: &mut ScanStats,
        f: &mut impl FnMut(&StoredEvent<'_>) -> Result<bool, E>,
    ) -> Result<ControlFlow<()>, E> {
        let damaged = |stats: &mut ScanStats, why: &dyn std::fmt::Display| {
            tracing::warn!(path = %self.path.display(), workspace, first_seq, "skipping damaged chunk: {why}");
            stats.damaged_chunks += 1;
        };
        // Skip a chunk that ends before `since` without decompressing it.
        match chunk::peek(value) {
            Ok((count, _, _)) if first_seq.saturating_add(u64::from(count)) <= since => {
                return Ok(ControlFlow::Continue(()));
            }
            Ok(_) => {}
            Err(e) => {
                damaged(stats, &e);
                return Ok(ControlFlow::Continue(()));
            }
        }
        let decoded = match chunk::decode(value) {
            Ok(c) => c,
            Err(e) => {
                damaged(stats, &e);
                return Ok(ControlFlow::Continue(()));
            }
        };
        for (i, rec) in record::records(&decoded.block).enumerate() {
            let record = match rec {
                Ok(r) => r,
                Err(e) => {
                    damaged(stats, &e);
                    break;
                }
            };
            let seq = first_seq.saturating_add(i as u64);
            if seq < since {
                continue;
            }
            let ev = StoredEvent { seq, workspace, listener: &decoded.listener, chunk_peer: &decoded.peer, record };
            stats.events += 1;
            let go_on = f(&ev)?;
            if !go_on || limit.is_some_and(|l| stats.events >= l) {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// One event as a JSON object: `seq`, `workspace`, `received_at` (ms since
/// the epoch), `listener`, `peer`, `kind` and every decoded field under its
/// own name. Fields with unknown tags are left out; of a repeated field the
/// first wins (labels are collected).
pub fn event_json(ev: &StoredEvent<'_>) -> Value {
    let mut m = Map::new();
    m.insert("seq".into(), ev.seq.into());
    m.insert("workspace".into(), ev.workspace.into());
    m.insert("received_at".into(), ev.record.received_at_ms.into());
    m.insert("listener".into(), ev.listener.into());
    m.insert("peer".into(), ev.peer().into_owned().into());
    m.insert("kind".into(), ev.record.kind.name().into());

    let mut labels: Option<Map<String, Value>> = None;
    for (t, bytes) in ev.record.fields() {
        let (name, value) = match t {
            tag::TIMESTAMP => ("timestamp", u64_le(bytes).map(Value::from)),
            tag::SERVICE => ("service", Some(lossy(bytes))),
            tag::DEVICE_ID => ("device_id", Some(uuid(bytes))),
            tag::SESSION_ID => ("session_id", Some(uuid(bytes))),
            tag::EVENT_NAME => ("event_name", Some(lossy(bytes))),
            tag::PAYLOAD => ("payload", Some(payload(bytes))),
            tag::EVENT_TYPE => ("event_type", one_byte(bytes).map(|b| event_type_name(b).into())),
            tag::LOG_TYPE => ("log_type", one_byte(bytes).map(|b| log_type_name(b).into())),
            tag::LEVEL => ("level", one_byte(bytes).map(|b| level_name(b).into())),
            tag::SOURCE => ("source", Some(lossy(bytes))),
            tag::METRIC_NAME => ("name", Some(lossy(bytes))),
            tag::METRIC_VALUE => ("value", f64_le(bytes).map(f64_json)),
            tag::METRIC_TYPE => ("metric_type", one_byte(bytes).map(|b| metric_type_name(b).into())),
            tag::TEMPORALITY => ("temporality", one_byte(bytes).map(|b| temporality_name(b).into())),
            tag::LABEL => {
                if let Some((k, v)) = record::split_label(bytes) {
                    let key = String::from_utf8_lossy(k).into_owned();
                    labels.get_or_insert_default().insert(key, lossy(v));
                }
                continue;
            }
            tag::HISTOGRAM => ("histogram", histogram(bytes)),
            tag::RAW => ("raw", Some(lossy(bytes))),
            tag::FLAGS => ("flags", one_byte(bytes).map(flags)),
            // Already folded into `peer`; unknown tags are skipped.
            _ => continue,
        };
        if let Some(value) = value {
            m.entry(name).or_insert(value);
        }
    }
    if let Some(labels) = labels {
        m.insert("labels".into(), Value::Object(labels));
    } else if ev.record.kind == Kind::Metric {
        m.insert("labels".into(), Value::Object(Map::new()));
    }
    if ev.record.kind == Kind::Syslog {
        crate::codec::syslog::enrich_json(&ev.record, &mut m);
    }
    Value::Object(m)
}

fn lossy(bytes: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(bytes).into_owned())
}

fn one_byte(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [b] => Some(*b),
        _ => None,
    }
}

fn u64_le(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_le_bytes)
}

fn f64_le(bytes: &[u8]) -> Option<f64> {
    bytes.try_into().ok().map(f64::from_le_bytes)
}

/// A number, or for NaN and the infinities (which JSON lacks) a string.
fn f64_json(v: f64) -> Value {
    match Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => "NaN".into(),
        None if v > 0.0 => "+Inf".into(),
        None => "-Inf".into(),
    }
}

/// 16 bytes as 8-4-4-4-12 hex; anything else as plain hex.
fn uuid(bytes: &[u8]) -> Value {
    if bytes.len() != 16 {
        return Value::String(hex::encode(bytes));
    }
    let h = hex::encode(bytes);
    Value::String(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]))
}

/// Payloads are JSON as sent by Tell SDKs; anything else is shown as text.
fn payload(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| lossy(bytes))
}

/// `count:u64 sum:f64 min:f64 max:f64 (upper:f64 count:u64)*`, little-endian.
fn histogram(bytes: &[u8]) -> Option<Value> {
    const HEAD: usize = 32;
    if bytes.len() < HEAD || !(bytes.len() - HEAD).is_multiple_of(16) {
        return None;
    }
    let word = |i: usize| -> [u8; 8] { bytes[i..i + 8].try_into().expect("8 bytes") };
    let buckets: Vec<Value> = bytes[HEAD..]
        .chunks_exact(16)
        .map(|b| {
            let upper = f64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
            let count = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
            Value::Array(vec![f64_json(upper), count.into()])
        })
        .collect();
    let mut m = Map::new();
    m.insert("count".into(), u64::from_le_bytes(word(0)).into());
    m.insert("sum".into(), f64_json(f64::from_le_bytes(word(8))));
    m.insert("min".into(), f64_json(f64::from_le_bytes(word(16))));
    m.insert("max".into(), f64_json(f64::from_le_bytes(word(24))));
    m.insert("buckets".into(), Value::Array(buckets));
    Some(Value::Object(m))
}

fn flags(bits: u8) -> Value {
    let mut out = Vec::new();
    if bits & flag::TRUNCATED != 0 {
        out.push(Value::from("truncated"));
    }
    if bits & flag::UNPARSED != 0 {
        out.push(Value::from("unparsed"));
    }
    Value::Array(out)
}

/// Tell `EventType` numbering.
fn event_type_name(b: u8) -> &'static str {
    match b {
        1 => "track",
        2 => "identify",
        3 => "group",
        4 => "alias",
        5 => "enrich",
        6 => "context",
        _ => "unknown",
    }
}

/// Tell `LogEventType` numbering.
fn log_type_name(b: u8) -> &'static str {
    match b {
        1 => "log",
        2 => "enrich",
        _ => "unknown",
    }
}

/// RFC 5424 severities, plus Tell's 8 = trace.
fn level_name(b: u8) -> &'static str {
    match b {
        0 => "emergency",
        1 => "alert",
        2 => "critical",
        3 => "error",
        4 => "warning",
        5 => "notice",
        6 => "info",
        7 => "debug",
        8 => "trace",
        _ => "unknown",
    }
}

/// Tell `MetricType` numbering.
fn metric_type_name(b: u8) -> &'static str {
    match b {
        1 => "gauge",
        2 => "counter",
        3 => "histogram",
        _ => "unknown",
    }
}

/// Tell `Temporality` numbering.
fn temporality_name(b: u8) -> &'static str {
    match b {
        1 => "cumulative",
        2 => "delta",
        _ => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::BlockBuilder;
    use crate::store::chunk::ChunkMeta;

    /// Writes chunks `(workspace, first_seq, block)` straight into events.redb.
    fn write_chunks(dir: &Path, chunks: &[(u32, u64, Vec<u8>, u32)]) {
        let db = events::open(&dir.join(crate::store::EVENTS_FILE), 1 << 20).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(events::CHUNKS).unwrap();
            for (ws, first, block, count) in chunks {
                let meta = ChunkMeta {
                    listener: "tcp",
                    peer: "10.0.0.1:4000",
                    count: *count,
                    min_received_ms: 1,
                    max_received_ms: 2,
                };
                t.insert((*ws, *first), chunk::encode(&meta, block).as_slice()).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    /// A block of `n` log records whose service is `s<seq>`.
    fn block(first_seq: u64, n: u32) -> (Vec<u8>, u32) {
        let mut b = BlockBuilder::default();
        for i in 0..n {
            b.begin(Kind::Log, 1000 + i as u64);
            b.str(tag::SERVICE, &format!("s{}", first_seq + i as u64));
            // Padding so that some blocks are compressed.
            b.bytes(tag::PAYLOAD, &[b'x'; 40]);
            b.end();
        }
        b.finish()
    }

    /// Workspaces 1 (seq 1..=25 in chunks of 10, 10, 5), 3 (1..=4) and 9 (1..=3).
    fn sample(dir: &Path) {
        let mut chunks = Vec::new();
        for (ws, first, n) in [(1, 1, 10), (1, 11, 10), (1, 21, 5), (3, 1, 4), (9, 1, 3)] {
            let (b, c) = block(first, n);
            chunks.push((ws, first, b, c));
        }
        write_chunks(dir, &chunks);
    }

    fn collect(reader: &EventReader, filter: ScanFilter) -> Vec<(u32, u64, String)> {
        let mut out = Vec::new();
        reader
            .scan::<StoreError>(&filter, |ev| {
                let service = String::from_utf8_lossy(ev.record.get(tag::SERVICE).unwrap()).into_owned();
                assert_eq!(service, format!("s{}", ev.seq), "seq matches position in chunk");
                out.push((ev.workspace, ev.seq, service));
                Ok(true)
            })
            .unwrap();
        out
    }

    fn seqs(v: &[(u32, u64, String)]) -> Vec<(u32, u64)> {
        v.iter().map(|(w, s, _)| (*w, *s)).collect()
    }

    #[test]
    fn empty_dir_scans_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let reader = EventReader::open(&dir.path().join("new")).unwrap();
        assert!(collect(&reader, ScanFilter::default()).is_empty());
        assert!(dir.path().join("new/events.redb").exists());
    }

    #[test]
    fn scans_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let reader = EventReader::open(dir.path()).unwrap();
        let all = collect(&reader, ScanFilter::default());
        assert_eq!(all.len(), 25 + 4 + 3);
        let mut sorted = seqs(&all);
        sorted.sort();
        assert_eq!(sorted, seqs(&all));
    }

    #[test]
    fn since_starts_inside_the_holding_chunk() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let reader = EventReader::open(dir.path()).unwrap();
        for since in [0, 1, 5, 10, 11, 15, 20, 21, 25] {
            let got = collect(&reader, ScanFilter { workspace: Some(1), since: Some(since), limit: None });
            let want: Vec<_> = (since.max(1)..=25).map(|s| (1, s)).collect();
            assert_eq!(seqs(&got), want, "since {since}");
        }
        assert!(collect(&reader, ScanFilter { workspace: Some(1), since: Some(26), limit: None }).is_empty());
        assert!(collect(&reader, ScanFilter { workspace: Some(2), since: None, limit: None }).is_empty());
        // Across workspaces `since` applies to each.
        let got = collect(&reader, ScanFilter { workspace: None, since: Some(3), limit: None });
        let want: Vec<_> =
            (3..=25).map(|s| (1, s)).chain((3..=4).map(|s| (3, s))).chain(std::iter::once((9, 3))).collect();
        assert_eq!(seqs(&got), want);
    }

    #[test]
    fn limit_and_early_stop() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let reader = EventReader::open(dir.path()).unwrap();
        let got = collect(&reader, ScanFilter { workspace: None, since: Some(4), limit: Some(23) });
        assert_eq!(got.len(), 23);
        assert_eq!(seqs(&got)[21..], [(1, 25), (3, 4)]);
        let got = collect(&reader, ScanFilter { workspace: Some(1), since: Some(24), limit: Some(5) });
        assert_eq!(seqs(&got), vec![(1, 24), (1, 25)]);
        assert!(collect(&reader, ScanFilter { limit: Some(0), ..Default::default() }).is_empty());
        let mut n = 0;
        let stats = reader
            .scan::<StoreError>(&ScanFilter::default(), |_| {
                n += 1;
                Ok(n < 12)
            })
            .unwrap();
        assert_eq!((n, stats.events), (12, 12));
        // The callback's own error comes back as is.
        let r = reader.scan::<anyhow::Error>(&ScanFilter::default(), |_| Err(anyhow::anyhow!("stop")));
        assert_eq!(r.unwrap_err().to_string(), "stop");
    }

    #[test]
    fn damaged_chunks_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (good, n) = block(1, 3);
        write_chunks(dir.path(), &[(1, 1, good, n)]);
        {
            let db = events::open(&dir.path().join(crate::store::EVENTS_FILE), 1 << 20).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(events::CHUNKS).unwrap().insert((1, 4), &[9u8, 9, 9][..]).unwrap();
            tx.commit().unwrap();
        }
        let (good, n) = block(5, 2);
        write_chunks(dir.path(), &[(1, 5, good, n)]);
        let reader = EventReader::open(dir.path()).unwrap();
        let mut got = Vec::new();
        let stats = reader
            .scan::<StoreError>(&ScanFilter::default(), |ev| {
                got.push(ev.seq);
                Ok(true)
            })
            .unwrap();
        assert_eq!(got, vec![1, 2, 3, 5, 6]);
        assert_eq!(stats, ScanStats { events: 5, damaged_chunks: 1 });
    }

    fn one(b: BlockBuilder) -> serde_json::Value {
        let (block, _) = b.finish();
        let record = record::records(&block).next().unwrap().unwrap();
        let ev = StoredEvent { seq: 42, workspace: 7, listener: "tcp", chunk_peer: "1.2.3.4:5", record };
        event_json(&ev)
    }

    #[test]
    fn event_json_tell_event() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Event, 1_700_000_000_123);
        b.u64(tag::TIMESTAMP, 1_700_000_000_000);
        b.str(tag::SERVICE, "web");
        b.bytes(tag::DEVICE_ID, &[0x12; 16]);
        b.bytes(tag::SESSION_ID, &(0u8..16).collect::<Vec<_>>());
        b.str(tag::EVENT_NAME, "Signed Up");
        b.u8(tag::EVENT_TYPE, 1);
        b.bytes(tag::PAYLOAD, br#"{"plan":"pro","n":3}"#);
        b.bytes(200, b"future tag");
        b.end();
        assert_eq!(
            one(b),
            json!({
                "seq": 42, "workspace": 7, "received_at": 1_700_000_000_123u64,
                "listener": "tcp", "peer": "1.2.3.4:5", "kind": "event",
                "timestamp": 1_700_000_000_000u64, "service": "web",
                "device_id": "12121212-1212-1212-1212-121212121212",
                "session_id": "00010203-0405-0607-0809-0a0b0c0d0e0f",
                "event_name": "Signed Up", "event_type": "track",
                "payload": {"plan": "pro", "n": 3},
            })
        );
    }

    #[test]
    fn event_json_tell_log_keeps_source() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Log, 5);
        b.u8(tag::LOG_TYPE, 1);
        b.u8(tag::LEVEL, 3);
        b.str(tag::SOURCE, "db-host-1");
        b.str(tag::SERVICE, "api");
        b.bytes(tag::PAYLOAD, b"not json \xff");
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "log");
        assert_eq!(v["log_type"], "log");
        assert_eq!(v["level"], "error");
        assert_eq!(v["source"], "db-host-1");
        assert_eq!(v["payload"], "not json \u{fffd}");
        assert_eq!(v["peer"], "1.2.3.4:5");
    }

    #[test]
    fn event_json_metric_with_histogram() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Metric, 5);
        b.str(tag::METRIC_NAME, "http.latency");
        b.f64(tag::METRIC_VALUE, 0.25);
        b.u8(tag::METRIC_TYPE, 3);
        b.u8(tag::TEMPORALITY, 2);
        b.label(b"route", b"/a");
        b.label(b"code", b"200");
        let mut h = Vec::new();
        h.extend_from_slice(&10u64.to_le_bytes());
        for v in [2.5f64, 0.1, 0.9] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for (upper, count) in [(0.5f64, 7u64), (f64::INFINITY, 3)] {
            h.extend_from_slice(&upper.to_le_bytes());
            h.extend_from_slice(&count.to_le_bytes());
        }
        b.bytes(tag::HISTOGRAM, &h);
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "metric");
        assert_eq!(v["name"], "http.latency");
        assert_eq!(v["value"], 0.25);
        assert_eq!(v["metric_type"], "histogram");
        assert_eq!(v["temporality"], "delta");
        assert_eq!(v["labels"], json!({"route": "/a", "code": "200"}));
        assert_eq!(
            v["histogram"],
            json!({"count": 10, "sum": 2.5, "min": 0.1, "max": 0.9, "buckets": [[0.5, 7], ["+Inf", 3]]})
        );
    }

    #[test]
    fn event_json_syslog_with_peer_raw_and_flags() {
        let mut b = BlockBuilder::default();
        b.begin(Kind::Syslog, 5);
        b.str(tag::PEER, "192.168.1.9:514");
        b.bytes(tag::RAW, b"<13>hello \xfe");
        b.u8(tag::LEVEL, 5);
        b.u8(tag::FLAGS, flag::TRUNCATED | flag::UNPARSED);
        b.f64(tag::METRIC_VALUE, f64::NAN);
        b.end();
        let v = one(b);
        assert_eq!(v["kind"], "syslog");
        assert_eq!(v["peer"], "192.168.1.9:514");
        assert_eq!(v["raw"], "<13>hello \u{fffd}");
        assert_eq!(v["level"], "notice");
        assert_eq!(v["flags"], json!(["truncated", "unparsed"]));
        assert_eq!(v["value"], "NaN");
        assert!(v.get("labels").is_none());
    }

    #[test]
    fn enum_names() {
        let names: Vec<_> = (0..=7).map(event_type_name).collect();
        assert_eq!(names, ["unknown", "track", "identify", "group", "alias", "enrich", "context", "unknown"]);
        assert_eq!((0..=3).map(log_type_name).collect::<Vec<_>>(), ["unknown", "log", "enrich", "unknown"]);
        let levels: Vec<_> = (0..=9).map(level_name).collect();
        assert_eq!(
            levels,
            ["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug", "trace", "unknown"]
        );
        assert_eq!(
            (0..=4).map(metric_type_name).collect::<Vec<_>>(),
            ["unknown", "gauge", "counter", "histogram", "unknown"]
        );
        assert_eq!(
            (0..=3).map(temporality_name).collect::<Vec<_>>(),
            ["unspecified", "cumulative", "delta", "unspecified"]
        );
    }
}
