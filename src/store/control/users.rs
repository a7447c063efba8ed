//! Users, the email index and workspace memberships.
//!
//! | table     | key                        | value                                  |
//! |-----------|----------------------------|----------------------------------------|
//! | `users`   | id u64                     | JSON `UserRow`: email, argon2id PHC hash, created |
//! | `emails`  | lowercased email           | user id u64                            |
//! | `members` | (workspace u32, user u64)  | role byte ([`Role::to_byte`])          |
//!
//! Emails are unique regardless of case. Every workspace that has members
//! keeps at least one admin: demoting or removing the last one is a
//! conflict. A user left with no membership is deleted, with its sessions.

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::role::Role;
use super::sessions::delete_sessions_where;
use super::{ControlStore, META, ROW_VERSION, Versioned, WORKSPACES};
use crate::store::{StoreError, now_ms};

pub(super) const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
pub(super) const EMAILS: TableDefinition<&str, u64> = TableDefinition::new("emails");
pub(super) const MEMBERS: TableDefinition<(u32, u64), u8> = TableDefinition::new("members");
const NEXT_USER_ID: &str = "next_user_id";
/// Longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// A user as shown by the API (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub email: String,
    pub created_at_ms: u64,
}

/// A user's membership of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    #[serde(flatten)]
    pub user: User,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserRow {
    v: u32,
    email: String,
    password_hash: String,
    created_at_ms: u64,
}

impl Versioned for UserRow {
    fn version(&self) -> u32 {
        self.v
    }
}

/// Trims and lowercases an email, refusing what cannot be one.
pub fn normalize_email(email: &str) -> Result<String, StoreError> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= MAX_EMAIL_LEN
        && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(StoreError::Invalid { reason: "email must look like name@example.com".into() });
    }
    Ok(e)
}

fn conflict(reason: impl Into<String>) -> StoreError {
    StoreError::Conflict { reason: reason.into() }
}

fn user_not_found(id: u64) -> StoreError {
    StoreError::NotFound { what: format!("user {id}") }
}

