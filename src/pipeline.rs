//! The hand-off between sources and the writer thread: a bounded crossbeam
//! channel of [`Batch`]es under a byte budget for data in flight.
//!
//! A source first takes a [`Permit`] for the bytes it is about to decode
//! ([`Pipeline::reserve`] waits, which is how TCP readers stop reading when
//! the budget is spent; [`Pipeline::try_reserve`] fails at once, for sources
//! that must shed instead). The permit travels inside the batch and is given
//! back when the writer is done with it, after the commit.
//!
//! Every batch is charged at least [`MIN_CHARGE`] bytes, so the number of
//! batches in flight is bounded by `budget / MIN_CHARGE`; the channel is sized
//! for that many, so a send with a permit in hand never blocks.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::codec::frame::AckedHeader;

/// Smallest charge per batch against the byte budget.
pub const MIN_CHARGE: usize = 4096;

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

/// One unit of work for the writer: a chunk of records for one workspace.
#[derive(Debug)]
pub struct Batch {
    pub workspace: u32,
    /// Number of records in `chunk`.
    pub count: u32,
    /// The encoded chunk value (see `store::chunk`).
    pub chunk: Vec<u8>,
    /// Set for acked batches: the de-duplication identity.
    pub dedup: Option<AckedHeader>,
    /// Where to report the outcome, for sources that answer their clients.
    pub reply: Option<oneshot::Sender<Outcome>>,
    /// Bytes held against the budget until the batch is dropped.
    pub permit: Permit,
}

impl Batch {
    /// Reports the outcome, if anyone is listening.
    pub fn complete(&mut self, outcome: Outcome) {
        if let Some(reply) = self.reply.take() {
            // The client may have gone away; the outcome is then moot.
            let _ = reply.send(outcome);
        }
    }
}

/// Bytes held against the in-flight budget.
#[derive(Debug)]
pub struct Permit {
    _inner: OwnedSemaphorePermit,
}

/// The pipeline's sending side; cheap to clone, one per source.
#[derive(Debug, Clone)]
pub struct Pipeline {
    tx: Sender<Batch>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// The pipeline is closed: the writer has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed(pub Box<Batch>);

impl Pipeline {
    /// Makes a pipeline with `budget_bytes` of room for data in flight.
    pub fn new(budget_bytes: usize) -> (Pipeline, Receiver<Batch>) {
        let budget_bytes = budget_bytes.clamp(MIN_CHARGE, u32::MAX as usize);
        let (tx, rx) = crossbeam_channel::bounded(budget_bytes / MIN_CHARGE + 1);
        let budget = Arc::new(Semaphore::new(budget_bytes));
        (Pipeline { tx, budget, budget_bytes }, rx)
    }

    fn charge(&self, bytes: usize) -> u32 {
        // A single item larger than the whole budget still gets through, alone.
        bytes.clamp(MIN_CHARGE, self.budget_bytes) as u32
    }

    /// Waits until `bytes` fit in the budget.
    pub async fn reserve(&self, bytes: usize) -> Permit {
        let n = self.charge(bytes);
        match self.budget.clone().acquire_many_owned(n).await {
            Ok(p) => Permit { _inner: p },
            // The semaphore is never closed; wait forever rather than overrun.
            Err(_) => std::future::pending().await,
        }
    }

    /// Takes `bytes` of budget if they are free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<Permit> {
        let n = self.charge(bytes);
        self.budget.clone().try_acquire_many_owned(n).ok().map(|p| Permit { _inner: p })
    }

    /// Hands a batch to the writer. Never blocks: the permit guarantees room.
    pub fn submit(&self, batch: Batch) -> Result<(), Closed> {
        self.tx.try_send(batch).map_err(|e| Closed(Box::new(e.into_inner())))
    }

    /// Bytes currently held by batches not yet done.
    pub fn inflight_bytes(&self) -> usize {
        self.budget_bytes - self.budget.available_permits()
    }

    pub fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(p: &Pipeline, permit: Permit) -> Batch {
        let _ = p;
        Batch { workspace: 1, count: 0, chunk: Vec::new(), dedup: None, reply: None, permit }
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
