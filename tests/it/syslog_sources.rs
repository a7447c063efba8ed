//! The syslog listeners' settings and edge cases against the real daemon:
//! truncation, allowed sources, key mode, idle timeout, the connection
//! limit, shutdown drain, several UDP sockets, time zones, BOM and invalid
//! UTF-8.

use crate::common;
use crate::syslog_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use syslog_support::*;

#[test]
fn oversized_messages_are_truncated_flagged_and_the_stream_stays_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "max_message_bytes = 100", "max_message_bytes = 100");
    let big = format!("<13>1 - h app - - - big-octet {}", "x".repeat(500));
    let big_line = format!("<13>big-line {}\n", "y".repeat(500));
    let mut wire = octet_counted(&[big.as_bytes(), b"<13>1 - h app - - - after-octet"]);
    wire.extend_from_slice(big_line.as_bytes());
    wire.extend_from_slice(b"<13>after-line\n");
    send_tcp(tcp_addr(&d), &wire);
    let big_dgram = format!("<13>big-dgram {}", "z".repeat(500));
    send_udp(udp_addr(&d), &[big_dgram.as_bytes(), b"<13>small-dgram"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = stop_and_export(d);
    for (needle, truncated) in [
        ("big-octet", true),
        ("after-octet", false),
        ("big-line", true),
        ("after-line", false),
        ("big-dgram", true),
        ("small-dgram", false),
    ] {
        let e = find(&events, needle);
        assert!(e["raw"].as_str().unwrap().len() <= 100, "{needle}");
        let flagged = e["flags"].as_array().is_some_and(|f| f.contains(&json!("truncated")));
        assert_eq!(flagged, truncated, "{needle}: {e}");
    }
    assert_eq!(events.len(), 6);
    assert_eq!(summary(&log, "syslog_tcp", "truncated"), 2);
    assert_eq!(summary(&log, "syslog_udp", "truncated"), 1);
}

#[test]
fn peers_outside_allowed_sources_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "allowed_sources = [\"10.0.0.0/8\"]", "allowed_sources = [\"10.0.0.0/8\", \"fd00::/8\"]");
    // The connection is accepted and closed at once: the read sees EOF or a reset.
    let mut s = TcpStream::connect(tcp_addr(&d)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(b"<13>refused tcp\n");
    let mut buf = [0u8; 1];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    send_udp(udp_addr(&d), &[b"<13>refused udp 1", b"<13>refused udp 2"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = stop_and_export(d);
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(summary(&log, "syslog_tcp", "peers_refused"), 1);
    assert_eq!(summary(&log, "syslog_udp", "peers_refused"), 2);

    // The loopback network allowed: everything arrives.
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "allowed_sources = [\"127.0.0.0/8\"]", "allowed_sources = [\"127.0.0.1\"]");
    send_tcp(tcp_addr(&d), b"<13>allowed tcp\n");
    send_udp(udp_addr(&d), &[b"<13>allowed udp"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop_and_export(d);
    assert_eq!(events.len(), 2);
}

#[test]
fn key_mode_stores_valid_keys_in_their_workspace_redacted_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, key) = common::create_key(&data, 7);
    let (deleted_id, deleted) = common::create_key(&data, 7);
    let out = std::process::Command::new(common::BIN)
        .args(["apikeys", "delete", &deleted_id.to_string(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let d = start_raw(dir.path(), &sections("auth = \"key\"", "auth = \"key\""));
    let good = format!("<14>1 - h app - - [timeQuality tzKnown=\"1\"][sluice@32473 key=\"{key}\"] keyed tcp");
    let revoked = format!("<14>1 - h app - - [sluice@32473 key=\"{deleted}\"] revoked");
    let wire = octet_counted(&[
        good.as_bytes(),
        revoked.as_bytes(),
        b"<14>1 - h app - - - no key at all",
        b"<14>1 - h app - - [sluice@32473 key=\"zz\"] malformed key",
        b"<14>Oct 11 22:14:15 h app: rfc3164 cannot carry one",
    ]);
    send_tcp(tcp_addr(&d), &wire);
    let good_udp = format!("<14>1 - h app - - [sluice@32473 key=\"{key}\"] keyed udp");
    send_udp(udp_addr(&d), &[good_udp.as_bytes(), b"<14>1 - h app - - - udp without key"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = stop_and_export(d);
    assert_eq!(events.len(), 2, "{events:#?}");
    let e = find(&events, "keyed tcp");
    assert_eq!(e["workspace"], 7);
    assert_eq!(e["raw"], "<14>1 - h app - - [timeQuality tzKnown=\"1\"] keyed tcp");
    assert_eq!(e["structured_data"], json!({"timeQuality": {"tzKnown": "1"}}));
    let e = find(&events, "keyed udp");
    assert_eq!((&e["workspace"], &e["raw"]), (&json!(7), &json!("<14>1 - h app - - - keyed udp")));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&key), "the key reached the store");
    assert_eq!(summary(&log, "syslog_tcp", "bad_key"), 4);
    assert_eq!(summary(&log, "syslog_udp", "bad_key"), 1);
}

#[test]
fn idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "idle_timeout = \"300ms\"", "");
    let mut s = TcpStream::connect(tcp_addr(&d)).unwrap();
    s.write_all(b"<13>before idle\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "server closes the idle connection");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(5), "{waited:?}");
    let (events, _) = stop_and_export(d);
    assert_eq!(events.len(), 1);
}

#[test]
fn the_connection_limit_holds_extra_connections_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "max_connections = 1\nidle_timeout = \"1s\"", "");
    let addr = tcp_addr(&d);
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(b"<13>first\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    // The kernel completes this handshake, but sluice only serves it once the first is gone.
    send_tcp(addr, b"<13>second\n");
    let mut buf = [0u8; 1];
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(first.read(&mut buf).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop_and_export(d);
    let first_at = find(&events, "first")["received_at"].as_u64().unwrap();
    let second_at = find(&events, "second")["received_at"].as_u64().unwrap();
    assert!(second_at >= first_at + 800, "second served {} ms after first", second_at - first_at);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn shutdown_reads_on_so_a_message_split_across_it_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let mut s = TcpStream::connect(tcp_addr(&d)).unwrap();
    s.write_all(b"33 <13>1 - h app - - - split ").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    unsafe { libc::kill(d.pid(), libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(150));
    s.write_all(b"message\n<13>a line\n").unwrap();
    drop(s);
    let (events, log) = stop_and_export(d);
    let raws: Vec<_> = events.iter().map(|e| e["raw"].as_str().unwrap()).collect();
    assert_eq!(raws, ["<13>1 - h app - - - split message", "<13>a line"], "{log}");
}

#[test]
fn several_udp_sockets_share_the_port_and_keep_each_peer() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "sockets = 3\nreceive_buffer_bytes = \"1MiB\"");
    let addr = udp_addr(&d);
    let senders: Vec<_> = (0..6).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for round in 0..50 {
        for (i, s) in senders.iter().enumerate() {
            s.send_to(format!("<13>sender {i} round {round}").as_bytes(), addr).unwrap();
        }
        if round % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (events, log) = stop_and_export(d);
    assert_eq!(events.len(), 300, "{log}");
    for (i, s) in senders.iter().enumerate() {
        let port = s.local_addr().unwrap().port();
        let mine: Vec<_> =
            events.iter().filter(|e| e["raw"].as_str().unwrap().contains(&format!("sender {i} "))).collect();
        assert_eq!(mine.len(), 50);
        assert!(mine.iter().all(|e| e["peer"] == format!("127.0.0.1:{port}")), "peer of sender {i}");
    }
    assert!(log.contains("UDP receive buffer") && log.contains("requested=1048576"), "{log}");
}

#[test]
fn timezone_applies_to_timestamps_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "timezone = \"+02:00\"", "timezone = \"America/New_York\"");
    send_tcp(tcp_addr(&d), b"<13>Jul  4 12:00:00 host app: zoned tcp\n<13>1 2024-07-04T12:00:00Z h a - - - zulu\n");
    send_udp(udp_addr(&d), &[b"<13>Jan  4 12:00:00 host app: zoned udp"]);
    std::thread::sleep(Duration::from_millis(300));
    let (events, _) = stop_and_export(d);
    assert!(find(&events, "zoned tcp")["timestamp"].as_str().unwrap().ends_with("T12:00:00+02:00"));
    assert_eq!(find(&events, "zulu")["timestamp"], "2024-07-04T12:00:00Z", "an explicit zone wins");
    assert!(find(&events, "zoned udp")["timestamp"].as_str().unwrap().ends_with("-01-04T12:00:00-05:00"));
}

#[test]
fn bom_is_stripped_invalid_utf8_kept_and_unparsable_messages_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), "", "");
    let wire = octet_counted(&[
        b"<13>1 2024-01-01T00:00:00Z h app - - - \xEF\xBB\xBFbom message",
        b"<13>1 2024-01-01T00:00:00Z h app - - - bad \xff\xfe bytes",
        b"%%% not syslog at all",
    ]);
    send_tcp(tcp_addr(&d), &wire);
    std::thread::sleep(Duration::from_millis(300));
    let data = d.data_dir.clone();
    let (events, _) = stop_and_export(d);
    assert_eq!(find(&events, "bom message")["message"], "bom message");
    assert_eq!(find(&events, "bad ")["message"], "bad \u{fffd}\u{fffd} bytes");
    let e = find(&events, "not syslog");
    assert_eq!((&e["flags"], &e["message"]), (&json!(["unparsed"]), &json!("%%% not syslog at all")));
    // The stored raw bytes keep the invalid UTF-8 (export shows it lossily).
    let raws = stored_raws(&data, 1);
    assert!(raws.iter().any(|r| r.windows(2).any(|w| w == b"\xff\xfe")));
    assert!(!raws.iter().any(|r| r.windows(3).any(|w| w == b"\xEF\xBB\xBF")));
}

/// The raw bytes of every stored event of `workspace`, read offline through
/// the query engine.
fn stored_raws(data: &std::path::Path, workspace: u32) -> Vec<Vec<u8>> {
    use sluice::store::query::{EventsHandle, Query, Sink};
    use sluice::store::reader::StoredEvent;
    struct Raws(Vec<Vec<u8>>);
    impl Sink for Raws {
        fn event(&mut self, ev: &StoredEvent<'_>) -> bool {
            self.0.push(ev.record.get(sluice::record::tag::RAW).unwrap_or_default().to_vec());
            true
        }
    }
    let q = Query::unfiltered(workspace, 1000, u64::MAX);
    let mut raws = Raws(Vec::new());
    EventsHandle::open(data, 1 << 20).unwrap().snapshot().unwrap().stream(&q, &mut raws).unwrap();
    raws.0
}
