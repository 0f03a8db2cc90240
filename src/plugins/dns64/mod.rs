//! `dns64`: synthesizes AAAA records from A records for IPv6-only clients behind NAT64
//! (RFC 6147), answers reverse questions for the NAT64 prefix, and lets clients discover the
//! prefix through `ipv4only.arpa` (RFC 7050, RFC 8880). See README.md.
//!
//! Hot path: a question that is not AAAA, PTR under the prefix's reverse zone, or
//! `ipv4only.arpa` costs a few comparisons and goes on unchanged. An AAAA answer that already
//! has usable AAAA records and was ready at once is returned as it came, without a boxed
//! future; only an answer that needs the extra A question waits.

mod embed;
#[cfg(test)]
pub(crate) mod fake;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::plugin::setup::{Setup, SetupError, SetupResult};
use crate::plugin::{Next, Outcome, Plugin, Request, Response, Served};

pub use embed::Prefix;
use embed::{PrefixError, in_addr_arpa, ip6_arpa_addr};

const NAME: &str = "dns64";

/// RFC 6147 §5.1.7: the TTL bound for synthesized records when the AAAA answer carried no SOA.
const DEFAULT_TTL: u32 = 600;

/// RFC 7050 §2.2 / RFC 8880: the name clients ask to learn the NAT64 prefix, and its two
/// well-known IPv4 addresses.
const IPV4ONLY_ARPA: &str = "ipv4only.arpa.";
const IPV4ONLY_ADDRS: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: Arc<str>,
}

#[derive(Clone)]
struct Metrics {
    translated: Family<ServerLabels, Counter>,
}

pub struct Dns64 {
    prefix: Prefix,
    translate_all: bool,
    allow_ipv4: bool,
    /// The prefix's `ip6.arpa.` zone, lowercase, for PTR questions.
    reverse_zone: String,
    metrics: Metrics,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let mut prefix = Prefix::well_known();
    let mut translate_all = false;
    let mut allow_ipv4 = false;
    // CoreDNS reads every `dns64` line of a block into one configuration; a later prefix
    // replaces an earlier one.
    for d in &c.directives {
        match d.args.as_slice() {
            [] => {}
            [word] => prefix = parse_prefix(d, word.text.as_str())?,
            _ => return Err(d.arg_err()),
        }
        for line in &d.block {
            // CoreDNS reads a block token by token, so a word left over on a line is taken as
            // the next property: `unknown property 'WORD'`.
            let extra = match line.name.as_str() {
                "prefix" => {
                    let Some(word) = line.args.first() else {
                        return Err(line.arg_err());
                    };
                    prefix = parse_prefix(line, word.text.as_str())?;
                    line.args.get(1)
                }
                "translate_all" => {
                    translate_all = true;
                    line.args.first()
                }
                "allow_ipv4" => {
                    allow_ipv4 = true;
                    line.args.first()
                }
                _ => return Err(crate::corefile::Directive::unknown_property(line)),
            };
            if let Some(word) = extra {
                return Err(line.err_at(word, format!("unknown property '{}'", word.text)));
            }
        }
    }
    if prefix.u_octet_set() {
        crate::warning!(
            "plugin/dns64: prefix {prefix} sets bits 64 to 71, which RFC 6052 requires to be zero"
        );
    }
    let metrics = c.shared.metrics.family(|r| {
        let m = Metrics {
            translated: Family::default(),
        };
        r.register(
            "coredns_dns64_requests_translated",
            "Counter of DNS requests translated by dns64.",
            m.translated.clone(),
        );
        m
    });
    Ok(Some(Arc::new(Dns64 {
        reverse_zone: prefix.reverse_zone(),
        prefix,
        translate_all,
        allow_ipv4,
        metrics,
    })))
}

/// A prefix word, with CoreDNS's errors: Go's own parse error without a location, the
/// family and length checks at the line.
fn parse_prefix(d: &crate::corefile::Directive, word: &str) -> Result<Prefix, SetupError> {
    Prefix::parse(word).map_err(|e| match e {
        PrefixError::Syntax => SetupError {
            loc: None,
            msg: format!("invalid CIDR address: {word}"),
        },
        PrefixError::NotIpv6(net) => d.err(format!("invalid netmask 32 IPv6 address: {net:?}")),
        PrefixError::Length(net) => d.err(format!("invalid prefix length {net:?}")),
    })
}

/// What to do with the answer to an AAAA question.
enum Verdict {
    /// Send it as it is.
    Keep,
    /// It has usable AAAA records and some in the exclusion set: send it without those.
    Strip,
    /// It has no usable AAAA record: ask for A and synthesize.
    Synthesize,
}

/// RFC 6147 §5.1.4: AAAA records in `::ffff:0:0/96` (IPv4-mapped) are never usable answers.
fn excluded(v6: &Ipv6Addr) -> bool {
    v6.to_ipv4_mapped().is_some()
}

impl Dns64 {
    /// Whether this client gets synthesized answers: IPv6 clients, and IPv4 ones with
    /// `allow_ipv4` (RFC 6147 does not restrict this; CoreDNS does by default).
    fn eligible(&self, req: &Request) -> bool {
        self.allow_ipv4 || req.family() == 2
    }

