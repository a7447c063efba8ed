//! `sluice backup` and `sluice restore` end to end: a backup taken under
//! acked load holds every event acknowledged before it began, exactly once,
//! plus the users and keys; only admins of workspace 1 may take one; a
//! truncated download fails and leaves no data dir; restore refuses a data
//! dir a daemon holds and a non-empty one without --force.

use crate::common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::admin::{ADMIN_EMAIL, ADMIN_PASSWORD, login, send, setup, start_admin};
use common::{BIN, create_key, export, hex_key};
use serde_json::json;
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

/// Events per acked batch of the load.
const BATCH: usize = 20;
/// Upper bounds on the load, whatever happens.
const MAX_BATCHES: u64 = 50_000;
const MAX_LOAD_TIME: Duration = Duration::from_secs(90);

fn marker_batch(key: &[u8; 16], batch: u64) -> (Vec<u8>, Vec<String>) {
    let markers: Vec<String> = (0..BATCH).map(|i| format!("{{\"marker\":\"b{batch}-{i}\"}}")).collect();
    let events: Vec<EventParams<'_>> = markers
        .iter()
        .map(|m| EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000,
            service: Some("svc"),
            device_id: Some(&[7u8; 16]),
            session_id: None,
            event_name: Some("Marked"),
            payload: Some(m.as_bytes()),
        })
        .collect();
    let names = (0..BATCH).map(|i| format!("b{batch}-{i}")).collect();
    (tell_batch(key, batch, &events), names)
}

/// Acked load from its own thread: every marker acknowledged `stored` is
/// pushed to `acked` after its ack arrived.
struct Load {
    acked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Load {
    fn start(addr: String, key: [u8; 16]) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (acked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut client = AckedClient::connect(&addr).await.expect("connect");
                let started = Instant::now();
                for batch in 1..=MAX_BATCHES {
                    if s.load(Ordering::SeqCst) || started.elapsed() > MAX_LOAD_TIME {
                        break;
                    }
                    let (bytes, names) = marker_batch(&key, batch);
                    let ack = client.send_and_wait(batch, &bytes).await.expect("ack");
                    assert_eq!(ack.status, Status::Stored, "batch {batch}");
                    a.lock().unwrap().extend(names);
                }
            });
        });
        Load { acked, stop, thread }
    }

    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits (bounded) until at least `n` events were acknowledged.
    fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked_count() < n {
            assert!(Instant::now() < deadline, "load too slow: {} acked", self.acked_count());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("load thread");
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Stores a login for `server` where the CLI finds it.
fn save_login(creds: &Path, server: &str, token: &str) {
    let c = json!({"server": server, "token": token, "email": ADMIN_EMAIL, "expires_at": u64::MAX / 2});
    std::fs::write(creds, c.to_string()).unwrap();
}

fn sluice(args: &[&str], creds: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SLUICE_CREDENTIALS", creds)
        .env_remove("SLUICE_SERVER")
        .env_remove("RUST_LOG")
        .output()
        .expect("run sluice")
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn has_databases(dir: &Path) -> bool {
    dir.join("events.redb").exists() || dir.join("control.redb").exists()
}

#[test]
fn a_backup_under_load_restores_every_event_acked_before_it_began() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest, restored, creds) =
        (tmp.path().join("data"), tmp.path().join("dest"), tmp.path().join("restored"), tmp.path().join("c.json"));
    let (_, raw_key) = create_key(&data, 1);
    let key = hex_key(&raw_key);
    let (daemon, api) = start_admin(&data, "");
    setup(&api);
    let token = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let server = api.base().to_owned();
    save_login(&creds, &server, &token);
    let keys_before = api.get("/api/v1/apikeys", Some(&token)).unwrap().ok().unwrap()["apikeys"].clone();

    let load = Load::start(daemon.tcp.to_string(), key);
    load.wait_for(2000);
    let before: Vec<String> = load.acked.lock().unwrap().clone();
    let out = sluice(&["backup", "--server", &server, dest.to_str().unwrap()], &creds);
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(summary.starts_with("Backed up ") && summary.contains(" events ("), "{summary}");
    // The load went on while the backup ran, and after.
    load.wait_for(before.len() + 10 * BATCH);
    let all_acked = load.finish();
    assert!(daemon.stop().success());
    assert!(!dest.join(sluice::cli::backup::PARTIAL_DIR).exists(), "staging dir left behind");

    let out = sluice(&["restore", dest.to_str().unwrap(), "--data-dir", restored.to_str().unwrap()], &creds);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    // In a pipe: no progress at all.
    assert!(out.stderr.is_empty(), "{}", text(&out));
    // On a terminal: bytes and rate.
    let on_tty = restored.with_extension("tty");
    let screen = on_terminal(&["restore", dest.to_str().unwrap(), "--data-dir", on_tty.to_str().unwrap()], &creds);
    assert!(screen.contains("restore ") && screen.contains("B/s") && screen.contains("Restored "), "{screen}");

    let mut seen: HashMap<String, usize> = HashMap::new();
    for ev in export(&restored) {
        if let Some(m) = ev["payload"]["marker"].as_str() {
            *seen.entry(m.to_owned()).or_default() += 1;
        }
    }
    for m in &before {
        assert_eq!(seen.get(m), Some(&1), "event {m}, acked before the backup began, not there exactly once");
    }
    assert!(seen.values().all(|n| *n == 1), "an event is in the backup twice");
    assert!(seen.len() <= all_acked.len(), "the backup holds events that were never acknowledged");
    let events_in_summary: usize = summary["Backed up ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(events_in_summary, seen.len(), "{summary}");

    // Users, sessions' secret and keys survived: the old password logs in,
    // and the old streaming key still writes.
    let (daemon, api) = start_admin(&restored, "");
    let token = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let keys = api.get("/api/v1/apikeys", Some(&token)).unwrap().ok().unwrap()["apikeys"].clone();
    let ids = |v: &serde_json::Value| -> Vec<(u64, String)> {
        let list = v.as_array().cloned().unwrap_or_default();
        list.iter().map(|k| (k["id"].as_u64().unwrap(), k["prefix"].as_str().unwrap().to_owned())).collect()
    };
    assert_eq!(ids(&keys), ids(&keys_before), "streaming keys differ after restore");
    assert!(ids(&keys).len() >= 2, "{keys}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ack = rt.block_on(async {
        let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
        c.send_and_wait(1, &marker_batch(&key, 1).0).await.unwrap()
    });
    assert_eq!(ack.status, Status::Stored);
    // A backup on a terminal shows its bytes and rate too.
    save_login(&creds, api.base(), &token);
    let again = tmp.path().join("again");
    let screen = on_terminal(&["backup", "--server", api.base(), again.to_str().unwrap()], &creds);
    assert!(screen.contains("backup ") && screen.contains("B/s") && screen.contains("Backed up "), "{screen}");
    assert!(daemon.stop().success());
}

