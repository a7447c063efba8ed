//! rsyslog 8 as a forwarder into sluice: `omfwd` over TCP with octet-counted
//! and traditional framing, with `RSYSLOG_SyslogProtocol23Format` and
//! `RSYSLOG_ForwardFormat`, each through a LinkedList action queue. Every
//! message written into rsyslog (multi-line ones too, over octet counting)
//! arrives intact.

use crate::common;
use crate::syslog_support;

use std::collections::BTreeMap;

use syslog_support::rsyslog::{Rsyslog, send_octet_counted};
use syslog_support::*;

/// Messages per forwarding path.
const MESSAGES: usize = 300;
/// Of which multi-line (octet-counted paths only).
const MULTILINE: usize = 10;

struct Path {
    name: &'static str,
    framing: &'static str,
    template: &'static str,
}

const PATHS: [Path; 4] = [
    Path { name: "oc23", framing: "octet-counted", template: "RSYSLOG_SyslogProtocol23Format" },
    Path { name: "ocfw", framing: "octet-counted", template: "RSYSLOG_ForwardFormat" },
    Path { name: "tr23", framing: "traditional", template: "RSYSLOG_SyslogProtocol23Format" },
    Path { name: "trfw", framing: "traditional", template: "RSYSLOG_ForwardFormat" },
];

fn rsyslog_config(dir: &std::path::Path, port: u16) -> String {
    let mut conf = String::new();
    for p in &PATHS {
        conf.push_str(&format!(
            "ruleset(name=\"{n}\") {{ action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" \
             TCP_Framing=\"{f}\" template=\"{t}\" queue.type=\"LinkedList\" queue.size=\"10000\" \
             queue.timeoutShutdown=\"20000\" action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\") \
             action(type=\"omfile\" file=\"{d}/{n}.seen\") }}\n\
             input(type=\"imptcp\" path=\"{d}/{n}.sock\" unlink=\"on\" ruleset=\"{n}\")\n",
            n = p.name,
            f = p.framing,
            t = p.template,
            d = dir.display(),
        ));
    }
    conf
}

/// The text of message `i` of a path; multi-line for the last few on octet-counted paths.
fn text(path: &Path, i: usize) -> String {
    if path.framing == "octet-counted" && i >= MESSAGES - MULTILINE {
        format!("path={} seq={i:04} first line\n  second line\tindented\nthird line", path.name)
    } else {
        format!("path={} seq={i:04} single line with \"quotes\" and [brackets] é", path.name)
    }
}

#[test]
fn rsyslog_forwarding_in_every_framing_and_template_arrives_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let rs_dir = dir.path().join("rsyslog");
    let sockets: Vec<_> = PATHS.iter().map(|p| rs_dir.join(format!("{}.sock", p.name))).collect();
    let rs = Rsyslog::start(&rs_dir, &rsyslog_config(&rs_dir, tcp_addr(&d).port()), &sockets);
    for (p, socket) in PATHS.iter().zip(&sockets) {
        let messages: Vec<Vec<u8>> = (0..MESSAGES)
            .map(|i| format!("<29>Oct 11 22:14:15 srchost app[123]: {}", text(p, i)).into_bytes())
            .collect();
        send_octet_counted(socket, &messages);
    }
    // rsyslog's inputs stop first at shutdown: wait until it has taken every message in.
    for p in &PATHS {
        let seen = rs_dir.join(format!("{}.seen", p.name));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let count = || std::fs::read_to_string(&seen).map_or(0, |t| t.matches(" seq=").count());
        while count() < MESSAGES && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    rs.stop();
    let rs_log = std::fs::read_to_string(rs_dir.join("rsyslogd.log")).unwrap_or_default();
    let (events, log) = stop_and_export(d);

    let mut by_path: BTreeMap<&str, Vec<&serde_json::Value>> = BTreeMap::new();
    for e in &events {
        let msg = e["message"].as_str().unwrap_or("");
        let path = PATHS.iter().find(|p| msg.starts_with(&format!("path={} ", p.name)));
        let path = path.unwrap_or_else(|| panic!("stray event {e}\nsluice log:\n{log}\nrsyslog log:\n{rs_log}"));
        by_path.entry(path.name).or_default().push(e);
    }
    for p in &PATHS {
        let got = by_path.get(p.name).map_or(&[][..], Vec::as_slice);
        assert_eq!(got.len(), MESSAGES, "{}: {} of {MESSAGES} arrived; rsyslog log:\n{rs_log}", p.name, got.len());
        for (i, e) in got.iter().enumerate() {
            assert_eq!(e["message"], text(p, i), "{} #{i}: {e}", p.name);
            assert_eq!(e["hostname"], "srchost", "{}: {e}", p.name);
            assert_eq!(e["app_name"], "app", "{}: {e}", p.name);
            assert_eq!(e["proc_id"], "123", "{}: {e}", p.name);
            assert_eq!((&e["facility"], &e["severity"]), (&"daemon".into(), &"notice".into()), "{}", p.name);
            let protocol = if p.template.contains("Protocol23") { "rfc5424" } else { "rfc3164" };
            assert_eq!(e["protocol"], protocol, "{}: {e}", p.name);
            assert!(e.get("flags").is_none(), "{}: {e}", p.name);
        }
    }
}

