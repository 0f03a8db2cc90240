use super::*;
use crate::plugin::{Proto, Response};
use hickory_proto::op::{Edns, Query};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

fn request(
    name: &str,
    qtype: RecordType,
    src: &str,
    proto: Proto,
    edns: Option<(u16, bool)>,
) -> Request {
    let mut m = Message::query();
    m.metadata.id = 29008;
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some((size, do_bit)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(do_bit);
        m.edns = Some(e);
    }
    let src = src.parse().unwrap();
    let local = "[::]:53".parse().unwrap();
    Request::new(m, src, local, proto, 41).unwrap()
}

fn answer_a(req: &Request) -> Outcome {
    let mut m = req.reply();
    m.metadata.recursion_available = true;
    m.metadata.authentic_data = true;
    m.answers.push(Record::from_rdata(
        req.qname().clone(),
        300,
        RData::A(A::new(192, 0, 2, 1)),
    ));
    Ok(Response::new(m, "test"))
}

fn soa() -> Record {
    let n = Name::from_ascii("example.org.").unwrap();
    Record::from_rdata(
        n.clone(),
        300,
        RData::SOA(SOA::new(n.clone(), n, 1, 2, 3, 4, 5)),
    )
}

fn nxdomain(req: &Request) -> Outcome {
    let mut m = req.reply();
    m.metadata.response_code = ResponseCode::NXDomain;
    m.authorities.push(soa());
    Ok(Response::new(m, "test"))
}

#[test]
fn common_log_format_matches_coredns() {
    let req = request(
        "example.org.",
        RecordType::A,
        "[::1]:50759",
        Proto::Udp,
        Some((4096, false)),
    );
    let outcome = answer_a(&req);
    let line = render(
        &parse_format(COMMON),
        &req,
        &outcome,
        Duration::from_nanos(37_990_251),
    );
    let rsize = encoded_len(outcome.as_ref().unwrap().message());
    assert_eq!(
        line,
        format!(
            "[::1]:50759 - 29008 \"A IN example.org. udp 41 false 4096\" NOERROR qr,rd,ra,ad {rsize} 0.037990251s"
        )
    );
    let req = request(
        "Example.ORG.",
        RecordType::Unknown(65280),
        "10.0.0.1:53000",
        Proto::Tcp,
        None,
    );
    let line = render(
        &parse_format(COMMON),
        &req,
        &Err(Failure::error(ResponseCode::ServFail, "forward", "x")),
        Duration::from_micros(123),
    );
    let rsize = crate::server::dispatch::error_reply(&req, ResponseCode::ServFail).len();
    assert_eq!(
        line,
        format!(
            "10.0.0.1:53000 - 29008 \"TYPE65280 IN example.org. tcp 41 false 65535\" SERVFAIL qr,rd {rsize} 0.000123s"
        )
    );
    // A query dropped on purpose has no answer at all.
    let line = render(
        &parse_format("{rcode} {>rflags} {rsize}"),
        &req,
        &Err(Failure::no_reply()),
        Duration::ZERO,
    );
    assert_eq!(line, "- - 0");
}

/// A cache hit reaches `log` pre-encoded; its line must read as the parsed answer's would.
#[test]
fn a_pre_encoded_answer_logs_as_its_message_would() {
    let req = request(
        "example.org.",
        RecordType::A,
        "127.0.0.1:1053",
        Proto::Udp,
        None,
    );
    let mut m = answer_a(&req).unwrap().into_message();
    m.edns = None;
    m.metadata.authoritative = true;
    m.metadata.checking_disabled = true;
    let parsed: Outcome = Ok(Response::new(m.clone(), "test"));
    let wire: Outcome = Ok(Response::from_wire(m.to_vec().unwrap(), "cache"));
    let format = parse_format("{rcode} {>rflags} {rsize}");
    let want = render(&format, &req, &parsed, Duration::ZERO);
    assert!(want.starts_with("NOERROR qr,aa,rd,ra,ad,cd "), "{want}");
    assert_eq!(render(&format, &req, &wire, Duration::ZERO), want);
}