/// Runs `sluice args…` in a pseudo-terminal (util-linux `script`); returns
/// what the terminal showed.
fn on_terminal(args: &[&str], creds: &Path) -> String {
    let line = std::iter::once(BIN).chain(args.iter().copied()).map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("SLUICE_CREDENTIALS", creds)
        .env_remove("SLUICE_SERVER")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    let screen = text(&out);
    assert!(out.status.success(), "{args:?} on a terminal: {screen}");
    screen
}

#[test]
fn only_an_admin_of_workspace_1_may_take_a_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, dest, creds) = (tmp.path().join("data"), tmp.path().join("dest"), tmp.path().join("c.json"));
    let (daemon, api) = start_admin(&data, "");
    setup(&api);
    let admin = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let body = json!({"email": "viewer@example.com", "password": "a long viewer password", "role": "viewer"});
    assert_eq!(send(&api, "POST", "/api/v1/users", Some(&admin), Some(body)).status, 201);
    let viewer = login(&api, "viewer@example.com", "a long viewer password");
    let r = api.get("/api/v1/backup", Some(&viewer)).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(api.get("/api/v1/backup", None).unwrap().status, 401);

    // An admin, but of another workspace.
    let ws = send(&api, "POST", "/api/v1/workspaces", Some(&admin), Some(json!({"name": "other"})));
    assert_eq!(ws.status, 201, "{}", ws.body);
    let id = ws.json()["id"].as_u64().unwrap();
    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "workspace": id});
    let other = send(&api, "POST", "/api/v1/auth/login", None, Some(body)).json()["token"].as_str().unwrap().to_owned();
    assert_eq!(api.get("/api/v1/backup", Some(&other)).unwrap().status, 403);

    // The CLI says so and leaves nothing behind.
    save_login(&creds, api.base(), &viewer);
    let out = sluice(&["backup", "--server", api.base(), dest.to_str().unwrap()], &creds);
    assert!(!out.status.success());
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert!(!has_databases(&dest));

    // An admin of workspace 1 gets it, audit-logged.
    assert_eq!(api.get("/api/v1/backup", Some(&admin)).unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::admin::audited(&common::admin::audit(&api, &admin), "backup", "ok") {
        assert!(Instant::now() < deadline, "backup not audit-logged");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(daemon.stop().success());
}

/// Serves one HTTP answer carrying `body` then closes (a server that ends
/// the stream early, cleanly).
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            if conn.read(&mut byte).unwrap() == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/vnd.sluice.backup\r\n\r\n");
        let _ = conn.write_all(&body);
    });
    (url, thread)
}

