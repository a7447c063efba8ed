//! `[sources.nats]`: the central side of forwarding. A durable JetStream
//! pull consumer takes the messages edge nodes published
//! (`forward::message`) and stores their events under their workspace,
//! each with its origin (`origin_node`, `origin_seq`).
//!
//! Exactly once, in order: every message is a [`Relayed`] batch, and the
//! writer stores only the events past the high-water mark of its origin
//! (edge node, incarnation, workspace), moving the mark in the same
//! transaction. A message is acknowledged to JetStream only after that
//! commit; a redelivered or re-sent one is acknowledged and skipped. A
//! message whose earlier events have not arrived is refused by the writer
//! and delivered again later (`Nak` with a growing delay), so a redelivery
//! that overtakes a later message cannot be lost; one whose gap stays open
//! for [`GAP_DELIVERIES`] deliveries (minutes, far past the ack wait) is
//! stored anyway and counted in `sluice_relay_gaps_total` (JetStream lost
//! the events before it, say a purge).
//!
//! Fetched messages are processed strictly in stream order, several at a
//! time (they share group commits). A message of an unknown format, or that
//! does not decode, is not dropped: it is left unacknowledged (`Nak` with a
//! long delay) for a later version, counted and logged.
//!
//! The consumer starts when the stream exists and retries until it does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::NatsSource;
use crate::forward::message::{self, header};
use crate::metrics::Metrics;
use crate::pipeline::{Batch, Outcome, Pipeline, Relayed};

/// Messages handed to the writer at once (and pulled per request).
const FETCH: usize = 64;
/// Bytes pulled per request (or one message of the server's `max_payload`
/// if that is more): far below what a server lets a client owe it
/// (`max_pending`, 64 MB by default) before it cuts it off as a slow
/// consumer, whatever the messages' size.
const FETCH_BYTES: usize = 16 << 20;
/// The server sends a heartbeat this often while a pull waits; two missed
/// make the client pull again (say after the consumer's leader moved).
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A pull request lives this long.
const PULL_EXPIRES: Duration = Duration::from_secs(30);
/// A message not stored (a gap before it, a failed commit) comes back after
/// this many seconds per delivery so far, at most [`RETRY_MAX`]: the waits
/// before [`GAP_DELIVERIES`] add up to far longer than [`ACK_WAIT`], so a
/// message before it that was lost in flight is delivered again first.
const RETRY: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// An undecodable message is offered again after this.
const UNDECODABLE_RETRY: Duration = Duration::from_secs(300);
/// Deliveries after which a gap before a message is accepted (after about
/// 7 minutes of waiting for the events before it).
pub const GAP_DELIVERIES: i64 = 30;
const ACK_WAIT: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs the consumer until `shutdown`.
pub async fn serve(config: NatsSource, pipeline: Pipeline, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    metrics.relay.enabled.store(true, Ordering::Relaxed);
    let client = match crate::forward::connect::connect(
        &config.servers,
        &config.auth(),
        &format!("sluice-consume-{}", config.consumer),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "[sources.nats] not started");
            return;
        }
    };
    let js = jetstream::new(client.clone());
    // A deleted consumer (or stream) is made again once the stream exists.
    while let Some(consumer) = open_consumer(&js, &config, &shutdown).await {
        tracing::info!(stream = %config.stream, consumer = %config.consumer, "consuming forwarded events from NATS JetStream");
        let fetch_bytes = FETCH_BYTES.max(client.max_payload());
        if !consume(&consumer, fetch_bytes, &pipeline, &metrics, &shutdown).await {
            return;
        }
    }
}

/// Pulls and stores until shutdown (false) or until the consumer is gone (true).
async fn consume(
    consumer: &jetstream::consumer::Consumer<pull::Config>,
    fetch_bytes: usize,
    pipeline: &Pipeline,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        let pulls =
            consumer.stream().max_messages_per_batch(FETCH).max_bytes_per_batch(fetch_bytes).heartbeat(HEARTBEAT);
        let pulls = pulls.expires(PULL_EXPIRES).messages().await;
        let mut messages = match pulls {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "pull from JetStream failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => return false,
                b = next_batch(&mut messages) => b,
            };
            match batch {
                Ok(batch) => process(batch, pipeline, metrics).await,
                // The pull stream pulls again by itself after other errors.
                Err(e) if e.is_terminal() => {
                    tracing::warn!(error = %e, "the JetStream consumer is gone; making it again");
                    return true;
                }
                Err(e) => tracing::debug!(error = %e, "pulling from JetStream"),
            }
        }
    }
}

/// A pull stream's error, and whether a new stream is needed.
struct PullError(String, bool);