/// The shipped snippet with its placeholders pointed at the test daemon.
fn shipped_snippet(file: &str, port: u16, key: Option<&str>) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rsyslog").join(file);
    let text = std::fs::read_to_string(&path).expect("shipped rsyslog snippet");
    let text = text
        .replace("sluice.example.net", "127.0.0.1")
        .replace("port=\"514\"", &format!("port=\"{port}\""))
        .replace("port=\"2514\"", &format!("port=\"{port}\""));
    match key {
        Some(k) => text.replace("00000000000000000000000000000000", k),
        None => text,
    }
}

/// Sends messages with and without structured data through rsyslog
/// running `snippet`; returns what sluice stored.
fn through_snippet(dir: &std::path::Path, d: common::Daemon, snippet: &str) -> Vec<serde_json::Value> {
    let rs_dir = dir.join("rsyslog");
    let socket = rs_dir.join("in.sock");
    let conf = format!(
        "{snippet}\naction(type=\"omfile\" file=\"{seen}\")\ninput(type=\"imptcp\" path=\"{s}\" unlink=\"on\")\n",
        seen = rs_dir.join("seen").display(),
        s = socket.display()
    );
    let rs = Rsyslog::start(&rs_dir, &conf, std::slice::from_ref(&socket));
    let messages = vec![
        b"<13>1 2024-01-15T10:23:45Z srchost app 1 ID1 - plain one".to_vec(),
        b"<13>1 2024-01-15T10:23:45Z srchost app 1 ID2 [x@1 a=\"b\"] with sd".to_vec(),
        b"<13>Jan 15 10:23:45 srchost app[1]: old format\nsecond line".to_vec(),
    ];
    send_octet_counted(&socket, &messages);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let seen = || std::fs::read_to_string(rs_dir.join("seen")).map_or(0, |t| t.matches("srchost").count());
    while seen() < messages.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rs.stop();
    let (events, _) = stop_and_export(d);
    events
}

#[test]
fn the_shipped_snippet_forwards_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let snippet = shipped_snippet("60-sluice.conf", tcp_addr(&d).port(), None);
    let events = through_snippet(dir.path(), d, &snippet);
    let messages: Vec<_> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["plain one", "with sd", "old format\nsecond line"]);
    assert_eq!(events[1]["structured_data"], serde_json::json!({"x@1": {"a": "b"}}));
    assert!(events.iter().all(|e| e["hostname"] == "srchost" && e["app_name"] == "app"));
}

#[test]
fn the_shipped_relp_snippet_forwards_intact() {
    let dir = tempfile::tempdir().unwrap();
    let d =
        common::Daemon::start(&dir.path().join("data"), "[sources.relp]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n");
    let snippet = shipped_snippet("60-sluice-relp.conf", d.relp.expect("relp listening").port(), None);
    let events = through_snippet(dir.path(), d, &snippet);
    let messages: Vec<_> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["plain one", "with sd", "old format\nsecond line"]);
    assert_eq!(events[1]["structured_data"], serde_json::json!({"x@1": {"a": "b"}}));
    assert!(events.iter().all(|e| e["listener"] == "relp" && e["hostname"] == "srchost"));
}

#[test]
fn the_shipped_keyed_snippet_reaches_key_mode_and_the_key_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = common::create_key(&dir.path().join("data"), 5);
    let d = start_raw(dir.path(), &sections("auth = \"key\"", "auth = \"key\""));
    let snippet = shipped_snippet("60-sluice-keyed.conf", tcp_addr(&d).port(), Some(&key));
    let events = through_snippet(dir.path(), d, &snippet);
    let messages: Vec<_> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["plain one", "with sd", "old format\nsecond line"]);
    assert!(events.iter().all(|e| e["workspace"] == 5));
    assert!(events[0].get("structured_data").is_none(), "{}", events[0]);
    assert_eq!(events[1]["structured_data"], serde_json::json!({"x@1": {"a": "b"}}));
    assert!(!serde_json::to_string(&events).unwrap().contains(&key));
}
