//! The control database `control.redb`: workspaces, streaming keys, users,
//! memberships, sessions, the audit log and secrets. Users, sessions, audit
//! and secrets live in the files of `control/`; their tables are listed there.
//!
//! | table        | key           | value                                      |
//! |--------------|---------------|--------------------------------------------|
//! | `meta`       | name          | u64: `format_version`, `next_key_id`       |
//! | `workspaces` | id u32        | JSON [`WorkspaceRow`] (versioned)          |
//! | `keys`       | id u64        | JSON [`KeyRow`] (versioned)                |
//!
//! Control data is small and rarely written, so rows are JSON with a `v`
//! field: easy to inspect and to extend without a format bump (unknown fields
//! are ignored, new fields get serde defaults).
//!
//! Streaming keys are never stored: only the SHA-256 digest of the 16 raw key
//! bytes, plus the first 8 hex characters so an operator can tell keys apart.
//! Key ids come from a counter in `meta` that only goes up, so an id is never
//! reused, not even after the newest key is deleted.
//!
//! Every write transaction commits with redb's default `Durability::Immediate`.
//!
//! The store recovers its database as the event writer does: redb will not
//! go on after an I/O error (a full disk, say), so the failing operation
//! drops the handle and the next one opens the file again. Until that
//! works every operation fails with a retryable error; afterwards logins,
//! key deletes and logouts succeed without a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::error::RedbOp;
use super::{Cause, Op, StoreError, ensure_data_dir, now_ms};

mod audit;
pub mod role;
mod secrets;
mod sessions;
mod setup;
#[cfg(test)]
mod tests_admin;
mod users;
mod workspaces;

pub use audit::{AuditEntry, AuditQuery, MAX_AUDIT_ENTRIES};
pub use sessions::Session;
pub use setup::SetupDone;
pub use users::{MAX_EMAIL_LEN, Member, User, normalize_email};

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const WORKSPACES: TableDefinition<u32, &[u8]> = TableDefinition::new("workspaces");
const KEYS: TableDefinition<u64, &[u8]> = TableDefinition::new("keys");

/// Every table of control.redb, for [`super::backup`] (which refuses a
/// database holding a table not listed here).
pub(crate) const BACKUP_TABLES: &[&dyn super::backup::TableCopy] = &[
    &META,
    &WORKSPACES,
    &KEYS,
    &users::USERS,
    &users::EMAILS,
    &users::MEMBERS,
    &sessions::SESSIONS,
    &audit::AUDIT,
    &secrets::SECRETS,
];

/// The stored form of a streaming key: SHA-256 of its 16 raw bytes (the
/// key registry looks keys up by the same digest).
pub fn digest(raw: &[u8; 16]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(raw).into()
}

/// The on-disk format this build writes. Newer formats are refused.
pub const FORMAT_VERSION: u64 = 1;
const FORMAT_KEY: &str = "format_version";
const NEXT_KEY_ID: &str = "next_key_id";
/// Version of the JSON rows this build writes.
const ROW_VERSION: u32 = 1;
/// The workspace every data dir starts with.
pub const DEFAULT_WORKSPACE: u32 = 1;
/// Key and workspace names longer than this are refused.
pub const MAX_NAME_LEN: usize = 256;
/// Hex characters of a key kept for display.
pub const PREFIX_LEN: usize = 8;

/// A streaming key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: u64,
    pub name: String,
    pub workspace: u32,
    /// The first 8 hex characters of the key, for recognising it.
    pub prefix: String,
    pub created_at_ms: u64,
    pub last_used_ms: Option<u64>,
    /// Who made the key (e.g. `cli:<user>` or an admin's email).
    pub creator: String,
}

/// What the in-memory key registry needs per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: u64,
    pub workspace: u32,
}

/// A workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: u32,
    pub name: String,
    pub created_at_ms: u64,
}

/// Stored form of a key: the record plus its digest.
#[derive(Debug, Serialize, Deserialize)]
struct KeyRow {
    v: u32,
    #[serde(flatten)]
    record: KeyRecord,
    /// SHA-256 of the 16 raw key bytes, hex.
    digest: String,
}

/// Stored form of a workspace (the id is the table key).
#[derive(Debug, Serialize, Deserialize)]
struct WorkspaceRow {
    v: u32,
    name: String,
    created_at_ms: u64,
}

/// Opens the control database; called again after an I/O error.
pub type ControlOpener = Box<dyn Fn(&Path) -> Result<Database, StoreError> + Send + Sync>;

