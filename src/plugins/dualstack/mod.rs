//! `dualstack`: answer policies for dual-stack and IPv6-only clients that keep one address
//! family's trouble from breaking the other. A ferrodns extension; see README.md.
//!
//! - `aaaa_failure nodata`: a failed AAAA question for a name that has A records becomes NODATA,
//!   so resolvers that fail a whole lookup on an AAAA error (c-ares 1.15, musl, nginx) still
//!   get the IPv4 address.
//! - `filter_aaaa NET...`: clients in NET get no AAAA records for names that also have A
//!   records (BIND's filter-aaaa).
//! - `filter_a NET...`: clients in NET (IPv6-only, behind NAT64) get NODATA for A questions of
//!   names that have AAAA records, real or synthesized by `dns64`, so they never try IPv4.
//!
//! Hot path: a question no policy applies to (class not IN, type not A/AAAA, client outside the
//! networks) goes on as it came, without allocation. A policy that needs the other family asks
//! the rest of the chain once, through `dns64` and `cache` (see the order in
//! `src/plugin/order.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::corefile::Directive;
use crate::plugin::nets::{NetSet, parse_cidr};
use crate::plugin::setup::{Setup, SetupError, SetupResult};
use crate::plugin::{Next, Outcome, Plugin, Request, Response, Served};
use crate::plugins::dns64::{negative_ttl, with_qtype};

const NAME: &str = "dualstack";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: Arc<str>,
}

/// Labels in name order, as Prometheus's Go client writes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    server: Arc<str>,
    r#type: &'static str,
}

#[derive(Clone)]
struct Metrics {
    rewritten: Family<ServerLabels, Counter>,
    filtered: Family<TypeLabels, Counter>,
}

pub struct Dualstack {
    aaaa_failure: bool,
    filter_aaaa: Option<NetSet>,
    filter_a: Option<NetSet>,
    metrics: Metrics,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    if !d.args.is_empty() {
        return Err(d.arg_err());
    }
    let mut aaaa_failure = false;
    let mut filter_aaaa: Option<Vec<(IpAddr, u8)>> = None;
    let mut filter_a: Option<Vec<(IpAddr, u8)>> = None;
    for line in &d.block {
        match line.name.as_str() {
            "aaaa_failure" => match line.arg_strs().as_slice() {
                ["nodata"] => aaaa_failure = true,
                [other] => {
                    return Err(line.err(format!(
                        "unknown aaaa_failure policy '{other}'; expect 'nodata'"
                    )));
                }
                _ => return Err(line.arg_err()),
            },
            "filter_aaaa" => networks(line, filter_aaaa.get_or_insert_with(Vec::new))?,
            "filter_a" => networks(line, filter_a.get_or_insert_with(Vec::new))?,
            _ => return Err(Directive::unknown_property(line)),
        }
    }
    if !aaaa_failure && filter_aaaa.is_none() && filter_a.is_none() {
        return Err(
            d.err("no policy configured; expect 'aaaa_failure', 'filter_aaaa' or 'filter_a'")
        );
    }
    let metrics = c.shared.metrics.family(|r| {
        let m = Metrics {
            rewritten: Family::default(),
            filtered: Family::default(),
        };
        r.register(
            "coredns_dualstack_aaaa_failures_rewritten",
            "Counter of failed AAAA answers replaced by NODATA because the name has A records.",
            m.rewritten.clone(),
        );
        r.register(
            "coredns_dualstack_filtered",
            "Counter of answers emptied by filter_aaaa (type AAAA) or filter_a (type A).",
            m.filtered.clone(),
        );
        m
    });
    Ok(Some(Arc::new(Dualstack {
        aaaa_failure,
        filter_aaaa: filter_aaaa.map(|nets| NetSet::from_networks(&nets)),
        filter_a: filter_a.map(|nets| NetSet::from_networks(&nets)),
        metrics,
    })))
}

/// `filter_aaaa NET...` / `filter_a NET...`: addresses or CIDR networks of either family.
fn networks(line: &Directive, into: &mut Vec<(IpAddr, u8)>) -> Result<(), SetupError> {
    if line.args.is_empty() {
        return Err(line.arg_err());
    }
    for word in line.arg_strs() {
        let net =
            parse_cidr(word).ok_or_else(|| line.err(format!("illegal CIDR notation {word:?}")))?;
        into.push(net);
    }
    Ok(())
}

/// Whether an AAAA outcome is a failure `aaaa_failure` may replace: any error rcode, a plugin
/// failure (an upstream timeout), or NXDOMAIN (checked against the A question, which proves the
/// name exists). A dropped query (`acl ... drop`) is not.
fn failed(outcome: &Outcome) -> bool {
    match outcome {
        Ok(resp) => resp.rcode() != ResponseCode::NoError,
        Err(f) => f.reply,
    }
}

fn has(m: &Message, qtype: RecordType) -> bool {
    m.metadata.response_code == ResponseCode::NoError
        && m.answers.iter().any(|rr| rr.record_type() == qtype)
}

