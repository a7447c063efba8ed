//! Streaming acknowledged batches of marked events, as the crash and
//! forwarding tests do: a window of acks outstanding, the ids acknowledged
//! durable collected, quiet at a broken connection.

use std::collections::BTreeSet;

use sluice::client::{AckedClient, tell_batch};
use sluice::codec::ack::Status;
use tell_encoding::{EventParams, EventType};

/// A batch `id` of `per` Tell events whose payloads carry the marker
/// `<prefix><id>-<i>`.
pub fn marked_batch(key: &[u8; 16], prefix: &str, id: u64, per: usize) -> Vec<u8> {
    let payloads: Vec<String> = (0..per).map(|i| format!("{{\"marker\":\"{prefix}{id}-{i}\"}}")).collect();
    let events: Vec<EventParams<'_>> = payloads
        .iter()
        .map(|p| EventParams {
            event_type: EventType::Track,
            timestamp: 1,
            service: None,
            device_id: Some(&[1u8; 16]),
            session_id: None,
            event_name: Some("marked"),
            payload: Some(p.as_bytes()),
        })
        .collect();
    tell_batch(key, id, &events)
}

/// Streams the batches `ids` (made by `batch`) with at most `window` acks
/// outstanding; returns the ids acknowledged durable. Stops quietly when
/// the connection breaks; `on_ack` sees the count so far.
pub async fn stream_acked(
    client: &mut AckedClient,
    ids: &[u64],
    window: usize,
    batch: impl Fn(u64) -> Vec<u8>,
    mut on_ack: impl FnMut(usize),
) -> BTreeSet<u64> {
    let mut durable = BTreeSet::new();
    let mut next = 0;
    loop {
        while next < ids.len() && client.outstanding() < window {
            if client.send(ids[next], &batch(ids[next])).await.is_err() {
                return durable;
            }
            next += 1;
        }
        if client.flush().await.is_err() || client.outstanding() == 0 {
            return durable;
        }
        match client.recv_ack().await {
            Ok(ack) => {
                assert!(
                    matches!(ack.status, Status::Stored | Status::Duplicate | Status::Unavailable),
                    "unexpected {ack:?}"
                );
                if ack.status.is_durable() {
                    durable.insert(ack.batch_id);
                }
                on_ack(durable.len());
            }
            Err(_) => return durable,
        }
    }
}
