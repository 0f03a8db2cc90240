//! `local`: answers for `localhost` and the loopback, "this host" and broadcast reverse zones
//! without asking anyone else. See README.md.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus_client::metrics::counter::Counter;

use crate::corefile::Directive;
use crate::dnsname::is_subdomain;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Response, Served};

/// One week, CoreDNS's TTL for every record this plugin writes.
const TTL: u32 = 604_800;

/// The zones answered in full, as CoreDNS lists them. `ip6.arpa` is not among them (see README).
const ZONES: [&str; 4] = [
    "localhost.",
    "0.in-addr.arpa.",
    "127.in-addr.arpa.",
    "255.in-addr.arpa.",
];

const LOOPBACK_PTR: &str = "1.0.0.127.in-addr.arpa.";

/// `coredns_local_localhost_requests_total`: deliberately without a `server` label (CoreDNS's
/// README: the interesting part is which client asks, which the debug log shows).
#[derive(Clone)]
struct Metrics {
    localhost: Counter,
}

pub struct Local {
    /// Answer `localhost.<anything>` as loopback too (CoreDNS's `localhost_prefix on`, the
    /// default), besides the RFC 6761 names under `localhost.`.
    prefix: bool,
    debug: bool,
    metrics: Metrics,
    localhost: Name,
    root_localhost: Name,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let mut prefix = true;
    for d in &c.directives {
        if !d.args.is_empty() {
            return Err(d.arg_err());
        }
        for line in &d.block {
            match line.name.as_str() {
                "localhost_prefix" => match line.arg_strs().as_slice() {
                    ["on"] => prefix = true,
                    ["off"] => prefix = false,
                    [other] => {
                        return Err(line.err(format!(
                            "localhost_prefix expects 'on' or 'off', got {other:?}"
                        )));
                    }
                    _ => return Err(line.arg_err()),
                },
                _ => return Err(Directive::unknown_property(line)),
            }
        }
    }
    let metrics = c.shared.metrics.family(|r| {
        let localhost = Counter::default();
        r.register(
            "coredns_local_localhost_requests",
            "Counter of localhost.<domain> requests",
            localhost.clone(),
        );
        Metrics { localhost }
    });
    Ok(Some(Arc::new(Local {
        prefix,
        debug: c.block.debug,
        metrics,
        localhost: Name::from_ascii("localhost.").expect("static name"),
        root_localhost: Name::from_ascii("root.localhost.").expect("static name"),
    })))
}

impl Local {
    fn soa(&self, owner: &Name) -> Record {
        let soa = SOA::new(
            self.localhost.clone(),
            self.root_localhost.clone(),
            1,
            0,
            0,
            0,
            TTL,
        );
        Record::from_rdata(owner.clone(), TTL, RData::SOA(soa))
    }

    fn loopback(&self, m: &mut Message, req: &Request) {
        let qname = req.qname();
        match req.qtype() {
            RecordType::A => m.answers.push(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            )),
            RecordType::AAAA => m.answers.push(Record::from_rdata(
                qname.clone(),
                TTL,
                RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            )),
            _ => m.authorities.push(self.soa(qname)),
        }
    }
}

