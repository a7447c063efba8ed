//! `[sources.syslog_tls]`: syslog over TLS (RFC 5425) with real clients.
//! A rustls client's octet-counted messages are stored; a plaintext peer, a
//! client that does not trust the server's CA, and a peer that connects
//! and says nothing each fail their handshake, are counted, and store
//! nothing. rsyslog's `omfwd` with the GnuTLS driver in anonymous mode
//! (TLS 1.2) forwards into it intact, and in `x509/name` mode into the
//! workspace its client certificate maps to; an unmapped or expired client
//! certificate stores nothing. `bench syslog` with `--ca-file` loses nothing.

use crate::common::Daemon;
use crate::common::admin::{ApiClient, metric};
use crate::syslog_support::rsyslog::{Rsyslog, send_octet_counted};
use crate::syslog_support::{octet_counted, stop_and_export};
use crate::tls_support::{Certs, connect, connect_as};

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const FAILURES: &str = "sluice_tls_handshake_failures_total{listener=\"syslog_tls\"}";

fn start(dir: &Path, certs: &Certs, extra: &str) -> Daemon {
    let sections =
        format!("[sources.syslog_tls]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n{}\n{extra}", certs.table());
    Daemon::start(&dir.join("data"), &sections)
}

/// Waits until `/metrics` shows at least `n` handshake failures.
fn wait_failures(api: &ApiClient, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = metric(api, FAILURES);
        if got >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_stored_and_failed_handshakes_are_counted_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let other = Certs::new(&dir.path().join("other"), "another CA");
    let d = start(dir.path(), &certs, "[admin]\naddress = \"127.0.0.1:0\"\n");
    let addr = d.syslog_tls.expect("syslog_tls listening");
    let api = ApiClient::new(&d.admin.expect("admin").to_string());

    let mut tls = connect(addr, &certs.ca).await.expect("handshake with a client that trusts the CA");
    let messages: Vec<Vec<u8>> =
        (0..3).map(|i| format!("<14>1 2026-11-30T10:00:00Z host app - - - over tls {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    tls.write_all(&octet_counted(&refs)).await.unwrap();
    tls.shutdown().await.unwrap();

    // A plaintext client: its octet-counted message is not a ClientHello.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain.write_all(&octet_counted(&[b"<14>1 - host app - - - in clear"])).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("in clear"));
    // A client that does not trust the server's CA aborts the handshake.
    assert!(connect(addr, &other.ca).await.is_err(), "a client with another CA must not connect");
    assert_eq!(wait_failures(&api, 2), 2, "the plaintext peer and the distrusting client");

    let (events, log) = stop_and_export(d);
    let texts: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    assert_eq!(texts, ["over tls 0", "over tls 1", "over tls 2"], "log:\n{log}");
    assert!(events.iter().all(|e| e["listener"] == "syslog_tls"), "{events:?}");
    assert!(!log.contains("in clear"));
}

#[test]
fn a_peer_that_never_finishes_its_handshake_is_cut_at_the_frame_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = start(dir.path(), &certs, "[admin]\naddress = \"127.0.0.1:0\"\n[pipeline]\nframe_timeout = \"1s\"\n");
    let api = ApiClient::new(&d.admin.expect("admin").to_string());
    let mut silent = std::net::TcpStream::connect(d.syslog_tls.unwrap()).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap_or(0), 0, "closed without a word");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(10), "{waited:?}");
    assert_eq!(wait_failures(&api, 1), 1);
    let (events, _) = stop_and_export(d);
    assert!(events.is_empty());
}

/// Writes `messages` into an rsyslog whose `fwd` ruleset runs `action` (an
/// omfwd into the daemon) after `global`, waits until it has taken them all
/// in, stops it; its log.
fn through_rsyslog(rs_dir: &Path, global: &str, action: &str, messages: &[Vec<u8>]) -> String {
    let socket = rs_dir.join("in.sock");
    let conf = format!(
        "{global}\nruleset(name=\"fwd\") {{ {action} action(type=\"omfile\" file=\"{d}/seen\") }}\n\
         input(type=\"imptcp\" path=\"{s}\" unlink=\"on\" ruleset=\"fwd\")\n",
        d = rs_dir.display(),
        s = socket.display(),
    );
    let rs = Rsyslog::start(rs_dir, &conf, std::slice::from_ref(&socket));
    send_octet_counted(&socket, messages);
    let seen = rs_dir.join("seen");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&seen).map_or(0, |t| t.matches(" seq=").count()) < messages.len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    rs.stop();
    std::fs::read_to_string(rs_dir.join("rsyslogd.log")).unwrap_or_default()
}

