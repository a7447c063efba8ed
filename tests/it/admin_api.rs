//! The admin API end to end: the real binary, a real HTTP client (ureq),
//! real sockets. One test per row of the matrix.

use crate::common;

use std::time::{Duration, Instant};

use common::admin::*;
use common::{hex_key, marker_batch};
use serde_json::json;
use sluice::client::AckedClient;
use sluice::codec::ack::Status;

fn dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("data");
    (t, d)
}

#[test]
fn setup_race_creates_exactly_one_admin() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let r = api.get("/api/v1/auth/setup/status", None).unwrap();
    assert_eq!(r.json(), json!({"setup_required": true}));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let api = api.clone();
            std::thread::spawn(move || {
                let body = json!({"email": format!("racer{i}@example.com"), "password": "password-{i}-long"});
                api.post("/api/v1/auth/setup", None, &body).unwrap()
            })
        })
        .collect();
    let replies: Vec<Reply> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(winners.len(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| r.status == 201 || r.status == 409), "{replies:?}");
    let won = winners[0].json();
    for field in ["token", "user", "expires_at", "streaming_key", "workspace"] {
        assert!(!won[field].is_null(), "{field} missing: {won}");
    }
    assert_eq!(won["user"]["role"], "admin");
    let token = won["token"].as_str().unwrap();
    assert!(token.starts_with("tell_"));
    assert_eq!(api.get("/api/v1/auth/setup/status", None).unwrap().json(), json!({"setup_required": false}));
    let users = api.get("/api/v1/users", Some(token)).unwrap().json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1, "{users}");
    let keys = api.get("/api/v1/apikeys", Some(token)).unwrap().json();
    assert_eq!(keys["apikeys"].as_array().unwrap().len(), 1, "one first key, not one per racer");
    let again = api.post("/api/v1/auth/setup", None, &json!({"email": "late@example.com", "password": "password1"}));
    assert_eq!(again.unwrap().status, 409);
    let log = audit(&api, token);
    assert_eq!(log.iter().filter(|e| e["action"] == "setup" && e["outcome"] == "ok").count(), 1);
    drop(daemon);
}

#[test]
fn setup_from_a_non_loopback_client_needs_the_setup_token() {
    // The daemon believes X-Forwarded-For from 127.0.0.1, as behind a reverse
    // proxy: the client is then the forwarded (non-loopback) address.
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "trusted_proxies = [\"127.0.0.1\"]\n");
    let file = data.join("setup-token");
    // The admin API builds its state (and writes the file) on its own task.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(file.exists() && daemon.log_text().contains("setup_token")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(daemon.log_text().contains(&token), "the token is logged at first start");
    let remote = [("x-forwarded-for", "203.0.113.7")];
    let body = |t: Option<&str>| {
        let mut b = json!({"email": "boss@example.com", "password": "password123"});
        if let Some(t) = t {
            b["setup_token"] = json!(t);
        }
        b.to_string().into_bytes()
    };
    let r = api.send("POST", "/api/v1/auth/setup", None, Some(&body(None)), &remote).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    let r = api.send("POST", "/api/v1/auth/setup", None, Some(&body(Some("0".repeat(32).as_str()))), &remote).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(api.get("/api/v1/auth/setup/status", None).unwrap().json()["setup_required"], true);
    let r = api.send("POST", "/api/v1/auth/setup", None, Some(&body(Some(&token))), &remote).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(!file.exists(), "the setup token file goes once setup is done");
    let admin = r.json()["token"].as_str().unwrap().to_owned();
    let log = audit(&api, &admin);
    let denied: Vec<_> = log.iter().filter(|e| e["action"] == "setup" && e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["ip"], "203.0.113.7");
    drop(daemon);
}

