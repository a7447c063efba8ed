//! One stored row: a chunk of consecutive events of one workspace.
//!
//! The row key is `(workspace, first_seq)`; event `i` of the chunk has
//! sequence `first_seq + i`. The value is versioned:
//!
//! ```text
//! v1:  version:u8(=1)  codec:u8  count:u32le  min_received_ms:u64le  max_received_ms:u64le
//!      raw_len:u32le  listener_len:u8 listener  peer_len:u8 peer  body
//! v2:  the same with version 2 and, between peer and body,
//!      origin_len:u8 origin_node  origin_first_seq:u64le
//! ```
//!
//! v2 chunks hold events a central node took from an edge node through
//! NATS (see `source::nats`): event `i` came from `origin_node`, where its
//! sequence number was `origin_first_seq + i`. Edges write v1.
//!
//! `codec` 0 stores the record block as is, 1 LZ4-compressed (block format;
//! written up to events format v2), 2 zstd-compressed (one frame; written
//! since format v3); `raw_len` is the block's length once decompressed. The
//! block is the record encoding of `record.rs`. Chunks are built by sources
//! through the one [`ChunkBuilder`] (so compression runs on the connection's
//! task, in parallel); the writer only files them.
//!
//! zstd at level [`ZSTD_LEVEL`] (tuned) costs what LZ4 did per byte and
//! stores 15% fewer (on the `sluice bench tcp` workload: 0.39 of the record
//! bytes against LZ4's 0.46, docs/bench.md). Each thread keeps one compression
//! and one decompression context, so their memory is bounded by the number
//! of threads, not of connections.

use std::cell::RefCell;

use thiserror::Error;

use crate::record::BlockBuilder;

pub const FORMAT_V1: u8 = 1;
/// A v1 chunk with its origin (events relayed from another node).
pub const FORMAT_V2: u8 = 2;
/// Set in the version byte of a head row whose value continues in other
/// rows (see `store::rows`); [`peek`] reads through it, [`decode`] wants the
/// whole value, with it cleared.
pub const SPLIT: u8 = 0x80;
const CODEC_PLAIN: u8 = 0;
const CODEC_LZ4: u8 = 1;
const CODEC_ZSTD: u8 = 2;
/// One of zstd's fast levels, with its match finder tuned for the blocks
/// sources seal (100–200 KB of records whose JSON repeats keys and values):
/// a 64 Ki-entry hash table and 7-byte minimum matches. On 64 distinct
/// 500-event blocks of the bench workload that runs as fast as plain level
/// -3 did (and LZ4 before it, about 0.42 µs per event here; `cargo bench
/// --bench decode`, one block over and over, has it 5% slower) and stores
/// 5% less than -3 (0.33 of the wire bytes). Plain -1 and 1 store another
/// 2% and 10% less for 12% and 40% more CPU on the hot path, which is most
/// of the daemon's CPU (docs/bench.md).
pub const ZSTD_LEVEL: i32 = -2;
const ZSTD_HASH_LOG: u32 = 16;
const ZSTD_MIN_MATCH: u32 = 7;
/// Blocks smaller than this are not worth compressing.
const COMPRESS_MIN: usize = 256;
const FIXED_HEADER: usize = 1 + 1 + 4 + 8 + 8 + 4;
/// A chunk never holds more than this many bytes of records.
pub const MAX_RAW_LEN: usize = 1 << 30;

/// The one way sources build chunks: records go into its block, and
/// [`ChunkBuilder::seal`] encodes them with where and when they came from.
#[derive(Debug, Default)]
pub struct ChunkBuilder {
    block: BlockBuilder,
    min_received_ms: u64,
    max_received_ms: u64,
}

impl ChunkBuilder {
    pub fn with_capacity(bytes: usize) -> ChunkBuilder {
        ChunkBuilder { block: BlockBuilder::with_capacity(bytes), min_received_ms: u64::MAX, max_received_ms: 0 }
    }

