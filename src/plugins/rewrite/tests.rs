//! Table-driven tests in the shape of CoreDNS's `rewrite_test.go`: a query goes in, the fake
//! next plugin records what it was asked and answers like a backend would, and the client's
//! answer is checked.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, CNAME, MX, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

use super::*;
use crate::plugin::{Failure, Next, Plugin, Request, Response, Served};
use crate::plugins::whoami::testkit::{self, Ask, ask, run, show};

/// What the fake backend answers for the question it is given.
type Backend = fn(&Request) -> Result<Message, ResponseCode>;

/// The next plugin: remembers every query it saw and answers through `backend`.
struct Next0 {
    seen: Mutex<Vec<Message>>,
    backend: Backend,
}

impl Plugin for Next0 {
    fn name(&self) -> &'static str {
        "backend"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        self.seen.lock().unwrap().push(req.msg().clone());
        Served::Ready(match (self.backend)(req) {
            Ok(m) => Ok(Response::new(m, "backend")),
            Err(rcode) => Err(Failure::error(rcode, "backend", "failed")),
        })
    }
}

/// Like `hosts`: an A record (192.0.2.1) for whatever name is asked, under that name.
fn a_records(req: &Request) -> Result<Message, ResponseCode> {
    let mut m = req.reply();
    m.metadata.authoritative = true;
    let rr = hickory_proto::rr::Record::from_rdata(
        req.qname().clone(),
        3600,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
    );
    m.answers.push(rr);
    Ok(m)
}

/// A CNAME to a name below the question, that name's A record, an MX and SRV pointing at it,
/// and an SOA in the authority section.
fn rich(req: &Request) -> Result<Message, ResponseCode> {
    let mut m = req.reply();
    let q = req.qname().clone();
    let target = Name::from_ascii(format!("www.{}", req.name())).unwrap();
    m.answers.push(hickory_proto::rr::Record::from_rdata(
        q.clone(),
        60,
        RData::CNAME(CNAME(target.clone())),
    ));
    m.answers.push(hickory_proto::rr::Record::from_rdata(
        target.clone(),
        60,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 2))),
    ));
    m.answers.push(hickory_proto::rr::Record::from_rdata(
        q.clone(),
        60,
        RData::MX(MX::new(10, target.clone())),
    ));
    m.answers.push(hickory_proto::rr::Record::from_rdata(
        q.clone(),
        60,
        RData::SRV(SRV::new(0, 0, 80, target)),
    ));
    m.authorities.push(hickory_proto::rr::Record::from_rdata(
        q.clone(),
        300,
        RData::SOA(SOA::new(
            Name::from_ascii(format!("ns.{}", req.name())).unwrap(),
            Name::from_ascii("hostmaster.example.").unwrap(),
            1,
            2,
            3,
            4,
            5,
        )),
    ));
    Ok(m)
}

fn nxdomain_empty(req: &Request) -> Result<Message, ResponseCode> {
    let mut m = req.reply();
    m.metadata.response_code = ResponseCode::NXDomain;
    Ok(m)
}

fn nxdomain_soa(req: &Request) -> Result<Message, ResponseCode> {
    let mut m = rich(req)?;
    m.answers.clear();
    m.metadata.response_code = ResponseCode::NXDomain;
    Ok(m)
}

fn servfail(_req: &Request) -> Result<Message, ResponseCode> {
    Err(ResponseCode::ServFail)
}

fn build(lines: &[&str]) -> Arc<dyn Plugin> {
    let mut corefile = String::from(". {\n");
    for l in lines {
        corefile.push_str("    rewrite ");
        corefile.push_str(l);
        corefile.push('\n');
    }
    corefile.push_str("}\n");
    match testkit::setup(setup, "rewrite", &corefile) {
        Ok(b) => b.handler.expect("handler"),
        Err(e) => panic!("{corefile}: {e}"),
    }
}

/// Run `rules` on `query`; returns what the backend saw (if it was asked) and the outcome.
fn exchange(
    rules: &[&str],
    query: impl IntoRequest,
    backend: Backend,
) -> (Option<Message>, Result<Message, ResponseCode>) {
    let plugin = build(rules);
    let next = Arc::new(Next0 {
        seen: Mutex::new(Vec::new()),
        backend,
    });
    let rest: Vec<Arc<dyn Plugin>> = vec![next.clone()];
    let req = query.into_request();
    let out = run(plugin.as_ref(), &req, &rest);
    let seen = next.seen.lock().unwrap().first().cloned();
    (seen, out.map(Response::into_message).map_err(|f| f.rcode))
}

fn question(m: &Message) -> String {
    let q = &m.queries[0];
    format!("{} {} {}", q.name, q.query_class, q.query_type)
}

