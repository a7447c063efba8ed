//! The per-request token check of the admin API: `Authorization` header →
//! signature, issuer and times (HS256) → live-session lookup. Target: under
//! 20 µs per request.
//!
//! Run: `cargo bench --bench token_check`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::auth::jwt::{Claims, ISSUER, JwtKeys};
use sluice::auth::role::Role;
use sluice::auth::session::{Authenticator, LiveSession, SessionRegistry};
use sluice::store::control::Session;

/// An authenticator holding `n` live sessions; returns it and a header for session 0.
fn setup(n: u64, now_s: u64) -> (Authenticator, String) {
    let sessions = SessionRegistry::default();
    for i in 0..n {
        let s = Session {
            id: format!("{i:032x}"),
            user: i + 1,
            workspace: 1,
            ip: "127.0.0.1".into(),
            user_agent: "bench".into(),
            created_at_ms: 0,
            expires_at_ms: u64::MAX,
        };
        sessions.insert(LiveSession::new(s, format!("u{i}@example.com"), Role::Editor));
    }
    let auth = Authenticator { keys: JwtKeys::new(&[42u8; 32]), sessions: sessions.into() };
    let claims = Claims {
        sub: "1".into(),
        user: 1,
        email: "u0@example.com".into(),
        role: Role::Editor,
        workspace: 1,
        session: format!("{:032x}", 0),
        jti: "0123456789abcdef01234567".into(),
        iat: now_s,
        nbf: now_s,
        exp: u64::from(u32::MAX),
        iss: ISSUER.into(),
    };
    let header = format!("Bearer {}", auth.keys.issue(&claims).expect("sign"));
    (auth, header)
}

fn token_check(c: &mut Criterion) {
    let now_ms = sluice::store::now_ms();
    let (auth, header) = setup(10_000, now_ms / 1000);
    assert!(auth.authenticate(Some(&header), now_ms).is_ok());
    c.bench_function("token_check/valid (10k live sessions)", |b| {
        b.iter(|| auth.authenticate(black_box(Some(header.as_str())), now_ms).expect("valid"))
    });
    let forged = format!("{}x", &header[..header.len() - 1]);
    c.bench_function("token_check/bad signature", |b| {
        b.iter(|| auth.authenticate(black_box(Some(forged.as_str())), now_ms).is_err())
    });
}

criterion_group!(benches, token_check);
criterion_main!(benches);