/// omfwd over the GnuTLS driver into `port`, octet-counted, with `auth`
/// (its `StreamDriverAuthMode` and the like).
fn gtls_action(port: u16, auth: &str) -> String {
    format!(
        "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{port}\" protocol=\"tcp\" StreamDriver=\"gtls\" \
         StreamDriverMode=\"1\" {auth} TCP_Framing=\"octet-counted\" \
         template=\"RSYSLOG_SyslogProtocol23Format\" queue.type=\"LinkedList\" queue.timeoutShutdown=\"20000\" \
         action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")"
    )
}

#[test]
fn rsyslog_forwards_over_gnutls_in_anonymous_mode() {
    const MESSAGES: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = start(dir.path(), &certs, "");
    let port = d.syslog_tls.expect("syslog_tls listening").port();
    let messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| format!("<29>Oct 11 22:14:15 srchost app[7]: via gtls seq={i:04}").into_bytes())
        .collect();
    let global = "global(DefaultNetstreamDriver=\"gtls\")";
    let rs_log = through_rsyslog(
        &dir.path().join("rsyslog"),
        global,
        &gtls_action(port, r#"StreamDriverAuthMode="anon""#),
        &messages,
    );
    let (events, log) = stop_and_export(d);
    let got: Vec<String> = events.iter().filter_map(|e| e["message"].as_str().map(str::to_owned)).collect();
    let want: Vec<String> = (0..MESSAGES).map(|i| format!("via gtls seq={i:04}")).collect();
    // omfwd has no acknowledgements: after a GnuTLS error ("Function was
    // interrupted" under load) rsyslog resends what it believes unsent, so
    // a message may come twice. Everything arrives, in order, once first.
    let mut first_seen: Vec<String> = Vec::new();
    for m in &got {
        if !first_seen.contains(m) {
            first_seen.push(m.clone());
        }
    }
    assert_eq!(first_seen, want, "rsyslog log:\n{rs_log}\nsluice log:\n{log}");
    assert!(got.len() - want.len() <= 10 && rs_log.contains("GnuTLS error") || got.len() == want.len(), "{got:?}");
    assert!(events.iter().all(|e| e["hostname"] == "srchost" && e["protocol"] == "rfc5424"), "{:?}", events.first());
}

