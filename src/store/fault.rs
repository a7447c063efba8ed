//! A redb storage backend for tests that fails on demand, the way a broken or
//! a full disk does. It wraps redb's own [`FileBackend`], so whatever did get
//! committed is on disk and can be read back with the ordinary opener.
//!
//! - broken ([`Disk::set_broken`]): every write, resize and sync fails with
//!   `EIO`, so the database cannot even be reopened;
//! - full ([`Disk::full_at`]): writes and resizes past a length fail with
//!   `ENOSPC`; reopening works, commits that need room do not.
//!
//! Reads keep working in both, as they do on a real full disk.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};

use super::StoreError;

/// The state of the simulated disk, shared by a test and its backends.
#[derive(Debug)]
pub struct Disk {
    /// Every write, resize and sync fails.
    broken: AtomicBool,
    /// Files cannot grow past this many bytes.
    capacity: AtomicU64,
}

impl Disk {
    pub fn new() -> Arc<Disk> {
        Arc::new(Disk { broken: AtomicBool::new(false), capacity: AtomicU64::new(u64::MAX) })
    }

    pub fn set_broken(&self, broken: bool) {
        self.broken.store(broken, Ordering::SeqCst);
    }

    /// Fills the disk: from now on files cannot grow past `len` bytes.
    pub fn full_at(&self, len: u64) {
        self.capacity.store(len, Ordering::SeqCst);
    }

    pub fn free(&self) {
        self.capacity.store(u64::MAX, Ordering::SeqCst);
    }

    fn check(&self, end: u64) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(libc::EIO))
        } else if end > self.capacity.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(())
        }
    }
}

/// A file backend on a [`Disk`] that may fail.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: FileBackend,
    disk: Arc<Disk>,
}

impl FaultyBackend {
    pub fn open(path: &Path, disk: Arc<Disk>) -> io::Result<FaultyBackend> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(FaultyBackend { inner, disk })
    }

    /// The length the file must grow to for its data to end at `end`; 0 if
    /// it is long enough already (rewriting in place needs no free space).
    fn growth_to(&self, end: u64) -> io::Result<u64> {
        Ok(if end > self.inner.len()? { end } else { 0 })
    }
}

/// Opens a database (events or control) on a [`FaultyBackend`].
pub fn open_db(path: &Path, disk: Arc<Disk>) -> Result<Database, StoreError> {
    let backend = FaultyBackend::open(path, disk).map_err(|e| StoreError::io(path, super::Op::Open, e))?;
    Database::builder().create_with_backend(backend).map_err(|e| StoreError::redb(path, e))
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.check(self.growth_to(len)?)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.disk.check(0)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.check(self.growth_to(offset.saturating_add(data.len() as u64))?)?;
        self.inner.write(offset, data)
    }

    // Closing and locking are not I/O on the data: they must keep working so
    // that the database can be dropped and opened again.
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
