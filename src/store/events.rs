//! The events database: table layout and opening.
//!
//! | table          | key                                   | value                          |
//! |----------------|---------------------------------------|--------------------------------|
//! | `chunks`       | (workspace u32, first_seq u64)        | chunk value (see chunk.rs), or its head |
//! | `chunk_tails`  | (workspace, first_seq, piece u8)      | the rest of a long value (see rows.rs) |
//! | `seq`          | workspace u32                         | next sequence number           |
//! | `dedup`        | (workspace, producer u128, batch u64) | (first_seq, count, committed_ms)|
//! | `dedup_expiry` | (committed_ms, workspace, producer, batch) | ()                        |
//! | `meta`         | name                                  | u64 (`format_version`, `chunk_bytes`, `incarnation`) |
//! | `forward_cursor` | workspace u32                       | next sequence number to forward to NATS |
//! | `origins`      | (node &str, incarnation u64, workspace u32) | (next origin seq, updated_ms) |
//!
//! `chunk_bytes` is the sum of the chunk values (heads and tails), updated in the same
//! transactions that add and delete chunks (retention reads it).
//!
//! `incarnation` is a random number made with the database: sequence
//! numbers restart when a data dir is wiped, and the incarnation tells the
//! two lives apart (forwarded messages carry it). `forward_cursor` is the
//! forwarder's progress, `origins` the central consumer's high-water marks
//! of what it took from each edge node (both written by the writer thread,
//! in the transactions that need them).
//!
//! Keys sort by workspace then sequence, so reading a workspace from a
//! sequence on is a range scan. Sequence numbers start at 1 and are never
//! reused: the counter is committed in the same transaction as the chunks.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

pub(crate) const CHUNKS: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("chunks");
pub(crate) const CHUNK_TAILS: TableDefinition<(u32, u64, u8), &[u8]> = TableDefinition::new("chunk_tails");
pub(crate) const SEQ: TableDefinition<u32, u64> = TableDefinition::new("seq");
pub(crate) const DEDUP: TableDefinition<(u32, u128, u64), (u64, u32, u64)> = TableDefinition::new("dedup");
pub(crate) const DEDUP_EXPIRY: TableDefinition<(u64, u32, u128, u64), ()> = TableDefinition::new("dedup_expiry");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const FORWARD_CURSOR: TableDefinition<u32, u64> = TableDefinition::new("forward_cursor");
pub(crate) const ORIGINS: TableDefinition<(&str, u64, u32), (u64, u64)> = TableDefinition::new("origins");

/// Every table of events.redb, for [`super::backup`] (which refuses a
/// database holding a table not listed here).
pub(crate) const BACKUP_TABLES: &[&dyn super::backup::TableCopy] =
    &[&META, &CHUNKS, &CHUNK_TAILS, &SEQ, &DEDUP, &DEDUP_EXPIRY, &FORWARD_CURSOR, &ORIGINS];

/// The on-disk format this build writes. Older formats are migrated on open;
/// newer ones are refused. v2 added `meta.chunk_bytes` (v1 files get it by
/// one scan of their chunks); v3 writes zstd chunks (codec 2) and cuts long
/// values into page-sized rows (`chunk_tails`), neither of which a v2 build
/// can read; the LZ4 chunks of older files stay readable as they are; v4
/// adds the incarnation, `forward_cursor`, `origins` and v2 chunks (with
/// their origin), which older builds cannot read; v5 adds record kind 5
/// (OpenTelemetry spans), which a v4 build would take for damaged data.
pub const FORMAT_VERSION: u64 = 5;
const FORMAT_KEY: &str = "format_version";
const INCARNATION_KEY: &str = "incarnation";
pub(crate) const CHUNK_BYTES_KEY: &str = "chunk_bytes";

/// Opens (creating if needed) the events database and checks its format.
pub fn open(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    super::create_private(path)?;
    let db = Database::builder().set_cache_size(cache_bytes).create(path).map_err(|e| StoreError::redb(path, e))?;
    init(&db, path)?;
    Ok(db)
}

/// Creates missing tables and records or checks the format version.
fn init(db: &Database, path: &Path) -> Result<(), StoreError> {
    let tx = db.begin_write().map_err(|e| StoreError::redb(path, e))?;
    {
        let mut meta = tx.open_table(META).map_err(|e| StoreError::redb(path, e))?;
        let found = meta.get(FORMAT_KEY).map_err(|e| StoreError::redb(path, e))?.map(|v| v.value());
        match found {
            Some(v) if v > FORMAT_VERSION => {
                return Err(StoreError::TooNew { path: path.to_path_buf(), found: v, supported: FORMAT_VERSION });
            }
            Some(FORMAT_VERSION) => {}
            Some(old) => {
                let bytes = if old < 2 {
                    let bytes = sum_chunk_bytes(&tx).map_err(|e| StoreError::redb(path, e))?;
                    meta.insert(CHUNK_BYTES_KEY, bytes).map_err(|e| StoreError::redb(path, e))?;
                    bytes
                } else {
                    meta.get(CHUNK_BYTES_KEY).map_err(|e| StoreError::redb(path, e))?.map_or(0, |v| v.value())
                };
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(|e| StoreError::redb(path, e))?;
                tracing::info!(path = %path.display(), chunk_bytes = bytes, "events database migrated to format {FORMAT_VERSION}");
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(|e| StoreError::redb(path, e))?;
                meta.insert(CHUNK_BYTES_KEY, 0).map_err(|e| StoreError::redb(path, e))?;
            }
        }
        tx.open_table(CHUNKS).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(CHUNK_TAILS).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(SEQ).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(DEDUP).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(DEDUP_EXPIRY).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(FORWARD_CURSOR).map_err(|e| StoreError::redb(path, e))?;
        tx.open_table(ORIGINS).map_err(|e| StoreError::redb(path, e))?;
        if meta.get(INCARNATION_KEY).map_err(|e| StoreError::redb(path, e))?.is_none() {
            // Never 0, so a header can always tell "none" from a value.
            let incarnation = rand::random::<u64>().max(1);
            meta.insert(INCARNATION_KEY, incarnation).map_err(|e| StoreError::redb(path, e))?;
        }
    }
    tx.commit().map_err(|e| StoreError::redb(path, e))?;
    Ok(())
}

