//! `prometheus`: CoreDNS's query metrics and the `/metrics` endpoint. See README.md.
//!
//! The plugin has no handler in the chain. CoreDNS's handler wraps the rest of the chain to see
//! the answer's size, but the size is only known once the server has encoded (and maybe
//! truncated) the answer, so ferrodns records a query after that final encode through the
//! block's [`QueryRecorder`]: one recorder per block and listener, holding its label values and
//! the counter handles it has already resolved, so a query costs atomic adds, not label lookups.

pub mod process;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::histogram::{Histogram, TIME_BUCKETS};
use crate::plugin::observe::{BlockObserver, QueryRecorder};
use crate::plugin::setup::{HttpReply, Observer, Setup, SetupResult};
use crate::plugin::{Chain, Proto, Request};

/// Where metrics are served when no address is given.
const DEFAULT_ADDR: &str = "localhost:9153";

/// The request and response size buckets of CoreDNS's `vars` package.
pub static SIZE_BUCKETS: [f64; 14] = [
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16e3, 32e3, 48e3, 64e3,
];

/// The query types CoreDNS labels by name (`vars/monitor.go`); every other type is "other".
const MONITORED_TYPES: [RecordType; 18] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::DNSKEY,
    RecordType::DS,
    RecordType::MX,
    RecordType::NSEC3,
    RecordType::NSEC,
    RecordType::NS,
    RecordType::PTR,
    RecordType::RRSIG,
    RecordType::SOA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::HTTPS,
    RecordType::IXFR,
    RecordType::AXFR,
    RecordType::ANY,
];

/// The `type` label: the type's name when CoreDNS monitors it, otherwise "other".
pub fn type_label(qtype: RecordType) -> &'static str {
    match type_index(qtype) {
        Some(i) => MONITORED_TYPES[i].into(),
        None => "other",
    }
}

fn type_index(qtype: RecordType) -> Option<usize> {
    // A match rather than a search of MONITORED_TYPES: this runs for every query. The test
    // `type_index_follows_monitored_types` keeps the two in step.
    Some(match qtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::CNAME => 2,
        RecordType::DNSKEY => 3,
        RecordType::DS => 4,
        RecordType::MX => 5,
        RecordType::NSEC3 => 6,
        RecordType::NSEC => 7,
        RecordType::NS => 8,
        RecordType::PTR => 9,
        RecordType::RRSIG => 10,
        RecordType::SOA => 11,
        RecordType::SRV => 12,
        RecordType::TXT => 13,
        RecordType::HTTPS => 14,
        RecordType::IXFR => 15,
        RecordType::AXFR => 16,
        RecordType::ANY => 17,
        _ => return None,
    })
}

/// An rcode as CoreDNS's `rcode.ToString` names it: miekg/dns's name, else `RCODE<n>`.
pub fn rcode_name(rcode: u16) -> std::borrow::Cow<'static, str> {
    match crate::plugin::mnemonic::rcode_name(rcode) {
        Some(name) => name.into(),
        None => format!("RCODE{rcode}").into(),
    }
}

