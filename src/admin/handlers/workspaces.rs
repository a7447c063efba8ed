//! `/api/v1/workspaces`: the caller's workspaces, creating one (admin), and
//! the members of the workspace the caller's token is for. A token works in
//! one workspace (log in with `"workspace": N` to switch); naming another
//! workspace's members is 403.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::entry;
use super::users::{parse_role, remove};
use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::store::StoreError;

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

#[derive(Deserialize)]
struct AddBody {
    #[serde(default)]
    user_id: Option<u64>,
    #[serde(default)]
    email: Option<String>,
    role: String,
}

pub async fn list(cx: &Ctx) -> Result<Resp, ApiError> {
    let user = cx.caller()?.user();
    let list = cx
        .state
        .db(move |c| {
            let mine = c.store().workspaces_of(user)?;
            let all = c.store().list_workspaces()?;
            Ok(all
                .into_iter()
                .filter_map(|w| {
                    let role = mine.iter().find(|(id, _)| *id == w.id)?.1;
                    Some(json!({"id": w.id, "name": w.name, "created_at_ms": w.created_at_ms, "role": role}))
                })
                .collect::<Vec<_>>())
        })
        .await?;
    response::json(StatusCode::OK, &json!({ "workspaces": list }))
}

pub async fn create(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: CreateBody = cx.json()?;
    let user = cx.caller()?.user();
    let w = cx.state.db(move |c| c.store().create_workspace_for(&body.name, user)).await?;
    let mut a = entry(cx, "workspace.create", "ok", Some(format!("workspace:{}", w.id)));
    a.detail = Some(w.name.clone());
    cx.state.audit(a).await;
    let body = json!({"id": w.id, "name": w.name, "created_at_ms": w.created_at_ms, "role": "admin"});
    response::json(StatusCode::CREATED, &body)
}

/// The `{id}` of the path, which must be the caller's workspace.
fn own_workspace(cx: &Ctx) -> Result<u32, ApiError> {
    let id: u32 = cx.id("id")?;
    let ws = cx.caller()?.workspace();
    if id != ws {
        return Err(ApiError::forbidden(format!("this token is for workspace {ws}; log in to workspace {id}")));
    }
    Ok(id)
}

pub async fn members(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = own_workspace(cx)?;
    let members = cx.state.db(move |c| c.store().members(ws)).await?;
    response::json(StatusCode::OK, &json!({ "members": members }))
}

pub async fn add_member(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = own_workspace(cx)?;
    let body: AddBody = cx.json()?;
    let role = parse_role(&body.role)?;
    let member = cx
        .state
        .db(move |c| {
            let id = match (body.user_id, body.email) {
                (Some(id), _) => id,
                (None, Some(email)) => c
                    .store()
                    .find_login(&email)?
                    .map(|(u, _)| u.id)
                    .ok_or_else(|| StoreError::NotFound { what: format!("user {email}") })?,
                (None, None) => return Err(StoreError::Invalid { reason: "give user_id or email".into() }),
            };
            c.store().add_member(ws, id, role)
        })
        .await?;
    let mut a = entry(cx, "member.add", "ok", Some(format!("user:{}", member.user.id)));
    a.detail = Some(format!("as {role}"));
    cx.state.audit(a).await;
    response::json(StatusCode::CREATED, &member)
}

pub async fn remove_member(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = own_workspace(cx)?;
    let user: u64 = cx.id("user_id")?;
    remove(cx, ws, user, "member.remove").await?;
    Ok(response::no_content())
}
