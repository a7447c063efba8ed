//! sluice's acked mode over real sockets: every status, de-duplication, and
//! the stream staying in step after refusals.

use crate::common;

use common::{Daemon, create_key, export, hex_key};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

fn events(markers: &[String]) -> Vec<EventParams<'_>> {
    markers
        .iter()
        .map(|m| EventParams {
            event_type: EventType::Track,
            timestamp: 1_700_000_000_000,
            service: Some("svc"),
            device_id: Some(&[7u8; 16]),
            session_id: None,
            event_name: Some("Marked"),
            payload: Some(m.as_bytes()),
        })
        .collect()
}

fn marker_batch(key: &[u8; 16], tag: &str, n: usize) -> Vec<u8> {
    let markers: Vec<String> = (0..n).map(|i| format!("{{\"marker\":\"{tag}-{i}\"}}")).collect();
    tell_batch(key, 1, &events(&markers))
}

fn markers(stored: &[serde_json::Value]) -> Vec<String> {
    stored.iter().filter_map(|e| e["payload"]["marker"].as_str().map(str::to_string)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_then_duplicate_and_producers_are_separate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "");
    let addr = daemon.tcp.to_string();

    let mut a = AckedClient::connect(&addr).await.unwrap();
    let batch = marker_batch(&key, "a", 3);
    let first = a.send_and_wait(10, &batch).await.unwrap();
    assert_eq!((first.status, first.batch_id, first.count), (Status::Stored, 10, 3));
    let again = a.send_and_wait(10, &batch).await.unwrap();
    assert_eq!(again.status, Status::Duplicate);
    assert_eq!((again.first_seq, again.count), (first.first_seq, 3), "the original range");

    // A new connection as the same producer is still the same producer.
    let mut a2 = AckedClient::with_producer(&addr, a.producer()).await.unwrap();
    assert_eq!(a2.send_and_wait(10, &batch).await.unwrap().status, Status::Duplicate);

    // Another producer with the same batch id is a different batch.
    let mut b = AckedClient::connect(&addr).await.unwrap();
    let other = b.send_and_wait(10, &marker_batch(&key, "b", 2)).await.unwrap();
    assert_eq!(other.status, Status::Stored);
    assert_eq!(other.first_seq, first.first_seq + 3, "seq continues per workspace");

    assert!(daemon.stop().success());
    let mut got = markers(&export(&data));
    got.sort();
    assert_eq!(got, ["a-0", "a-1", "a-2", "b-0", "b-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_answered_in_order_and_the_stream_stays_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "max_frame_bytes = 4096");
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();

    let good = marker_batch(&key, "ok", 2);
    let big = marker_batch(&key, "big", 200);
    assert!(big.len() > 4096);
    let bad_key = marker_batch(&[0u8; 16], "nokey", 1);
    c.send(1, &good).await.unwrap();
    c.send(2, &b"definitely not flatbuffers".repeat(4)).await.unwrap();
    c.send(3, &big).await.unwrap();
    c.send(4, &bad_key).await.unwrap();
    c.send(5, &good).await.unwrap();
    c.flush().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let ack = c.recv_ack().await.unwrap();
        got.push((ack.batch_id, ack.status));
    }
    assert_eq!(
        got,
        [(1, Status::Stored), (2, Status::Malformed), (3, Status::TooLarge), (4, Status::BadKey), (5, Status::Stored)]
    );
    let metrics_log = daemon.log_text();
    assert!(daemon.stop().success(), "{metrics_log}");
    assert_eq!(markers(&export(&data)).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_bad_keys_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    create_key(&data, 1);
    let daemon = Daemon::start(&data, "max_bad_keys = 2");
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    let bad = marker_batch(&[1u8; 16], "x", 1);
    for id in 1..=3 {
        // The third send may already fail: the server closes after two.
        let _ = c.send(id, &bad).await;
    }
    let _ = c.flush().await;
    assert_eq!(c.recv_ack().await.unwrap().status, Status::BadKey);
    assert_eq!(c.recv_ack().await.unwrap().status, Status::BadKey);
    assert!(c.recv_ack().await.is_err(), "closed after max_bad_keys");
    drop(daemon);
}

/// `flags` is reserved: a frame with a flag set is answered `malformed`,
/// nothing of it is stored, and the next frame on the connection is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_with_reserved_flags_is_malformed_and_not_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let daemon = Daemon::start(&data, "");
    let mut s = tokio::net::TcpStream::connect(daemon.tcp).await.unwrap();
    let mut wire = Vec::new();
    let header = |batch_id| sluice::codec::frame::AckedHeader { producer: [3; 16], batch_id };
    sluice::codec::frame::encode_acked(&header(1), &marker_batch(&key, "flagged", 2), &mut wire);
    wire[3] = 0x04;
    sluice::codec::frame::encode_acked(&header(2), &marker_batch(&key, "plain", 2), &mut wire);
    s.write_all(&wire).await.unwrap();
    let mut acks = Vec::new();
    let mut buf = vec![0u8; 2 * sluice::codec::ack::ACK_LEN];
    s.read_exact(&mut buf).await.unwrap();
    for one in buf.chunks(sluice::codec::ack::ACK_LEN) {
        let ack = sluice::codec::ack::Ack::decode(one.try_into().unwrap()).unwrap();
        acks.push((ack.batch_id, ack.status));
    }
    assert_eq!(acks, [(1, Status::Malformed), (2, Status::Stored)]);
    drop(s);
    assert!(daemon.stop().success());
    assert_eq!(markers(&export(&data)), ["plain-0", "plain-1"]);
}

/// Empty acked batches leave no de-duplication record, so a flood of them
/// (new producers and batch ids) cannot grow the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_flood_stores_no_dedup_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let extra = format!("[retention]\nmax_bytes = \"1MiB\"\n{}", common::admin::admin_section(""));
    let daemon = Daemon::start(&data, &extra);
    let api = common::admin::ApiClient::new(&daemon.admin.unwrap().to_string());
    let empty = tell_batch(&key, 1, &[]);
    for producer in 0..6 {
        let mut c = AckedClient::with_producer(&daemon.tcp.to_string(), [producer; 16]).await.unwrap();
        for id in 0..500u64 {
            c.send(id, &empty).await.unwrap();
        }
        for _ in 0..500 {
            let ack = c.recv_ack().await.unwrap();
            assert_eq!((ack.status, ack.count), (Status::Stored, 0));
        }
    }
    let records = tokio::task::spawn_blocking(move || common::admin::metric(&api, "sluice_dedup_records"));
    assert_eq!(records.await.unwrap(), 0);
    assert!(daemon.stop().success());
    let size = std::fs::metadata(data.join("events.redb")).unwrap().len();
    assert!(size < 2 << 20, "events.redb grew to {size} bytes");
}
