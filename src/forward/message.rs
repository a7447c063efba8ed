//! What the forwarder publishes: committed events of one workspace from its
//! cursor on, as one message of at most the server's `max_payload`.
//!
//! `encoding = "chunk"`: the body is stored chunk values, each preceded by
//! its length (`len:u32be value`), in sequence order. A message ends before
//! a chunk that does not fit; only a chunk too large for any message, or
//! one that starts before the cursor, is cut into a chunk of the events
//! that fit (`store::chunk::slice`, which recompresses). `encoding = "ndjson"`: the body
//! is the events as `sluice export` prints them, one JSON object a line.
//! An event too large for a message on its own is skipped and counted.
//!
//! The headers are in [`Headers`]; `docs/forward.md` documents both bodies
//! byte for byte.

use crate::config::Encoding;
use crate::store::query::Snapshot;
use crate::store::reader::StoredEvent;
use crate::store::{StoreError, chunk};

/// Chunk bytes read from the store per message built, beyond what fits.
const READ_AHEAD: usize = 1 << 20;
/// Room kept in a message for its headers.
pub const HEADER_ROOM: usize = 1024;

/// The format of a chunk-encoded body (header `Sluice-Format`).
pub const CHUNK_FORMAT: &str = "chunk/1";
pub const NDJSON_FORMAT: &str = "ndjson/1";

/// Header names. `Nats-Msg-Id` is `node:incarnation:workspace:first_seq`.
pub mod header {
    pub const NODE: &str = "Sluice-Node";
    /// The edge data dir's incarnation, 16 lowercase hex digits.
    pub const INCARNATION: &str = "Sluice-Incarnation";
    pub const WORKSPACE: &str = "Sluice-Workspace";
    /// The edge's cursor before this message: events from here up to
    /// `Sluice-First-Seq` are gone at the edge (retention or too large).
    pub const FROM_SEQ: &str = "Sluice-From-Seq";
    /// Sequence number (on the edge) of the first event in the body.
    pub const FIRST_SEQ: &str = "Sluice-First-Seq";
    /// Events in the body, numbered on from `Sluice-First-Seq`.
    pub const COUNT: &str = "Sluice-Count";
    /// `chunk/1` or `ndjson/1`.
    pub const FORMAT: &str = "Sluice-Format";
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub workspace: u32,
    /// The cursor it was built from.
    pub from_seq: u64,
    pub first_seq: u64,
    /// Events in the body.
    pub count: u32,
    /// Where the cursor goes once JetStream has it (past skipped events too).
    pub end: u64,
    /// Events skipped for being too large for any message.
    pub too_large: u32,
    pub body: Vec<u8>,
}

/// The message of `ws` from `cursor` on, with a body of at most `limit`
/// bytes; `None` when nothing is committed past the cursor.
pub fn build(
    snapshot: &Snapshot,
    ws: u32,
    cursor: u64,
    limit: usize,
    encoding: Encoding,
) -> Result<Option<Message>, StoreError> {
    let chunks = snapshot.chunk_values(ws, cursor, limit.saturating_add(READ_AHEAD))?;
    let mut m = Message {
        workspace: ws,
        from_seq: cursor,
        first_seq: 0,
        count: 0,
        end: cursor,
        too_large: 0,
        body: Vec::new(),
    };
    for (seq, value) in &chunks {
        let Ok((count, _, _)) = chunk::peek(value) else {
            tracing::error!(workspace = ws, first_seq = seq, "a damaged chunk cannot be forwarded; skipped");
            continue;
        };
        let end = seq.saturating_add(u64::from(count));
        if end <= m.end {
            continue;
        }
        if *seq > m.end && m.count > 0 {
            break; // a gap (retention) ends the message: the next one says where it starts
        }
        let skip = m.end.saturating_sub(*seq) as u32;
        let added = match encoding {
            Encoding::Chunk => add_chunk(&mut m, *seq, value, skip, count, limit),
            Encoding::Ndjson => add_lines(&mut m, ws, *seq, value, skip, limit),
        };
        match added {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::error!(workspace = ws, first_seq = seq, error = %e, "a chunk that does not decode cannot be forwarded; skipped");
                m.end = end;
            }
        }
    }
    Ok((m.end > cursor).then_some(m))
}

