//! `whoami`: answers every query with the client's address, port and transport. See README.md.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record};

use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Response, Served};

#[cfg(test)]
pub(crate) mod testkit;

pub struct Whoami;

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    c.no_arguments()?;
    Ok(Some(Arc::new(Whoami)))
}

impl Plugin for Whoami {
    fn name(&self) -> &'static str {
        "whoami"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        let qname = req.qname();
        // CoreDNS writes both records in the question's class, under the name as the client
        // spelled it (case preserved), with TTL 0.
        let class = req.qclass();
        let rdata = match req.ip() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        let mut addr = Record::from_rdata(qname.clone(), 0, rdata);
        addr.dns_class = class;
        m.additionals.push(addr);
        // `_udp.NAME.` / `_tcp.NAME.` (`_udp.` for the root), target `.`. A name already at the
        // 255-octet limit has no room for the label: the SRV record is left out rather than the
        // whole answer failing to encode.
        let label = match req.proto {
            crate::plugin::Proto::Udp => "_udp",
            crate::plugin::Proto::Tcp => "_tcp",
        };
        if let Ok(srv_name) = qname.prepend_label(label) {
            let srv = SRV::new(0, 0, req.src.port(), Name::root());
            let mut srv = Record::from_rdata(srv_name, 0, RData::SRV(srv));
            srv.dns_class = class;
            m.additionals.push(srv);
        }
        Served::Ready(Ok(Response::new(m, "whoami")))
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::{self, ask, message, run, show};
    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{DNSClass, RecordType};

    #[test]
    fn answers_address_and_srv() {
        struct Case {
            ask: testkit::Ask,
            additional: &'static [&'static str],
        }
        let cases = [
            Case {
                ask: ask("example.org.", RecordType::A),
                additional: &[
                    "example.org. 0 IN A 127.0.0.1",
                    "_udp.example.org. 0 IN SRV 0 0 53000 .",
                ],
            },
            // Case preserved in both owner names.
            Case {
                ask: ask("Example.ORG.", RecordType::AAAA),
                additional: &[
                    "Example.ORG. 0 IN A 127.0.0.1",
                    "_udp.Example.ORG. 0 IN SRV 0 0 53000 .",
                ],
            },
            Case {
                ask: ask("example.org.", RecordType::MX).tcp(),
                additional: &[
                    "example.org. 0 IN A 127.0.0.1",
                    "_tcp.example.org. 0 IN SRV 0 0 53000 .",
                ],
            },
            Case {
                ask: ask("a.example.", RecordType::A).from("[2001:db8::53]:5353"),
                additional: &[
                    "a.example. 0 IN AAAA 2001:db8::53",
                    "_udp.a.example. 0 IN SRV 0 0 5353 .",
                ],
            },
            // An IPv4 client on a dual-stack socket is still an IPv4 client.
            Case {
                ask: ask("a.example.", RecordType::A).from("[::ffff:192.0.2.7]:1053"),
                additional: &[
                    "a.example. 0 IN A 192.0.2.7",
                    "_udp.a.example. 0 IN SRV 0 0 1053 .",
                ],
            },
            Case {
                ask: ask(".", RecordType::NS),
                additional: &[". 0 IN A 127.0.0.1", "_udp. 0 IN SRV 0 0 53000 ."],
            },
            Case {
                ask: ask("id.server.", RecordType::TXT).class(DNSClass::CH),
                additional: &[
                    "id.server. 0 CH A 127.0.0.1",
                    "_udp.id.server. 0 CH SRV 0 0 53000 .",
                ],
            },
        ];
        for case in cases {
            let req = case.ask.request();
            let m = message(run(&Whoami, &req, &[]));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative);
            assert!(m.answers.is_empty() && m.authorities.is_empty());
            assert_eq!(show(&m.additionals), case.additional, "{}", req.name());
            assert_eq!(m.queries, req.msg().queries);
            assert_eq!(m.metadata.id, req.id());
        }
    }

    #[test]
    fn setup_takes_no_arguments() {
        let err = |after: &str| {
            Err(format!(
                "plugin/whoami: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '{after}'"
            ))
        };
        for (corefile, want) in [
            (". {\n whoami\n}\n", Ok(())),
            // As in CoreDNS, a second line changes nothing.
            (". {\n whoami\n whoami\n}\n", Ok(())),
            (". {\n whoami extra\n}\n", err("extra")),
            (". {\n whoami {\n  x\n }\n}\n", err("{")),
        ] {
            let got = testkit::setup(setup, "whoami", corefile).map(|_| ());
            assert_eq!(got, want, "{corefile}");
        }
    }
}
