//! `forward`: proxies queries to upstream resolvers over UDP, TCP or TLS, with in-band health
//! checking. See README.md.
//!
//! Several `forward` lines in one block are one handler here: CoreDNS chains them so that each
//! one's "next" is the following `forward`, which is what [`Forward::serve`] walks through.

mod metrics;
mod policy;
mod reply;
mod setup;
mod tls;
mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use rustls::pki_types::ServerName;

use crate::dnsname::is_subdomain;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Failure, Next, Plugin, Proto, Request, Response, Served};

use metrics::{ForwardMetrics, UpstreamMetrics};
use policy::Picker;
use setup::{Config, Transport};
use upstream::{ExchangeError, HealthCheck, Reply, Reuse, Upstream, Wire};

/// A query gives up after this long, whatever is left to try (CoreDNS's `defaultTimeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let family = ForwardMetrics::get(&c.shared.metrics);
    let mut stanzas = Vec::with_capacity(c.directives.len());
    for d in &c.directives {
        let cfg = setup::parse_stanza(d, &c.block.root)?;
        stanzas.push(Stanza::new(cfg, &family).map_err(|e| d.err(e))?);
    }
    Ok(Some(Arc::new(Forward { stanzas })))
}

pub struct Forward {
    stanzas: Vec<Stanza>,
}

/// One `forward FROM TO...` line with its upstreams.
struct Stanza {
    cfg: Config,
    upstreams: Vec<Arc<Upstream>>,
    picker: Picker,
    concurrent: AtomicU64,
    metrics: ForwardMetrics,
}

impl Stanza {
    fn new(cfg: Config, family: &ForwardMetrics) -> Result<Self, String> {
        let base_tls = match &cfg.tls {
            Some(files) => Some(tls::client_config(files)?),
            None if cfg.upstreams.iter().any(|u| u.transport == Transport::Tls) => {
                Some(tls::client_config(&Default::default())?)
            }
            None => None,
        };
        let reuse = Reuse {
            expire: cfg.expire,
            max_age: cfg.max_age,
            max_idle: cfg.max_idle_conns,
        };
        let health = HealthCheck {
            interval: cfg.health_check,
            domain: cfg.hc_domain.clone(),
            recursion_desired: cfg.hc_recursion_desired,
            tcp: cfg.force_tcp,
        };
        let mut upstreams = Vec::with_capacity(cfg.upstreams.len());
        for spec in &cfg.upstreams {
            let tls = match (&base_tls, spec.transport) {
                (Some(config), Transport::Tls) => {
                    // The name to verify: the TO's own `%NAME`, else `tls_servername`, else
                    // the address itself (its certificate must then name the IP).
                    let name = match spec.server_name.as_ref().or(cfg.tls_servername.as_ref()) {
                        Some(n) => ServerName::try_from(n.clone())
                            .map_err(|_| format!("invalid TLS server name '{n}'"))?,
                        None => ServerName::IpAddress(spec.addr.ip().into()),
                    };
                    Some((config.clone(), name))
                }
                _ => None,
            };
            let m = UpstreamMetrics::new(family, spec.label());
            upstreams.push(Arc::new(Upstream::new(spec, tls, health.clone(), reuse, m)));
        }
        Ok(Stanza {
            picker: Picker::new(cfg.policy),
            cfg,
            upstreams,
            concurrent: AtomicU64::new(0),
            metrics: family.clone(),
        })
    }

    /// FROM matches and no `except` zone does (the FROM zone itself is never excepted).
    fn matches(&self, name: &str) -> bool {
        if !is_subdomain(name, &self.cfg.from) {
            return false;
        }
        if name == self.cfg.from {
            return true;
        }
        !self.cfg.except.iter().any(|z| is_subdomain(name, z))
    }

    fn wants_next(&self, m: &Reply) -> bool {
        let rc = m.rcode();
        self.cfg.next.contains(&rc)
            || (self.cfg.next_on_nodata && rc == ResponseCode::NoError && m.no_answers())
    }

