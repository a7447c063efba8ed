//! The audit log: who did what, when, from where.
//!
//! | table   | key       | value               |
//! |---------|-----------|---------------------|
//! | `audit` | seq u64   | JSON `AuditRow`     |
//!
//! Entries are appended with increasing sequence numbers; the oldest are
//! dropped beyond [`MAX_AUDIT_ENTRIES`] so the log stays bounded.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{ControlStore, ROW_VERSION, Versioned};
use crate::store::StoreError;

pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Entries kept; older ones are dropped as new ones arrive.
pub const MAX_AUDIT_ENTRIES: u64 = 100_000;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, set when appended.
    #[serde(default)]
    pub id: u64,
    pub at_ms: u64,
    /// What happened, e.g. `login`, `apikey.create`.
    pub action: String,
    /// `ok`, `failed` or `denied`.
    pub outcome: String,
    /// Who did it (email), when known.
    pub actor: Option<String>,
    /// The workspace it concerns; `None` for server-wide actions.
    pub workspace: Option<u32>,
    /// What it was done to, e.g. `apikey:3`, `user:7`.
    pub target: Option<String>,
    /// The client IP.
    pub ip: String,
    pub detail: Option<String>,
}

/// Which entries to read, newest first.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// Only entries of this workspace (and, with `server_wide`, entries of none).
    pub workspace: u32,
    pub server_wide: bool,
    /// Only entries with a smaller id (paging backwards).
    pub before: Option<u64>,
    pub limit: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct AuditRow {
    v: u32,
    #[serde(flatten)]
    entry: AuditEntry,
}

impl Versioned for AuditRow {
    fn version(&self) -> u32 {
        self.v
    }
}

impl ControlStore {
    /// Appends an entry; returns its id.
    pub fn append_audit(&self, mut entry: AuditEntry) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let id = {
            let mut table = tx.open_table(AUDIT).map_err(|e| self.err(e))?;
            let last = table.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value()).unwrap_or(0);
            entry.id = last.checked_add(1).ok_or_else(|| self.exhausted("audit"))?;
            let bytes = self.encode(&AuditRow { v: ROW_VERSION, entry })?;
            let id = last + 1;
            table.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
            while table.len().map_err(|e| self.err(e))? > MAX_AUDIT_ENTRIES {
                table.pop_first().map_err(|e| self.err(e))?;
            }
            id
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(id)
    }

    /// Entries matching `q`, newest first.
    pub fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(AUDIT).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.range(..q.before.unwrap_or(u64::MAX)).map_err(|e| self.err(e))?.rev() {
            let (_, v) = row.map_err(|e| self.err(e))?;
            let row: AuditRow = self.parse(v.value())?;
            let mine = match row.entry.workspace {
                Some(w) => w == q.workspace,
                None => q.server_wide,
            };
            if mine {
                out.push(row.entry);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