#[test]
fn login_refresh_logout_and_sessions() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    setup(&api);
    let a = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let b = login(&api, "ADMIN@example.com ", ADMIN_PASSWORD);
    let wrong = api.post("/api/v1/auth/login", None, &json!({"email": ADMIN_EMAIL, "password": "nope-nope"})).unwrap();
    let unknown =
        api.post("/api/v1/auth/login", None, &json!({"email": "who@example.com", "password": "nope-nope"})).unwrap();
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body, "same answer for unknown email and wrong password");

    let sessions = api.get("/api/v1/auth/sessions", Some(&a)).unwrap().json();
    let list = sessions["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 3, "setup + two logins: {sessions}");
    assert!(list.iter().all(|s| s["ip"] == "127.0.0.1" && s["user_agent"].as_str().unwrap().starts_with("sluice-cli")));
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);

    let r = api.post("/api/v1/auth/refresh", None, &json!({"token": a})).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let a2 = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/api/v1/apikeys", Some(&a)).unwrap().status, 401, "the refreshed token stops at once");
    assert_eq!(api.get("/api/v1/apikeys", Some(&a2)).unwrap().status, 200);
    assert_eq!(api.post("/api/v1/auth/refresh", None, &json!({"token": a})).unwrap().status, 401);

    let r = api.post("/api/v1/auth/logout", Some(&a2), &json!({})).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    for t in [&a2, &b] {
        let r = api.get("/api/v1/apikeys", Some(t)).unwrap();
        assert_eq!(r.status, 401, "every token of the user stops: {}", r.body);
    }
    let c = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let log = audit(&api, &c);
    for (action, outcome) in [("login", "ok"), ("login", "failed"), ("refresh", "ok"), ("logout", "ok")] {
        assert!(audited(&log, action, outcome), "{action} {outcome} not audited: {log:?}");
    }
    let failed: Vec<_> = log.iter().filter(|e| e["action"] == "login" && e["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[1]["actor"], "who@example.com");
    drop(daemon);
}

#[test]
fn expired_forged_and_revoked_tokens_are_refused() {
    let (_t, data) = dir();
    let secret = "s".repeat(40);
    let (daemon, api) = start_admin(&data, &format!("jwt_secret = \"{secret}\"\ntoken_lifetime = \"90m\"\n"));
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let jwt = token.strip_prefix("tell_").unwrap();
    let mut claims: serde_json::Value = {
        use base64::Engine as _;
        let payload = jwt.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let sign = |c: &serde_json::Value, key: &str| {
        let k = jsonwebtoken::EncodingKey::from_secret(key.as_bytes());
        format!("tell_{}", jsonwebtoken::encode(&jsonwebtoken::Header::default(), c, &k).unwrap())
    };
    assert_eq!(api.get("/api/v1/apikeys", Some(&sign(&claims, &secret))).unwrap().status, 200, "same claims re-signed");
    let now = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - now, 90 * 60, "token_lifetime sets the expiry");
    assert_eq!(done["expires_at"], claims["exp"]);
    claims["exp"] = json!(now - 10);
    claims["iat"] = json!(now - 100);
    claims["nbf"] = json!(now - 100);
    let expired = api.get("/api/v1/apikeys", Some(&sign(&claims, &secret))).unwrap();
    assert_eq!(expired.status, 401);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    claims["exp"] = json!(now + 600);
    assert_eq!(api.get("/api/v1/apikeys", Some(&sign(&claims, &"x".repeat(40)))).unwrap().status, 401, "forged");
    claims["session"] = json!("0".repeat(32));
    assert_eq!(api.get("/api/v1/apikeys", Some(&sign(&claims, &secret))).unwrap().status, 401, "no such session");
    for bad in ["", "tell_", "tell_a.b.c", jwt, "Basic x"] {
        let r = api.get("/api/v1/apikeys", Some(bad)).unwrap();
        assert_eq!(r.status, 401, "{bad:?}");
        assert_eq!(r.json()["error"]["code"], "unauthorized");
    }
    assert_eq!(api.get("/api/v1/apikeys", None).unwrap().status, 401);
    drop(daemon);
}

#[test]
fn tokens_and_sessions_survive_a_restart() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let token = setup(&api)["token"].as_str().unwrap().to_owned();
    assert!(daemon.stop().success());
    let (daemon, api) = start_admin(&data, "");
    assert_eq!(api.get("/api/v1/apikeys", Some(&token)).unwrap().status, 200);
    assert!(!data.join("setup-token").exists());
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_refused_on_an_open_connection() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let done = setup(&api);
    let token = done["token"].as_str().unwrap().to_owned();
    let key = hex_key(done["streaming_key"].as_str().unwrap());
    let id = done["key"]["id"].as_u64().unwrap();
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    assert_eq!(c.send_and_wait(1, &marker_batch(&key, "before")).await.unwrap().status, Status::Stored);

    let started = Instant::now();
    let r = api.delete(&format!("/api/v1/apikeys/{id}"), Some(&token)).unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let ack = c.send_and_wait(2, &marker_batch(&key, "after")).await.unwrap();
    let took = started.elapsed();
    assert_eq!(ack.status, Status::BadKey);
    eprintln!("key deleted -> next frame on the open connection refused: {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(api.delete(&format!("/api/v1/apikeys/{id}"), Some(&token)).unwrap().status, 404);
    assert!(audited(&audit(&api, &token), "apikey.delete", "ok"));
    drop(daemon);
}

#[test]
fn roles_and_workspaces_are_enforced() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let admin = setup(&api)["token"].as_str().unwrap().to_owned();
    let mk = |email: &str, role: &str| {
        let r = send(
            &api,
            "POST",
            "/api/v1/users",
            Some(&admin),
            Some(json!({"email": email, "password": "password1", "role": role})),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_u64().unwrap()
    };
    let viewer_id = mk("viewer@example.com", "viewer");
    let editor_id = mk("editor@example.com", "editor");
    let r = send(
        &api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"email": "viewer@example.com", "password": "password1", "role": "viewer"})),
    );
    assert_eq!(r.status, 409);
    let r = send(
        &api,
        "POST",
        "/api/v1/users",
        Some(&admin),
        Some(json!({"email": "x@example.com", "password": "short", "role": "viewer"})),
    );
    assert_eq!(r.status, 400, "passwords under 8 characters are refused");
    let viewer = login(&api, "viewer@example.com", "password1");
    let editor = login(&api, "editor@example.com", "password1");

    assert_eq!(api.get("/api/v1/apikeys", Some(&viewer)).unwrap().status, 200);
    assert_eq!(api.post("/api/v1/apikeys", Some(&viewer), &json!({"name": "v"})).unwrap().status, 403);
    assert_eq!(api.post("/api/v1/apikeys", Some(&editor), &json!({"name": "e"})).unwrap().status, 201);
    assert_eq!(api.get("/api/v1/users", Some(&editor)).unwrap().status, 403);
    assert_eq!(api.get("/api/v1/audit", Some(&editor)).unwrap().status, 403);

    // A role change applies to tokens already issued.
    let r = send(&api, "PATCH", &format!("/api/v1/users/{editor_id}"), Some(&admin), Some(json!({"role": "viewer"})));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(api.post("/api/v1/apikeys", Some(&editor), &json!({"name": "e2"})).unwrap().status, 403);
    // The last admin cannot be demoted.
    let r = send(&api, "PATCH", "/api/v1/users/1", Some(&admin), Some(json!({"role": "viewer"})));
    assert_eq!(r.status, 409);

    // A second workspace: its keys are invisible from the first.
    let r = api.post("/api/v1/workspaces", Some(&admin), &json!({"name": "second"})).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let ws2 = r.json()["id"].as_u64().unwrap();
    let r = api.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "workspace": ws2}),
    );
    let admin2 = r.unwrap().json()["token"].as_str().unwrap().to_owned();
    let k2 = api.post("/api/v1/apikeys", Some(&admin2), &json!({"name": "ws2 key"})).unwrap().json();
    assert_eq!(k2["workspace"], ws2);
    let listed = api.get("/api/v1/apikeys", Some(&admin)).unwrap().json();
    assert!(listed["apikeys"].as_array().unwrap().iter().all(|k| k["workspace"] == 1), "{listed}");
    assert_eq!(api.delete(&format!("/api/v1/apikeys/{}", k2["id"]), Some(&admin)).unwrap().status, 404);
    assert_eq!(api.get(&format!("/api/v1/workspaces/{ws2}/members"), Some(&admin)).unwrap().status, 403);
    let r = api.post(
        &format!("/api/v1/workspaces/{ws2}/members"),
        Some(&admin2),
        &json!({"email": "viewer@example.com", "role": "editor"}),
    );
    assert_eq!(r.unwrap().status, 201);
    let r = api.post(
        "/api/v1/auth/login",
        None,
        &json!({"email": "viewer@example.com", "password": "password1", "workspace": ws2}),
    );
    let viewer2 = r.unwrap().json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        api.post("/api/v1/apikeys", Some(&viewer2), &json!({"name": "ok"})).unwrap().status,
        201,
        "editor there"
    );
    assert_eq!(api.get("/api/v1/workspaces", Some(&viewer)).unwrap().json()["workspaces"].as_array().unwrap().len(), 2);
    let r = api.delete(&format!("/api/v1/workspaces/{ws2}/members/{viewer_id}"), Some(&admin2)).unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(api.get("/api/v1/apikeys", Some(&viewer2)).unwrap().status, 401, "removed: the ws2 session ends");
    assert_eq!(api.get("/api/v1/apikeys", Some(&viewer)).unwrap().status, 200, "the ws1 session stays");

    // Deleting a user ends their sessions at once.
    assert_eq!(api.delete(&format!("/api/v1/users/{viewer_id}"), Some(&admin)).unwrap().status, 204);
    assert_eq!(api.get("/api/v1/apikeys", Some(&viewer)).unwrap().status, 401);
    let r = api.post("/api/v1/auth/login", None, &json!({"email": "viewer@example.com", "password": "password1"}));
    assert_eq!(r.unwrap().status, 401);

    let log = audit(&api, &admin);
    for (action, outcome) in [
        ("user.create", "ok"),
        ("user.role", "ok"),
        ("user.delete", "ok"),
        ("access", "denied"),
        ("apikey.create", "ok"),
        ("workspace.create", "ok"),
    ] {
        assert!(audited(&log, action, outcome), "{action} {outcome} not audited");
    }
    assert!(!log.iter().any(|e| e["workspace"] == ws2), "ws2 entries are not shown to ws1");
    assert!(audited(&audit(&api, &admin2), "member.remove", "ok"));
    drop(daemon);
}

