//! First-run setup: the first admin, made in one write transaction.
//!
//! redb runs one write transaction at a time, and the transaction refuses
//! when any user exists, so concurrent setups create exactly one admin; the
//! others fail with a conflict and change nothing.

use redb::{ReadableTableMetadata, WriteTransaction};

use super::audit::AUDIT;
use super::role::Role;
use super::secrets::{SECRETS, SETUP_TOKEN};
use super::sessions::SESSIONS;
use super::users::{EMAILS, MEMBERS, USERS};
use super::{ControlStore, DEFAULT_WORKSPACE, KeyRecord, User};
use crate::store::StoreError;

/// What setup made.
#[derive(Debug, Clone)]
pub struct SetupDone {
    pub user: User,
    pub workspace: u32,
    pub key: KeyRecord,
    /// The first streaming key, 32 hex chars: shown once.
    pub streaming_key: String,
}

impl ControlStore {
    /// Creates the first admin (member of the default workspace) and a first
    /// streaming key, and forgets the setup token. A conflict if any user exists.
    pub fn setup(&self, email: &str, hash: &str, key_name: &str) -> Result<SetupDone, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        if tx.open_table(USERS).map_err(|e| self.err(e))?.len().map_err(|e| self.err(e))? > 0 {
            return Err(StoreError::Conflict { reason: "setup is already done".into() });
        }
        let user = self.insert_user(&tx, email, hash)?;
        let ws = DEFAULT_WORKSPACE;
        tx.open_table(MEMBERS)
            .map_err(|e| self.err(e))?
            .insert((ws, user.id), Role::Admin.to_byte())
            .map_err(|e| self.err(e))?;
        let (key, streaming_key) = self.insert_key(&tx, key_name, ws, &user.email)?;
        tx.open_table(SECRETS).map_err(|e| self.err(e))?.remove(SETUP_TOKEN).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(SetupDone { user, workspace: ws, key, streaming_key })
    }

    /// Creates the tables of users, sessions, audit and secrets if missing.
    pub(super) fn init_admin_tables(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        tx.open_table(USERS).map_err(|e| self.err(e))?;
        tx.open_table(EMAILS).map_err(|e| self.err(e))?;
        tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
        tx.open_table(SESSIONS).map_err(|e| self.err(e))?;
        tx.open_table(AUDIT).map_err(|e| self.err(e))?;
        tx.open_table(SECRETS).map_err(|e| self.err(e))?;
        Ok(())
    }
}
