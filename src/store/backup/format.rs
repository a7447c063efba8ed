//! The backup stream: a logical dump of redb tables, written and read
//! sequentially so it can be streamed over HTTP with bounded memory.
//!
//! All integers are big-endian.
//!
//! ```text
//! header      "SLUICEBK" (8 bytes)  version u16 (= 1)
//! then records, each led by a tag byte:
//!   'D' database start   name_len u8, name (UTF-8, e.g. "events.redb")
//!   'T' table start      name_len u8, name (UTF-8, e.g. "chunks")
//!   'R' row              key_len u32, key, value_len u32, value
//!                        (redb's `Key::as_bytes` / `Value::as_bytes` of the row)
//!   'E' database end     tables u32, rows u64, sha256[32]
//!   'Z' end of dump      databases u32, rows u64, sha256[32]
//! then end of stream (anything after 'Z' is an error)
//! ```
//!
//! Each `sha256` is the SHA-256 of every byte of the stream before it (from
//! the magic on, including the counts just ahead of it). The counts and the
//! hash make a truncated or damaged download an error instead of a smaller
//! backup: a reader only reports [`Item::End`] once everything checked out.
//! Rows come only inside a table, tables only inside a database.
//!
//! Lengths read from the stream are checked against [`MAX_KEY_LEN`] and
//! [`MAX_VALUE_LEN`] before anything is read, and a value is read with a
//! growing buffer, so a damaged length cannot make the reader allocate more
//! than the stream actually holds.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// First bytes of every backup stream.
pub const MAGIC: &[u8; 8] = b"SLUICEBK";
/// The stream version this build writes and reads.
pub const VERSION: u16 = 1;
/// Longest key a backup may hold (redb keys in sluice are a few dozen bytes).
pub const MAX_KEY_LEN: u32 = 64 * 1024;
/// Longest value a backup may hold: a chunk's records may be up to
/// `chunk::MAX_RAW_LEN` before compression, plus its header.
pub const MAX_VALUE_LEN: u32 = (super::super::chunk::MAX_RAW_LEN as u32).saturating_add(64 * 1024);

const TAG_DATABASE: u8 = b'D';
const TAG_TABLE: u8 = b'T';
const TAG_ROW: u8 = b'R';
const TAG_DATABASE_END: u8 = b'E';
const TAG_END: u8 = b'Z';

/// Why a backup stream could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("not a sluice backup (bad magic)")]
    BadMagic,
    #[error("backup stream version {found} is not supported (this build reads {supported})")]
    Version { found: u16, supported: u16 },
    #[error("the backup stream ends early (truncated download?)")]
    Truncated,
    #[error("damaged backup stream: {reason}")]
    Corrupt { reason: String },
    #[error("backup checksum mismatch at the end of {what}: the stream is damaged")]
    Checksum { what: String },
    #[error("{what} length {len} is over the limit {limit}")]
    TooLong { what: &'static str, len: u32, limit: u32 },
    #[error("i/o error: {0}")]
    Io(#[source] io::Error),
}

impl From<io::Error> for FormatError {
    fn from(e: io::Error) -> FormatError {
        if e.kind() == io::ErrorKind::UnexpectedEof { FormatError::Truncated } else { FormatError::Io(e) }
    }
}

fn corrupt(reason: impl Into<String>) -> FormatError {
    FormatError::Corrupt { reason: reason.into() }
}

/// Counts written or read so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub databases: u32,
    pub tables: u32,
    pub rows: u64,
}

/// Writes a backup stream. Call [`DumpWriter::database`], then per table
/// [`DumpWriter::table`] and [`DumpWriter::row`]s, then
/// [`DumpWriter::end_database`]; repeat per database; then [`DumpWriter::finish`].
pub struct DumpWriter<W: Write> {
    out: W,
    hash: Sha256,
    bytes: u64,
    /// Counts of the open database.
    db: Counts,
    total: Counts,
    in_database: bool,
}

