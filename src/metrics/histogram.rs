//! A histogram with fixed bucket bounds, observed with two relaxed atomic
//! adds and no lock (the acked path observes several per batch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds for durations of a stage of the acked path, in seconds: 10 µs to 5 s.
pub const STAGE_SECONDS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];
/// Bounds for the batches in one commit.
pub const GROUP_BATCHES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
/// Bounds for the chunk bytes in one commit.
pub const GROUP_BYTES: &[f64] =
    &[4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0, 16_777_216.0, 67_108_864.0, 268_435_456.0];

/// Counts per bucket (not cumulative), the sum and the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One more than `bounds`: the last counts what is above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum, in millionths of the unit (µs for seconds).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum_micros: AtomicU64::new(0) }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// `(sum, count, buckets)` as prometheus-client's encoder takes them:
    /// each bucket's own count (the encoder accumulates), the last at `+Inf`.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, n) in self.counts.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            count += n;
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        (self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6, count, buckets)
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_count_their_own_values_and_sum_to_the_count() {
        let h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4);
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
        assert!((sum - 6.0).abs() < 1e-9);
    }
}
