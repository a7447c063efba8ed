//! The hand-off between sources and the writer thread: a bounded crossbeam
//! channel of [`Batch`]es under a byte budget for data in flight.
//!
//! A source charges the [`Budget`] (see `net::budget`) for the bytes it
//! receives, per connection; the [`Permit`] travels inside the batch and is
//! given back when the writer is done with it, after the commit. Sources
//! that must shed instead of waiting use [`Budget::try_reserve`].
//!
//! Every batch holds at least [`MIN_CHARGE`] bytes of the budget, so the
//! number of batches in flight is bounded by `budget / MIN_CHARGE`; the
//! channel is sized for that many, so a send with a permit in hand never
//! blocks.

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::oneshot;

pub use crate::net::budget::{Budget, ConnLimits, MIN_CHARGE, Permit};

/// What the store did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Committed in this transaction: `count` events from `first_seq`.
    Stored { first_seq: u64, count: u32 },
    /// Already committed earlier under the same (workspace, producer, batch id).
    Duplicate { first_seq: u64, count: u32 },
    /// Not committed (commit failed, store unavailable, shutting down).
    Unavailable,
}

/// The de-duplication identity of an acknowledged batch: who sent it (random
/// per client instance) and which batch it is. Whatever protocol carried
/// it, the store keys its de-dup record on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupId {
    pub producer: [u8; 16],
    pub batch_id: u64,
}

/// Events a central node took from an edge node through NATS
/// (`source::nats`). The writer files only those past the origin's
/// high-water mark, and moves the mark in the same transaction.
#[derive(Debug)]
pub struct Relayed {
    /// The edge's `node_id` and its data dir's incarnation.
    pub node: String,
    pub incarnation: u64,
    /// The edge's cursor when it published: its events from here up to
    /// `first_seq` are gone (retention dropped them unforwarded).
    pub from_seq: u64,
    /// The first event's sequence number on the edge.
    pub first_seq: u64,
    /// Chunk values (v2: with their origin) and event counts, in order.
    pub parts: Vec<(Vec<u8>, u32)>,
    /// File it even if events before `from_seq` never arrived (after a gap
    /// that redeliveries did not fill).
    pub accept_gap: bool,
}

/// One unit of work for the writer: a chunk of records for one workspace.
#[derive(Debug)]
pub struct Batch {
    pub workspace: u32,
    /// Number of records in `chunk`.
    pub count: u32,
    /// The encoded chunk value (see `store::chunk`).
    pub chunk: Vec<u8>,
    /// Set for acked batches: the de-duplication identity.
    pub dedup: Option<DedupId>,
    /// Set for events relayed from an edge node; `chunk` is then empty and
    /// `count` the events of all the parts.
    pub relayed: Option<Box<Relayed>>,
    /// Where to report the outcome, for sources that answer their clients.
    pub reply: Option<oneshot::Sender<Outcome>>,
    /// Bytes held against the budget until the batch is dropped.
    pub permit: Permit,
    /// When it was handed on (for `sluice_ack_stage_duration_seconds{stage="queue"}`).
    pub submitted: std::time::Instant,
}

impl Batch {
    /// The chunk bytes it holds (of every part, for a relayed batch).
    pub fn bytes(&self) -> usize {
        match &self.relayed {
            Some(r) => r.parts.iter().map(|(v, _)| v.len()).sum(),
            None => self.chunk.len(),
        }
    }

    /// Reports the outcome, if anyone is listening.
    pub fn complete(&mut self, outcome: Outcome) {
        if let Some(reply) = self.reply.take() {
            // The client may have gone away; the outcome is then moot.
            let _ = reply.send(outcome);
        }
    }
}

/// The pipeline's sending side; cheap to clone, one per source.
#[derive(Debug, Clone)]
pub struct Pipeline {
    tx: Sender<Batch>,
    budget: Budget,
}

/// The pipeline is closed: the writer has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed(pub Box<Batch>);

impl Pipeline {
    /// Makes a pipeline with `budget_bytes` of room for data in flight and
    /// the default per-connection limits.
    pub fn new(budget_bytes: usize) -> (Pipeline, Receiver<Batch>) {
        Pipeline::with_limits(budget_bytes, ConnLimits::default())
    }

    pub fn with_limits(budget_bytes: usize, limits: ConnLimits) -> (Pipeline, Receiver<Batch>) {
        let budget = Budget::new(budget_bytes, limits);
        let (tx, rx) = crossbeam_channel::bounded(budget.total() / MIN_CHARGE + 1);
        (Pipeline { tx, budget }, rx)
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Waits until `bytes` fit in the budget (internal writers, benches).
    pub async fn reserve(&self, bytes: usize) -> Permit {
        self.budget.reserve(bytes).await
    }

    /// Takes `bytes` of budget if they are free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<Permit> {
        self.budget.try_reserve(bytes)
    }

    /// Hands a batch to the writer. Never blocks: the permit guarantees room.
    pub fn submit(&self, batch: Batch) -> Result<(), Closed> {
        self.tx.try_send(batch).map_err(|e| Closed(Box::new(e.into_inner())))
    }

    /// Bytes currently held by batches not yet done.
    pub fn inflight_bytes(&self) -> usize {
        self.budget.held()
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(p: &Pipeline, permit: Permit) -> Batch {
        let _ = p;
        Batch {
            workspace: 1,
            count: 0,
            chunk: Vec::new(),
            dedup: None,
            relayed: None,
            reply: None,
            permit,
            submitted: std::time::Instant::now(),
        }
    }

    #[tokio::test]
    async fn budget_is_returned_when_the_batch_is_dropped() {
        let (p, rx) = Pipeline::new(3 * MIN_CHARGE);
        let a = p.reserve(2 * MIN_CHARGE).await;
        assert!(p.try_reserve(2 * MIN_CHARGE).is_none(), "over budget");
        p.submit(batch(&p, a)).unwrap();
        assert_eq!(p.inflight_bytes(), 2 * MIN_CHARGE);
        drop(rx.recv().unwrap());
        assert_eq!(p.inflight_bytes(), 0);
        assert!(p.try_reserve(3 * MIN_CHARGE).is_some());
    }

    #[tokio::test]
    async fn oversized_items_are_charged_the_whole_budget_not_refused() {
        let (p, _rx) = Pipeline::new(MIN_CHARGE * 2);
        let permit = p.try_reserve(usize::MAX);
        assert!(permit.is_some());
        assert_eq!(p.inflight_bytes(), MIN_CHARGE * 2);
    }

    #[tokio::test]
    async fn reserve_waits_for_room() {
        let (p, rx) = Pipeline::new(MIN_CHARGE);
        let first = p.reserve(1).await;
        p.submit(batch(&p, first)).unwrap();
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.reserve(1).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(rx.recv().unwrap());
        waiter.await.unwrap();
    }
}
