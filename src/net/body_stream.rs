//! Streamed response bodies (live tail, export, backup): a producer, async
//! or on the blocking pool, feeds a bounded channel that the response body
//! drains as the client reads.
//!
//! ```text
//!  producer ── BodySender::send (waits for room: bounded by `stall`,
//!              shutdown, a client gone) ──► channel (capacity pieces) ──► body
//! ```
//!
//! The channel is bounded in pieces and in bytes (`max_bytes`: a piece waits
//! until the client has taken enough of the earlier ones), so a client that
//! stops reading pins at most `max_bytes` however large the pieces are.
//! The wait is on the channel itself, never a sleep loop. A sender may keep
//! `keep` slots free for a last message (an error trailer, a drop notice)
//! that must never wait ([`BodySender::send_last`]). [`Streams`] caps how
//! many producers run at once: each holds a blocking thread or a read
//! snapshot, so a client opening streams without reading them cannot pile
//! them up.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Why a producer must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    #[error("the client went away")]
    Gone,
    #[error("the client read nothing for too long")]
    Stalled,
    #[error("the daemon is shutting down")]
    Shutdown,
}

/// The cap on streams running at once.
#[derive(Debug, Clone)]
pub struct Streams {
    slots: Arc<Semaphore>,
}

/// How one stream is fed.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    /// Pieces the channel holds.
    pub capacity: usize,
    /// Bytes the channel holds (a larger piece is let through alone).
    pub max_bytes: usize,
    /// Slots kept free for [`BodySender::send_last`].
    pub keep: usize,
    /// Longest wait for the client to make room.
    pub stall: Duration,
}

impl Streams {
    pub fn new(max: usize) -> Streams {
        Streams { slots: Arc::new(Semaphore::new(max)) }
    }

    /// A sender and the body's receiver, or `None` when every slot is taken.
    /// Call from async context (a blocking producer uses the runtime's handle).
    pub fn open(&self, shape: StreamShape, shutdown: CancellationToken) -> Option<(BodySender, BodyReceiver)> {
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        let capacity = shape.capacity.max(shape.keep + 1);
        let (tx, rx) = mpsc::channel(capacity);
        let max_bytes = shape.max_bytes.clamp(1, u32::MAX as usize);
        let bytes = Arc::new(Semaphore::new(max_bytes));
        let sender = BodySender {
            tx,
            bytes: bytes.clone(),
            max_bytes,
            keep: shape.keep,
            stall: shape.stall,
            shutdown,
            handle: Handle::current(),
            _slot: slot,
        };
        Some((sender, BodyReceiver { rx, bytes }))
    }
}

/// The producer's end of a streamed body; its slot is free when dropped.
#[derive(Debug)]
pub struct BodySender {
    /// Each piece with the bytes of the budget it holds.
    tx: mpsc::Sender<(Bytes, usize)>,
    bytes: Arc<Semaphore>,
    max_bytes: usize,
    keep: usize,
    stall: Duration,
    shutdown: CancellationToken,
    handle: Handle,
    _slot: OwnedSemaphorePermit,
}

impl BodySender {
    /// Queues a piece once the client has made room (keeping `keep` slots free).
    pub async fn send(&self, piece: Bytes) -> Result<(), Stop> {
        if self.shutdown.is_cancelled() {
            return Err(Stop::Shutdown);
        }
        let charge = piece.len().min(self.max_bytes);
        let room = async {
            let bytes = u32::try_from(charge).unwrap_or(u32::MAX);
            tokio::select! {
                r = async {
                    let held = self.bytes.acquire_many(bytes).await.map_err(|_| Stop::Gone)?;
                    let slots = self.tx.reserve_many(1 + self.keep).await.map_err(|_| Stop::Gone)?;
                    Ok((held, slots))
                } => r,
                _ = self.tx.closed() => Err(Stop::Gone),
                _ = self.shutdown.cancelled() => Err(Stop::Shutdown),
            }
        };
        let (held, mut slots) = tokio::time::timeout(self.stall, room).await.map_err(|_| Stop::Stalled)??;
        // The receiver gives the bytes back when the body takes the piece.
        held.forget();
        // The other slots are dropped unused: that keeps them free.
        if let Some(p) = slots.next() {
            p.send((piece, charge));
        }
        Ok(())
    }

    /// [`Self::send`] from a blocking thread.
    pub fn send_blocking(&self, piece: Bytes) -> Result<(), Stop> {
        self.handle.block_on(self.send(piece))
    }