impl PullError {
    fn is_terminal(&self) -> bool {
        self.1
    }
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The next message, and whatever else has already arrived (at most
/// [`FETCH`] in all), in stream order.
async fn next_batch(messages: &mut pull::Stream) -> Result<Vec<jetstream::Message>, PullError> {
    let first = match messages.next().await {
        Some(Ok(m)) => m,
        Some(Err(e)) => {
            let terminal = matches!(e.kind(), pull::MessagesErrorKind::ConsumerDeleted);
            return Err(PullError(e.to_string(), terminal));
        }
        None => return Err(PullError("the pull stream ended".into(), true)),
    };
    let mut out = vec![first];
    while out.len() < FETCH {
        match futures_util::FutureExt::now_or_never(messages.next()) {
            Some(Some(Ok(m))) => out.push(m),
            _ => break,
        }
    }
    Ok(out)
}

/// The durable consumer, once the stream exists.
async fn open_consumer(
    js: &jetstream::Context,
    config: &NatsSource,
    shutdown: &CancellationToken,
) -> Option<jetstream::consumer::Consumer<pull::Config>> {
    let want = pull::Config {
        durable_name: Some(config.consumer.clone()),
        filter_subject: config.filter_subject.clone().unwrap_or_default(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_deliver: -1,
        max_ack_pending: (FETCH * 4) as i64,
        deliver_policy: jetstream::consumer::DeliverPolicy::All,
        ..Default::default()
    };
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let result = async {
            let stream = js.get_stream(&config.stream).await.map_err(|e| e.to_string())?;
            stream.get_or_create_consumer(&config.consumer, want.clone()).await.map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(c) => return Some(c),
            Err(e) => {
                if !warned {
                    tracing::warn!(stream = %config.stream, error = %e, "JetStream stream not reachable yet; retrying until it is");
                    warned = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Hands every message of a fetch to the writer, then answers JetStream
/// for each, in order.
async fn process(batch: Vec<jetstream::Message>, pipeline: &Pipeline, metrics: &Metrics) {
    tracing::trace!(messages = batch.len(), "fetched");
    let mut pending = Vec::with_capacity(batch.len());
    for msg in batch {
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        match decode(&msg, delivered >= GAP_DELIVERIES) {
            Ok((workspace, relayed)) => {
                let (tx, rx) = oneshot::channel();
                let permit = pipeline.reserve(msg.payload.len()).await;
                let count = relayed.parts.iter().map(|(_, n)| *n).sum();
                let batch = Batch {
                    workspace,
                    count,
                    chunk: Vec::new(),
                    dedup: None,
                    relayed: Some(Box::new(relayed)),
                    reply: Some(tx),
                    permit,
                    submitted: Instant::now(),
                };
                if pipeline.submit(batch).is_err() {
                    return; // shutting down: JetStream delivers it again
                }
                pending.push((msg, Some((rx, delivered))));
            }
            Err(e) => {
                metrics.relay.undecodable.fetch_add(1, Ordering::Relaxed);
                if delivered <= 1 {
                    let subject = msg.subject.to_string();
                    tracing::warn!(subject, error = %e, "a NATS message sluice cannot read; left unacknowledged for a later version");
                }
                let _ = msg.ack_with(AckKind::Nak(Some(UNDECODABLE_RETRY))).await;
                pending.push((msg, None));
            }
        }
    }
    for (msg, waiting) in pending {
        let Some((rx, delivered)) = waiting else { continue };
        let outcome = rx.await.unwrap_or(Outcome::Unavailable);
        tracing::trace!(subject = %msg.subject, delivered, ?outcome, "relayed message");
        let answer = match outcome {
            Outcome::Stored { count: stored, .. } => {
                metrics.relay.events.fetch_add(u64::from(stored), Ordering::Relaxed);
                if delivered >= GAP_DELIVERIES {
                    metrics.relay.gaps.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(subject = %msg.subject, delivered, "stored a message although events before it never arrived");
                }
                AckKind::Ack
            }
            Outcome::Duplicate { .. } => {
                metrics.relay.skipped.fetch_add(1, Ordering::Relaxed);
                AckKind::Ack
            }
            // A gap or a failed commit: again later, in order with the rest.
            Outcome::Unavailable => AckKind::Nak(Some((RETRY * delivered.max(1) as u32).min(RETRY_MAX))),
        };
        if matches!(answer, AckKind::Ack) {
            metrics.relay.messages.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = msg.ack_with(answer).await {
            tracing::debug!(subject = %msg.subject, error = %e, "answer to JetStream not sent; it delivers the message again");
        }
    }
    tracing::trace!("answered");
}

/// A message as the writer's batch: its workspace and events.
fn decode(msg: &jetstream::Message, accept_gap: bool) -> Result<(u32, Relayed), String> {
    let headers = msg.headers.as_ref().ok_or("no headers")?;
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_string()).ok_or(format!("no {name} header"));
    let num = |name: &str| get(name)?.parse::<u64>().map_err(|e| format!("{name}: {e}"));
    let format = get(header::FORMAT)?;
    if format != message::CHUNK_FORMAT {
        return Err(format!("format {format:?} (this sluice reads {})", message::CHUNK_FORMAT));
    }
    let node = get(header::NODE)?;
    let incarnation = u64::from_str_radix(&get(header::INCARNATION)?, 16).map_err(|e| format!("incarnation: {e}"))?;
    let workspace = u32::try_from(num(header::WORKSPACE)?).map_err(|e| format!("workspace: {e}"))?;
    let (from_seq, first_seq, count) = (num(header::FROM_SEQ)?, num(header::FIRST_SEQ)?, num(header::COUNT)?);
    let parts = message::relayed_parts(&msg.payload, &node, first_seq)?;
    let events: u64 = parts.iter().map(|(_, n)| u64::from(*n)).sum();
    if events != count {
        return Err(format!("{events} events in the body, {count} in the header"));
    }
    Ok((workspace, Relayed { node, incarnation, from_seq, first_seq, parts, accept_gap }))
}
