//! A small blocking HTTP client for the admin API (ureq), used by the CLI
//! commands and by the end-to-end tests. Error statuses are answers, not
//! errors: callers look at [`Reply::status`] and the JSON error body.
//!
//! `https://` URLs are verified against Mozilla's roots, or only against the
//! CAs of the global `--ca-file` once [`trust_ca_file`] has read them.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, anyhow};

/// Default admin API address.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:3000";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The CAs of `--ca-file`, when given.
static TRUSTED_CAS: OnceLock<Vec<ureq::tls::Certificate<'static>>> = OnceLock::new();

/// From now on this process trusts only the CAs in `ca_file` for the admin
/// API (the global `--ca-file`).
pub fn trust_ca_file(ca_file: &Path) -> anyhow::Result<()> {
    let certs = crate::net::tls::ca_certificates(ca_file).context("--ca-file")?;
    let certs = certs.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()).collect();
    TRUSTED_CAS.set(certs).map_err(|_| anyhow!("--ca-file is already set"))
}

/// The TLS every admin API agent uses.
pub(super) fn tls_config() -> ureq::tls::TlsConfig {
    let builder = ureq::tls::TlsConfig::builder();
    match TRUSTED_CAS.get() {
        Some(certs) => builder.root_certs(ureq::tls::RootCerts::new_with_certs(certs)).build(),
        None => builder.build(),
    }
}

/// An answer from the API.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON if the status is 2xx, else an error with the API's message.
    pub fn ok(self) -> anyhow::Result<serde_json::Value> {
        if (200..300).contains(&self.status) {
            return Ok(self.json());
        }
        let v = self.json();
        let message = v["error"]["message"].as_str().unwrap_or(self.body.as_str()).to_owned();
        Err(anyhow!("the server answered {}: {message}", self.status))
    }
}

/// A client for one server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    agent: ureq::Agent,
}

impl ApiClient {
    /// `server` is a URL (`http://host:port`) or a bare `host:port`.
    pub fn new(server: &str) -> ApiClient {
        let trimmed = server.trim_end_matches('/');
        let base = if trimmed.contains("://") { trimmed.to_owned() } else { format!("http://{trimmed}") };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .tls_config(tls_config())
            .user_agent(concat!("sluice-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        ApiClient { base, agent: config.into() }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; `headers` are added as given.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let mut req = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map(<[u8]>::to_vec).unwrap_or_default()).context("bad request")?;
        let mut resp = self.agent.run(req).with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        Ok(Reply { status, headers, body })
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
        self.send("GET", path, token, None, &[])
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &serde_json::Value) -> anyhow::Result<Reply> {
        self.send("POST", path, token, Some(body.to_string().as_bytes()), &[])
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> anyhow::Result<Reply> {
        self.send("DELETE", path, token, None, &[])
    }
}
