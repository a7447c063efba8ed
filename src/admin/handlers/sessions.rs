//! `GET /api/v1/auth/sessions`: the caller's live sessions.

use http::StatusCode;
use serde_json::json;

use crate::admin::error::ApiError;
use crate::admin::request::Ctx;
use crate::admin::response::{self, Resp};
use crate::store::now_ms;

pub fn list(cx: &Ctx) -> Result<Resp, ApiError> {
    let caller = cx.caller()?;
    let sessions: Vec<_> = cx
        .state
        .auth
        .sessions
        .of_user(caller.user(), now_ms())
        .iter()
        .map(|s| {
            let v = &s.session;
            json!({
                "id": v.id,
                "workspace": v.workspace,
                "ip": v.ip,
                "user_agent": v.user_agent,
                "created_at_ms": v.created_at_ms,
                "last_seen_ms": s.last_seen_ms(),
                "expires_at_ms": v.expires_at_ms,
                "current": v.id == caller.session_id(),
            })
        })
        .collect();
    response::json(StatusCode::OK, &json!({ "sessions": sessions }))
}
