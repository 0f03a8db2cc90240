//! `template` end to end: the real binary on loopback, queried over UDP and TCP (and with `dig`
//! where a real client's view matters), including the c-ares/PgBouncer AAAA fix falling through
//! to `whoami`, README examples, failures with their metrics and log lines, and setup errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RData, RecordType};

/// The same question over UDP and over TCP.
fn both(srv: &Server, m: &Message) -> [Message; 2] {
    [
        udp_exchange(srv.addr(), m).expect("udp answer"),
        tcp_exchange(srv.addr(), m).expect("tcp answer"),
    ]
}

fn records(rs: &[hickory_proto::rr::Record]) -> Vec<String> {
    rs.iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.name,
                r.ttl,
                r.dns_class,
                r.record_type(),
                r.data
            )
        })
        .collect()
}

const PGBOUNCER: &str = ".:PORT {
    template IN AAAA {
        match ^postgresql-primary.*
        rcode NOERROR
        fallthrough
    }
    whoami
}
";

#[test]
fn pgbouncer_aaaa_fix_answers_empty_noerror_and_falls_through_to_whoami() {
    let srv = Server::start(PGBOUNCER);
    // c-ares asks AAAA first: an empty, authoritative NOERROR (NODATA), so it goes on to A.
    for m in both(
        &srv,
        &query("postgresql-primary.db.svc.cluster.local.", RecordType::AAAA),
    ) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
        assert_eq!(m.queries[0].query_type, RecordType::AAAA);
    }
    // The A question, and every other name, reach the next plugin (whoami).
    for q in [
        query("postgresql-primary.db.svc.cluster.local.", RecordType::A),
        query("postgresql-replica.db.svc.cluster.local.", RecordType::AAAA),
        query("example.org.", RecordType::AAAA),
    ] {
        for m in both(&srv, &q) {
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(m.additionals.len(), 2, "{q:?} -> {m:?}");
            assert!(matches!(m.additionals[0].data, RData::A(_)));
            assert!(matches!(m.additionals[1].data, RData::SRV(_)));
        }
    }
}

#[test]
fn pgbouncer_fix_seen_by_dig() {
    if !require("dig") {
        return;
    }
    let srv = Server::start(PGBOUNCER);
    let port = srv.port.to_string();
    for transport in ["+notcp", "+tcp"] {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "+tries=1",
                "+time=3",
                transport,
                "postgresql-primary.db.svc.cluster.local",
                "AAAA",
            ])
            .output()
            .expect("run dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("status: NOERROR"), "{text}");
        assert!(text.contains("flags: qr aa rd;"), "{text}");
        assert!(text.contains("ANSWER: 0, AUTHORITY: 0"), "{text}");
    }
}

const README: &str = ".:PORT {
    template IN A example {
      match (^|[.])ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
      answer \"{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"
      fallthrough
    }
    template IN PTR in-addr.arpa {
      match ^(?P<d>[0-9]*)[.](?P<c>[0-9]*)[.](?P<b>[0-9]*)[.](?P<a>[0-9]*)[.]in-addr[.]arpa[.]$
      answer \"{{ .Name }} 60 IN PTR ip-{{ .Group.a }}-{{ .Group.b }}-{{ .Group.c }}-{{ .Group.d }}.example.\"
    }
    template ANY ANY invalid {
      rcode NXDOMAIN
      authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"
      ederror 21 \"Blocked according to RFC2606\"
    }
    chaos
    whoami
}
";

fn ede(m: &Message) -> Option<Vec<u8>> {
    m.edns
        .as_ref()?
        .options()
        .options
        .iter()
        .find_map(|(code, o)| match (code, o) {
            (EdnsCode::Unknown(15), EdnsOption::Unknown(_, data)) => Some(data.clone()),
            _ => None,
        })
}

