//! `sluice bench syslog` against the real daemon: it prints its JSON line,
//! and what it reports as sent over TCP is exactly what the daemon stored.

use crate::common;
use crate::syslog_support;

use std::process::Command;

use syslog_support::*;

fn bench(proto: &str, addr: std::net::SocketAddr) -> serde_json::Value {
    let out = Command::new(common::BIN)
        .args(["bench", "syslog", "--proto", proto, "--addr", &addr.to_string()])
        .args(["--connections", "2", "--message-bytes", "300", "--duration", "0.5"])
        .output()
        .expect("run bench");
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn bench_syslog_reports_what_the_daemon_stores() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let tcp = bench("tcp", tcp_addr(&d));
    let udp = bench("udp", udp_addr(&d));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (events, log) = stop_and_export(d);
    let sent_tcp = tcp["messages"].as_u64().unwrap();
    assert!(sent_tcp > 0 && tcp["seconds"].as_f64().unwrap() >= 0.5);
    assert!(tcp["messages_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(summary(&log, "syslog_tcp", "received"), sent_tcp, "TCP loses nothing");
    let stored_udp = summary(&log, "syslog_udp", "received");
    assert!(stored_udp > 0 && stored_udp <= udp["messages"].as_u64().unwrap());
    assert_eq!(events.len() as u64, sent_tcp + stored_udp);
    let e = &events[0];
    assert_eq!((e["app_name"].as_str(), e["raw"].as_str().map(str::len)), (Some("sluice-bench"), Some(300)));
}
