//! `ack = "replicated"`: answers held until JetStream has the events.
//!
//! The writer hands every answer of a committed batch (stored or
//! duplicate: a retry must not learn "duplicate" before the first attempt's
//! events are replicated) to [`Gate::hold`] instead of the client. The
//! forwarder calls [`Gate::acked`] after each PubAck with the workspace's
//! new cursor, which releases every answer whose events lie before it. An
//! answer still held after the timeout becomes `Unavailable` (the client
//! retries; its retry is a duplicate, held again until replicated).
//!
//! Only answers are held, not data: a batch's budget is given back at its
//! commit, so a stalled JetStream costs one small entry per batch waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::pipeline::Outcome;

/// Answers waiting for their events to reach JetStream.
#[derive(Debug)]
pub struct Gate {
    timeout: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Per workspace: the next sequence number JetStream does not have yet.
    acked: HashMap<u32, u64>,
    waiting: HashMap<u32, Vec<Waiter>>,
}

#[derive(Debug)]
struct Waiter {
    /// The sequence number after the batch's last event.
    end: u64,
    outcome: Outcome,
    reply: oneshot::Sender<Outcome>,
    deadline: Instant,
}

impl Gate {
    /// A gate that holds answers for at most `timeout`; the forwarder tells
    /// it the committed cursors when it starts ([`Gate::acked`]).
    pub fn new(timeout: Duration) -> Gate {
        Gate { timeout, state: Mutex::new(State::default()) }
    }

    /// Answers `reply` with `outcome` once JetStream has the batch's
    /// events; at once if it already has, or if there is nothing to wait for.
    pub fn hold(&self, workspace: u32, outcome: Outcome, reply: oneshot::Sender<Outcome>) {
        let end = match outcome {
            Outcome::Stored { first_seq, count } | Outcome::Duplicate { first_seq, count } if count > 0 => {
                first_seq.saturating_add(u64::from(count))
            }
            _ => {
                let _ = reply.send(outcome);
                return;
            }
        };
        let mut state = self.lock();
        if state.acked.get(&workspace).copied().unwrap_or(1) >= end {
            drop(state);
            let _ = reply.send(outcome);
            return;
        }
        let deadline = Instant::now() + self.timeout;
        state.waiting.entry(workspace).or_default().push(Waiter { end, outcome, reply, deadline });
    }

    /// JetStream has every event of `workspace` before `next`.
    pub fn acked(&self, workspace: u32, next: u64) {
        let ready = {
            let mut state = self.lock();
            let acked = state.acked.entry(workspace).or_insert(next);
            *acked = (*acked).max(next);
            match state.waiting.get_mut(&workspace) {
                Some(waiting) => take(waiting, |w| w.end <= next),
                None => Vec::new(),
            }
        };
        for w in ready {
            let _ = w.reply.send(w.outcome);
        }
    }

    /// Answers `Unavailable` to everything held past its deadline; returns
    /// how many.
    pub fn expire(&self, now: Instant) -> usize {
        let late: Vec<Waiter> = {
            let mut state = self.lock();
            state.waiting.values_mut().flat_map(|waiting| take(waiting, |w| w.deadline <= now)).collect()
        };
        let n = late.len();
        for w in late {
            let _ = w.reply.send(Outcome::Unavailable);
        }
        n
    }

    /// Answers held now.
    pub fn held(&self) -> usize {
        self.lock().waiting.values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Removes and returns the waiters that `pick` selects.
fn take(waiting: &mut Vec<Waiter>, pick: impl Fn(&Waiter) -> bool) -> Vec<Waiter> {
    let (out, keep) = std::mem::take(waiting).into_iter().partition(pick);
    *waiting = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(gate: &Gate, ws: u32, outcome: Outcome) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        gate.hold(ws, outcome, tx);
        rx
    }

    #[test]
    fn answers_wait_for_their_events_and_duplicates_too() {
        let gate = Gate::new(Duration::from_secs(60));
        gate.acked(1, 11);
        let mut old = held(&gate, 1, Outcome::Stored { first_seq: 1, count: 10 });
        assert_eq!(old.try_recv(), Ok(Outcome::Stored { first_seq: 1, count: 10 }), "already replicated");
        let mut a = held(&gate, 1, Outcome::Stored { first_seq: 11, count: 5 });
        let mut b = held(&gate, 1, Outcome::Duplicate { first_seq: 16, count: 5 });
        let mut other = held(&gate, 2, Outcome::Stored { first_seq: 1, count: 1 });
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        gate.acked(1, 16);
        assert_eq!(a.try_recv(), Ok(Outcome::Stored { first_seq: 11, count: 5 }));
        assert!(b.try_recv().is_err(), "its events are not all there");
        gate.acked(1, 21);
        assert_eq!(b.try_recv(), Ok(Outcome::Duplicate { first_seq: 16, count: 5 }));
        assert!(other.try_recv().is_err(), "another workspace");
        let mut refused = held(&gate, 1, Outcome::Unavailable);
        assert_eq!(refused.try_recv(), Ok(Outcome::Unavailable), "nothing to wait for");
    }

    #[test]
    fn an_answer_held_too_long_becomes_unavailable() {
        let gate = Gate::new(Duration::from_millis(10));
        let mut a = held(&gate, 3, Outcome::Stored { first_seq: 1, count: 2 });
        assert_eq!(gate.expire(Instant::now()), 0);
        assert_eq!(gate.expire(Instant::now() + Duration::from_millis(20)), 1);
        assert_eq!(a.try_recv(), Ok(Outcome::Unavailable));
        assert_eq!(gate.held(), 0);
    }
}
