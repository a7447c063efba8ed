//! Online backup: a consistent logical dump of both databases taken while
//! the daemon runs, and rebuilding a data dir from such a dump.
//!
//! A running daemon holds `events.redb` and `control.redb` open (redb locks
//! them), and a file copy made under a committing writer would not be
//! consistent anyway. Instead a [`Snapshot`] opens one read transaction per
//! database — redb read transactions are MVCC snapshots that the writer
//! commits past without waiting — and [`Snapshot::dump`] writes every row of
//! every table in the stream of [`format`].
//!
//! **Order.** The events snapshot is taken first, then the control one. A
//! workspace exists in control.redb before any event of it can be ingested
//! (events need a streaming key, keys need the workspace), and workspaces are
//! never deleted, so every workspace an event in the backup refers to is in
//! the (later) control snapshot. The other order could capture events of a
//! workspace created between the two snapshots, without the workspace.
//! Streaming keys and users made between the two snapshots are in the
//! backup; that is harmless.
//!
//! **Completeness.** Each database lists its tables in a
//! `BACKUP_TABLES` array (`events.rs`, `control.rs`); a dump refuses a
//! database holding a table the list does not know, so a table added without
//! updating the list fails every backup (and the tests) instead of being
//! left out silently.
//!
//! **Rebuilding.** [`Restorer`] writes the rows of a stream into two new
//! database files in a staging directory, using the same table definitions,
//! so the result is an ordinary data dir. Rows are committed in batches with
//! `Durability::None` and the last commit with `Durability::Immediate`.

pub mod format;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, Key, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    TableHandle, Value, WriteTransaction,
};
use thiserror::Error;

use self::format::{Counts, DumpReader, DumpWriter, FormatError, Item};
use super::control::ControlStore;
use super::query::EventsHandle;
use super::{CONTROL_FILE, EVENTS_FILE, StoreError};

/// Rows (or bytes of rows) written per intermediate commit when rebuilding.
const LOAD_BATCH_ROWS: usize = 10_000;
const LOAD_BATCH_BYTES: usize = 32 << 20;

/// Why a backup or a rebuild failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{database} holds table `{table}`, which this build cannot back up or restore")]
    UnknownTable { database: String, table: String },
    #[error("the backup holds database `{0}`, which this build does not know")]
    UnknownDatabase(String),
    #[error("the backup lacks {0}")]
    Missing(&'static str),
    #[error("bad row in table `{table}`: {reason}")]
    BadRow { table: String, reason: String },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

impl BackupError {
    fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
        let context = context.into();
        move |source| BackupError::Io { context, source }
    }
}

/// Receives the raw key and value of each row of a dump.
pub(crate) type RowSink<'a> = dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + 'a;

