//! Table-driven tests: scripted answers from the rest of the chain (optionally through
//! `dns64`), a question from a client, and what `dualstack` must answer and ask.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};

use super::*;
use crate::plugins::dns64::fake::{Fake, Script, answer, negative};
use crate::plugins::whoami::testkit::{self, ask, run, show};

use RecordType::{A as TA, AAAA as TAAAA};

const SOA: &str = "example.org. 3600 SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300";
const SOA_NEG: &str =
    "example.org. 300 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300";

const ALL: &str = ". {
 dualstack {
  aaaa_failure nodata
  filter_aaaa 10.0.0.0/8 2001:db8:a::/48
  filter_a 2001:db8:6::/48
 }
}
";
const FILTERS_ONLY: &str = ". {
 dualstack {
  filter_aaaa 10.0.0.0/8
 }
}
";

const PLAIN: &str = "127.0.0.1:5353";
const V4_FILTERED: &str = "10.1.2.3:5353";
const V6_ONLY: &str = "[2001:db8:6::5]:5353";

struct Case {
    name: &'static str,
    corefile: &'static str,
    /// Put `dns64` (default prefix) between `dualstack` and the scripted answers.
    dns64: bool,
    scripts: Vec<(&'static str, RecordType, Script)>,
    qname: &'static str,
    qtype: RecordType,
    client: &'static str,
    /// `None`: a failure (SERVFAIL) for the server to answer.
    rcode: Option<ResponseCode>,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    asked: &'static [(&'static str, RecordType)],
}