    /// The block to append records received at `received_ms` to.
    pub fn records(&mut self, received_ms: u64) -> &mut BlockBuilder {
        self.min_received_ms = self.min_received_ms.min(received_ms);
        self.max_received_ms = self.max_received_ms.max(received_ms);
        &mut self.block
    }

    pub fn count(&self) -> u32 {
        self.block.count()
    }

    pub fn len_bytes(&self) -> usize {
        self.block.len_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    /// Forgets what was appended.
    pub fn clear(&mut self) {
        self.block.clear();
        self.min_received_ms = u64::MAX;
        self.max_received_ms = 0;
    }

    /// Encodes the records as one chunk of `listener` and `peer` and empties
    /// the builder; returns the chunk and its record count.
    pub fn seal(&mut self, listener: &str, peer: &str) -> (Vec<u8>, u32) {
        let count = self.block.count();
        let meta = ChunkMeta {
            listener,
            peer,
            count,
            min_received_ms: self.min_received_ms.min(self.max_received_ms),
            max_received_ms: self.max_received_ms,
        };
        let chunk = encode(&meta, self.block.finished());
        self.clear();
        (chunk, count)
    }
}

/// What travels with every chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta<'a> {
    /// Config section name of the listener that took the data, e.g. `tcp`.
    pub listener: &'a str,
    /// Peer address as text.
    pub peer: &'a str,
    pub count: u32,
    pub min_received_ms: u64,
    pub max_received_ms: u64,
}

/// Encodes a chunk value, compressing the block when that pays.
pub fn encode(meta: &ChunkMeta<'_>, block: &[u8]) -> Vec<u8> {
    if block.len() >= COMPRESS_MIN {
        let encoded = with_compressor(|compressor, scratch| {
            scratch.clear();
            scratch.reserve(zstd::zstd_safe::compress_bound(block.len()));
            compressor.compress_to_buffer(block, scratch).ok()?;
            Some(encode_with(meta, CODEC_ZSTD, block.len(), scratch))
        });
        // Compression only fails when out of memory; store plain then.
        if let Some(value) = encoded {
            return value;
        }
    }
    encode_with(meta, CODEC_PLAIN, block.len(), block)
}

/// The header, then `body` (the block as `codec` stores it).
fn encode_with(meta: &ChunkMeta<'_>, codec: u8, raw_len: usize, body: &[u8]) -> Vec<u8> {
    let listener = clip(meta.listener);
    let peer = clip(meta.peer);
    let mut out = Vec::with_capacity(FIXED_HEADER + 2 + listener.len() + peer.len() + body.len());
    out.push(FORMAT_V1);
    out.push(codec);
    out.extend_from_slice(&meta.count.to_le_bytes());
    out.extend_from_slice(&meta.min_received_ms.to_le_bytes());
    out.extend_from_slice(&meta.max_received_ms.to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.push(listener.len() as u8);
    out.extend_from_slice(listener);
    out.push(peer.len() as u8);
    out.extend_from_slice(peer);
    out.extend_from_slice(body);
    out
}

thread_local! {
    /// This thread's zstd compression context and its output buffer.
    static COMPRESSOR: RefCell<Option<(zstd::bulk::Compressor<'static>, Vec<u8>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's compressor and its output buffer; `None`
/// when a context cannot be made.
fn with_compressor<T>(f: impl FnOnce(&mut zstd::bulk::Compressor<'static>, &mut Vec<u8>) -> Option<T>) -> Option<T> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            let mut compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok()?;
            compressor.set_parameter(zstd::zstd_safe::CParameter::HashLog(ZSTD_HASH_LOG)).ok()?;
            compressor.set_parameter(zstd::zstd_safe::CParameter::MinMatch(ZSTD_MIN_MATCH)).ok()?;
            *slot = Some((compressor, Vec::new()));
        }
        let (compressor, scratch) = slot.as_mut()?;
        f(compressor, scratch)
    })
}

fn zstd_decompress(body: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().map_err(|e| e.to_string())?;
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let decompressor = slot.as_mut().ok_or("no zstd context")?;
        let block = decompressor.decompress(body, raw_len).map_err(|e| e.to_string())?;
        if block.len() != raw_len {
            return Err(format!("{} bytes decompressed, header says {raw_len}", block.len()));
        }
        Ok(block)
    })
}