/// A table that can be dumped as raw rows and loaded back from them.
/// Implemented for every redb table definition; the `BACKUP_TABLES` lists
/// name the tables of each database.
pub(crate) trait TableCopy {
    fn table_name(&self) -> &str;
    /// Calls `row` with the raw key and value of every row, in key order.
    /// A failing `row` comes back as [`redb::Error::Io`].
    fn dump(&self, tx: &ReadTransaction, row: &mut RowSink<'_>) -> Result<(), redb::Error>;
    /// Creates the table (so empty tables exist too) and inserts `rows`.
    fn load(&self, tx: &WriteTransaction, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String>;
}

impl<K: Key + 'static, V: Value + 'static> TableCopy for TableDefinition<'static, K, V> {
    fn table_name(&self) -> &str {
        self.name()
    }

    fn dump(&self, tx: &ReadTransaction, row: &mut RowSink<'_>) -> Result<(), redb::Error> {
        let table: ReadOnlyTable<K, V> = match tx.open_table(*self) {
            Ok(t) => t,
            // A table not created yet (an old data dir) has no rows to back up.
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for entry in table.iter()? {
            let (k, v) = entry?;
            let (k, v) = (k.value(), v.value());
            row(K::as_bytes(&k).as_ref(), V::as_bytes(&v).as_ref()).map_err(redb::Error::Io)?;
        }
        Ok(())
    }

    fn load(&self, tx: &WriteTransaction, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        let mut table = tx.open_table(*self).map_err(|e| e.to_string())?;
        for (k, v) in rows {
            check_raw::<K>(k).map_err(|e| format!("key: {e}"))?;
            check_raw::<V>(v).map_err(|e| format!("value: {e}"))?;
            table.insert(K::from_bytes(k), V::from_bytes(v)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Checks raw bytes before redb decodes them, since its `from_bytes` panics
/// on a wrong length or (for `&str`) invalid UTF-8: enough for the types
/// sluice stores (fixed-width integers and tuples of them, `()`, `&str`,
/// `&[u8]`).
fn check_raw<T: Value>(raw: &[u8]) -> Result<(), String> {
    if let Some(width) = T::fixed_width()
        && raw.len() != width
    {
        return Err(format!("{} bytes where {} takes {width}", raw.len(), T::type_name().name()));
    }
    if T::type_name() == <&str as Value>::type_name() && std::str::from_utf8(raw).is_err() {
        return Err("a string that is not UTF-8".to_owned());
    }
    Ok(())
}

/// The tables of a database file, by file name.
fn tables_of(database: &str) -> Option<&'static [&'static dyn TableCopy]> {
    match database {
        EVENTS_FILE => Some(super::events::BACKUP_TABLES),
        CONTROL_FILE => Some(super::control::BACKUP_TABLES),
        _ => None,
    }
}

/// Read snapshots of both databases, taken events first (see the module docs).
pub struct Snapshot {
    events: ReadTransaction,
    control: ReadTransaction,
    events_path: PathBuf,
    control_path: PathBuf,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("events", &self.events_path).field("control", &self.control_path).finish()
    }
}

/// What a dump wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpStats {
    pub counts: Counts,
    pub bytes: u64,
}

impl Snapshot {
    /// Opens the two read transactions. Fails (worth a retry) while the
    /// writer is reopening events.redb after a failed commit.
    pub fn take(events: &EventsHandle, control: &ControlStore) -> Result<Snapshot, StoreError> {
        let events_tx = events.begin_read()?;
        let control_tx = control.begin_read()?;
        Ok(Snapshot {
            events: events_tx,
            control: control_tx,
            events_path: events.path().to_path_buf(),
            control_path: control.path().to_path_buf(),
        })
    }

    /// Writes the whole dump to `out` (blocking; a write error, e.g. a
    /// client that went away, stops it).
    pub fn dump(self, out: impl Write) -> Result<DumpStats, BackupError> {
        let mut w = DumpWriter::new(out).map_err(BackupError::io("writing the backup"))?;
        dump_database(&mut w, EVENTS_FILE, &self.events, &self.events_path)?;
        dump_database(&mut w, CONTROL_FILE, &self.control, &self.control_path)?;
        let (counts, bytes, _) = w.finish().map_err(BackupError::io("writing the backup"))?;
        Ok(DumpStats { counts, bytes })
    }
}

fn dump_database<W: Write>(
    w: &mut DumpWriter<W>,
    name: &str,
    tx: &ReadTransaction,
    path: &Path,
) -> Result<(), BackupError> {
    let tables = tables_of(name).ok_or_else(|| BackupError::UnknownDatabase(name.to_owned()))?;
    let present = tx.list_tables().map_err(|e| StoreError::redb(path, e))?;
    for handle in present {
        if !tables.iter().any(|t| t.table_name() == handle.name()) {
            return Err(BackupError::UnknownTable { database: name.to_owned(), table: handle.name().to_owned() });
        }
    }
    let wio = BackupError::io("writing the backup");
    w.database(name).map_err(wio)?;
    for table in tables {
        w.table(table.table_name()).map_err(BackupError::io("writing the backup"))?;
        let mut write_err = None;
        let scanned = table.dump(tx, &mut |k, v| {
            w.row(k, v).inspect_err(|e| write_err = Some(std::io::Error::new(e.kind(), e.to_string())))
        });
        if let Some(e) = write_err {
            return Err(BackupError::Io { context: "writing the backup".into(), source: e });
        }
        scanned.map_err(|e| StoreError::redb(path, e))?;
    }
    w.end_database().map_err(BackupError::io("writing the backup"))?;
    Ok(())
}

/// Rebuilds a data dir's database files from a backup stream, in `staging`
/// (which must not hold them yet).
pub struct Restorer {
    staging: PathBuf,
}

impl Restorer {
    pub fn new(staging: &Path) -> Restorer {
        Restorer { staging: staging.to_path_buf() }
    }

    /// Reads the whole stream, writing `staging/events.redb` and
    /// `staging/control.redb`; succeeds only if the stream's trailers all
    /// checked out and both databases were in it.
    pub fn restore(&self, input: impl Read) -> Result<(Counts, u64), BackupError> {
        let mut reader = DumpReader::new(input)?;
        let mut seen = Vec::new();
        loop {
            match reader.next_item()? {
                Some(Item::Database(name)) => {
                    if seen.contains(&name) {
                        return Err(FormatError::Corrupt { reason: format!("database {name} twice") }.into());
                    }
                    self.load_database(&mut reader, &name)?;
                    seen.push(name);
                }
                Some(Item::End(counts)) => {
                    // Nothing may follow the final trailer.
                    if reader.next_item()?.is_some() {
                        return Err(FormatError::Corrupt { reason: "items after the end".into() }.into());
                    }
                    for want in [EVENTS_FILE, CONTROL_FILE] {
                        if !seen.iter().any(|s| s == want) {
                            return Err(BackupError::Missing(want));
                        }
                    }
                    return Ok((counts, reader.bytes()));
                }
                Some(other) => {
                    return Err(FormatError::Corrupt { reason: format!("unexpected {other:?}") }.into());
                }
                None => return Err(FormatError::Truncated.into()),
            }
        }
    }

    /// Loads one database's tables up to its trailer.
    fn load_database<R: Read>(&self, reader: &mut DumpReader<R>, name: &str) -> Result<(), BackupError> {
        let tables = tables_of(name).ok_or_else(|| BackupError::UnknownDatabase(name.to_owned()))?;
        let path = self.staging.join(name);
        if path.exists() {
            return Err(StoreError::Conflict { reason: format!("{} exists already", path.display()) }.into());
        }
        super::create_private(&path)?;
        let db = Database::create(&path).map_err(|e| StoreError::redb(&path, e))?;
        let mut loader = Loader { db: &db, path: &path, table: None, rows: Vec::new(), bytes: 0 };
        loop {
            match reader.next_item()? {
                Some(Item::Table(t)) => {
                    loader.flush(Durability::None)?;
                    let found = tables.iter().find(|d| d.table_name() == t);
                    let def = found.ok_or_else(|| BackupError::UnknownTable { database: name.into(), table: t })?;
                    loader.table = Some(*def);
                    // Creates the table even when it has no rows.
                    loader.flush_always(Durability::None)?;
                }
                Some(Item::Row { key, value }) => loader.push(key, value)?,
                Some(Item::DatabaseEnd(_)) => return loader.flush_always(Durability::Immediate),
                other => return Err(FormatError::Corrupt { reason: format!("unexpected {other:?} in {name}") }.into()),
            }
        }
    }
}

/// Rows waiting for the next commit into one table.
struct Loader<'a> {
    db: &'a Database,
    path: &'a Path,
    table: Option<&'static dyn TableCopy>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl Loader<'_> {
    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), BackupError> {
        self.bytes += key.len() + value.len();
        self.rows.push((key, value));
        if self.rows.len() >= LOAD_BATCH_ROWS || self.bytes >= LOAD_BATCH_BYTES {
            self.flush(Durability::None)?;
        }
        Ok(())
    }

    fn flush(&mut self, durability: Durability) -> Result<(), BackupError> {
        if self.rows.is_empty() { Ok(()) } else { self.flush_always(durability) }
    }

    fn flush_always(&mut self, durability: Durability) -> Result<(), BackupError> {
        let path = self.path;
        let mut tx = self.db.begin_write().map_err(|e| StoreError::redb(path, e))?;
        tx.set_durability(durability).map_err(|e| StoreError::redb(path, e))?;
        if let Some(table) = self.table {
            table
                .load(&tx, &self.rows)
                .map_err(|reason| BackupError::BadRow { table: table.table_name().to_owned(), reason })?;
        }
        tx.commit().map_err(|e| StoreError::redb(path, e))?;
        self.rows.clear();
        self.bytes = 0;
        Ok(())
    }
}

/// What [`check_data_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDirInfo {
    /// Events stored (the sum of the chunk headers' counts).
    pub events: u64,
}

/// Checks that `dir` holds a data dir this build can open: both files
/// present, openable (not held by a daemon), of a format it reads, every
/// chunk header readable. Creates any table an older format lacks.
pub fn check_data_dir(dir: &Path) -> Result<DataDirInfo, StoreError> {
    for file in [EVENTS_FILE, CONTROL_FILE] {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(StoreError::NotFound { what: path.display().to_string() });
        }
    }
    drop(ControlStore::open(dir)?);
    let path = dir.join(EVENTS_FILE);
    let db = super::events::open(&path, 1 << 20)?;
    let tx = db.begin_read().map_err(|e| StoreError::redb(&path, e))?;
    let chunks = tx.open_table(super::events::CHUNKS).map_err(|e| StoreError::redb(&path, e))?;
    let mut events = 0u64;
    for row in chunks.iter().map_err(|e| StoreError::redb(&path, e))? {
        let (k, v) = row.map_err(|e| StoreError::redb(&path, e))?;
        let (count, _, _) = super::chunk::peek(v.value())
            .map_err(|e| StoreError::bad_row(&path, format_args!("chunk {:?}: {e}", k.value())))?;
        events += u64::from(count);
    }
    Ok(DataDirInfo { events })
}

