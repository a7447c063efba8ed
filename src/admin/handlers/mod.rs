//! Handlers, one file per resource. Each takes a [`Ctx`] whose caller,
//! limits and body were already checked by [`super::dispatch`].

mod apikeys;
mod audit;
mod backup;
mod login;
mod ops;
mod sessions;
mod setup;
mod users;
mod workspaces;

use super::error::ApiError;
use super::request::Ctx;
use super::response::Resp;
use super::routes::Endpoint;
use crate::store::control::AuditEntry;
use crate::store::now_ms;

/// Runs the handler of an endpoint.
pub async fn call(endpoint: Endpoint, cx: &Ctx) -> Result<Resp, ApiError> {
    match endpoint {
        Endpoint::Health => ops::health(cx).await,
        Endpoint::Metrics => ops::metrics(cx),
        Endpoint::SetupStatus => setup::status(cx).await,
        Endpoint::Setup => setup::setup(cx).await,
        Endpoint::Login => login::login(cx).await,
        Endpoint::Refresh => login::refresh(cx).await,
        Endpoint::Logout => login::logout(cx).await,
        Endpoint::Sessions => sessions::list(cx),
        Endpoint::ListKeys => apikeys::list(cx).await,
        Endpoint::CreateKey => apikeys::create(cx).await,
        Endpoint::DeleteKey => apikeys::delete(cx).await,
        Endpoint::ListUsers => users::list(cx).await,
        Endpoint::CreateUser => users::create(cx).await,
        Endpoint::UpdateUser => users::update(cx).await,
        Endpoint::DeleteUser => users::delete(cx).await,
        Endpoint::ListWorkspaces => workspaces::list(cx).await,
        Endpoint::CreateWorkspace => workspaces::create(cx).await,
        Endpoint::ListMembers => workspaces::members(cx).await,
        Endpoint::AddMember => workspaces::add_member(cx).await,
        Endpoint::RemoveMember => workspaces::remove_member(cx).await,
        Endpoint::Audit => audit::list(cx).await,
        Endpoint::QueryEvents => super::query::events(cx).await,
        Endpoint::TailEvents => super::tail::tail(cx).await,
        Endpoint::Backup => backup::backup(cx).await,
        Endpoint::ExportEvents => super::export::export(cx).await,
    }
}

/// An audit entry for this request: the caller (if any) as actor, in the
/// caller's workspace, from the client IP.
fn entry(cx: &Ctx, action: &str, outcome: &str, target: Option<String>) -> AuditEntry {
    AuditEntry {
        id: 0,
        at_ms: now_ms(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        actor: cx.caller.as_ref().map(|c| c.email().to_owned()),
        workspace: cx.caller.as_ref().map(|c| c.workspace()),
        target,
        ip: cx.ip.to_string(),
        detail: None,
    }
}
