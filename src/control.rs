//! The one owner of the control plane: `control.redb` together with the
//! in-memory registries that mirror it, the streaming keys every source
//! looks up and the live sessions every API request checks.
//!
//! Every change that a registry mirrors goes through [`Control`], so the two
//! never disagree: a registry changes only after the transaction that makes
//! the same change has committed, and not at all when it fails. A key is
//! refused on its next frame once [`Control::delete_key`] returns; a session
//! ends with [`Control::end_sessions`] before logout answers. Reads go to
//! [`Control::store`]. The store itself reopens its file after an I/O error
//! (a full disk), so these keep working once the disk recovers.
//!
//! All methods block on redb: call them from the blocking pool.

use std::sync::Arc;

use crate::auth::keys::KeyRegistry;
use crate::auth::role::Role;
use crate::auth::session::{LiveSession, SessionRegistry};
use crate::store::StoreError;
use crate::store::control::{ControlStore, KeyInfo, KeyRecord, Member, SetupDone, digest};

/// control.redb and its registries.
#[derive(Debug)]
pub struct Control {
    store: ControlStore,
    keys: Arc<KeyRegistry>,
    sessions: Arc<SessionRegistry>,
}

impl Control {
    /// Takes over the store and loads its keys and its live sessions.
    pub fn new(store: ControlStore) -> Result<Control, StoreError> {
        let keys = Arc::new(KeyRegistry::from_digests(store.key_digests()?));
        let sessions = SessionRegistry::default();
        for s in store.sessions()? {
            // A session whose user or membership is gone is not live.
            let (Ok(user), Some(role)) = (store.get_user(s.user), store.role_of(s.user, s.workspace)?) else {
                continue;
            };
            sessions.insert(LiveSession::new(s, user.email, role));
        }
        Ok(Control { store, keys, sessions: Arc::new(sessions) })
    }

    /// The database, for reads (and for writes no registry mirrors).
    pub fn store(&self) -> &ControlStore {
        &self.store
    }

    /// The streaming keys, for the sources.
    pub fn keys(&self) -> &Arc<KeyRegistry> {
        &self.keys
    }

