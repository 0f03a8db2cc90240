//! Table-driven tests: a Corefile, scripted answers from the rest of the chain, a question,
//! and what `dns64` must answer and ask.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};

use super::fake::{Fake, Script, answer, negative, with_authority};
use super::*;
use crate::plugins::whoami::testkit::{self, ask, run, show};

use RecordType::{A as TA, AAAA as TAAAA, PTR as TPTR};

const SOA: &str = "example.org. 3600 SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300";
const V6: &str = "[2001:db8::53]:5353";
const V4: &str = "127.0.0.1:5353";

fn build(corefile: &str) -> (Arc<dyn Plugin>, Arc<crate::plugin::Shared>) {
    let built = testkit::setup(setup, NAME, corefile).expect("setup");
    (built.handler.expect("handler"), built.shared)
}

struct Case {
    name: &'static str,
    corefile: &'static str,
    scripts: Vec<(&'static str, RecordType, Script)>,
    qname: &'static str,
    qtype: RecordType,
    client: &'static str,
    rcode: Option<ResponseCode>,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    asked: &'static [(&'static str, RecordType)],
}

const PLAIN: &str = ". {\n dns64\n}\n";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "A only: synthesized, TTL bounded by the AAAA answer's SOA minimum",
            corefile: PLAIN,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 3600 A 192.0.2.33"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["a.example.org. 300 IN AAAA 64:ff9b::c000:221"],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "A only, no SOA: TTL at most 600",
            corefile: PLAIN,
            scripts: vec![
                ("a.example.org.", TAAAA, answer(&[])),
                (
                    "a.example.org.",
                    TA,
                    answer(&[
                        "a.example.org. 3600 A 192.0.2.33",
                        "a.example.org. 30 A 192.0.2.34",
                    ]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[
                "a.example.org. 600 IN AAAA 64:ff9b::c000:221",
                "a.example.org. 30 IN AAAA 64:ff9b::c000:222",
            ],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "both families: the real AAAA goes back, no A question",
            corefile: PLAIN,
            scripts: vec![
                (
                    "b.example.org.",
                    TAAAA,
                    answer(&["b.example.org. 60 AAAA 2001:db8::1"]),
                ),
                (
                    "b.example.org.",
                    TA,
                    answer(&["b.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "b.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["b.example.org. 60 IN AAAA 2001:db8::1"],
            authority: &[],
            asked: &[("b.example.org.", TAAAA)],
        },
        Case {
            name: "AAAA only asked as AAAA: untouched",
            corefile: PLAIN,
            scripts: vec![(
                "c.example.org.",
                TAAAA,
                answer(&["c.example.org. 60 AAAA 2001:db8::2"]),
            )],
            qname: "c.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["c.example.org. 60 IN AAAA 2001:db8::2"],
            authority: &[],
            asked: &[("c.example.org.", TAAAA)],
        },
        Case {
            name: "neither family: the AAAA NODATA stands with its SOA",
            corefile: PLAIN,
            scripts: vec![
                (
                    "d.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "d.example.org.",
                    TA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
            ],
            qname: "d.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[
                "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300",
            ],
            asked: &[("d.example.org.", TAAAA), ("d.example.org.", TA)],
        },
        Case {
            name: "NXDOMAIN passes through (RFC 6147 5.1.2), no A question",
            corefile: PLAIN,
            scripts: vec![(
                "nx.example.org.",
                TAAAA,
                negative(ResponseCode::NXDomain, &[SOA]),
            )],
            qname: "nx.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[],
            authority: &[
                "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300",
            ],
            asked: &[("nx.example.org.", TAAAA)],
        },
        Case {
            name: "SERVFAIL answer for AAAA counts as empty: synthesized",
            corefile: PLAIN,
            scripts: vec![
                (
                    "e.example.org.",
                    TAAAA,
                    negative(ResponseCode::ServFail, &[]),
                ),
                (
                    "e.example.org.",
                    TA,
                    answer(&["e.example.org. 120 A 192.0.2.5"]),
                ),
            ],
            qname: "e.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["e.example.org. 120 IN AAAA 64:ff9b::c000:205"],
            authority: &[],
            asked: &[("e.example.org.", TAAAA), ("e.example.org.", TA)],
        },
        Case {
            name: "AAAA failure (timeout) with an A record: synthesized",
            corefile: PLAIN,
            scripts: vec![
                (
                    "f.example.org.",
                    TAAAA,
                    Script::Fail(ResponseCode::ServFail),
                ),
                (
                    "f.example.org.",
                    TA,
                    answer(&["f.example.org. 120 A 192.0.2.6"]),
                ),
            ],
            qname: "f.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["f.example.org. 120 IN AAAA 64:ff9b::c000:206"],
            authority: &[],
            asked: &[("f.example.org.", TAAAA), ("f.example.org.", TA)],
        },
        Case {
            name: "AAAA failure, A NODATA: the A's empty answer is the basis (5.1.6)",
            corefile: PLAIN,
            scripts: vec![
                (
                    "g.example.org.",
                    TAAAA,
                    Script::Fail(ResponseCode::ServFail),
                ),
                (
                    "g.example.org.",
                    TA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
            ],
            qname: "g.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[
                "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300",
            ],
            asked: &[("g.example.org.", TAAAA), ("g.example.org.", TA)],
        },
        Case {
            name: "AAAA failure, A failure: the failure stands",
            corefile: PLAIN,
            scripts: vec![
                (
                    "h.example.org.",
                    TAAAA,
                    Script::Fail(ResponseCode::ServFail),
                ),
                ("h.example.org.", TA, Script::Fail(ResponseCode::ServFail)),
            ],
            qname: "h.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: None,
            answer: &[],
            authority: &[],
            asked: &[("h.example.org.", TAAAA), ("h.example.org.", TA)],
        },
        Case {
            name: "CNAME chain kept, A at the end synthesized",
            corefile: PLAIN,
            scripts: vec![
                (
                    "www.example.org.",
                    TAAAA,
                    with_authority(
                        answer(&["www.example.org. 300 CNAME web.example.net."]),
                        &[SOA],
                    ),
                ),
                (
                    "www.example.org.",
                    TA,
                    answer(&[
                        "www.example.org. 300 CNAME web.example.net.",
                        "web.example.net. 900 A 198.51.100.7",
                    ]),
                ),
            ],
            qname: "www.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[
                "www.example.org. 300 IN CNAME web.example.net.",
                "web.example.net. 300 IN AAAA 64:ff9b::c633:6407",
            ],
            authority: &[],
            asked: &[("www.example.org.", TAAAA), ("www.example.org.", TA)],
        },
        Case {
            name: "only IPv4-mapped AAAA: treated as none (5.1.4)",
            corefile: PLAIN,
            scripts: vec![
                (
                    "m.example.org.",
                    TAAAA,
                    answer(&["m.example.org. 60 AAAA ::ffff:192.0.2.9"]),
                ),
                (
                    "m.example.org.",
                    TA,
                    answer(&["m.example.org. 60 A 192.0.2.9"]),
                ),
            ],
            qname: "m.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["m.example.org. 60 IN AAAA 64:ff9b::c000:209"],
            authority: &[],
            asked: &[("m.example.org.", TAAAA), ("m.example.org.", TA)],
        },
        Case {
            name: "mapped next to a real AAAA: the mapped one is dropped",
            corefile: PLAIN,
            scripts: vec![(
                "n.example.org.",
                TAAAA,
                answer(&[
                    "n.example.org. 60 AAAA ::ffff:192.0.2.9",
                    "n.example.org. 60 AAAA 2001:db8::9",
                ]),
            )],
            qname: "n.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["n.example.org. 60 IN AAAA 2001:db8::9"],
            authority: &[],
            asked: &[("n.example.org.", TAAAA)],
        },
        Case {
            name: "IPv4 client: untouched without allow_ipv4",
            corefile: PLAIN,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 3600 A 192.0.2.33"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: V4,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[
                "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300",
            ],
            asked: &[("a.example.org.", TAAAA)],
        },
        Case {
            name: "IPv4 client with allow_ipv4: synthesized",
            corefile: ". {\n dns64 {\n  allow_ipv4\n }\n}\n",
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 3600 A 192.0.2.33"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: V4,
            rcode: Some(ResponseCode::NoError),
            answer: &["a.example.org. 300 IN AAAA 64:ff9b::c000:221"],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "translate_all replaces real AAAA records",
            corefile: ". {\n dns64 64:1337::/96 {\n  translate_all\n }\n}\n",
            scripts: vec![
                (
                    "b.example.org.",
                    TAAAA,
                    answer(&["b.example.org. 60 AAAA 2001:db8::1"]),
                ),
                (
                    "b.example.org.",
                    TA,
                    answer(&["b.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "b.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["b.example.org. 60 IN AAAA 64:1337::c000:201"],
            authority: &[],
            asked: &[("b.example.org.", TAAAA), ("b.example.org.", TA)],
        },
        Case {
            name: "translate_all without an A record: NODATA",
            corefile: ". {\n dns64 {\n  translate_all\n }\n}\n",
            scripts: vec![
                (
                    "c.example.org.",
                    TAAAA,
                    answer(&["c.example.org. 60 AAAA 2001:db8::2"]),
                ),
                (
                    "c.example.org.",
                    TA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
            ],
            qname: "c.example.org.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("c.example.org.", TAAAA), ("c.example.org.", TA)],
        },
        Case {
            name: "A questions pass untouched",
            corefile: PLAIN,
            scripts: vec![(
                "a.example.org.",
                TA,
                answer(&["a.example.org. 3600 A 192.0.2.33"]),
            )],
            qname: "a.example.org.",
            qtype: TA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &["a.example.org. 3600 IN A 192.0.2.33"],
            authority: &[],
            asked: &[("a.example.org.", TA)],
        },
        Case {
            name: "PTR under the prefix: CNAME to in-addr.arpa, followed",
            corefile: PLAIN,
            scripts: vec![(
                "33.2.0.192.in-addr.arpa.",
                TPTR,
                answer(&["33.2.0.192.in-addr.arpa. 3600 PTR a.example.org."]),
            )],
            qname: "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.",
            qtype: TPTR,
            client: V4,
            rcode: Some(ResponseCode::NoError),
            answer: &[
                "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa. 600 IN CNAME 33.2.0.192.in-addr.arpa.",
                "33.2.0.192.in-addr.arpa. 3600 IN PTR a.example.org.",
            ],
            authority: &[],
            asked: &[("33.2.0.192.in-addr.arpa.", TPTR)],
        },
        Case {
            name: "PTR under the prefix without a PTR for the IPv4 address: CNAME and its NXDOMAIN",
            corefile: PLAIN,
            scripts: vec![],
            qname: "2.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.",
            qtype: TPTR,
            client: V6,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[
                "2.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa. 600 IN CNAME 34.2.0.192.in-addr.arpa.",
            ],
            authority: &[],
            asked: &[("34.2.0.192.in-addr.arpa.", TPTR)],
        },
        Case {
            name: "PTR for the prefix zone itself goes on",
            corefile: PLAIN,
            scripts: vec![],
            qname: "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.",
            qtype: TPTR,
            client: V6,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[],
            authority: &[],
            asked: &[(
                "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.",
                TPTR,
            )],
        },
        Case {
            name: "PTR outside the prefix goes on",
            corefile: PLAIN,
            scripts: vec![],
            qname: "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            qtype: TPTR,
            client: V6,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[],
            authority: &[],
            asked: &[(
                "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
                TPTR,
            )],
        },
        Case {
            name: "ipv4only.arpa A: the two well-known addresses, answered here",
            corefile: PLAIN,
            scripts: vec![],
            qname: "ipv4only.arpa.",
            qtype: TA,
            client: V4,
            rcode: Some(ResponseCode::NoError),
            answer: &[
                "ipv4only.arpa. 600 IN A 192.0.0.170",
                "ipv4only.arpa. 600 IN A 192.0.0.171",
            ],
            authority: &[],
            asked: &[],
        },
        Case {
            name: "ipv4only.arpa AAAA: synthesized with the configured prefix (RFC 7050)",
            corefile: ". {\n dns64 2001:db8:122::/48\n}\n",
            scripts: vec![],
            qname: "IPv4only.ARPA.",
            qtype: TAAAA,
            client: V6,
            rcode: Some(ResponseCode::NoError),
            answer: &[
                "IPv4only.ARPA. 600 IN AAAA 2001:db8:122:c000:0:aa00::",
                "IPv4only.ARPA. 600 IN AAAA 2001:db8:122:c000:0:ab00::",
            ],
            authority: &[],
            asked: &[],
        },
    ]
}

#[test]
fn answers() {
    for wait in [false, true] {
        for case in cases() {
            let (plugin, _) = build(case.corefile);
            let mut fake = Fake::new(&case.scripts);
            if wait {
                fake = fake.waiting();
            }
            let fake = Arc::new(fake);
            let rest: Vec<Arc<dyn Plugin>> = vec![fake.clone()];
            let req = ask(case.qname, case.qtype).from(case.client).request();
            let outcome = run(plugin.as_ref(), &req, &rest);
            let what = format!("{} (wait {wait})", case.name);
            match (case.rcode, outcome) {
                (Some(rcode), Ok(resp)) => {
                    let m = resp.into_message();
                    assert_eq!(m.metadata.response_code, rcode, "{what}");
                    assert_eq!(show(&m.answers), case.answer, "{what}");
                    assert_eq!(show(&m.authorities), case.authority, "{what}");
                    assert_eq!(m.queries, req.msg().queries, "{what}");
                    assert!(!m.metadata.authentic_data, "{what}");
                }
                (None, Err(f)) => assert_eq!(f.rcode, ResponseCode::ServFail, "{what}"),
                (want, got) => panic!("{what}: want {want:?}, got {got:?}"),
            }
            let asked: Vec<(String, RecordType)> = case
                .asked
                .iter()
                .map(|(n, t)| (n.to_string(), *t))
                .collect();
            assert_eq!(fake.asked(), asked, "{what}");
        }
    }
}

/// RFC 6052 Table 1 through the handler: every prefix length synthesizes the RFC's address
/// for 192.0.2.33, and the reverse name of that address leads back to the IPv4 PTR.
#[test]
fn every_prefix_length() {
    let table = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::c000:221"),
        ("64:ff9b::/96", "64:ff9b::c000:221"),
    ];
    for (prefix, want) in table {
        let corefile = format!(". {{\n dns64 {{\n  prefix {prefix}\n }}\n}}\n");
        let built = testkit::setup(setup, NAME, &corefile).expect("setup");
        let plugin = built.handler.expect("handler");
        let fake: Arc<dyn Plugin> = Arc::new(Fake::new(&[
            ("x.example.", TAAAA, answer(&[])),
            ("x.example.", TA, answer(&["x.example. 60 A 192.0.2.33"])),
            (
                "33.2.0.192.in-addr.arpa.",
                TPTR,
                answer(&["33.2.0.192.in-addr.arpa. 60 PTR x.example."]),
            ),
        ]));
        let rest = vec![fake];
        let req = ask("x.example.", TAAAA).from(V6).request();
        let m = testkit::message(run(plugin.as_ref(), &req, &rest));
        assert_eq!(
            show(&m.answers),
            [format!("x.example. 60 IN AAAA {want}")],
            "{prefix}"
        );

        let addr: std::net::Ipv6Addr = want.parse().unwrap();
        let mut reverse = String::new();
        for byte in addr.octets().iter().rev() {
            reverse.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
        }
        reverse.push_str("ip6.arpa.");
        let req = ask(&reverse, TPTR).from(V6).request();
        let m = testkit::message(run(plugin.as_ref(), &req, &rest));
        assert_eq!(
            show(&m.answers),
            [
                format!("{reverse} 600 IN CNAME 33.2.0.192.in-addr.arpa."),
                "33.2.0.192.in-addr.arpa. 60 IN PTR x.example.".to_string()
            ],
            "{prefix}"
        );
    }
}

#[test]
fn other_classes_pass() {
    let (plugin, _) = build(PLAIN);
    let fake = Arc::new(Fake::new(&[]));
    let rest: Vec<Arc<dyn Plugin>> = vec![fake.clone()];
    let req = ask("a.example.org.", TAAAA)
        .class(DNSClass::CH)
        .from(V6)
        .request();
    let m = testkit::message(run(plugin.as_ref(), &req, &rest));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(fake.asked().len(), 1);
}

#[test]
fn counts_translations() {
    let (plugin, shared) = build(PLAIN);
    let fake: Arc<dyn Plugin> = Arc::new(Fake::new(&[
        ("a.example.org.", TAAAA, answer(&[])),
        (
            "a.example.org.",
            TA,
            answer(&["a.example.org. 60 A 192.0.2.1"]),
        ),
        (
            "b.example.org.",
            TAAAA,
            answer(&["b.example.org. 60 AAAA 2001:db8::1"]),
        ),
    ]));
    let rest = vec![fake];
    for name in ["a.example.org.", "a.example.org.", "b.example.org."] {
        let mut req = ask(name, TAAAA).from(V6).request();
        req.server = Arc::from("dns://:53");
        run(plugin.as_ref(), &req, &rest).expect("answer");
    }
    let text = shared.metrics.encode();
    assert!(
        text.contains("coredns_dns64_requests_translated_total{server=\"dns://:53\"} 2"),
        "{text}"
    );
}

#[test]
fn setup_errors() {
    let at = |line: u32, msg: &str| {
        Err(format!(
            "plugin/dns64: Corefile:{line} - Error during parsing: {msg}"
        ))
    };
    for (corefile, want) in [
        (PLAIN.to_string(), Ok(())),
        (". {\n dns64 64:dead::/96\n}\n".into(), Ok(())),
        (
            ". {\n dns64 {\n  prefix 64:ff9b::/32\n  translate_all\n  allow_ipv4\n }\n}\n".into(),
            Ok(()),
        ),
        (
            ". {\n dns64 {\n  prefix 64:ff9b::/52\n }\n}\n".into(),
            at(3, "invalid prefix length \"64:ff9b::/52\""),
        ),
        (
            ". {\n dns64 2001:db8::/72\n}\n".into(),
            at(2, "invalid prefix length \"2001:db8::/72\""),
        ),
        (
            ". {\n dns64 {\n  prefix 64:ff9b::/104\n }\n}\n".into(),
            at(3, "invalid prefix length \"64:ff9b::/104\""),
        ),
        (
            ". {\n dns64 {\n  prefix 8.8.8.8/24\n }\n}\n".into(),
            at(3, "invalid netmask 32 IPv6 address: \"8.8.8.0/24\""),
        ),
        (
            ". {\n dns64 foobar\n}\n".into(),
            Err("plugin/dns64: invalid CIDR address: foobar".into()),
        ),
        (
            ". {\n dns64 a b\n}\n".into(),
            at(
                2,
                "Wrong argument count or unexpected line ending after 'b'",
            ),
        ),
        (
            ". {\n dns64 {\n  prefix\n }\n}\n".into(),
            at(
                3,
                "Wrong argument count or unexpected line ending after 'prefix'",
            ),
        ),
        (
            ". {\n dns64 {\n  foobar\n }\n}\n".into(),
            at(3, "unknown property 'foobar'"),
        ),
        (
            ". {\n dns64 {\n  translate_all yes\n }\n}\n".into(),
            at(3, "unknown property 'yes'"),
        ),
        (
            ". {\n dns64 {\n  prefix 64:ff9b::/96 64:ff9c::/96\n }\n}\n".into(),
            at(3, "unknown property '64:ff9c::/96'"),
        ),
    ] {
        let got = testkit::setup(setup, NAME, &corefile).map(|_| ());
        assert_eq!(got, want, "{corefile}");
    }
}

/// A backend for the micro-benchmark: canned answers by type, nothing recorded.
struct Canned {
    aaaa: Vec<hickory_proto::rr::Record>,
    a: Vec<hickory_proto::rr::Record>,
}

impl Plugin for Canned {
    fn name(&self) -> &'static str {
        "canned"
    }
    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.answers = match req.qtype() {
            RecordType::AAAA => self.aaaa.clone(),
            RecordType::A => self.a.clone(),
            _ => Vec::new(),
        };
        Served::Ready(Ok(Response::new(m, "canned")))
    }
}

/// Cost per question of each path (release: `cargo test --release --lib
/// plugins::dns64::tests::bench_paths -- --ignored --nocapture`).
#[test]
#[ignore]
fn bench_paths() {
    use super::fake::rr;
    let (plugin, _) = build(PLAIN);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let with_aaaa: Vec<Arc<dyn Plugin>> = vec![Arc::new(Canned {
        aaaa: vec![rr("x.example. 60 AAAA 2001:db8::1")],
        a: vec![rr("x.example. 60 A 192.0.2.1")],
    })];
    let a_only: Vec<Arc<dyn Plugin>> = vec![Arc::new(Canned {
        aaaa: Vec::new(),
        a: vec![rr("x.example. 60 A 192.0.2.1")],
    })];
    let n = 200_000u32;
    for (what, qtype, rest) in [
        ("A, passed on", TA, &with_aaaa),
        ("AAAA with AAAA records, kept", TAAAA, &with_aaaa),
        ("AAAA synthesized from A", TAAAA, &a_only),
    ] {
        let req = ask("x.example.", qtype).from(V6).request();
        let start = std::time::Instant::now();
        for _ in 0..n {
            let out = rt.block_on(plugin.serve(&req, Next::new(rest)));
            std::hint::black_box(out.is_ok());
        }
        println!("{what}: {:?} per question", start.elapsed() / n);
    }
}