/// The standard opener: the file itself, created 0600 if missing.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    super::create_private(path)?;
    Database::create(path).map_err(|e| StoreError::redb(path, e))
}

/// The control database. Cheap to share behind an `Arc`; every method opens
/// its own transaction.
pub struct ControlStore {
    /// `None` after an I/O error, until the next operation reopens it.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    opener: ControlOpener,
}

impl std::fmt::Debug for ControlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ControlStore {
    /// Opens (creating if needed) `data_dir/control.redb`, creates missing
    /// tables, checks the format version and makes sure workspace 1 exists.
    ///
    /// Fails with [`StoreError::Locked`] while another process (a running
    /// daemon) or another handle in this process has the file open.
    pub fn open(data_dir: &Path) -> Result<ControlStore, StoreError> {
        ControlStore::open_with(data_dir, Box::new(open_file))
    }

    /// [`Self::open`] with another opener (tests inject disk failures).
    pub fn open_with(data_dir: &Path, opener: ControlOpener) -> Result<ControlStore, StoreError> {
        ensure_data_dir(data_dir)?;
        let path = data_dir.join(super::CONTROL_FILE);
        let db = opener(&path)?;
        let store = ControlStore { db: RwLock::new(Some(Arc::new(db))), path, opener };
        store.init()?;
        Ok(store)
    }

