//! util-linux `logger` against the real daemon: every transport and format
//! it speaks arrives with the right fields.

use crate::syslog_support;

use serde_json::json;
use syslog_support::*;

#[test]
fn logger_tcp_octet_counted_rfc5424_with_structured_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let addr = tcp_addr(&d);
    logger(
        addr,
        &[
            "--tcp",
            "--octet-count",
            "--rfc5424",
            "-p",
            "local3.warning",
            "-t",
            "billing",
            "--id=4242",
            "--msgid",
            "INV7",
            "--sd-id",
            "order@32473",
            "--sd-param",
            "id=\"A-17\"",
            "--sd-param",
            "note=\"two words\"",
        ],
        "octet 5424 message",
    );
    let (events, _) = stop_and_export(d);
    let e = find(&events, "octet 5424 message");
    assert_eq!(e["listener"], "syslog_tcp");
    assert_eq!(e["protocol"], "rfc5424");
    assert_eq!(e["facility"], "local3");
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["app_name"], "billing");
    assert_eq!(e["proc_id"], "4242");
    assert_eq!(e["msg_id"], "INV7");
    assert_eq!(e["message"], "octet 5424 message");
    assert_eq!(e["structured_data"]["order@32473"], json!({"id": "A-17", "note": "two words"}));
    assert!(e["structured_data"]["timeQuality"].is_object());
    assert!(e["hostname"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(e["timestamp"].as_str().is_some_and(|t| t.starts_with("20")));
    assert!(e["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(e["received_at"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(e.get("flags").is_none());
}

#[test]
fn logger_tcp_newline_framed_rfc3164() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    logger(tcp_addr(&d), &["--tcp", "--rfc3164", "-p", "auth.err", "-t", "sshd", "--id=77"], "lf 3164 message");
    let (events, _) = stop_and_export(d);
    let e = find(&events, "lf 3164 message");
    assert_eq!(e["protocol"], "rfc3164");
    assert_eq!((&e["facility"], &e["severity"]), (&json!("auth"), &json!("err")));
    assert_eq!((&e["app_name"], &e["proc_id"]), (&json!("sshd"), &json!("77")));
    assert_eq!(e["message"], "lf 3164 message");
    // A 3164 timestamp has no year or zone: sluice fills both in (UTC by default).
    let ts = e["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z'), "{ts}");
}

#[test]
fn logger_udp_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let addr = udp_addr(&d);
    logger(addr, &["--udp", "--rfc5424", "-p", "daemon.info", "-t", "cron"], "udp 5424 message");
    logger(addr, &["--udp", "--rfc3164", "-p", "mail.crit", "-t", "postfix"], "udp 3164 message");
    let (events, _) = stop_and_export(d);
    let a = find(&events, "udp 5424 message");
    assert_eq!(
        (&a["listener"], &a["protocol"], &a["facility"]),
        (&json!("syslog_udp"), &json!("rfc5424"), &json!("daemon"))
    );
    assert_eq!((&a["app_name"], &a["message"]), (&json!("cron"), &json!("udp 5424 message")));
    let b = find(&events, "udp 3164 message");
    assert_eq!((&b["protocol"], &b["facility"], &b["severity"]), (&json!("rfc3164"), &json!("mail"), &json!("crit")));
    assert_eq!(b["app_name"], "postfix");
}

#[test]
fn many_messages_on_one_logger_connection_arrive_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let lines: Vec<String> = (0..500).map(|i| format!("stdin line {i:04}")).collect();
    logger_stdin(tcp_addr(&d), &["--tcp", "--octet-count", "--rfc5424"], &lines);
    logger_stdin(tcp_addr(&d), &["--tcp", "--rfc3164"], &lines);
    let (events, _) = stop_and_export(d);
    assert_eq!(events.len(), 1000);
    let got: Vec<&str> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
    let want: Vec<&str> = lines.iter().chain(&lines).map(String::as_str).collect();
    assert_eq!(got, want);
}