fn clip(s: &str) -> &[u8] {
    let b = s.as_bytes();
    &b[..b.len().min(255)]
}

/// A chunk value that does not decode.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    #[error("chunk format version {version} is newer than this sluice understands")]
    UnknownVersion { version: u8 },
    #[error("chunk codec {codec} is unknown")]
    UnknownCodec { codec: u8 },
    #[error("chunk header truncated")]
    Truncated,
    #[error("chunk body does not decompress: {reason}")]
    Corrupt { reason: String },
}

/// A decoded chunk: its metadata and the record block.
#[derive(Debug)]
pub struct Chunk {
    pub listener: String,
    pub peer: String,
    pub count: u32,
    pub min_received_ms: u64,
    pub max_received_ms: u64,
    pub block: Vec<u8>,
    /// Set on chunks relayed from another node (v2).
    pub origin: Option<Origin>,
}

/// Reads only the fixed header: count and received-at range.
pub fn peek(value: &[u8]) -> Result<(u32, u64, u64), ChunkError> {
    let h = value.get(..FIXED_HEADER).ok_or(ChunkError::Truncated)?;
    if !matches!(h[0] & !SPLIT, FORMAT_V1 | FORMAT_V2) {
        return Err(ChunkError::UnknownVersion { version: h[0] & !SPLIT });
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let count = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
    Ok((count, u64_at(6), u64_at(14)))
}

pub fn decode(value: &[u8]) -> Result<Chunk, ChunkError> {
    let (count, min_received_ms, max_received_ms) = peek(value)?;
    if value[0] & SPLIT != 0 {
        return Err(ChunkError::Truncated);
    }
    let codec = value[1];
    let raw_len = u32::from_le_bytes([value[22], value[23], value[24], value[25]]) as usize;
    let mut at = FIXED_HEADER;
    let listener = take_str(value, &mut at)?;
    let peer = take_str(value, &mut at)?;
    let origin = if value[0] == FORMAT_V2 {
        let node = take_str(value, &mut at)?;
        let seq = value.get(at..at + 8).ok_or(ChunkError::Truncated)?;
        at += 8;
        Some(Origin { node, first_seq: u64::from_le_bytes(seq.try_into().map_err(|_| ChunkError::Truncated)?) })
    } else {
        None
    };
    let body = &value[at..];
    if codec != CODEC_PLAIN && raw_len > MAX_RAW_LEN {
        return Err(ChunkError::Corrupt { reason: format!("raw length {raw_len} over limit") });
    }
    let block = match codec {
        CODEC_PLAIN => body.to_vec(),
        CODEC_LZ4 => {
            lz4_flex::block::decompress(body, raw_len).map_err(|e| ChunkError::Corrupt { reason: e.to_string() })?
        }
        CODEC_ZSTD => zstd_decompress(body, raw_len).map_err(|reason| ChunkError::Corrupt { reason })?,
        codec => return Err(ChunkError::UnknownCodec { codec }),
    };
    Ok(Chunk { listener, peer, count, min_received_ms, max_received_ms, block, origin })
}

/// Where the events of a relayed chunk came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The edge node's `node_id`.
    pub node: String,
    /// The first event's sequence number on that node.
    pub first_seq: u64,
}

