//! A fixed log-linear latency histogram: constant memory however long the
//! run, mergeable across connections, quantiles within ~3 %.
//!
//! Values below 32 have a bucket each. Above, every power of two is split
//! into 32 equal sub-buckets, so a bucket is at most 1/32 of its lower bound
//! wide; a quantile is reported as the middle of its bucket (clamped to the
//! exact minimum and maximum seen).

const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// 32 exact buckets, then 32 per power of two from 2^5 to 2^63.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS].into_boxed_slice(), total: 0, min: u64::MAX, max: 0 }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // ≥ SUB_BITS here
    let sub = (v >> (exp - SUB_BITS)) as usize & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The smallest value in bucket `i` and the bucket's width.
fn bucket_range(i: usize) -> (u64, u64) {
    if i < SUB {
        return (i as u64, 1);
    }
    let exp = ((i - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    ((1u64 << exp) + sub * width, width)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0.0..=1.0), or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least q·n values at or below it.
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        if rank >= self.total {
            return Some(self.max);
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, width) = bucket_range(i);
                let mid = lo + width / 2;
                return Some(mid.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_quantiles() {
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in [3, 1, 2, 5, 4] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(3));
        assert_eq!(h.quantile(1.0), Some(5));
        assert_eq!(h.quantile(0.0), Some(1));
    }

    #[test]
    fn quantiles_are_within_three_percent() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 7);
        }
        for (q, exact) in [(0.5, 350_000.0), (0.9, 630_000.0), (0.99, 693_000.0)] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - exact).abs() / exact < 0.032, "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(1.0), Some(700_000));
    }

    #[test]
    fn every_bucket_contains_its_values() {
        for v in (0..64).flat_map(|s| [1u64 << s, (1u64 << s) + 1, (1u64 << s).wrapping_mul(3) / 2, u64::MAX >> s]) {
            let (lo, width) = bucket_range(bucket_of(v));
            assert!(lo <= v && v - lo < width, "{v} not in [{lo}, +{width})");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::default(), Histogram::default(), Histogram::default());
        for v in 0..1000u64 {
            let v = v * v;
            if v % 3 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1000);
        for q in [0.1, 0.5, 0.99] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
    }
}
