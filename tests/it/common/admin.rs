//! Helpers for admin API tests: a daemon with `[admin]`, setup and login.

use std::path::Path;

use serde_json::{Value, json};
pub use sluice::cli::http::{ApiClient, Reply};

use super::Daemon;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// `[admin]` on port 0 with `extra` settings, and roomy auth limits unless `extra` sets them.
pub fn admin_section(extra: &str) -> String {
    let mut s = String::from("[admin]\naddress = \"127.0.0.1:0\"\n");
    if !extra.contains("auth_requests_per_minute") {
        s.push_str("auth_requests_per_minute = 10000\n");
    }
    if !extra.contains("api_requests_per_minute") {
        s.push_str("api_requests_per_minute = 10000\n");
    }
    s.push_str(extra);
    s
}

/// A daemon with the admin API; returns it and a client for it.
pub fn start_admin(data: &Path, extra: &str) -> (Daemon, ApiClient) {
    let daemon = Daemon::start(data, &admin_section(extra));
    let addr = daemon.admin.unwrap_or_else(|| panic!("no admin listener; log:\n{}", daemon.log_text()));
    (daemon, ApiClient::new(&addr.to_string()))
}

/// Runs setup from loopback; returns the setup reply's JSON.
pub fn setup(api: &ApiClient) -> Value {
    let r = api.post("/api/v1/auth/setup", None, &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

/// Logs in; returns the token.
pub fn login(api: &ApiClient, email: &str, password: &str) -> String {
    let r = api.post("/api/v1/auth/login", None, &json!({"email": email, "password": password})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["token"].as_str().expect("token").to_owned()
}

/// Sends a JSON body with any method.
pub fn send(api: &ApiClient, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
    let bytes = body.map(|b| b.to_string().into_bytes());
    api.send(method, path, token, bytes.as_deref(), &[]).unwrap()
}

/// The audit log as `(action, outcome)` pairs, oldest first.
pub fn audit(api: &ApiClient, token: &str) -> Vec<Value> {
    let r = api.get("/api/v1/audit?limit=1000", Some(token)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let mut entries = r.json()["entries"].as_array().cloned().unwrap_or_default();
    entries.reverse();
    entries
}

/// Whether the audit log has an entry with this action and outcome.
pub fn audited(entries: &[Value], action: &str, outcome: &str) -> bool {
    entries.iter().any(|e| e["action"] == action && e["outcome"] == outcome)
}

/// The value of one line of `/metrics`: `name` as written there, labels included.
pub fn metric(api: &ApiClient, name: &str) -> u64 {
    let text = api.get("/metrics", None).unwrap().body;
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    line.and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{name}:\n{text}"))
}
