//! Writes the seed corpora: `cargo fuzz run` starts from `corpus/TARGET/`. Run from `fuzz/`:
//! `fuzz/target/x86_64-unknown-linux-gnu/release/seeds` (built by `cargo fuzz build`).
//!
//! DNS messages are encoded by hickory (queries with and without EDNS, answers, denials,
//! delegations, DNSSEC-looking answers); Corefiles are every `~~~ corefile` example of the
//! plugin READMEs plus the files under `seeds/corefile/`; hosts files come from `seeds/hosts/`,
//! weight files from `seeds/weights/`.

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, PTR, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

fn name(s: &str) -> Name {
    Name::from_ascii(s).expect("seed name")
}

fn query(qname: &str, qtype: RecordType, edns: Option<(u16, bool)>) -> Message {
    let mut m = Message::query();
    m.metadata.id = 0xbeef;
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name(qname), qtype));
    if let Some((size, dnssec)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(dnssec);
        m.edns = Some(e);
    }
    m
}

fn answer(q: &Message, rcode: ResponseCode, answers: Vec<Record>, auth: Vec<Record>) -> Message {
    let mut m = Message::response(q.metadata.id, OpCode::Query);
    m.metadata.message_type = MessageType::Response;
    m.metadata.recursion_available = true;
    m.metadata.response_code = rcode;
    m.queries = q.queries.clone();
    m.answers = answers;
    m.authorities = auth;
    m.edns = q.edns.clone();
    m
}

fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn soa(zone: &str) -> Record {
    let s = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("admin.{zone}")),
        1,
        7200,
        3600,
        1_209_600,
        60,
    );
    rec(zone, 300, RData::SOA(s))
}

fn write(dir: &Path, n: &mut usize, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("corpus dir");
    fs::write(dir.join(format!("seed-{n:03}")), bytes).expect("write seed");
    *n += 1;
}

fn main() {
    let corpus = Path::new("corpus");
    let mut n = 0;

    let queries = [
        query("example.org.", RecordType::A, None),
        query("Example.ORG.", RecordType::AAAA, Some((1232, false))),
        query("example.org.", RecordType::MX, Some((4096, true))),
        query(".", RecordType::NS, Some((512, false))),
        query("1.0.0.127.in-addr.arpa.", RecordType::PTR, None),
        query("version.bind.", RecordType::TXT, None),
        query("a.b.c.d.example.org.", RecordType::ANY, Some((65535, true))),
    ];
    let mut chaos = query("version.bind.", RecordType::TXT, None);
    chaos.queries[0].query_class = DNSClass::CH;

    let mut replies = Vec::new();
    let q = &queries[0];
    let a = |ip: [u8; 4]| rec("example.org.", 300, RData::A(A(Ipv4Addr::from(ip))));
    replies.push(answer(
        q,
        ResponseCode::NoError,
        vec![a([192, 0, 2, 1]), a([192, 0, 2, 2])],
        vec![],
    ));
    replies.push(answer(
        q,
        ResponseCode::NXDomain,
        vec![],
        vec![soa("example.org.")],
    ));
    replies.push(answer(
        q,
        ResponseCode::NoError,
        vec![],
        vec![soa("example.org.")],
    ));
    replies.push(answer(
        q,
        ResponseCode::NoError,
        vec![],
        vec![rec(
            "example.org.",
            3600,
            RData::NS(NS(name("ns1.example.org."))),
        )],
    ));
    replies.push(answer(q, ResponseCode::ServFail, vec![], vec![]));
    replies.push(answer(
        &queries[1],
        ResponseCode::NoError,
        vec![
            rec(
                "example.org.",
                60,
                RData::CNAME(CNAME(name("www.example.net."))),
            ),
            rec(
                "www.example.net.",
                30,
                RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            ),
        ],
        vec![],
    ));
    replies.push(answer(
        &queries[2],
        ResponseCode::NoError,
        vec![rec(
            "example.org.",
            300,
            RData::MX(MX::new(10, name("mail.example.org."))),
        )],
        vec![],
    ));
    replies.push(answer(
        &queries[4],
        ResponseCode::NoError,
        vec![rec(
            "1.0.0.127.in-addr.arpa.",
            300,
            RData::PTR(PTR(name("localhost."))),
        )],
        vec![],
    ));
    replies.push(answer(
        &queries[5],
        ResponseCode::NoError,
        vec![rec(
            "version.bind.",
            0,
            RData::TXT(TXT::new(vec!["ferrodns".into()])),
        )],
        vec![],
    ));
    let mut truncated = answer(q, ResponseCode::NoError, vec![], vec![]);
    truncated.metadata.truncation = true;
    replies.push(truncated);

    for m in queries.iter().chain([&chaos]) {
        let bytes = m.to_vec().expect("encode query");
        write(&corpus.join("query"), &mut n, &bytes);
    }
    for m in &replies {
        let bytes = m.to_vec().expect("encode reply");
        write(&corpus.join("reply"), &mut n, &bytes);
        // A reply sent as a query is a query too.
        write(&corpus.join("query"), &mut n, &bytes);
    }

    // Corefiles: every example in the plugin READMEs, and the hand-written ones.
    let mut corefiles: Vec<String> = Vec::new();
    if let Ok(dirs) = fs::read_dir("../src/plugins") {
        for d in dirs.flatten() {
            let Ok(text) = fs::read_to_string(d.path().join("README.md")) else {
                continue;
            };
            let mut block: Option<String> = None;
            for line in text.lines() {
                match (&mut block, line.trim()) {
                    (None, "~~~ corefile") => block = Some(String::new()),
                    (Some(b), "~~~") => {
                        corefiles.push(std::mem::take(b));
                        block = None;
                    }
                    (Some(b), _) => {
                        b.push_str(line);
                        b.push('\n');
                    }
                    _ => {}
                }
            }
        }
    }
    for f in fs::read_dir("seeds/corefile")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(t) = fs::read_to_string(f.path()) {
            corefiles.push(t);
        }
    }
    for c in &corefiles {
        write(&corpus.join("corefile"), &mut n, c.as_bytes());
        write(&corpus.join("setup"), &mut n, c.as_bytes());
    }
    for f in fs::read_dir("seeds/hosts").into_iter().flatten().flatten() {
        if let Ok(t) = fs::read(f.path()) {
            write(&corpus.join("hosts"), &mut n, &t);
        }
    }
    for f in fs::read_dir("seeds/weights")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(t) = fs::read(f.path()) {
            write(&corpus.join("weights"), &mut n, &t);
        }
    }
    println!("wrote {n} seeds ({} Corefiles)", corefiles.len());
}
