//! The admin CLI as a user runs it: `sluice setup`, `login`, `logout`,
//! `status`, `apikeys` through the stored login, and `users reset-password`
//! offline. No session bus is reachable here, so the token goes to the
//! credentials file (the keyring path is `keyring.rs`).

use crate::common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::BIN;
use common::admin::*;
use serde_json::Value;

/// Runs `sluice args…` with `stdin` and the credentials file `creds`, with
/// no D-Bus session to find a keyring on.
fn sluice(args: &[&str], stdin: &str, creds: &Path) -> Output {
    let no_bus = creds.with_file_name("no-runtime-dir");
    let mut child = Command::new(BIN)
        .args(args)
        .env("SLUICE_CREDENTIALS", creds)
        .env_remove("SLUICE_SERVER")
        .env_remove("RUST_LOG")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("XDG_RUNTIME_DIR", no_bus)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str], stdin: &str, creds: &Path) -> String {
    let out = sluice(args, stdin, creds);
    assert!(
        out.status.success(),
        "sluice {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn setup_login_keys_status_logout_and_offline_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let creds = tmp.path().join("conf/credentials.json");
    let (daemon, _api) = start_admin(&data, "");
    let url = format!("http://{}", daemon.admin.unwrap());
    let pw = "first password\n";

    let out = sluice(&["setup", "--server", &url, "--email", ADMIN_EMAIL, "--password-stdin"], pw, &creds);
    let (text, said) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}{said}");
    let key = text.lines().map(str::trim).find(|l| l.len() == 32 && l.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(key.is_some(), "first key printed: {text}");
    assert!(said.contains("Token saved in") && said.contains("no OS keyring could take it"), "{said}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&creds).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // As a new user would: no --server, no --data-dir; the stored login's API.
    let web: Value = serde_json::from_str(&ok(&["apikeys", "create", "--name", "web", "--json"], "", &creds)).unwrap();
    assert_eq!(web["name"], "web");
    let deleted: Value =
        serde_json::from_str(&ok(&["apikeys", "delete", &web["id"].to_string(), "--json"], "", &creds)).unwrap();
    assert_eq!(deleted, serde_json::json!({"id": web["id"], "deleted": true}));

    let created: Value =
        serde_json::from_str(&ok(&["apikeys", "create", "--server", &url, "--name", "cli key", "--json"], "", &creds))
            .unwrap();
    assert_eq!(created["name"], "cli key");
    let listed = ok(&["apikeys", "list", "--server", &url, "--json"], "", &creds);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains(created["key"].as_str().unwrap()));
    ok(&["apikeys", "delete", "--server", &url, &created["id"].to_string()], "", &creds);
    assert_eq!(ok(&["apikeys", "list", "--server", &url, "--json"], "", &creds).lines().count(), 1);
    assert!(ok(&["apikeys", "list", "--server", &url], "", &creds).contains("default"));

    let status: Value = serde_json::from_str(&ok(&["status", "--server", &url, "--json"], "", &creds)).unwrap();
    assert_eq!(status["health"]["status"], "ok");
    assert!(status["counters"]["sluice_events_received_total"].is_number(), "{status}");
    assert!(ok(&["status", "--server", &url], "", &creds).contains("listener admin"));

    let old_token = read_token(&creds);
    let out: Value = serde_json::from_str(&ok(&["logout", "--json"], "", &creds)).unwrap();
    assert_eq!(out, serde_json::json!({"server": url, "logged_out": true}));
    assert!(!creds.exists());
    let out = sluice(&["apikeys", "list", "--server", &url], "", &creds);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not logged in"));
    assert_eq!(_api.get("/api/v1/apikeys", Some(&old_token)).unwrap().status, 401);

    let logged_in: Value = serde_json::from_str(&ok(
        &["login", "--server", &url, "--email", ADMIN_EMAIL, "--password-stdin", "--json"],
        pw,
        &creds,
    ))
    .unwrap();
    assert_eq!(
        (&logged_in["server"], &logged_in["token_store"], &logged_in["workspace"]),
        (&serde_json::json!(url), &serde_json::json!("file"), &serde_json::json!(1))
    );
    let token = read_token(&creds);
    assert!(daemon.stop().success());

    // Locked out: reset offline, then only the new password works and old sessions are gone.
    ok(
        &["users", "reset-password", "--data-dir", data.to_str().unwrap(), "--password-stdin", ADMIN_EMAIL],
        "second password\n",
        &creds,
    );
    let out = sluice(
        &["users", "reset-password", "--data-dir", data.to_str().unwrap(), "--password-stdin", "no@x.y"],
        "second password\n",
        &creds,
    );
    assert!(!out.status.success());
    let (daemon, api) = start_admin(&data, "");
    assert_eq!(api.get("/api/v1/apikeys", Some(&token)).unwrap().status, 401);
    let bad = sluice(&["login", "--server", &api_url(&daemon), "--email", ADMIN_EMAIL, "--password-stdin"], pw, &creds);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("401"));
    login(&api, ADMIN_EMAIL, "second password");
    drop(daemon);
}

fn api_url(d: &common::Daemon) -> String {
    format!("http://{}", d.admin.unwrap())
}

fn read_token(creds: &Path) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(creds).unwrap()).unwrap();
    v["token"].as_str().unwrap().to_owned()
}