    /// The open database, reopened first if an I/O error closed it.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        if let Some(db) = self.db.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        let mut slot = self.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        // Fails (retryably) while an operation still holds the old handle.
        let db = (self.opener)(&self.path)?;
        let db = Arc::new(db);
        tracing::info!(path = %self.path.display(), "control database reopened after an I/O error");
        *slot = Some(db.clone());
        Ok(db)
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read snapshot of the whole database (for [`super::backup`]).
    pub(crate) fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        self.db()?.begin_read().map_err(|e| self.err(e))
    }

    /// A row as stored.
    fn encode<T: Serialize>(&self, row: &T) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(row).map_err(|e| StoreError::encode(&self.path, e))
    }

    /// An id counter at its end.
    fn exhausted(&self, what: &'static str) -> StoreError {
        StoreError::storage(&self.path, Op::Access, Cause::Exhausted(what))
    }

    /// A storage error; after an I/O error the handle is dropped so the
    /// next operation reopens the file (redb will not go on with it).
    fn err<E: RedbOp>(&self, e: E) -> StoreError {
        let e = StoreError::redb(&self.path, e);
        if e.is_io() {
            let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
            if slot.take().is_some() {
                tracing::warn!(path = %self.path.display(), error = %e, "control database I/O error; it is reopened on the next operation");
            }
        }
        e
    }

    fn init(&self) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            let found = meta.get(FORMAT_KEY).map_err(|e| self.err(e))?.map(|v| v.value());
            match found {
                Some(v) if v > FORMAT_VERSION => {
                    return Err(StoreError::TooNew { path: self.path.clone(), found: v, supported: FORMAT_VERSION });
                }
                Some(_) => {}
                None => {
                    meta.insert(FORMAT_KEY, FORMAT_VERSION).map_err(|e| self.err(e))?;
                }
            }
            if meta.get(NEXT_KEY_ID).map_err(|e| self.err(e))?.is_none() {
                meta.insert(NEXT_KEY_ID, 1).map_err(|e| self.err(e))?;
            }
            tx.open_table(KEYS).map_err(|e| self.err(e))?;
            self.init_admin_tables(&tx)?;
            let mut ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
            self.insert_workspace_if_missing(&mut ws, DEFAULT_WORKSPACE, "default")?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Inserts a workspace row unless one exists; true if it was inserted.
    fn insert_workspace_if_missing(
        &self,
        table: &mut redb::Table<'_, u32, &[u8]>,
        id: u32,
        name: &str,
    ) -> Result<bool, StoreError> {
        if table.get(id).map_err(|e| self.err(e))?.is_some() {
            return Ok(false);
        }
        let row = WorkspaceRow { v: ROW_VERSION, name: name.to_owned(), created_at_ms: now_ms() };
        let bytes = self.encode(&row)?;
        table.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        Ok(true)
    }

    // ---- workspaces ----

    /// Creates workspace `id` named `name`. Returns false (and changes
    /// nothing) if it already exists.
    pub fn create_workspace(&self, id: u32, name: &str) -> Result<bool, StoreError> {
        check_workspace(id)?;
        check_name("workspace name", name)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let created = {
            let mut ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
            self.insert_workspace_if_missing(&mut ws, id, name)?
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(created)
    }

    pub fn workspace_exists(&self, id: u32) -> Result<bool, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
        Ok(ws.get(id).map_err(|e| self.err(e))?.is_some())
    }

    /// Every workspace, by id.
    pub fn list_workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let row: WorkspaceRow = self.parse(v.value())?;
            out.push(Workspace { id: k.value(), name: row.name, created_at_ms: row.created_at_ms });
        }
        Ok(out)
    }

    // ---- streaming keys ----

    /// Makes a new streaming key for `workspace` (creating the workspace if
    /// missing). Returns its record and the key as 32 lowercase hex chars:
    /// the only time the key exists outside the client.
    pub fn create_key(&self, name: &str, workspace: u32, creator: &str) -> Result<(KeyRecord, String), StoreError> {
        check_workspace(workspace)?;
        check_name("key name", name)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let created = self.insert_key(&tx, name, workspace, creator)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(created)
    }

    /// The body of [`create_key`](Self::create_key) inside the caller's transaction.
    fn insert_key(
        &self,
        tx: &redb::WriteTransaction,
        name: &str,
        workspace: u32,
        creator: &str,
    ) -> Result<(KeyRecord, String), StoreError> {
        let raw = new_raw_key();
        let hex_key = hex::encode(raw);
        let mut ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
        self.insert_workspace_if_missing(&mut ws, workspace, &format!("workspace {workspace}"))?;
        let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let id = meta.get(NEXT_KEY_ID).map_err(|e| self.err(e))?.map(|v| v.value()).unwrap_or(1);
        let next = id.checked_add(1).ok_or_else(|| self.exhausted("key"))?;
        meta.insert(NEXT_KEY_ID, next).map_err(|e| self.err(e))?;
        let record = KeyRecord {
            id,
            name: name.to_owned(),
            workspace,
            prefix: hex_key[..PREFIX_LEN].to_owned(),
            created_at_ms: now_ms(),
            last_used_ms: None,
            creator: creator.to_owned(),
        };
        let row = KeyRow { v: ROW_VERSION, record, digest: hex::encode(digest(&raw)) };
        let bytes = self.encode(&row)?;
        let mut keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
        keys.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        Ok((row.record, hex_key))
    }

    /// Keys by id, of one workspace or of all.
    pub fn list_keys(&self, workspace: Option<u32>) -> Result<Vec<KeyRecord>, StoreError> {
        Ok(self
            .key_rows()?
            .into_iter()
            .map(|row| row.record)
            .filter(|r| workspace.is_none_or(|w| r.workspace == w))
            .collect())
    }

    /// One key by id.
    pub fn get_key(&self, id: u64) -> Result<KeyRecord, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
        let value = keys.get(id).map_err(|e| self.err(e))?.ok_or_else(|| key_not_found(id))?;
        Ok(self.parse::<KeyRow>(value.value())?.record)
    }

    /// Deletes a key; returns what it was. In the daemon, keys are deleted
    /// through [`crate::control::Control`], which also drops the key from
    /// the registry the sources look keys up in.
    pub fn delete_key(&self, id: u64) -> Result<KeyRecord, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let row = {
            let mut keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
            let removed = keys.remove(id).map_err(|e| self.err(e))?.ok_or_else(|| key_not_found(id))?;
            self.parse::<KeyRow>(removed.value())?
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(row.record)
    }

    /// Digest and workspace of every key, for building the in-memory registry.
    pub fn key_digests(&self) -> Result<Vec<([u8; 32], KeyInfo)>, StoreError> {
        self.key_rows()?
            .into_iter()
            .map(|row| {
                let mut d = [0u8; 32];
                hex::decode_to_slice(&row.digest, &mut d)
                    .map_err(|e| StoreError::bad_row(&self.path, format_args!("key {}: digest: {e}", row.record.id)))?;
                Ok((d, KeyInfo { id: row.record.id, workspace: row.record.workspace }))
            })
            .collect()
    }

    /// Records last-use times `(id, last_used_ms)` in one transaction. Ids that
    /// no longer exist are skipped; a time never moves backwards.
    pub fn touch_keys(&self, touched: &[(u64, u64)]) -> Result<(), StoreError> {
        if touched.is_empty() {
            return Ok(());
        }
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
            for &(id, used_ms) in touched {
                let Some(value) = keys.get(id).map_err(|e| self.err(e))? else {
                    continue;
                };
                let mut row: KeyRow = self.parse(value.value())?;
                drop(value);
                if row.record.last_used_ms.is_some_and(|t| t >= used_ms) {
                    continue;
                }
                row.record.last_used_ms = Some(used_ms);
                let bytes = self.encode(&row)?;
                keys.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    fn key_rows(&self) -> Result<Vec<KeyRow>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let keys = tx.open_table(KEYS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in keys.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            out.push(self.parse(v.value())?);
        }
        Ok(out)
    }

    /// Decodes a JSON row, refusing rows from a newer row version.
    fn parse<T: for<'de> Deserialize<'de> + Versioned>(&self, bytes: &[u8]) -> Result<T, StoreError> {
        let row: T = serde_json::from_slice(bytes).map_err(|e| StoreError::bad_row(&self.path, e))?;
        if row.version() > ROW_VERSION {
            let newer = format_args!("row version {} is newer than this sluice understands", row.version());
            return Err(StoreError::bad_row(&self.path, newer));
        }
        Ok(row)
    }
}

