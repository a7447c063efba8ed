//! Each `[sources.tcp]` and `[pipeline]` setting changes behaviour as documented.
//! (`max_frame_bytes` and `max_bad_keys` are shown in tests/acked.rs.)

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Daemon, create_key, export, hex_key};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::{ACK_LEN, Ack, Status};
use sluice::codec::frame::{AckedHeader, encode_acked, encode_tell};
use tell_encoding::{EventParams, EventType};

fn one_event(key: &[u8; 16], marker: &str) -> Vec<u8> {
    let payload = format!("{{\"marker\":\"{marker}\"}}");
    let event = EventParams {
        event_type: EventType::Track,
        timestamp: 1,
        service: None,
        device_id: Some(&[3u8; 16]),
        session_id: None,
        event_name: Some("setting"),
        payload: Some(payload.as_bytes()),
    };
    tell_batch(key, 1, &[event])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_extra_connections_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "max_connections = 1");
    let addr = daemon.tcp.to_string();
    let mut first = AckedClient::connect(&addr).await.unwrap();
    assert_eq!(first.send_and_wait(1, &one_event(&key, "a")).await.unwrap().status, Status::Stored);

    // The second connection completes in the kernel but is not served.
    let mut second = AckedClient::connect(&addr).await.unwrap();
    second.send(1, &one_event(&key, "b")).await.unwrap();
    second.flush().await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(500), second.recv_ack()).await;
    assert!(waited.is_err(), "served beyond max_connections");

    drop(first);
    let ack = tokio::time::timeout(Duration::from_secs(10), second.recv_ack()).await.expect("served once a slot frees");
    assert_eq!(ack.unwrap().status, Status::Stored);
    drop(daemon);
}

#[test]
fn idle_timeout_closes_silent_connections() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"), "idle_timeout = \"300ms\"");
    let mut stream = std::net::TcpStream::connect(daemon.tcp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(stream.read(&mut buf).unwrap(), 0, "closed by the server");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_impossible_length_closes_after_earlier_frames_are_committed_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "");
    let header = AckedHeader { producer: [9u8; 16], batch_id: 77 };
    let mut wire = Vec::new();
    encode_acked(&header, &one_event(&key, "before"), &mut wire);
    encode_tell(&one_event(&key, "tell-before"), &mut wire);
    // A Tell length over the 1 GiB hard limit: the stream cannot be trusted.
    wire.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    let mut stream = std::net::TcpStream::connect(daemon.tcp).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(&wire).unwrap();
    let mut reply = [0u8; ACK_LEN];
    stream.read_exact(&mut reply).unwrap();
    let ack = Ack::decode(&reply).unwrap();
    assert_eq!((ack.status, ack.batch_id, ack.count), (Status::Stored, 77, 1));
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed right after the ack");
    assert!(daemon.stop().success());
    let stored = export(&data);
    let markers: Vec<&str> = stored.iter().filter_map(|e| e["payload"]["marker"].as_str()).collect();
    assert_eq!(markers, ["before", "tell-before"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_shutdown_while_a_client_keeps_sending() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "[pipeline]\ndrain_timeout = \"1s\"");
    let addr = daemon.tcp.to_string();
    let sender = tokio::spawn(async move {
        let mut c = AckedClient::connect(&addr).await.unwrap();
        // Never quiet for long: without the deadline, the drain would wait for this client.
        for i in 0..300u64 {
            if c.send_and_wait(i + 1, &one_event(&key, &format!("s{i}"))).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        300
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || daemon.stop()).await.unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(8), "stopped at the drain deadline, not when the client stopped");
    let sent = sender.await.unwrap();
    assert!(sent < 300, "the client was cut off");
    // Everything acknowledged before the cut is stored.
    assert!(export(&data).len() as u64 >= sent);
}

/// Regression: a peer that sends acked frames but never reads its acks
/// filled the ack queue, and shutdown waited for it forever, past the drain
/// deadline.
#[test]
fn a_peer_that_never_reads_acks_cannot_hold_shutdown_past_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"), "[pipeline]\ndrain_timeout = \"1s\"");
    let mut stream = std::net::TcpStream::connect(daemon.tcp).unwrap();
    stream.set_write_timeout(Some(Duration::from_millis(300))).unwrap();
    // Malformed acked frames: each is answered, none of the answers is read.
    let mut wire = Vec::new();
    for id in 0..20_000u64 {
        encode_acked(&AckedHeader { producer: [1; 16], batch_id: id }, b"not a batch", &mut wire);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && stream.write_all(&wire).is_ok() {}
    let started = Instant::now();
    assert!(daemon.stop().success());
    assert!(started.elapsed() < Duration::from_secs(8), "stopped {:?} after SIGTERM", started.elapsed());
    drop(stream);
}