/// The database files of a data dir held open, so no daemon can start on
/// it while they are replaced. Files that do not exist are not created.
pub struct DirLock {
    _held: Vec<Database>,
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirLock").field("files", &self._held.len()).finish()
    }
}

/// Opens the database files present in `dir`. Fails with
/// [`StoreError::Locked`] when a daemon (or anything else) holds one; a
/// file that is not a readable database is left alone (it is about to be
/// replaced).
pub fn lock_data_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let mut held = Vec::new();
    for file in [EVENTS_FILE, CONTROL_FILE] {
        let path = dir.join(file);
        if !path.exists() {
            continue;
        }
        match Database::open(&path) {
            Ok(db) => held.push(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked { path }),
            Err(e) => tracing::debug!(file = %path.display(), error = %e, "not a readable database; replacing it"),
        }
    }
    Ok(DirLock { _held: held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chunk::{self, ChunkMeta};
    use crate::store::control::DEFAULT_WORKSPACE;

    /// A data dir with a key, a user, and rows in every events table but
    /// the expiry index.
    fn populated(dir: &Path) {
        let control = ControlStore::open(dir).unwrap();
        control.create_key("k", DEFAULT_WORKSPACE, "test").unwrap();
        control.jwt_secret().unwrap();
        let events = super::super::events::open(&dir.join(EVENTS_FILE), 1 << 20).unwrap();
        let tx = events.begin_write().unwrap();
        {
            let mut chunks = tx.open_table(super::super::events::CHUNKS).unwrap();
            for (first, count) in [(1u64, 3u32), (4, 5)] {
                let meta = ChunkMeta { count, min_received_ms: 1, max_received_ms: 2, listener: "tcp", peer: "p" };
                chunks.insert((1u32, first), chunk::encode(&meta, &[7u8; 5000]).as_slice()).unwrap();
            }
            tx.open_table(super::super::events::SEQ).unwrap().insert(1u32, 9u64).unwrap();
            let mut dedup = tx.open_table(super::super::events::DEDUP).unwrap();
            dedup.insert((1u32, 5u128, 6u64), (1u64, 3u32, 1000u64)).unwrap();
        }
        tx.commit().unwrap();
    }

    fn dump_dir(dir: &Path) -> Vec<u8> {
        let handle = EventsHandle::open(dir, 1 << 20).unwrap();
        let control = ControlStore::open(dir).unwrap();
        let snap = Snapshot::take(&handle, &control).unwrap();
        let mut out = Vec::new();
        let stats = snap.dump(&mut out).unwrap();
        assert_eq!(stats.bytes, out.len() as u64);
        out
    }

    #[test]
    fn dump_and_restore_round_trip_every_row() {
        let src = tempfile::tempdir().unwrap();
        populated(src.path());
        let first = dump_dir(src.path());
        let dst = tempfile::tempdir().unwrap();
        let (counts, bytes) = Restorer::new(dst.path()).restore(first.as_slice()).unwrap();
        assert_eq!(bytes, first.len() as u64);
        assert!(counts.rows >= 6, "{counts:?}");
        assert_eq!(check_data_dir(dst.path()).unwrap().events, 8);
        // The rebuilt dir dumps to the very same bytes.
        assert_eq!(dump_dir(dst.path()), first);
        let keys = ControlStore::open(dst.path()).unwrap().list_keys(None).unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn a_truncated_stream_fails_the_restore() {
        let src = tempfile::tempdir().unwrap();
        populated(src.path());
        let full = dump_dir(src.path());
        for cut in [0, 5, full.len() / 3, full.len() / 2, full.len() - 1] {
            let dst = tempfile::tempdir().unwrap();
            let got = Restorer::new(dst.path()).restore(&full[..cut]);
            assert!(matches!(got, Err(BackupError::Format(FormatError::Truncated))), "cut {cut}: {got:?}");
        }
    }

    #[test]
    fn a_table_unknown_to_the_backup_list_fails_the_dump() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        {
            let db = Database::create(dir.path().join(EVENTS_FILE)).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<u32, u32>::new("surprise")).unwrap().insert(1, 1).unwrap();
            tx.commit().unwrap();
        }
        let handle = EventsHandle::open(dir.path(), 1 << 20).unwrap();
        let control = ControlStore::open(dir.path()).unwrap();
        let got = Snapshot::take(&handle, &control).unwrap().dump(Vec::new());
        assert!(matches!(got, Err(BackupError::UnknownTable { ref table, .. }) if table == "surprise"), "{got:?}");
    }

    #[test]
    fn a_row_of_the_wrong_width_is_refused_not_a_panic() {
        let mut w = DumpWriter::new(Vec::new()).unwrap();
        w.database(EVENTS_FILE).unwrap();
        w.table("seq").unwrap();
        w.row(b"abc", &9u64.to_le_bytes()).unwrap();
        w.end_database().unwrap();
        let (_, _, out) = w.finish().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let got = Restorer::new(dst.path()).restore(out.as_slice());
        assert!(matches!(got, Err(BackupError::BadRow { ref table, .. }) if table == "seq"), "{got:?}");
    }

    #[test]
    fn a_stream_without_the_control_database_is_refused() {
        let mut w = DumpWriter::new(Vec::new()).unwrap();
        w.database(EVENTS_FILE).unwrap();
        w.end_database().unwrap();
        let (_, _, out) = w.finish().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let got = Restorer::new(dst.path()).restore(out.as_slice());
        assert!(matches!(got, Err(BackupError::Missing(CONTROL_FILE))), "{got:?}");
    }
}
