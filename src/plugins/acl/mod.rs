//! `acl`: lets queries through, refuses them, answers them empty, or drops them, by the client's
//! address and the query type. See README.md.

mod qtype;

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::corefile::Directive;
use crate::dnsname::is_subdomain;
use crate::plugin::nets::{NetSet, parse_cidr};
use crate::plugin::setup::{Setup, SetupError, SetupResult};
use crate::plugin::{Failure, Next, Plugin, Request, Response, Served};

/// RFC 8914 Extended DNS Error: option code, and the info codes `acl` sends.
const EDE_OPTION: u16 = 15;
const EDE_BLOCKED: u16 = 15;
const EDE_FILTERED: u16 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Allow,
    Block,
    Filter,
    Drop,
}

/// One line of an `acl` block.
#[derive(Debug)]
struct Policy {
    action: Action,
    /// `None`: every type (no `type`, `type *`, or CoreDNS's `type None`).
    qtypes: Option<Vec<u16>>,
    nets: NetSet,
}

impl Policy {
    fn matches(&self, qtype: u16, ip: IpAddr) -> bool {
        self.qtypes.as_ref().is_none_or(|t| t.contains(&qtype)) && self.nets.contains(ip)
    }
}

/// One `acl` directive: its zones and its lines, in order.
#[derive(Debug)]
struct Rule {
    zones: Vec<Arc<str>>,
    policies: Vec<Policy>,
}

/// Labels in name order, as Prometheus's Go client writes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ZoneLabels {
    server: Arc<str>,
    /// The *view* plugin's view name; ferrodns has no views yet, so always empty.
    view: &'static str,
    zone: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: Arc<str>,
    view: &'static str,
}

#[derive(Clone)]
struct Metrics {
    blocked: Family<ZoneLabels, Counter>,
    filtered: Family<ZoneLabels, Counter>,
    allowed: Family<ServerLabels, Counter>,
    dropped: Family<ZoneLabels, Counter>,
}

