//! A histogram with fixed buckets whose `observe` is three relaxed atomic adds.
//!
//! Why not prometheus-client's `Histogram`: it takes a mutex on every observation, and every
//! UDP thread records into the same few series (one per server block), so the lock would be
//! contended on the hot path. Counts are kept per bucket (not cumulative); the encoder sums
//! them, as the text format wants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

#[derive(Clone, Debug)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    bounds: &'static [f64],
    /// One counter per bound plus the +Inf bucket.
    counts: Box<[AtomicU64]>,
    count: AtomicU64,
    /// The sum of observations as f64 bits, updated with a compare-and-swap loop.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner {
            bounds,
            counts,
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        let inner = &*self.0;
        // First bucket whose upper bound is >= v (`le` semantics); past the end is +Inf.
        let i = inner.bounds.partition_point(|b| *b < v);
        inner.counts[i].fetch_add(1, Ordering::Relaxed);
        inner.count.fetch_add(1, Ordering::Relaxed);
        let mut old = inner.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match inner
                .sum
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
    }

    /// (upper bound, observations in that bucket alone), ending with +Inf.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        let inner = &*self.0;
        inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(inner.counts.iter())
            .map(|(b, c)| (b, c.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum.load(Ordering::Relaxed))
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
        // Count from the buckets so a scrape racing an observation stays consistent.
        let count = buckets.iter().map(|(_, c)| c).sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum(), count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_le_buckets() {
        static B: [f64; 3] = [1.0, 2.0, 4.0];
        let h = Histogram::new(&B);
        for v in [0.5, 1.0, 1.5, 4.0, 9.0] {
            h.observe(v);
        }
        assert_eq!(
            h.buckets(),
            vec![(1.0, 2), (2.0, 1), (4.0, 1), (f64::INFINITY, 1)]
        );
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), 16.0);
    }
}
