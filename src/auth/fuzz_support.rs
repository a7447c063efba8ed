//! Body of the `token_parser` fuzz target, kept in the library so normal
//! builds compile it and `tests/it/fuzz_corpus.rs` replays its corpus on stable.
//!
//! Input: any bytes, used as an `Authorization` header value (lossy UTF-8)
//! and as a bare token. Promises checked:
//!
//! - nothing panics, whatever the bytes;
//! - a token is accepted only if it is signed with the secret, unexpired,
//!   issued by `sluice`, and names the live session of its user;
//! - accepted claims survive a re-issue: signing them again gives a token
//!   that checks to the same claims.

use std::sync::OnceLock;

use crate::auth::jwt::{ISSUER, JwtKeys};
use crate::auth::role::Role;
use crate::auth::session::{Authenticator, LiveSession, SessionRegistry};
use crate::store::control::Session;

/// The secret the fuzz target and its seed corpus are signed with.
pub const FUZZ_SECRET: &[u8] = b"sluice-fuzz-secret-0123456789abcdef";
/// The one live session (user 1, workspace 1).
pub const FUZZ_SESSION: &str = "fuzzsession";
/// Fixed "now" for session expiry (2030-01-01); token times use the real clock,
/// so the valid seeds run until 2096.
pub const FUZZ_NOW_MS: u64 = 1_893_456_000_000;

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let sessions = SessionRegistry::default();
        let session = Session {
            id: FUZZ_SESSION.into(),
            user: 1,
            workspace: 1,
            ip: "127.0.0.1".into(),
            user_agent: "fuzz".into(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
        };
        sessions.insert(LiveSession::new(session, "fuzz@example.com".into(), Role::Admin));
        Authenticator { keys: JwtKeys::new(FUZZ_SECRET), sessions: sessions.into() }
    })
}

pub fn token_input(data: &[u8]) {
    let auth = authenticator();
    let text = String::from_utf8_lossy(data);
    let _ = auth.authenticate(Some(&text), FUZZ_NOW_MS);
    let Ok(caller) = auth.check_token(&text, FUZZ_NOW_MS) else { return };
    let c = &caller.claims;
    assert_eq!(c.iss, ISSUER, "accepted a foreign issuer");
    assert!(c.exp.saturating_mul(1000) > FUZZ_NOW_MS, "accepted an expired token");
    assert_eq!((c.session.as_str(), c.user), (FUZZ_SESSION, 1), "accepted a token of no live session");
    let again = auth.keys.issue(c).expect("accepted claims can be signed");
    assert_eq!(auth.check_token(&again, FUZZ_NOW_MS).map(|x| x.claims).as_ref(), Ok(c), "re-issue changed claims");
}

#[cfg(test)]
mod tests {
    #[test]
    fn garbage_is_refused_quietly() {
        for input in [&b""[..], b"Bearer ", b"tell_", b"tell_a.b.c", b"\xff\xfe", b"Bearer tell_eyJ.eyJ.x"] {
            super::token_input(input);
        }
    }
}
