//! The durability contract under `kill -9`: every acknowledged batch is on
//! disk after a restart, and a client that resends everything it has no ack
//! for (same producer, same ids) ends with every event stored exactly once.

use crate::common;

use std::collections::{BTreeSet, HashMap};

use common::acked::{marked_batch, stream_acked};
use common::{Daemon, create_key, export, hex_key};
use sluice::client::AckedClient;
use sluice::codec::ack::Status;

const BATCHES: u64 = 300;
const PER_BATCH: usize = 20;
const WINDOW: usize = 16;
const KILL_AFTER_ACKS: usize = 60;

fn batch(key: &[u8; 16], id: u64) -> Vec<u8> {
    marked_batch(key, "", id, PER_BATCH)
}

/// Streams batches `ids`; returns the ids acknowledged as durable.
async fn stream(client: &mut AckedClient, key: &[u8; 16], ids: &[u64], on_ack: impl FnMut(usize)) -> BTreeSet<u64> {
    stream_acked(client, ids, WINDOW, |id| batch(key, id), on_ack).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = hex_key(&create_key(&data, 1).1);
    let all: Vec<u64> = (1..=BATCHES).collect();

    let daemon = Daemon::start(&data, "");
    let mut client = AckedClient::connect(&daemon.tcp.to_string()).await.unwrap();
    let producer = client.producer();
    let pid = daemon.pid();
    let mut killed = false;
    let acked_before = stream(&mut client, &key, &all, |n| {
        if n >= KILL_AFTER_ACKS && !killed {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
    })
    .await;
    assert!(killed, "the daemon was killed mid-stream");
    assert!(acked_before.len() >= KILL_AFTER_ACKS);
    assert!(acked_before.len() < BATCHES as usize, "the kill landed before the end");
    daemon.kill();

    // Restart on the same data dir; resend everything not acknowledged.
    let daemon = Daemon::start(&data, "");
    let mut client = AckedClient::with_producer(&daemon.tcp.to_string(), producer).await.unwrap();
    let rest: Vec<u64> = all.iter().copied().filter(|id| !acked_before.contains(id)).collect();
    let acked_after = stream(&mut client, &key, &rest, |_| {}).await;
    assert_eq!(acked_after.len(), rest.len(), "every resent batch is acknowledged");
    // Resending an acknowledged batch is answered as a duplicate.
    let first = *acked_before.iter().next().unwrap();
    assert_eq!(client.send_and_wait(first, &batch(&key, first)).await.unwrap().status, Status::Duplicate);
    assert!(daemon.stop().success());

    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in export(&data) {
        *seen.entry(e["payload"]["marker"].as_str().unwrap().to_string()).or_default() += 1;
    }
    for id in all {
        for i in 0..PER_BATCH {
            let m = format!("{id}-{i}");
            assert_eq!(seen.get(&m), Some(&1), "marker {m} stored exactly once");
        }
    }
    assert_eq!(seen.len(), BATCHES as usize * PER_BATCH);
}
