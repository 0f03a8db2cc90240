//! The metrics CoreDNS 1.14 exports for `forward`: two `coredns_forward_*` counters and the
//! `coredns_proxy_*` families of `plugin/pkg/proxy`, labelled `proxy_name="forward"`.
//!
//! CoreDNS 1.14 no longer exports `coredns_forward_requests_total`,
//! `coredns_forward_responses_total`, `coredns_forward_request_duration_seconds` or
//! `coredns_forward_healthcheck_failures_total` (its README lists them as deprecated, with their
//! `coredns_proxy_*` replacements), so neither does ferrodns.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::Metrics;
use crate::metrics::histogram::{Histogram, TIME_BUCKETS};
use crate::plugin::mnemonic::rcode_or_number;

pub type Labels = Vec<(&'static str, String)>;

/// CoreDNS's `plugin.TimeBuckets`, observed in nanoseconds with two atomic adds (every
/// forwarded query records one; prometheus-client's histogram would take a mutex).
fn time_buckets() -> Histogram {
    Histogram::new(&TIME_BUCKETS, 1e-9)
}

#[derive(Clone)]
pub struct ForwardMetrics {
    pub healthcheck_broken: Counter,
    pub max_concurrent_rejects: Counter,
    pub request_duration: Family<Labels, Histogram, fn() -> Histogram>,
    pub healthcheck_failures: Family<Labels, Counter>,
    pub conn_cache_hits: Family<Labels, Counter>,
    pub conn_cache_misses: Family<Labels, Counter>,
}

impl ForwardMetrics {
    pub fn get(m: &Metrics) -> Self {
        m.family(|r: &mut Registry| {
            let me = ForwardMetrics {
                healthcheck_broken: Counter::default(),
                max_concurrent_rejects: Counter::default(),
                request_duration: Family::new_with_constructor(time_buckets as fn() -> Histogram),
                healthcheck_failures: Family::default(),
                conn_cache_hits: Family::default(),
                conn_cache_misses: Family::default(),
            };
            r.register(
                "coredns_forward_healthcheck_broken",
                "Counter of the number of complete failures of the healthchecks.",
                me.healthcheck_broken.clone(),
            );
            r.register(
                "coredns_forward_max_concurrent_rejects",
                "Counter of the number of queries rejected because the concurrent queries were at maximum.",
                me.max_concurrent_rejects.clone(),
            );
            r.register(
                "coredns_proxy_request_duration_seconds",
                "Histogram of the time each request took.",
                me.request_duration.clone(),
            );
            r.register(
                "coredns_proxy_healthcheck_failures",
                "Counter of the number of failed healthchecks.",
                me.healthcheck_failures.clone(),
            );
            r.register(
                "coredns_proxy_conn_cache_hits",
                "Counter of connection cache hits per upstream and protocol.",
                me.conn_cache_hits.clone(),
            );
            r.register(
                "coredns_proxy_conn_cache_misses",
                "Counter of connection cache misses per upstream and protocol.",
                me.conn_cache_misses.clone(),
            );
            me
        })
    }
}

/// One upstream's metric handles, looked up once rather than per query.
pub struct UpstreamMetrics {
    to: String,
    family: ForwardMetrics,
    /// Duration histograms by rcode (0..=23), made on first use.
    durations: [OnceLock<Histogram>; 24],
    pub hc_failures: Counter,
    /// Cache hits and misses by transport: udp, tcp, tcp-tls.
    hits: [Counter; 3],
    misses: [Counter; 3],
}

pub const PROTO_NAMES: [&str; 3] = ["udp", "tcp", "tcp-tls"];

impl UpstreamMetrics {
    pub fn new(family: &ForwardMetrics, to: String) -> Self {
        let labels = |proto: &str| -> Labels {
            vec![
                ("proxy_name", "forward".into()),
                ("to", to.clone()),
                ("proto", proto.into()),
            ]
        };
        let hits = PROTO_NAMES.map(|p| family.conn_cache_hits.get_or_create(&labels(p)).clone());
        let misses =
            PROTO_NAMES.map(|p| family.conn_cache_misses.get_or_create(&labels(p)).clone());
        let hc_failures = family
            .healthcheck_failures
            .get_or_create(&vec![("proxy_name", "forward".into()), ("to", to.clone())])
            .clone();
        UpstreamMetrics {
            to,
            family: family.clone(),
            durations: Default::default(),
            hc_failures,
            hits,
            misses,
        }
    }

    pub fn observe(&self, rcode: u16, took: std::time::Duration) {
        let h = match self.durations.get(rcode as usize) {
            Some(slot) => slot.get_or_init(|| self.histogram(rcode)),
            None => &self.histogram(rcode),
        };
        h.observe_units(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
    }

    fn histogram(&self, rcode: u16) -> Histogram {
        self.family
            .request_duration
            .get_or_create(&vec![
                ("proxy_name", "forward".into()),
                ("to", self.to.clone()),
                ("rcode", rcode_or_number(rcode).into_owned()),
            ])
            .clone()
    }

    /// `proto`: 0 udp, 1 tcp, 2 tcp-tls.
    pub fn cache(&self, proto: usize, hit: bool) {
        if hit {
            self.hits[proto].inc();
        } else {
            self.misses[proto].inc();
        }
    }
}