    /// Queues a last piece without waiting (into a kept slot); false if it did not fit.
    pub fn send_last(&self, piece: Bytes) -> bool {
        self.tx.try_send((piece, 0)).is_ok()
    }

    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Resolves when the client goes away (its body is dropped), so an idle
    /// producer gives its slot back at once.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Whether the daemon is stopping.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// The body's end: pieces in order, each one's bytes given back as it is taken.
#[derive(Debug)]
pub struct BodyReceiver {
    rx: mpsc::Receiver<(Bytes, usize)>,
    bytes: Arc<Semaphore>,
}

impl BodyReceiver {
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        Pin::new(&mut self.rx).poll_recv(cx).map(|item| {
            item.map(|(piece, charge)| {
                self.bytes.add_permits(charge);
                piece
            })
        })
    }

    pub async fn recv(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn try_recv(&mut self) -> Result<Bytes, mpsc::error::TryRecvError> {
        let (piece, charge) = self.rx.try_recv()?;
        self.bytes.add_permits(charge);
        Ok(piece)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: StreamShape =
        StreamShape { capacity: 3, max_bytes: 1 << 20, keep: 1, stall: Duration::from_millis(50) };

    #[tokio::test]
    async fn a_stalled_client_stops_the_producer_and_the_kept_slot_takes_the_trailer() {
        let streams = Streams::new(4);
        let (tx, mut rx) = streams.open(SHAPE, CancellationToken::new()).unwrap();
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert_eq!(tx.send(Bytes::from_static(b"c")).await, Err(Stop::Stalled), "the last slot is kept");
        assert!(tx.send_last(Bytes::from_static(b"trailer")));
        assert_eq!(&rx.recv().await.unwrap()[..], b"a");
        assert_eq!(tx.send(Bytes::from_static(b"c")).await, Err(Stop::Stalled), "the trailer holds the kept slot");
        assert_eq!(&rx.recv().await.unwrap()[..], b"b");
        tx.send(Bytes::from_static(b"d")).await.unwrap();
        drop(rx);
        assert_eq!(tx.send(Bytes::from_static(b"e")).await, Err(Stop::Gone));
    }

    #[tokio::test]
    async fn shutdown_ends_a_wait_and_slots_are_capped() {
        let streams = Streams::new(1);
        let shutdown = CancellationToken::new();
        let slow = StreamShape { stall: Duration::from_secs(60), ..SHAPE };
        let (tx, _rx) = streams.open(slow, shutdown.clone()).unwrap();
        assert!(streams.open(slow, shutdown.clone()).is_none(), "one stream at a time");
        tx.send(Bytes::new()).await.unwrap();
        tx.send(Bytes::new()).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send(Bytes::new()).await });
        shutdown.cancel();
        assert_eq!(waiting.await.unwrap(), Err(Stop::Shutdown));
        assert!(streams.open(slow, shutdown).is_some(), "the slot came back with the sender");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocking_producer_waits_on_the_channel() {
        let streams = Streams::new(1);
        let (tx, mut rx) = streams.open(SHAPE, CancellationToken::new()).unwrap();
        let producer = tokio::task::spawn_blocking(move || {
            (0..10u8).map(|i| tx.send_blocking(Bytes::from(vec![i]))).collect::<Result<Vec<()>, Stop>>()
        });
        let mut got = Vec::new();
        while let Some(piece) = rx.recv().await {
            got.push(piece[0]);
        }
        assert!(producer.await.unwrap().is_ok());
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn the_channel_is_bounded_in_bytes_too() {
        let streams = Streams::new(1);
        let shape = StreamShape { capacity: 1000, max_bytes: 1000, keep: 0, stall: Duration::from_millis(50) };
        let (tx, mut rx) = streams.open(shape, CancellationToken::new()).unwrap();
        tx.send(Bytes::from(vec![0; 600])).await.unwrap();
        tx.send(Bytes::from(vec![1; 400])).await.unwrap();
        assert_eq!(tx.send(Bytes::from(vec![2; 10])).await, Err(Stop::Stalled), "1000 bytes are queued");
        assert_eq!(rx.recv().await.unwrap().len(), 600);
        tx.send(Bytes::from(vec![2; 10])).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().len(), 400);
        assert_eq!(rx.recv().await.unwrap().len(), 10);
        tx.send(Bytes::from(vec![3; 5000])).await.unwrap_or_else(|e| panic!("a large piece goes alone: {e}"));
    }
}