impl Plugin for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let name = req.name();
        let apex = "localhost.".len();
        let below_localhost = name.len() > apex && name.ends_with(".localhost.");
        let legacy_prefix = self.prefix && name.len() > apex && name.starts_with("localhost.");
        if below_localhost || legacy_prefix {
            if self.debug {
                crate::log::write_line(
                    "DEBUG",
                    format_args!(
                        "plugin/local: Intercepting localhost query for {name:?} {}, from {}",
                        req.qtype(),
                        req.ip()
                    ),
                );
            }
            self.metrics.localhost.inc();
            let mut m = req.reply();
            self.loopback(&mut m, req);
            return Served::Ready(Ok(Response::new(m, "local")));
        }

        let Some(zone_len) = ZONES
            .iter()
            .filter(|z| is_subdomain(name, z))
            .map(|z| z.len())
            .max()
        else {
            return next.serve(req);
        };
        // The zone part of the question as the client spelled it: SOA owners keep its case.
        let qname = req.qname();
        let zone_name = qname.trim_to(zone_len_labels(name, zone_len));

        let mut m = req.reply();
        match name {
            "localhost." | "0.in-addr.arpa." | "127.in-addr.arpa." | "255.in-addr.arpa." => {
                match req.qtype() {
                    RecordType::A | RecordType::AAAA if name == "localhost." => {
                        self.loopback(&mut m, req)
                    }
                    RecordType::SOA => m.answers.push(self.soa(qname)),
                    RecordType::NS => m.answers.push(Record::from_rdata(
                        qname.clone(),
                        TTL,
                        RData::NS(NS(self.localhost.clone())),
                    )),
                    _ => m.authorities.push(self.soa(qname)),
                }
            }
            LOOPBACK_PTR => match req.qtype() {
                RecordType::PTR => m.answers.push(Record::from_rdata(
                    qname.clone(),
                    TTL,
                    RData::PTR(PTR(self.localhost.clone())),
                )),
                _ => m.authorities.push(self.soa(&zone_name)),
            },
            _ => {
                m.authorities.push(self.soa(&zone_name));
                m.metadata.response_code = ResponseCode::NXDomain;
            }
        }
        Served::Ready(Ok(Response::new(m, "local")))
    }
}

