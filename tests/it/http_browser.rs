//! The published `@tell-rs/browser` SDK on a page served by this test,
//! driven in Debian's Chromium through `playwright-core`, against a real
//! sluice on another origin (so CORS is exercised too). Every event and log
//! the page sends, including one that leaves by `navigator.sendBeacon` when
//! the page is left, is checked in the store with `sluice export`.
//!
//! Needs, installed by the test command (`scripts/test.sh`):
//!   apt-get install -y chromium nodejs npm
//!   npm ci --prefix tests/browser
//! The test fails (never skips) when they are missing.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Daemon, create_key, export, wait_timeout};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with the install commands when a prerequisite is missing.
fn check_prerequisites() {
    let modules = browser_dir().join("node_modules");
    let missing: Vec<String> = [
        (Path::new(CHROMIUM).exists(), format!("{CHROMIUM} (apt-get install -y chromium)")),
        (Command::new("node").arg("--version").output().is_ok(), "node (apt-get install -y nodejs npm)".into()),
        (modules.join("playwright-core").exists(), "playwright-core (npm ci --prefix tests/browser)".into()),
        (
            modules.join("@tell-rs/browser/dist/tell.global.js").exists(),
            "@tell-rs/browser (npm ci --prefix tests/browser)".into(),
        ),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, what)| what)
    .collect();
    assert!(missing.is_empty(), "the browser test needs: {}; bash scripts/test.sh installs them", missing.join(", "));
}

/// Serves `page.html` and the SDK bundle until dropped.
struct PageServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => serve_file(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PageServer { addr, stop }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_file(mut stream: TcpStream) {
    stream.set_nonblocking(false).ok();
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
    let (file, kind) = match path.as_str() {
        "/page.html" => (browser_dir().join("page.html"), "text/html"),
        "/tell.global.js" => {
            (browser_dir().join("node_modules/@tell-rs/browser/dist/tell.global.js"), "text/javascript")
        }
        _ => (PathBuf::new(), ""),
    };
    let answer = match std::fs::read(&file) {
        Ok(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            [head.into_bytes(), body].concat()
        }
        Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = stream.write_all(&answer);
}

/// Runs the page in Chromium; returns the page's report.
fn drive(page_url: &str, profile: &Path) -> Value {
    let mut child = Command::new("node")
        .arg(browser_dir().join("drive.mjs"))
        .arg(page_url)
        .arg(profile)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let status = wait_timeout(&mut child, Duration::from_secs(120));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.is_some_and(|s| s.success()),
        "drive.mjs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("one JSON line")
}

fn one<'a>(stored: &'a [Value], what: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    let found: Vec<&Value> = stored.iter().filter(|e| pred(e)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}\nall: {stored:#?}");
    found[0]
}

#[test]
fn the_tell_browser_sdk_in_chromium_stores_every_event_and_log() {
    check_prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 6);
    let pages = PageServer::start();
    let config = format!("[sources.http]\naddress = \"127.0.0.1:0\"\ncors_origins = [\"{}\"]\n", pages.origin());
    let daemon = Daemon::start(&data, &config);
    let endpoint = format!("http://{}", daemon.http.unwrap());
    let page = format!("{}/page.html?endpoint={endpoint}&key={key}", pages.origin());
    let report = drive(&page, &dir.path().join("profile"));
    assert_eq!(report["errors"], json!([]), "the SDK saw no error (so it could read every answer): {report}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.stop().success());
    check_stored(&export(&data));
}

fn check_stored(stored: &[Value]) {
    for e in stored {
        assert_eq!((e["workspace"].clone(), e["listener"].clone()), (json!(6), json!("http")), "{e}");
        assert_eq!(e["service"], "browser-test", "{e}");
    }
    let events: Vec<&Value> = stored.iter().filter(|e| e["kind"] == "event").collect();
    let device = events[0]["device_id"].as_str().expect("a device id").to_owned();
    assert_eq!(device.len(), 36, "the SDK's 32-hex device id is stored as a UUID");
    for e in &events {
        assert_eq!(e["device_id"], device.as_str(), "{e}");
        assert_eq!(e["session_id"].as_str().map(str::len), Some(36), "{e}");
        assert!(e["timestamp"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let viewed = one(stored, "Page Viewed", |e| e["event_name"] == "Page Viewed");
    assert_eq!((viewed["event_type"].clone(), viewed["payload"]["path"].clone()), (json!("track"), json!("/checkout")));
    let clicked = one(stored, "Button Clicked", |e| e["event_name"] == "Button Clicked");
    assert_eq!(
        (clicked["payload"]["price"].clone(), clicked["payload"]["tags"].clone()),
        (json!(42.5), json!(["a", "b"]))
    );
    let identify = one(stored, "identify", |e| e["event_type"] == "identify");
    assert_eq!(
        (identify["payload"]["user_id"].clone(), identify["payload"]["email"].clone()),
        (json!("user_77"), json!("a@example.com"))
    );
    let group = one(stored, "group", |e| e["event_type"] == "group");
    assert_eq!((group["payload"]["group_id"].clone(), group["payload"]["seats"].clone()), (json!("org_1"), json!(5)));
    let order = one(stored, "revenue", |e| e["event_name"] == "Order Completed");
    assert_eq!(
        (order["payload"]["amount"].clone(), order["payload"]["currency"].clone()),
        (json!(99.99), json!("EUR"))
    );
    assert_eq!(order["payload"]["user_id"], "user_77");
    let alias = one(stored, "alias", |e| e["event_type"] == "alias");
    assert_eq!(alias["payload"]["previous_id"], "anon_1");
    let context = one(stored, "session context", |e| e["event_type"] == "context");
    assert_eq!(
        (context["payload"]["reason"].clone(), context["payload"]["browser"].clone()),
        (json!("session_start"), json!("Chrome"))
    );
    let beacon = one(stored, "beacon", |e| e["event_name"] == "Beacon Sent");
    assert_eq!(beacon["payload"]["via"], "beacon");
    let error = one(stored, "error log", |e| e["kind"] == "log" && e["level"] == "error");
    assert_eq!(error["payload"], json!({"message": "payment failed", "code": 51}));
    assert_eq!((error["source"].clone(), error["log_type"].clone()), (json!("browser"), json!("log")));
    let info = one(stored, "info log", |e| e["kind"] == "log" && e["level"] == "info");
    assert_eq!(info["payload"], json!({"message": "checkout opened"}));
    assert_eq!(stored.len(), 10, "7 events from calls, 1 session context, 2 logs");
}