    /// Forward `req` to this stanza's upstreams, as CoreDNS's `Forward.ServeDNS` does: try
    /// them in policy order, skipping the ones that are down, going round again until an
    /// answer or the 5 s deadline.
    async fn forward(&self, req: &Request) -> Result<Reply, Failure> {
        let _slot = if self.cfg.max_concurrent > 0 {
            let n = self.concurrent.fetch_add(1, Ordering::AcqRel) + 1;
            let guard = ConcurrentGuard(&self.concurrent);
            if n > self.cfg.max_concurrent {
                self.metrics.max_concurrent_rejects.inc();
                return Err(Failure::error(
                    ResponseCode::Refused,
                    "forward",
                    format!(
                        "concurrent queries exceeded maximum {}",
                        self.cfg.max_concurrent
                    ),
                ));
            }
            Some(guard)
        } else {
            None
        };

        let mut query = match reply::query(req) {
            Some(q) => q,
            None => req.msg().to_vec().map_err(|e| {
                Failure::error(ResponseCode::ServFail, "forward", format!("pack: {e}"))
            })?,
        };
        let n = self.upstreams.len();
        let order = self.picker.order(n);
        let order = order.as_slice();
        let start = Instant::now();
        let deadline = start + DEFAULT_TIMEOUT;
        let (mut i, mut fails, mut attempts, mut failed_over) = (0usize, 0usize, 0u32, 0usize);
        let mut overloaded = 0usize;
        let mut last_err: Option<ExchangeError> = None;

        let mut round_start = start;
        let mut backoff = Duration::from_millis(10);
        // The clock is read once per pass: `now` is also when the attempt starts.
        let mut now = start;
        while now < deadline {
            if i >= n {
                i = 0;
                fails = 0;
                // A round in which every upstream failed at once (refused, overloaded) would
                // otherwise spin until the deadline: pause a little, longer each time.
                if round_start.elapsed() < Duration::from_millis(100) {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Boxed: rare, and a timer would otherwise enlarge every query's future.
                    Box::pin(tokio::time::sleep(backoff.min(left))).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                round_start = Instant::now();
                now = round_start;
            }
            let mut up = &self.upstreams[order[i] as usize];
            i += 1;
            if up.down(self.cfg.max_fails) {
                fails += 1;
                if fails < n {
                    now = Instant::now();
                    continue;
                }
                // Every upstream is down: health checking itself is probably what is broken.
                self.metrics.healthcheck_broken.inc();
                if self.cfg.failfast_all_unhealthy {
                    break;
                }
                up = &self.upstreams[rand::random_range(0..n)];
            }
            if self.cfg.max_connect_attempts != 0 && attempts >= self.cfg.max_connect_attempts {
                break;
            }
            attempts += 1;

            let result = self.attempt(up, req, &mut query, now, deadline).await;
            match result {
                Ok(m) if !self.cfg.failover.contains(&m.rcode()) || failed_over + 1 >= n => {
                    return Ok(m);
                }
                _ => now = Instant::now(),
            }
            match result {
                Err(e @ ExchangeError::Overloaded(_)) => {
                    // Our own limit on queries in flight, not the upstream's health. When every
                    // upstream is that busy, fail now: waiting would only let a flood towards a
                    // dead upstream pile up tasks until their deadline.
                    overloaded += 1;
                    last_err = Some(e);
                    if overloaded >= n {
                        break;
                    }
                }
                Err(e) => {
                    // Find out whether it is *our* upstream that is broken.
                    if self.cfg.max_fails != 0 {
                        up.start_probe();
                    }
                    last_err = Some(e);
                    if fails < n {
                        continue;
                    }
                    break;
                }
                // `failover`: the next upstream is asked instead.
                Ok(_) => failed_over += 1,
            }
        }
        let msg = match last_err {
            Some(e) => e.to_string(),
            None => "no healthy proxies".to_string(),
        };
        Err(Failure::error(ResponseCode::ServFail, "forward", msg))
    }

    /// One upstream, retried on a fresh connection when a reused one was closed, and over TCP
    /// when a UDP answer comes back truncated for a client that came over TCP.
    async fn attempt(
        &self,
        up: &Upstream,
        req: &Request,
        query: &mut [u8],
        mut now: Instant,
        deadline: Instant,
    ) -> Result<Reply, ExchangeError> {
        let mut wire = if up.is_tls() {
            Wire::Tls
        } else if self.cfg.force_tcp {
            Wire::Tcp
        } else if self.cfg.prefer_udp {
            Wire::Udp
        } else {
            match req.proto {
                Proto::Udp => Wire::Udp,
                Proto::Tcp => Wire::Tcp,
            }
        };
        let mut closed_retries = 0;
        loop {
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(ExchangeError::Timeout {
                    net: if wire == Wire::Udp { "udp" } else { "tcp" },
                    addr: up.addr,
                });
            }
            let start = now;
            match up
                .exchange(wire, query, req, self.cfg.read_timeout.min(left))
                .await
            {
                Err(ExchangeError::CachedClosed) if closed_retries < 16 => {
                    closed_retries += 1;
                    now = Instant::now();
                    continue;
                }
                // A reply too long for our UDP buffer: the same question over TCP gets it.
                Err(ExchangeError::TooLong) if wire == Wire::Udp => {
                    wire = Wire::Tcp;
                    now = Instant::now();
                    continue;
                }
                Ok(m) => {
                    up.metrics.observe(u16::from(m.rcode()), start.elapsed());
                    // A UDP client gets the truncated answer and retries over TCP itself; a
                    // TCP client (here only through `prefer_udp`) must not see TC.
                    if m.truncated() && wire == Wire::Udp && req.proto == Proto::Tcp {
                        wire = Wire::Tcp;
                        now = Instant::now();
                        continue;
                    }
                    return Ok(m);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

struct ConcurrentGuard<'a>(&'a AtomicU64);

impl Drop for ConcurrentGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Forward {
    fn first_match(&self, name: &str, from: usize) -> Option<usize> {
        (from..self.stanzas.len()).find(|&i| self.stanzas[i].matches(name))
    }
}

impl Plugin for Forward {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let Some(first) = self.first_match(req.name(), 0) else {
            return next.serve(req);
        };
        Served::pending(async move {
            let mut i = first;
            loop {
                let stanza = &self.stanzas[i];
                let m = stanza.forward(req).await?;
                // `next RCODE...`: only a following `forward` takes over; after the last one
                // the answer stands, as in CoreDNS.
                if i + 1 < self.stanzas.len() && stanza.wants_next(&m) {
                    match self.first_match(req.name(), i + 1) {
                        Some(j) => {
                            i = j;
                            continue;
                        }
                        None => return next.serve(req).await,
                    }
                }
                return Ok(answer(m, req));
            }
        })
    }
}

/// The reply as the client must see it: its own ID and question (with its own letter case).
/// A wire-form reply loses its OPT record, which the server replaces with the client's own
/// (the walk only let through an OPT that carries nothing else).
fn answer(reply: Reply, req: &Request) -> Response {
    match reply {
        Reply::Wire { mut bytes, plain } => {
            if let Some(at) = plain.opt_at {
                bytes.truncate(at);
                let arcount = u16::from_be_bytes([bytes[10], bytes[11]]).wrapping_sub(1);
                bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
            }
            bytes[..2].copy_from_slice(&req.id().to_be_bytes());
            copy_spelling(&mut bytes[12..plain.qname_end], req);
            Response::from_wire(bytes, "forward")
        }
        Reply::Parsed(mut m) => {
            m.metadata.id = req.id();
            m.queries.clear();
            m.queries.push(req.query().clone());
            Response::new(m, "forward")
        }
    }
}

/// Write the client's spelling of the question name over the reply's, which the walk found
/// equal ignoring case (so of the same shape).
fn copy_spelling(qname: &mut [u8], req: &Request) {
    if let Some(asked) = req.qname_wire() {
        if asked.len() == qname.len() {
            qname.copy_from_slice(asked);
        }
        return;
    }
    let mut pos = 0;
    for label in req.qname().iter() {
        let end = pos + 1 + label.len();
        if end >= qname.len() || usize::from(qname[pos]) != label.len() {
            return;
        }
        qname[pos + 1..end].copy_from_slice(label);
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;
    use crate::metrics::Metrics;
    use hickory_proto::op::Message;
    use std::path::Path;

    fn stanzas(text: &str) -> Forward {
        let corefile = parse_str("Corefile", &format!(". {{\n{text}\n}}\n"), Path::new("/"))
            .expect("corefile");
        let m = Metrics::new();
        let family = ForwardMetrics::get(&m);
        let stanzas = corefile.blocks[0]
            .directives
            .iter()
            .map(|d| Stanza::new(setup::parse_stanza(d, Path::new("/")).unwrap(), &family).unwrap())
            .collect();
        Forward { stanzas }
    }

    #[test]
    fn from_and_except_decide_which_stanza_serves() {
        let f = stanzas(
            "forward lab.example.local 10.20.0.1
             forward example.local 10.0.0.1 {
                except skip.example.local
             }
             forward . 10.0.0.2",
        );
        let cases = [
            ("a.lab.example.local.", Some(0)),
            ("lab.example.local.", Some(0)),
            ("example.local.", Some(1)),
            ("x.example.local.", Some(1)),
            ("skip.example.local.", Some(2)),
            ("a.skip.example.local.", Some(2)),
            ("example.org.", Some(2)),
        ];
        for (name, want) in cases {
            assert_eq!(f.first_match(name, 0), want, "{name}");
        }
        assert_eq!(f.first_match("example.org.", 3), None);
        let only = stanzas("forward example.org 10.0.0.1 {\nexcept example.org\n}");
        // The FROM zone itself stays forwarded even when listed in except.
        assert_eq!(only.first_match("example.org.", 0), Some(0));
        assert_eq!(only.first_match("example.net.", 0), None);
    }

    #[test]
    fn next_and_nodata_select_the_following_stanza() {
        let f = stanzas("forward . 10.0.0.1 {\nnext NXDOMAIN\nnext_on_nodata\n}");
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        assert!(f.stanzas[0].wants_next(&Reply::Parsed(m.clone())));
        m.metadata.response_code = ResponseCode::NoError;
        assert!(f.stanzas[0].wants_next(&Reply::Parsed(m.clone())), "NODATA");
        m.metadata.response_code = ResponseCode::ServFail;
        assert!(!f.stanzas[0].wants_next(&Reply::Parsed(m)));
    }

    /// A UDP upstream in this runtime that answers every query with NOERROR (after `delay`).
    async fn upstream(delay: Duration) -> std::net::SocketAddr {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let sock = Arc::new(sock);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, src)) = sock.recv_from(&mut buf).await {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let sock = sock.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
                    r.queries = q.queries.clone();
                    let _ = sock.send_to(&r.to_vec().unwrap(), src).await;
                });
            }
        });
        addr
    }

    fn request(name: &str) -> Request {
        let mut m = Message::query();
        m.metadata.id = 77;
        m.queries.push(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii(name).unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        let a: std::net::SocketAddr = "127.0.0.1:5353".parse().unwrap();
        Request::new(m, a, a, Proto::Udp, 40).unwrap()
    }

    fn build(text: &str, metrics: &Metrics) -> Forward {
        let corefile =
            parse_str("Corefile", &format!(". {{\n{text}\n}}\n"), Path::new("/")).unwrap();
        let family = ForwardMetrics::get(metrics);
        let stanzas = corefile.blocks[0]
            .directives
            .iter()
            .map(|d| Stanza::new(setup::parse_stanza(d, Path::new("/")).unwrap(), &family).unwrap())
            .collect();
        Forward { stanzas }
    }

    #[tokio::test]
    async fn metrics_carry_coredns_names_and_labels() {
        let up = upstream(Duration::ZERO).await;
        let metrics = Metrics::new();
        let f = build(&format!("forward . {up}"), &metrics);
        let resp = f
            .serve(&request("example.org."), Next::new(&[]))
            .await
            .unwrap();
        assert_eq!(resp.message().metadata.id, 77);
        let text = metrics.encode();
        for want in [
            format!(
                "coredns_proxy_request_duration_seconds_count{{proxy_name=\"forward\",to=\"{up}\",rcode=\"NOERROR\"}} 1"
            ),
            format!(
                "coredns_proxy_conn_cache_misses_total{{proxy_name=\"forward\",to=\"{up}\",proto=\"udp\"}} 1"
            ),
            format!(
                "coredns_proxy_healthcheck_failures_total{{proxy_name=\"forward\",to=\"{up}\"}} 0"
            ),
            "coredns_forward_healthcheck_broken_total 0".to_string(),
            "coredns_forward_max_concurrent_rejects_total 0".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
    }

    #[tokio::test]
    async fn max_concurrent_rejects_are_refused_and_counted() {
        let up = upstream(Duration::from_millis(300)).await;
        let metrics = Metrics::new();
        let f = build(
            &format!("forward . {up} {{\nmax_concurrent 1\n}}"),
            &metrics,
        );
        let (r1, r2) = (request("a.example."), request("b.example."));
        let slow = f.serve(&r1, Next::new(&[]));
        let fast = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            f.serve(&r2, Next::new(&[])).await
        };
        let (first, second) = tokio::join!(slow, fast);
        assert!(first.is_ok());
        let err = second.unwrap_err();
        assert_eq!(err.rcode, ResponseCode::Refused);
        assert_eq!(
            err.error.unwrap().to_string(),
            "plugin/forward: concurrent queries exceeded maximum 1"
        );
        assert!(
            metrics
                .encode()
                .contains("coredns_forward_max_concurrent_rejects_total 1")
        );
    }

    #[tokio::test]
    async fn all_down_counts_broken_and_failfast_answers_servfail() {
        let up = upstream(Duration::ZERO).await;
        let metrics = Metrics::new();
        let f = build(&format!("forward . {up}"), &metrics);
        f.stanzas[0].upstreams[0].set_fails(3);
        // Down, but it is the only one: it is asked anyway.
        assert!(
            f.serve(&request("x.example."), Next::new(&[]))
                .await
                .is_ok()
        );
        assert!(
            metrics
                .encode()
                .contains("coredns_forward_healthcheck_broken_total 1")
        );

        let f = build(
            &format!("forward . {up} {{\nfailfast_all_unhealthy_upstreams\n}}"),
            &metrics,
        );
        f.stanzas[0].upstreams[0].set_fails(3);
        let err = f
            .serve(&request("x.example."), Next::new(&[]))
            .await
            .unwrap_err();
        assert_eq!(err.rcode, ResponseCode::ServFail);
        assert_eq!(
            err.error.unwrap().to_string(),
            "plugin/forward: no healthy proxies"
        );
    }
}
