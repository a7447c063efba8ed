//! `GET /api/v1/auth/setup/status` and `POST /api/v1/auth/setup`.
//!
//! Setup is open while no user exists. It is accepted from a loopback
//! client, or from anywhere with the one-time setup token (body field
//! `setup_token` or header `X-Setup-Token`). Behind a trusted proxy the
//! client is the `X-Forwarded-For` address, so a proxied request from the
//! network needs the token. Concurrent setups create exactly one admin
//! (one redb write transaction decides); the others get 409.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::entry;
use super::login::issue;
use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::auth::password::check_policy;
use crate::auth::role::Role;

/// Name of the streaming key setup creates.
const FIRST_KEY_NAME: &str = "default";

#[derive(Deserialize)]
struct SetupBody {
    email: String,
    password: String,
    #[serde(default)]
    setup_token: Option<String>,
}

pub async fn status(cx: &Ctx) -> Result<Resp, ApiError> {
    let users = cx.state.db(|c| c.store().user_count()).await?;
    response::json(StatusCode::OK, &json!({"setup_required": users == 0}))
}

pub async fn setup(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: SetupBody = cx.json()?;
    check_policy(&body.password).map_err(|e| ApiError::invalid(e.to_string()))?;
    let Some(expected) = cx.state.setup_token() else {
        return Err(ApiError::conflict("setup is already done"));
    };
    let offered = body.setup_token.as_deref().or_else(|| cx.headers.get("x-setup-token")?.to_str().ok());
    if !cx.ip.is_loopback() && !offered.is_some_and(|t| constant_time_eq(t.trim(), &expected)) {
        let mut e = entry(cx, "setup", "denied", None);
        e.actor = Some(body.email.clone());
        e.detail = Some("not loopback and no valid setup token".into());
        cx.state.audit(e).await;
        return Err(ApiError::forbidden("setup is accepted from this host, or with the setup token from the data dir"));
    }
    let hash = cx.state.hasher.hash(body.password).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let email = body.email.clone();
    let done = match cx.state.db(move |c| c.setup(&email, &hash, FIRST_KEY_NAME)).await {
        Ok(done) => done,
        Err(e) => {
            let mut a = entry(cx, "setup", "failed", None);
            (a.actor, a.detail) = (Some(body.email.clone()), Some(e.message.clone()));
            cx.state.audit(a).await;
            return Err(e);
        }
    };
    cx.state.close_setup();
    let issued = issue(cx, &done.user, done.workspace, Role::Admin, None).await?;
    let mut a = entry(cx, "setup", "ok", Some(format!("user:{}", done.user.id)));
    (a.actor, a.workspace) = (Some(done.user.email.clone()), Some(done.workspace));
    cx.state.audit(a).await;
    let mut body = issued.body(&done.user, Role::Admin);
    body["streaming_key"] = json!(done.streaming_key);
    body["key"] = json!({"id": done.key.id, "name": done.key.name, "prefix": done.key.prefix});
    response::json(StatusCode::CREATED, &body)
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
