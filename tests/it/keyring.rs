//! The login token in a real OS keyring: `gnome-keyring-daemon` started
//! unlocked in a private D-Bus session (`dbus-run-session`), its keyrings in
//! a temporary home. `sluice setup`, `apikeys` and `logout` run in that
//! session, and `secret-tool` (libsecret), a second program, confirms the
//! token is stored there and removed by logout. The file fallback without a
//! session bus is shown in `admin_cli.rs`.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::BIN;
use common::admin::*;
use serde_json::Value;

/// The session: unlock the keyring, then what a user would type.
const SCRIPT: &str = r#"
set -eu
printf '%s' "keyring password" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
printf '%s\n' "$PASSWORD" | "$SLUICE" setup --server "$URL" --email "$EMAIL" --password-stdin --json
echo "== file"; cat "$SLUICE_CREDENTIALS"; echo
echo "== lookup"; secret-tool lookup service sluice username "$URL"; echo
echo "== create"; "$SLUICE" apikeys create --name web --json
echo "== logout"; "$SLUICE" logout
echo "== after"; if secret-tool lookup service sluice username "$URL"; then echo " still there"; else echo "none"; fi
"#;

#[test]
fn the_token_lives_in_the_secret_service_and_logout_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (daemon, api) = start_admin(&tmp.path().join("data"), "");
    let url = format!("http://{}", daemon.admin.unwrap());
    let (home, runtime) = (tmp.path().join("home"), tmp.path().join("run"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let creds = tmp.path().join("credentials.json");

    let mut cmd = Command::new("dbus-run-session");
    cmd.args(["--", "bash", "-c", SCRIPT])
        .env("SLUICE", BIN)
        .env("URL", &url)
        .env("EMAIL", ADMIN_EMAIL)
        .env("PASSWORD", ADMIN_PASSWORD)
        .env("SLUICE_CREDENTIALS", &creds)
        .env("HOME", &home)
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env_remove("SLUICE_KEYRING")
        .env_remove("RUST_LOG");
    let run = common::run_bounded(cmd, "dbus-run-session with gnome-keyring", Duration::from_secs(60));
    assert!(run.success, "stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr);
    let part = |name: &str| -> String {
        let start =
            run.stdout.find(&format!("== {name}\n")).unwrap_or_else(|| panic!("{}", run.stdout)) + name.len() + 4;
        run.stdout[start..].split("== ").next().unwrap().trim().to_owned()
    };

    let setup: Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(setup["token_store"], "keyring", "{}", run.stdout);
    assert!(run.stderr.contains("Token saved in the OS keyring (Secret Service)"), "{}", run.stderr);
    let file: Value = serde_json::from_str(&part("file")).unwrap();
    assert_eq!(file["token_store"], "keyring");
    assert!(file.get("token").is_none(), "no token in the file: {file}");
    // The token secret-tool reads from the keyring is the login's: it works, until logout.
    let token = part("lookup");
    assert!(token.starts_with("tell_"), "{}", run.stdout);
    let created: Value = serde_json::from_str(&part("create")).unwrap();
    assert_eq!(created["name"], "web");
    assert!(part("logout").starts_with("Logged out of"), "{}", run.stdout);
    assert_eq!(part("after"), "none", "logout removed the token from the keyring");
    assert!(!creds.exists());
    assert_eq!(api.get("/api/v1/apikeys", Some(&token)).unwrap().status, 401, "the session ended on the server");
}