#[test]
fn request_rewrites() {
    // (rules, query name, query type, what the next plugin is asked)
    let cases: &[(&[&str], &str, RecordType, &str)] = &[
        (
            &["name example.org. to.example.org."],
            "example.org.",
            RecordType::A,
            "to.example.org. IN A",
        ),
        // Exact names are matched case-insensitively, without the trailing dot too.
        (
            &["name Example.ORG to.example.org"],
            "EXAMPLE.org.",
            RecordType::A,
            "to.example.org. IN A",
        ),
        (
            &["name exact example.org. to.example.org."],
            "a.example.org.",
            RecordType::A,
            "a.example.org. IN A",
        ),
        // Prefix and substring work inside labels (lower case, not made fully qualified, as in
        // CoreDNS's TestPartialRewrite); exact and suffix names are fully qualified.
        (
            &["name prefix a b"],
            "ab.example.org.",
            RecordType::A,
            "bb.example.org. IN A",
        ),
        (
            &["name prefix API- SVC-"],
            "api-prod.example.",
            RecordType::A,
            "svc-prod.example. IN A",
        ),
        (
            &["name prefix API. SVC-"],
            "api.prod.example.",
            RecordType::A,
            "svc-prod.example. IN A",
        ),
        (
            &["name substring -API- -SVC-"],
            "my-api-prod.example.",
            RecordType::A,
            "my-svc-prod.example. IN A",
        ),
        (
            &["name substring API. SVC."],
            "my.api.prod.example.",
            RecordType::A,
            "my.svc.prod.example. IN A",
        ),
        (
            &["name suffix PROD.EXAMPLE STAGING.EXAMPLE"],
            "api.prod.example.",
            RecordType::A,
            "api.staging.example. IN A",
        ),
        (
            &["name suffix .example.org .example.net"],
            "www.Example.org.",
            RecordType::A,
            "www.example.net. IN A",
        ),
        (
            &["name substring service.us-west-1.example.org service.us-west-1.consul"],
            "ftp.service.us-west-1.example.org.",
            RecordType::A,
            "ftp.service.us-west-1.consul. IN A",
        ),
        (
            &[r"name regex (.*)-(us-west-1)\.example\.org {1}.service.{2}.consul"],
            "ftp-us-west-1.example.org.",
            RecordType::A,
            "ftp.service.us-west-1.consul. IN A",
        ),
        (
            &[r"name regex ^(.*)\.nomatch\.$ {1}.x"],
            "a.example.org.",
            RecordType::A,
            "a.example.org. IN A",
        ),
        (
            &["type ANY HINFO"],
            "example.org.",
            RecordType::ANY,
            "example.org. IN HINFO",
        ),
        (
            &["type aaaa a"],
            "example.org.",
            RecordType::AAAA,
            "example.org. IN A",
        ),
        (
            &["type AAAA A"],
            "example.org.",
            RecordType::A,
            "example.org. IN A",
        ),
        // `stop` (the default) ends the list at the first rule that matched ...
        (
            &["name a.example. b.example.", "name b.example. c.example."],
            "a.example.",
            RecordType::A,
            "b.example. IN A",
        ),
        (
            &[
                "stop name a.example. b.example.",
                "name b.example. c.example.",
            ],
            "a.example.",
            RecordType::A,
            "b.example. IN A",
        ),
        // ... `continue` goes on with the rewritten query ...
        (
            &[
                "continue name a.example. b.example.",
                "name b.example. c.example.",
            ],
            "a.example.",
            RecordType::A,
            "c.example. IN A",
        ),
        (
            &[
                "continue name a.example. b.example.",
                "continue type A AAAA",
                "type AAAA MX",
            ],
            "a.example.",
            RecordType::A,
            "b.example. IN MX",
        ),
        // ... and a rule that did not match does not stop anything.
        (
            &["name x.example. y.example.", "type A TXT"],
            "a.example.",
            RecordType::A,
            "a.example. IN TXT",
        ),
    ];
    for (rules, name, qtype, want) in cases {
        let (seen, _) = exchange(rules, ask(name, *qtype), a_records);
        let seen = seen.expect("backend asked");
        assert_eq!(question(&seen), *want, "{rules:?} {name}");
    }
}

#[test]
fn class_rewrite() {
    let (seen, out) = exchange(
        &["class CH IN"],
        ask("example.org.", RecordType::A).class(DNSClass::CH),
        a_records,
    );
    assert_eq!(question(&seen.unwrap()), "example.org. IN A");
    assert_eq!(question(&out.unwrap()), "example.org. CH A");
}

/// The nginx incident: `rewrite type AAAA A` answers the AAAA question with the A records. The
/// client gets its own question back, and A records in the answer section.
#[test]
fn type_rewrite_answers_aaaa_question_with_a_records() {
    let (seen, out) = exchange(
        &["type AAAA A"],
        ask("Www.Example.org.", RecordType::AAAA),
        a_records,
    );
    assert_eq!(question(&seen.unwrap()), "Www.Example.org. IN A");
    let m = out.unwrap();
    assert_eq!(question(&m), "Www.Example.org. IN AAAA");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(show(&m.answers), ["Www.Example.org. 3600 IN A 192.0.2.1"]);

    // With `continue` and nothing else matching, CoreDNS does not restore the question: the
    // client gets an A question back.
    let (_, out) = exchange(
        &["continue type AAAA A"],
        ask("example.org.", RecordType::AAAA),
        a_records,
    );
    assert_eq!(question(&out.unwrap()), "example.org. IN A");
}

