//! Rate limits: GCRA (governor) per client IP or per session, with the
//! numbers for the `X-RateLimit-*` headers.
//!
//! A quota of N per minute lets a burst of N through, then one more every
//! 60/N seconds. `Retry-After` is when the next request will pass;
//! `X-RateLimit-Reset` is when the full burst is back. A limiter with a
//! lockout ([`Limiter::with_lockout`], the auth endpoints: 60 s) refuses a
//! key that went over its quota for the whole lockout instead, so a password
//! guesser gets its burst and then nothing for a minute, and `Retry-After`
//! says so. Memory is bounded: keys idle long enough to be full again (and
//! lockouts that ended) are dropped every [`Limiter::housekeep`], and past
//! `max_keys` tracked keys new ones are refused until then, so a flood of
//! distinct keys cannot grow the maps.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The outcome of one check, with what the headers should say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full quota is available again.
    pub reset_secs: u64,
    /// Seconds until a request would pass (only when refused).
    pub retry_after_secs: Option<u64>,
}

impl Verdict {
    /// Writes `X-RateLimit-Limit`, `-Remaining`, `-Reset` and, on refusal, `Retry-After`.
    pub fn write_headers(&self, h: &mut http::HeaderMap) {
        use http::header::{HeaderValue, RETRY_AFTER};
        h.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
        if let Some(retry) = self.retry_after_secs {
            h.insert(RETRY_AFTER, HeaderValue::from(retry));
        }
    }
}

/// One limit ("N requests per minute per key").
pub struct Limiter<K: Hash + Eq + Clone> {
    inner: Keyed<K>,
    clock: DefaultClock,
    per_minute: NonZeroU32,
    max_keys: usize,
    lockout: Option<Duration>,
    /// Keys over their quota, refused until the instant given.
    locked: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for Limiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("per_minute", &self.per_minute).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn per_minute(per_minute: NonZeroU32, max_keys: usize) -> Limiter<K> {
        let clock = DefaultClock::default();
        let inner = RateLimiter::dashmap_with_clock(Quota::per_minute(per_minute), clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Limiter { inner, clock, per_minute, max_keys, lockout: None, locked: Mutex::new(HashMap::new()) }
    }

    /// A key that goes over its quota is refused for `lockout` from then on.
    pub fn with_lockout(mut self, lockout: Duration) -> Limiter<K> {
        self.lockout = Some(lockout);
        self
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &K) -> Verdict {
        let Some(lockout) = self.lockout else { return self.check_quota(key) };
        let now = Instant::now();
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = locked.get(key).copied() {
            if until > now {
                return self.refused_for(until - now);
            }
            locked.remove(key);
        }
        let v = self.check_quota(key);
        if v.allowed {
            return v;
        }
        if locked.len() >= self.max_keys {
            locked.retain(|_, until| *until > now);
        }
        if locked.len() < self.max_keys {
            locked.insert(key.clone(), now + lockout);
        }
        self.refused_for(lockout)
    }

    fn check_quota(&self, key: &K) -> Verdict {
        let limit = self.per_minute.get();
        if self.inner.len() >= self.max_keys {
            self.inner.retain_recent();
            if self.inner.len() >= self.max_keys {
                return self.refused(Duration::from_secs(60) / limit);
            }
        }
        match self.inner.check_key(key) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let reset = self.cell() * (limit - remaining);
                Verdict { allowed: true, limit, remaining, reset_secs: ceil_secs(reset), retry_after_secs: None }
            }
            Err(not_until) => self.refused(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Refused for the rest of a lockout; the quota is full again by its end.
    fn refused_for(&self, wait: Duration) -> Verdict {
        let retry = ceil_secs(wait).max(1);
        let limit = self.per_minute.get();
        Verdict { allowed: false, limit, remaining: 0, reset_secs: retry, retry_after_secs: Some(retry) }
    }

    fn refused(&self, wait: Duration) -> Verdict {
        let limit = self.per_minute.get();
        let reset = wait + self.cell() * (limit - 1);
        let retry = ceil_secs(wait).max(1);
        Verdict {
            allowed: false,
            limit,
            remaining: 0,
            reset_secs: ceil_secs(reset).max(retry),
            retry_after_secs: Some(retry),
        }
    }

    /// Time for one request to be replenished.
    fn cell(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }

    /// Drops keys that are back to a full quota. Call about once a minute.
    pub fn housekeep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
        let now = Instant::now();
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        locked.retain(|_, until| *until > now);
        locked.shrink_to_fit();
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(n: u32, max_keys: usize) -> Limiter<u32> {
        Limiter::per_minute(NonZeroU32::new(n).unwrap(), max_keys)
    }

    #[test]
    fn a_burst_of_n_then_refusal_with_retry_after() {
        let l = limiter(10, 100);
        for i in 0..10 {
            let v = l.check(&1);
            assert!(v.allowed, "request {i}");
            assert_eq!((v.limit, v.remaining), (10, 9 - i));
        }
        let v = l.check(&1);
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
        let retry = v.retry_after_secs.unwrap();
        assert!((1..=6).contains(&retry), "{retry}");
        assert!(v.reset_secs >= 54 && v.reset_secs <= 60, "{}", v.reset_secs);
        assert!(l.check(&2).allowed, "keys are separate");
    }

    #[test]
    fn over_the_quota_a_key_is_locked_out_for_the_whole_lockout() {
        let l = limiter(10, 100).with_lockout(Duration::from_secs(60));
        for i in 0..10 {
            assert!(l.check(&1).allowed, "request {i}");
        }
        let v = l.check(&1);
        assert_eq!((v.allowed, v.retry_after_secs, v.reset_secs), (false, Some(60), 60));
        // Still refused though the quota alone would let one through in 6 s.
        let again = l.check(&1);
        assert!(!again.allowed && (59..=60).contains(&again.retry_after_secs.unwrap()));
        assert!(l.check(&2).allowed, "keys are separate");

        let short = limiter(1, 100).with_lockout(Duration::from_millis(50));
        assert!(short.check(&1).allowed);
        assert!(!short.check(&1).allowed);
        std::thread::sleep(Duration::from_millis(60));
        short.housekeep();
        assert!(short.locked.lock().unwrap().is_empty(), "ended lockouts are dropped");
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let l = limiter(5, 3);
        for k in 0..3 {
            assert!(l.check(&k).allowed);
        }
        assert!(!l.check(&99).allowed, "a fourth key is refused while three are tracked");
        assert!(l.len() <= 3);
    }
}
