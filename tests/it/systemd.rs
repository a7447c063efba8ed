//! The systemd unit and the daemon's side of `Type=notify`.

use crate::common;
use crate::syslog_support::{send_tcp, send_udp, stop_and_export};

use std::os::fd::{AsRawFd as _, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Daemon};

/// `systemd-analyze verify` on the shipped units, with `ExecStart` pointing at
/// the binary under test (verify needs the binary in place) and the generated
/// man pages on MANPATH (verify looks up `Documentation=man:` pages). Any
/// warning fails: verify exits 0 even for unknown keys, so its output must be
/// empty. Then the exposure score of `systemd-analyze security`.
#[test]
fn the_units_verify_cleanly_and_the_service_is_hardened() {
    let service = std::fs::read_to_string("systemd/sluice.service").expect("unit file");
    let socket = std::fs::read_to_string("systemd/sluice.socket").expect("socket unit");
    assert!(service.contains("ExecStart=/usr/bin/sluice "), "the unit runs the packaged binary");
    for needed in [
        "Type=notify",
        "Requires=sluice.socket",
        "StateDirectory=sluice",
        "\nCapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateUsers=yes",
        "RestrictAddressFamilies=",
        "WatchdogSec=",
    ] {
        assert!(service.contains(needed), "unit lacks {needed:?}");
    }
    assert!(!service.contains("AmbientCapabilities"), "privileged ports come from sluice.socket");
    for needed in ["ListenStream=127.0.0.1:514", "ListenDatagram=127.0.0.1:514", "WantedBy=sockets.target"] {
        assert!(socket.contains(needed), "socket unit lacks {needed}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, service.replace("/usr/bin/sluice", BIN)).unwrap();
    std::fs::write(dir.path().join("sluice.socket"), &socket).unwrap();
    let assets = dir.path().join("assets");
    let made = Command::new(BIN).arg("package-assets").arg(&assets).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .arg(dir.path().join("sluice.socket"))
        .env("MANPATH", assets.join("usr/share/man"))
        .output()
        .expect("systemd-analyze is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.trim().is_empty(), "systemd-analyze verify:\n{text}");

    let out = Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(&path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let score: f64 = text
        .split("Overall exposure level for sluice.service:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(score <= 1.2, "exposure {score} > 1.2:\n{text}");
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

/// Socket activation as `sluice.socket` does it: the test binds the syslog
/// TCP and UDP sockets (and one no listener wants), passes them as
/// descriptors 3, 4 and 5 with `LISTEN_FDS=3` and `LISTEN_PID` naming the
/// daemon, and keeps its own copies open, so a daemon that tried to bind the
/// addresses itself would fail with "address in use".
#[test]
fn passed_sockets_are_adopted_by_the_listeners_of_their_address() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stray = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let sections = format!(
        "[sources.syslog_tcp]\naddress = \"{tcp_addr}\"\nworkspace = 1\n\
         [sources.syslog_udp]\naddress = \"{udp_addr}\"\nworkspace = 1\nsockets = 2\n"
    );
    let fds = [tcp.as_raw_fd(), udp.as_raw_fd(), stray.as_raw_fd()];
    let daemon = Daemon::start_command(&dir.path().join("data"), &sections, |config| {
        // `exec` keeps the shell's pid, so LISTEN_PID=$$ names the daemon.
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=3 exec \"$0\" serve --config \"$1\"", BIN]).arg(config);
        // SAFETY: only fcntl, dup2 and close, which are async-signal-safe.
        unsafe { cmd.pre_exec(move || pass_as_3_and_on(&fds)) };
        cmd
    });
    assert_eq!(daemon.syslog_tcp, Some(tcp_addr), "{}", daemon.log_text());
    assert_eq!(daemon.syslog_udp, Some(udp_addr), "{}", daemon.log_text());
    drop((tcp, udp, stray));
    send_tcp(tcp_addr, b"<13>1 - host app - - - over the passed tcp socket\n");
    send_udp(udp_addr, &[b"<13>1 - host app - - - over the passed udp socket"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = stop_and_export(daemon);
    let raws: Vec<&str> = events.iter().filter_map(|e| e["raw"].as_str()).collect();
    assert!(raws.iter().any(|r| r.ends_with("over the passed tcp socket")), "{raws:?}\n{log}");
    assert!(raws.iter().any(|r| r.ends_with("over the passed udp socket")), "{raws:?}\n{log}");
    assert!(log.contains("adopted the socket passed by systemd"), "{log}");
    assert!(log.contains("adopted the UDP sockets passed by systemd") && log.contains("sockets=1"), "{log}");
    assert!(log.contains("no listener is configured for"), "the stray socket is named: {log}");
}

/// In a forked child: `fds` become descriptors 3, 4, … without close-on-exec.
fn pass_as_3_and_on(fds: &[RawFd]) -> std::io::Result<()> {
    const HIGH: RawFd = 200;
    // Out of the way first, so a source that is already 3..n is not clobbered.
    let mut moved = Vec::with_capacity(fds.len());
    for &fd in fds {
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD, HIGH) };
        if high < 0 {
            return Err(std::io::Error::last_os_error());
        }
        moved.push(high);
    }
    for (target, high) in (3..).zip(moved) {
        if unsafe { libc::dup2(high, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        unsafe { libc::close(high) };
    }
    Ok(())
}
