//! `GET/POST /api/v1/apikeys`, `DELETE /api/v1/apikeys/{id}`: streaming keys
//! of the caller's workspace. Listing never shows a key (only its 8-char
//! prefix); creating shows it once. Deleting removes it from the live
//! registry before answering (see `crate::control`), so an open ingest
//! connection's next frame with that key is refused.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::entry;
use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};

#[derive(Deserialize)]
struct CreateBody {
    name: String,
}

pub async fn list(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = cx.caller()?.workspace();
    let keys = cx.state.db(move |c| c.store().list_keys(Some(ws))).await?;
    response::json(StatusCode::OK, &json!({ "apikeys": keys }))
}

pub async fn create(cx: &Ctx) -> Result<Resp, ApiError> {
    let body: CreateBody = cx.json()?;
    let caller = cx.caller()?;
    let (ws, creator) = (caller.workspace(), caller.email().to_owned());
    let (record, key) = cx.state.db(move |c| c.create_key(&body.name, ws, &creator)).await?;
    cx.state.audit(entry(cx, "apikey.create", "ok", Some(format!("apikey:{}", record.id)))).await;
    let mut body = serde_json::to_value(&record).map_err(|e| ApiError::internal(e.to_string()))?;
    body["key"] = json!(key);
    response::json(StatusCode::CREATED, &body)
}

pub async fn delete(cx: &Ctx) -> Result<Resp, ApiError> {
    let id: u64 = cx.id("id")?;
    let ws = cx.caller()?.workspace();
    cx.state.db(move |c| c.delete_key(id, ws)).await?;
    cx.state.audit(entry(cx, "apikey.delete", "ok", Some(format!("apikey:{id}")))).await;
    Ok(response::no_content())
}
