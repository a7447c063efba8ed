//! One long GET against the admin API whose body is read as it arrives:
//! `sluice export` and `sluice tail -f`.
//!
//! [`super::http::ApiClient`] bounds every request by a global timeout,
//! which would cut a long export or a tail. This agent bounds only the
//! connect and the wait for the answer's headers; the body takes as long
//! as it takes (a tail runs until interrupted).

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, anyhow};

use super::http::{ApiClient, Reply};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server answers once the scan or the tail has started.
const HEADERS_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of an error answer read.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Sends `GET path` (with its query string) to `server` with `token`;
/// returns the body of a 2xx answer as a reader, or the API's error.
pub fn get(server: &str, path: &str, token: &str) -> anyhow::Result<Box<dyn Read + Send>> {
    let base = ApiClient::new(server).base().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(HEADERS_TIMEOUT))
        .tls_config(super::http::tls_config())
        .user_agent(concat!("sluice-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let resp = agent
        .get(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().into_reader();
    if (200..300).contains(&status) {
        return Ok(Box::new(body));
    }
    let mut text = String::new();
    let _ = body.take(MAX_ERROR_BODY).read_to_string(&mut text);
    match (Reply { status, headers: Vec::new(), body: text }).ok() {
        Ok(_) => Err(anyhow!("the server answered {status}")),
        Err(e) => Err(e),
    }
}
