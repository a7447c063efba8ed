//! How a chunk value lies in rows of events.redb.
//!
//! redb writes a leaf page whole, and pages come in powers of two of 4 KiB:
//! a 53 KB chunk stored as one value costs a 64 KiB page, 21% more than it
//! holds. A value longer than one small page is therefore cut into pieces
//! that each fill a page of their own, largest first ([`pieces`]); the last
//! piece is what is left, under 4 KiB. The value's first bytes, as many as
//! that last piece holds, are its head: the row of `chunks` at
//! `(workspace, first_seq)`, so heads of many chunks share a leaf of
//! `chunks` instead of each taking a page. The full pieces follow in
//! `chunk_tails` at `(workspace, first_seq, 1..)`. The head's version byte
//! carries [`chunk::SPLIT`], so readers know to fetch the tails; a value
//! that fits one piece is stored as it is. Rows written with the largest
//! piece as the head (before this layout) read the same: readers only
//! concatenate head and tails.
//!
//! Cutting a 53 KB value into pieces writes 58 KB per chunk at 8 chunks
//! per commit instead of 69 KB (docs/bench.md).

use std::borrow::Cow;

use redb::{ReadableTable, Table};

use super::chunk;
use super::events::{CHUNK_TAILS, CHUNKS};

/// What redb's leaf page needs besides one value: its header, the entry's
/// offsets and key, with room to spare.
const LEAF_OVERHEAD: usize = 64;
const PAGE: usize = 4096;
/// A head holds at least this much of its value: all `chunk::peek` reads.
const MIN_HEAD: usize = 64;

pub(crate) type ChunkKey = (u32, u64);

/// The piece lengths of a `len`-byte value, largest first: each the
/// largest power-of-two page (minus [`LEAF_OVERHEAD`]) that is still full.
fn pieces(len: usize) -> impl Iterator<Item = usize> {
    let mut left = len;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        let mut page = PAGE;
        while page * 2 - LEAF_OVERHEAD <= left {
            page *= 2;
        }
        let piece = left.min(page - LEAF_OVERHEAD);
        left -= piece;
        Some(piece)
    })
}

/// The head's length and the tails' of a `len`-byte value: the remainder
/// [`pieces`] leaves is the head, unless it is too short to hold the
/// chunk's fixed header (then the largest piece is).
fn layout(len: usize) -> (usize, Vec<usize>) {
    let mut pieces: Vec<usize> = pieces(len).collect();
    let at = match pieces.last() {
        Some(&last) if last >= MIN_HEAD => pieces.len() - 1,
        _ => 0,
    };
    let head = if pieces.is_empty() { 0 } else { pieces.remove(at) };
    (head, pieces)
}

/// The chunk tables of one write transaction.
pub(crate) struct ChunkRows<'t> {
    pub chunks: Table<'t, ChunkKey, &'static [u8]>,
    tails: Table<'t, (u32, u64, u8), &'static [u8]>,
    head: Vec<u8>,
}