/// Appends events `skip..` of a chunk (cut to fit); false once full.
fn add_chunk(
    m: &mut Message,
    seq: u64,
    value: &[u8],
    skip: u32,
    count: u32,
    limit: usize,
) -> Result<bool, chunk::ChunkError> {
    let room = limit.saturating_sub(m.body.len() + 4);
    if skip == 0 && value.len() <= room {
        push_part(m, seq, value, count);
        return Ok(true);
    }
    if m.count > 0 {
        return Ok(false); // the next message takes it whole: cutting costs a recompression
    }
    // Cut: the most events from `skip` on that fit, halving until they do.
    let mut take = count - skip;
    let mut from = skip;
    while from < count {
        let (part, n) = chunk::slice(value, from, from + take)?;
        if part.len() <= room {
            push_part(m, seq + u64::from(from), &part, n);
            return Ok(from + take >= count);
        }
        if take > 1 {
            take /= 2;
            continue;
        }
        // One event larger than any message: skipped, counted.
        tracing::error!(
            workspace = m.workspace,
            seq = seq + u64::from(from),
            bytes = part.len(),
            limit,
            "an event is larger than the NATS server's max_payload; not forwarded"
        );
        m.too_large += 1;
        m.end = seq + u64::from(from) + 1;
        from += 1;
        take = count - from;
    }
    Ok(true)
}

fn push_part(m: &mut Message, seq: u64, part: &[u8], n: u32) {
    if m.count == 0 {
        m.first_seq = seq;
    }
    m.body.extend_from_slice(&(part.len() as u32).to_be_bytes());
    m.body.extend_from_slice(part);
    m.count += n;
    m.end = seq + u64::from(n);
}

/// Appends events `skip..` of a chunk as NDJSON lines; false once full.
fn add_lines(
    m: &mut Message,
    ws: u32,
    seq: u64,
    value: &[u8],
    skip: u32,
    limit: usize,
) -> Result<bool, chunk::ChunkError> {
    let c = chunk::decode(value)?;
    let mut line = Vec::new();
    for (i, rec) in crate::record::records(&c.block).enumerate().skip(skip as usize) {
        let rec = rec.map_err(|e| chunk::ChunkError::Corrupt { reason: e.to_string() })?;
        let this = seq + i as u64;
        let origin = c.origin.as_ref().map(|o| (o.node.as_str(), o.first_seq + i as u64));
        let ev =
            StoredEvent { seq: this, workspace: ws, listener: &c.listener, chunk_peer: &c.peer, origin, record: rec };
        line.clear();
        serde_json::to_writer(&mut line, &crate::export::event_json(&ev))
            .map_err(|e| chunk::ChunkError::Corrupt { reason: e.to_string() })?;
        line.push(b'\n');
        if m.body.len() + line.len() > limit {
            if m.count > 0 {
                return Ok(false);
            }
            tracing::error!(
                workspace = ws,
                seq = this,
                bytes = line.len(),
                limit,
                "an event is larger than the NATS server's max_payload; not forwarded"
            );
            m.too_large += 1;
            m.end = this + 1;
            continue;
        }
        if m.count == 0 {
            m.first_seq = this;
        }
        m.body.extend_from_slice(&line);
        m.count += 1;
        m.end = this + 1;
    }
    Ok(true)
}

/// A chunk-encoded body as the central node stores it: each chunk checked
/// to decode whole (header, body, every record) and given its origin
/// (`node`, numbered on from `first_seq`); with their event counts.
pub fn relayed_parts(body: &[u8], node: &str, first_seq: u64) -> Result<Vec<(Vec<u8>, u32)>, String> {
    let mut out = Vec::new();
    let mut at = first_seq;
    for value in parts(body)? {
        let c = chunk::decode(value).map_err(|e| e.to_string())?;
        if c.origin.is_some() {
            return Err("a chunk already carries an origin".into());
        }
        let records = crate::record::records(&c.block).try_fold(0u32, |n, r| r.map(|_| n + 1));
        let records = records.map_err(|e| e.to_string())?;
        if records != c.count {
            return Err(format!("a chunk holds {records} records, its header says {}", c.count));
        }
        let origin = chunk::Origin { node: node.to_string(), first_seq: at };
        out.push((chunk::with_origin(value, &origin).map_err(|e| e.to_string())?, c.count));
        at = at.checked_add(u64::from(c.count)).ok_or("sequence numbers overflow")?;
    }
    Ok(out)
}

