//! The small plugins end to end: the real binary on loopback, queried over UDP and TCP with
//! hickory messages (and `dig` where a real client's view matters): any, chaos, local, minimal,
//! nsid, bufsize, acl, root, whoami.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RData, RecordType};

/// The same question over UDP and over TCP.
fn both(srv: &Server, m: &Message) -> [Message; 2] {
    [
        udp_exchange(srv.addr(), m).expect("udp answer"),
        tcp_exchange(srv.addr(), m).expect("tcp answer"),
    ]
}

fn texts(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

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

fn dig(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port, "+tries=1", "+time=3"];
    all.extend_from_slice(args);
    let out = Command::new("dig").args(&all).output().expect("run dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn any_answers_hinfo_and_passes_other_types_on() {
    let srv = Server::start(".:PORT {\n    any\n    whoami\n}\n");
    for m in both(&srv, &query("Example.org.", RecordType::ANY)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "{m:?}");
        let r = &m.answers[0];
        assert_eq!(r.name.to_ascii(), "Example.org.");
        assert_eq!(r.ttl, 8482);
        match &r.data {
            RData::HINFO(h) => {
                assert_eq!(&*h.cpu, b"ANY obsoleted");
                assert_eq!(&*h.os, b"See RFC 8482");
            }
            other => panic!("not HINFO: {other:?}"),
        }
        assert!(m.additionals.is_empty());
    }
    // Any other type reaches whoami.
    let m = srv.udp("example.org.", RecordType::A);
    assert_eq!(m.additionals.len(), 2);
}

#[test]
fn chaos_answers_class_ch_and_only_with_chaos_loaded() {
    let srv = Server::start(".:PORT {\n    chaos ferro-test-1 alice bob\n    whoami\n}\n");
    for m in both(
        &srv,
        &query_class("version.bind.", RecordType::TXT, DNSClass::CH),
    ) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(texts(&m), ["ferro-test-1"]);
        assert_eq!(m.answers[0].dns_class, DNSClass::CH);
        assert_eq!(m.answers[0].ttl, 0);
    }
    for m in both(
        &srv,
        &query_class("authors.bind.", RecordType::TXT, DNSClass::CH),
    ) {
        let mut got = texts(&m);
        got.sort();
        assert_eq!(got, ["alice", "bob"]);
    }
    let m = udp_exchange(
        srv.addr(),
        &query_class("id.server.", RecordType::TXT, DNSClass::CH),
    )
    .unwrap();
    assert_eq!(texts(&m).len(), 1);
    // Another CH name goes on down the chain (whoami answers it, in class CH).
    let m = udp_exchange(
        srv.addr(),
        &query_class("example.bind.", RecordType::TXT, DNSClass::CH),
    )
    .unwrap();
    assert!(m.answers.is_empty());
    assert_eq!(m.additionals.len(), 2);

    // A block without chaos refuses class CH, while class IN still works.
    let plain = Server::start(".:PORT {\n    whoami\n}\n");
    for m in both(
        &plain,
        &query_class("version.bind.", RecordType::TXT, DNSClass::CH),
    ) {
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
    assert_eq!(
        plain
            .udp("version.bind.", RecordType::TXT)
            .metadata
            .response_code,
        ResponseCode::NoError
    );

    if require("dig") {
        let out = dig(srv.port, &["CH", "TXT", "version.bind", "+short"]);
        assert_eq!(out.trim(), "\"ferro-test-1\"");
        let out = dig(srv.port, &["CH", "TXT", "version.server", "+tcp", "+short"]);
        assert_eq!(out.trim(), "\"ferro-test-1\"");
    }
}

#[test]
fn local_answers_loopback_names() {
    let srv = Server::start(".:PORT {\n    local\n    whoami\n}\n");
    for m in both(&srv, &query("localhost.", RecordType::A)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::A("127.0.0.1".parse().unwrap()));
        assert_eq!(m.answers[0].ttl, 604800);
    }
    for m in both(&srv, &query("foo.localhost.", RecordType::AAAA)) {
        assert_eq!(m.answers[0].data, RData::AAAA("::1".parse().unwrap()));
    }
    let m = srv.udp("localhost.localdomain.", RecordType::A);
    assert_eq!(m.answers[0].data, RData::A("127.0.0.1".parse().unwrap()));
    for m in both(&srv, &query("1.0.0.127.in-addr.arpa.", RecordType::PTR)) {
        assert_eq!(m.answers[0].data.to_string(), "localhost.");
    }
    for m in both(&srv, &query("2.0.0.127.in-addr.arpa.", RecordType::PTR)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities.len(), 1);
        assert_eq!(m.authorities[0].name.to_ascii(), "127.in-addr.arpa.");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }
    let m = srv.tcp("localhost.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    // Everything else goes on to whoami, `invalid.` included.
    for name in ["example.org.", "invalid."] {
        let m = srv.udp(name, RecordType::A);
        assert!(m.metadata.authoritative, "{name}");
        assert_eq!(m.additionals.len(), 2, "{name}");
    }
}

