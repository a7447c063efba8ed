//! Rate limits for HTTP ingest: GCRA (governor, through
//! [`crate::auth::ratelimit::Limiter`]) per streaming key and client IP, or
//! per key only, or none. Checked after the key and before the body is
//! read, so a client over its quota costs no more than its headers.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::auth::ratelimit::{Limiter, Verdict};
use crate::config::{RateLimit, RateScope};

/// Keys (key, client) tracked at most; past this, new ones are refused
/// until idle ones are trimmed (see `Limiter`), so memory stays bounded.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RateKey {
    key_id: u64,
    ip: Option<IpAddr>,
}

/// The listener's rate limit.
#[derive(Debug)]
pub struct RateLimits {
    scope: RateScope,
    limiter: Option<Limiter<RateKey>>,
}

impl RateLimits {
    pub fn new(config: &RateLimit) -> RateLimits {
        let limiter = match config.per {
            RateScope::Off => None,
            _ => Some(Limiter::per_minute(config.requests_per_minute, MAX_TRACKED)),
        };
        RateLimits { scope: config.per, limiter }
    }

    /// Counts one request; `None` when rate limiting is off.
    pub fn check(&self, key_id: u64, client: IpAddr) -> Option<Verdict> {
        let limiter = self.limiter.as_ref()?;
        let ip = (self.scope == RateScope::KeyAndIp).then_some(crate::net::accept::client_block(client));
        Some(limiter.check(&RateKey { key_id, ip }))
    }

    /// Drops state of keys back to a full quota. Call about once a minute.
    pub fn housekeep(&self) {
        if let Some(l) = &self.limiter {
            l.housekeep();
        }
    }
}

/// How often rate-limiter memory is trimmed.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Trims a listener's limits (`limits(&ctx)`) once a minute until `shutdown`.
pub async fn housekeep<C>(ctx: Arc<C>, limits: fn(&C) -> &RateLimits, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        limits(&ctx).housekeep();
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn limits(per: RateScope, n: u32) -> RateLimits {
        RateLimits::new(&RateLimit { per, requests_per_minute: NonZeroU32::new(n).unwrap() })
    }

    #[test]
    fn scopes() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let both = limits(RateScope::KeyAndIp, 2);
        assert!(both.check(1, a).unwrap().allowed && both.check(1, a).unwrap().allowed);
        assert!(!both.check(1, a).unwrap().allowed);
        assert!(both.check(1, b).unwrap().allowed, "another client has its own quota");
        assert!(both.check(2, a).unwrap().allowed, "another key has its own quota");
        let key = limits(RateScope::Key, 1);
        assert!(key.check(1, a).unwrap().allowed);
        assert!(!key.check(1, b).unwrap().allowed, "one quota per key, whatever the client");
        assert_eq!(limits(RateScope::Off, 1).check(1, a), None);
    }
}
