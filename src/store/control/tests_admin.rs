//! Tests of users, memberships, sessions, setup, secrets and the audit log.

use std::sync::Arc;

use super::role::Role;
use super::*;

fn open(dir: &tempfile::TempDir) -> ControlStore {
    ControlStore::open(dir.path()).unwrap()
}

fn session(id: &str, user: u64, ws: u32, expires_at_ms: u64) -> Session {
    Session {
        id: id.into(),
        user,
        workspace: ws,
        ip: "ip".into(),
        user_agent: "ua".into(),
        created_at_ms: 1,
        expires_at_ms,
    }
}

const FAR: u64 = u64::MAX / 2;

#[test]
fn setup_makes_one_admin_with_a_key_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let token = store.setup_token().unwrap().expect("open while no user");
    assert_eq!(store.setup_token().unwrap().as_deref(), Some(token.as_str()), "stable until setup");
    let results: Vec<_> = (0..4)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || s.setup(&format!("u{i}@x.io"), "hash", "default"))
        })
        .map(|h| h.join().unwrap())
        .collect();
    let won: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(won.len(), 1);
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(StoreError::Conflict { .. }))));
    assert_eq!(store.user_count().unwrap(), 1);
    assert_eq!(store.role_of(won[0].user.id, 1).unwrap(), Some(Role::Admin));
    assert_eq!(store.list_keys(Some(1)).unwrap().len(), 1);
    assert_eq!(won[0].streaming_key.len(), 32);
    assert_eq!(store.setup_token().unwrap(), None);
}

#[test]
fn users_emails_and_last_admin_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let admin = store.create_user("Boss@X.io", "h1", 1, Role::Admin).unwrap();
    assert_eq!(admin.user.email, "boss@x.io");
    assert!(matches!(store.create_user("boss@x.io ", "h", 1, Role::Viewer), Err(StoreError::Conflict { .. })));
    assert!(matches!(store.create_user("not-an-email", "h", 1, Role::Viewer), Err(StoreError::Invalid { .. })));
    assert!(matches!(store.create_user("a@b.c", "h", 99, Role::Viewer), Err(StoreError::NotFound { .. })));
    let (found, hash) = store.find_login(" BOSS@x.io").unwrap().unwrap();
    assert_eq!((found.id, hash.as_str()), (admin.user.id, "h1"));
    assert!(store.find_login("nobody@x.io").unwrap().is_none());

    let v = store.create_user("v@x.io", "h2", 1, Role::Viewer).unwrap().user.id;
    assert!(matches!(store.set_role(1, admin.user.id, Role::Editor), Err(StoreError::Conflict { .. })));
    assert!(matches!(store.remove_member(1, admin.user.id), Err(StoreError::Conflict { .. })));
    store.set_role(1, v, Role::Admin).unwrap();
    store.set_role(1, admin.user.id, Role::Editor).unwrap();
    assert_eq!(store.members(1).unwrap().iter().map(|m| m.role).collect::<Vec<_>>(), [Role::Editor, Role::Admin]);

    store.create_workspace(2, "two").unwrap();
    store.add_member(2, v, Role::Viewer).unwrap();
    assert!(matches!(store.add_member(2, v, Role::Viewer), Err(StoreError::Conflict { .. })));
    assert_eq!(store.workspaces_of(v).unwrap(), [(1, Role::Admin), (2, Role::Viewer)]);
    assert!(!store.remove_member(2, v).unwrap(), "still in workspace 1");
    assert!(store.remove_member(1, admin.user.id).unwrap(), "no workspace left: deleted");
    assert!(store.find_login("boss@x.io").unwrap().is_none());
    assert!(matches!(store.get_user(admin.user.id), Err(StoreError::NotFound { .. })));
}

#[test]
fn sessions_are_replaced_atomically_and_end_with_their_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let u = store.create_user("a@x.io", "h", 1, Role::Admin).unwrap().user.id;
    store.insert_session(&session("s1", u, 1, FAR)).unwrap();
    store.insert_session(&session("old", u, 1, 5)).unwrap();
    store.insert_session(&session("s2", u, 1, FAR)).unwrap();
    let ids = |s: &ControlStore| s.sessions().unwrap().into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(&store), ["s1", "s2"], "expired ones are purged and never listed");
    store.replace_session("s1", &session("s3", u, 1, FAR)).unwrap();
    assert!(matches!(store.replace_session("s1", &session("s4", u, 1, FAR)), Err(StoreError::NotFound { .. })));
    assert_eq!(ids(&store), ["s2", "s3"]);
    let user = store.set_password("a@x.io", "new").unwrap();
    assert_eq!(user.id, u);
    assert!(ids(&store).is_empty(), "a password reset ends every session");
    store.insert_session(&session("s5", u, 1, FAR)).unwrap();
    assert_eq!(store.delete_user_sessions(u).unwrap(), ["s5"]);
}

#[test]
fn the_jwt_secret_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(&dir).jwt_secret().unwrap();
    assert_eq!(first.len(), 32);
    assert_eq!(open(&dir).jwt_secret().unwrap(), first);
}

#[test]
fn audit_is_newest_first_scoped_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let e = |action: &str, ws: Option<u32>| AuditEntry {
        id: 0,
        at_ms: 1,
        action: action.into(),
        outcome: "ok".into(),
        actor: None,
        workspace: ws,
        target: None,
        ip: "ip".into(),
        detail: None,
    };
    for (a, ws) in [("a", Some(1)), ("b", Some(2)), ("c", None), ("d", Some(1))] {
        store.append_audit(e(a, ws)).unwrap();
    }
    let q = |workspace, server_wide, before, limit| AuditQuery { workspace, server_wide, before, limit };
    let actions = |q: AuditQuery| store.audit(&q).unwrap().into_iter().map(|e| e.action).collect::<Vec<_>>();
    assert_eq!(actions(q(1, true, None, 10)), ["d", "c", "a"]);
    assert_eq!(actions(q(1, false, None, 10)), ["d", "a"]);
    assert_eq!(actions(q(2, false, None, 10)), ["b"]);
    assert_eq!(actions(q(1, true, Some(4), 1)), ["c"]);
    assert_eq!(store.audit(&q(1, true, None, 10)).unwrap()[0].id, 4);
}