/// The SOA of a negative answer with its TTL lowered to the negative TTL (RFC 2308 §5).
fn soa_of(m: &Message) -> Option<Record> {
    let ttl = negative_ttl(m)?;
    let mut soa = m
        .authorities
        .iter()
        .find(|rr| matches!(rr.data, RData::SOA(_)))?
        .clone();
    soa.ttl = ttl;
    Some(soa)
}

/// The CNAME and DNAME records of an answer: the chain a NODATA keeps.
fn aliases(m: &Message) -> Vec<Record> {
    m.answers
        .iter()
        .filter(|rr| matches!(rr.record_type(), RecordType::CNAME | RecordType::DNAME))
        .cloned()
        .collect()
}

/// NODATA for `req`: the alias chain that leads to the name (the same for every type), an SOA
/// where one is known, and nothing else; the AA and RA bits of `source`, the answer that told
/// us about the name.
fn nodata(req: &Request, aliases: Vec<Record>, soa: Option<Record>, source: &Message) -> Response {
    let mut m = req.reply();
    m.metadata.authoritative = source.metadata.authoritative;
    m.metadata.recursion_available = source.metadata.recursion_available;
    m.answers = aliases;
    m.authorities.extend(soa);
    Response::new(m, NAME)
}

impl Dualstack {
    fn count_filtered(&self, req: &Request, qtype: &'static str) {
        self.metrics
            .filtered
            .get_or_create(&TypeLabels {
                server: req.server.clone(),
                r#type: qtype,
            })
            .inc();
    }

    /// Whether an AAAA outcome needs the A question: a failure `aaaa_failure` may replace, or
    /// AAAA records `filter_aaaa` may withhold from this client.
    fn needs_a(&self, outcome: &Outcome, filter: bool) -> bool {
        (self.aaaa_failure && failed(outcome))
            || (filter
                && outcome
                    .as_ref()
                    .is_ok_and(|r| has(r.message(), RecordType::AAAA)))
    }

    /// The A question from a client in `filter_a`: ask AAAA first; if there is one (real or
    /// from `dns64`), answer NODATA without asking for A.
    async fn filter_a(&self, req: &Request, next: Next<'_>) -> Outcome {
        if let Some(sub) = with_qtype(req, RecordType::AAAA)
            && let Ok(aaaa) = next.serve_owned(sub).await
        {
            let m = aaaa.message();
            if has(m, RecordType::AAAA) {
                self.count_filtered(req, "A");
                return Ok(nodata(req, aliases(m), None, m));
            }
        }
        next.serve(req).await
    }

    /// The AAAA question: `aaaa_failure` for failed answers, `filter_aaaa` for good ones; both
    /// ask for A at most once.
    async fn aaaa(&self, req: &Request, next: Next<'_>, outcome: Outcome, filter: bool) -> Outcome {
        if !self.needs_a(&outcome, filter) {
            return outcome;
        }
        let rewrite = self.aaaa_failure && failed(&outcome);
        let Some(sub) = with_qtype(req, RecordType::A) else {
            return outcome;
        };
        let a = match next.serve_owned(sub).await {
            Ok(resp) if has(resp.message(), RecordType::A) => resp.into_message(),
            // No A record (or no answer for A): the AAAA outcome stands, failure or not.
            _ => return outcome,
        };
        if rewrite {
            self.metrics
                .rewritten
                .get_or_create(&ServerLabels {
                    server: req.server.clone(),
                })
                .inc();
            // The failed answer's SOA (an NXDOMAIN's) if it has one, else the A answer's.
            let soa = outcome
                .as_ref()
                .ok()
                .and_then(|r| soa_of(r.message()))
                .or_else(|| soa_of(&a));
            return Ok(nodata(req, aliases(&a), soa, &a));
        }
        self.count_filtered(req, "AAAA");
        let soa = soa_of(&a);
        // `needs_a` let only a good answer with AAAA records reach this point.
        let Ok(resp) = outcome else {
            return outcome;
        };
        let m = resp.message();
        Ok(nodata(req, aliases(m), soa, m))
    }
}

impl Plugin for Dualstack {
    fn name(&self) -> &'static str {
        NAME
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        if req.qclass() != DNSClass::IN {
            return next.serve(req);
        }
        match req.qtype() {
            RecordType::AAAA => {
                let filter = self
                    .filter_aaaa
                    .as_ref()
                    .is_some_and(|n| n.contains(req.ip()));
                if !self.aaaa_failure && !filter {
                    return next.serve(req);
                }
                match next.serve(req) {
                    // The common case needs nothing more: a good answer with no filter, or a
                    // good answer without AAAA records.
                    Served::Ready(outcome) if !self.needs_a(&outcome, filter) => {
                        Served::Ready(outcome)
                    }
                    served => Served::pending(async move {
                        let outcome = served.await;
                        self.aaaa(req, next, outcome, filter).await
                    }),
                }
            }
            RecordType::A if self.filter_a.as_ref().is_some_and(|n| n.contains(req.ip())) => {
                Served::pending(self.filter_a(req, next))
            }
            _ => next.serve(req),
        }
    }
}

#[cfg(test)]
mod tests;