/// Waits until the daemon's log has `n` lines containing `needle`.
fn wait_log(d: &Daemon, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.log_text().matches(needle).count() < n {
        assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn send(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, text: &str) {
    let msg = format!("<14>1 2026-11-30T10:00:00Z host app - - - {text}");
    tls.write_all(&octet_counted(&[msg.as_bytes()])).await.unwrap();
    tls.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_keeps_open_sessions_and_survives_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = Certs::new(&dir.path().join("tls"), "first CA");
    let second = Certs::new(&dir.path().join("second"), "second CA");
    let d = start(dir.path(), &first, "");
    let addr = d.syslog_tls.unwrap();
    let mut open = connect(addr, &first.ca).await.expect("the first certificate");
    send(&mut open, "before reload").await;

    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    wait_log(&d, "TLS certificate and key reloaded", 1);
    assert!(connect(addr, &first.ca).await.is_err(), "the first certificate is gone for new sessions");
    let mut fresh = connect(addr, &second.ca).await.expect("the second certificate");
    send(&mut fresh, "after reload").await;
    send(&mut open, "on the session opened before").await;

    std::fs::write(&first.cert, "not a certificate\n").unwrap();
    unsafe { libc::kill(d.pid(), libc::SIGHUP) };
    wait_log(&d, "TLS reload failed", 1);
    let mut still = connect(addr, &second.ca).await.expect("a bad file keeps the certificate in use");
    send(&mut still, "after a failed reload").await;
    for mut tls in [open, fresh, still] {
        tls.shutdown().await.unwrap();
    }

    let (events, log) = stop_and_export(d);
    let mut texts: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    texts.sort_unstable();
    assert_eq!(
        texts,
        ["after a failed reload", "after reload", "before reload", "on the session opened before"],
        "log:\n{log}"
    );
}

/// `tls` with `client_ca` and `client_workspaces` for these certificates.
fn mapped_table(certs: &Certs, map: &str) -> String {
    format!(
        "tls = {{ cert = {:?}, key = {:?}, client_ca = {:?}, client_workspaces = {{ {map} }} }}",
        certs.cert, certs.key, certs.ca
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_chooses_the_workspace_and_others_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let (web, db, stray) = (
        certs.client("web-1.example.com", "web-1"),
        certs.client("db.internal", "db-1"),
        certs.client("x.example", "x"),
    );
    let sections = format!(
        "[sources.syslog_tls]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n{}\n[admin]\naddress = \"127.0.0.1:0\"\n",
        mapped_table(&certs, r#""web-1.example.com" = 3, "db-1" = 4"#)
    );
    let d = Daemon::start(&dir.path().join("data"), &sections);
    let addr = d.syslog_tls.unwrap();
    let api = ApiClient::new(&d.admin.unwrap().to_string());

    // By DNS name, and by subject CN.
    for (cert, text) in [(&web, "from web-1"), (&db, "from db-1")] {
        let mut tls = connect_as(addr, &certs.ca, Some(cert)).await.expect("a mapped certificate");
        send(&mut tls, text).await;
        tls.shutdown().await.unwrap();
    }
    // A verified certificate that maps to nothing: the connection is closed unread.
    let mut tls = connect_as(addr, &certs.ca, Some(&stray)).await.expect("the handshake itself succeeds");
    send(&mut tls, "from a stranger").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut rest)).await;
    // No certificate at all: the handshake fails.
    let refused = connect_as(addr, &certs.ca, None).await;
    if let Ok(mut tls) = refused {
        // TLS 1.3 reports the refusal on the first read.
        assert!(tls.read(&mut [0u8; 1]).await.is_err() || tls.read(&mut [0u8; 1]).await.unwrap_or(0) == 0);
    }
    // A certificate of the right CA, expired: the handshake fails too.
    let expired = certs.expired_client("web-1.example.com", "web-1-old");
    if let Ok(mut tls) = connect_as(addr, &certs.ca, Some(&expired)).await {
        send(&mut tls, "from an expired certificate").await;
        let _ = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut [0u8; 1])).await;
    }
    assert_eq!(wait_failures(&api, 2), 2, "the client without a certificate, the expired one");
    assert_eq!(metric(&api, "sluice_peers_refused_total{listener=\"syslog_tls\"}"), 1, "the unmapped certificate");

    let (events, log) = stop_and_export(d);
    let by_workspace: Vec<(&str, u64)> =
        events.iter().map(|e| (e["message"].as_str().unwrap_or(""), e["workspace"].as_u64().unwrap_or(0))).collect();
    assert_eq!(by_workspace, [("from web-1", 3), ("from db-1", 4)], "log:\n{log}");
}

#[test]
fn rsyslog_x509_name_mode_lands_in_the_workspace_of_its_certificate() {
    const MESSAGES: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let client = certs.client("web-1.example.com", "web-1");
    let sections = format!(
        "[sources.syslog_tls]\naddress = \"127.0.0.1:0\"\nworkspace = 1\n{}\n",
        mapped_table(&certs, r#""web-1.example.com" = 3"#)
    );
    let d = Daemon::start(&dir.path().join("data"), &sections);
    let port = d.syslog_tls.unwrap().port();
    let global = format!(
        "global(DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" \
         DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")",
        certs.ca.display(),
        client.cert.display(),
        client.key.display()
    );
    let action = gtls_action(port, r#"StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="localhost""#);
    let messages: Vec<Vec<u8>> =
        (0..MESSAGES).map(|i| format!("<29>Oct 11 22:14:15 srchost app[7]: x509 seq={i:04}").into_bytes()).collect();
    let rs_log = through_rsyslog(&dir.path().join("rsyslog"), &global, &action, &messages);
    let (events, log) = stop_and_export(d);
    assert_eq!(events.len(), MESSAGES, "rsyslog log:\n{rs_log}\nsluice log:\n{log}");
    assert!(events.iter().all(|e| e["workspace"] == 3), "{:?}", events.first());
}

#[test]
fn bench_syslog_over_tls_stores_every_message_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = start(dir.path(), &certs, "");
    let addr = d.syslog_tls.expect("syslog_tls listening").to_string();
    let out = std::process::Command::new(crate::common::BIN)
        .arg("--ca-file")
        .arg(&certs.ca)
        .args(["bench", "syslog", "--proto", "tcp", "--addr", &addr, "--server-name", "localhost"])
        .args(["--connections", "2", "--message-bytes", "300", "--duration", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let sent = line["messages"].as_u64().unwrap();
    let (events, log) = stop_and_export(d);
    assert!(sent > 0);
    assert_eq!(events.len() as u64, sent, "log:\n{log}");
    assert!(events.iter().all(|e| e["listener"] == "syslog_tls" && e["app_name"] == "sluice-bench"));
}