impl ControlStore {
    /// Number of users; setup is open while it is 0.
    pub fn user_count(&self) -> Result<u64, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let users = tx.open_table(USERS).map_err(|e| self.err(e))?;
        users.len().map_err(|e| self.err(e))
    }

    /// The user with this email and its password hash, for login.
    pub fn find_login(&self, email: &str) -> Result<Option<(User, String)>, StoreError> {
        let Ok(email) = normalize_email(email) else { return Ok(None) };
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let emails = tx.open_table(EMAILS).map_err(|e| self.err(e))?;
        let Some(id) = emails.get(email.as_str()).map_err(|e| self.err(e))?.map(|v| v.value()) else {
            return Ok(None);
        };
        let users = tx.open_table(USERS).map_err(|e| self.err(e))?;
        let Some(v) = users.get(id).map_err(|e| self.err(e))? else { return Ok(None) };
        let row: UserRow = self.parse(v.value())?;
        Ok(Some((User { id, email: row.email, created_at_ms: row.created_at_ms }, row.password_hash)))
    }

    pub fn get_user(&self, id: u64) -> Result<User, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let users = tx.open_table(USERS).map_err(|e| self.err(e))?;
        let v = users.get(id).map_err(|e| self.err(e))?.ok_or_else(|| user_not_found(id))?;
        let row: UserRow = self.parse(v.value())?;
        Ok(User { id, email: row.email, created_at_ms: row.created_at_ms })
    }

    /// The user's role in a workspace, if a member.
    pub fn role_of(&self, user: u64, workspace: u32) -> Result<Option<Role>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
        Ok(members.get((workspace, user)).map_err(|e| self.err(e))?.and_then(|v| Role::from_byte(v.value())))
    }

    /// Every `(workspace, role)` of a user, by workspace.
    pub fn workspaces_of(&self, user: u64) -> Result<Vec<(u32, Role)>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in members.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let (ws, u) = k.value();
            if let (true, Some(role)) = (u == user, Role::from_byte(v.value())) {
                out.push((ws, role));
            }
        }
        Ok(out)
    }

    /// Members of a workspace, by user id.
    pub fn members(&self, workspace: u32) -> Result<Vec<Member>, StoreError> {
        let tx = self.db()?.begin_read().map_err(|e| self.err(e))?;
        let members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
        let users = tx.open_table(USERS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in members.range((workspace, 0)..=(workspace, u64::MAX)).map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let id = k.value().1;
            let (Some(role), Some(u)) = (Role::from_byte(v.value()), users.get(id).map_err(|e| self.err(e))?) else {
                continue;
            };
            let row: UserRow = self.parse(u.value())?;
            out.push(Member { user: User { id, email: row.email, created_at_ms: row.created_at_ms }, role });
        }
        Ok(out)
    }

    /// Creates a user who is a member of `workspace` with `role`.
    pub fn create_user(&self, email: &str, hash: &str, workspace: u32, role: Role) -> Result<Member, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        if !self.has_workspace(&tx, workspace)? {
            return Err(StoreError::NotFound { what: format!("workspace {workspace}") });
        }
        let user = self.insert_user(&tx, email, hash)?;
        tx.open_table(MEMBERS)
            .map_err(|e| self.err(e))?
            .insert((workspace, user.id), role.to_byte())
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Member { user, role })
    }

    /// Adds an existing user to a workspace; a conflict if already a member.
    pub fn add_member(&self, workspace: u32, user: u64, role: Role) -> Result<Member, StoreError> {
        let found = self.get_user(user)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        if !self.has_workspace(&tx, workspace)? {
            return Err(StoreError::NotFound { what: format!("workspace {workspace}") });
        }
        {
            let mut members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
            if members.get((workspace, user)).map_err(|e| self.err(e))?.is_some() {
                return Err(conflict(format!("user {user} is already a member of workspace {workspace}")));
            }
            members.insert((workspace, user), role.to_byte()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Member { user: found, role })
    }

    /// Changes a member's role; demoting the workspace's last admin is a conflict.
    pub fn set_role(&self, workspace: u32, user: u64, role: Role) -> Result<Member, StoreError> {
        let found = self.get_user(user)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        {
            let mut members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
            let old = self.member_role(&members, workspace, user)?;
            if old == Role::Admin && role != Role::Admin && self.admins(&members, workspace)? <= 1 {
                return Err(conflict(format!("user {user} is the last admin of workspace {workspace}")));
            }
            members.insert((workspace, user), role.to_byte()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Member { user: found, role })
    }

    /// Removes a membership and the sessions in that workspace; a user left
    /// with no workspace is deleted. Returns whether the user was deleted.
    pub fn remove_member(&self, workspace: u32, user: u64) -> Result<bool, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let deleted = {
            let mut members = tx.open_table(MEMBERS).map_err(|e| self.err(e))?;
            let old = self.member_role(&members, workspace, user)?;
            if old == Role::Admin && self.admins(&members, workspace)? <= 1 {
                return Err(conflict(format!("user {user} is the last admin of workspace {workspace}")));
            }
            members.remove((workspace, user)).map_err(|e| self.err(e))?;
            let left =
                members.iter().map_err(|e| self.err(e))?.filter_map(Result::ok).any(|(k, _)| k.value().1 == user);
            drop(members);
            delete_sessions_where(self, &tx, |s| s.user == user && (!left || s.workspace == workspace))?;
            if !left {
                self.delete_user_row(&tx, user)?;
            }
            !left
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(deleted)
    }

    /// Sets a new password hash and ends every session of the user.
    pub fn set_password(&self, email: &str, hash: &str) -> Result<User, StoreError> {
        let email = normalize_email(email)?;
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let user = {
            let emails = tx.open_table(EMAILS).map_err(|e| self.err(e))?;
            let id = emails.get(email.as_str()).map_err(|e| self.err(e))?.map(|v| v.value());
            drop(emails);
            let id = id.ok_or_else(|| StoreError::NotFound { what: format!("user {email}") })?;
            let mut users = tx.open_table(USERS).map_err(|e| self.err(e))?;
            let v = users.get(id).map_err(|e| self.err(e))?.ok_or_else(|| user_not_found(id))?;
            let mut row: UserRow = self.parse(v.value())?;
            drop(v);
            row.password_hash = hash.to_owned();
            let bytes = self.encode(&row)?;
            users.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
            User { id, email: row.email, created_at_ms: row.created_at_ms }
        };
        delete_sessions_where(self, &tx, |s| s.user == user.id)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(user)
    }

    /// Inserts a user row and its email; a conflict if the email is taken.
    pub(super) fn insert_user(&self, tx: &WriteTransaction, email: &str, hash: &str) -> Result<User, StoreError> {
        let email = normalize_email(email)?;
        let mut emails = tx.open_table(EMAILS).map_err(|e| self.err(e))?;
        if emails.get(email.as_str()).map_err(|e| self.err(e))?.is_some() {
            return Err(conflict(format!("a user with email {email} exists")));
        }
        let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let id = meta.get(NEXT_USER_ID).map_err(|e| self.err(e))?.map(|v| v.value()).unwrap_or(1);
        meta.insert(NEXT_USER_ID, id.checked_add(1).ok_or_else(|| self.exhausted("user"))?).map_err(|e| self.err(e))?;
        let row =
            UserRow { v: ROW_VERSION, email: email.clone(), password_hash: hash.to_owned(), created_at_ms: now_ms() };
        let bytes = self.encode(&row)?;
        tx.open_table(USERS).map_err(|e| self.err(e))?.insert(id, bytes.as_slice()).map_err(|e| self.err(e))?;
        emails.insert(email.as_str(), id).map_err(|e| self.err(e))?;
        Ok(User { id, email, created_at_ms: row.created_at_ms })
    }

    fn delete_user_row(&self, tx: &WriteTransaction, user: u64) -> Result<(), StoreError> {
        let mut users = tx.open_table(USERS).map_err(|e| self.err(e))?;
        let Some(v) = users.remove(user).map_err(|e| self.err(e))? else { return Ok(()) };
        let row: UserRow = self.parse(v.value())?;
        drop(v);
        tx.open_table(EMAILS).map_err(|e| self.err(e))?.remove(row.email.as_str()).map_err(|e| self.err(e))?;
        Ok(())
    }

    pub(super) fn has_workspace(&self, tx: &WriteTransaction, workspace: u32) -> Result<bool, StoreError> {
        let ws = tx.open_table(WORKSPACES).map_err(|e| self.err(e))?;
        Ok(ws.get(workspace).map_err(|e| self.err(e))?.is_some())
    }

    fn member_role(&self, members: &redb::Table<'_, (u32, u64), u8>, ws: u32, user: u64) -> Result<Role, StoreError> {
        let v = members.get((ws, user)).map_err(|e| self.err(e))?;
        v.and_then(|v| Role::from_byte(v.value()))
            .ok_or_else(|| StoreError::NotFound { what: format!("user {user} in workspace {ws}") })
    }

    fn admins(&self, members: &redb::Table<'_, (u32, u64), u8>, ws: u32) -> Result<usize, StoreError> {
        let range = members.range((ws, 0)..=(ws, u64::MAX)).map_err(|e| self.err(e))?;
        Ok(range.filter_map(Result::ok).filter(|(_, v)| v.value() == Role::Admin.to_byte()).count())
    }
}
