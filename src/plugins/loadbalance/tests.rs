//! Table-driven tests: a fake next plugin returns fixed answers, `loadbalance` reorders them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX, NS, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::order::{self, Cidr};
use super::weighted::Weights;
use crate::corefile::parse_key;
use crate::corefile::parse_str;
use crate::metrics::Metrics;
use crate::plugin::setup::{BlockConfig, Setup, Shared};
use crate::plugin::{Chain, Next, Plugin, Proto, Request, Response, Served};

/// `owner TYPE data` in zone-file style, for the types these tests use.
fn rr(text: &str) -> Record {
    let f: Vec<&str> = text.split_whitespace().collect();
    let name = Name::from_ascii(f[0]).unwrap();
    let n = |s: &str| Name::from_ascii(s).unwrap();
    let data = match f[1] {
        "A" => RData::A(f[2].parse::<std::net::Ipv4Addr>().unwrap().into()),
        "AAAA" => RData::AAAA(f[2].parse::<std::net::Ipv6Addr>().unwrap().into()),
        "CNAME" => RData::CNAME(CNAME(n(f[2]))),
        "NS" => RData::NS(NS(n(f[2]))),
        "MX" => RData::MX(MX::new(f[2].parse().unwrap(), n(f[3]))),
        "TXT" => RData::TXT(TXT::new(vec![f[2].to_string()])),
        "SRV" => RData::SRV(SRV::new(0, 0, f[2].parse().unwrap(), n(f[3]))),
        other => panic!("type {other}"),
    };
    Record::from_rdata(name, 300, data)
}

fn rrs(list: &[&str]) -> Vec<Record> {
    list.iter().map(|t| rr(t)).collect()
}

/// A record as `TYPE data`, to compare orders readably.
fn show(r: &Record) -> String {
    match &r.data {
        RData::A(a) => format!("A {}", a.0),
        RData::AAAA(a) => format!("AAAA {}", a.0),
        RData::CNAME(c) => format!("CNAME {}", c.0),
        RData::NS(ns) => format!("NS {}", ns.0),
        RData::MX(mx) => format!("MX {}", mx.exchange),
        RData::TXT(_) => "TXT".to_string(),
        RData::SRV(s) => format!("SRV {}", s.target),
        _ => r.record_type().to_string(),
    }
}

fn shown(section: &[Record]) -> Vec<String> {
    section.iter().map(show).collect()
}

/// The next plugin: answers every query with the same sections and rcode.
struct Fixed {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Plugin for Fixed {
    fn name(&self) -> &'static str {
        "fixed"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.metadata.response_code = self.rcode;
        m.answers = self.answers.clone();
        m.authorities = self.authorities.clone();
        m.additionals = self.additionals.clone();
        Served::Ready(Ok(Response::new(m, "fixed")))
    }
}

fn request(name: &str, qtype: RecordType) -> Request {
    let mut m = Message::query();
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let a: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    Request::new(m, a, a, Proto::Udp, 40).unwrap()
}