impl<'t> ChunkRows<'t> {
    pub fn open(tx: &'t redb::WriteTransaction) -> Result<ChunkRows<'t>, redb::TableError> {
        Ok(ChunkRows { chunks: tx.open_table(CHUNKS)?, tails: tx.open_table(CHUNK_TAILS)?, head: Vec::new() })
    }

    /// Stores a chunk value (which must not be empty) under `key`.
    pub fn insert(&mut self, key: ChunkKey, value: &[u8]) -> Result<(), redb::StorageError> {
        let (head_len, tails) = layout(value.len());
        if head_len == value.len() {
            self.chunks.insert(key, value)?;
            return Ok(());
        }
        self.head.clear();
        self.head.extend_from_slice(&value[..head_len]);
        self.head[0] |= chunk::SPLIT;
        self.chunks.insert(key, self.head.as_slice())?;
        let mut at = head_len;
        for (n, len) in (1u8..).zip(tails) {
            self.tails.insert((key.0, key.1, n), &value[at..at + len])?;
            at += len;
        }
        Ok(())
    }

    /// Deletes the chunk at `key` with its tails; returns the bytes its
    /// value held (0 if there was none).
    pub fn remove(&mut self, key: ChunkKey) -> Result<u64, redb::StorageError> {
        let Some(head) = self.chunks.remove(key)? else { return Ok(0) };
        let mut bytes = head.value().len() as u64;
        if is_split(head.value()) {
            drop(head);
            for tail in self.tails.extract_from_if((key.0, key.1, 1)..=(key.0, key.1, u8::MAX), |_, _| true)? {
                bytes += tail?.1.value().len() as u64;
            }
        }
        Ok(bytes)
    }

    /// The bytes of the value stored at `key` whose head is `head`.
    pub fn stored_len(&self, key: ChunkKey, head: &[u8]) -> Result<u64, redb::StorageError> {
        let mut bytes = head.len() as u64;
        if is_split(head) {
            for tail in self.tails.range((key.0, key.1, 1)..=(key.0, key.1, u8::MAX))? {
                bytes += tail?.1.value().len() as u64;
            }
        }
        Ok(bytes)
    }
}

fn is_split(head: &[u8]) -> bool {
    head.first().is_some_and(|b| b & chunk::SPLIT != 0)
}

/// The whole value of the chunk at `key` whose head row is `head`.
pub(crate) fn join<'h>(
    tails: &impl ReadableTable<(u32, u64, u8), &'static [u8]>,
    key: ChunkKey,
    head: &'h [u8],
) -> Result<Cow<'h, [u8]>, redb::StorageError> {
    if !is_split(head) {
        return Ok(Cow::Borrowed(head));
    }
    let mut value = head.to_vec();
    value[0] &= !chunk::SPLIT;
    for tail in tails.range((key.0, key.1, 1)..=(key.0, key.1, u8::MAX))? {
        value.extend_from_slice(tail?.1.value());
    }
    Ok(Cow::Owned(value))
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::store::events;

    #[test]
    fn pieces_fill_pages_largest_first() {
        assert_eq!(pieces(0).count(), 0);
        assert_eq!(pieces(4000).collect::<Vec<_>>(), [4000]);
        assert_eq!(pieces(4032).collect::<Vec<_>>(), [4032]);
        assert_eq!(pieces(4033).collect::<Vec<_>>(), [4032, 1]);
        assert_eq!(pieces(53_000).collect::<Vec<_>>(), [32_704, 16_320, 3_976]);
        for len in [1, 4095, 8128, 8129, 100_000, 3 << 20] {
            assert_eq!(pieces(len).sum::<usize>(), len);
        }
    }

    #[test]
    fn the_head_is_the_last_piece_when_it_holds_the_header() {
        assert_eq!(layout(4000), (4000, vec![]));
        assert_eq!(layout(45_000), (136, vec![32_704, 8_128, 4_032]));
        assert_eq!(layout(53_000), (3_976, vec![32_704, 16_320]));
        // One byte past a page: the head cannot be that byte.
        assert_eq!(layout(4033), (4032, vec![1]));
        for len in [1, 63, 64, 4095, 8128, 8129, 100_000, 3 << 20] {
            let (head, tails) = layout(len);
            assert_eq!(head + tails.iter().sum::<usize>(), len);
            assert!(head >= MIN_HEAD.min(len), "{len}");
        }
    }

    #[test]
    fn values_round_trip_whole_or_in_pieces_and_go_with_their_tails() {
        let dir = tempfile::tempdir().unwrap();
        let db = events::open(&dir.path().join("events.redb"), 1 << 20).unwrap();
        let value = |len: usize| -> Vec<u8> {
            let mut v: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            v[0] = chunk::FORMAT_V1;
            v
        };
        let lens = [10, 4032, 4033, 53_000, 300_000];
        let tx = db.begin_write().unwrap();
        {
            let mut rows = ChunkRows::open(&tx).unwrap();
            for (i, len) in lens.iter().enumerate() {
                rows.insert((1, i as u64 * 10), &value(*len)).unwrap();
            }
            let head = rows.chunks.get((1, 30)).unwrap().unwrap().value().to_vec();
            assert_eq!(head.len(), 3_976, "the head is the last piece");
            assert_eq!(rows.stored_len((1, 30), &head).unwrap(), 53_000);
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let (chunks, tails) = (tx.open_table(CHUNKS).unwrap(), tx.open_table(CHUNK_TAILS).unwrap());
        for (i, len) in lens.iter().enumerate() {
            let key = (1, i as u64 * 10);
            let head = chunks.get(key).unwrap().unwrap();
            assert_eq!(join(&tails, key, head.value()).unwrap().as_ref(), value(*len), "{len}");
        }
        assert_eq!(tails.len().unwrap(), 1 + 2 + 3, "4033: 1 tail, 53000: 2, 300000: 3");
        drop((chunks, tails, tx));
        let tx = db.begin_write().unwrap();
        {
            let mut rows = ChunkRows::open(&tx).unwrap();
            assert_eq!(rows.remove((1, 30)).unwrap(), 53_000);
            assert_eq!(rows.remove((1, 30)).unwrap(), 0);
            assert_eq!(rows.remove((1, 0)).unwrap(), 10);
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        assert_eq!(tx.open_table(CHUNK_TAILS).unwrap().len().unwrap(), 1 + 3);
        assert_eq!(tx.open_table(CHUNKS).unwrap().len().unwrap(), 3);
    }
}
