//! Helpers shared by the syslog integration tests: a daemon with syslog
//! listeners, real `logger` runs, raw TCP/UDP senders, export of the
//! stored syslog events, and the listener summaries from the daemon's log.

#![allow(dead_code)]

pub mod rsyslog;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{self, Daemon};

/// How long one `logger` run may take.
pub const LOGGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Config sections for both syslog listeners on 127.0.0.1 port 0, each with `extra` lines.
pub fn sections(tcp_extra: &str, udp_extra: &str) -> String {
    format!(
        "[sources.syslog_tcp]\naddress = \"127.0.0.1:0\"\n{tcp_extra}\n[sources.syslog_udp]\naddress = \"127.0.0.1:0\"\n{udp_extra}\n"
    )
}

/// A daemon whose syslog listeners write into workspace 1 (plus `extra` lines for each).
pub fn start(dir: &Path, tcp_extra: &str, udp_extra: &str) -> Daemon {
    let tcp = format!("workspace = 1\n{tcp_extra}");
    let udp = format!("workspace = 1\n{udp_extra}");
    start_raw(dir, &sections(&tcp, &udp))
}

/// A daemon with exactly these syslog sections.
pub fn start_raw(dir: &Path, sections: &str) -> Daemon {
    let d = Daemon::start(&dir.join("data"), sections);
    assert!(d.syslog_tcp.is_some() && d.syslog_udp.is_some(), "no syslog listeners; log:\n{}", d.log_text());
    d
}

pub fn tcp_addr(d: &Daemon) -> SocketAddr {
    d.syslog_tcp.expect("syslog_tcp listening")
}

pub fn udp_addr(d: &Daemon) -> SocketAddr {
    d.syslog_udp.expect("syslog_udp listening")
}

/// Runs util-linux `logger` against `addr` with `args` and the message.
pub fn logger(addr: SocketAddr, args: &[&str], message: &str) {
    let port = addr.port().to_string();
    let mut cmd = Command::new("timeout");
    cmd.arg(LOGGER_TIMEOUT.as_secs().to_string()).arg("logger").args(["-n", "127.0.0.1", "-P", &port]);
    cmd.args(args).arg("--").arg(message);
    let out = cmd.output().expect("run logger (apt-get install bsdutils)");
    assert!(out.status.success(), "logger {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `logger` with messages on stdin, one per line, over one connection.
pub fn logger_stdin(addr: SocketAddr, args: &[&str], lines: &[String]) {
    let port = addr.port().to_string();
    let mut child = Command::new("timeout")
        .arg(LOGGER_TIMEOUT.as_secs().to_string())
        .arg("logger")
        .args(["-n", "127.0.0.1", "-P", &port])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run logger");
    let mut stdin = child.stdin.take().expect("stdin");
    for l in lines {
        writeln!(stdin, "{l}").expect("write to logger");
    }
    drop(stdin);
    assert!(child.wait().expect("logger").success());
}

/// Sends bytes over one TCP connection and closes it.
pub fn send_tcp(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    s.flush().expect("flush");
}

/// Sends each message as one datagram.
pub fn send_udp(addr: SocketAddr, messages: &[&[u8]]) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for m in messages {
        s.send_to(m, addr).expect("send");
    }
}

/// Octet-counted framing of `messages`.
pub fn octet_counted(messages: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        sluice::codec::octet::encode_octet_counted(m, &mut out);
    }
    out
}

/// Stops the daemon cleanly; returns its stored syslog events and its log.
pub fn stop_and_export(d: Daemon) -> (Vec<Value>, String) {
    let data = d.data_dir.clone();
    let log = d.log.clone();
    let status = d.stop();
    // The log reader thread finishes once the pipe closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = log.lock().unwrap().join("\n");
        if text.contains("stopped; everything received was committed") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "daemon exit {status:?}; log:\n{text}");
    let events = common::export(&data).into_iter().filter(|e| e["kind"] == "syslog").collect();
    (events, text)
}

/// The `field=value` of a listener's "syslog listener stopped" line.
pub fn summary(log: &str, listener: &str, field: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains("syslog listener stopped") && l.contains(&format!("listener=\"{listener}\"")))
        .unwrap_or_else(|| panic!("no summary for {listener} in log:\n{log}"));
    let at = line.find(&format!(" {field}=")).unwrap_or_else(|| panic!("no {field} in {line}")) + field.len() + 2;
    line[at..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("bad {field} in {line}"))
}

/// The one event whose message contains `needle`.
pub fn find<'a>(events: &'a [Value], needle: &str) -> &'a Value {
    let found: Vec<_> = events.iter().filter(|e| e["raw"].as_str().is_some_and(|m| m.contains(needle))).collect();
    assert_eq!(found.len(), 1, "{needle}: {events:#?}");
    found[0]
}
