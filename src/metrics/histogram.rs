//! A histogram with fixed buckets whose `observe` is two relaxed atomic adds.
//!
//! Why not prometheus-client's `Histogram`: it takes a mutex on every observation, and every
//! UDP thread records into the same few series (one per server block), so the lock would be
//! contended on the hot path. Here an observation adds one to its bucket and its value to the
//! sum, both plain integer adds: values are kept as whole `unit`s (bytes, nanoseconds), so the
//! sum needs no compare-and-swap loop, and the count is the sum of the buckets. Counts are kept
//! per bucket (not cumulative); the encoder sums them, as the text format wants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// CoreDNS's `plugin.TimeBuckets`: 0.25 ms doubling up to 8.192 s (request durations of the
/// server and of `forward`'s upstreams).
pub static TIME_BUCKETS: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
    2.048, 4.096, 8.192,
];

#[derive(Clone, Debug)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds, in the exported unit (seconds, bytes).
    bounds: &'static [f64],
    /// The size of one observed unit in the exported unit (1e-9 for nanoseconds as seconds).
    unit: f64,
    /// For each bound, the largest whole number of units whose value (`n * unit`, in floating
    /// point as the bound is compared) is within it, so an observation finds its bucket with
    /// integer comparisons.
    limits: Box<[u64]>,
    /// One counter per bound plus the +Inf bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, in units.
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64], unit: f64) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        let limits = bounds.iter().map(|&b| limit(b, unit)).collect();
        Histogram(Arc::new(Inner {
            bounds,
            unit,
            limits,
            counts,
            sum: AtomicU64::new(0),
        }))
    }

    /// Record `n` units (bytes, nanoseconds).
    pub fn observe_units(&self, n: u64) {
        let inner = &*self.0;
        // First bucket whose upper bound is >= n * unit (`le` semantics); past the end is +Inf.
        // A scan from the smallest bound, not a bisection: DNS sizes and durations are nearly
        // always in the first two or three buckets, where the scan stops at once.
        let i = inner
            .limits
            .iter()
            .position(|&l| l >= n)
            .unwrap_or(inner.limits.len());
        inner.counts[i].fetch_add(1, Ordering::Relaxed);
        inner.sum.fetch_add(n, Ordering::Relaxed);
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
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The sum in the exported unit.
    pub fn sum(&self) -> f64 {
        self.0.sum.load(Ordering::Relaxed) as f64 * self.0.unit
    }
}

/// The largest `n` with `n as f64 * unit <= bound` (0 when there is none: a bound below one
/// unit still holds the value 0).
fn limit(bound: f64, unit: f64) -> u64 {
    debug_assert!(bound >= 0.0 && bound.is_finite() && unit > 0.0);
    let within = |n: u64| n as f64 * unit <= bound;
    let mut n = (bound / unit).floor().clamp(0.0, (u64::MAX / 2) as f64) as u64;
    while within(n + 1) {
        n += 1;
    }
    while n > 0 && !within(n) {
        n -= 1;
    }
    n
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets = self.buckets();
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
        let h = Histogram::new(&B, 1.0);
        for v in [0, 1, 2, 4, 9] {
            h.observe_units(v);
        }
        assert_eq!(
            h.buckets(),
            vec![(1.0, 2), (2.0, 1), (4.0, 1), (f64::INFINITY, 1)]
        );
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), 16.0);
    }

    /// The integer limits pick the bucket the floating-point comparison picks, around every
    /// bound of the buckets `prometheus` uses.
    #[test]
    fn integer_limits_match_float_comparison() {
        static DURATION: [f64; 5] = [0.00025, 0.001, 0.0305, 0.512, 8.192];
        static SIZE: [f64; 4] = [0.0, 100.0, 1232.0, 65535.0];
        for (bounds, unit) in [
            (&DURATION[..], 1e-9),
            (&SIZE[..], 1.0),
            (&DURATION[..], 1e-6),
        ] {
            for &b in bounds {
                let near = (b / unit).round() as u64;
                for n in near.saturating_sub(3)..near + 3 {
                    let v = n as f64 * unit;
                    let by_float = bounds.partition_point(|x| *x < v);
                    let by_int = bounds
                        .iter()
                        .map(|&x| limit(x, unit))
                        .collect::<Vec<_>>()
                        .partition_point(|&l| l < n);
                    assert_eq!(by_float, by_int, "bound {b} unit {unit} n {n}");
                }
            }
        }
    }

    #[test]
    fn nanoseconds_are_exported_as_seconds() {
        static B: [f64; 2] = [0.001, 0.01];
        let h = Histogram::new(&B, 1e-9);
        h.observe_units(1_000_000); // exactly 1 ms: in the 0.001 bucket
        h.observe_units(1_000_001);
        assert_eq!(h.buckets(), vec![(0.001, 1), (0.01, 1), (f64::INFINITY, 0)]);
        assert!((h.sum() - 0.002000001).abs() < 1e-12);
    }
}