fn both(name: &'static str) -> Vec<(&'static str, RecordType, Script)> {
    vec![
        (
            name,
            TAAAA,
            answer(&[leak(format!("{name} 60 AAAA 2001:db8::1"))]),
        ),
        (name, TA, answer(&[leak(format!("{name} 60 A 192.0.2.1"))])),
    ]
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cases() -> Vec<Case> {
    vec![
        // aaaa_failure
        Case {
            name: "AAAA SERVFAIL, A exists: NODATA",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::ServFail, &[]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "AAAA timeout (plugin failure), A exists: NODATA",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    Script::Fail(ResponseCode::ServFail),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "AAAA REFUSED, A exists: NODATA",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::Refused, &[]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "AAAA NXDOMAIN while A exists: NODATA with the NXDOMAIN's SOA at the negative TTL",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::NXDomain, &[SOA]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[SOA_NEG],
            asked: &[("a.example.org.", TAAAA), ("a.example.org.", TA)],
        },
        Case {
            name: "AAAA SERVFAIL, A NODATA: the SERVFAIL stands",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "b.example.org.",
                    TAAAA,
                    negative(ResponseCode::ServFail, &[]),
                ),
                (
                    "b.example.org.",
                    TA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
            ],
            qname: "b.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::ServFail),
            answer: &[],
            authority: &[],
            asked: &[("b.example.org.", TAAAA), ("b.example.org.", TA)],
        },
        Case {
            name: "AAAA timeout, no such name: the failure stands",
            corefile: ALL,
            dns64: false,
            scripts: vec![(
                "c.example.org.",
                TAAAA,
                Script::Fail(ResponseCode::ServFail),
            )],
            qname: "c.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: None,
            answer: &[],
            authority: &[],
            asked: &[("c.example.org.", TAAAA), ("c.example.org.", TA)],
        },
        Case {
            name: "AAAA NXDOMAIN, A NXDOMAIN: the NXDOMAIN stands",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "nx.example.org.",
                    TAAAA,
                    negative(ResponseCode::NXDomain, &[SOA]),
                ),
                (
                    "nx.example.org.",
                    TA,
                    negative(ResponseCode::NXDomain, &[SOA]),
                ),
            ],
            qname: "nx.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[],
            authority: &[
                "example.org. 3600 IN SOA ns.example.org. admin.example.org. 1 7200 3600 86400 300",
            ],
            asked: &[("nx.example.org.", TAAAA), ("nx.example.org.", TA)],
        },
        Case {
            name: "good AAAA answer: untouched, no A question",
            corefile: ALL,
            dns64: false,
            scripts: both("d.example.org."),
            qname: "d.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &["d.example.org. 60 IN AAAA 2001:db8::1"],
            authority: &[],
            asked: &[("d.example.org.", TAAAA)],
        },
        Case {
            name: "AAAA SERVFAIL behind a CNAME, A exists: NODATA keeps the CNAME",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "www.example.org.",
                    TAAAA,
                    negative(ResponseCode::ServFail, &[]),
                ),
                (
                    "www.example.org.",
                    TA,
                    answer(&[
                        "www.example.org. 300 CNAME web.example.net.",
                        "web.example.net. 60 A 198.51.100.7",
                    ]),
                ),
            ],
            qname: "www.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &["www.example.org. 300 IN CNAME web.example.net."],
            authority: &[],
            asked: &[("www.example.org.", TAAAA), ("www.example.org.", TA)],
        },
        Case {
            name: "aaaa_failure not configured: SERVFAIL stands, no A question",
            corefile: FILTERS_ONLY,
            dns64: false,
            scripts: vec![
                (
                    "a.example.org.",
                    TAAAA,
                    negative(ResponseCode::ServFail, &[]),
                ),
                (
                    "a.example.org.",
                    TA,
                    answer(&["a.example.org. 60 A 192.0.2.1"]),
                ),
            ],
            qname: "a.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::ServFail),
            answer: &[],
            authority: &[],
            asked: &[("a.example.org.", TAAAA)],
        },
        // filter_aaaa
        Case {
            name: "filter_aaaa client, both families: AAAA removed",
            corefile: ALL,
            dns64: false,
            scripts: both("e.example.org."),
            qname: "e.example.org.",
            qtype: TAAAA,
            client: V4_FILTERED,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("e.example.org.", TAAAA), ("e.example.org.", TA)],
        },
        Case {
            name: "filter_aaaa client, AAAA only: kept",
            corefile: FILTERS_ONLY,
            dns64: false,
            scripts: vec![
                (
                    "f.example.org.",
                    TAAAA,
                    answer(&["f.example.org. 60 AAAA 2001:db8::2"]),
                ),
                (
                    "f.example.org.",
                    TA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
            ],
            qname: "f.example.org.",
            qtype: TAAAA,
            client: V4_FILTERED,
            rcode: Some(ResponseCode::NoError),
            answer: &["f.example.org. 60 IN AAAA 2001:db8::2"],
            authority: &[],
            asked: &[("f.example.org.", TAAAA), ("f.example.org.", TA)],
        },
        Case {
            name: "client outside filter_aaaa: AAAA kept, no A question",
            corefile: FILTERS_ONLY,
            dns64: false,
            scripts: both("e.example.org."),
            qname: "e.example.org.",
            qtype: TAAAA,
            client: PLAIN,
            rcode: Some(ResponseCode::NoError),
            answer: &["e.example.org. 60 IN AAAA 2001:db8::1"],
            authority: &[],
            asked: &[("e.example.org.", TAAAA)],
        },
        Case {
            name: "filter_aaaa behind a CNAME: CNAME kept, AAAA removed",
            corefile: FILTERS_ONLY,
            dns64: false,
            scripts: vec![
                (
                    "www.example.org.",
                    TAAAA,
                    answer(&[
                        "www.example.org. 300 CNAME web.example.net.",
                        "web.example.net. 60 AAAA 2001:db8::7",
                    ]),
                ),
                (
                    "www.example.org.",
                    TA,
                    answer(&[
                        "www.example.org. 300 CNAME web.example.net.",
                        "web.example.net. 60 A 198.51.100.7",
                    ]),
                ),
            ],
            qname: "www.example.org.",
            qtype: TAAAA,
            client: V4_FILTERED,
            rcode: Some(ResponseCode::NoError),
            answer: &["www.example.org. 300 IN CNAME web.example.net."],
            authority: &[],
            asked: &[("www.example.org.", TAAAA), ("www.example.org.", TA)],
        },
        // filter_a
        Case {
            name: "filter_a client, both families: A answered NODATA, A never asked",
            corefile: ALL,
            dns64: false,
            scripts: both("g.example.org."),
            qname: "g.example.org.",
            qtype: TA,
            client: V6_ONLY,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            asked: &[("g.example.org.", TAAAA)],
        },
        Case {
            name: "filter_a client, A only, no dns64: the A answer",
            corefile: ALL,
            dns64: false,
            scripts: vec![
                (
                    "h.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "h.example.org.",
                    TA,
                    answer(&["h.example.org. 60 A 192.0.2.8"]),
                ),
            ],
            qname: "h.example.org.",
            qtype: TA,
            client: V6_ONLY,
            rcode: Some(ResponseCode::NoError),
            answer: &["h.example.org. 60 IN A 192.0.2.8"],
            authority: &[],
            asked: &[("h.example.org.", TAAAA), ("h.example.org.", TA)],
        },
        Case {
            name: "filter_a client, A only, dns64 synthesizes: NODATA (the NAT64 incident)",
            corefile: ALL,
            dns64: true,
            scripts: vec![
                (
                    "h.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "h.example.org.",
                    TA,
                    answer(&["h.example.org. 60 A 192.0.2.8"]),
                ),
            ],
            qname: "h.example.org.",
            qtype: TA,
            client: V6_ONLY,
            rcode: Some(ResponseCode::NoError),
            answer: &[],
            authority: &[],
            // dns64's own A question for the synthesis; no A question for the client's.
            asked: &[("h.example.org.", TAAAA), ("h.example.org.", TA)],
        },
        Case {
            name: "filter_a client's AAAA through dns64: synthesized, untouched by dualstack",
            corefile: ALL,
            dns64: true,
            scripts: vec![
                (
                    "h.example.org.",
                    TAAAA,
                    negative(ResponseCode::NoError, &[SOA]),
                ),
                (
                    "h.example.org.",
                    TA,
                    answer(&["h.example.org. 60 A 192.0.2.8"]),
                ),
            ],
            qname: "h.example.org.",
            qtype: TAAAA,
            client: V6_ONLY,
            rcode: Some(ResponseCode::NoError),
            answer: &["h.example.org. 60 IN AAAA 64:ff9b::c000:208"],
            authority: &[],
            asked: &[("h.example.org.", TAAAA), ("h.example.org.", TA)],
        },
        Case {
            name: "filter_a client, no such name: the A question's NXDOMAIN",
            corefile: ALL,
            dns64: false,
            scripts: vec![],
            qname: "nx.example.org.",
            qtype: TA,
            client: V6_ONLY,
            rcode: Some(ResponseCode::NXDomain),
            answer: &[],
            authority: &[],
            asked: &[("nx.example.org.", TAAAA), ("nx.example.org.", TA)],
        },
        Case {
            name: "client outside filter_a: A untouched",
            corefile: ALL,
            dns64: false,
            scripts: both("g.example.org."),
            qname: "g.example.org.",
            qtype: TA,
            client: "[2001:db8:7::5]:5353",
            rcode: Some(ResponseCode::NoError),
            answer: &["g.example.org. 60 IN A 192.0.2.1"],
            authority: &[],
            asked: &[("g.example.org.", TA)],
        },
    ]
}

