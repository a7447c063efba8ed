//! The byte budget for data in flight, charged for bytes as they arrive.
//!
//! ```text
//!  ┌──────────────── max_inflight_bytes (global) ─────────────────┐
//!  │ ┌── untrusted share (a quarter) ──┐                           │
//!  │ │ per connection ≤ max_untrusted  │  trusted connections,     │
//!  │ │ bytes until a key is verified   │  each ≤ max_connection_   │
//!  │ └─────────────────────────────────┘  bytes between frames     │
//!  └───────────────────────────────────────────────────────────────┘
//! ```
//!
//! Every connection has an [`Account`]. A reader charges the account for
//! the bytes it has just received ([`Account::charge`]), never for a length
//! a peer announced, and hands the charge on with the batch it built
//! ([`Account::take`]); the writer drops it after the commit.
//!
//! A peer is *trusted* once it has shown a valid streaming key, matched an
//! `allowed_sources` entry, or reached a listener that accepts anyone. Until
//! then its bytes are charged to the untrusted share as well as to the
//! global budget, so all keyless peers together can hold at most a quarter of
//! the budget, and each at most `max_untrusted_bytes`. A connection that
//! holds its limit stops reading ([`Account::wait_room`]) until commits give
//! bytes back; a frame already started may finish (it is bounded by the
//! listener's frame limit, and untrusted peers may not start one larger than
//! `max_untrusted_bytes`).
//!
//! Every wait takes a deadline: a connection that cannot get room in time is
//! cut ([`Starved`]), so a full budget can delay a peer but never hold it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Smallest charge per batch handed to the writer: the pipeline's channel is
/// sized for `budget / MIN_CHARGE` batches, so a batch with a permit in hand
/// always finds a slot.
pub const MIN_CHARGE: usize = 4096;
/// The untrusted share is this fraction of the whole budget.
const UNTRUSTED_SHARE_DIVISOR: usize = 4;

/// Per-connection limits (`[pipeline] max_untrusted_bytes`, `max_connection_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub untrusted_bytes: usize,
    pub connection_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits { untrusted_bytes: 1 << 20, connection_bytes: 4 << 20 }
    }
}

/// A wait for budget passed its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no room in the in-flight budget before the deadline")]
pub struct Starved;

/// The shared budget; cheap to clone.
#[derive(Debug, Clone)]
pub struct Budget {
    global: Arc<Semaphore>,
    total: usize,
    untrusted: Arc<Semaphore>,
    untrusted_total: usize,
    limits: ConnLimits,
}

impl Budget {
    /// A budget of `total` bytes (clamped to `MIN_CHARGE ..= u32::MAX`).
    pub fn new(total: usize, limits: ConnLimits) -> Budget {
        let total = total.clamp(MIN_CHARGE, u32::MAX as usize);
        let untrusted_total = (total / UNTRUSTED_SHARE_DIVISOR).max(MIN_CHARGE);
        Budget {
            global: Arc::new(Semaphore::new(total)),
            total,
            untrusted: Arc::new(Semaphore::new(untrusted_total)),
            untrusted_total,
            limits,
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Bytes held now by everything not yet committed.
    pub fn held(&self) -> usize {
        self.total - self.global.available_permits()
    }

    /// Bytes held now by peers not yet trusted.
    pub fn untrusted_held(&self) -> usize {
        self.untrusted_total - self.untrusted.available_permits()
    }

    /// What a charge of `bytes` takes: an item larger than the whole budget
    /// still gets through, alone.
    fn clamp(&self, bytes: usize) -> u32 {
        bytes.min(self.total) as u32
    }

    /// Waits for `bytes` of the global budget (internal writers: no account).
    pub async fn reserve(&self, bytes: usize) -> Permit {
        let n = self.clamp(bytes.max(MIN_CHARGE));
        match self.global.clone().acquire_many_owned(n).await {
            Ok(p) => Permit { global: Some(p), ..Permit::default() },
            // The semaphore is never closed; wait forever rather than overrun.
            Err(_) => std::future::pending().await,
        }
    }

    /// Takes `bytes` of the global budget if they are free now (sources that shed).
    pub fn try_reserve(&self, bytes: usize) -> Option<Permit> {
        let n = self.clamp(bytes.max(MIN_CHARGE));
        let p = self.global.clone().try_acquire_many_owned(n).ok()?;
        Some(Permit { global: Some(p), ..Permit::default() })
    }

    async fn acquire(sem: &Arc<Semaphore>, n: u32, deadline: Instant) -> Result<OwnedSemaphorePermit, Starved> {
        if let Ok(p) = sem.clone().try_acquire_many_owned(n) {
            return Ok(p);
        }
        match tokio::time::timeout_at(deadline, sem.clone().acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(Starved),
        }
    }
}

/// Bytes one connection holds, shared with the permits it handed on.
#[derive(Debug, Default)]
struct Share {
    held: AtomicUsize,
    freed: Notify,
}

/// Budget held: given back when dropped (after the commit).
#[derive(Debug, Default)]
pub struct Permit {
    global: Option<OwnedSemaphorePermit>,
    untrusted: Option<OwnedSemaphorePermit>,
    /// The connection this was charged to, and how much of it.
    conn: Option<ConnHold>,
}

/// Bytes held on a connection's account; given back when dropped.
#[derive(Debug)]
struct ConnHold {
    share: Arc<Share>,
    bytes: usize,
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        self.share.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.share.freed.notify_waiters();
    }
}

impl Permit {
    /// Bytes of the global budget this permit holds.
    pub fn bytes(&self) -> usize {
        self.global.as_ref().map_or(0, |p| p.num_permits())
    }