#[test]
fn rate_limits_answer_429_with_headers() {
    let (_t, data) = dir();
    let extra = "auth_requests_per_minute = 3\napi_requests_per_minute = 4\ntrusted_proxies = [\"127.0.0.1\"]\n";
    let (daemon, api) = start_admin(&data, extra);
    let admin = setup(&api)["token"].as_str().unwrap().to_owned(); // 1 of 3 auth requests
    let bad = json!({"email": ADMIN_EMAIL, "password": "wrong-password"}).to_string().into_bytes();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = api.send("POST", "/api/v1/auth/login", None, Some(&bad), &[]).unwrap();
        assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
        assert!(r.header("x-ratelimit-reset").is_some());
        remaining.push((r.status, r.header("x-ratelimit-remaining").unwrap().to_owned()));
    }
    assert_eq!(remaining, [(401, "1".into()), (401, "0".into()), (429, "0".into())]);
    let r = api.send("POST", "/api/v1/auth/login", None, Some(&bad), &[]).unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limited");
    // Over the auth quota, the client is locked out for a minute.
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    // Another client (through the trusted proxy) has its own budget.
    let other =
        api.send("POST", "/api/v1/auth/login", None, Some(&bad), &[("x-forwarded-for", "198.51.100.4")]).unwrap();
    assert_eq!(other.status, 401);

    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = api.get("/api/v1/apikeys", Some(&admin)).unwrap();
        assert_eq!(r.header("x-ratelimit-limit"), Some("4"));
        statuses.push(r.status);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    assert!(api.get("/api/v1/apikeys", Some(&admin)).unwrap().header("retry-after").is_some());
    assert_eq!(api.get("/health", None).unwrap().status, 200, "health is not limited");
    drop(daemon);
}