pub struct Acl {
    rules: Vec<Rule>,
    metrics: Metrics,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let mut rules = Vec::new();
    for d in &c.directives {
        let zones = c
            .origins(
                &d.arg_strs()
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .map(Arc::from)
            .collect();
        let policies = d
            .block
            .iter()
            .map(parse_policy)
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(Rule { zones, policies });
    }
    let metrics = c.shared.metrics.family(|r| {
        let m = Metrics {
            blocked: Family::default(),
            filtered: Family::default(),
            allowed: Family::default(),
            dropped: Family::default(),
        };
        r.register(
            "coredns_acl_blocked_requests",
            "Counter of DNS requests being blocked",
            m.blocked.clone(),
        );
        r.register(
            "coredns_acl_filtered_requests",
            "Counter of DNS requests being filtered",
            m.filtered.clone(),
        );
        r.register(
            "coredns_acl_allowed_requests",
            "Counter of DNS requests being allowed",
            m.allowed.clone(),
        );
        r.register(
            "coredns_acl_dropped_requests",
            "Counter of DNS requests being dropped",
            m.dropped.clone(),
        );
        m
    });
    Ok(Some(Arc::new(Acl { rules, metrics })))
}

/// `ACTION [type QTYPE...] [net SOURCE...]`, with CoreDNS's error messages.
fn parse_policy(line: &Directive) -> Result<Policy, SetupError> {
    let action = match line.name.to_ascii_lowercase().as_str() {
        "allow" => Action::Allow,
        "block" => Action::Block,
        "filter" => Action::Filter,
        "drop" => Action::Drop,
        _ => {
            return Err(line.err(format!(
                "unexpected token {:?}; expect 'allow', 'block', 'filter' or 'drop'",
                line.name
            )));
        }
    };
    let is_section = |w: &str| w.eq_ignore_ascii_case("type") || w.eq_ignore_ascii_case("net");
    let words = line.arg_strs();
    let mut rest = words.as_slice();
    let mut types: Option<Vec<u16>> = None;
    let mut all_types = false;
    let mut networks: Vec<(IpAddr, u8)> = Vec::new();
    let mut has_net = false;
    let mut all_nets = false;
    while let Some((&section, after)) = rest.split_first() {
        if !is_section(section) {
            return Err(line.err(format!("unexpected token {section:?}; expect 'type | net'")));
        }
        let section = section.to_ascii_lowercase();
        let n = after.iter().take_while(|w| !is_section(w)).count();
        let (tokens, next) = after.split_at(n);
        rest = next;
        if tokens.is_empty() {
            return Err(line.err(format!("no token specified in {section:?} section")));
        }
        if section == "type" {
            let list = types.get_or_insert_with(Vec::new);
            for &t in tokens {
                // `*` ends the section: everything after it is moot.
                if t == "*" {
                    all_types = true;
                    break;
                }
                let code = qtype::lookup(t).ok_or_else(|| {
                    line.err(format!("unexpected token {t:?}; expect legal QTYPE"))
                })?;
                // Type 0 (`None`) is CoreDNS's marker for "every type".
                if code == 0 {
                    all_types = true;
                }
                list.push(code);
            }
        } else {
            has_net = true;
            for &w in tokens {
                if w == "*" {
                    all_nets = true;
                    break;
                }
                let net = parse_cidr(w)
                    .ok_or_else(|| line.err(format!("illegal CIDR notation {:?}", normalize(w))))?;
                networks.push(net);
            }
        }
    }
    let qtypes = if all_types { None } else { types };
    let nets = if all_nets || !has_net {
        NetSet::all()
    } else {
        NetSet::from_networks(&networks)
    };
    Ok(Policy {
        action,
        qtypes,
        nets,
    })
}

/// The word as CoreDNS shows it in errors: a bare address gets `/32` or `/128`.
fn normalize(w: &str) -> String {
    if w.contains('/') {
        w.to_string()
    } else if w.contains(':') {
        format!("{w}/128")
    } else {
        format!("{w}/32")
    }
}

impl Acl {
    fn refuse(&self, req: &Request, rcode: ResponseCode, info_code: u16) -> Served<'static> {
        let mut m = req.reply();
        m.metadata.response_code = rcode;
        // CoreDNS attaches the extended error to an OPT record of its own (4096, DO); the
        // server then sets size and DO for this client, and leaves the OPT out for a client
        // that sent none (RFC 6891 §7).
        let mut edns = Edns::new();
        edns.set_max_payload(4096);
        edns.options_mut().insert(EdnsOption::Unknown(
            EDE_OPTION,
            info_code.to_be_bytes().to_vec(),
        ));
        m.edns = Some(edns);
        Served::Ready(Ok(Response::new(m, "acl")))
    }
}

impl Plugin for Acl {
    fn name(&self) -> &'static str {
        "acl"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let name = req.name();
        let ip = req.ip();
        let qtype = u16::from(req.qtype());
        for rule in &self.rules {
            let Some(zone) = rule
                .zones
                .iter()
                .filter(|z| is_subdomain(name, z))
                .max_by_key(|z| z.len())
            else {
                continue;
            };
            let Some(policy) = rule.policies.iter().find(|p| p.matches(qtype, ip)) else {
                continue;
            };
            let labels = || ZoneLabels {
                server: req.server.clone(),
                zone: zone.clone(),
                view: "",
            };
            match policy.action {
                Action::Allow => break,
                Action::Block => {
                    self.metrics.blocked.get_or_create(&labels()).inc();
                    return self.refuse(req, ResponseCode::Refused, EDE_BLOCKED);
                }
                Action::Filter => {
                    self.metrics.filtered.get_or_create(&labels()).inc();
                    return self.refuse(req, ResponseCode::NoError, EDE_FILTERED);
                }
                Action::Drop => {
                    self.metrics.dropped.get_or_create(&labels()).inc();
                    return Served::Ready(Err(Failure::no_reply()));
                }
            }
        }
        self.metrics
            .allowed
            .get_or_create(&ServerLabels {
                server: req.server.clone(),
                view: "",
            })
            .inc();
        next.serve(req)
    }
}

#[cfg(test)]
mod tests;