    fn absorb(&mut self, mut other: Permit) {
        merge(&mut self.global, other.global.take());
        merge(&mut self.untrusted, other.untrusted.take());
        if let Some(mut theirs) = other.conn.take() {
            match &mut self.conn {
                Some(mine) => mine.bytes += std::mem::take(&mut theirs.bytes),
                None => self.conn = Some(theirs),
            }
        }
    }
}

fn merge(into: &mut Option<OwnedSemaphorePermit>, from: Option<OwnedSemaphorePermit>) {
    match (into.as_mut(), from) {
        (Some(a), Some(b)) => a.merge(b),
        (None, Some(b)) => *into = Some(b),
        (_, None) => {}
    }
}

/// One connection's account against the budget.
#[derive(Debug)]
pub struct Account {
    budget: Budget,
    share: Arc<Share>,
    trusted: bool,
    /// Charged for bytes received but not yet handed on.
    pending: Permit,
}

impl Account {
    pub fn new(budget: &Budget, trusted: bool) -> Account {
        Account { budget: budget.clone(), share: Arc::default(), trusted, pending: Permit::default() }
    }

    pub fn is_trusted(&self) -> bool {
        self.trusted
    }

    /// Marks the peer trusted (a valid key) or not (a bad key after all).
    pub fn set_trusted(&mut self, trusted: bool) {
        self.trusted = trusted;
    }

    /// Most bytes this connection may hold before it stops reading.
    pub fn limit(&self) -> usize {
        let l = self.budget.limits;
        if self.trusted { l.connection_bytes } else { l.untrusted_bytes }
    }

    /// Bytes this connection holds now, handed on or not.
    pub fn held(&self) -> usize {
        self.share.held.load(Ordering::Acquire)
    }

