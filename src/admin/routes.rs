//! The route table: every endpoint, its method, path and who may call it.
//!
//! [`ROUTES`] is the single source: the dispatcher matches against it and
//! `tests/it/api_docs.rs` checks that `docs/api.md` lists exactly these routes.
//! Path segments in braces (`{id}`) are parameters.

use crate::auth::role::Role;

/// Who may call a route, and which rate limit counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token, no limit (`/health`, `/metrics`).
    Open,
    /// Limited per client IP; `token` says whether a Bearer token is needed too.
    Auth { token: bool },
    /// Needs a token with at least this role; limited per token.
    Api(Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Metrics,
    SetupStatus,
    Setup,
    Login,
    Refresh,
    Logout,
    Sessions,
    ListKeys,
    CreateKey,
    DeleteKey,
    ListUsers,
    CreateUser,
    UpdateUser,
    DeleteUser,
    ListWorkspaces,
    CreateWorkspace,
    ListMembers,
    AddMember,
    RemoveMember,
    Audit,
    QueryEvents,
    TailEvents,
    Backup,
    ExportEvents,
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub endpoint: Endpoint,
    pub access: Access,
}

const fn r(method: &'static str, path: &'static str, endpoint: Endpoint, access: Access) -> Route {
    Route { method, path, endpoint, access }
}

const AUTH: Access = Access::Auth { token: false };
const AUTH_TOKEN: Access = Access::Auth { token: true };
const VIEWER: Access = Access::Api(Role::Viewer);
const EDITOR: Access = Access::Api(Role::Editor);
const ADMIN: Access = Access::Api(Role::Admin);

pub const ROUTES: &[Route] = &[
    r("GET", "/health", Endpoint::Health, Access::Open),
    r("GET", "/metrics", Endpoint::Metrics, Access::Open),
    r("GET", "/api/v1/auth/setup/status", Endpoint::SetupStatus, AUTH),
    r("POST", "/api/v1/auth/setup", Endpoint::Setup, AUTH),
    r("POST", "/api/v1/auth/login", Endpoint::Login, AUTH),
    r("POST", "/api/v1/auth/refresh", Endpoint::Refresh, AUTH),
    r("POST", "/api/v1/auth/logout", Endpoint::Logout, AUTH_TOKEN),
    r("GET", "/api/v1/auth/sessions", Endpoint::Sessions, AUTH_TOKEN),
    r("GET", "/api/v1/apikeys", Endpoint::ListKeys, VIEWER),
    r("POST", "/api/v1/apikeys", Endpoint::CreateKey, EDITOR),
    r("DELETE", "/api/v1/apikeys/{id}", Endpoint::DeleteKey, EDITOR),
    r("GET", "/api/v1/users", Endpoint::ListUsers, ADMIN),
    r("POST", "/api/v1/users", Endpoint::CreateUser, ADMIN),
    r("PATCH", "/api/v1/users/{id}", Endpoint::UpdateUser, ADMIN),
    r("DELETE", "/api/v1/users/{id}", Endpoint::DeleteUser, ADMIN),
    r("GET", "/api/v1/workspaces", Endpoint::ListWorkspaces, VIEWER),
    r("POST", "/api/v1/workspaces", Endpoint::CreateWorkspace, ADMIN),
    r("GET", "/api/v1/workspaces/{id}/members", Endpoint::ListMembers, VIEWER),
    r("POST", "/api/v1/workspaces/{id}/members", Endpoint::AddMember, ADMIN),
    r("DELETE", "/api/v1/workspaces/{id}/members/{user_id}", Endpoint::RemoveMember, ADMIN),
    r("GET", "/api/v1/audit", Endpoint::Audit, ADMIN),
    r("GET", "/api/v1/events", Endpoint::QueryEvents, VIEWER),
    r("GET", "/api/v1/events/tail", Endpoint::TailEvents, VIEWER),
    r("GET", "/api/v1/backup", Endpoint::Backup, ADMIN),
    r("GET", "/api/v1/events/export", Endpoint::ExportEvents, VIEWER),
];

/// Most path parameters in any route.
const MAX_PARAMS: usize = 2;

/// Parameters taken from the path, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// What a method and path match.
#[derive(Debug)]
pub enum Found {
    Route(&'static Route, Params),
    /// The path exists with other methods.
    WrongMethod,
    NotFound,
}

/// Finds the route for a request.
pub fn find(method: &str, path: &str) -> Found {
    let mut path_seen = false;
    for route in ROUTES {
        if let Some(params) = matches(route.path, path) {
            if route.method == method {
                return Found::Route(route, params);
            }
            path_seen = true;
        }
    }
    if path_seen { Found::WrongMethod } else { Found::NotFound }
}

fn matches(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::with_capacity(MAX_PARAMS);
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(Params(params)),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                params.push((&w[1..w.len() - 1], g.to_owned()));
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_paths_and_params() {
        match find("DELETE", "/api/v1/workspaces/3/members/9") {
            Found::Route(r, p) => {
                assert_eq!(r.endpoint, Endpoint::RemoveMember);
                assert_eq!((p.get("id"), p.get("user_id")), (Some("3"), Some("9")));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(find("PUT", "/api/v1/apikeys"), Found::WrongMethod));
        assert!(matches!(find("GET", "/api/v1/apikeys/"), Found::NotFound));
        assert!(matches!(find("GET", "/api/v1/nothing"), Found::NotFound));
        assert!(matches!(find("DELETE", "/api/v1/apikeys//"), Found::NotFound));
    }

    #[test]
    fn routes_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(a.method != b.method || a.path != b.path, "{} {} twice", a.method, a.path);
            }
        }
    }
}
