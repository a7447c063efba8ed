//! Storage: two redb files in the data directory.
//!
//! - `events.redb`: event chunks, per-workspace sequence counters and
//!   de-duplication records. Written only by the [`writer`] thread.
//! - `control.redb`: workspaces, streaming keys and (later) users and sessions.
//!
//! [`backup`] dumps both from read snapshots while the daemon runs and
//! rebuilds a data dir from such a dump.
//!
//! redb types never leave this module: callers see [`StoreError`], typed by
//! operation and cause (see [`error`]).

pub mod backup;
pub mod chunk;
pub mod control;
pub mod error;
pub mod events;
#[doc(hidden)]
pub mod fault;
pub mod query;
pub mod reader;
pub mod retention;
pub(crate) mod rows;
pub mod writer;

use std::path::Path;

pub use error::{Cause, Op, StoreError};

pub const EVENTS_FILE: &str = "events.redb";
pub const CONTROL_FILE: &str = "control.redb";

/// Creates the data dir (and missing parents) if needed, private to the
/// daemon's user (0700) whatever the umask: it holds the JWT secret.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::DataDir { path: dir.to_path_buf(), source })
}

/// Creates a database file 0600 before redb opens it, so it is never
/// readable by others whatever the umask (an existing file keeps its mode;
/// see [`warn_if_not_private`]).
pub(crate) fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(path, Op::Open, e)),
    }
}

/// Logs a WARN for the data dir or any of its files that others can read
/// or write (a dir or file made by hand, or by an older sluice).
pub fn warn_if_not_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut paths = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        paths.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    for path in paths {
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let want = if meta.is_dir() { "0700" } else { "0600" };
            tracing::warn!(path = %path.display(), mode = format!("{mode:04o}"), want, "data file is readable by other users; chmod it");
        }
    }
}

/// Milliseconds since the Unix epoch, by the server's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
