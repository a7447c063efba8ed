//! Live sessions in memory, and the token check every API request makes.
//!
//! The [`SessionRegistry`] mirrors the `sessions` table of control.redb
//! ([`crate::control::Control`] writes there first, then here, before the
//! API answers), so checking
//! a token is a signature check plus one hash-map hit: no disk, no blocking.
//! The registry also holds each session's *current* role, updated when an
//! admin changes it, so a demotion applies to tokens already issued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::auth::jwt::{Claims, JwtKeys, TokenError, bearer};
use crate::auth::role::Role;
use crate::store::control::Session;

/// A live session as the API sees it.
#[derive(Debug)]
pub struct LiveSession {
    pub session: Session,
    pub email: String,
    role: AtomicU64,
    last_seen_ms: AtomicU64,
}

impl LiveSession {
    pub fn new(session: Session, email: String, role: Role) -> LiveSession {
        let seen = session.created_at_ms;
        LiveSession {
            session,
            email,
            role: AtomicU64::new(u64::from(role.to_byte())),
            last_seen_ms: AtomicU64::new(seen),
        }
    }

    pub fn role(&self) -> Role {
        Role::from_byte(self.role.load(Ordering::Relaxed) as u8).unwrap_or(Role::Viewer)
    }

    /// Last request made with this session, since the daemon started (the
    /// creation time before that).
    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }
}

/// Who made a request: the checked token's live session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub session: Arc<LiveSession>,
    pub claims: Claims,
}

impl Caller {
    pub fn user(&self) -> u64 {
        self.session.session.user
    }
    pub fn workspace(&self) -> u32 {
        self.session.session.workspace
    }
    pub fn role(&self) -> Role {
        self.session.role()
    }
    pub fn email(&self) -> &str {
        &self.session.email
    }
    pub fn session_id(&self) -> &str {
        &self.session.session.id
    }
}

/// Session id → live session.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    map: RwLock<HashMap<String, Arc<LiveSession>>>,
}

impl SessionRegistry {
    pub fn insert(&self, live: LiveSession) -> Arc<LiveSession> {
        let live = Arc::new(live);
        self.write().insert(live.session.id.clone(), live.clone());
        live
    }

    pub fn remove(&self, id: &str) -> bool {
        self.write().remove(id).is_some()
    }

    /// Drops these sessions (ids a store operation reported as deleted).
    pub fn remove_all(&self, ids: &[String]) {
        let mut map = self.write();
        for id in ids {
            map.remove(id);
        }
    }

    /// Drops the sessions of `user` (in `workspace` only, if given).
    pub fn remove_user(&self, user: u64, workspace: Option<u32>) {
        self.write().retain(|_, s| s.session.user != user || workspace.is_some_and(|w| s.session.workspace != w));
    }

    /// Applies a role change to the user's live sessions in `workspace`.
    pub fn set_role(&self, user: u64, workspace: u32, role: Role) {
        for s in self.read().values() {
            if s.session.user == user && s.session.workspace == workspace {
                s.role.store(u64::from(role.to_byte()), Ordering::Relaxed);
            }
        }
    }

    /// The live sessions of a user, oldest first.
    pub fn of_user(&self, user: u64, now_ms: u64) -> Vec<Arc<LiveSession>> {
        let mut out: Vec<_> = self
            .read()
            .values()
            .filter(|s| s.session.user == user && s.session.expires_at_ms > now_ms)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.session.created_at_ms, &a.session.id).cmp(&(b.session.created_at_ms, &b.session.id)));
        out
    }

    /// The session a token names, if live, unexpired and the same user's.
    pub fn live(&self, claims: &Claims, now_ms: u64) -> Option<Arc<LiveSession>> {
        let map = self.read();
        let s = map.get(claims.session.as_str())?;
        if s.session.user != claims.user || s.session.expires_at_ms <= now_ms {
            return None;
        }
        s.last_seen_ms.fetch_max(now_ms, Ordering::Relaxed);
        Some(s.clone())
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LiveSession>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<LiveSession>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The token check: signature and times, then the live session.
#[derive(Debug)]
pub struct Authenticator {
    pub keys: JwtKeys,
    pub sessions: Arc<SessionRegistry>,
}

impl Authenticator {
    /// Checks an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>, now_ms: u64) -> Result<Caller, TokenError> {
        let token = header.and_then(bearer).filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        self.check_token(token, now_ms)
    }

    /// Checks a bare `tell_<jwt>` token.
    pub fn check_token(&self, token: &str, now_ms: u64) -> Result<Caller, TokenError> {
        let claims = self.keys.verify(token)?;
        let session = self.sessions.live(&claims, now_ms).ok_or(TokenError::SessionEnded)?;
        Ok(Caller { session, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: u64, ws: u32, expires: u64) -> Session {
        Session {
            id: id.into(),
            user,
            workspace: ws,
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            created_at_ms: 1,
            expires_at_ms: expires,
        }
    }

    fn claims(user: u64, session: &str) -> Claims {
        Claims {
            sub: user.to_string(),
            user,
            email: "a@b.c".into(),
            role: Role::Admin,
            workspace: 1,
            session: session.into(),
            jti: "j".into(),
            iat: 0,
            nbf: 0,
            exp: 0,
            iss: "sluice".into(),
        }
    }

    #[test]
    fn only_live_sessions_of_the_same_user_pass() {
        let reg = SessionRegistry::default();
        reg.insert(LiveSession::new(session("a", 1, 1, 1000), "a@b.c".into(), Role::Editor));
        reg.insert(LiveSession::new(session("b", 1, 2, 1000), "a@b.c".into(), Role::Admin));
        assert!(reg.live(&claims(1, "a"), 500).is_some());
        assert!(reg.live(&claims(2, "a"), 500).is_none(), "another user's session");
        assert!(reg.live(&claims(1, "a"), 1000).is_none(), "expired");
        assert!(reg.live(&claims(1, "zz"), 500).is_none());
        assert_eq!(reg.live(&claims(1, "a"), 700).unwrap().last_seen_ms(), 700);
        reg.set_role(1, 1, Role::Viewer);
        assert_eq!(reg.live(&claims(1, "a"), 800).unwrap().role(), Role::Viewer);
        assert_eq!(reg.live(&claims(1, "b"), 800).unwrap().role(), Role::Admin);
        reg.remove_user(1, Some(2));
        assert!(reg.live(&claims(1, "b"), 800).is_none());
        assert_eq!(reg.of_user(1, 800).len(), 1);
        reg.remove_user(1, None);
        assert!(reg.is_empty());
    }
}