#[test]
fn readme_examples_over_udp_and_tcp() {
    let srv = Server::start(README);
    for m in both(&srv, &query("ip-10-95-12-8.example.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(
            records(&m.answers),
            ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
        );
    }
    for m in both(&srv, &query("8.12.95.10.in-addr.arpa.", RecordType::PTR)) {
        assert_eq!(
            records(&m.answers),
            ["8.12.95.10.in-addr.arpa. 60 IN PTR ip-10-95-12-8.example."]
        );
    }
    // In the reverse zone, a name the regex does not match and no fallthrough: SERVFAIL.
    for m in both(&srv, &query("x.in-addr.arpa.", RecordType::PTR)) {
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(!m.metadata.authoritative);
    }
    // Unmatched names in example. fall through to whoami.
    for m in both(&srv, &query("www.example.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.additionals.len(), 2);
    }
    // .invalid: NXDOMAIN with the SOA for negative caching, and the extended error when the
    // client speaks EDNS; a client without EDNS gets no OPT record.
    for m in both(
        &srv,
        &with_edns(query("foo.invalid.", RecordType::MX), 1232),
    ) {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_eq!(
            records(&m.authorities),
            ["invalid. 60 IN SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
        );
        let mut want = 21u16.to_be_bytes().to_vec();
        want.extend_from_slice(b"Blocked according to RFC2606");
        assert_eq!(ede(&m), Some(want));
    }
    for m in both(&srv, &query("foo.invalid.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.edns.is_none());
    }
    // The CH class too (the block loads chaos, so CH queries reach the chain).
    for m in both(
        &srv,
        &query_class("foo.invalid.", RecordType::TXT, DNSClass::CH),
    ) {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            records(&m.authorities),
            ["invalid. 60 CH SOA ns.invalid. hostmaster.invalid. 1 60 60 60 60"]
        );
    }
}

/// GET `path` from 127.0.0.1:`port`, waiting for the listener.
fn http_get(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            s.read_to_string(&mut raw).unwrap();
            return raw;
        }
        assert!(Instant::now() < deadline, "nothing on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn failures_answer_servfail_are_logged_and_counted() {
    let mport = free_port();
    let srv = Server::start(&format!(
        ".:PORT {{
    prometheus 127.0.0.1:{mport}
    errors
    template IN TXT broken.test {{
        answer \"{{{{ .Name }}}} 60 IN TXT \\\"{{{{ index .Match 2 }}}}\\\"\"
    }}
    template IN A notrr.test {{
        answer \"{{{{ .Name }}}}\"
    }}
    template IN A ok.test {{
        answer \"{{{{ .Name }}}} 60 IN A 192.0.2.1\"
    }}
}}
"
    ));
    for m in both(&srv, &query("a.broken.test.", RecordType::TXT)) {
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    for m in both(&srv, &query("a.notrr.test.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
    for m in both(&srv, &query("a.ok.test.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    let log = srv.wait_stdout("index out of range");
    assert!(
        log.contains("[ERROR] plugin/errors: 2 a.broken.test. TXT: plugin/template: template: answer:1:26: executing \"answer\" at <index .Match 2>: error calling index: index out of range: 2"),
        "{log}"
    );
    let text = http_get(mport, "/metrics");
    let port = srv.port;
    for line in [
        format!(
            "coredns_template_matches_total{{server=\"dns://:{port}\",zone=\"ok.test.\",view=\"\",class=\"IN\",type=\"A\"}} 2"
        ),
        format!(
            "coredns_template_template_failures_total{{server=\"dns://:{port}\",zone=\"broken.test.\",view=\"\",class=\"IN\",type=\"TXT\",section=\"answer\",template=\"{{{{.Name}}}} 60 IN TXT \\\"{{{{index .Match 2}}}}\\\"\"}} 2"
        ),
        format!(
            "coredns_template_rr_failures_total{{server=\"dns://:{port}\",zone=\"notrr.test.\",view=\"\",class=\"IN\",type=\"A\",section=\"answer\",template=\"{{{{.Name}}}}\"}} 2"
        ),
    ] {
        assert!(text.contains(&line), "{line}\n---\n{text}");
    }
}

#[test]
fn cname_target_is_looked_up_through_the_whole_server() {
    let srv = Server::start(
        ".:PORT {
    template IN ANY foogle.com {
        match \"^foogle\\.com\\.$\"
        answer \"foogle.com 60 IN CNAME google.com\"
    }
    template IN A google.com {
        answer \"{{ .Name }} 30 IN A 192.0.2.80\"
    }
}
",
    );
    // The lookup of the target goes through the server again, so the second template (before
    // which nothing follows the first) answers it, as in CoreDNS.
    for m in both(&srv, &query("foogle.com.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            records(&m.answers),
            [
                "foogle.com. 60 IN CNAME google.com.",
                "google.com. 30 IN A 192.0.2.80"
            ]
        );
    }
}

/// The target lives in another server block of the same listener: found through the listener's
/// zones, not through the plugins after *template*.
#[test]
fn cname_target_in_another_server_block() {
    let srv = Server::start(
        "foogle.test:PORT {
    template IN A foogle.test {
        answer \"{{ .Name }} 60 IN CNAME www.google.test.\"
    }
}
google.test:PORT {
    hosts {
        192.0.2.80 www.google.test
    }
}
",
    );
    for m in both(&srv, &query("mail.foogle.test.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(
            records(&m.answers),
            [
                "mail.foogle.test. 60 IN CNAME www.google.test.",
                "www.google.test. 3600 IN A 192.0.2.80"
            ]
        );
    }
}

#[test]
fn setup_errors_stop_the_server() {
    let failed = run_to_exit(
        ".:PORT {
    template IN A {
        answer \"{{ .Name }\"
    }
}
",
        &[],
    );
    assert!(!failed.status.success());
    let all = format!("{}{}", failed.stdout, failed.stderr);
    assert!(
        all.contains("plugin/template: ")
            && all.contains(":3 - Error during parsing: could not compile template: {{ .Name }, template: answer:1: unexpected \"}\" in operand"),
        "{all}"
    );
    let failed = run_to_exit(".:PORT {\n    template IN BOGUS\n}\n", &[]);
    let all = format!("{}{}", failed.stdout, failed.stderr);
    assert!(all.contains("invalid RR class BOGUS"), "{all}");
}
