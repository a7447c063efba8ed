//! What a handler gets: the caller, the client IP, the path parameters and
//! the body (already read under the size limit), plus JSON parsing that
//! answers 400 with the reason.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::routes::Params;
use super::state::AdminState;
use crate::auth::session::Caller;
use crate::config::AdminConfig;
use crate::net::deadline::Timeouts;
use crate::net::http::{BodyError, BodyReader};

/// Longest `User-Agent` kept with a session.
const MAX_USER_AGENT: usize = 256;
/// One request, ready for a handler.
pub struct Ctx {
    pub state: Arc<AdminState>,
    pub ip: IpAddr,
    pub user_agent: String,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub params: Params,
    pub body: Bytes,
    pub caller: Option<Caller>,
}

impl Ctx {
    /// The authenticated caller (routes that need a token always have one).
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(|| ApiError::unauthorized("missing bearer token"))
    }

    /// The body as JSON of type `T`; 400 if it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
    }

    /// A numeric path parameter; 404 if it is not a number (no such resource).
    pub fn id<T: std::str::FromStr>(&self, name: &str) -> Result<T, ApiError> {
        self.params.get(name).and_then(|v| v.parse().ok()).ok_or_else(|| ApiError::not_found("no such resource"))
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

/// The client: the peer, or — when the peer is a trusted proxy — the
/// right-most `X-Forwarded-For` address that is not itself a trusted proxy.
pub fn client_ip(config: &AdminConfig, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    crate::auth::client_ip::client_ip(peer, headers, |ip| config.trusts(ip))
}

pub fn user_agent(headers: &HeaderMap) -> String {
    let ua = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    ua.chars().take(MAX_USER_AGENT).collect()
}

/// Reads the body, refusing more than `limit` bytes (413) before reading them
/// when `Content-Length` says so, else as soon as the limit is passed; 408
/// when it does not arrive by its deadline (`timeouts`: frame time plus what
/// its bytes earn at the minimum rate).
pub async fn read_body(body: Incoming, headers: &HeaderMap, limit: u64, timeouts: Timeouts) -> Result<Bytes, ApiError> {
    let declared = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut reader = BodyReader::new(body, timeouts);
    let mut buf = BytesMut::new();
    loop {
        match reader.next().await {
            Ok(Some(data)) if (buf.len() + data.len()) as u64 > limit => return Err(ApiError::too_large(limit)),
            Ok(Some(data)) => buf.extend_from_slice(&data),
            Ok(None) => return Ok(buf.freeze()),
            Err(BodyError::TooSlow) => {
                return Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive in time"));
            }
            Err(e) => return Err(ApiError::invalid(e.to_string())),
        }
    }
}
