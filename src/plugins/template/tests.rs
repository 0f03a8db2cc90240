//! Table-driven tests from CoreDNS's README examples and its template_test.go / setup_test.go.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::setup;
use crate::plugin::upstream::testkit as upstream;
use crate::plugin::{Failure, Plugin};
use crate::plugins::whoami::testkit::{self, Answer, Ask, ask, record, run, show};

/// The rest of the chain: NXDOMAIN from a plugin called "answer", so a fallthrough is visible.
fn next_plugin() -> Vec<Arc<dyn Plugin>> {
    vec![Arc::new(Answer::new(ResponseCode::NXDomain))]
}

struct Case {
    ask: Ask,
    /// `None`: the query must reach the next plugin.
    rcode: Option<ResponseCode>,
    answer: &'static [&'static str],
    authority: &'static [&'static str],
    additional: &'static [&'static str],
}

fn case(ask: Ask, rcode: ResponseCode) -> Case {
    Case {
        ask,
        rcode: Some(rcode),
        answer: &[],
        authority: &[],
        additional: &[],
    }
}

fn through(ask: Ask) -> Case {
    Case {
        rcode: None,
        ..case(ask, ResponseCode::NoError)
    }
}

impl Case {
    fn answer(mut self, a: &'static [&'static str]) -> Self {
        self.answer = a;
        self
    }
    fn authority(mut self, a: &'static [&'static str]) -> Self {
        self.authority = a;
        self
    }
    fn additional(mut self, a: &'static [&'static str]) -> Self {
        self.additional = a;
        self
    }
}

fn check(corefile: &str, cases: Vec<Case>) {
    let built = testkit::setup(setup, "template", corefile).expect("setup");
    let plugin = built.handler.expect("handler");
    let rest = next_plugin();
    for c in cases {
        let req = c.ask.request();
        let what = format!("{} {}", req.name(), req.qtype());
        match (run(plugin.as_ref(), &req, &rest), c.rcode) {
            (Ok(resp), None) => assert_eq!(resp.plugin, "answer", "{what}: should fall through"),
            (Ok(resp), Some(rcode)) => {
                assert_eq!(resp.plugin, "template", "{what}");
                let m = resp.into_message();
                assert_eq!(m.metadata.response_code, rcode, "{what}");
                assert!(m.metadata.authoritative, "{what}: AA");
                assert_eq!(m.metadata.id, req.id());
                assert_eq!(m.queries, req.msg().queries);
                assert_eq!(show(&m.answers), c.answer, "{what}: answer");
                assert_eq!(show(&m.authorities), c.authority, "{what}: authority");
                assert_eq!(show(&m.additionals), c.additional, "{what}: additional");
            }
            (Err(Failure { rcode: got, .. }), Some(want)) => assert_eq!(got, want, "{what}"),
            (Err(f), None) => panic!("{what}: failed with {} instead of falling through", f.rcode),
        }
    }
}

