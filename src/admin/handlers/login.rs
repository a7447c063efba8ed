//! `POST /api/v1/auth/login`, `/refresh`, `/logout`, and issuing sessions.
//!
//! Login answers an unknown email and a wrong password alike (401, same
//! message) after the same work: one argon2id verification either way.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::entry;
use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::auth::jwt::{Claims, ISSUER};
use crate::auth::role::Role;
use crate::auth::session::LiveSession;
use crate::store::control::{MAX_EMAIL_LEN, Session, User};
use crate::store::now_ms;

const BAD_LOGIN: &str = "invalid email or password";

#[derive(Deserialize)]
struct LoginBody {
    email: String,
    password: String,
    /// The workspace to work in (default: the user's first).
    #[serde(default)]
    workspace: Option<u32>,
}

#[derive(Deserialize)]
struct RefreshBody {
    token: String,
}

/// A new session and its token.
pub(super) struct Issued {
    pub token: String,
    pub expires_at: u64,
    pub session: Arc<LiveSession>,
}

impl Issued {
    /// `{"token","user":{"id","email","role"},"expires_at","workspace"}`.
    pub fn body(&self, user: &User, role: Role) -> Value {
        json!({
            "token": self.token,
            "user": {"id": user.id, "email": user.email, "role": role},
            "expires_at": self.expires_at,
            "workspace": self.session.session.workspace,
        })
    }
}

/// Creates a session (replacing `replace`, atomically, if given) and signs its token.
pub(super) async fn issue(
    cx: &Ctx,
    user: &User,
    workspace: u32,
    role: Role,
    replace: Option<String>,
) -> Result<Issued, ApiError> {
    let now_s = now_ms() / 1000;
    let exp = now_s.saturating_add(cx.state.config.token_lifetime.as_secs());
    let session = Session {
        id: hex::encode(rand::random::<[u8; 16]>()),
        user: user.id,
        workspace,
        ip: cx.ip.to_string(),
        user_agent: cx.user_agent.clone(),
        created_at_ms: now_ms(),
        expires_at_ms: exp.saturating_mul(1000),
    };
    let claims = Claims {
        sub: user.id.to_string(),
        user: user.id,
        email: user.email.clone(),
        role,
        workspace,
        session: session.id.clone(),
        jti: hex::encode(rand::random::<[u8; 12]>()),
        iat: now_s,
        nbf: now_s,
        exp,
        iss: ISSUER.to_owned(),
    };
    let token = cx.state.auth.keys.issue(&claims)?;
    let live = LiveSession::new(session, user.email.clone(), role);
    let session =
        cx.state.db(move |c| c.start_session(live, replace.as_deref())).await.map_err(|e| match e.status {
            StatusCode::NOT_FOUND => ApiError::unauthorized("token session has ended"),
            _ => e,
        })?;
    Ok(Issued { token, expires_at: exp, session })
}

pub async fn login(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: LoginBody = cx.json()?;
    let email = body.email.clone();
    let found = cx.state.db(move |c| c.store().find_login(&email)).await?;
    let (user, hash) = found.map_or((None, None), |(u, h)| (Some(u), Some(h)));
    let ok = cx.state.hasher.verify(body.password, hash).await;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            // Counted with the token failures: a password guesser shows on the dashboard.
            cx.state.metrics.admin_auth_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(ip = %cx.ip, "failed login");
            let mut a = entry(cx, "login", "failed", None);
            // What was typed, bounded: the audit log must not grow with the body limit.
            a.actor = Some(body.email.trim().to_lowercase().chars().take(MAX_EMAIL_LEN).collect());
            cx.state.audit(a).await;
            return Err(ApiError::unauthorized(BAD_LOGIN));
        }
    };
    let id = user.id;
    let memberships = cx.state.db(move |c| c.store().workspaces_of(id)).await?;
    let chosen = match body.workspace {
        Some(w) => memberships.iter().find(|(ws, _)| *ws == w),
        None => memberships.first(),
    };
    let Some(&(workspace, role)) = chosen else {
        return Err(ApiError::forbidden("not a member of that workspace"));
    };
    let issued = issue(cx, &user, workspace, role, None).await?;
    let mut a = entry(cx, "login", "ok", Some(format!("session:{}", issued.session.session.id)));
    (a.actor, a.workspace) = (Some(user.email.clone()), Some(workspace));
    cx.state.audit(a).await;
    response::json(StatusCode::OK, &issued.body(&user, role))
}

pub async fn refresh(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: RefreshBody = cx.json()?;
    let caller = cx.state.auth.check_token(body.token.trim(), now_ms())?;
    let user = User { id: caller.user(), email: caller.email().to_owned(), created_at_ms: 0 };
    let old = caller.session_id().to_owned();
    let issued = issue(cx, &user, caller.workspace(), caller.role(), Some(old.clone())).await?;
    let mut a = entry(cx, "refresh", "ok", Some(format!("session:{old}")));
    (a.actor, a.workspace) = (Some(user.email.clone()), Some(caller.workspace()));
    cx.state.audit(a).await;
    response::json(StatusCode::OK, &issued.body(&user, caller.role()))
}

pub async fn logout(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    let user = caller.user();
    let ended = cx.state.db(move |c| c.end_sessions(user)).await?;
    let mut a = entry(cx, "logout", "ok", Some(format!("user:{user}")));
    a.detail = Some(format!("{ended} sessions ended"));
    cx.state.audit(a).await;
    Ok(response::no_content())
}