// Label sets, with fields in alphabetical order: Go's client writes labels sorted by name, so
// the exposition reads the same as CoreDNS's.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    goversion: String,
    revision: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnabledLabels {
    name: String,
    server: String,
    view: String,
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    family: String,
    proto: String,
    server: String,
    r#type: String,
    view: String,
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    server: String,
    view: String,
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtoLabels {
    proto: String,
    server: String,
    view: String,
    zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RcodeLabels {
    plugin: String,
    rcode: String,
    server: String,
    view: String,
    zone: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Durations are observed in nanoseconds and exported in seconds.
fn time_histogram() -> Histogram {
    Histogram::new(&TIME_BUCKETS, 1e-9)
}

fn size_histogram() -> Histogram {
    Histogram::new(&SIZE_BUCKETS, 1.0)
}

/// CoreDNS's core metrics, registered once per process (see [`crate::metrics`]).
#[derive(Clone)]
pub struct DnsMetrics {
    plugin_enabled: Family<EnabledLabels, Gauge>,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<ZoneLabels>,
    request_size: HistogramFamily<ProtoLabels>,
    response_size: HistogramFamily<ProtoLabels>,
    do_requests: Family<ZoneLabels, Counter>,
    responses: Family<RcodeLabels, Counter>,
}

/// prometheus-client appends the final period of a help text itself; CoreDNS's texts have one.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

impl DnsMetrics {
    pub fn register(reg: &mut Registry) -> Self {
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                goversion: "rust".into(),
                revision: String::new(),
                version: crate::VERSION.into(),
            })
            .set(1);
        reg.register(
            "coredns_build_info",
            help(
                "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            ),
            build_info,
        );
        reg.register_collector(Box::new(process::ProcessCollector));
        let panics = Counter::<u64>::default();
        reg.register(
            "coredns_panics",
            help("A metrics that counts the number of panics."),
            panics.clone(),
        );
        // Count every panic, then report it as before. Registration happens once per process
        // (see `Metrics::family`), so the hook is chained once.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            panics.inc();
            previous(info);
        }));
        let m = DnsMetrics {
            plugin_enabled: Family::default(),
            requests: Family::default(),
            duration: Family::new_with_constructor(time_histogram),
            request_size: Family::new_with_constructor(size_histogram),
            response_size: Family::new_with_constructor(size_histogram),
            do_requests: Family::default(),
            responses: Family::default(),
        };
        reg.register(
            "coredns_plugin_enabled",
            help(
                "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            ),
            m.plugin_enabled.clone(),
        );
        reg.register(
            "coredns_dns_requests",
            help("Counter of DNS requests made per zone, protocol and family."),
            m.requests.clone(),
        );
        reg.register(
            "coredns_dns_request_duration_seconds",
            help("Histogram of the time (in seconds) each request took per zone."),
            m.duration.clone(),
        );
        reg.register(
            "coredns_dns_request_size_bytes",
            help("Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol."),
            m.request_size.clone(),
        );
        reg.register(
            "coredns_dns_do_requests",
            help("Counter of DNS requests with DO bit set per zone."),
            m.do_requests.clone(),
        );
        reg.register(
            "coredns_dns_response_size_bytes",
            help("Size of the returned response in bytes."),
            m.response_size.clone(),
        );
        reg.register(
            "coredns_dns_responses",
            help("Counter of response status codes."),
            m.responses.clone(),
        );
        m
    }
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    let text = match d.args.as_slice() {
        [] => DEFAULT_ADDR.to_string(),
        [addr] => addr.text.clone(),
        _ => return Err(d.arg_err()),
    };
    crate::plugin::parse::split_host_port(&text)
        .map_err(|msg| crate::plugin::SetupError { loc: None, msg })?;
    if let Some(line) = d.block.first() {
        return Err(match line.name.as_str() {
            // CoreDNS 1.14 can serve metrics over TLS; this build cannot, and says so rather
            // than serving them in the clear.
            "tls" => line.err("tls for metrics is not supported by this build"),
            other => line.err(format!("unknown option: {other}")),
        });
    }
    let addr = crate::plugin::parse::listen_addr(&text).map_err(|msg| d.err(msg))?;

    let metrics = c.shared.metrics.family(DnsMetrics::register);
    let registry = c.shared.metrics.clone();
    c.shared.add_http(
        addr,
        "/metrics",
        Arc::new(move || HttpReply {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: registry.encode(),
        }),
    );
    c.block
        .observers
        .push(Observer(Arc::new(PrometheusObserver { metrics })));
    Ok(None)
}

struct PrometheusObserver {
    metrics: DnsMetrics,
}

impl BlockObserver for PrometheusObserver {
    fn attach(&self, server: &str, zone: &str, chain: &Chain) -> Option<Arc<dyn QueryRecorder>> {
        // CoreDNS lists the block's handlers; `prometheus` is one there, so name it too.
        let mut names = chain.names();
        if !names.contains(&"prometheus") {
            names.push("prometheus");
        }
        for name in &names {
            self.metrics
                .plugin_enabled
                .get_or_create(&EnabledLabels {
                    name: (*name).into(),
                    server: server.into(),
                    view: String::new(),
                    zone: zone.into(),
                })
                .set(1);
        }
        Some(Arc::new(Recorder::new(
            self.metrics.clone(),
            server,
            zone,
            chain.names(),
        )))
    }

    fn attach_listener(&self, server: &str) -> Option<Arc<dyn QueryRecorder>> {
        Some(Arc::new(Recorder::new(
            self.metrics.clone(),
            server,
            "dropped",
            Vec::new(),
        )))
    }
}

/// Rcodes that get a resolved handle per plugin (0..=23 covers every named rcode).
const RCODES: usize = 24;