/// Splits a chunk-encoded body into its chunk values.
pub fn parts(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let len = rest.get(..4).ok_or("truncated length")?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let part = rest.get(4..4 + len).ok_or_else(|| format!("a part of {len} bytes runs past the body"))?;
        out.push(part);
        rest = &rest[4 + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::query::EventsHandle;

    /// A data dir with chunks of `sizes[i]` events each (`pad` bytes of
    /// incompressible payload per event), in workspace 1.
    fn store(sizes: &[u32], pad: usize) -> (tempfile::TempDir, EventsHandle) {
        let dir = tempfile::tempdir().unwrap();
        let mut seq = 1u64;
        let mut rows = Vec::new();
        for &n in sizes {
            let mut b = chunk::ChunkBuilder::with_capacity(64);
            for i in 0..n {
                let block = b.records(1);
                block.begin(crate::record::Kind::Event, 1);
                let mut x = (seq + u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let noise: Vec<u8> = (0..pad)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                block.bytes(crate::record::tag::PAYLOAD, &noise);
                block.end();
            }
            rows.push((seq, b.seal("tcp", "p").0));
            seq += u64::from(n);
        }
        let db = crate::store::events::open(&dir.path().join(crate::store::EVENTS_FILE), 1 << 20).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut chunks = crate::store::rows::ChunkRows::open(&tx).unwrap();
            for (seq, value) in &rows {
                chunks.insert((1, *seq), value).unwrap();
            }
        }
        tx.commit().unwrap();
        drop(db);
        let events = EventsHandle::open(dir.path(), 1 << 20).unwrap();
        (dir, events)
    }

    fn all(events: &EventsHandle, limit: usize) -> Vec<Message> {
        let mut out = Vec::new();
        let mut cursor = 1;
        while let Some(m) = build(&events.snapshot().unwrap(), 1, cursor, limit, Encoding::Chunk).unwrap() {
            cursor = m.end;
            out.push(m);
        }
        out
    }

    #[test]
    fn messages_end_between_chunks_and_cut_only_a_chunk_too_large_for_any() {
        let (_dir, events) = store(&[10, 10, 10, 40], 100);
        let one = 10 * 100 + 200; // a 10-event chunk, with room to spare
        let messages = all(&events, 2 * one);
        let spans: Vec<(u64, u32)> = messages.iter().map(|m| (m.first_seq, m.count)).collect();
        // Two whole chunks, then one (the next does not fit whole), then the
        // 40-event chunk in cut pieces that follow each other.
        assert_eq!(&spans[..2], &[(1, 20), (21, 10)]);
        let mut next = 31;
        for m in &messages[2..] {
            assert_eq!(m.first_seq, next, "{spans:?}");
            assert!(m.body.len() <= 2 * one);
            next += u64::from(m.count);
        }
        assert_eq!(next, 71, "every event forwarded once: {spans:?}");
        for m in &messages {
            let parts = relayed_parts(&m.body, "e", m.first_seq).unwrap();
            assert_eq!(parts.iter().map(|(_, n)| n).sum::<u32>(), m.count);
        }
    }

    #[test]
    fn an_event_larger_than_any_message_is_skipped_and_counted() {
        let (_dir, events) = store(&[1, 1, 1], 5000);
        let messages = all(&events, 1000);
        assert!(messages.iter().all(|m| m.count == 0));
        assert_eq!(messages.iter().map(|m| m.too_large).sum::<u32>(), 3);
        assert_eq!(messages.last().unwrap().end, 4);
    }
}