#[test]
fn minimal_strips_additional_from_positive_answers() {
    // whoami's answer is NOERROR with only an additional section: minimal leaves just the
    // question, as in CoreDNS's own README example.
    let srv = Server::start(".:PORT {\n    minimal\n    whoami\n}\n");
    for m in both(&srv, &with_edns(query("example.org.", RecordType::A), 1232)) {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty() && m.authorities.is_empty());
        assert!(m.additionals.is_empty(), "{m:?}");
        // The OPT record is the server's business and stays.
        assert!(m.edns.is_some());
    }
    // Negative answers keep their SOA.
    let srv = Server::start(".:PORT {\n    minimal\n    local\n}\n");
    let m = srv.udp("9.0.0.127.in-addr.arpa.", RecordType::PTR);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1);
}

fn nsid_query(name: &str) -> Message {
    let mut m = with_edns(query(name, RecordType::A), 1232);
    if let Some(e) = m.edns.as_mut() {
        e.options_mut()
            .insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
    }
    m
}

fn nsid(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.option(EdnsCode::NSID)? {
        EdnsOption::NSID(p) => Some(p.as_ref().to_vec()),
        _ => None,
    }
}

#[test]
fn nsid_is_added_when_asked() {
    let srv = Server::start(".:PORT {\n    nsid ferrodns test\n    whoami\n}\n");
    for m in both(&srv, &nsid_query("example.org.")) {
        assert_eq!(nsid(&m).as_deref(), Some(&b"ferrodns test"[..]));
        assert_eq!(m.additionals.len(), 2);
    }
    for m in both(&srv, &with_edns(query("example.org.", RecordType::A), 1232)) {
        assert_eq!(nsid(&m), None);
    }
    if require("dig") {
        let out = dig(srv.port, &["example.org", "+nsid"]);
        assert!(
            out.contains("NSID: 66 65 72 72 6f 64 6e 73 20 74 65 73 74"),
            "{out}"
        );
    }
    // The default is the host name.
    let srv = Server::start(".:PORT {\n    nsid\n    whoami\n}\n");
    let m = udp_exchange(srv.addr(), &nsid_query("example.org.")).unwrap();
    let host = Command::new("hostname").output().unwrap().stdout;
    let host = String::from_utf8_lossy(&host).trim().to_string();
    assert_eq!(nsid(&m), Some(host.into_bytes()));
}

#[test]
fn bufsize_caps_the_answer_size_over_udp() {
    // Forty 30-octet authors make an answer of about 1.6 KB.
    let authors: Vec<String> = (0..40)
        .map(|i| format!("author-{i:02}-{}", "x".repeat(20)))
        .collect();
    let chaos = format!("chaos v1 {}", authors.join(" "));
    let ask = with_edns(
        query_class("authors.bind.", RecordType::TXT, DNSClass::CH),
        4096,
    );

    let plain = Server::start(&format!(".:PORT {{\n    {chaos}\n}}\n"));
    let m = udp_exchange(plain.addr(), &ask).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);

    let capped = Server::start(&format!(".:PORT {{\n    bufsize 1232\n    {chaos}\n}}\n"));
    let raw = udp_raw(capped.addr(), &ask.to_vec().unwrap()).unwrap();
    assert!(raw.len() <= 1232, "{} octets", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.len() < 40);
    // TCP carries it all.
    let m = tcp_exchange(capped.addr(), &ask).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    // A client that asked for less than the cap still gets what it asked for.
    let small = with_edns(
        query_class("authors.bind.", RecordType::TXT, DNSClass::CH),
        512,
    );
    let raw = udp_raw(capped.addr(), &small.to_vec().unwrap()).unwrap();
    assert!(raw.len() <= 512);

    // Options added on the way out (NSID runs before bufsize) count against the cap too.
    let both = Server::start(&format!(
        ".:PORT {{\n    nsid {}\n    bufsize 1232\n    {chaos}\n}}\n",
        "n".repeat(100)
    ));
    let mut ask_nsid = ask.clone();
    if let Some(e) = ask_nsid.edns.as_mut() {
        e.options_mut()
            .insert(EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap()));
    }
    let raw = udp_raw(both.addr(), &ask_nsid.to_vec().unwrap()).unwrap();
    assert!(raw.len() <= 1232, "{} octets", raw.len());
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.metadata.truncation);
    assert_eq!(nsid(&m).map(|n| n.len()), Some(100));
}

fn acl_ask(name: &str) -> Message {
    with_edns(query(name, RecordType::A), 1232)
}

fn from(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 0)
}