#[test]
fn readme_a_and_ptr_for_example() {
    check(
        r#". {
    template IN A example {
      match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      fallthrough
    }
    template IN PTR in-addr.arpa {
      match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
      answer "{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example."
    }
}
"#,
        vec![
            case(
                ask("ip-10-95-12-8.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]),
            // The A template is a wildcard, and names are matched lower-cased.
            case(
                ask("Sub.IP-10-0-0-1.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["sub.ip-10-0-0-1.example. 60 IN A 10.0.0.1"]),
            case(
                ask("8.12.95.10.in-addr.arpa.", RecordType::PTR),
                ResponseCode::NoError,
            )
            .answer(&["8.12.95.10.in-addr.arpa. 60 IN PTR ip-10-95-12-8.example."]),
            // A type ANY question matches any template type.
            case(
                ask("ip-1-2-3-4.example.", RecordType::ANY),
                ResponseCode::NoError,
            )
            .answer(&["ip-1-2-3-4.example. 60 IN A 1.2.3.4"]),
            // Zone matches, regex does not, fallthrough: the next plugin answers.
            through(ask("www.example.", RecordType::A)),
            // Zone matches, regex does not, no fallthrough: SERVFAIL.
            case(
                ask("x.in-addr.arpa.", RecordType::PTR),
                ResponseCode::ServFail,
            ),
            // Other types and names outside every zone go to the next plugin.
            through(ask("ip-10-95-12-8.example.", RecordType::AAAA)),
            through(ask("example.org.", RecordType::A)),
        ],
    );
}

#[test]
fn readme_parse_int_and_multiple_patterns() {
    check(
        r#". {
    template IN A example {
      match "^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$"
      answer "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}"
      fallthrough
    }
    template IN A example {
      match "^ip-(?P<a>10)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]dc[.]example[.]$"
      match "^(?P<a>[0-9]*)[.](?P<b>[0-9]*)[.](?P<c>[0-9]*)[.](?P<d>[0-9]*)[.]ext[.]example[.]$"
      answer "{{ .Name }} 60 IN A {{ .Group.a}}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      fallthrough
    }
}
"#,
        vec![
            case(
                ask("ip0a7b7b7b.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["ip0a7b7b7b.example. 60 IN A 10.123.123.123"]),
            case(
                ask("ip-10-1-2-3.dc.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["ip-10-1-2-3.dc.example. 60 IN A 10.1.2.3"]),
            case(
                ask("192.0.2.1.ext.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["192.0.2.1.ext.example. 60 IN A 192.0.2.1"]),
            through(ask("ip-11-1-2-3.dc.example.", RecordType::A)),
        ],
    );
}

#[test]
fn readme_mx_with_additional_and_authority() {
    check(
        r#". {
    template IN MX example {
      match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
      additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      authority  "example. 60 IN NS ns0.example."
      authority  "example. 60 IN NS ns1.example."
      additional "ns0.example. 60 IN A 203.0.113.8"
      additional "ns1.example. 60 IN A 198.51.100.8"
      fallthrough
    }
}
"#,
        vec![
            case(
                ask("ip-10-1-2-3.example.", RecordType::MX),
                ResponseCode::NoError,
            )
            .answer(&["ip-10-1-2-3.example. 60 IN MX 10 ip-10-1-2-3.example."])
            .authority(&[
                "example. 60 IN NS ns0.example.",
                "example. 60 IN NS ns1.example.",
            ])
            .additional(&[
                "ip-10-1-2-3.example. 60 IN A 10.1.2.3",
                "ns0.example. 60 IN A 203.0.113.8",
                "ns1.example. 60 IN A 198.51.100.8",
            ]),
        ],
    );
}

#[test]
fn readme_nxdomain_for_invalid_with_soa() {
    let corefile = r#". {
    template ANY ANY invalid {
      rcode NXDOMAIN
      authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
      ederror 21 "Blocked according to RFC2606"
    }
}
"#;
    check(
        corefile,
        vec![
            case(ask("test.invalid.", RecordType::MX), ResponseCode::NXDomain)
                .authority(&["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]),
            case(ask("invalid.", RecordType::A), ResponseCode::NXDomain)
                .authority(&["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]),
            // The CH class too, with a CH SOA.
            case(
                ask("x.invalid.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NXDomain,
            )
            .authority(&["invalid. 60 CH SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]),
            through(ask("valid.", RecordType::A)),
        ],
    );
    // The extended error: info code 21 and the reason.
    let built = testkit::setup(setup, "template", corefile).unwrap();
    let m = testkit::message(run(
        built.handler.unwrap().as_ref(),
        &ask("a.invalid.", RecordType::A).edns(1232).request(),
        &[],
    ));
    let edns = m.edns.expect("OPT");
    let ede = edns.options().options.iter().find_map(|(_, o)| match o {
        EdnsOption::Unknown(15, data) => Some(data.clone()),
        _ => None,
    });
    let mut want = 21u16.to_be_bytes().to_vec();
    want.extend_from_slice(b"Blocked according to RFC2606");
    assert_eq!(ede, Some(want));
}

#[test]
fn readme_search_domain_completions() {
    // Zone-based and the regex-based equivalent.
    check(
        r#". {
    template IN ANY example.com.dc1.example.com {
      rcode NXDOMAIN
      authority "{{ .Zone }} 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)"
    }
}
"#,
        vec![
            case(ask("something.example.com.dc1.example.com.", RecordType::A), ResponseCode::NXDomain)
                .authority(&["example.com.dc1.example.com. 60 IN SOA ns.example.com. hostmaster.example.com. 1 60 60 60 60"]),
            through(ask("host.dc1.example.com.", RecordType::A)),
        ],
    );
    check(
        r#". {
    template IN ANY example.com {
      match "example\.com\.(dc1\.example\.com\.)$"
      rcode NXDOMAIN
      authority "{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.{{ index .Match 1 }} (1 60 60 60 60)"
      fallthrough
    }
}
"#,
        vec![
            case(ask("something.example.com.dc1.example.com.", RecordType::AAAA), ResponseCode::NXDomain)
                .authority(&["dc1.example.com. 60 IN SOA ns.dc1.example.com. hostmaster.dc1.example.com. 1 60 60 60 60"]),
            through(ask("www.example.com.", RecordType::A)),
        ],
    );
}

#[test]
fn readme_soa_and_ns_for_a_dynamic_domain() {
    check(
        r#"engineering.coredns.io. {
    template IN SOA {
      match ^engineering\.coredns\.io\.$
      answer "{{ .Zone }} 3600 IN SOA ns1.{{ .Zone }} admin.{{ .Zone }} (1 60 120 86400 3600)"
      fallthrough
    }
    template IN SOA {
      authority "{{ .Zone }} 3600 IN SOA host.engineering.coredns.io. engineering.coredns.io. (1 60 120 86400 3600)"
    }
    template IN NS {
      match ^engineering\.coredns\.io\.$
      answer "{{ .Zone }} 900 IN NS ns1.engineering.coredns.io."
      answer "{{ .Zone }} 900 IN NS ns2.engineering.coredns.io."
      fallthrough
    }
    template IN NS {
      authority "{{ .Zone }} 3600 IN SOA host.engineering.coredns.io. engineering.coredns.io. (1 60 120 86400 3600)"
    }
}
"#,
        vec![
            case(ask("engineering.coredns.io.", RecordType::SOA), ResponseCode::NoError).answer(&[
                "engineering.coredns.io. 3600 IN SOA ns1.engineering.coredns.io. admin.engineering.coredns.io. 1 60 120 86400 3600",
            ]),
            case(ask("sub.engineering.coredns.io.", RecordType::SOA), ResponseCode::NoError).authority(&[
                "engineering.coredns.io. 3600 IN SOA host.engineering.coredns.io. engineering.coredns.io. 1 60 120 86400 3600",
            ]),
            case(ask("engineering.coredns.io.", RecordType::NS), ResponseCode::NoError).answer(&[
                "engineering.coredns.io. 900 IN NS ns1.engineering.coredns.io.",
                "engineering.coredns.io. 900 IN NS ns2.engineering.coredns.io.",
            ]),
            case(ask("x.engineering.coredns.io.", RecordType::NS), ResponseCode::NoError).authority(&[
                "engineering.coredns.io. 3600 IN SOA host.engineering.coredns.io. engineering.coredns.io. 1 60 120 86400 3600",
            ]),
            through(ask("engineering.coredns.io.", RecordType::A)),
        ],
    );
}

#[test]
fn aaaa_noerror_for_c_ares() {
    // The PgBouncer / c-ares 1.15 fix: an empty NOERROR for AAAA, so the client asks for A.
    check(
        r#". {
    template IN AAAA {
        match ^postgresql-primary.*
        rcode NOERROR
        fallthrough
    }
}
"#,
        vec![
            case(
                ask("postgresql-primary.db.svc.cluster.local.", RecordType::AAAA),
                ResponseCode::NoError,
            ),
            case(
                ask("PostgreSQL-Primary.db.svc.cluster.local.", RecordType::AAAA),
                ResponseCode::NoError,
            ),
            through(ask(
                "postgresql-primary.db.svc.cluster.local.",
                RecordType::A,
            )),
            through(ask(
                "postgresql-replica.db.svc.cluster.local.",
                RecordType::AAAA,
            )),
            through(ask("x.postgresql-primary.db.", RecordType::AAAA)),
        ],
    );
}

#[test]
fn coredns_multi_section() {
    // CoreDNS's TestMultiSection, in a `test.` block.
    check(
        r#"test. {
    template IN A {
        rcode REFUSED
    }
    template IN TXT {
        match "$^"
        rcode SERVFAIL
        fallthrough
    }
    template CH TXT coredns.invalid {
        answer "{{ .Name }} 60 CH TXT \"test\""
    }
    template IN A example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
        fallthrough
    }
    template IN MX example {
        match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
        answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
        additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    }
}
"#,
        vec![
            case(ask("some.test.", RecordType::A), ResponseCode::Refused),
            through(ask("some.test.", RecordType::TXT)),
            case(
                ask("coredns.invalid.", RecordType::TXT).class(DNSClass::CH),
                ResponseCode::NoError,
            )
            .answer(&["coredns.invalid. 60 CH TXT test"]),
            case(
                ask("ip-10-11-12-13.example.", RecordType::A),
                ResponseCode::NoError,
            )
            .answer(&["ip-10-11-12-13.example. 60 IN A 10.11.12.13"]),
            case(
                ask("ip-10-11-12-13.example.", RecordType::MX),
                ResponseCode::NoError,
            )
            .answer(&["ip-10-11-12-13.example. 60 IN MX 10 ip-10-11-12-13.example."])
            .additional(&["ip-10-11-12-13.example. 60 IN A 10.11.12.13"]),
            through(ask("something.example.", RecordType::A)),
            case(
                ask("something.example.", RecordType::MX),
                ResponseCode::ServFail,
            ),
        ],
    );
}

#[test]
fn servfail_rcode_and_failures_count() {
    let corefile = r#". {
    template ANY ANY servfail.test {
        rcode SERVFAIL
    }
    template ANY ANY broken.test {
        answer "{{ .Name }} 60 IN TXT \"{{ index .Match 2 }}\""
    }
    template ANY ANY notrr.test {
        additional "{{ .Name }}"
    }
    template ANY ANY empty.test {
        answer "{{ if eq .Type \"TXT\" }}{{ .Name }} 60 IN TXT \"t\"{{ end }}"
    }
}
"#;
    let built = testkit::setup(setup, "template", corefile).unwrap();
    let plugin = built.handler.unwrap();
    let outcome = run(
        plugin.as_ref(),
        &ask("servfail.test.", RecordType::A).request(),
        &[],
    );
    let f = outcome.expect_err("SERVFAIL");
    assert_eq!(f.rcode, ResponseCode::ServFail);
    assert!(f.error.is_none());

    let f = run(
        plugin.as_ref(),
        &ask("a.broken.test.", RecordType::A).request(),
        &[],
    )
    .expect_err("SERVFAIL");
    assert_eq!(f.rcode, ResponseCode::ServFail);
    assert_eq!(
        f.error.unwrap().to_string(),
        "plugin/template: template: answer:1:26: executing \"answer\" at <index .Match 2>: error calling index: index out of range: 2"
    );
    let f = run(
        plugin.as_ref(),
        &ask("a.notrr.test.", RecordType::A).request(),
        &[],
    )
    .expect_err("SERVFAIL");
    assert_eq!(f.rcode, ResponseCode::ServFail);

    // A template that renders nothing adds no record.
    let m = testkit::message(run(
        plugin.as_ref(),
        &ask("a.empty.test.", RecordType::A).request(),
        &[],
    ));
    assert!(m.answers.is_empty());
    let m = testkit::message(run(
        plugin.as_ref(),
        &ask("a.empty.test.", RecordType::TXT).request(),
        &[],
    ));
    assert_eq!(show(&m.answers), ["a.empty.test. 60 IN TXT t"]);

    let text = built.shared.metrics.encode();
    for line in [
        "coredns_template_matches_total{server=\"\",zone=\"servfail.test.\",view=\"\",class=\"IN\",type=\"A\"} 1",
        "coredns_template_template_failures_total{server=\"\",zone=\"broken.test.\",view=\"\",class=\"IN\",type=\"A\",section=\"answer\",template=\"{{.Name}} 60 IN TXT \\\"{{index .Match 2}}\\\"\"} 1",
        "coredns_template_rr_failures_total{server=\"\",zone=\"notrr.test.\",view=\"\",class=\"IN\",type=\"A\",section=\"additional\",template=\"{{.Name}}\"} 1",
    ] {
        assert!(text.contains(line), "{line}\n---\n{text}");
    }
}

#[test]
fn template_data() {
    check(
        r#". {
    template IN TXT data.test {
        match "^(?P<first>[a-z]+)[.](x)?"
        answer "{{ .Name }} 0 IN TXT \"{{ .Zone }}\" \"{{ .Class }}\" \"{{ .Type }}\" \"{{ .Remote }}\" \"{{ .Question.Name }}\" \"{{ .Question.Qtype }}\" \"{{ .Message.Id }}\" \"{{ .Group.first }}|{{ index .Match 2 }}|{{ .Group.nope }}\" \"{{ .Meta \"x\" }}\" \"{{ len .Match }}\""
    }
}
"#,
        vec![
            case(ask("Hello.data.test.", RecordType::TXT), ResponseCode::NoError).answer(&[
                "hello.data.test. 0 IN TXT data.test.INTXT127.0.0.1Hello.data.test.164242hello||<no value>3",
            ]),
        ],
    );
}

#[test]
fn special_characters_in_names_round_trip() {
    // miekg/dns's presentation form: "\032" is a space, decimal.
    let built = testkit::setup(
        setup,
        "template",
        ". {\n template IN A {\n  answer \"{{ .Name }} 60 IN A 192.0.2.1\"\n }\n}\n",
    )
    .unwrap();
    let req = ask("x.example.", RecordType::A).request();
    let name = hickory_proto::rr::Name::from_labels(vec![&b"a b"[..], &b"Ex(1)"[..]]).unwrap();
    let mut msg = req.msg().clone();
    msg.queries[0].name = name.clone();
    let req = req.with_message(msg).unwrap();
    let m = testkit::message(run(built.handler.unwrap().as_ref(), &req, &[]));
    assert_eq!(m.answers.len(), 1);
    let got: Vec<&[u8]> = m.answers[0].name.iter().collect();
    assert_eq!(got, vec![&b"a b"[..], &b"ex(1)"[..]]);
}

#[test]
fn cname_target_is_looked_up_through_the_server() {
    let built = testkit::setup(
        setup,
        "template",
        r#"foogle.com {
  template IN ANY foogle.com {
    match "^foogle\.com\.$"
    answer "foogle.com 60 IN CNAME google.com"
  }
}
"#,
    )
    .unwrap();
    let plugin = built.handler.unwrap();
    let mut google = Answer::new(ResponseCode::NoError);
    google.answers.push(record(
        "google.com.",
        300,
        RData::A(A("192.0.2.80".parse().unwrap())),
    ));
    // The target lives in another server block of the listener: template's own block has
    // nothing after it, so only a lookup through the server finds it.
    let table = upstream::listener(
        &built.shared,
        vec![
            ("foogle.com.", vec![plugin.clone()]),
            ("google.com.", vec![Arc::new(google) as Arc<dyn Plugin>]),
        ],
    );
    let asked = |qtype| {
        let req = upstream::arrived(ask("foogle.com.", qtype).request());
        testkit::message(run(plugin.as_ref(), &req, &[]))
    };
    assert_eq!(
        show(&asked(RecordType::A).answers),
        [
            "foogle.com. 60 IN CNAME google.com.",
            "google.com. 300 IN A 192.0.2.80"
        ]
    );
    // Only A and AAAA questions are chased.
    let m = asked(RecordType::MX);
    assert_eq!(m.answers.len(), 1);
    assert!(matches!(m.answers[0].data, RData::CNAME(CNAME(_))));
    // A lookup that finds nothing (no zone of the listener holds the target: REFUSED) adds
    // nothing.
    drop(table);
    let _table = upstream::listener(&built.shared, vec![("foogle.com.", vec![plugin.clone()])]);
    assert_eq!(
        show(&asked(RecordType::AAAA).answers),
        ["foogle.com. 60 IN CNAME google.com."]
    );
}

#[test]
fn setup_errors() {
    for (body, err) in [
        (
            "template",
            Some(
                "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'template'",
            ),
        ),
        ("template X", Some("Wrong argument count")),
        ("template ANY", Some("Wrong argument count")),
        (
            "template ANY X",
            Some("Corefile:2 - Error during parsing: invalid RR class X"),
        ),
        ("template in A", Some("invalid query class in")),
        ("template IN a", Some("invalid RR class a")),
        (
            "template ANY ANY {\n notavailable\n}",
            Some(
                "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'notavailable'",
            ),
        ),
        ("template ANY ANY {\n answer\n}", Some("after 'answer'")),
        (
            "template ANY ANY {\n additional\n}",
            Some("after 'additional'"),
        ),
        (
            "template ANY ANY {\n authority\n}",
            Some("after 'authority'"),
        ),
        ("template ANY ANY {\n match\n}", Some("after 'match'")),
        ("template ANY ANY {\n rcode\n}", Some("after 'rcode'")),
        (
            "template ANY ANY {\n rcode UNDEFINED\n}",
            Some("unknown rcode UNDEFINED"),
        ),
        (
            "template ANY ANY {\n rcode nxdomain\n}",
            Some("unknown rcode nxdomain"),
        ),
        (
            "template ANY ANY {\n answer \"{{\"\n}",
            Some(
                "Corefile:3 - Error during parsing: could not compile template: {{, template: answer:1: unclosed action",
            ),
        ),
        (
            "template ANY ANY {\n additional \"{{ .Name }\"\n}",
            Some(
                "could not compile template: {{ .Name }, template: additional:1: unexpected \"}\" in operand",
            ),
        ),
        (
            "template ANY ANY {\n authority \"{{ nope }}\"\n}",
            Some("template: authority:1: function \"nope\" not defined"),
        ),
        (
            "template ANY ANY {\n match \"(?P<x>\"\n}",
            Some("could not parse regex: (?P<x>"),
        ),
        ("template ANY ANY {\n ederror\n}", Some("after 'ederror'")),
        (
            "template ANY ANY {\n ederror 1 a b\n}",
            Some("after 'ederror'"),
        ),
        (
            "template ANY ANY {\n ederror x\n}",
            Some(
                "error parsing extended DNS error code x, strconv.ParseUint: parsing \"x\": invalid syntax",
            ),
        ),
        (
            "template ANY ANY {\n ederror 70000\n}",
            Some("value out of range"),
        ),
        // Valid ones, from CoreDNS's tests and README.
        ("template ANY ANY {\n rcode NXDOMAIN\n}", None),
        ("template ANY ANY {\n}", None),
        (
            "template IN AAAA {\n match ^postgresql-primary.*\n rcode NOERROR\n fallthrough\n}",
            None,
        ),
        (
            "template ANY ANY {\n rcode NOTIMPL\n upstream\n ederror 21\n}",
            None,
        ),
        (
            "template IN A example {\n answer \"{{ .Name }} A {{ .Group.a }}.{{ .Grup.d }}.\"\n}\ntemplate IN MX ip-10 {\n answer \"{{ .Name }} 60 IN MX 10 {{ .Name }}\"\n additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}\"\n}",
            None,
        ),
    ] {
        let corefile = format!("domain.com.:8053 dynamic.domain.com.:8053 {{\n{body}\n}}\n");
        let got = testkit::setup(setup, "template", &corefile);
        match (got, err) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => {
                assert!(e.starts_with("plugin/template: "), "{e}");
                assert!(e.contains(want), "{body}\n got: {e}\nwant: {want}");
            }
            (Ok(_), Some(want)) => panic!("{body}: accepted, wanted {want}"),
            (Err(e), None) => panic!("{body}: {e}"),
        }
    }
}

#[test]
fn zones_default_to_the_server_block() {
    let built = testkit::setup(
        setup,
        "template",
        "domain.com.:8053 {\n template ANY ANY {\n  rcode NXDOMAIN\n }\n}\n",
    )
    .unwrap();
    let plugin = built.handler.unwrap();
    let rest = next_plugin();
    let m = testkit::message(run(
        plugin.as_ref(),
        &ask("a.domain.com.", RecordType::A).request(),
        &rest,
    ));
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let resp = run(
        plugin.as_ref(),
        &ask("other.org.", RecordType::A).request(),
        &rest,
    )
    .unwrap();
    assert_eq!(resp.plugin, "answer");
}

#[test]
fn names_are_spelled_as_coredns_spells_them() {
    use super::data::presentation;
    use hickory_proto::rr::Name;
    for (labels, want) in [
        (vec![&b"Example"[..], b"ORG"], "example.org."),
        (vec![&b"a-b_c"[..], b"x"], "a-b_c.x."),
        (vec![&b"-lead"[..], b"x"], "-lead.x."),
        (vec![&b"*"[..], b"x"], "*.x."),
        (vec![&b"a.b"[..], b"x"], "a\\.b.x."),
        (vec![&b"a b"[..], b"x"], "a\\ b.x."),
        (vec![&b"q\"(;@)'"[..]], "q\\\"\\(\\;\\@\\)\\'."),
        (vec![&b"\x00\xff/"[..]], "\\000\\255/."),
        (vec![], "."),
    ] {
        let name = Name::from_labels(labels).unwrap();
        let req = ask("x.", RecordType::A).request();
        let mut msg = req.msg().clone();
        msg.queries[0].name = name.clone();
        let req = req.with_message(msg).unwrap();
        assert_eq!(super::query_name(&req), want);
        assert_eq!(presentation(&name, true), want);
    }
}

#[test]
fn a_cidr_zone_means_its_reverse_zones() {
    check(
        r#". {
    template IN PTR 10.0.0.0/15 {
        answer "{{ .Name }} 60 IN PTR {{ .Zone }}"
    }
}
"#,
        vec![
            case(
                ask("4.3.0.10.in-addr.arpa.", RecordType::PTR),
                ResponseCode::NoError,
            )
            .answer(&["4.3.0.10.in-addr.arpa. 60 IN PTR 0.10.in-addr.arpa."]),
            case(
                ask("4.3.1.10.in-addr.arpa.", RecordType::PTR),
                ResponseCode::NoError,
            )
            .answer(&["4.3.1.10.in-addr.arpa. 60 IN PTR 1.10.in-addr.arpa."]),
            through(ask("4.3.2.10.in-addr.arpa.", RecordType::PTR)),
        ],
    );
}

/// Per-query cost of the three paths an operator meets: the PgBouncer AAAA fix (match, no
/// record), a rendered A record (template + record reader), and a name that falls through.
/// `cargo test --release --lib plugins::template::tests::per_query_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn per_query_cost() {
    let built = testkit::setup(
        setup,
        "template",
        r#". {
    template IN AAAA {
        match ^postgresql-primary.*
        rcode NOERROR
        fallthrough
    }
    template IN A example {
      match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer "{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
      fallthrough
    }
}
"#,
    )
    .unwrap();
    let plugin = built.handler.unwrap();
    let rest = next_plugin();
    for (label, q) in [
        (
            "AAAA fix",
            ask("postgresql-primary.db.svc.cluster.local.", RecordType::AAAA),
        ),
        ("A rendered", ask("ip-10-95-12-8.example.", RecordType::A)),
        ("fall through", ask("www.example.", RecordType::A)),
    ] {
        let req = q.request();
        let n = 200_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(run(plugin.as_ref(), &req, &rest).is_ok());
        }
        let per = start.elapsed() / n;
        println!("{label}: {per:?} per query");
    }
}

#[test]
fn corefile_templates_with_variables_and_trim_markers() {
    // Spaces inside `{{ $x }}` keep the Corefile from reading `{$x}` as an environment variable.
    check(
        r#". {
    template IN TXT vars.test {
        answer "{{- $n := .Name -}} {{ $n }} 60 IN TXT {{ range $i, $m := .Match }}\"{{ $i }}:{{ $m }}\" {{ end }}"
    }
}
"#,
        vec![
            case(ask("a.vars.test.", RecordType::TXT), ResponseCode::NoError)
                .answer(&["a.vars.test. 60 IN TXT 0:a.vars.test."]),
        ],
    );
}
