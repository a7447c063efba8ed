//! `GET /api/v1/audit` (admin): the caller's workspace's audit entries,
//! newest first (`?limit=` up to 1000, `?before=ID` to page). Admins of the
//! default workspace also see server-wide entries (failed logins, which
//! belong to no workspace).

use http::StatusCode;
use serde_json::json;

use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::store::control::{AuditQuery, DEFAULT_WORKSPACE};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub async fn list(cx: &Ctx) -> Result<Resp, ApiError> {
    let ws = cx.caller()?.workspace();
    let limit = match cx.query_param("limit") {
        Some(v) => v.parse::<usize>().map_err(|_| ApiError::invalid("limit must be a number"))?.clamp(1, MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let before = match cx.query_param("before") {
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::invalid("before must be a number"))?),
        None => None,
    };
    let q = AuditQuery { workspace: ws, server_wide: ws == DEFAULT_WORKSPACE, before, limit };
    let entries = cx.state.db(move |c| c.store().audit(&q)).await?;
    response::json(StatusCode::OK, &json!({ "entries": entries }))
}