/// Without trusted proxies (the shipped default), a new `X-Forwarded-For`
/// per login does not make a new client: the 10/min limit holds, and every
/// failed login is counted.
#[test]
fn a_spoofed_forwarded_for_does_not_escape_the_login_limit() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "auth_requests_per_minute = 3\n");
    let bad = json!({"email": ADMIN_EMAIL, "password": "wrong-password"}).to_string().into_bytes();
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            let spoof = format!("198.51.100.{i}");
            api.send("POST", "/api/v1/auth/login", None, Some(&bad), &[("x-forwarded-for", &spoof)]).unwrap().status
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
    assert_eq!(metric(&api, "sluice_admin_auth_failures_total"), 3, "each failed login is counted");
    drop(daemon);
}

#[test]
fn malformed_and_oversized_bodies_change_nothing() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "max_body_bytes = 1024\n");
    let admin = setup(&api)["token"].as_str().unwrap().to_owned();
    let before = (api.get("/api/v1/apikeys", Some(&admin)).unwrap().body, audit(&api, &admin).len());
    let big = json!({"name": "x".repeat(2000)}).to_string().into_bytes();
    let r = api.send("POST", "/api/v1/apikeys", Some(&admin), Some(&big), &[]).unwrap();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "payload_too_large");
    for body in [&b"{\"name\": "[..], b"[1,2", b"\xff\xfe", b"{\"nome\": \"x\"}"] {
        let r = api.send("POST", "/api/v1/apikeys", Some(&admin), Some(body), &[]).unwrap();
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], "invalid_input");
    }
    let r = api.send("POST", "/api/v1/auth/setup", None, Some(b"{oops"), &[]).unwrap();
    assert_eq!(r.status, 400);
    let after = (api.get("/api/v1/apikeys", Some(&admin)).unwrap().body, audit(&api, &admin).len());
    assert_eq!(before, after);
    assert_eq!(api.get("/api/v1/nothing", None).unwrap().status, 404);
    assert_eq!(api.send("PUT", "/api/v1/apikeys", Some(&admin), None, &[]).unwrap().status, 405);
    drop(daemon);
}

#[test]
fn health_and_metrics() {
    let (_t, data) = dir();
    let (daemon, api) = start_admin(&data, "");
    let h = api.get("/health", None).unwrap();
    assert_eq!(h.status, 200);
    let v = h.json();
    assert_eq!(v["status"], "ok");
    let names: Vec<_> =
        v["listeners"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_owned()).collect();
    assert!(names.contains(&"tcp".to_owned()) && names.contains(&"admin".to_owned()), "{v}");
    let m = api.get("/metrics", None).unwrap();
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    for name in [
        "sluice_events_received_total",
        "sluice_commit_duration_seconds_bucket",
        "sluice_inflight_bytes",
        "sluice_admin_auth_failures_total",
    ] {
        assert!(m.body.contains(name), "{name} missing:\n{}", m.body);
    }
    drop(daemon);
}
