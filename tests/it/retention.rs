//! `[retention]` end to end: the real daemon deletes events past `max_age`
//! and, past `max_bytes`, the oldest events, while ingest goes on; the
//! freed pages are reused so the file stops growing.

use crate::common;

use std::time::{Duration, Instant};

use common::admin::{metric, start_admin};
use common::{create_key, export, hex_key};
use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

/// One event whose payload is `{"marker": marker, "pad": <pad bytes that do not compress>}`.
fn event_batch(key: &[u8; 16], batch_id: u64, marker: &str, pad: usize) -> Vec<u8> {
    // xorshift: pad bytes LZ4 cannot squeeze, so stored bytes track sent bytes.
    let mut x = batch_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..pad)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let payload = format!("{{\"marker\":\"{marker}\",\"pad\":\"{noise}\"}}");
    let event = EventParams {
        event_type: EventType::Track,
        timestamp: 1,
        service: None,
        device_id: Some(&[4u8; 16]),
        session_id: None,
        event_name: Some("retention"),
        payload: Some(payload.as_bytes()),
    };
    tell_batch(key, batch_id, &[event])
}

async fn send(c: &mut AckedClient, key: &[u8; 16], id: u64, marker: &str, pad: usize) {
    let ack = c.send_and_wait(id, &event_batch(key, id, marker, pad)).await.unwrap();
    assert_eq!(ack.status, Status::Stored, "{marker}");
}

fn markers(data: &std::path::Path) -> Vec<String> {
    export(data).iter().map(|e| e["payload"]["marker"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_age_deletes_what_was_received_before_the_cutoff_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let (daemon, api) = start_admin(&data, "[retention]\nmax_age = \"2s\"\ncheck_interval = \"100ms\"\n");
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    for i in 0..3 {
        send(&mut c, &key, i + 1, &format!("old-{i}"), 10).await;
    }
    let expired = "sluice_events_expired_total{reason=\"max_age\"}";
    assert_eq!(metric(&api, expired), 0, "nothing is older than 2s yet");

    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&api, expired) < 3 {
        assert!(Instant::now() < deadline, "old events were not deleted; log:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send(&mut c, &key, 10, "new", 10).await;
    assert_eq!(metric(&api, expired), 3, "a fresh event is kept");
    assert_eq!(metric(&api, "sluice_events_expired_total{reason=\"max_bytes\"}"), 0);
    drop(c);
    assert!(daemon.stop().success());
    assert_eq!(markers(&data), ["new"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_keeps_the_newest_events_and_the_file_stops_growing() {
    const LIMIT: u64 = 1 << 20;
    const PAD: usize = 32 * 1024;
    const BATCHES: u64 = 960; // 30 MiB sent: thirty times the limit
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let (daemon, api) = start_admin(&data, "[retention]\nmax_bytes = \"1MiB\"\ncheck_interval = \"100ms\"\n");
    let mut c = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    let file = data.join("events.redb");
    let mut size_at_half = 0;
    for i in 0..BATCHES {
        send(&mut c, &key, i + 1, &format!("m{i}"), PAD).await;
        if i == BATCHES / 2 {
            size_at_half = std::fs::metadata(&file).unwrap().len();
        }
    }
    let stored = "sluice_stored_chunk_bytes";
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&api, stored) > LIMIT {
        assert!(Instant::now() < deadline, "still over the limit; log:\n{}", daemon.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expired = metric(&api, "sluice_events_expired_total{reason=\"max_bytes\"}");
    let size_at_end = std::fs::metadata(&file).unwrap().len();
    drop(c);
    assert!(daemon.stop().success());

    // Only the newest events are left, as one unbroken run up to the last.
    let left = markers(&data);
    let first: u64 = left[0][1..].parse().unwrap();
    let expected: Vec<String> = (first..BATCHES).map(|i| format!("m{i}")).collect();
    assert_eq!(left, expected);
    assert_eq!(expired, first, "every deleted event is counted");
    // Each event is ~32 KiB stored: about 1 MiB of them remain.
    assert!((20..=32).contains(&left.len()), "{} events left", left.len());
    // Freed pages are reused: the file (redb grows it by doubling) is far
    // smaller than what was sent, and the second half of the load fit in
    // the pages the first half freed.
    let sent = BATCHES * PAD as u64;
    assert!(size_at_end < sent * 2 / 3, "a {size_at_end}-byte file after {sent} bytes sent");
    assert!(size_at_end <= size_at_half + size_at_half / 4, "file grew from {size_at_half} to {size_at_end} bytes");
}