/// The bytes of every stored chunk value (v1 data had no counter).
fn sum_chunk_bytes(tx: &redb::WriteTransaction) -> Result<u64, redb::Error> {
    let chunks = tx.open_table(CHUNKS)?;
    let mut total = 0u64;
    for row in chunks.iter()? {
        total += row?.1.value().len() as u64;
    }
    Ok(total)
}

/// The stored chunk bytes, as committed.
pub(crate) fn stored_bytes(db: &Database, path: &Path) -> Result<u64, StoreError> {
    let tx = db.begin_read().map_err(|e| StoreError::redb(path, e))?;
    let meta = tx.open_table(META).map_err(|e| StoreError::redb(path, e))?;
    Ok(meta.get(CHUNK_BYTES_KEY).map_err(|e| StoreError::redb(path, e))?.map_or(0, |v| v.value()))
}

/// This data dir's incarnation (see the module docs).
pub(crate) fn incarnation(db: &Database, path: &Path) -> Result<u64, StoreError> {
    let tx = db.begin_read().map_err(|e| StoreError::redb(path, e))?;
    let meta = tx.open_table(META).map_err(|e| StoreError::redb(path, e))?;
    let found = meta.get(INCARNATION_KEY).map_err(|e| StoreError::redb(path, e))?.map(|v| v.value());
    found.ok_or_else(|| StoreError::Invalid { reason: format!("{}: no incarnation in meta", path.display()) })
}

/// The forwarder's cursor of every workspace that has one, as committed.
pub(crate) fn forward_cursors(db: &Database, path: &Path) -> Result<std::collections::HashMap<u32, u64>, StoreError> {
    load_workspace_map(db, path, FORWARD_CURSOR)
}

/// The next sequence number of every workspace, as committed.
pub(crate) fn load_next_seqs(db: &Database, path: &Path) -> Result<std::collections::HashMap<u32, u64>, StoreError> {
    load_workspace_map(db, path, SEQ)
}

/// A whole table keyed by workspace, as committed.
fn load_workspace_map(
    db: &Database,
    path: &Path,
    def: TableDefinition<u32, u64>,
) -> Result<std::collections::HashMap<u32, u64>, StoreError> {
    let tx = db.begin_read().map_err(|e| StoreError::redb(path, e))?;
    let table = tx.open_table(def).map_err(|e| StoreError::redb(path, e))?;
    let mut out = std::collections::HashMap::new();
    for row in table.iter().map_err(|e| StoreError::redb(path, e))? {
        let (k, v) = row.map_err(|e| StoreError::redb(path, e))?;
        out.insert(k.value(), v.value());
    }
    Ok(out)
}

/// De-duplication records per workspace, as committed (one scan at open;
/// the writer keeps the count from then on).
pub(crate) fn dedup_counts(db: &Database, path: &Path) -> Result<std::collections::HashMap<u32, u64>, StoreError> {
    let tx = db.begin_read().map_err(|e| StoreError::redb(path, e))?;
    let table = tx.open_table(DEDUP).map_err(|e| StoreError::redb(path, e))?;
    let mut out = std::collections::HashMap::new();
    for row in table.iter().map_err(|e| StoreError::redb(path, e))? {
        let (k, _) = row.map_err(|e| StoreError::redb(path, e))?;
        *out.entry(k.value().0).or_insert(0) += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let db = open(&path, 1 << 20).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(FORMAT_KEY, FORMAT_VERSION + 1).unwrap();
            tx.commit().unwrap();
        }
        match open(&path, 1 << 20) {
            Err(StoreError::TooNew { found, supported, .. }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION))
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
    }

    #[test]
    fn a_v1_store_is_migrated_with_its_chunk_bytes_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        {
            let db = open(&path, 1 << 20).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut chunks = tx.open_table(CHUNKS).unwrap();
                chunks.insert((1, 1), [7u8; 100].as_slice()).unwrap();
                chunks.insert((2, 1), [7u8; 23].as_slice()).unwrap();
                let mut meta = tx.open_table(META).unwrap();
                meta.insert(FORMAT_KEY, 1).unwrap();
                meta.remove(CHUNK_BYTES_KEY).unwrap();
            }
            tx.commit().unwrap();
        }
        let db = open(&path, 1 << 20).unwrap();
        assert_eq!(stored_bytes(&db, &path).unwrap(), 123);
        let tx = db.begin_read().unwrap();
        assert_eq!(tx.open_table(META).unwrap().get(FORMAT_KEY).unwrap().unwrap().value(), FORMAT_VERSION);
    }

    #[test]
    fn reopening_keeps_the_format_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.redb");
        drop(open(&path, 1 << 20).unwrap());
        let db = open(&path, 1 << 20).unwrap();
        assert!(load_next_seqs(&db, &path).unwrap().is_empty());
    }
}