/// The value with `origin` in its header (v2), its body as it was; `value`
/// must be a whole v1 value (not a split head).
pub fn with_origin(value: &[u8], origin: &Origin) -> Result<Vec<u8>, ChunkError> {
    peek(value)?;
    if value[0] != FORMAT_V1 {
        return Err(ChunkError::UnknownVersion { version: value[0] });
    }
    let mut at = FIXED_HEADER;
    for _ in 0..2 {
        let len = *value.get(at).ok_or(ChunkError::Truncated)? as usize;
        at += 1 + len;
    }
    let body = value.get(at..).ok_or(ChunkError::Truncated)?;
    let node = clip(&origin.node);
    let mut out = Vec::with_capacity(value.len() + 9 + node.len());
    out.extend_from_slice(&value[..at]);
    out[0] = FORMAT_V2;
    out.push(node.len() as u8);
    out.extend_from_slice(node);
    out.extend_from_slice(&origin.first_seq.to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Events `from..to` (indexes into the chunk) as a chunk of their own, with
/// the same listener, peer and origin (its first sequence moved on by
/// `from`); `to` is capped at the count. Returns the value and its count.
pub fn slice(value: &[u8], from: u32, to: u32) -> Result<(Vec<u8>, u32), ChunkError> {
    let chunk = decode(value)?;
    let corrupt = |e: crate::record::RecordError| ChunkError::Corrupt { reason: e.to_string() };
    let mut block = crate::record::BlockBuilder::with_capacity(chunk.block.len());
    let (mut min, mut max) = (u64::MAX, 0);
    let mut records = crate::record::records(&chunk.block);
    for i in 0..to {
        let start = records.offset();
        let Some(rec) = records.next() else { break };
        let rec = rec.map_err(corrupt)?;
        if i >= from {
            block.raw(&chunk.block[start..records.offset()]);
            min = min.min(rec.received_at_ms);
            max = max.max(rec.received_at_ms);
        }
    }
    let count = block.count();
    let meta = ChunkMeta {
        listener: &chunk.listener,
        peer: &chunk.peer,
        count,
        min_received_ms: min.min(max),
        max_received_ms: max,
    };
    let mut out = encode(&meta, block.finished());
    if let Some(o) = chunk.origin {
        let origin = Origin { node: o.node, first_seq: o.first_seq + u64::from(from) };
        out = with_origin(&out, &origin)?;
    }
    Ok((out, count))
}

fn take_str(value: &[u8], at: &mut usize) -> Result<String, ChunkError> {
    let len = *value.get(*at).ok_or(ChunkError::Truncated)? as usize;
    let bytes = value.get(*at + 1..*at + 1 + len).ok_or(ChunkError::Truncated)?;
    *at += 1 + len;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(count: u32) -> ChunkMeta<'static> {
        ChunkMeta { listener: "tcp", peer: "127.0.0.1:5000", count, min_received_ms: 5, max_received_ms: 9 }
    }

    #[test]
    fn small_blocks_stay_plain_and_large_ones_compress() {
        for block in [vec![1u8; 10], b"{\"a\":1}".repeat(500)] {
            let value = encode(&meta(3), &block);
            let chunk = decode(&value).unwrap();
            assert_eq!(chunk.block, block);
            assert_eq!((chunk.count, chunk.min_received_ms, chunk.max_received_ms), (3, 5, 9));
            assert_eq!((chunk.listener.as_str(), chunk.peer.as_str()), ("tcp", "127.0.0.1:5000"));
        }
        assert!(encode(&meta(1), &b"x".repeat(5000)).len() < 1000);
    }

    #[test]
    fn every_codec_decodes() {
        let block = b"{\"a\":1,\"b\":\"xyz\"}".repeat(100);
        let lz4 = lz4_flex::block::compress(&block);
        let zstd = zstd::bulk::compress(&block, ZSTD_LEVEL).unwrap();
        for (codec, body) in [(CODEC_PLAIN, &block), (CODEC_LZ4, &lz4), (CODEC_ZSTD, &zstd)] {
            let value = encode_with(&meta(2), codec, block.len(), body);
            assert_eq!(decode(&value).unwrap().block, block, "codec {codec}");
        }
        assert_eq!(encode(&meta(2), &block)[1], CODEC_ZSTD, "new chunks are zstd");
    }

    #[test]
    fn a_body_that_does_not_match_its_length_is_corrupt() {
        let block = b"0123456789".repeat(100);
        let zstd = zstd::bulk::compress(&block, ZSTD_LEVEL).unwrap();
        for raw_len in [block.len() - 1, block.len() + 1] {
            let value = encode_with(&meta(2), CODEC_ZSTD, raw_len, &zstd);
            assert!(matches!(decode(&value), Err(ChunkError::Corrupt { .. })), "raw_len {raw_len}");
        }
    }

    #[test]
    fn damaged_values_error() {
        let value = encode(&meta(1), &b"y".repeat(1000));
        for cut in 0..value.len() {
            let _ = decode(&value[..cut]);
        }
        let mut newer = value.clone();
        newer[0] = 3;
        assert_eq!(decode(&newer).unwrap_err(), ChunkError::UnknownVersion { version: 3 });
    }

    #[test]
    fn an_origin_travels_in_the_header_and_slices_keep_it_numbered() {
        let mut b = ChunkBuilder::with_capacity(64);
        for i in 0..5u64 {
            let block = b.records(100 + i);
            block.begin(crate::record::Kind::Log, 100 + i);
            block.str(crate::record::tag::SERVICE, &format!("e{i}"));
            block.end();
        }
        let (value, _) = b.seal("relp", "10.0.0.1:1");
        let origin = Origin { node: "edge-1".into(), first_seq: 40 };
        let relayed = with_origin(&value, &origin).unwrap();
        let c = decode(&relayed).unwrap();
        assert_eq!((c.origin.as_ref(), c.count, c.listener.as_str()), (Some(&origin), 5, "relp"));
        assert_eq!(c.block, decode(&value).unwrap().block, "the body is untouched");
        assert!(with_origin(&relayed, &origin).is_err(), "only v1 values get an origin");

        let (middle, n) = slice(&relayed, 1, 3).unwrap();
        let m = decode(&middle).unwrap();
        assert_eq!((n, m.count, m.min_received_ms, m.max_received_ms), (2, 2, 101, 102));
        assert_eq!(m.origin, Some(Origin { node: "edge-1".into(), first_seq: 41 }));
        let names: Vec<_> = crate::record::records(&m.block)
            .map(|r| String::from_utf8(r.unwrap().get(crate::record::tag::SERVICE).unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(names, ["e1", "e2"]);
        let (tail, n) = slice(&value, 3, 99).unwrap();
        assert_eq!((n, decode(&tail).unwrap().origin), (2, None));
    }

    #[test]
    fn a_builder_seals_its_records_with_their_origin_and_time_range_and_starts_over() {
        let mut b = ChunkBuilder::with_capacity(64);
        for at in [30, 10, 20] {
            let block = b.records(at);
            block.begin(crate::record::Kind::Log, at);
            block.str(crate::record::tag::SERVICE, "svc");
            block.end();
        }
        let (value, count) = b.seal("syslog_tcp", "10.0.0.1:514");
        assert!(b.is_empty());
        let c = decode(&value).unwrap();
        assert_eq!((count, c.count, c.listener.as_str(), c.peer.as_str()), (3, 3, "syslog_tcp", "10.0.0.1:514"));
        assert_eq!((c.min_received_ms, c.max_received_ms), (10, 30));
        b.records(5).begin(crate::record::Kind::Log, 5);
        b.records(5).end();
        let (value, _) = b.seal("tcp", "p");
        let c = decode(&value).unwrap();
        assert_eq!((c.min_received_ms, c.max_received_ms), (5, 5), "a sealed builder forgets its time range");
    }
}
