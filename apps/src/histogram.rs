//! The latency histogram the measuring apps share.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Log-linear latency histogram: exact below 16 ns, then 8 buckets per
/// power of two.
const SUB_BUCKETS: u64 = 8;
const BUCKETS: usize = 16 + 60 * SUB_BUCKETS as usize;

fn bucket(ns: u64) -> usize {
    if ns < 16 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros() as u64; // >= 4
    let mantissa = (ns >> (exp - 3)) & (SUB_BUCKETS - 1);
    (16 + (exp - 4) * SUB_BUCKETS + mantissa) as usize
}

/// Lower bound of a bucket in ns.
fn bucket_floor(index: usize) -> u64 {
    if index < 16 {
        return index as u64;
    }
    let i = index as u64 - 16;
    let exp = i / SUB_BUCKETS + 4;
    let mantissa = i % SUB_BUCKETS;
    (1 << exp) | (mantissa << (exp - 3))
}

pub struct Histogram {
    counts: Vec<AtomicU32>,
    max_ns: AtomicU64,
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }

    pub fn record(&self, ns: u64) {
        self.counts[bucket(ns).min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// The latency at or below which `permille`/1000 of the samples fall.
    pub fn percentile(&self, permille: u64) -> u64 {
        let total: u64 = self
            .counts
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum();
        let target = (total * permille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(c.load(Ordering::Relaxed));
            if seen >= target {
                return bucket_floor(i);
            }
        }
        0
    }

    /// p50 and p99.
    pub fn summary2(&self) -> [u64; 2] {
        [self.percentile(500), self.percentile(990)]
    }

    /// p50, p99 and max.
    pub fn summary(&self) -> [u64; 3] {
        [
            self.percentile(500),
            self.percentile(990),
            self.max_ns.load(Ordering::Relaxed),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 15, 16, 17, 31, 32, 100, 1000, 12_345, 1 << 40] {
            let b = bucket(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let floor = bucket_floor(b);
            assert!(
                floor <= ns && ns - floor <= ns / 8 + 1,
                "{ns}: floor {floor}"
            );
        }
    }
}