    /// Waits until the connection holds less than its limit.
    pub async fn wait_room(&self, deadline: Instant) -> Result<(), Starved> {
        loop {
            let freed = self.share.freed.notified();
            if self.held() < self.limit() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Starved);
            }
        }
    }

    /// Charges `bytes` just received, waiting for room in the shared budget
    /// (and in the untrusted share, for a peer not yet trusted) until `deadline`.
    pub async fn charge(&mut self, bytes: usize, deadline: Instant) -> Result<(), Starved> {
        if bytes == 0 {
            return Ok(());
        }
        let mut got = Permit::default();
        if !self.trusted {
            let n = bytes.min(self.budget.untrusted_total) as u32;
            got.untrusted = Some(Budget::acquire(&self.budget.untrusted, n, deadline).await?);
        }
        let n = self.budget.clamp(bytes);
        got.global = Some(Budget::acquire(&self.budget.global, n, deadline).await?);
        self.share.held.fetch_add(n as usize, Ordering::AcqRel);
        got.conn = Some(ConnHold { share: self.share.clone(), bytes: n as usize });
        self.pending.absorb(got);
        Ok(())
    }

    /// Gives back what was charged and not handed on (bytes discarded).
    pub fn release_pending(&mut self) {
        self.pending = Permit::default();
    }

    /// Gives back what was charged and not handed on beyond `keep` bytes,
    /// which a protocol still holds outside its read buffer.
    pub fn release_pending_beyond(&mut self, keep: usize) {
        if keep == 0 {
            return self.release_pending();
        }
        let p = &mut self.pending;
        for semaphore_permit in [&mut p.global, &mut p.untrusted] {
            if let Some(all) = semaphore_permit
                && all.num_permits() > keep
            {
                // The split-off part stays; the rest goes back as `all` drops.
                *semaphore_permit = all.split(keep);
            }
        }
        if let Some(conn) = &mut p.conn
            && conn.bytes > keep
        {
            let freed = conn.bytes - keep;
            conn.bytes = keep;
            conn.share.held.fetch_sub(freed, Ordering::AcqRel);
            conn.share.freed.notify_waiters();
        }
    }

    /// Everything charged so far, to travel with a batch: at least
    /// [`MIN_CHARGE`] of the global budget (topped up if need be).
    pub async fn take(&mut self, deadline: Instant) -> Result<Permit, Starved> {
        let mut permit = std::mem::take(&mut self.pending);
        let have = permit.bytes();
        if have < MIN_CHARGE {
            let n = self.budget.clamp(MIN_CHARGE - have);
            merge(&mut permit.global, Some(Budget::acquire(&self.budget.global, n, deadline).await?));
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    const LIMITS: ConnLimits = ConnLimits { untrusted_bytes: 64 << 10, connection_bytes: 256 << 10 };

    #[tokio::test]
    async fn charges_follow_received_bytes_and_return_on_drop() {
        let b = Budget::new(1 << 20, LIMITS);
        let mut a = Account::new(&b, true);
        a.charge(10, soon(10)).await.unwrap();
        a.charge(20, soon(10)).await.unwrap();
        assert_eq!((b.held(), a.held()), (30, 30));
        let p = a.take(soon(10)).await.unwrap();
        assert_eq!(p.bytes(), MIN_CHARGE, "topped up to the per-batch minimum");
        assert_eq!(a.held(), 30);
        drop(p);
        assert_eq!((b.held(), a.held()), (0, 0));
    }

    #[tokio::test]
    async fn what_a_protocol_keeps_stays_charged_and_the_rest_goes_back() {
        let b = Budget::new(1 << 20, LIMITS);
        let mut a = Account::new(&b, false);
        a.charge(40_000, soon(10)).await.unwrap();
        a.release_pending_beyond(4096);
        assert_eq!((b.held(), a.held(), b.untrusted_held()), (4096, 4096, 4096));
        a.release_pending_beyond(8192);
        assert_eq!(b.held(), 4096, "keeping more than is charged charges nothing");
        let p = a.take(soon(10)).await.unwrap();
        assert_eq!(a.held(), 4096, "the kept part travels with the batch");
        drop(p);
        assert_eq!((b.held(), a.held(), b.untrusted_held()), (0, 0, 0));
    }

    #[tokio::test]
    async fn untrusted_peers_share_a_quarter_of_the_budget() {
        let b = Budget::new(1 << 20, LIMITS);
        let mut hostile: Vec<Account> = (0..4).map(|_| Account::new(&b, false)).collect();
        for a in &mut hostile {
            a.charge(64 << 10, soon(10)).await.unwrap();
        }
        assert_eq!(b.untrusted_held(), 256 << 10);
        let mut fifth = Account::new(&b, false);
        assert_eq!(fifth.charge(1, soon(20)).await, Err(Starved), "the share is spent");
        let mut keyed = Account::new(&b, true);
        keyed.charge(512 << 10, soon(10)).await.unwrap();
        drop(hostile.pop());
        fifth.charge(1, soon(20)).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_at_its_limit_waits_until_its_commits_return() {
        let b = Budget::new(1 << 20, LIMITS);
        let mut a = Account::new(&b, false);
        a.charge(64 << 10, soon(10)).await.unwrap();
        assert_eq!(a.wait_room(soon(20)).await, Err(Starved));
        a.set_trusted(true);
        a.wait_room(soon(20)).await.unwrap();
        a.charge(192 << 10, soon(10)).await.unwrap();
        let held = a.take(soon(10)).await.unwrap();
        assert_eq!(a.wait_room(soon(20)).await, Err(Starved));
        let waiter = async { a.wait_room(soon(1000)).await };
        let release = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        };
        let (r, ()) = tokio::join!(waiter, release);
        r.unwrap();
    }

    #[tokio::test]
    async fn a_charge_larger_than_the_budget_takes_all_of_it() {
        let b = Budget::new(MIN_CHARGE * 2, LIMITS);
        let mut a = Account::new(&b, true);
        a.charge(usize::MAX / 2, soon(10)).await.unwrap();
        assert_eq!(b.held(), MIN_CHARGE * 2);
    }
}
