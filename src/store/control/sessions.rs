//! Login sessions.
//!
//! | table      | key                 | value              |
//! |------------|---------------------|--------------------|
//! | `sessions` | session id (hex)    | JSON `SessionRow`  |
//!
//! A token is valid only while its session row exists, so ending a session
//! (logout, refresh, a removed user) ends the token. The daemon mirrors this
//! table in memory ([`crate::control::Control`] changes both) so that the
//! check on every request does not touch the disk. Expired rows are purged
//! whenever a session is created.

use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{ControlStore, ROW_VERSION, Versioned};
use crate::store::{StoreError, now_ms};

pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// One login session (one token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user: u64,
    pub workspace: u32,
    pub ip: String,
    pub user_agent: String,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionRow {
    v: u32,
    #[serde(flatten)]
    session: Session,
}

impl Versioned for SessionRow {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Deletes every session matching `pred` inside `tx`; returns their ids.
pub(super) fn delete_sessions_where(
    store: &ControlStore,
    tx: &WriteTransaction,
    pred: impl Fn(&Session) -> bool,
) -> Result<Vec<String>, StoreError> {
    let mut table = tx.open_table(SESSIONS).map_err(|e| store.err(e))?;
    let mut doomed = Vec::new();
    for row in table.iter().map_err(|e| store.err(e))? {
        let (k, v) = row.map_err(|e| store.err(e))?;
        let row: SessionRow = store.parse(v.value())?;
        if pred(&row.session) {
            doomed.push(k.value().to_owned());
        }
    }
    for id in &doomed {
        table.remove(id.as_str()).map_err(|e| store.err(e))?;
    }
    Ok(doomed)
}

impl ControlStore {
    /// Stores a new session (and purges expired ones).
    pub fn insert_session(&self, session: &Session) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let now = now_ms();
        delete_sessions_where(self, &tx, |s| s.expires_at_ms <= now)?;
        self.put_session(&tx, session)?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Swaps `old` for `new` in one transaction; `NotFound` if `old` is gone
    /// (so two refreshes of one token cannot both succeed).
    pub fn replace_session(&self, old: &str, new: &Session) -> Result<(), StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let removed = tx.open_table(SESSIONS).map_err(|e| self.err(e))?.remove(old).map_err(|e| self.err(e))?.is_some();
        if !removed {
            return Err(StoreError::NotFound { what: "session".into() });
        }
        self.put_session(&tx, new)?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Ends every session of a user; returns their ids.
    pub fn delete_user_sessions(&self, user: u64) -> Result<Vec<String>, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let gone = delete_sessions_where(self, &tx, |s| s.user == user)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(gone)
    }

    /// Every session not yet expired.
    pub fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
        let now = now_ms();
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (_, v) = row.map_err(|e| self.err(e))?;
            let row: SessionRow = self.parse(v.value())?;
            if row.session.expires_at_ms > now {
                out.push(row.session);
            }
        }
        Ok(out)
    }

    fn put_session(&self, tx: &WriteTransaction, session: &Session) -> Result<(), StoreError> {
        let row = SessionRow { v: ROW_VERSION, session: session.clone() };
        let bytes = self.encode(&row)?;
        let mut table = tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
        table.insert(session.id.as_str(), bytes.as_slice()).map_err(|e| self.err(e))?;
        Ok(())
    }
}