    fn verdict(&self, outcome: &Outcome) -> Verdict {
        let resp = match outcome {
            // A dropped query stays dropped.
            Err(f) if !f.reply => return Verdict::Keep,
            // RFC 6147 §5.1.2: an error other than Name Error counts as an empty answer; a
            // plugin failure (an upstream that timed out) is such an error.
            Err(_) => return Verdict::Synthesize,
            Ok(resp) => resp,
        };
        match resp.rcode() {
            // §5.1.2: Name Error goes back as it is.
            ResponseCode::NXDomain => return Verdict::Keep,
            ResponseCode::NoError => {}
            _ => return Verdict::Synthesize,
        }
        if self.translate_all {
            return Verdict::Synthesize;
        }
        let mut usable = false;
        let mut mapped = false;
        for rr in &resp.message().answers {
            if let RData::AAAA(AAAA(v6)) = &rr.data {
                if excluded(v6) {
                    mapped = true;
                } else {
                    usable = true;
                }
            }
        }
        match (usable, mapped) {
            (true, false) => Verdict::Keep,
            (true, true) => Verdict::Strip,
            (false, _) => Verdict::Synthesize,
        }
    }

    /// The AAAA path: the answer from the rest of the chain, completed with synthesized
    /// records where it has none.
    fn serve_aaaa<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        match next.serve(req) {
            Served::Ready(outcome) => match self.verdict(&outcome) {
                Verdict::Keep => Served::Ready(outcome),
                Verdict::Strip => Served::Ready(outcome.map(strip_excluded)),
                Verdict::Synthesize => Served::pending(self.synthesize(req, next, outcome)),
            },
            served => Served::pending(async move {
                let outcome = served.await;
                match self.verdict(&outcome) {
                    Verdict::Keep => outcome,
                    Verdict::Strip => outcome.map(strip_excluded),
                    Verdict::Synthesize => self.synthesize(req, next, outcome).await,
                }
            }),
        }
    }

    /// Ask the rest of the chain for A records of the question name and build the AAAA
    /// answer from them (RFC 6147 §5.1.6-§5.1.8, §5.3).
    async fn synthesize(&self, req: &Request, next: Next<'_>, aaaa: Outcome) -> Outcome {
        let Some(sub) = with_qtype(req, RecordType::A) else {
            return aaaa;
        };
        let a = next.serve_owned(sub).await;
        let a = match a {
            Ok(resp) => resp.into_message(),
            // No A answer at all: the AAAA outcome stands.
            Err(_) => return aaaa,
        };
        let has_a = a.metadata.response_code == ResponseCode::NoError
            && a.answers.iter().any(|rr| matches!(rr.data, RData::A(_)));
        if !has_a {
            return self.no_synthesis(req, aaaa, a);
        }
        // §5.1.7: the synthesized TTL is at most the negative TTL the AAAA answer carried
        // (RFC 2308: the smaller of the SOA's TTL and its MINIMUM), or 600 s without an SOA.
        // CoreDNS takes the SOA's TTL; the two agree whenever the SOA's TTL already is the
        // negative TTL, as it is from CoreDNS's own backends and from resolvers.
        let bound = aaaa
            .as_ref()
            .ok()
            .and_then(|r| negative_ttl(r.message()))
            .unwrap_or(DEFAULT_TTL);
        let mut m = req.reply();
        m.metadata.truncation = a.metadata.truncation;
        m.metadata.recursion_available = a.metadata.recursion_available;
        m.answers = a
            .answers
            .into_iter()
            .filter_map(|rr| match rr.data {
                RData::A(A(v4)) => {
                    let mut out = Record::from_rdata(
                        rr.name,
                        rr.ttl.min(bound),
                        RData::AAAA(AAAA(self.prefix.embed(v4))),
                    );
                    out.dns_class = rr.dns_class;
                    Some(out)
                }
                // Signatures over the A records would not cover what we send (§3: a DNS64
                // does not sign); other records (CNAME, DNAME) pass unchanged (§5.3.3).
                _ if rr.record_type() == RecordType::RRSIG => None,
                _ => Some(rr),
            })
            .collect();
        // §5.3.2: authority and additional sections come from the A answer unchanged.
        m.authorities = a.authorities;
        m.additionals = a.additionals;
        m.edns = a.edns;
        self.metrics
            .translated
            .get_or_create(&ServerLabels {
                server: req.server.clone(),
            })
            .inc();
        Ok(Response::new(m, NAME))
    }

    /// The name has no A record to synthesize from. RFC 6147 §5.1.6 sends the A question's
    /// empty or error result; ferrodns keeps the AAAA answer when it was a good NOERROR one
    /// (it is the same "no address" with the AAAA's own SOA), less any excluded records, and
    /// uses the A result only when the AAAA question failed and the A one did not.
    fn no_synthesis(&self, req: &Request, aaaa: Outcome, a: Message) -> Outcome {
        match aaaa {
            Ok(resp) if resp.rcode() == ResponseCode::NoError => {
                let mut resp = resp;
                let m = resp.message_mut();
                m.answers.retain(|rr| rr.record_type() != RecordType::AAAA);
                Ok(resp)
            }
            failed => {
                let rcode = a.metadata.response_code;
                if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
                    return failed;
                }
                let mut m = req.reply();
                m.metadata.response_code = rcode;
                m.metadata.recursion_available = a.metadata.recursion_available;
                m.answers = a
                    .answers
                    .into_iter()
                    .filter(|rr| matches!(rr.record_type(), RecordType::CNAME | RecordType::DNAME))
                    .collect();
                m.authorities = a.authorities;
                m.edns = a.edns;
                Ok(Response::new(m, NAME))
            }
        }
    }

    /// RFC 6147 §5.3.1: a PTR question for an address inside the prefix is answered with a
    /// CNAME to the embedded IPv4 address's `in-addr.arpa.` name, followed through the chain
    /// so that the client gets the PTR records as well.
    fn serve_ptr<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let v4 = ip6_arpa_addr(req.name()).and_then(|v6| self.prefix.extract(v6));
        let Some(v4) = v4 else {
            return next.serve(req);
        };
        let Ok(target) = Name::from_ascii(in_addr_arpa(v4)) else {
            return next.serve(req);
        };
        let mut msg = req.msg().clone();
        msg.queries[0].name = target.clone();
        let Some(sub) = req.with_message(msg) else {
            return next.serve(req);
        };
        Served::pending(async move {
            let mut cname = Record::from_rdata(
                req.qname().clone(),
                DEFAULT_TTL,
                RData::CNAME(CNAME(target)),
            );
            cname.dns_class = DNSClass::IN;
            let found = next.serve_owned(sub).await?.into_message();
            let mut m = req.reply();
            // RFC 6604: the rcode is that of the last name in the chain.
            m.metadata.response_code = found.metadata.response_code;
            m.metadata.recursion_available = found.metadata.recursion_available;
            m.metadata.truncation = found.metadata.truncation;
            m.answers = Vec::with_capacity(found.answers.len() + 1);
            m.answers.push(cname);
            m.answers.extend(found.answers);
            m.authorities = found.authorities;
            m.additionals = found.additionals;
            m.edns = found.edns;
            Ok(Response::new(m, NAME))
        })
    }

    /// RFC 8880 §7.2: `ipv4only.arpa` is answered here, never sent on: A with the two
    /// well-known addresses, AAAA with those synthesized with the configured prefix, so a
    /// client (RFC 7050, 464XLAT) learns the prefix.
    fn serve_ipv4only(&self, req: &Request, qtype: RecordType) -> Outcome {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        let owner = req.qname();
        m.answers = IPV4ONLY_ADDRS
            .iter()
            .map(|&v4| {
                let rdata = match qtype {
                    RecordType::AAAA => RData::AAAA(AAAA(self.prefix.embed(v4))),
                    _ => RData::A(A(v4)),
                };
                Record::from_rdata(owner.clone(), DEFAULT_TTL, rdata)
            })
            .collect();
        if qtype == RecordType::AAAA {
            self.metrics
                .translated
                .get_or_create(&ServerLabels {
                    server: req.server.clone(),
                })
                .inc();
        }
        Ok(Response::new(m, NAME))
    }
}

