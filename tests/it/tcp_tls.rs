//! `[sources.tcp.tls]`: the raw TCP source over TLS. An acked frame sent
//! through a rustls session is stored and answered through it; `openssl
//! s_client` completes a TLS 1.2 handshake (what rsyslog's GnuTLS driver
//! speaks) and verifies the chain; a plaintext Tell frame on the TLS port is
//! not a ClientHello and stores nothing.

use crate::common::{Daemon, create_key, export, hex_key, marker_batch};
use crate::tls_support::{Certs, connect};

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice::codec::ack::{ACK_LEN, Ack, Status};
use sluice::codec::frame::{AckedHeader, encode_acked, encode_tell};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_frames_over_tls_are_stored_and_answered_and_plaintext_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = Daemon::start(&data, &format!("[sources.tcp.tls]\ncert = {:?}\nkey = {:?}\n", certs.cert, certs.key));

    let mut tls = connect(d.tcp, &certs.ca).await.expect("TLS handshake");
    let mut frame = Vec::new();
    encode_acked(&AckedHeader { producer: [9; 16], batch_id: 1 }, &marker_batch(&key, "over-tls"), &mut frame);
    tls.write_all(&frame).await.unwrap();
    let mut ack = [0u8; ACK_LEN];
    tokio::time::timeout(Duration::from_secs(20), tls.read_exact(&mut ack)).await.expect("ack in time").unwrap();
    let ack = Ack::decode(&ack).unwrap();
    assert_eq!((ack.status, ack.count), (Status::Stored, 1));

    // A Tell SDK frame in clear on the TLS port.
    let mut plain = std::net::TcpStream::connect(d.tcp).unwrap();
    let mut frame = Vec::new();
    encode_tell(&marker_batch(&key, "in-clear"), &mut frame);
    plain.write_all(&frame).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = plain.read_to_end(&mut Vec::new());

    // openssl's client, TLS 1.2 only, checking the chain against the CA.
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-brief", "-verify_return_error", "-connect", &d.tcp.to_string(), "-CAfile"])
        .arg(&certs.ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (apt-get install openssl)");
    drop(s_client.stdin.take());
    let out = s_client.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Protocol version: TLSv1.2") && text.contains("Verification: OK"), "{text}");

    assert!(d.stop().success());
    let markers: Vec<_> =
        export(&data).iter().filter_map(|e| e["payload"]["marker"].as_str().map(str::to_owned)).collect();
    assert_eq!(markers, ["over-tls"]);
}

#[test]
fn check_config_and_start_up_refuse_a_tls_table_whose_files_do_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let missing = dir.path().join("tls/missing.key");
    let path = dir.path().join("sluice.toml");
    let text = format!(
        "data_dir = {:?}\n[sources.tcp]\naddress = \"127.0.0.1:0\"\n[sources.tcp.tls]\ncert = {:?}\nkey = {:?}\n",
        dir.path().join("data"),
        certs.cert,
        missing
    );
    std::fs::write(&path, text).unwrap();
    for args in [&["check-config"][..], &["serve", "--config"][..]] {
        let out = Command::new(crate::common::BIN).args(args).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("[sources.tcp.tls]") && err.contains("missing.key"), "{args:?}: {err}");
    }
}

#[test]
fn client_workspaces_are_for_syslog_and_relp_listeners_only() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let table = format!(
        "tls = {{ cert = {:?}, key = {:?}, client_ca = {:?}, client_workspaces = {{ \"web-1.example.com\" = 3 }} }}",
        certs.cert, certs.key, certs.ca
    );
    let check = |section: &str| {
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, format!("data_dir = {:?}\n{section}\n{table}\n", dir.path().join("data"))).unwrap();
        Command::new(crate::common::BIN).arg("check-config").arg(&path).output().unwrap()
    };
    let relp = check("[sources.relp]\nworkspace = 1");
    assert!(relp.status.success(), "{}", String::from_utf8_lossy(&relp.stderr));
    let tcp = check("[sources.tcp]\naddress = \"127.0.0.1:0\"");
    let err = String::from_utf8_lossy(&tcp.stderr);
    assert!(!tcp.status.success() && err.contains("[sources.tcp.tls]") && err.contains("client_workspaces"), "{err}");
}

#[test]
fn bench_tcp_acked_runs_over_tls_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, 1).1;
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = Daemon::start(&data, &format!("[sources.tcp.tls]\ncert = {:?}\nkey = {:?}\n", certs.cert, certs.key));
    let out = Command::new(crate::common::BIN)
        .args(["bench", "tcp", "--acked", "--connections", "2", "--batch-size", "50", "--duration", "1"])
        .args(["--addr", &d.tcp.to_string(), "--key", &key, "--server-name", "localhost", "--ca-file"])
        .arg(&certs.ca)
        .output()
        .unwrap();
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert!(
        out.status.success() && line["events"].as_u64().unwrap_or(0) > 0,
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the CA the handshake fails: nothing is acknowledged.
    let other = Certs::new(&dir.path().join("other"), "another CA");
    let out = Command::new(crate::common::BIN)
        .args(["bench", "tcp", "--acked", "--duration", "1", "--addr", &d.tcp.to_string(), "--key", &key, "--ca-file"])
        .arg(&other.ca)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(d.stop().success());
}