#[test]
fn response_rewrites() {
    // (rules, query, backend, question the client sees, answer, authority)
    struct Case {
        rules: &'static [&'static str],
        name: &'static str,
        backend: Backend,
        answer: &'static [&'static str],
        authority: &'static [&'static str],
        rcode: ResponseCode,
    }
    let cases = [
        // Exact rules map the answer back on their own.
        Case {
            rules: &["name exact a.example. b.example."],
            name: "a.example.",
            backend: rich,
            answer: &[
                "a.example. 60 IN CNAME www.a.example.",
                "www.a.example. 60 IN A 192.0.2.2",
                "a.example. 60 IN MX 10 www.a.example.",
                "a.example. 60 IN SRV 0 0 80 www.a.example.",
            ],
            authority: &["a.example. 300 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        // A prefix rule without `answer auto` leaves the answer as the backend wrote it.
        Case {
            rules: &["name prefix a b"],
            name: "a.example.",
            backend: a_records,
            answer: &["b.example. 3600 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &["name prefix a b answer auto"],
            name: "a.example.",
            backend: rich,
            answer: &[
                "a.example. 60 IN CNAME www.a.example.",
                "www.a.example. 60 IN A 192.0.2.2",
                "a.example. 60 IN MX 10 www.a.example.",
                "a.example. 60 IN SRV 0 0 80 www.a.example.",
            ],
            authority: &["a.example. 300 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &[
                r"name regex (.*)-(us-west-1)\.coredns\.rocks {1}.service.{2}.consul answer auto",
            ],
            name: "ftp-us-west-1.coredns.rocks.",
            backend: a_records,
            answer: &["ftp-us-west-1.coredns.rocks. 3600 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &[
                r"name regex (.*)-(us-west-1)\.coredns\.rocks {1}.service.{2}.consul answer name (.*)\.service\.(us-west-1)\.consul {1}-{2}.coredns.rocks",
            ],
            name: "ftp-us-west-1.coredns.rocks.",
            backend: a_records,
            answer: &["ftp-us-west-1.coredns.rocks. 3600 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        // `answer value` rewrites the names inside CNAME, MX, SRV and SOA data.
        Case {
            rules: &[
                r"name regex (.*)\.a\.example {1}.b.example answer name (.*)\.b\.example {1}.a.example answer value (.*)\.b\.example {1}.a.example",
            ],
            name: "x.a.example.",
            backend: rich,
            answer: &[
                "x.a.example. 60 IN CNAME www.x.a.example.",
                "www.x.a.example. 60 IN A 192.0.2.2",
                "x.a.example. 60 IN MX 10 www.x.a.example.",
                "x.a.example. 60 IN SRV 0 0 80 www.x.a.example.",
            ],
            authority: &["x.a.example. 300 IN SOA ns.x.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        // `suffix ... answer auto` runs the suffix rule backwards.
        Case {
            rules: &["name suffix .schmoogle.com. .google.com. answer auto"],
            name: "www.schmoogle.com.",
            backend: rich,
            answer: &[
                "www.schmoogle.com. 60 IN CNAME www.www.schmoogle.com.",
                "www.www.schmoogle.com. 60 IN A 192.0.2.2",
                "www.schmoogle.com. 60 IN MX 10 www.www.schmoogle.com.",
                "www.schmoogle.com. 60 IN SRV 0 0 80 www.www.schmoogle.com.",
            ],
            authority: &[
                "www.schmoogle.com. 300 IN SOA ns.www.schmoogle.com. hostmaster.example. 1 2 3 4 5",
            ],
            rcode: ResponseCode::NoError,
        },
        // Two rules in a `continue` chain are undone last-first.
        Case {
            rules: &[
                "continue name a.example. b.example.",
                "name b.example. c.example.",
            ],
            name: "a.example.",
            backend: a_records,
            answer: &["a.example. 3600 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        // TTLs: one value sets it, a range clamps it.
        Case {
            rules: &["ttl a.example. 15"],
            name: "a.example.",
            backend: rich,
            answer: &[
                "a.example. 15 IN CNAME www.a.example.",
                "www.a.example. 15 IN A 192.0.2.2",
                "a.example. 15 IN MX 10 www.a.example.",
                "a.example. 15 IN SRV 0 0 80 www.a.example.",
            ],
            authority: &["a.example. 15 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &["ttl suffix example. 100-200"],
            name: "a.example.",
            backend: rich,
            answer: &[
                "a.example. 100 IN CNAME www.a.example.",
                "www.a.example. 100 IN A 192.0.2.2",
                "a.example. 100 IN MX 10 www.a.example.",
                "a.example. 100 IN SRV 0 0 80 www.a.example.",
            ],
            authority: &["a.example. 200 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        // A partial prefix matches inside the first label.
        Case {
            rules: &["ttl prefix A 15"],
            name: "ab.example.",
            backend: a_records,
            answer: &["ab.example. 15 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &["ttl regex ^b\\. 15"],
            name: "a.example.",
            backend: a_records,
            answer: &["a.example. 3600 IN A 192.0.2.1"],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        // rcode rules act on the message: with an SOA ...
        Case {
            rules: &["rcode a.example. NXDOMAIN NOERROR"],
            name: "a.example.",
            backend: nxdomain_soa,
            answer: &[],
            authority: &["a.example. 300 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::NoError,
        },
        // ... and without any record.
        Case {
            rules: &["rcode a.example. NXDOMAIN NOERROR"],
            name: "a.example.",
            backend: nxdomain_empty,
            answer: &[],
            authority: &[],
            rcode: ResponseCode::NoError,
        },
        Case {
            rules: &["rcode suffix example. 3 5"],
            name: "a.example.",
            backend: nxdomain_soa,
            answer: &[],
            authority: &["a.example. 300 IN SOA ns.a.example. hostmaster.example. 1 2 3 4 5"],
            rcode: ResponseCode::Refused,
        },
    ];
    for c in cases {
        let (_, out) = exchange(c.rules, ask(c.name, RecordType::A), c.backend);
        let m = out.unwrap_or_else(|rc| panic!("{:?}: {rc}", c.rules));
        assert_eq!(question(&m), format!("{} IN A", c.name), "{:?}", c.rules);
        assert_eq!(show(&m.answers), c.answer, "{:?}", c.rules);
        assert_eq!(show(&m.authorities), c.authority, "{:?}", c.rules);
        assert_eq!(m.metadata.response_code, c.rcode, "{:?}", c.rules);
    }
}

#[test]
fn invalid_name_after_rewrite_is_servfail() {
    let long = "a".repeat(70);
    let rule = format!("name regex (.*) {long}.{{1}}");
    let (seen, out) = exchange(
        &[rule.as_str()],
        ask("x.example.", RecordType::A),
        a_records,
    );
    assert!(seen.is_none());
    assert_eq!(out.unwrap_err(), ResponseCode::ServFail);
}

#[test]
fn failures_keep_the_clients_question() {
    // The server answers the failure with the client's own question.
    let (_, out) = exchange(
        &["name a.example. b.example."],
        ask("a.example.", RecordType::A),
        servfail,
    );
    assert_eq!(out.unwrap_err(), ResponseCode::ServFail);
    // An rcode rule turns a bare failure into an answer, with the client's question, in stop
    // and continue mode, with and without EDNS0 (CoreDNS's TestRCodeRewriteEmptyResponse).
    for rules in [
        &[
            "continue name a.example. b.example.",
            "rcode b.example. SERVFAIL NOERROR",
        ][..],
        &["rcode a.example. SERVFAIL NOERROR"][..],
        &["continue rcode a.example. SERVFAIL NOERROR"][..],
    ] {
        for query in [
            ask("a.example.", RecordType::A).request(),
            ask("a.example.", RecordType::A).edns(1232).request(),
        ] {
            let (_, out) = exchange(rules, query, servfail);
            let m = out.unwrap_or_else(|rc| panic!("{rules:?}: {rc}"));
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{rules:?}");
            assert_eq!(question(&m), "a.example. IN A", "{rules:?}");
        }
    }
    // A rule for another rcode leaves the failure to the server.
    let (_, out) = exchange(
        &["rcode a.example. NXDOMAIN NOERROR"],
        ask("a.example.", RecordType::A),
        servfail,
    );
    assert_eq!(out.unwrap_err(), ResponseCode::ServFail);
}

fn local(m: &Message, code: u16) -> Vec<Vec<u8>> {
    m.edns
        .as_ref()
        .map(|e| {
            e.options()
                .options
                .iter()
                .filter(|(c, _)| u16::from(*c) == code)
                .map(|(_, o)| match o {
                    EdnsOption::Unknown(_, d) => d.clone(),
                    other => panic!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn with_local(a: Ask, code: u16, data: &[u8]) -> Request {
    a.edns(1232)
        .option(EdnsOption::Unknown(code, data.to_vec()))
}

/// Add an EDNS0 option to a query.
trait AddOption {
    fn option(self, o: EdnsOption) -> Request;
}

impl AddOption for Ask {
    fn option(self, o: EdnsOption) -> Request {
        self.request().option(o)
    }
}

impl AddOption for Request {
    fn option(self, o: EdnsOption) -> Request {
        let mut msg = self.msg().clone();
        msg.edns
            .get_or_insert_with(Edns::new)
            .options_mut()
            .insert(o);
        self.with_message(msg).expect("one question")
    }
}

/// A query, built or still to build.
trait IntoRequest {
    fn into_request(self) -> Request;
}

impl IntoRequest for Ask {
    fn into_request(self) -> Request {
        self.request()
    }
}

impl IntoRequest for Request {
    fn into_request(self) -> Request {
        self
    }
}

#[test]
fn edns0_local() {
    let q = || ask("example.org.", RecordType::A);
    // (rules, query, data the backend sees for 0xffee)
    type Case = (&'static [&'static str], Request, Vec<Vec<u8>>);
    let cases: Vec<Case> = vec![
        (
            &["edns0 local set 0xffee 0x61626364"],
            q().request(),
            vec![b"abcd".to_vec()],
        ),
        (
            &["edns0 local set 0xffee abcd"],
            q().request(),
            vec![b"abcd".to_vec()],
        ),
        (
            &["edns0 local set 65518 abcd"],
            with_local(q(), 0xffee, b"old"),
            vec![b"abcd".to_vec()],
        ),
        (
            &["edns0 local append 0xffee abcd"],
            q().request(),
            vec![b"abcd".to_vec()],
        ),
        (
            &["edns0 local append 0xffee abcd"],
            with_local(q(), 0xffee, b"old"),
            vec![b"old".to_vec()],
        ),
        (&["edns0 local replace 0xffee abcd"], q().request(), vec![]),
        (
            &["edns0 local replace 0xffee abcd"],
            with_local(q(), 0xffee, b"old"),
            vec![b"abcd".to_vec()],
        ),
        (
            &["edns0 local unset 0xffee"],
            with_local(q(), 0xffee, b"old"),
            vec![],
        ),
        (
            &["edns0 local set 0xffee {qname}"],
            q().request(),
            vec![b"example.org.".to_vec()],
        ),
        (
            &["edns0 local set 0xffee {qtype}"],
            q().request(),
            vec![vec![0, 1]],
        ),
        (
            &["edns0 local set 0xffee {client_ip}"],
            q().from("192.0.2.9:5300").request(),
            vec![vec![192, 0, 2, 9]],
        ),
        (
            &["edns0 local set 0xffee {client_port}"],
            q().from("192.0.2.9:5300").request(),
            vec![5300u16.to_be_bytes().to_vec()],
        ),
        (
            &["edns0 local set 0xffee {server_ip}"],
            q().request(),
            vec![vec![127, 0, 0, 1]],
        ),
        (
            &["edns0 local set 0xffee {server_port}"],
            q().request(),
            vec![53u16.to_be_bytes().to_vec()],
        ),
        (
            &["edns0 local set 0xffee {protocol}"],
            q().tcp().request(),
            vec![b"tcp".to_vec()],
        ),
        // Without the metadata plugin a label has no value, and the rule does nothing.
        (
            &["edns0 local set 0xffee {some-plugin/some-label}"],
            q().request(),
            vec![],
        ),
        // Rules chain with `continue`.
        (
            &[
                "continue edns0 local set 0xffee a",
                "edns0 local set 0xffef b",
            ],
            q().request(),
            vec![b"a".to_vec()],
        ),
    ];
    for (rules, query, want) in cases {
        let (seen, _) = exchange(rules, query, a_records);
        assert_eq!(local(&seen.unwrap(), 0xffee), want, "{rules:?}");
    }
    // A rule that adds the OPT record adds it as CoreDNS does: 4096 bytes, DO clear.
    let (seen, _) = exchange(&["edns0 local set 0xffee a"], q(), a_records);
    let e = seen.unwrap().edns.unwrap();
    assert_eq!(e.max_payload(), 4096);
    assert!(!e.flags().dnssec_ok);
}

#[test]
fn edns0_nsid_and_subnet() {
    let q = || ask("example.org.", RecordType::A);
    let (seen, _) = exchange(&["edns0 nsid set"], q(), a_records);
    let seen = seen.unwrap();
    assert!(seen.edns.as_ref().unwrap().option(EdnsCode::NSID).is_some());
    let (seen, _) = exchange(&["edns0 nsid unset"], q().nsid(), a_records);
    assert!(seen.unwrap().edns.unwrap().option(EdnsCode::NSID).is_none());

    let subnet = |m: &Message| match m.edns.as_ref().unwrap().option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(s)) => format!("{}/{}", s.addr(), s.source_prefix()),
        other => format!("{other:?}"),
    };
    let (seen, _) = exchange(
        &["edns0 subnet set 24 56"],
        q().from("192.0.2.77:5300"),
        a_records,
    );
    assert_eq!(subnet(&seen.unwrap()), "192.0.2.0/24");
    let (seen, _) = exchange(
        &["edns0 subnet set 24 56"],
        q().from("[2001:db8:1:2ff:3::1]:5300"),
        a_records,
    );
    assert_eq!(subnet(&seen.unwrap()), "2001:db8:1:200::/56");
    // `append` leaves an option the client sent alone.
    let sent = EdnsOption::Subnet(ClientSubnet::new("198.51.100.0".parse().unwrap(), 24, 0));
    let (seen, _) = exchange(
        &["edns0 subnet append 16 56"],
        q().from("192.0.2.77:5300").option(sent.clone()),
        a_records,
    );
    assert_eq!(subnet(&seen.unwrap()), "198.51.100.0/24");
    let (seen, _) = exchange(
        &["edns0 subnet replace 16 56"],
        q().from("192.0.2.77:5300").option(sent.clone()),
        a_records,
    );
    assert_eq!(subnet(&seen.unwrap()), "192.0.0.0/16");
    let (seen, _) = exchange(&["edns0 subnet unset"], q().option(sent), a_records);
    assert!(
        seen.unwrap()
            .edns
            .unwrap()
            .option(EdnsCode::Subnet)
            .is_none()
    );
}

/// A backend that echoes the query's EDNS0 options, as some upstreams do.
fn echo_options(req: &Request) -> Result<Message, ResponseCode> {
    let mut m = a_records(req)?;
    m.edns = req.msg().edns.clone();
    Ok(m)
}

#[test]
fn edns0_revert() {
    let q = || ask("example.org.", RecordType::A).edns(1232);
    // Added for the chain only: the client does not get it back.
    let (seen, out) = exchange(&["edns0 local set 0xffee abcd revert"], q(), echo_options);
    assert_eq!(local(&seen.unwrap(), 0xffee), [b"abcd".to_vec()]);
    assert_eq!(local(&out.unwrap(), 0xffee), Vec::<Vec<u8>>::new());
    // Replaced: the client gets its own data back.
    let (_, out) = exchange(
        &["edns0 local set 0xffee abcd revert"],
        with_local(q(), 0xffee, b"old"),
        echo_options,
    );
    assert_eq!(local(&out.unwrap(), 0xffee), [b"old".to_vec()]);
    // Without `revert` the echoed option reaches the client.
    let (_, out) = exchange(&["edns0 local set 0xffee abcd"], q(), echo_options);
    assert_eq!(local(&out.unwrap(), 0xffee), [b"abcd".to_vec()]);
}

#[test]
fn block_form_is_one_rule() {
    let plugin = {
        let corefile = ". {\n rewrite stop {\n  name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul\n  answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks\n }\n}\n";
        testkit::setup(setup, "rewrite", corefile)
            .unwrap()
            .handler
            .unwrap()
    };
    let next = Arc::new(Next0 {
        seen: Mutex::new(Vec::new()),
        backend: a_records,
    });
    let rest: Vec<Arc<dyn Plugin>> = vec![next.clone()];
    let req = ask("ftp-us-west-1.coredns.rocks.", RecordType::A).request();
    let m = run(plugin.as_ref(), &req, &rest).unwrap().into_message();
    assert_eq!(
        question(&next.seen.lock().unwrap()[0]),
        "ftp.service.us-west-1.consul. IN A"
    );
    assert_eq!(
        show(&m.answers),
        ["ftp-us-west-1.coredns.rocks. 3600 IN A 192.0.2.1"]
    );
}

#[test]
fn setup_errors() {
    let err = |line: &str| {
        let corefile = format!(". {{\n    rewrite {line}\n}}\n");
        match testkit::setup(setup, "rewrite", &corefile) {
            Ok(_) => "ok".to_string(),
            Err(e) => e,
        }
    };
    let at = |msg: &str| format!("plugin/rewrite: Corefile:2 - Error during parsing: {msg}");
    let cases: &[(&str, &str)] = &[
        ("foo a b", r#"invalid rule type "foo""#),
        ("stop foo a b", r#"invalid rule type "stop""#),
        (
            "answer name a b",
            "response rewrites must begin with a name rule",
        ),
        ("type A", "type rules must have exactly two arguments"),
        ("type A BOGUS", r#"invalid type "BOGUS""#),
        ("class IN XX", r#"invalid class "XX""#),
        ("name a", "too few arguments for a name rule"),
        (
            "name fuzzy a b",
            "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: fuzzy",
        ),
        ("name regex ( b", "invalid regex matching pattern: ("),
        (
            "name regex (a) {1}.{2}",
            "the rewrite regex pattern ({1}.{2}) uses more subexpressions than its corresponding matching regex pattern ((a))",
        ),
        ("name regex (a) b c", "invalid arguments for regex rule"),
        (
            "name regex (a) b c d",
            "exceeded the number of arguments for a non-answer rule argument for regex rule",
        ),
        (
            "name regex (a) b answer",
            "invalid arguments for regex rule",
        ),
        (
            "name regex (a) b answer foo",
            r#"invalid type "foo" for answer rule for regex rule"#,
        ),
        (
            "name regex (a) b answer name x",
            "name answer rule for regex rule: 2 arguments required",
        ),
        (
            "name regex (a) b answer auto answer name (x) {1}",
            "auto name answer rule cannot be combined with explicit name anwer rules",
        ),
        ("ttl a", "too few (1) arguments for a ttl rule"),
        ("ttl a b", "invalid TTL 'b' for a ttl rule"),
        ("ttl a -", "invalid TTL '-' for a ttl rule"),
        ("ttl a 20-10", "invalid TTL '20-10' for a ttl rule"),
        (
            "ttl a 4294967296",
            "invalid TTL '4294967296' for a ttl rule",
        ),
        (
            "ttl fuzzy a 5",
            "ttl rule supports only exact, prefix, suffix, substring, and regex name matching",
        ),
        ("ttl regex ( 5", "invalid regex pattern in a ttl rule: ("),
        ("ttl a b c d", "invalid TTL '' for a ttl rule"),
        ("rcode a NXDOMAIN", "too few (2) arguments for a rcode rule"),
        (
            "rcode a BOGUS NOERROR",
            "invalid matching RCODE 'BOGUS' for a rcode rule",
        ),
        (
            "rcode a NXDOMAIN 24",
            "invalid replacement RCODE '24' for a rcode rule",
        ),
        (
            "rcode fuzzy a 3 0",
            "rcode rule supports only exact, prefix, suffix, substring, and regex name matching",
        ),
        ("edns0 local", "too few arguments for an EDNS0 rule"),
        ("edns0 local add 1 2", r#"invalid action: "add""#),
        (
            "edns0 local set 0xffee",
            "EDNS0 local rules require three or four args",
        ),
        (
            "edns0 local set 0xfffff a",
            r#"strconv.ParseUint: parsing "0xfffff": value out of range"#,
        ),
        (
            "edns0 local set zz a",
            r#"strconv.ParseUint: parsing "zz": invalid syntax"#,
        ),
        (
            "edns0 local set 0xffee 0xabc",
            "encoding/hex: odd length hex string",
        ),
        (
            "edns0 local set 0xffee 0xzz",
            "encoding/hex: invalid byte: U+007A 'z'",
        ),
        (
            "edns0 local set 0xffee {bogus}",
            r#"unsupported variable name "{bogus}""#,
        ),
        (
            "edns0 nsid set x",
            "EDNS0 NSID rules can accept no more than one arg",
        ),
        ("edns0 subnet set 33 56", "invalid IPv4 bit mask length 33"),
        (
            "edns0 subnet set 24 129",
            "invalid IPv6 bit mask length 129",
        ),
        ("edns0 cookie set", r#"invalid rule type "cookie""#),
        ("cname a", "too few (1) arguments for a cname rule"),
        (
            "cname exact a b c",
            "too few (4) arguments for a cname rule",
        ),
        ("cname bogus a b", "unknown cname rewrite type: bogus"),
        ("cname regex ( x", "invalid regex matching pattern: ("),
    ];
    for (line, msg) in cases {
        assert_eq!(err(line), at(msg), "{line}");
    }
    for ok in [
        "name a b",
        "continue name exact a b answer value (.*) {1}",
        "stop name regex (.*)\\.a {1}.b answer auto",
        "name suffix a b answer auto answer value (x) y",
        "ttl a 5",
        "ttl exact a 5-",
        "ttl a -60",
        "rcode regex .* SERVFAIL NOERROR",
        "edns0 local unset 0xffee",
        "edns0 local set 0xffee abcd revert",
        "edns0 subnet set 24 56",
        "edns0 nsid append",
        "type ANY HINFO",
        "class CH IN",
        "cname a b",
        "continue cname suffix .prod. .staging.",
        "stop cname REGEX (.*)\\.web\\.(.*)\\.site\\. {1}.webapp.{2}.org.",
    ] {
        assert_eq!(err(ok), "ok", "{ok}");
    }
}

#[test]
fn ttl_values() {
    assert_eq!(rules::ttl_value("15"), Some((15, 15)));
    assert_eq!(rules::ttl_value("1-5"), Some((1, 5)));
    assert_eq!(rules::ttl_value("-5"), Some((0, 5)));
    assert_eq!(rules::ttl_value("5-"), Some((5, 2_147_483_647)));
    assert_eq!(rules::ttl_value("-"), None);
    assert_eq!(rules::ttl_value("1-2-3"), None);
    assert_eq!(rules::ttl_value("+5"), None);
    assert_eq!(rules::ttl_value("4294967295"), Some((u32::MAX, u32::MAX)));
    let long = format!("name regex {} x", "a".repeat(10_001));
    assert_eq!(
        rules::parse(&long.split(' ').map(str::to_owned).collect::<Vec<_>>()).unwrap_err(),
        "regex pattern too long: 10001 > 10000"
    );
    let long = format!("ttl regex {} 5", "a".repeat(10_001));
    assert_eq!(
        rules::parse(&long.split(' ').map(str::to_owned).collect::<Vec<_>>()).unwrap_err(),
        "regex pattern too long in a ttl rule: 10001 > 10000"
    );
}

#[test]
fn no_match_passes_the_query_through() {
    let plugin = build(&["name x.example. y.example."]);
    let next = Arc::new(Next0 {
        seen: Mutex::new(Vec::new()),
        backend: a_records,
    });
    let rest: Vec<Arc<dyn Plugin>> = vec![next.clone()];
    let req = ask("a.example.", RecordType::A).request();
    // Answered at once: no copy of the query, no future.
    let served = plugin.serve(&req, Next::new(&rest));
    assert!(matches!(served, Served::Ready(Ok(_))));
    assert_eq!(&next.seen.lock().unwrap()[0], req.msg());
}

// ---------------------------------------------------------------------------------------------
// `cname` rules, in the shape of CoreDNS's cname_target_test.go: the rest of the chain answers
// with a CNAME chain, and the new target is looked up through a stand-in server.

/// `name ttl TYPE data` for A, AAAA and CNAME records.
fn rr(text: &str) -> hickory_proto::rr::Record {
    let f: Vec<&str> = text.split_whitespace().collect();
    let data = match f[2] {
        "A" => RData::A(A(f[3].parse().unwrap())),
        "AAAA" => RData::AAAA(hickory_proto::rr::rdata::AAAA(f[3].parse().unwrap())),
        "CNAME" => RData::CNAME(CNAME(Name::from_ascii(f[3]).unwrap())),
        t => panic!("no test records of type {t}"),
    };
    testkit::record(f[0], f[1].parse().unwrap(), data)
}

/// The rest of the chain for the client's query: a fixed answer.
struct Fixed(Vec<hickory_proto::rr::Record>);

impl Plugin for Fixed {
    fn name(&self) -> &'static str {
        "backend"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.answers = self.0.clone();
        Served::Ready(Ok(Response::new(m, "backend")))
    }
}

/// The server's answers to lookups (CoreDNS's `MockedUpstream`), records of the asked type only;
/// remembers what it was asked.
struct Targets {
    seen: Mutex<Vec<String>>,
}

impl Plugin for Targets {
    fn name(&self) -> &'static str {
        "targets"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{} {}", req.name(), req.qtype()));
        let mut m = req.reply();
        let records: &[&str] = match req.name() {
            "xyz.example.com." => &[
                "xyz.example.com. 3600 A 3.4.5.6",
                "xyz.example.com. 3600 AAAA 3a01:7e00::f03c:91ff:fe79:234c",
            ],
            "bard.google.com.cdn.cloudflare.net." => {
                &["bard.google.com.cdn.cloudflare.net. 1800 A 9.7.2.1"]
            }
            "www.hosting.xyz." => &["www.hosting.xyz. 500 A 20.30.40.50"],
            "abcd.zzzz.www.pqrst." => &[
                "abcd.zzzz.www.pqrst. 120 A 101.20.5.1",
                "abcd.zzzz.www.pqrst. 120 A 101.20.5.2",
            ],
            "orders.webapp.eu.org." => &["orders.webapp.eu.org. 120 A 20.0.0.9"],
            "music.truncated.spotify.com." => {
                m.metadata.truncation = true;
                &["music.truncated.spotify.com. 120 A 10.1.0.9"]
            }
            "intermediate-2.staging." => &[
                "intermediate-2.staging. 60 CNAME final.staging.net.",
                "final.staging.net. 60 A 5.6.7.8",
            ],
            _ => &[],
        };
        for text in records {
            let r = rr(text);
            if r.record_type() == req.qtype() || r.record_type() == RecordType::CNAME {
                m.answers.push(r);
            }
        }
        Served::Ready(Ok(Response::new(m, "targets")))
    }
}

const CNAME_RULES: &[&str] = &[
    "continue cname exact def.example.com xyz.example.com",
    "continue cname prefix chat.openai.com bard.google.com",
    "continue cname suffix uvw. xyz.",
    "continue cname substring efgh zzzz.www",
    r"continue cname regex (.*)\.web\.(.*)\.site\. {1}.webapp.{2}.org.",
    "continue cname exact music.truncated.spotify.com. music.truncated.spotify.com.",
    "continue cname suffix prod. staging.",
];

/// Run `rules` on a query for `qname`/`qtype` that the rest of the chain answers with
/// `answer`; lookups go to [`Targets`] unless `server` is false (no listener to ask).
fn cname_exchange(
    rules: &[&str],
    qname: &str,
    qtype: RecordType,
    answer: &[&str],
    server: bool,
) -> (Message, Vec<String>) {
    let mut corefile = String::from(". {\n");
    for l in rules {
        corefile.push_str(&format!("    rewrite {l}\n"));
    }
    corefile.push_str("}\n");
    let built = testkit::setup(setup, "rewrite", &corefile).expect("setup");
    let targets = Arc::new(Targets {
        seen: Mutex::new(Vec::new()),
    });
    let _table = server.then(|| {
        crate::plugin::upstream::testkit::listener(
            &built.shared,
            vec![(".", vec![targets.clone() as Arc<dyn Plugin>])],
        )
    });
    let plugin = built.handler.expect("handler");
    let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Fixed(answer.iter().map(|t| rr(t)).collect()))];
    let req = crate::plugin::upstream::testkit::arrived(ask(qname, qtype).request());
    let m = testkit::message(run(plugin.as_ref(), &req, &rest));
    assert_eq!(
        m.queries,
        req.msg().queries,
        "{qname}: the question as asked"
    );
    let seen = targets.seen.lock().unwrap().clone();
    (m, seen)
}

#[test]
fn cname_target_rewrites() {
    // (question, type, answer of the chain, answer to the client, TC)
    type Case<'a> = (&'a str, RecordType, &'a [&'a str], &'a [&'a str], bool);
    let cases: &[Case] = &[
        (
            "abc.example.com.",
            RecordType::A,
            &[
                "abc.example.com. 5 CNAME def.example.com.",
                "def.example.com. 5 A 1.2.3.4",
            ],
            &[
                "abc.example.com. 5 IN CNAME xyz.example.com.",
                "xyz.example.com. 3600 IN A 3.4.5.6",
            ],
            false,
        ),
        (
            "abc.example.com.",
            RecordType::AAAA,
            &[
                "abc.example.com. 5 CNAME def.example.com.",
                "def.example.com. 5 AAAA 2a01:7e00::f03c:91ff:fe79:234c",
            ],
            &[
                "abc.example.com. 5 IN CNAME xyz.example.com.",
                "xyz.example.com. 3600 IN AAAA 3a01:7e00::f03c:91ff:fe79:234c",
            ],
            false,
        ),
        (
            "chat.openai.com.",
            RecordType::A,
            &[
                "chat.openai.com. 20 CNAME chat.openai.com.cdn.cloudflare.net.",
                "chat.openai.com.cdn.cloudflare.net. 30 A 23.2.1.2",
                "chat.openai.com.cdn.cloudflare.net. 30 A 24.6.0.8",
            ],
            &[
                "chat.openai.com. 20 IN CNAME bard.google.com.cdn.cloudflare.net.",
                "bard.google.com.cdn.cloudflare.net. 1800 IN A 9.7.2.1",
            ],
            false,
        ),
        (
            "coredns.io.",
            RecordType::A,
            &[
                "coredns.io. 100 CNAME www.hosting.uvw.",
                "www.hosting.uvw. 200 A 7.2.3.4",
            ],
            &[
                "coredns.io. 100 IN CNAME www.hosting.xyz.",
                "www.hosting.xyz. 500 IN A 20.30.40.50",
            ],
            false,
        ),
        (
            "core.dns.rocks.",
            RecordType::A,
            &[
                "core.dns.rocks. 200 CNAME abcd.efgh.pqrst.",
                "abcd.efgh.pqrst. 100 A 200.30.45.67",
            ],
            &[
                "core.dns.rocks. 200 IN CNAME abcd.zzzz.www.pqrst.",
                "abcd.zzzz.www.pqrst. 120 IN A 101.20.5.1",
                "abcd.zzzz.www.pqrst. 120 IN A 101.20.5.2",
            ],
            false,
        ),
        // Matched without regard to case.
        (
            "order.service.eu.",
            RecordType::A,
            &[
                "order.service.eu. 200 CNAME Orders.WEB.eu.site.",
                "orders.web.eu.site. 50 A 10.10.15.1",
            ],
            &[
                "order.service.eu. 200 IN CNAME orders.webapp.eu.org.",
                "orders.webapp.eu.org. 120 IN A 20.0.0.9",
            ],
            false,
        ),
        // The lookup's TC bit is carried over.
        (
            "music.spotify.com.",
            RecordType::A,
            &["music.spotify.com. 200 CNAME music.truncated.spotify.com."],
            &[
                "music.spotify.com. 200 IN CNAME music.truncated.spotify.com.",
                "music.truncated.spotify.com. 120 IN A 10.1.0.9",
            ],
            true,
        ),
        // A chain (CoreDNS 1.14.2): the CNAMEs before the match stay, only the matching one is
        // rewritten, and the new target's whole chain follows.
        (
            "cname-chain.org.",
            RecordType::A,
            &[
                "cname-chain.org. 60 CNAME intermediate-1.com.",
                "intermediate-1.com. 60 CNAME intermediate-2.prod.",
                "intermediate-2.prod. 60 CNAME final.prod.net.",
                "final.prod.net. 60 A 1.2.3.4",
            ],
            &[
                "cname-chain.org. 60 IN CNAME intermediate-1.com.",
                "intermediate-1.com. 60 IN CNAME intermediate-2.staging.",
                "intermediate-2.staging. 60 IN CNAME final.staging.net.",
                "final.staging.net. 60 IN A 5.6.7.8",
            ],
            false,
        ),
        // No CNAME the rules rewrite: the answer is left alone.
        (
            "plain.example.",
            RecordType::A,
            &[
                "plain.example. 60 CNAME other.example.",
                "other.example. 60 A 192.0.2.9",
            ],
            &[
                "plain.example. 60 IN CNAME other.example.",
                "other.example. 60 IN A 192.0.2.9",
            ],
            false,
        ),
    ];
    for (qname, qtype, answer, want, tc) in cases {
        let (m, _) = cname_exchange(CNAME_RULES, qname, *qtype, answer, true);
        assert_eq!(show(&m.answers), *want, "{qname} {qtype}");
        assert_eq!(m.metadata.truncation, *tc, "{qname} {qtype}: TC");
    }
}

#[test]
fn cname_lookup_asks_the_rewritten_type_and_failures_change_nothing() {
    let chain = [
        "a.example. 60 CNAME def.example.com.",
        "def.example.com. 60 A 1.2.3.4",
    ];
    // The lookup asks for the type the rest of the chain was asked.
    let (m, seen) = cname_exchange(
        &[
            "continue type MX A",
            "cname def.example.com. xyz.example.com.",
        ],
        "a.example.",
        RecordType::MX,
        &chain,
        true,
    );
    assert_eq!(seen, ["xyz.example.com. A"]);
    assert_eq!(
        show(&m.answers),
        [
            "a.example. 60 IN CNAME xyz.example.com.",
            "xyz.example.com. 3600 IN A 3.4.5.6"
        ]
    );
    // No server to ask (CoreDNS: "no full server is running"): the answer is left as it was.
    let (m, _) = cname_exchange(
        &["cname def.example.com. xyz.example.com."],
        "a.example.",
        RecordType::A,
        &chain,
        false,
    );
    assert_eq!(
        show(&m.answers),
        [
            "a.example. 60 IN CNAME def.example.com.",
            "def.example.com. 60 IN A 1.2.3.4"
        ]
    );
}

#[test]
fn a_stop_cname_rule_ends_the_rules_for_every_query() {
    // CoreDNS's cname rule reports a rewrite for every query, so `stop` ends the list.
    let (seen, out) = exchange(
        &[
            "stop cname a.example. b.example.",
            "name x.example. y.example.",
        ],
        ask("x.example.", RecordType::A),
        a_records,
    );
    assert_eq!(question(&seen.unwrap()), "x.example. IN A");
    assert_eq!(
        show(&out.unwrap().answers),
        ["x.example. 3600 IN A 192.0.2.1"]
    );
    let (seen, _) = exchange(
        &[
            "continue cname a.example. b.example.",
            "name x.example. y.example.",
        ],
        ask("x.example.", RecordType::A),
        a_records,
    );
    assert_eq!(question(&seen.unwrap()), "y.example. IN A");
}

#[test]
fn cname_rule_without_a_matching_cname_answers_at_once() {
    let plugin = build(&["cname a.example. b.example."]);
    let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Fixed(vec![rr(
        "x.example. 60 CNAME other.example.",
    )]))];
    let req = ask("x.example.", RecordType::A).request();
    // No lookup to make: no future, the answer as the chain gave it.
    match plugin.serve(&req, Next::new(&rest)) {
        Served::Ready(Ok(resp)) => assert_eq!(
            show(&resp.into_message().answers),
            ["x.example. 60 IN CNAME other.example."]
        ),
        _ => panic!("expected an answer at once"),
    }
}
