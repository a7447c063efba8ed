//! `/api/v1/users` (admin): the members of the caller's workspace.
//!
//! Create makes a new user in this workspace with a role; update changes
//! the role (live sessions get it at once); delete removes the user from
//! this workspace and ends their sessions there, deleting the user when no
//! workspace is left. The last admin of a workspace cannot be demoted or
//! removed (409).

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::entry;
use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::auth::password::check_policy;
use crate::auth::role::Role;

#[derive(Deserialize)]
struct CreateBody {
    email: String,
    password: String,
    role: String,
}

#[derive(Deserialize)]
struct UpdateBody {
    role: String,
}

pub(super) fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s).ok_or_else(|| ApiError::invalid("role must be viewer, editor or admin"))
}

pub async fn list(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = cx.caller()?.workspace();
    let users = cx.state.db(move |c| c.store().members(ws)).await?;
    response::json(StatusCode::OK, &json!({ "users": users }))
}

pub async fn create(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: CreateBody = cx.json()?;
    let role = parse_role(&body.role)?;
    check_policy(&body.password).map_err(|e| ApiError::invalid(e.to_string()))?;
    crate::store::control::normalize_email(&body.email)?;
    let ws = cx.caller()?.workspace();
    let hash = cx.state.hasher.hash(body.password).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let email = body.email;
    let member = cx.state.db(move |c| c.store().create_user(&email, &hash, ws, role)).await?;
    let mut a = entry(cx, "user.create", "ok", Some(format!("user:{}", member.user.id)));
    a.detail = Some(format!("{} as {role}", member.user.email));
    cx.state.audit(a).await;
    response::json(StatusCode::CREATED, &member)
}

pub async fn update(cx: &Ctx) -> Result<Resp, ApiError> {
    let id: u64 = cx.id("id")?;
    let body: UpdateBody = cx.json()?;
    let role = parse_role(&body.role)?;
    let ws = cx.caller()?.workspace();
    let member = cx.state.db(move |c| c.set_role(ws, id, role)).await?;
    let mut a = entry(cx, "user.role", "ok", Some(format!("user:{id}")));
    a.detail = Some(format!("role {role}"));
    cx.state.audit(a).await;
    response::json(StatusCode::OK, &member)
}

pub async fn delete(cx: &Ctx) -> Result<Resp, ApiError> {
    let id: u64 = cx.id("id")?;
    let ws = cx.caller()?.workspace();
    remove(cx, ws, id, "user.delete").await?;
    Ok(response::no_content())
}

/// Removes `user` from `ws`, ends the sessions it loses, audits as `action`.
pub(super) async fn remove(cx: &Ctx, ws: u32, user: u64, action: &str) -> Result<(), ApiError> {
    let deleted = cx.state.db(move |c| c.remove_member(ws, user)).await?;
    let mut a = entry(cx, action, "ok", Some(format!("user:{user}")));
    a.workspace = Some(ws);
    a.detail =
        Some(if deleted { "user deleted (no workspace left)".into() } else { format!("removed from workspace {ws}") });
    cx.state.audit(a).await;
    Ok(())
}