/// How many labels the zone of `zone_len` characters at the end of `name` has.
fn zone_len_labels(name: &str, zone_len: usize) -> usize {
    let zone = &name[name.len() - zone_len..];
    zone.trim_end_matches('.').split('.').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, ask, message, run, show};

    const SOA_TAIL: &str = "604800 IN SOA localhost. root.localhost. 1 0 0 0 604800";

    fn soa(owner: &str) -> String {
        format!("{owner} {SOA_TAIL}")
    }

    #[test]
    fn answers_local_names() {
        let built = testkit::setup(setup, "local", ". {\n local\n}\n").expect("setup");
        let local = built.handler.expect("handler");
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::Refused))];
        // (question, type, rcode, answer, authority)
        type Case = (
            &'static str,
            RecordType,
            ResponseCode,
            Vec<String>,
            Vec<String>,
        );
        let cases: Vec<Case> = vec![
            (
                "localhost.",
                RecordType::A,
                ResponseCode::NoError,
                vec!["localhost. 604800 IN A 127.0.0.1".into()],
                vec![],
            ),
            (
                "LocalHost.",
                RecordType::AAAA,
                ResponseCode::NoError,
                vec!["LocalHost. 604800 IN AAAA ::1".into()],
                vec![],
            ),
            (
                "localhost.",
                RecordType::NS,
                ResponseCode::NoError,
                vec!["localhost. 604800 IN NS localhost.".into()],
                vec![],
            ),
            (
                "localhost.",
                RecordType::SOA,
                ResponseCode::NoError,
                vec![soa("localhost.")],
                vec![],
            ),
            (
                "localhost.",
                RecordType::MX,
                ResponseCode::NoError,
                vec![],
                vec![soa("localhost.")],
            ),
            // RFC 6761 §6.3: every name below localhost. is loopback too.
            (
                "a.localhost.",
                RecordType::A,
                ResponseCode::NoError,
                vec!["a.localhost. 604800 IN A 127.0.0.1".into()],
                vec![],
            ),
            (
                "b.A.localhost.",
                RecordType::AAAA,
                ResponseCode::NoError,
                vec!["b.A.localhost. 604800 IN AAAA ::1".into()],
                vec![],
            ),
            (
                "a.localhost.",
                RecordType::TXT,
                ResponseCode::NoError,
                vec![],
                vec![soa("a.localhost.")],
            ),
            // The legacy `localhost.<domain>` form (localhost_prefix on).
            (
                "localhost.localdomain.",
                RecordType::A,
                ResponseCode::NoError,
                vec!["localhost.localdomain. 604800 IN A 127.0.0.1".into()],
                vec![],
            ),
            (
                "localhost.example.net.",
                RecordType::SOA,
                ResponseCode::NoError,
                vec![],
                vec![soa("localhost.example.net.")],
            ),
            (
                "127.in-addr.arpa.",
                RecordType::A,
                ResponseCode::NoError,
                vec![],
                vec![soa("127.in-addr.arpa.")],
            ),
            (
                "0.in-addr.arpa.",
                RecordType::NS,
                ResponseCode::NoError,
                vec!["0.in-addr.arpa. 604800 IN NS localhost.".into()],
                vec![],
            ),
            (
                "255.in-addr.arpa.",
                RecordType::SOA,
                ResponseCode::NoError,
                vec![soa("255.in-addr.arpa.")],
                vec![],
            ),
            (
                "1.0.0.127.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NoError,
                vec!["1.0.0.127.in-addr.arpa. 604800 IN PTR localhost.".into()],
                vec![],
            ),
            (
                "1.0.0.127.IN-ADDR.arpa.",
                RecordType::MX,
                ResponseCode::NoError,
                vec![],
                vec![soa("127.IN-ADDR.arpa.")],
            ),
            (
                "2.0.0.127.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NXDomain,
                vec![],
                vec![soa("127.in-addr.arpa.")],
            ),
            (
                "255.255.255.255.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NXDomain,
                vec![],
                vec![soa("255.in-addr.arpa.")],
            ),
            (
                "0.0.0.0.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NXDomain,
                vec![],
                vec![soa("0.in-addr.arpa.")],
            ),
            // Not local: down the chain. CoreDNS does not intercept `invalid.` or `ip6.arpa`.
            (
                "example.org.",
                RecordType::A,
                ResponseCode::Refused,
                vec![],
                vec![],
            ),
            (
                "invalid.",
                RecordType::A,
                ResponseCode::Refused,
                vec![],
                vec![],
            ),
            (
                "notlocalhost.",
                RecordType::A,
                ResponseCode::Refused,
                vec![],
                vec![],
            ),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
                RecordType::PTR,
                ResponseCode::Refused,
                vec![],
                vec![],
            ),
        ];
        for (name, qtype, rcode, answer, authority) in cases {
            let req = ask(name, qtype).request();
            let m = message(run(local.as_ref(), &req, &rest));
            assert_eq!(m.metadata.response_code, rcode, "{name} {qtype}");
            assert_eq!(show(&m.answers), answer, "{name} {qtype}");
            assert_eq!(show(&m.authorities), authority, "{name} {qtype}");
            assert!(m.additionals.is_empty());
            assert!(!m.metadata.authoritative, "{name}");
        }
        // Only names below or with the `localhost.` prefix count, not `localhost.` itself.
        let text = built.shared.metrics.encode();
        assert!(
            text.contains("coredns_local_localhost_requests_total 5"),
            "{text}"
        );
    }

    #[test]
    fn localhost_prefix_off_passes_the_legacy_form_on() {
        let built = testkit::setup(
            setup,
            "local",
            ". {\n local {\n  localhost_prefix off\n }\n}\n",
        )
        .expect("setup");
        let local = built.handler.expect("handler");
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::Refused))];
        let m = message(run(
            local.as_ref(),
            &ask("localhost.example.net.", RecordType::A).request(),
            &rest,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        let m = message(run(
            local.as_ref(),
            &ask("a.localhost.", RecordType::A).request(),
            &rest,
        ));
        assert_eq!(show(&m.answers), ["a.localhost. 604800 IN A 127.0.0.1"]);
    }

    #[test]
    fn setup_errors() {
        let pre = "plugin/local: Corefile:";
        for (corefile, want) in [
            (". {\n local\n local\n}\n", None),
            (
                ". {\n local x\n}\n",
                Some(
                    "2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
                ),
            ),
            (
                ". {\n local {\n  localhost_prefix maybe\n }\n}\n",
                Some(
                    "3 - Error during parsing: localhost_prefix expects 'on' or 'off', got \"maybe\"",
                ),
            ),
            (
                ". {\n local {\n  localhost_prefix\n }\n}\n",
                Some(
                    "3 - Error during parsing: Wrong argument count or unexpected line ending after 'localhost_prefix'",
                ),
            ),
            (
                ". {\n local {\n  prefix on\n }\n}\n",
                Some("3 - Error during parsing: unknown property 'prefix'"),
            ),
        ] {
            let got = testkit::setup(setup, "local", corefile).map(|_| ());
            assert_eq!(
                got,
                want.map_or(Ok(()), |w| Err(format!("{pre}{w}"))),
                "{corefile}"
            );
        }
    }
}