/// Run `loadbalance` (configured by `directive` lines) in front of `next`.
fn setup_with(corefile_lines: &str, root: &Path) -> Result<Arc<dyn Plugin>, String> {
    let text = format!(".:53 {{\n{corefile_lines}\n}}\n");
    let corefile = parse_str("Corefile", &text, root).map_err(|e| e.to_string())?;
    let block = &corefile.blocks[0];
    let keys = parse_key(".:53").unwrap();
    let mut cfg = BlockConfig {
        root: root.to_path_buf(),
        ..BlockConfig::default()
    };
    let shared = Shared::new(Arc::new(Metrics::new()));
    let mut c = Setup {
        directives: block.directives.iter().collect(),
        keys: &keys,
        zones: vec![".".into()],
        block: &mut cfg,
        shared: &shared,
    };
    match super::setup(&mut c) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err("no handler".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn setup(corefile_lines: &str) -> Arc<dyn Plugin> {
    setup_with(corefile_lines, Path::new("/")).unwrap()
}

fn run(lb: &Arc<dyn Plugin>, next: &Arc<Fixed>, qname: &str, qtype: RecordType) -> Message {
    let chain = Chain {
        plugins: vec![lb.clone(), next.clone() as Arc<dyn Plugin>],
    };
    let req = request(qname, qtype);
    match chain.serve(&req) {
        Served::Ready(Ok(resp)) => resp.into_message(),
        Served::Ready(Err(f)) => panic!("failure {f:?}"),
        Served::Pending(_) => panic!("a fixed answer must come back at once"),
    }
}

fn fixed(answers: &[&str], authorities: &[&str], additionals: &[&str]) -> Arc<Fixed> {
    Arc::new(Fixed {
        rcode: ResponseCode::NoError,
        answers: rrs(answers),
        authorities: rrs(authorities),
        additionals: rrs(additionals),
    })
}

#[test]
fn setup_accepts_and_rejects_as_coredns() {
    let dir = crate::plugins::loadbalance::tests::temp_dir("setup");
    std::fs::write(dir.join("wf"), "a.example\n10.0.0.1 2\n").unwrap();
    let ok = [
        "loadbalance",
        "loadbalance round_robin",
        "loadbalance weighted wf",
        "loadbalance weighted wf {\n reload 10s\n}",
        "loadbalance weighted wf {\n reload 0s\n}",
        "loadbalance weighted wf {\n prefer 192.0.2.0/24 2001:db8::/32\n reload 10s\n}",
        "loadbalance weighted wf {\n reload 10s\n prefer 192.0.2.0/24\n}",
        "loadbalance {\n prefer 10.0.0.0/8\n}",
        "loadbalance round_robin {\n prefer 10.0.0.1/8 fd00::/8\n}",
        // A missing file is only a warning when a reload may find it later.
        "loadbalance weighted missing-file",
    ];
    for lines in ok {
        assert!(
            setup_with(lines, &dir).is_ok(),
            "{lines}: {:?}",
            setup_with(lines, &dir).err()
        );
    }
    let bad = [
        (
            "loadbalance round_robin {\n reload 10s\n}",
            "Corefile:3 - Error during parsing: unknown property 'reload'",
        ),
        (
            "loadbalance weighted wf {\n reload\n}",
            "Corefile:3 - Error during parsing: reload duration value is missing",
        ),
        (
            "loadbalance weighted wf {\n reload a\n}",
            "Corefile:3 - Error during parsing: invalid reload duration 'a'",
        ),
        (
            "loadbalance weighted wf {\n reload 30s a\n}",
            "Corefile:3 - Error during parsing: unexpected argument",
        ),
        (
            "loadbalance weighted wf {\n susu\n}",
            "Corefile:3 - Error during parsing: unknown property 'susu'",
        ),
        (
            "loadbalance weighted wf {\n prefer invalid\n}",
            "Corefile:3 - Error during parsing: invalid CIDR \"invalid\": invalid CIDR address: invalid",
        ),
        (
            "loadbalance {\n prefer 10.0.0.0/33\n}",
            "Corefile:3 - Error during parsing: invalid CIDR \"10.0.0.0/33\": invalid CIDR address: 10.0.0.0/33",
        ),
        ("loadbalance fleeb", "unknown policy: fleeb"),
        (
            "loadbalance round_robin a",
            "Corefile:2 - Error during parsing: unknown property for round_robin",
        ),
        (
            "loadbalance weighted",
            "Corefile:2 - Error during parsing: missing weight file argument",
        ),
        (
            "loadbalance weighted a b",
            "Corefile:2 - Error during parsing: unexpected argument(s)",
        ),
        // Without reloads, a missing file can never be read: start-up fails.
        (
            "loadbalance weighted missing-file {\n reload 0s\n}",
            "weight file open error",
        ),
    ];
    std::fs::write(dir.join("broken"), "a.example\n10.0.0.1 300\n").unwrap();
    for (lines, want) in bad {
        assert_eq!(
            setup_with(lines, &dir).err().as_deref(),
            Some(want),
            "{lines}"
        );
    }
    let err = setup_with("loadbalance weighted broken", &dir)
        .err()
        .unwrap();
    assert!(
        err.starts_with("wrong weight value:\"300\" in weight file "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

pub(super) fn temp_dir(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferrodns-lb-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Query the same fixed answer many times; return every order seen for the answer section.
fn orders(
    lb: &Arc<dyn Plugin>,
    next: &Arc<Fixed>,
    qtype: RecordType,
    section: fn(&Message) -> &Vec<Record>,
) -> HashSet<Vec<String>> {
    (0..400)
        .map(|_| shown(section(&run(lb, next, "a.example.", qtype))))
        .collect()
}

#[test]
fn round_robin_orders() {
    struct Case {
        name: &'static str,
        answer: &'static [&'static str],
        /// Records that must come first, in this order, every time.
        fixed_prefix: &'static [&'static str],
        /// The records after the prefix that are shuffled among themselves.
        shuffled: &'static [&'static str],
        /// Records that must come last, in this order, every time.
        fixed_suffix: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "plain A RRset",
            answer: &[
                "a.example. A 192.0.2.1",
                "a.example. A 192.0.2.2",
                "a.example. A 192.0.2.3",
                "a.example. A 192.0.2.4",
            ],
            fixed_prefix: &[],
            shuffled: &["A 192.0.2.1", "A 192.0.2.2", "A 192.0.2.3", "A 192.0.2.4"],
            fixed_suffix: &[],
        },
        Case {
            name: "two records swap",
            answer: &["a.example. AAAA 2001:db8::1", "a.example. AAAA 2001:db8::2"],
            fixed_prefix: &[],
            shuffled: &["AAAA 2001:db8::1", "AAAA 2001:db8::2"],
            fixed_suffix: &[],
        },
        Case {
            name: "CNAME chain stays in front, in order",
            answer: &[
                "b.example. A 192.0.2.1",
                "www.example. CNAME a.example.",
                "b.example. A 192.0.2.2",
                "a.example. CNAME b.example.",
                "b.example. A 192.0.2.3",
            ],
            fixed_prefix: &["CNAME a.example.", "CNAME b.example."],
            shuffled: &["A 192.0.2.1", "A 192.0.2.2", "A 192.0.2.3"],
            fixed_suffix: &[],
        },
        Case {
            name: "A and AAAA mixed are shuffled together",
            answer: &[
                "a.example. A 192.0.2.1",
                "a.example. AAAA 2001:db8::1",
                "a.example. A 192.0.2.2",
            ],
            fixed_prefix: &[],
            shuffled: &["A 192.0.2.1", "AAAA 2001:db8::1", "A 192.0.2.2"],
            fixed_suffix: &[],
        },
        Case {
            name: "other types go between CNAMEs and addresses, MX last",
            answer: &[
                "a.example. MX 10 mx1.example.",
                "a.example. A 192.0.2.1",
                "a.example. TXT x",
                "a.example. CNAME c.example.",
                "a.example. A 192.0.2.2",
            ],
            fixed_prefix: &["CNAME c.example.", "TXT"],
            shuffled: &["A 192.0.2.1", "A 192.0.2.2"],
            fixed_suffix: &["MX mx1.example."],
        },
    ];
    let lb = setup("loadbalance round_robin");
    for case in cases {
        let next = fixed(case.answer, &[], &[]);
        let seen = orders(&lb, &next, RecordType::A, |m| &m.answers);
        let want_set: HashSet<&str> = case.shuffled.iter().copied().collect();
        for order in &seen {
            assert_eq!(order.len(), case.answer.len(), "{}", case.name);
            let p = case.fixed_prefix.len();
            let s = order.len() - case.fixed_suffix.len();
            assert_eq!(&order[..p], case.fixed_prefix, "{}: {order:?}", case.name);
            assert_eq!(&order[s..], case.fixed_suffix, "{}: {order:?}", case.name);
            let middle: HashSet<&str> = order[p..s].iter().map(String::as_str).collect();
            assert_eq!(middle, want_set, "{}", case.name);
        }
        // Every record of the shuffled group shows up first in that group at least once.
        let firsts: HashSet<&String> = seen.iter().map(|o| &o[case.fixed_prefix.len()]).collect();
        assert_eq!(firsts.len(), case.shuffled.len(), "{}: {seen:?}", case.name);
    }
}

#[test]
fn round_robin_also_shuffles_mx_authority_and_additional() {
    let lb = setup("loadbalance");
    let next = fixed(
        &[
            "a.example. MX 10 mx1.example.",
            "a.example. MX 20 mx2.example.",
            "a.example. MX 30 mx3.example.",
        ],
        &["example. NS ns1.example.", "example. NS ns2.example."],
        &[
            "ns1.example. A 192.0.2.53",
            "ns1.example. AAAA 2001:db8::53",
            "x.example. SRV 53 ns1.example.",
        ],
    );
    let mut mx_first = HashSet::new();
    let mut extra_orders = HashSet::new();
    for _ in 0..300 {
        let m = run(&lb, &next, "a.example.", RecordType::MX);
        mx_first.insert(show(&m.answers[0]));
        // NS is an "other" type: its order is kept.
        assert_eq!(
            shown(&m.authorities),
            ["NS ns1.example.", "NS ns2.example."]
        );
        // The SRV ("other") comes before the addresses, which are shuffled.
        assert_eq!(show(&m.additionals[0]), "SRV ns1.example.");
        extra_orders.insert(shown(&m.additionals[1..]));
    }
    assert_eq!(mx_first.len(), 3);
    assert_eq!(extra_orders.len(), 2);
}

#[test]
fn untouched_answers() {
    let answer = [
        "a.example. A 192.0.2.1",
        "a.example. CNAME b.example.",
        "a.example. A 192.0.2.2",
    ];
    let want = ["A 192.0.2.1", "CNAME b.example.", "A 192.0.2.2"];
    let lb = setup("loadbalance {\n prefer 192.0.2.2/32\n}");
    // Not NOERROR: left alone.
    for rcode in [
        ResponseCode::NXDomain,
        ResponseCode::ServFail,
        ResponseCode::Refused,
    ] {
        let next = Arc::new(Fixed {
            rcode,
            answers: rrs(&answer),
            authorities: vec![],
            additionals: rrs(&answer),
        });
        for _ in 0..20 {
            let m = run(&lb, &next, "a.example.", RecordType::A);
            assert_eq!(shown(&m.answers), want);
            assert_eq!(shown(&m.additionals), want);
        }
    }
    // Zone transfers: left alone.
    let next = fixed(&answer, &[], &[]);
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        for _ in 0..20 {
            assert_eq!(shown(&run(&lb, &next, "a.example.", qtype).answers), want);
        }
    }
    // One record, and an empty answer.
    let next = fixed(&["a.example. A 192.0.2.1"], &[], &[]);
    assert_eq!(
        shown(&run(&lb, &next, "a.example.", RecordType::A).answers),
        ["A 192.0.2.1"]
    );
    let next = fixed(&[], &[], &[]);
    assert!(
        run(&lb, &next, "a.example.", RecordType::A)
            .answers
            .is_empty()
    );
}

#[test]
fn whoami_style_additional_puts_srv_before_address() {
    // What a client sees from `whoami` behind `loadbalance`: the A record is an address, the
    // SRV "other", so CoreDNS sends the SRV first.
    let lb = setup("loadbalance");
    let next = fixed(
        &[],
        &[],
        &[
            "a.example. A 127.0.0.1",
            "_udp.a.example. SRV 5353 a.example.",
        ],
    );
    let m = run(&lb, &next, "a.example.", RecordType::A);
    assert_eq!(shown(&m.additionals), ["SRV a.example.", "A 127.0.0.1"]);
}

fn weights(text: &str) -> Weights {
    Weights::parse(text, "wf").unwrap()
}

#[test]
fn weighted_picks_top_address_by_draw() {
    let w = weights("www.example\n100.64.1.1 3\n100.64.1.2 1\n100.64.1.3 2\n");
    let answer = [
        "www.example. CNAME a.example.",
        "www.example. A 100.64.1.1",
        "www.example. A 100.64.1.2",
        "www.example. A 100.64.1.3",
    ];
    // Draws 0..6 over weights 3, 1, 2: three for .1, one for .2, two for .3.
    let table = [
        (0, ["A 100.64.1.1", "A 100.64.1.2", "A 100.64.1.3"]),
        (2, ["A 100.64.1.1", "A 100.64.1.2", "A 100.64.1.3"]),
        (3, ["A 100.64.1.2", "A 100.64.1.1", "A 100.64.1.3"]),
        (4, ["A 100.64.1.3", "A 100.64.1.2", "A 100.64.1.1"]),
        (5, ["A 100.64.1.3", "A 100.64.1.2", "A 100.64.1.1"]),
    ];
    for (draw, want) in table {
        let mut section = rrs(&answer);
        order::weighted_with(&mut section, &w, |sum| {
            assert_eq!(sum, 6);
            draw
        });
        assert_eq!(show(&section[0]), "CNAME a.example.");
        assert_eq!(shown(&section[1..]), want, "draw {draw}");
    }
}

#[test]
fn weighted_groups_like_coredns() {
    let w = weights("a.example\n192.0.2.2 200\n");
    // Unlisted addresses weigh 1; names match whatever their case.
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "A.Example. MX 10 mx.example.",
                "A.Example. A 192.0.2.1",
                "a.example. TXT t",
                "A.EXAMPLE. CNAME b.example.",
                "a.example. A 192.0.2.2",
            ],
            &[
                "CNAME b.example.",
                "TXT",
                "A 192.0.2.2",
                "A 192.0.2.1",
                "MX mx.example.",
            ],
        ),
        // No address at all: the section is returned exactly as it came.
        (
            &[
                "a.example. MX 10 mx.example.",
                "a.example. CNAME b.example.",
            ],
            &["MX mx.example.", "CNAME b.example."],
        ),
    ];
    for (input, want) in cases {
        let mut section = rrs(input);
        // The last draw value lands on the heaviest record, 192.0.2.2.
        order::weighted_with(&mut section, &w, |sum| sum - 1);
        assert_eq!(shown(&section), *want);
    }
}

