//! Workspaces made through the API: the next free id, the creator as admin.

use redb::ReadableTable;

use super::role::Role;
use super::users::MEMBERS;
use super::{ControlStore, WORKSPACES, Workspace, check_name};
use crate::store::StoreError;

impl ControlStore {
    /// Creates a workspace with the next id after the highest one and makes
    /// `admin` its admin, in one transaction.
    pub fn create_workspace_for(&self, name: &str, admin: u64) -> Result<Workspace, StoreError> {
        check_name("workspace name", name)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let id = {
            let mut ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
            let last = ws.last().map_err(|e| self.err(e))?.map(|(k, _)| k.value()).unwrap_or(0);
            let id = last.checked_add(1).ok_or_else(|| self.exhausted("workspace"))?;
            self.insert_workspace_if_missing(&mut ws, id, name)?;
            id
        };
        tx.open_table(MEMBERS)
            .map_err(|e| self.err(e))?
            .insert((id, admin), Role::Admin.to_byte())
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        let created = self.list_workspaces()?.into_iter().find(|w| w.id == id);
        created.ok_or_else(|| StoreError::NotFound { what: format!("workspace {id}") })
    }
}