#[test]
fn acl_blocks_filters_and_drops() {
    let srv = Server::start(
        ".:PORT {\n    acl {\n        drop net 127.0.0.2\n        block net 127.0.0.3\n        filter type A net 127.0.0.4\n        allow net 127.0.0.1\n    }\n    whoami\n}\n",
    );
    let addr = srv.addr();
    let wait = Duration::from_secs(2);

    // Dropped: no reply over either transport ...
    assert!(udp_exchange_from("127.0.0.2:0", addr, &acl_ask("example.org.")).is_none());
    assert!(tcp_exchange_from(from("127.0.0.2"), addr, &acl_ask("example.org."), wait).is_none());
    // ... while others still get theirs.
    let m = udp_exchange_from("127.0.0.1:0", addr, &acl_ask("example.org.")).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.additionals.len(), 2);

    // Blocked: REFUSED with EDE 15, over UDP and TCP.
    let udp = udp_exchange_from("127.0.0.3:0", addr, &acl_ask("example.org.")).unwrap();
    let tcp = tcp_exchange_from(from("127.0.0.3"), addr, &acl_ask("example.org."), wait).unwrap();
    for m in [udp, tcp] {
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert_eq!(ede(&m), Some(vec![0, 15]));
        assert!(m.answers.is_empty() && m.additionals.is_empty());
    }
    // Without EDNS0 the same refusal comes without an OPT record.
    let m = udp_exchange_from("127.0.0.3:0", addr, &query("example.org.", RecordType::A)).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.edns.is_none());

    // Filtered: empty NOERROR with EDE 17, for type A only.
    let m = udp_exchange_from("127.0.0.4:0", addr, &acl_ask("example.org.")).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.additionals.is_empty());
    assert_eq!(ede(&m), Some(vec![0, 17]));
    let m = udp_exchange_from(
        "127.0.0.4:0",
        addr,
        &with_edns(query("example.org.", RecordType::AAAA), 1232),
    )
    .unwrap();
    assert_eq!(m.additionals.len(), 2);
    assert_eq!(ede(&m), None);

    // The server keeps serving after all that.
    let m = tcp_exchange_from(from("127.0.0.1"), addr, &acl_ask("example.org."), wait).unwrap();
    assert_eq!(m.additionals.len(), 2);

    if require("dig") {
        let out = dig(srv.port, &["-b", "127.0.0.3", "example.org"]);
        assert!(out.contains("status: REFUSED"), "{out}");
        assert!(out.contains("EDE: 15 (Blocked)"), "{out}");
    }
}

#[test]
fn acl_matches_ipv6_clients() {
    let srv = Server::start(".:PORT {\n    acl {\n        block net ::1\n    }\n    whoami\n}\n");
    let v6: SocketAddr = format!("[::1]:{}", srv.port).parse().unwrap();
    let m = udp_exchange_from("[::1]:0", v6, &acl_ask("example.org.")).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    let m = udp_exchange_from("127.0.0.1:0", srv.addr(), &acl_ask("example.org.")).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}

#[test]
fn root_sets_the_base_and_warns_when_missing() {
    let srv = Server::start(".:PORT {\n    root /nonexistent/ferrodns/zones\n    whoami\n}\n");
    let out = srv.wait_stdout("Root path does not exist");
    assert!(
        out.contains(
            "[WARNING] plugin/root: Root path does not exist: /nonexistent/ferrodns/zones"
        ),
        "{out}"
    );
    assert_eq!(srv.udp("example.org.", RecordType::A).additionals.len(), 2);

    // A path that exists but cannot be examined stops the start.
    let dir = temp_dir("root");
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let conf = dir.join("Corefile");
    std::fs::write(
        &conf,
        format!(
            ".:{} {{\n    root {}/sub\n    whoami\n}}\n",
            free_port(),
            file.display()
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("plugin/root"), "{text}");
    assert!(text.contains("unable to access root path"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn whoami_srv_names_ipv6_and_tcp() {
    let srv = Server::start(".:PORT {\n    whoami\n}\n");
    let srv_record = |m: &Message| {
        m.additionals
            .iter()
            .find(|r| r.record_type() == RecordType::SRV)
            .map(|r| (r.name.to_ascii(), r.data.to_string()))
            .expect("SRV")
    };
    let m = tcp_exchange(srv.addr(), &query("Example.ORG.", RecordType::A)).unwrap();
    let (name, data) = srv_record(&m);
    assert_eq!(name, "_tcp.Example.ORG.");
    assert!(data.starts_with("0 0 ") && data.ends_with(" ."), "{data}");
    let m = srv.udp(".", RecordType::NS);
    assert_eq!(srv_record(&m).0, "_udp.");

    let v6: SocketAddr = format!("[::1]:{}", srv.port).parse().unwrap();
    let m = udp_exchange_from("[::1]:0", v6, &query("example.org.", RecordType::A)).unwrap();
    assert!(
        m.additionals
            .iter()
            .any(|r| r.data == RData::AAAA("::1".parse().unwrap())),
        "{m:?}"
    );
    let m = tcp_exchange_from(
        "[::1]:0".parse().unwrap(),
        v6,
        &query("example.org.", RecordType::A),
        Duration::from_secs(3),
    )
    .unwrap();
    assert_eq!(srv_record(&m).0, "_tcp.example.org.");
    // EDNS0 clients get an OPT record back, the others none.
    let m = udp_exchange(
        srv.addr(),
        &with_edns(query("example.org.", RecordType::A), 1232),
    )
    .unwrap();
    assert!(m.edns.is_some());
    let m = udp_exchange(srv.addr(), &query("example.org.", RecordType::A)).unwrap();
    assert!(m.edns.is_none());
}