impl<W: Write> DumpWriter<W> {
    /// Writes the header.
    pub fn new(out: W) -> io::Result<DumpWriter<W>> {
        let mut w = DumpWriter {
            out,
            hash: Sha256::new(),
            bytes: 0,
            db: Counts::default(),
            total: Counts::default(),
            in_database: false,
        };
        w.put(MAGIC)?;
        w.put(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn put_name(&mut self, tag: u8, name: &str) -> io::Result<()> {
        let len = u8::try_from(name.len()).map_err(|_| io::Error::other(format!("name too long: {name}")))?;
        self.put(&[tag, len])?;
        self.put(name.as_bytes())
    }

    /// Writes the digest of everything so far.
    fn put_digest(&mut self) -> io::Result<()> {
        let digest: [u8; 32] = self.hash.clone().finalize().into();
        self.put(&digest)
    }

    pub fn database(&mut self, name: &str) -> io::Result<()> {
        if self.in_database {
            return Err(io::Error::other("database started inside another"));
        }
        self.in_database = true;
        self.db = Counts::default();
        self.put_name(TAG_DATABASE, name)
    }

    pub fn table(&mut self, name: &str) -> io::Result<()> {
        if !self.in_database {
            return Err(io::Error::other("table outside a database"));
        }
        self.db.tables += 1;
        self.put_name(TAG_TABLE, name)
    }

    pub fn row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let klen = u32::try_from(key.len()).ok().filter(|l| *l <= MAX_KEY_LEN);
        let vlen = u32::try_from(value.len()).ok().filter(|l| *l <= MAX_VALUE_LEN);
        let (Some(klen), Some(vlen)) = (klen, vlen) else {
            return Err(io::Error::other(format!(
                "row too large for a backup ({} + {} bytes)",
                key.len(),
                value.len()
            )));
        };
        self.db.rows += 1;
        self.put(&[TAG_ROW])?;
        self.put(&klen.to_be_bytes())?;
        self.put(key)?;
        self.put(&vlen.to_be_bytes())?;
        self.put(value)
    }

    pub fn end_database(&mut self) -> io::Result<()> {
        if !self.in_database {
            return Err(io::Error::other("no database to end"));
        }
        self.in_database = false;
        self.put(&[TAG_DATABASE_END])?;
        self.put(&self.db.tables.to_be_bytes())?;
        self.put(&self.db.rows.to_be_bytes())?;
        self.put_digest()?;
        self.total.databases += 1;
        self.total.tables += self.db.tables;
        self.total.rows += self.db.rows;
        Ok(())
    }

    /// Writes the final trailer and flushes; returns the totals and the bytes written.
    pub fn finish(mut self) -> io::Result<(Counts, u64, W)> {
        if self.in_database {
            return Err(io::Error::other("finish inside a database"));
        }
        self.put(&[TAG_END])?;
        self.put(&self.total.databases.to_be_bytes())?;
        self.put(&self.total.rows.to_be_bytes())?;
        self.put_digest()?;
        self.out.flush()?;
        Ok((self.total, self.bytes, self.out))
    }
}

/// The body of the `backup_dump` fuzz target (and of its corpus replay in
/// `tests/it/fuzz_corpus.rs`): reads a stream to its end or its first error.
/// Never panics, whatever the bytes; at most [`MAX_FUZZ_ITEMS`] items.
pub fn dump_reader_input(data: &[u8]) {
    let Ok(mut r) = DumpReader::new(data) else { return };
    for _ in 0..MAX_FUZZ_ITEMS {
        match r.next_item() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

/// Items one fuzz input may produce (each needs at least one byte anyway).
const MAX_FUZZ_ITEMS: usize = 1 << 20;

/// One step of a backup stream, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Database(String),
    Table(String),
    Row {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// The database's trailer matched its rows and checksum.
    DatabaseEnd(Counts),
    /// The final trailer matched; nothing follows.
    End(Counts),
}

/// Where the reader is in the stream's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between databases: 'D' or 'Z' may come.
    Top,
    /// In a database, before its first table: 'T' or 'E'.
    Database,
    /// In a table: 'R', 'T' or 'E'.
    Table,
    /// After 'Z': only end of stream.
    Done,
}

/// Reads and checks a backup stream.
pub struct DumpReader<R: Read> {
    input: R,
    hash: Sha256,
    bytes: u64,
    state: State,
    db: Counts,
    total: Counts,
}

impl<R: Read> DumpReader<R> {
    /// Reads and checks the header.
    pub fn new(input: R) -> Result<DumpReader<R>, FormatError> {
        let mut r = DumpReader {
            input,
            hash: Sha256::new(),
            bytes: 0,
            state: State::Top,
            db: Counts::default(),
            total: Counts::default(),
        };
        let mut head = [0u8; 10];
        r.take(&mut head)?;
        if &head[..8] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let found = u16::from_be_bytes([head[8], head[9]]);
        if found != VERSION {
            return Err(FormatError::Version { found, supported: VERSION });
        }
        Ok(r)
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<(), FormatError> {
        self.input.read_exact(buf)?;
        self.hash.update(&*buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, FormatError> {
        let mut b = [0u8; 4];
        self.take(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, FormatError> {
        let mut b = [0u8; 8];
        self.take(&mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Reads `len` bytes, growing the buffer as they arrive.
    fn bytes_of(&mut self, len: u32) -> Result<Vec<u8>, FormatError> {
        let mut buf = Vec::with_capacity((len as usize).min(1 << 16));
        (&mut self.input).take(u64::from(len)).read_to_end(&mut buf)?;
        if buf.len() != len as usize {
            return Err(FormatError::Truncated);
        }
        self.hash.update(&buf);
        self.bytes += u64::from(len);
        Ok(buf)
    }

    fn name(&mut self) -> Result<String, FormatError> {
        let mut len = [0u8; 1];
        self.take(&mut len)?;
        let raw = self.bytes_of(u32::from(len[0]))?;
        String::from_utf8(raw).map_err(|_| corrupt("a name is not UTF-8"))
    }

    /// Reads the digest and compares it with the hash of everything before it.
    fn check_digest(&mut self, what: String) -> Result<(), FormatError> {
        let expected: [u8; 32] = self.hash.clone().finalize().into();
        let mut got = [0u8; 32];
        self.take(&mut got)?;
        if got != expected {
            return Err(FormatError::Checksum { what });
        }
        Ok(())
    }

    /// The next item; `Ok(None)` only after [`Item::End`] and a clean end of stream.
    pub fn next_item(&mut self) -> Result<Option<Item>, FormatError> {
        if self.state == State::Done {
            let mut extra = [0u8; 1];
            return match self.input.read(&mut extra)? {
                0 => Ok(None),
                _ => Err(corrupt("bytes after the end of the backup")),
            };
        }
        let mut tag = [0u8; 1];
        self.take(&mut tag)?;
        match (tag[0], self.state) {
            (TAG_DATABASE, State::Top) => {
                self.state = State::Database;
                self.db = Counts::default();
                Ok(Some(Item::Database(self.name()?)))
            }
            (TAG_TABLE, State::Database | State::Table) => {
                self.state = State::Table;
                self.db.tables += 1;
                Ok(Some(Item::Table(self.name()?)))
            }
            (TAG_ROW, State::Table) => self.row().map(Some),
            (TAG_DATABASE_END, State::Database | State::Table) => self.database_end().map(Some),
            (TAG_END, State::Top) => self.end().map(Some),
            (t, s) => Err(corrupt(format!("record tag {t:#04x} not allowed here ({s:?})"))),
        }
    }

    fn row(&mut self) -> Result<Item, FormatError> {
        let klen = self.u32()?;
        if klen > MAX_KEY_LEN {
            return Err(FormatError::TooLong { what: "key", len: klen, limit: MAX_KEY_LEN });
        }
        let key = self.bytes_of(klen)?;
        let vlen = self.u32()?;
        if vlen > MAX_VALUE_LEN {
            return Err(FormatError::TooLong { what: "value", len: vlen, limit: MAX_VALUE_LEN });
        }
        let value = self.bytes_of(vlen)?;
        self.db.rows += 1;
        Ok(Item::Row { key, value })
    }

    fn database_end(&mut self) -> Result<Item, FormatError> {
        let tables = self.u32()?;
        let rows = self.u64()?;
        if (tables, rows) != (self.db.tables, self.db.rows) {
            return Err(corrupt(format!(
                "database trailer says {tables} tables and {rows} rows; the stream held {} and {}",
                self.db.tables, self.db.rows
            )));
        }
        self.check_digest(format!("database {}", self.total.databases + 1))?;
        self.state = State::Top;
        self.total.databases += 1;
        self.total.tables += self.db.tables;
        self.total.rows += self.db.rows;
        Ok(Item::DatabaseEnd(self.db))
    }

    fn end(&mut self) -> Result<Item, FormatError> {
        let databases = self.u32()?;
        let rows = self.u64()?;
        if (databases, rows) != (self.total.databases, self.total.rows) {
            return Err(corrupt(format!(
                "final trailer says {databases} databases and {rows} rows; the stream held {} and {}",
                self.total.databases, self.total.rows
            )));
        }
        self.check_digest("the backup".to_owned())?;
        self.state = State::Done;
        Ok(Item::End(self.total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = DumpWriter::new(Vec::new()).unwrap();
        w.database("events.redb").unwrap();
        w.table("chunks").unwrap();
        w.row(b"k1", b"value one").unwrap();
        w.row(b"k2", &[0u8; 300]).unwrap();
        w.table("empty").unwrap();
        w.end_database().unwrap();
        w.database("control.redb").unwrap();
        w.table("meta").unwrap();
        w.row(b"format_version", &1u64.to_le_bytes()).unwrap();
        w.end_database().unwrap();
        let (counts, bytes, out) = w.finish().unwrap();
        assert_eq!(counts, Counts { databases: 2, tables: 3, rows: 3 });
        assert_eq!(bytes, out.len() as u64);
        out
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<Item>, FormatError> {
        let mut r = DumpReader::new(bytes)?;
        let mut items = Vec::new();
        while let Some(item) = r.next_item()? {
            items.push(item);
        }
        Ok(items)
    }

    #[test]
    fn a_dump_reads_back_item_for_item() {
        let items = read_all(&sample()).unwrap();
        assert_eq!(items.len(), 11);
        assert_eq!(items[0], Item::Database("events.redb".into()));
        assert_eq!(items[2], Item::Row { key: b"k1".to_vec(), value: b"value one".to_vec() });
        assert_eq!(items[5], Item::DatabaseEnd(Counts { databases: 0, tables: 2, rows: 2 }));
        assert_eq!(items[10], Item::End(Counts { databases: 2, tables: 3, rows: 3 }));
    }

    #[test]
    fn every_truncation_is_an_error_never_a_smaller_backup() {
        let full = sample();
        for cut in 0..full.len() {
            match read_all(&full[..cut]) {
                Err(FormatError::Truncated) => {}
                other => panic!("cut at {cut} of {}: {other:?}", full.len()),
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let full = sample();
        for at in 0..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x20;
            assert!(read_all(&bad).is_err(), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut full = sample();
        full.push(0);
        assert!(matches!(read_all(&full), Err(FormatError::Corrupt { .. })));
    }

    #[test]
    fn a_dropped_row_fails_the_database_trailer() {
        // Write the same rows but tell the trailer about one more than streamed.
        let mut w = DumpWriter::new(Vec::new()).unwrap();
        w.database("d").unwrap();
        w.table("t").unwrap();
        w.row(b"a", b"b").unwrap();
        w.db.rows += 1;
        w.end_database().unwrap();
        let (_, _, out) = w.finish().unwrap();
        assert!(matches!(read_all(&out), Err(FormatError::Corrupt { .. })));
    }

    #[test]
    fn a_huge_length_is_refused_before_reading() {
        let mut w = DumpWriter::new(Vec::new()).unwrap();
        w.database("d").unwrap();
        w.table("t").unwrap();
        let mut out = w.out;
        out.extend_from_slice(&[TAG_ROW]);
        out.extend_from_slice(&(MAX_KEY_LEN + 1).to_be_bytes());
        assert!(matches!(read_all(&out), Err(FormatError::TooLong { what: "key", .. })));
    }

    #[test]
    fn wrong_magic_and_version_are_named() {
        assert!(matches!(read_all(b"NOTABACKUP"), Err(FormatError::BadMagic)));
        let mut v2 = sample();
        v2[9] = 2;
        assert!(matches!(read_all(&v2), Err(FormatError::Version { found: 2, supported: 1 })));
    }
}
