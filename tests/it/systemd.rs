//! The systemd unit and the daemon's side of `Type=notify`.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Daemon};

/// `systemd-analyze verify` on the shipped unit, with `ExecStart` pointing at
/// the binary under test (verify needs the binary in place). Any warning fails:
/// verify exits 0 even for unknown keys, so its output must be empty.
#[test]
fn the_unit_file_verifies_cleanly() {
    let unit = std::fs::read_to_string("systemd/sluice.service").expect("unit file");
    assert!(unit.contains("ExecStart=/usr/local/bin/sluice "), "the unit runs the installed binary");
    for needed in [
        "Type=notify",
        "StateDirectory=sluice",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(needed), "unit lacks {needed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/sluice", BIN)).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");
}

/// READY=1 arrives on a real `NOTIFY_SOCKET` once the listener is bound, and
/// WATCHDOG=1 pings follow when `WATCHDOG_USEC` is set; STOPPING=1 on SIGTERM.
#[test]
fn ready_watchdog_and_stopping_are_sent_over_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let daemon = Daemon::start_with(&dir.path().join("data"), "", |cmd| {
        cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "400000");
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline
        && !(seen.contains(&"READY=1".to_string()) && seen.contains(&"WATCHDOG=1".to_string()))
    {
        if let Ok(n) = socket.recv(&mut buf) {
            seen.extend(String::from_utf8_lossy(&buf[..n]).lines().map(str::to_string));
        }
    }
    assert!(seen.contains(&"READY=1".to_string()), "no READY=1; got {seen:?}");
    assert!(seen.contains(&"WATCHDOG=1".to_string()), "no watchdog ping; got {seen:?}");
    // READY=1 means the listener is bound: a connection succeeds now.
    std::net::TcpStream::connect(daemon.tcp).expect("listener bound at READY=1");
    assert!(daemon.stop().success());
    let mut stopping = false;
    while let Ok(n) = socket.recv(&mut buf) {
        stopping |= String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "STOPPING=1");
    }
    assert!(stopping, "no STOPPING=1 on SIGTERM");
}
