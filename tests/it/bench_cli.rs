//! `sluice bench tcp` against a real daemon, and the CLI's data-dir lock.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Daemon, create_key, wait_timeout};
use serde_json::Value;

fn bench(addr: &str, key: &str, seconds: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["bench", "tcp", "--addr", addr, "--key", key, "--connections", "2", "--batch-size", "100"])
        .args(["--duration", seconds, "--acked"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn json_line(stdout: &[u8]) -> Value {
    let text = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {text}");
    serde_json::from_str(lines[0]).expect("json")
}

#[test]
fn acked_bench_reports_what_the_daemon_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, "");
    let out = bench(&daemon.tcp.to_string(), &key, "1").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = json_line(&out.stdout);
    for field in ["events", "seconds", "acked_events_per_sec", "mb_per_sec", "p50_ack_ms", "p99_ack_ms"] {
        assert!(line.get(field).is_some(), "{field} missing: {line}");
    }
    let acked = line["events"].as_u64().unwrap();
    assert!(acked > 0 && acked.is_multiple_of(100));
    assert!(daemon.stop().success());
    assert_eq!(common::export(&data).len() as u64, acked, "every acknowledged event is stored, nothing more");
}

#[test]
fn the_bench_exits_non_zero_with_its_json_line_when_the_server_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = create_key(&data, 1);
    let daemon = Daemon::start(&data, "");
    let mut child = bench(&daemon.tcp.to_string(), &key, "30").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    daemon.kill();
    let status = wait_timeout(&mut child, Duration::from_secs(20)).expect("bench stops by itself");
    assert!(!status.success());
    let mut stdout = Vec::new();
    std::io::Read::read_to_end(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let line = json_line(&stdout);
    let acked = line["events"].as_u64().unwrap();
    // Only acknowledged events count, and all of them survived the kill.
    let daemon = Daemon::start(&data, "");
    assert!(daemon.stop().success());
    assert!(common::export(&data).len() as u64 >= acked);
}

#[test]
fn data_dir_commands_refuse_a_dir_held_by_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data, "");
    for args in [&["apikeys", "list"][..], &["export"][..]] {
        let out = Command::new(BIN).args(args).arg("--data-dir").arg(&data).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("in use by another process"), "{args:?}: {err}");
    }
    drop(daemon);
}

#[test]
fn the_tail_bench_sees_every_acked_event_reach_the_live_tail() {
    use common::admin::{ADMIN_EMAIL, ADMIN_PASSWORD, setup, start_admin};
    let dir = tempfile::tempdir().unwrap();
    let (daemon, api) = start_admin(&dir.path().join("data"), "");
    let key = setup(&api)["streaming_key"].as_str().unwrap().to_owned();
    let url = format!("http://{}", daemon.admin.unwrap());
    let creds = dir.path().join("credentials.json");
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(BIN)
            .args(args)
            .env("SLUICE_CREDENTIALS", &creds)
            .env_remove("SLUICE_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    run(
        &["login", "--server", &url, "--email", ADMIN_EMAIL, "--password-stdin"],
        format!("{ADMIN_PASSWORD}\n").as_bytes(),
    );
    let tcp = daemon.tcp.to_string();
    let args = ["bench", "tail", "--server", &url, "--addr", &tcp, "--key", &key, "--rate", "50", "--duration", "1"];
    let line = json_line(&run(&args, b""));
    assert_eq!((line["events"].as_u64(), line["missing"].as_u64()), (Some(50), Some(0)), "{line}");
    for field in ["p50_ms", "p99_ms", "max_ms", "p99_from_send_ms"] {
        assert!(line[field].as_f64().is_some(), "{field}: {line}");
    }
}