trait Versioned {
    fn version(&self) -> u32;
}

impl Versioned for KeyRow {
    fn version(&self) -> u32 {
        self.v
    }
}

impl Versioned for WorkspaceRow {
    fn version(&self) -> u32 {
        self.v
    }
}

/// 128 bits from the thread-local CSPRNG (ChaCha, seeded from the OS).
fn new_raw_key() -> [u8; 16] {
    let mut raw = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut raw);
    raw
}

fn key_not_found(id: u64) -> StoreError {
    StoreError::NotFound { what: format!("streaming key {id}") }
}

fn check_workspace(id: u32) -> Result<(), StoreError> {
    if id == 0 {
        return Err(StoreError::Invalid { reason: "workspace ids are positive integers (0 is not one)".into() });
    }
    Ok(())
}

fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid { reason: format!("{what} must not be empty") });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreError::Invalid { reason: format!("{what} is longer than {MAX_NAME_LEN} bytes") });
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid { reason: format!("{what} must not contain control characters") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_full_disk_a_leaked_key_can_be_deleted_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let disk = super::super::fault::Disk::new();
        let d = disk.clone();
        let opener: ControlOpener = Box::new(move |path| super::super::fault::open_db(path, d.clone()));
        let store = ControlStore::open_with(dir.path(), opener).unwrap();
        let (leaked, _) = store.create_key("leaked", DEFAULT_WORKSPACE, "test").unwrap();
        let len = std::fs::metadata(store.path()).unwrap().len();
        disk.full_at(len);
        let mut failed = 0;
        while store.create_key("filler", DEFAULT_WORKSPACE, "test").is_ok() {
            failed += 1;
            assert!(failed < 10_000, "the disk never filled");
        }
        disk.free();
        // The next operations reopen the database and succeed.
        let deleted = store.delete_key(leaked.id).expect("a leaked key can be revoked once there is room");
        assert_eq!(deleted.id, leaked.id);
        assert!(store.list_keys(None).unwrap().iter().all(|k| k.id != leaked.id));
        let reopened = ControlStore::open(dir.path());
        assert!(matches!(reopened, Err(StoreError::Locked { .. })), "still held by its owner");
    }

    fn open(dir: &tempfile::TempDir) -> ControlStore {
        ControlStore::open(dir.path()).unwrap()
    }

    #[test]
    fn new_store_has_workspace_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert!(store.workspace_exists(1).unwrap());
        assert!(!store.workspace_exists(2).unwrap());
        let ws = store.list_workspaces().unwrap();
        assert_eq!(ws.len(), 1);
        assert_eq!((ws[0].id, ws[0].name.as_str()), (1, "default"));
    }

    #[test]
    fn opens_a_missing_nested_dir() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/data");
        let store = ControlStore::open(&nested).unwrap();
        assert!(store.path().ends_with("control.redb"));
        assert!(nested.join("control.redb").exists());
    }

    #[test]
    fn workspaces_are_positive_and_create_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        assert!(matches!(store.create_workspace(0, "zero"), Err(StoreError::Invalid { .. })));
        assert!(store.create_workspace(7, "seven").unwrap());
        assert!(!store.create_workspace(7, "again").unwrap());
        let ws = store.list_workspaces().unwrap();
        assert_eq!(ws.iter().map(|w| (w.id, w.name.as_str())).collect::<Vec<_>>(), vec![(1, "default"), (7, "seven")]);
        assert!(matches!(store.create_key("k", 0, "t"), Err(StoreError::Invalid { .. })));
        assert!(matches!(store.create_key("", 1, "t"), Err(StoreError::Invalid { .. })));
    }

    #[test]
    fn create_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let (a, key_a) = store.create_key("alpha", 1, "test").unwrap();
        let (b, key_b) = store.create_key("beta", 9, "test").unwrap();
        assert_eq!(key_a.len(), 32);
        assert!(key_a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(key_a, key_b);
        assert_eq!(a.prefix, key_a[..8]);
        assert_eq!((a.id, a.workspace, a.name.as_str(), a.creator.as_str()), (1, 1, "alpha", "test"));
        assert_eq!((b.id, b.workspace), (2, 9));
        assert_eq!(a.last_used_ms, None);
        assert!(store.workspace_exists(9).unwrap(), "create_key makes the workspace");

        assert_eq!(store.list_keys(None).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(store.list_keys(Some(9)).unwrap(), vec![b.clone()]);
        assert_eq!(store.list_keys(Some(3)).unwrap(), vec![]);
        assert_eq!(store.get_key(2).unwrap(), b);

        let digests = store.key_digests().unwrap();
        let raw_a: [u8; 16] = hex::decode(&key_a).unwrap().try_into().unwrap();
        assert!(digests.contains(&(digest(&raw_a), KeyInfo { id: 1, workspace: 1 })));
        assert_eq!(digests.len(), 2);

        assert_eq!(store.delete_key(1).unwrap(), a);
        assert!(matches!(store.delete_key(1), Err(StoreError::NotFound { .. })));
        assert!(matches!(store.get_key(1), Err(StoreError::NotFound { .. })));
        assert_eq!(store.list_keys(None).unwrap(), vec![b]);
        assert_eq!(store.key_digests().unwrap().len(), 1);
    }

    #[test]
    fn ids_are_never_reused_even_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store.create_key("one", 1, "t").unwrap();
            let (two, _) = store.create_key("two", 1, "t").unwrap();
            store.delete_key(two.id).unwrap();
        }
        let store = open(&dir);
        let (three, _) = store.create_key("three", 1, "t").unwrap();
        assert_eq!(three.id, 3);
        store.delete_key(1).unwrap();
        store.delete_key(3).unwrap();
        drop(store);
        let store = open(&dir);
        assert_eq!(store.create_key("four", 1, "t").unwrap().0.id, 4);
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(&dir);
        match ControlStore::open(dir.path()) {
            Err(StoreError::Locked { path }) => assert!(path.ends_with("control.redb")),
            other => panic!("expected Locked, got {other:?}"),
        }
        let msg = ControlStore::open(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("in use"), "{msg}");
        drop(first);
        open(&dir);
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir));
        {
            let db = Database::create(dir.path().join("control.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(FORMAT_KEY, FORMAT_VERSION + 1).unwrap();
            tx.commit().unwrap();
        }
        match ControlStore::open(dir.path()) {
            Err(StoreError::TooNew { found, supported, .. }) => assert_eq!((found, supported), (2, 1)),
            other => panic!("expected TooNew, got {other:?}"),
        }
    }

    #[test]
    fn only_digests_are_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = Vec::new();
        {
            let store = open(&dir);
            for i in 0..20 {
                keys.push(store.create_key(&format!("k{i}"), 1, "t").unwrap().1);
            }
        }
        let bytes = std::fs::read(dir.path().join("control.redb")).unwrap();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        for key in &keys {
            assert!(!contains(key.as_bytes()), "hex key {key} found in the file");
            assert!(!contains(key.to_uppercase().as_bytes()));
            assert!(!contains(&hex::decode(key).unwrap()), "raw key bytes found in the file");
        }
    }

    #[test]
    fn touch_keys_persists_and_never_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir);
            store.create_key("a", 1, "t").unwrap();
            store.create_key("b", 1, "t").unwrap();
            store.touch_keys(&[(1, 5000), (2, 7000), (99, 1)]).unwrap();
            store.touch_keys(&[(1, 4000)]).unwrap();
            store.touch_keys(&[]).unwrap();
        }
        let store = open(&dir);
        let keys = store.list_keys(None).unwrap();
        assert_eq!(keys.iter().map(|k| k.last_used_ms).collect::<Vec<_>>(), vec![Some(5000), Some(7000)]);
    }
}