#[test]
fn weighted_plugin_converges_to_the_weights() {
    let dir = temp_dir("weighted");
    std::fs::write(
        dir.join("db.weights"),
        "www.example.com\n100.64.1.1 3\n100.64.1.2 1\n100.64.1.3 2\n",
    )
    .unwrap();
    let lb = setup_with("loadbalance weighted db.weights {\n reload 0s\n}", &dir).unwrap();
    let next = fixed(
        &[
            "www.example.com. A 100.64.1.1",
            "www.example.com. A 100.64.1.2",
            "www.example.com. A 100.64.1.3",
        ],
        &[],
        &[],
    );
    let mut counts = [0u32; 3];
    let n = 6000;
    for _ in 0..n {
        let m = run(&lb, &next, "www.example.com.", RecordType::A);
        match show(&m.answers[0]).as_str() {
            "A 100.64.1.1" => counts[0] += 1,
            "A 100.64.1.2" => counts[1] += 1,
            "A 100.64.1.3" => counts[2] += 1,
            other => panic!("{other}"),
        }
    }
    // Expected 3000 : 1000 : 2000; allow generous slack (many standard deviations).
    for (got, want) in counts.iter().zip([3000, 1000, 2000]) {
        assert!((*got as i32 - want).abs() < 250, "{counts:?}");
    }
    // Not an address or service query: untouched.
    let next = fixed(
        &[
            "www.example.com. A 100.64.1.2",
            "www.example.com. CNAME x.example.",
        ],
        &[],
        &[],
    );
    for _ in 0..20 {
        let m = run(&lb, &next, "www.example.com.", RecordType::TXT);
        assert_eq!(shown(&m.answers), ["A 100.64.1.2", "CNAME x.example."]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weighted_srv_answer_weighs_additional_addresses() {
    let dir = temp_dir("srv");
    std::fs::write(dir.join("w"), "t.example\n192.0.2.9 255\n").unwrap();
    let lb = setup_with("loadbalance weighted w {\n reload 0s\n}", &dir).unwrap();
    let next = fixed(
        &["_x._tcp.example. SRV 80 t.example."],
        &[],
        &["t.example. A 192.0.2.1", "t.example. A 192.0.2.9"],
    );
    let mut top9 = 0;
    for _ in 0..200 {
        let m = run(&lb, &next, "_x._tcp.example.", RecordType::SRV);
        assert_eq!(shown(&m.answers), ["SRV t.example."]);
        if show(&m.additionals[0]) == "A 192.0.2.9" {
            top9 += 1;
        }
    }
    // 255 to 1: nearly always first.
    assert!(top9 > 180, "{top9}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prefer_orders_like_coredns() {
    // CoreDNS's own example: networks in the order given, then the rest, each group in the
    // order it came; CNAME first.
    let nets: Vec<Cidr> = ["2001:db8::/32", "10.9.20.0/24", "10.9.30.0/24"]
        .iter()
        .map(|c| Cidr::parse(c).unwrap())
        .collect();
    let mut section = rrs(&[
        "e.org. A 10.9.30.1",
        "e.org. A 10.9.20.5",
        "e.org. A 192.168.1.2",
        "e.org. A 10.10.0.1",
        "e.org. A 10.9.20.3",
        "e.org. A 172.16.0.1",
        "e.org. AAAA 2001:db8::1",
        "e.org. AAAA 2001:db8:abcd::1",
        "e.org. AAAA fd00::1",
        "e.org. CNAME alias.example.org.",
    ]);
    order::prefer(&mut section, &nets);
    assert_eq!(
        shown(&section),
        [
            "CNAME alias.example.org.",
            "AAAA 2001:db8::1",
            "AAAA 2001:db8:abcd::1",
            "A 10.9.20.5",
            "A 10.9.20.3",
            "A 10.9.30.1",
            "A 192.168.1.2",
            "A 10.10.0.1",
            "A 172.16.0.1",
            "AAAA fd00::1",
        ]
    );
    // MX after the addresses, other types last (unlike round_robin).
    let mut section = rrs(&["a. TXT t", "a. MX 1 m.", "a. A 192.0.2.1", "a. A 10.9.20.1"]);
    order::prefer(&mut section, &nets);
    assert_eq!(
        shown(&section),
        ["A 10.9.20.1", "A 192.0.2.1", "MX m.", "TXT"]
    );
}

#[test]
fn prefer_after_round_robin() {
    let lb = setup("loadbalance round_robin {\n prefer 10.0.0.0/8\n}");
    let next = fixed(
        &[
            "a.example. A 192.0.2.1",
            "a.example. A 10.0.0.1",
            "a.example. A 192.0.2.2",
            "a.example. A 10.0.0.2",
        ],
        &["a.example. A 192.0.2.1", "a.example. A 10.0.0.1"],
        &["a.example. A 192.0.2.1", "a.example. A 10.0.0.1"],
    );
    let mut first = HashSet::new();
    let mut authority_first = HashSet::new();
    for _ in 0..300 {
        let m = run(&lb, &next, "a.example.", RecordType::A);
        let order = shown(&m.answers);
        // The preferred pair first in either order, then the others in either order.
        assert!(
            order[..2].iter().all(|r| r.starts_with("A 10.")),
            "{order:?}"
        );
        assert!(
            order[2..].iter().all(|r| r.starts_with("A 192.")),
            "{order:?}"
        );
        first.insert(order[0].clone());
        assert_eq!(shown(&m.additionals)[0], "A 10.0.0.1");
        // `prefer` leaves the authority section to the policy alone.
        authority_first.insert(shown(&m.authorities)[0].clone());
    }
    assert_eq!(first.len(), 2);
    assert_eq!(authority_first.len(), 2);
}

#[test]
fn prefer_after_weighted() {
    let dir = temp_dir("prefw");
    std::fs::write(dir.join("w"), "a.example\n192.0.2.1 255\n").unwrap();
    let lb = setup_with(
        "loadbalance weighted w {\n reload 0s\n prefer 10.0.0.0/8\n}",
        &dir,
    )
    .unwrap();
    let next = fixed(
        &["a.example. A 192.0.2.1", "a.example. A 10.0.0.1"],
        &[],
        &[],
    );
    for _ in 0..50 {
        let m = run(&lb, &next, "a.example.", RecordType::A);
        assert_eq!(show(&m.answers[0]), "A 10.0.0.1");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cidrs() {
    let table = [
        ("10.9.20.0/24", "10.9.20.255", true),
        ("10.9.20.7/24", "10.9.20.1", true),
        ("10.9.20.0/24", "10.9.21.1", false),
        ("0.0.0.0/0", "203.0.113.1", true),
        ("0.0.0.0/0", "2001:db8::1", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("192.0.2.1/32", "192.0.2.1", true),
        ("192.0.2.1/32", "192.0.2.2", false),
        // An IPv4-mapped address counts as IPv4, as in Go.
        ("192.0.2.0/24", "::ffff:192.0.2.5", true),
        ("::/0", "::1", true),
    ];
    for (net, ip, want) in table {
        let c = Cidr::parse(net).unwrap();
        assert_eq!(c.contains(ip.parse().unwrap()), want, "{ip} in {net}");
    }
    assert_eq!(
        Cidr::parse("10.9.20.7/24").unwrap().to_string(),
        "10.9.20.0/24"
    );
    for bad in [
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "x/8",
        "10.0.0.0/+8",
        "10.0.0.0/08x",
    ] {
        assert!(Cidr::parse(bad).is_err(), "{bad}");
    }
}

/// Cost per query of the reordering, against the same chain without it. Run with
/// `cargo test --release --lib plugins::loadbalance::tests::bench_reorder -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_reorder() {
    let lb = setup("loadbalance");
    let cases: [(&str, &[&str]); 3] = [
        (
            "4 A",
            &[
                "a.example. A 192.0.2.1",
                "a.example. A 192.0.2.2",
                "a.example. A 192.0.2.3",
                "a.example. A 192.0.2.4",
            ],
        ),
        (
            "CNAME + 3 A",
            &[
                "a.example. CNAME b.example.",
                "b.example. A 192.0.2.1",
                "b.example. A 192.0.2.2",
                "b.example. A 192.0.2.3",
            ],
        ),
        ("1 A", &["a.example. A 192.0.2.1"]),
    ];
    for (label, answer) in cases {
        let next = fixed(answer, &[], &[]);
        let chain_lb = Chain {
            plugins: vec![lb.clone(), next.clone() as Arc<dyn Plugin>],
        };
        let chain_plain = Chain {
            plugins: vec![next.clone() as Arc<dyn Plugin>],
        };
        let req = request("a.example.", RecordType::A);
        let n = 200_000;
        let time = |chain: &Chain| {
            let t = std::time::Instant::now();
            for _ in 0..n {
                match chain.serve(&req) {
                    Served::Ready(Ok(r)) => {
                        std::hint::black_box(r);
                    }
                    _ => panic!(),
                }
            }
            t.elapsed().as_nanos() as f64 / n as f64
        };
        let plain = time(&chain_plain);
        let with = time(&chain_lb);
        println!(
            "{label}: fixed answer {plain:.0} ns, with loadbalance {with:.0} ns, difference {:.0} ns",
            with - plain
        );
    }
}

/// The next plugin in wire form, as a cache hit comes back.
struct FixedWire(Vec<u8>);

impl Plugin for FixedWire {
    fn name(&self) -> &'static str {
        "fixedwire"
    }

    fn serve<'a>(&'a self, _req: &'a Request, _next: Next<'a>) -> Served<'a> {
        Served::Ready(Ok(Response::from_wire(self.0.clone(), "cache")))
    }
}

/// Round robin on wire-form answers: the same orders as the parsed path, and the answer stays in
/// wire form when the records could be moved as bytes.
#[test]
fn round_robin_on_wire_form() {
    struct Case {
        name: &'static str,
        rcode: ResponseCode,
        answer: &'static [&'static str],
        additional: &'static [&'static str],
        /// Answer records that keep their place, by index into the result.
        fixed: &'static [(usize, &'static str)],
        /// Distinct answer orders expected over many runs.
        orders: usize,
        /// Whether the answer must still be in wire form.
        wire: bool,
    }
    let cases = [
        Case {
            name: "A RRset",
            rcode: ResponseCode::NoError,
            answer: &[
                "a.example. A 10.0.0.1",
                "a.example. A 10.0.0.2",
                "a.example. A 10.0.0.3",
            ],
            additional: &[],
            fixed: &[],
            orders: 6,
            wire: true,
        },
        Case {
            name: "CNAME then A and AAAA",
            rcode: ResponseCode::NoError,
            answer: &[
                "a.example. CNAME b.example.",
                "b.example. A 10.0.0.1",
                "b.example. AAAA 2001:db8::1",
            ],
            additional: &["b.example. A 10.0.0.9", "b.example. AAAA 2001:db8::9"],
            fixed: &[(0, "CNAME b.example.")],
            orders: 2,
            wire: true,
        },
        Case {
            name: "one address",
            rcode: ResponseCode::NoError,
            answer: &["a.example. A 10.0.0.1"],
            additional: &[],
            fixed: &[(0, "A 10.0.0.1")],
            orders: 1,
            wire: true,
        },
        Case {
            name: "NXDOMAIN is left alone",
            rcode: ResponseCode::NXDomain,
            answer: &["a.example. A 10.0.0.1", "a.example. A 10.0.0.2"],
            additional: &[],
            fixed: &[(0, "A 10.0.0.1"), (1, "A 10.0.0.2")],
            orders: 1,
            wire: true,
        },
        Case {
            name: "out of group order: parsed and sorted",
            rcode: ResponseCode::NoError,
            answer: &[
                "b.example. A 10.0.0.1",
                "a.example. CNAME b.example.",
                "b.example. A 10.0.0.2",
            ],
            additional: &[],
            fixed: &[(0, "CNAME b.example.")],
            orders: 2,
            wire: false,
        },
        Case {
            name: "two MX: parsed",
            rcode: ResponseCode::NoError,
            answer: &[
                "a.example. MX 10 m1.example.",
                "a.example. MX 20 m2.example.",
            ],
            additional: &["m1.example. A 10.0.0.1"],
            fixed: &[],
            orders: 2,
            wire: false,
        },
        Case {
            name: "addresses of another owner written in full: parsed",
            rcode: ResponseCode::NoError,
            answer: &["x.example. A 10.0.0.1", "x.example. A 10.0.0.2"],
            additional: &[],
            fixed: &[],
            orders: 2,
            wire: false,
        },
    ];
    let lb = setup("loadbalance");
    for c in &cases {
        let mut m = Message::response(0, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = c.rcode;
        m.queries.push(Query::query(
            Name::from_ascii("a.example.").unwrap(),
            RecordType::A,
        ));
        m.answers = rrs(c.answer);
        m.additionals = rrs(c.additional);
        let next = Arc::new(FixedWire(m.to_vec().unwrap()));
        let chain = Chain {
            plugins: vec![lb.clone(), next as Arc<dyn Plugin>],
        };
        let req = request("a.example.", RecordType::A);
        let mut seen = HashSet::new();
        for _ in 0..300 {
            let Served::Ready(Ok(resp)) = chain.serve(&req) else {
                panic!("{}: no answer", c.name)
            };
            assert_eq!(resp.wire().is_some(), c.wire, "{}", c.name);
            let got = resp.into_message();
            assert_eq!(got.metadata.response_code, c.rcode, "{}", c.name);
            let answers = shown(&got.answers);
            let mut sorted = answers.clone();
            sorted.sort();
            let mut want = shown(&m.answers);
            want.sort();
            assert_eq!(sorted, want, "{}: same records", c.name);
            let mut extra = shown(&got.additionals);
            extra.sort();
            let mut want = shown(&m.additionals);
            want.sort();
            assert_eq!(extra, want, "{}: same additional records", c.name);
            for (i, text) in c.fixed {
                assert_eq!(answers[*i], *text, "{}", c.name);
            }
            seen.insert(answers);
        }
        assert_eq!(seen.len(), c.orders, "{}: {seen:?}", c.name);
    }
}