#[test]
fn a_truncated_download_fails_and_leaves_no_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, creds) = (tmp.path().join("data"), tmp.path().join("c.json"));
    create_key(&data, 1);
    let (daemon, api) = start_admin(&data, "");
    setup(&api);
    let token = login(&api, ADMIN_EMAIL, ADMIN_PASSWORD);
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(30))).build().into();
    let mut resp = agent
        .get(format!("{}/api/v1/backup", api.base()))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    let mut full = Vec::new();
    resp.body_mut().as_reader().read_to_end(&mut full).unwrap();
    assert!(daemon.stop().success());
    assert!(full.starts_with(b"SLUICEBK") && full.len() > 100, "{} bytes", full.len());

    for cut in [full.len() / 2, full.len() - 1] {
        let dest = tmp.path().join(format!("dest-{cut}"));
        let (url, server) = serve_once(full[..cut].to_vec());
        save_login(&creds, &url, &token);
        let out = sluice(&["backup", "--server", &url, dest.to_str().unwrap()], &creds);
        server.join().unwrap();
        assert!(!out.status.success(), "a truncated backup succeeded");
        assert!(text(&out).contains("truncated"), "{}", text(&out));
        assert!(!has_databases(&dest), "a failed backup left database files");
        assert!(!dest.join(sluice::cli::backup::PARTIAL_DIR).exists());
    }

    // The whole stream, served the same way, is a good backup.
    let dest = tmp.path().join("dest-full");
    let (url, server) = serve_once(full);
    save_login(&creds, &url, &token);
    let out = sluice(&["backup", "--server", &url, dest.to_str().unwrap()], &creds);
    server.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(dest.join("events.redb").is_file() && dest.join("control.redb").is_file());

    // And DEST now holds a data dir: a second backup into it is refused
    // before anything is fetched (the server above is gone).
    let out = sluice(&["backup", "--server", &url, dest.to_str().unwrap()], &creds);
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds a data dir"), "{}", text(&out));
}

#[test]
fn restore_refuses_a_running_daemons_dir_and_a_non_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, busy, other, creds) =
        (tmp.path().join("src"), tmp.path().join("busy"), tmp.path().join("other"), tmp.path().join("c.json"));
    // A stopped daemon's data dir is as good a source as a backup.
    create_key(&src, 1);
    export(&src);

    let daemon = common::Daemon::start(&busy, "");
    let out = sluice(&["restore", src.to_str().unwrap(), "--data-dir", busy.to_str().unwrap(), "--force"], &creds);
    assert!(!out.status.success());
    assert!(text(&out).contains("in use by a running sluice daemon"), "{}", text(&out));
    assert!(daemon.stop().success());

    // Restoring from the dir a daemon runs on is refused too.
    let daemon = common::Daemon::start(&src, "");
    let out = sluice(&["restore", src.to_str().unwrap(), "--data-dir", other.to_str().unwrap()], &creds);
    assert!(!out.status.success());
    assert!(text(&out).contains("in use"), "{}", text(&out));
    assert!(daemon.stop().success());

    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = sluice(&["restore", src.to_str().unwrap(), "--data-dir", other.to_str().unwrap()], &creds);
    assert!(!out.status.success());
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert!(!has_databases(&other));
    let out = sluice(&["restore", src.to_str().unwrap(), "--data-dir", other.to_str().unwrap(), "--force"], &creds);
    assert!(out.status.success(), "{}", text(&out));
    assert!(has_databases(&other));
    let keys = Command::new(BIN).args(["apikeys", "list", "--json", "--data-dir"]).arg(&other).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&keys.stdout).lines().count(), 1, "{}", text(&keys));

    let out = sluice(
        &["restore", tmp.path().join("nothing").to_str().unwrap(), "--data-dir", other.to_str().unwrap()],
        &creds,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("not a usable backup"), "{}", text(&out));
}