fn chain(dns64: bool, fake: Arc<Fake>) -> Vec<Arc<dyn Plugin>> {
    let mut rest: Vec<Arc<dyn Plugin>> = Vec::new();
    if dns64 {
        let built = testkit::setup(crate::plugins::dns64::setup, "dns64", ". {\n dns64\n}\n")
            .expect("dns64");
        rest.push(built.handler.expect("handler"));
    }
    rest.push(fake);
    rest
}

#[test]
fn answers() {
    for wait in [false, true] {
        for case in cases() {
            let built = testkit::setup(setup, NAME, case.corefile).expect("setup");
            let plugin = built.handler.expect("handler");
            let mut fake = Fake::new(&case.scripts);
            if wait {
                fake = fake.waiting();
            }
            let fake = Arc::new(fake);
            let rest = chain(case.dns64, fake.clone());
            let req = ask(case.qname, case.qtype).from(case.client).request();
            let what = format!("{} (wait {wait})", case.name);
            match (case.rcode, run(plugin.as_ref(), &req, &rest)) {
                (Some(rcode), Ok(resp)) => {
                    let m = resp.into_message();
                    assert_eq!(m.metadata.response_code, rcode, "{what}");
                    assert_eq!(show(&m.answers), case.answer, "{what}");
                    assert_eq!(show(&m.authorities), case.authority, "{what}");
                    assert_eq!(m.queries, req.msg().queries, "{what}");
                    assert_eq!(m.metadata.id, req.id(), "{what}");
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

#[test]
fn other_classes_and_types_pass() {
    let built = testkit::setup(setup, NAME, ALL).expect("setup");
    let plugin = built.handler.expect("handler");
    let fake = Arc::new(Fake::new(&[]));
    let rest: Vec<Arc<dyn Plugin>> = vec![fake.clone()];
    for req in [
        ask("a.example.org.", TAAAA).class(DNSClass::CH).request(),
        ask("a.example.org.", TA)
            .class(DNSClass::CH)
            .from(V6_ONLY)
            .request(),
        ask("a.example.org.", RecordType::MX)
            .from(V6_ONLY)
            .request(),
    ] {
        let m = testkit::message(run(plugin.as_ref(), &req, &rest));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(fake.asked().len(), 3);
}

#[test]
fn counts_each_action() {
    let built = testkit::setup(setup, NAME, ALL).expect("setup");
    let plugin = built.handler.expect("handler");
    let mut scripts = both("both.example.org.");
    scripts.push((
        "sf.example.org.",
        TAAAA,
        negative(ResponseCode::ServFail, &[]),
    ));
    scripts.push((
        "sf.example.org.",
        TA,
        answer(&["sf.example.org. 60 A 192.0.2.1"]),
    ));
    let fake: Arc<dyn Plugin> = Arc::new(Fake::new(&scripts));
    let rest = vec![fake];
    for (name, qtype, client) in [
        ("sf.example.org.", TAAAA, PLAIN),
        ("both.example.org.", TAAAA, V4_FILTERED),
        ("both.example.org.", TA, V6_ONLY),
        ("both.example.org.", TA, V6_ONLY),
    ] {
        let mut req = ask(name, qtype).from(client).request();
        req.server = Arc::from("dns://:53");
        run(plugin.as_ref(), &req, &rest).expect("answer");
    }
    let text = built.shared.metrics.encode();
    for line in [
        "coredns_dualstack_aaaa_failures_rewritten_total{server=\"dns://:53\"} 1",
        "coredns_dualstack_filtered_total{server=\"dns://:53\",type=\"AAAA\"} 1",
        "coredns_dualstack_filtered_total{server=\"dns://:53\",type=\"A\"} 2",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[test]
fn setup_errors() {
    let at = |line: u32, msg: &str| {
        Err(format!(
            "plugin/dualstack: Corefile:{line} - Error during parsing: {msg}"
        ))
    };
    for (corefile, want) in [
        (ALL, Ok(())),
        (". {\n dualstack {\n  aaaa_failure nodata\n }\n}\n", Ok(())),
        (
            ". {\n dualstack {\n  filter_a ::/0\n  filter_a 2001:db8::1\n }\n}\n",
            Ok(()),
        ),
        (
            ". {\n dualstack\n}\n",
            at(
                2,
                "no policy configured; expect 'aaaa_failure', 'filter_aaaa' or 'filter_a'",
            ),
        ),
        (
            ". {\n dualstack example.org {\n  aaaa_failure nodata\n }\n}\n",
            at(
                2,
                "Wrong argument count or unexpected line ending after 'example.org'",
            ),
        ),
        (
            ". {\n dualstack {\n  aaaa_failure servfail\n }\n}\n",
            at(3, "unknown aaaa_failure policy 'servfail'; expect 'nodata'"),
        ),
        (
            ". {\n dualstack {\n  aaaa_failure\n }\n}\n",
            at(
                3,
                "Wrong argument count or unexpected line ending after 'aaaa_failure'",
            ),
        ),
        (
            ". {\n dualstack {\n  filter_aaaa\n }\n}\n",
            at(
                3,
                "Wrong argument count or unexpected line ending after 'filter_aaaa'",
            ),
        ),
        (
            ". {\n dualstack {\n  filter_a 2001:db8::/129\n }\n}\n",
            at(3, "illegal CIDR notation \"2001:db8::/129\""),
        ),
        (
            ". {\n dualstack {\n  prefer ipv6\n }\n}\n",
            at(3, "unknown property 'prefer'"),
        ),
        (
            ". {\n dualstack {\n  aaaa_failure nodata\n }\n dualstack {\n  aaaa_failure nodata\n }\n}\n",
            at(
                5,
                "plugin/dualstack: this plugin can only be used once per Server Block",
            ),
        ),
    ] {
        let got = testkit::setup(setup, NAME, corefile).map(|_| ());
        assert_eq!(got, want, "{corefile}");
    }
}
