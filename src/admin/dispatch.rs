//! One request: route, rate limit, token, role, body, handler; then the
//! rate-limit headers go on whatever the answer is.
//!
//! Order matters: limits and the token are checked before the body is
//! read, and the body (413 over the limit) and its JSON (400) are checked
//! before a handler changes anything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::request::Parts;
use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::error::ApiError;
use super::handlers;
use super::request::{Ctx, client_ip, read_body, user_agent};
use super::response::{self, Resp};
use super::routes::{self, Access, Found, Params, Route};
use super::state::AdminState;
use crate::auth::ratelimit::Verdict;
use crate::auth::session::Caller;
use crate::store::control::AuditEntry;
use crate::store::now_ms;

/// Answers one request; never fails (errors become JSON error answers).
pub async fn handle(state: Arc<AdminState>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let (parts, body) = req.into_parts();
    let ip = client_ip(&state.config, peer.ip(), &parts.headers);
    let (route, params) = match routes::find(parts.method.as_str(), parts.uri.path()) {
        Found::Route(r, p) => (r, p),
        Found::WrongMethod => {
            let e = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here");
            return response::error(&e);
        }
        Found::NotFound => return response::error(&ApiError::not_found("no such endpoint")),
    };
    let mut verdict = None;
    let result = serve(&state, route, params, parts, body, ip, &mut verdict).await;
    let mut resp = result.unwrap_or_else(|e| response::error(&e));
    if let Some(v) = verdict {
        v.write_headers(resp.headers_mut());
    }
    resp
}

async fn serve(
    state: &Arc<AdminState>,
    route: &'static Route,
    params: Params,
    parts: Parts,
    body: Incoming,
    ip: IpAddr,
    verdict: &mut Option<Verdict>,
) -> Result<Resp, ApiError> {
    let caller = admit(state, route, ip, &parts, verdict).await?;
    let body =
        read_body(body, &parts.headers, state.config.max_body_bytes.0, state.timeouts).await.inspect_err(|e| {
            if e.status == http::StatusCode::REQUEST_TIMEOUT {
                state.metrics.source("admin", crate::metrics::ListenerKind::Admin).cut(crate::metrics::Cut::SlowFrame);
            }
        })?;
    let cx = Ctx {
        state: state.clone(),
        ip,
        user_agent: user_agent(&parts.headers),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        params,
        body,
        caller,
    };
    handlers::call(route.endpoint, &cx).await
}

/// Rate limit, token and role checks for a route.
async fn admit(
    state: &Arc<AdminState>,
    route: &'static Route,
    ip: IpAddr,
    parts: &Parts,
    verdict: &mut Option<Verdict>,
) -> Result<Option<Caller>, ApiError> {
    match route.access {
        Access::Open => Ok(None),
        Access::Auth { token } => {
            // Per client: an IPv6 /64 is one, or rotating addresses would dodge the limit.
            let v = state.ip_limit.check(&crate::net::accept::client_block(ip));
            *verdict = Some(v);
            if !v.allowed {
                return Err(ApiError::rate_limited());
            }
            if token { authenticate(state, parts).map(Some) } else { Ok(None) }
        }
        Access::Api(needed) => {
            let caller = authenticate(state, parts)?;
            let v = state.token_limit.check(&caller.session_id().to_owned());
            *verdict = Some(v);
            if !v.allowed {
                return Err(ApiError::rate_limited());
            }
            if caller.role() < needed {
                deny(state, &caller, route, ip).await;
                return Err(ApiError::forbidden(format!("needs the {needed} role; you are {}", caller.role())));
            }
            Ok(Some(caller))
        }
    }
}

fn authenticate(state: &AdminState, parts: &Parts) -> Result<Caller, ApiError> {
    let header = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    state.auth.authenticate(header, now_ms()).map_err(|e| {
        state.metrics.admin_auth_failures.fetch_add(1, Ordering::Relaxed);
        ApiError::from(e)
    })
}

async fn deny(state: &AdminState, caller: &Caller, route: &Route, ip: IpAddr) {
    state
        .audit(AuditEntry {
            id: 0,
            at_ms: now_ms(),
            action: "access".into(),
            outcome: "denied".into(),
            actor: Some(caller.email().to_owned()),
            workspace: Some(caller.workspace()),
            target: Some(format!("{} {}", route.method, route.path)),
            ip: ip.to_string(),
            detail: Some(format!("role {}", caller.role())),
        })
        .await;
}