/// The same question with another type, from the same client.
pub(crate) fn with_qtype(req: &Request, qtype: RecordType) -> Option<Request> {
    let mut msg = req.msg().clone();
    msg.queries[0].query_type = qtype;
    req.with_message(msg)
}

/// RFC 2308 §5: the negative-caching TTL of an answer, from the SOA in its authority section.
pub(crate) fn negative_ttl(m: &Message) -> Option<u32> {
    m.authorities.iter().find_map(|rr| match &rr.data {
        RData::SOA(SOA { minimum, .. }) => Some(rr.ttl.min(*minimum)),
        _ => None,
    })
}

fn strip_excluded(mut resp: Response) -> Response {
    resp.message_mut().answers.retain(|rr| match &rr.data {
        RData::AAAA(AAAA(v6)) => !excluded(v6),
        _ => true,
    });
    resp
}

impl Plugin for Dns64 {
    fn name(&self) -> &'static str {
        NAME
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        // RFC 6147 §5.1: class IN only.
        if req.qclass() != DNSClass::IN {
            return next.serve(req);
        }
        match req.qtype() {
            RecordType::AAAA if req.name() == IPV4ONLY_ARPA && self.eligible(req) => {
                Served::Ready(self.serve_ipv4only(req, RecordType::AAAA))
            }
            RecordType::AAAA if self.eligible(req) => self.serve_aaaa(req, next),
            RecordType::A if req.name() == IPV4ONLY_ARPA => {
                Served::Ready(self.serve_ipv4only(req, RecordType::A))
            }
            RecordType::PTR if req.name().ends_with(self.reverse_zone.as_str()) => {
                self.serve_ptr(req, next)
            }
            _ => next.serve(req),
        }
    }
}

#[cfg(test)]
mod tests;
