//! Storage errors, typed by what failed and why, in redb's style: every
//! failure names its operation ([`Op`]) and its cause ([`Cause`]), and
//! [`StoreError::is_retryable`] says whether the same call can succeed later.
//!
//! | cause | retry helps | e.g. |
//! |---|---|---|
//! | [`Cause::Io`], [`Cause::PreviousIo`] | yes: the store reopens its file | a full disk |
//! | [`Cause::Closed`] | yes | the events database while the writer recovers |
//! | [`Cause::Corrupted`], [`Cause::BadRow`] | no | a damaged file or row |
//! | [`Cause::Exhausted`], [`Cause::Internal`] | no | a counter at its end; a bug |
//!
//! redb's types stay inside `store`: they are classified here.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// What a storage operation was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Opening or creating a database file.
    Open,
    /// Starting a read or write transaction.
    Begin,
    /// Opening or listing tables.
    Table,
    /// Reading or writing rows.
    Access,
    /// Committing a write transaction.
    Commit,
    /// Turning a row into bytes.
    Encode,
    /// Turning stored bytes into a row.
    Decode,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::Begin => "begin a transaction",
            Op::Table => "open a table",
            Op::Access => "read or write",
            Op::Commit => "commit",
            Op::Encode => "encode a row",
            Op::Decode => "decode a row",
        })
    }
}

/// Why a storage operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Cause {
    /// The disk refused (full, failing, read-only): the store reopens the
    /// file, so a retry can succeed.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// redb refuses to go on after an earlier I/O error until reopened.
    #[error("an earlier I/O error closed the database")]
    PreviousIo,
    /// Closed while its owner recovers from a failed commit.
    #[error("closed while the writer recovers from a failed commit")]
    Closed,
    /// The file's structure is damaged.
    #[error("the file is corrupted: {0}")]
    Corrupted(String),
    /// One stored row does not decode (damaged, or from a newer sluice).
    #[error("a stored row does not decode: {0}")]
    BadRow(String),
    /// An id counter reached its end.
    #[error("{0} ids are exhausted")]
    Exhausted(&'static str),
    /// Anything else redb reports: a bug, not the disk.
    #[error("{0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A storage operation that failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path} is in use by another process (is a sluice daemon running on this data dir?)")]
    Locked { path: PathBuf },
    #[error("{path} was written by a newer sluice (format {found}, this build reads up to {supported})")]
    TooNew { path: PathBuf, found: u64, supported: u64 },
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// The database failed: see [`Cause`] for whether a retry helps.
    #[error("{path}: cannot {op}: {cause}")]
    Storage { path: PathBuf, op: Op, cause: Cause },
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("invalid: {reason}")]
    Invalid { reason: String },
    #[error("conflict: {reason}")]
    Conflict { reason: String },
}

impl StoreError {
    /// Whether trying the same operation again can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Locked { .. } => true,
            StoreError::Storage { cause, .. } => matches!(cause, Cause::Io(_) | Cause::PreviousIo | Cause::Closed),
            _ => false,
        }
    }

    /// Whether this is the disk refusing (an I/O error now or earlier), after
    /// which redb must reopen the file.
    pub fn is_io(&self) -> bool {
        matches!(self, StoreError::Storage { cause: Cause::Io(_) | Cause::PreviousIo, .. })
    }

    /// A failure with this cause.
    pub(crate) fn storage(path: &Path, op: Op, cause: Cause) -> StoreError {
        StoreError::Storage { path: path.to_path_buf(), op, cause }
    }

    /// A redb error, classified.
    pub(crate) fn redb<E: RedbOp>(path: &Path, e: E) -> StoreError {
        let op = E::OP;
        let cause = match e.into() {
            redb::Error::Io(e) => Cause::Io(e),
            redb::Error::PreviousIo => Cause::PreviousIo,
            redb::Error::DatabaseClosed => Cause::Closed,
            redb::Error::Corrupted(s) => Cause::Corrupted(s),
            redb::Error::DatabaseAlreadyOpen => return StoreError::Locked { path: path.to_path_buf() },
            other => Cause::Internal(Box::new(other)),
        };
        StoreError::storage(path, op, cause)
    }

    /// A file the store makes itself (before redb opens it) could not be made.
    pub(crate) fn io(path: &Path, op: Op, e: std::io::Error) -> StoreError {
        StoreError::storage(path, op, Cause::Io(e))
    }

    /// A stored row that does not decode.
    pub(crate) fn bad_row(path: &Path, what: impl std::fmt::Display) -> StoreError {
        StoreError::storage(path, Op::Decode, Cause::BadRow(what.to_string()))
    }

    /// A row that does not encode (a bug: rows are plain data).
    pub(crate) fn encode(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::storage(path, Op::Encode, Cause::Internal(Box::new(e)))
    }
}

/// A redb error type and the operation it comes from.
pub(crate) trait RedbOp: Into<redb::Error> {
    const OP: Op;
}

macro_rules! redb_op {
    ($($t:ty => $op:expr),* $(,)?) => {
        $(impl RedbOp for $t { const OP: Op = $op; })*
    };
}

redb_op! {
    redb::DatabaseError => Op::Open,
    redb::TransactionError => Op::Begin,
    redb::TableError => Op::Table,
    redb::StorageError => Op::Access,
    redb::CommitError => Op::Commit,
    redb::SetDurabilityError => Op::Begin,
    redb::Error => Op::Access,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_retry_can_fix_is_retryable() {
        let p = Path::new("x.redb");
        let io = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(StoreError::redb(p, redb::StorageError::Io(io())).is_retryable());
        assert!(StoreError::redb(p, redb::StorageError::PreviousIo).is_retryable());
        assert!(StoreError::storage(p, Op::Begin, Cause::Closed).is_retryable());
        assert!(StoreError::redb(p, redb::DatabaseError::DatabaseAlreadyOpen).is_retryable());
        assert!(!StoreError::redb(p, redb::StorageError::Corrupted("bad page".into())).is_retryable());
        assert!(!StoreError::bad_row(p, "row 3").is_retryable());
        assert!(!StoreError::storage(p, Op::Access, Cause::Exhausted("key")).is_retryable());
        assert!(!StoreError::NotFound { what: "key 1".into() }.is_retryable());
    }

    #[test]
    fn errors_name_their_operation() {
        let p = Path::new("x.redb");
        let e = StoreError::redb(p, redb::CommitError::Storage(redb::StorageError::Io(std::io::Error::other("eio"))));
        assert!(matches!(e, StoreError::Storage { op: Op::Commit, cause: Cause::Io(_), .. }), "{e:?}");
        assert_eq!(e.to_string(), "x.redb: cannot commit: I/O error: eio");
        assert!(matches!(
            StoreError::redb(p, redb::TransactionError::Storage(redb::StorageError::PreviousIo)),
            StoreError::Storage { op: Op::Begin, cause: Cause::PreviousIo, .. }
        ));
    }
}