    /// The live sessions, for the token check.
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.sessions
    }

    // ---- streaming keys ----

    /// Makes a key for `workspace`; it is accepted as soon as this returns.
    /// Returns the record and the key as 32 hex characters (shown once).
    pub fn create_key(&self, name: &str, workspace: u32, creator: &str) -> Result<(KeyRecord, String), StoreError> {
        let (record, key) = self.store.create_key(name, workspace, creator)?;
        self.register(&record, &key)?;
        Ok((record, key))
    }

    /// Deletes key `id` of `workspace` (another workspace's key is "not
    /// found": its existence is not revealed). Refused on every connection,
    /// open or not, from the next frame after this returns.
    pub fn delete_key(&self, id: u64, workspace: u32) -> Result<KeyRecord, StoreError> {
        if self.store.get_key(id)?.workspace != workspace {
            return Err(StoreError::NotFound { what: format!("streaming key {id}") });
        }
        let record = self.store.delete_key(id)?;
        self.keys.remove_id(id);
        Ok(record)
    }

    /// Records the last-use times lookups noted since the previous flush.
    /// If writing fails they come back with the next use of each key.
    pub fn flush_key_use(&self) -> Result<(), StoreError> {
        self.store.touch_keys(&self.keys.drain_last_used())
    }

    fn register(&self, record: &KeyRecord, key: &str) -> Result<(), StoreError> {
        let raw = crate::auth::keys::parse_hex_key(key)
            .map_err(|e| StoreError::Invalid { reason: format!("a new key does not parse: {e}") })?;
        self.keys.insert(digest(&raw), KeyInfo { id: record.id, workspace: record.workspace });
        Ok(())
    }

    // ---- setup, sessions, memberships ----

    /// Creates the first admin and the first streaming key (accepted at once).
    pub fn setup(&self, email: &str, hash: &str, key_name: &str) -> Result<SetupDone, StoreError> {
        let done = self.store.setup(email, hash, key_name)?;
        self.register(&done.key, &done.streaming_key)?;
        Ok(done)
    }

    /// Stores a new session and makes it live, ending `replacing` (a
    /// refresh) in the same transaction: `NotFound` if that one had ended.
    pub fn start_session(&self, live: LiveSession, replacing: Option<&str>) -> Result<Arc<LiveSession>, StoreError> {
        match replacing {
            Some(old) => {
                self.store.replace_session(old, &live.session)?;
                self.sessions.remove(old);
            }
            None => self.store.insert_session(&live.session)?,
        }
        Ok(self.sessions.insert(live))
    }

    /// Ends every session of `user` (logout); returns how many ended.
    pub fn end_sessions(&self, user: u64) -> Result<usize, StoreError> {
        let ended = self.store.delete_user_sessions(user)?;
        self.sessions.remove_all(&ended);
        self.sessions.remove_user(user, None);
        Ok(ended.len())
    }

    /// Changes `user`'s role in `workspace`, for tokens already issued too.
    pub fn set_role(&self, workspace: u32, user: u64, role: Role) -> Result<Member, StoreError> {
        let member = self.store.set_role(workspace, user, role)?;
        self.sessions.set_role(user, workspace, role);
        Ok(member)
    }

    /// Removes `user` from `workspace` and ends the sessions that lose their
    /// membership; true if the user was deleted (no workspace left).
    pub fn remove_member(&self, workspace: u32, user: u64) -> Result<bool, StoreError> {
        let deleted = self.store.remove_member(workspace, user)?;
        self.sessions.remove_user(user, if deleted { None } else { Some(workspace) });
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::parse_hex_key;
    use crate::store::control::Session;
    use crate::store::fault::{self, Disk};

    fn session(id: &str, user: u64) -> Session {
        Session {
            id: id.into(),
            user,
            workspace: 1,
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            created_at_ms: 1,
            expires_at_ms: u64::MAX / 2,
        }
    }

    #[test]
    fn registries_follow_committed_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new();
        let d = disk.clone();
        let store = ControlStore::open_with(dir.path(), Box::new(move |p| fault::open_db(p, d.clone()))).unwrap();
        let control = Control::new(store).unwrap();
        let (rec, key) = control.create_key("k", 1, "test").unwrap();
        let raw = parse_hex_key(&key).unwrap();
        assert_eq!(control.keys().lookup(&raw), Some(KeyInfo { id: rec.id, workspace: 1 }));
        let done = control.setup("a@b.c", "hash", "first").unwrap();
        let admin = done.user.id;
        assert!(control.keys().lookup(&parse_hex_key(&done.streaming_key).unwrap()).is_some());
        control.start_session(LiveSession::new(session("s1", admin), "a@b.c".into(), Role::Admin), None).unwrap();
        assert_eq!(control.sessions().len(), 1);

        // Another workspace cannot delete it, and cannot learn it exists.
        assert!(matches!(control.delete_key(rec.id, 2), Err(StoreError::NotFound { .. })));
        assert!(control.keys().lookup(&raw).is_some());

        // A failed commit changes neither the database nor a registry.
        disk.set_broken(true);
        assert!(control.delete_key(rec.id, 1).unwrap_err().is_retryable());
        assert!(control.keys().lookup(&raw).is_some());
        assert!(control.end_sessions(admin).unwrap_err().is_retryable());
        assert_eq!(control.sessions().len(), 1);

        // Once the disk recovers, both change together.
        disk.set_broken(false);
        control.delete_key(rec.id, 1).unwrap();
        assert_eq!(control.keys().lookup(&raw), None);
        assert_eq!(control.end_sessions(admin).unwrap(), 1);
        assert!(control.sessions().is_empty());
        assert!(control.store().sessions().unwrap().is_empty());
    }

    #[test]
    fn loads_keys_and_live_sessions_of_members_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = ControlStore::open(dir.path()).unwrap();
        let done = store.setup("a@b.c", "hash", "first").unwrap();
        store.insert_session(&session("mine", done.user.id)).unwrap();
        store.insert_session(&session("nobody's", 999)).unwrap();
        let control = Control::new(store).unwrap();
        assert_eq!(control.keys().len(), 1);
        assert_eq!(control.sessions().len(), 1);
        assert_eq!(control.sessions().of_user(done.user.id, 2).len(), 1);
    }
}