#[test]
fn placeholders_and_literals() {
    let req = request(
        "example.org.",
        RecordType::MX,
        "127.0.0.1:1053",
        Proto::Udp,
        Some((1232, true)),
    );
    let outcome = answer_a(&req);
    for (format, want) in [
        (
            "{proto} Request: {name} {type} {>id}",
            "udp Request: example.org. MX 29008",
        ),
        (
            "{>do} {>bufsize} {>opcode} {local} {port}",
            "true 1232 0 [::] 1053",
        ),
        ("{unknown} {/meta} {type", "{unknown} - {type"),
        ("a } b {{name}}", "a } b {example.org.}"),
        ("{class}", "IN"),
    ] {
        assert_eq!(
            render(&parse_format(format), &req, &outcome, Duration::ZERO),
            want,
            "{format}"
        );
    }
}

#[test]
fn responses_are_classed_as_coredns_classes_them() {
    let req = request(
        "example.org.",
        RecordType::A,
        "127.0.0.1:1",
        Proto::Udp,
        None,
    );
    let mut nodata = req.reply();
    nodata.authorities.push(soa());
    let mut refused = req.reply();
    refused.metadata.response_code = ResponseCode::Refused;
    let mut nx_without_soa = req.reply();
    nx_without_soa.metadata.response_code = ResponseCode::NXDomain;
    for (outcome, want) in [
        (answer_a(&req), SUCCESS),
        (nxdomain(&req), DENIAL),
        (Ok(Response::new(nodata, "t")), DENIAL),
        (Ok(Response::new(refused, "t")), ERROR),
        (Ok(Response::new(nx_without_soa, "t")), ERROR),
        (Ok(Response::new(req.reply(), "t")), SUCCESS),
        (Err(Failure::new(ResponseCode::ServFail)), ERROR),
    ] {
        assert_eq!(class(&outcome), want);
    }
}

type RuleView = (String, u8, Duration, Vec<Part>);

fn rules(conf: &str) -> Result<Vec<RuleView>, String> {
    let corefile = crate::corefile::parse_str("Corefile", conf, std::path::Path::new("."))
        .map_err(|e| e.to_string())?;
    let directives: Vec<&Directive> = corefile.blocks[0].directives.iter().collect();
    let rules = parse(&directives).map_err(|e| e.to_string())?;
    Ok(rules
        .iter()
        .map(|r| {
            (
                r.scope.clone(),
                r.classes,
                r.min_duration,
                r.format.to_vec(),
            )
        })
        .collect())
}

#[test]
fn setup_reads_names_formats_and_classes() {
    let r = rules(". {\n log\n}\n").unwrap();
    assert_eq!(
        r,
        vec![(".".into(), ALL, Duration::ZERO, parse_format(COMMON))]
    );
    let r = rules(". {\n log Example.org example.net {combined} {\n  class denial error\n  minDuration\n }\n}\n").unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].0, "example.org.");
    assert_eq!(r[1].0, "example.net.");
    assert_eq!(r[0].1, DENIAL | ERROR);
    assert_eq!(r[0].2, Duration::from_millis(100));
    assert_eq!(r[0].3.last(), Some(&Part::Literal("\"".into())));
    let r = rules(". {\n log . {proto}\n log example.org\n}\n").unwrap();
    assert_eq!(r[0].3, vec![Part::Proto]);
    assert_eq!(r[1].0, "example.org.");
    for (conf, want) in [
        (". {\n log {\n  class\n }\n}\n", "Wrong argument count"),
        (
            ". {\n log {\n  class bogus\n }\n}\n",
            "invalid Class: bogus",
        ),
        (
            ". {\n log {\n  minDuration x\n }\n}\n",
            "Illegal duration found: 'x'",
        ),
        (". {\n log {\n  color\n }\n}\n", "Wrong argument count"),
    ] {
        let err = rules(conf).err().unwrap_or_default();
        assert!(err.contains(want), "{conf:?}: {err}");
    }
}