/// The metrics of one block on one listener, with handles resolved on first use.
pub struct Recorder {
    metrics: DnsMetrics,
    server: String,
    zone: String,
    /// The chain's plugin names; `responses` handles are resolved per name and rcode, with
    /// the empty name (a reply the server wrote) last.
    plugins: Vec<&'static str>,
    /// [proto][family][type index, "other" last]
    requests: [[[OnceLock<Counter>; MONITORED_TYPES.len() + 1]; 2]; 2],
    duration: OnceLock<Histogram>,
    do_requests: OnceLock<Counter>,
    request_size: [OnceLock<Histogram>; 2],
    response_size: [OnceLock<Histogram>; 2],
    responses: Box<[OnceLock<Counter>]>,
}

impl Recorder {
    fn new(metrics: DnsMetrics, server: &str, zone: &str, mut plugins: Vec<&'static str>) -> Self {
        plugins.push("");
        let responses = (0..plugins.len() * RCODES)
            .map(|_| OnceLock::new())
            .collect();
        Recorder {
            metrics,
            server: server.into(),
            zone: zone.into(),
            plugins,
            requests: Default::default(),
            duration: OnceLock::new(),
            do_requests: OnceLock::new(),
            request_size: Default::default(),
            response_size: Default::default(),
            responses,
        }
    }

    fn zone_labels(&self) -> ZoneLabels {
        ZoneLabels {
            server: self.server.clone(),
            view: String::new(),
            zone: self.zone.clone(),
        }
    }

    fn proto_labels(&self, proto: Proto) -> ProtoLabels {
        ProtoLabels {
            proto: proto.as_str().into(),
            server: self.server.clone(),
            view: String::new(),
            zone: self.zone.clone(),
        }
    }

    /// Count one response; the handle is resolved once per plugin and rcode, and used by
    /// reference (no `Arc` clone per query).
    fn count_response(&self, rcode: u16, plugin: &'static str) {
        let make = || {
            self.metrics.responses.get_or_create_owned(&RcodeLabels {
                plugin: plugin.into(),
                rcode: rcode_name(rcode).into_owned(),
                server: self.server.clone(),
                view: String::new(),
                zone: self.zone.clone(),
            })
        };
        // By address first: the name a plugin writes on its answers is normally the very
        // string its `name()` returns, so no text is compared per query.
        let slot = self
            .plugins
            .iter()
            .position(|p| std::ptr::eq(*p, plugin))
            .or_else(|| self.plugins.iter().position(|p| *p == plugin));
        match slot {
            Some(i) if (rcode as usize) < RCODES => {
                self.responses[i * RCODES + rcode as usize]
                    .get_or_init(make)
                    .inc();
            }
            _ => {
                make().inc();
            }
        }
    }
}

impl QueryRecorder for Recorder {
    fn record(
        &self,
        req: &Request,
        rcode: ResponseCode,
        plugin: &'static str,
        size: usize,
        start: Instant,
    ) {
        let elapsed = start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.record_ns(req, rcode, plugin, size, elapsed);
    }

    fn record_ns(
        &self,
        req: &Request,
        rcode: ResponseCode,
        plugin: &'static str,
        size: usize,
        elapsed_ns: u64,
    ) {
        let m = &self.metrics;
        let proto = match req.proto {
            Proto::Udp => 0,
            Proto::Tcp => 1,
        };
        let family = usize::from(req.family() == 2);
        if req.do_bit() {
            self.do_requests
                .get_or_init(|| m.do_requests.get_or_create_owned(&self.zone_labels()))
                .inc();
        }
        let qtype = req.qtype();
        let t = type_index(qtype).unwrap_or(MONITORED_TYPES.len());
        self.requests[proto][family][t]
            .get_or_init(|| {
                m.requests.get_or_create_owned(&RequestLabels {
                    family: if family == 1 { "2" } else { "1" }.into(),
                    proto: req.proto.as_str().into(),
                    server: self.server.clone(),
                    r#type: type_label(qtype).into(),
                    view: String::new(),
                    zone: self.zone.clone(),
                })
            })
            .inc();
        self.duration
            .get_or_init(|| m.duration.get_or_create_owned(&self.zone_labels()))
            .observe_units(elapsed_ns);
        self.response_size[proto]
            .get_or_init(|| {
                m.response_size
                    .get_or_create_owned(&self.proto_labels(req.proto))
            })
            .observe_units(size as u64);
        self.request_size[proto]
            .get_or_init(|| {
                m.request_size
                    .get_or_create_owned(&self.proto_labels(req.proto))
            })
            .observe_units(req.wire_len as u64);
        self.count_response(u16::from(rcode), plugin);
    }
}

#[cfg(test)]
pub(crate) mod tests;
