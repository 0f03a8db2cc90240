//! Table-driven tests: a Corefile, a question, and what the plugin must answer.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::metrics::Metrics;
use crate::plugin::setup::Shared;
use crate::plugin::{Outcome, Proto};
use crate::plugins::whoami::testkit;

/// The stand-in for the rest of the chain: answers NOERROR, signed "next".
struct NextPlugin;

impl Plugin for NextPlugin {
    fn name(&self) -> &'static str {
        "next"
    }
    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        Served::Ready(Ok(Response::new(req.reply(), "next")))
    }
}

fn build_with(corefile: &str, shared: &Arc<Shared>) -> Result<Arc<dyn Plugin>, String> {
    // The cases below expect the error as setup returns it, before the server names the plugin.
    let built = testkit::setup_shared(setup, NAME, corefile, shared).map_err(|e| {
        e.strip_prefix("plugin/hosts: ")
            .map_or(e.clone(), str::to_string)
    })?;
    Ok(built.handler.expect("hosts has a handler"))
}

fn build(corefile: &str) -> Result<Arc<dyn Plugin>, String> {
    build_with(corefile, &Shared::new(Arc::new(Metrics::new())))
}

fn ask(plugin: &Arc<dyn Plugin>, qname: &str, qtype: RecordType) -> Outcome {
    let mut m = Message::query();
    m.queries
        .push(Query::query(Name::from_ascii(qname).unwrap(), qtype));
    let a: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let req = Request::new(m, a, a, Proto::Udp, 40).unwrap();
    let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(NextPlugin)];
    match plugin.serve(&req, Next::new(&rest)) {
        Served::Ready(o) => o,
        Served::Pending(_) => panic!("hosts never waits"),
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    /// NOERROR, AA set, these answer records (`owner ttl TYPE rdata`), nothing else.
    Answer(&'static [&'static str]),
    /// Passed to the next plugin.
    Next,
    /// The server answers this rcode (SERVFAIL for a name hosts does not know).
    Rcode(ResponseCode),
}

fn got(o: Outcome) -> (Want, Vec<String>) {
    match o {
        Err(f) => (Want::Rcode(f.rcode), Vec::new()),
        Ok(r) if r.plugin == "next" => (Want::Next, Vec::new()),
        Ok(r) => {
            let m = r.message();
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative, "hosts answers are authoritative");
            assert!(m.authorities.is_empty() && m.additionals.is_empty());
            let answers = m
                .answers
                .iter()
                .map(|rr| format!("{} {} {} {}", rr.name, rr.ttl, rr.record_type(), rr.data))
                .collect();
            (Want::Answer(&[]), answers)
        }
    }
}

fn check(plugin: &Arc<dyn Plugin>, qname: &str, qtype: RecordType, want: &Want) {
    let (kind, answers) = got(ask(plugin, qname, qtype));
    match want {
        Want::Answer(expected) => {
            assert_eq!(kind, Want::Answer(&[]), "{qname} {qtype}");
            assert_eq!(&answers, expected, "{qname} {qtype}");
        }
        other => assert_eq!(&kind, other, "{qname} {qtype}"),
    }
}

const INLINE: &str = ". {
    hosts /nonexistent/ferrodns/hosts example.org 1.0.0.10.in-addr.arpa {
        10.0.0.1 example.org Alias.Example.ORG
        10.0.0.2 example.org
        2001:db8::1 example.org v6only.example.org
        ::ffff:10.0.0.3 mapped.example.org
        fe80::1%eth0 link.example.org
        10.0.0.4 outside.example.net
        not-an-ip broken.example.org
        10.0.0.5
    }
}
";

#[test]
fn answers_from_inline_entries() {
    use RecordType::*;
    let p = build(INLINE).unwrap();
    let cases: &[(&str, RecordType, Want)] = &[
        (
            "example.org.",
            A,
            Want::Answer(&[
                "example.org. 3600 A 10.0.0.1",
                "example.org. 3600 A 10.0.0.2",
            ]),
        ),
        (
            "example.org.",
            AAAA,
            Want::Answer(&["example.org. 3600 AAAA 2001:db8::1"]),
        ),
        // Case-insensitive, and the owner is the lowercased question name.
        (
            "ALIAS.example.Org.",
            A,
            Want::Answer(&["alias.example.org. 3600 A 10.0.0.1"]),
        ),
        // The name exists with the other family only: NODATA.
        ("alias.example.org.", AAAA, Want::Answer(&[])),
        ("v6only.example.org.", A, Want::Answer(&[])),
        // Types hosts has no data for, on a known name: NODATA.
        ("example.org.", MX, Want::Answer(&[])),
        ("example.org.", TXT, Want::Answer(&[])),
        // IPv4-mapped: an A record, no AAAA.
        (
            "mapped.example.org.",
            A,
            Want::Answer(&["mapped.example.org. 3600 A 10.0.0.3"]),
        ),
        ("mapped.example.org.", AAAA, Want::Answer(&[])),
        // The IPv6 zone is dropped.
        (
            "link.example.org.",
            AAAA,
            Want::Answer(&["link.example.org. 3600 AAAA fe80::1"]),
        ),
        // Unknown names in the zone: SERVFAIL (CoreDNS has no SOA to say NXDOMAIN with).
        ("nope.example.org.", A, Want::Rcode(ResponseCode::ServFail)),
        ("nope.example.org.", MX, Want::Rcode(ResponseCode::ServFail)),
        (
            "broken.example.org.",
            A,
            Want::Rcode(ResponseCode::ServFail),
        ),
        // Names outside the zones go on; entries for them were never loaded.
        ("outside.example.net.", A, Want::Next),
        ("example.com.", A, Want::Next),
        // Reverse names: generated from the entries, whatever the zones.
        (
            "1.0.0.10.in-addr.arpa.",
            PTR,
            Want::Answer(&[
                "1.0.0.10.in-addr.arpa. 3600 PTR example.org.",
                "1.0.0.10.in-addr.arpa. 3600 PTR alias.example.org.",
            ]),
        ),
        (
            "2.0.0.10.in-addr.arpa.",
            PTR,
            Want::Answer(&["2.0.0.10.in-addr.arpa. 3600 PTR example.org."]),
        ),
        (
            "3.0.0.10.in-addr.arpa.",
            PTR,
            Want::Answer(&["3.0.0.10.in-addr.arpa. 3600 PTR mapped.example.org."]),
        ),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            PTR,
            Want::Answer(&[
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 3600 PTR example.org.",
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 3600 PTR v6only.example.org.",
            ]),
        ),
        // The ip6.arpa name of an IPv4-mapped address finds the IPv4 entry.
        (
            "3.0.0.0.0.0.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
            PTR,
            Want::Answer(&[
                "3.0.0.0.0.0.a.0.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 3600 PTR mapped.example.org.",
            ]),
        ),
        // Unknown addresses go on even without fallthrough, in a zone of the plugin or not.
        ("9.0.0.10.in-addr.arpa.", PTR, Want::Next),
        (
            "1.0.0.10.in-addr.arpa.",
            A,
            Want::Rcode(ResponseCode::ServFail),
        ),
        ("0.10.in-addr.arpa.", PTR, Want::Next),
        // A PTR question for a forward name is not a reverse name: it goes on.
        ("example.org.", PTR, Want::Next),
    ];
    for (qname, qtype, want) in cases {
        check(&p, qname, *qtype, want);
    }
}

#[test]
fn fallthrough_passes_unknown_names_only() {
    use RecordType::*;
    let p = build(
        "example.org {
    hosts /nonexistent/ferrodns/hosts {
        10.0.0.1 a.example.org
        2001:db8::1 six.example.org
        fallthrough
    }
}",
    )
    .unwrap();
    check(&p, "b.example.org.", A, &Want::Next);
    check(&p, "b.example.org.", MX, &Want::Next);
    // Known names never fall through, not even for the family they lack.
    check(&p, "a.example.org.", AAAA, &Want::Answer(&[]));
    check(&p, "six.example.org.", A, &Want::Answer(&[]));
    check(
        &p,
        "a.example.org.",
        A,
        &Want::Answer(&["a.example.org. 3600 A 10.0.0.1"]),
    );

    // fallthrough limited to some zones.
    let p = build(
        ". {
    hosts /nonexistent/ferrodns/hosts {
        10.0.0.1 a.example.org
        fallthrough example.net
    }
}",
    )
    .unwrap();
    check(&p, "b.example.net.", A, &Want::Next);
    check(
        &p,
        "b.example.org.",
        A,
        &Want::Rcode(ResponseCode::ServFail),
    );
}

#[test]
fn ttl_and_no_reverse() {
    use RecordType::*;
    let p = build(
        ". {
    hosts /nonexistent/ferrodns/hosts {
        ttl 60
        no_reverse
        10.0.0.1 a.example.org
    }
}",
    )
    .unwrap();
    check(
        &p,
        "a.example.org.",
        A,
        &Want::Answer(&["a.example.org. 60 A 10.0.0.1"]),
    );
    check(&p, "1.0.0.10.in-addr.arpa.", PTR, &Want::Next);

    let p = build(
        ". {
    hosts /nonexistent/ferrodns/hosts {
        ttl 300
        10.0.0.1 a.example.org
    }
}",
    )
    .unwrap();
    check(
        &p,
        "1.0.0.10.in-addr.arpa.",
        PTR,
        &Want::Answer(&["1.0.0.10.in-addr.arpa. 300 PTR a.example.org."]),
    );
}

fn temp_file(tag: &str, text: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ferrodns-hosts-unit-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hosts");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn file_and_inline_together_and_metrics() {
    use RecordType::*;
    let path = temp_file(
        "merge",
        "# a hosts file\n10.0.0.1 a.example.org b.example.org\n10.0.0.9 a.example.org\n",
    );
    let shared = Shared::new(Arc::new(Metrics::new()));
    let p = build_with(
        &format!(
            ". {{\n    hosts {} {{\n        10.0.0.2 a.example.org\n        10.0.0.1 a.example.org\n    }}\n}}",
            path.display()
        ),
        &shared,
    )
    .unwrap();
    // File entries first, then inline ones; the address listed twice is answered once.
    check(
        &p,
        "a.example.org.",
        A,
        &Want::Answer(&[
            "a.example.org. 3600 A 10.0.0.1",
            "a.example.org. 3600 A 10.0.0.9",
            "a.example.org. 3600 A 10.0.0.2",
        ]),
    );
    let text = shared.metrics.encode();
    // File: 3 forward + 3 reverse; inline: 2 + 2, counted as CoreDNS counts (duplicates too).
    let want = format!(
        "coredns_hosts_entries{{hostsfile=\"{}\"}} 10",
        path.display()
    );
    assert!(text.contains(&want), "{text}");
    assert!(
        text.contains("coredns_hosts_reload_timestamp_seconds "),
        "{text}"
    );
    assert!(text.contains(
        "# HELP coredns_hosts_entries The combined number of entries in hosts and Corefile."
    ));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn a_zone_argument_limits_what_is_loaded_and_answered() {
    use RecordType::*;
    let path = temp_file("zones", "10.0.0.1 a.example.org a.example.net\n");
    let p = build(&format!(
        ". {{\n    hosts {} example.net\n}}",
        path.display()
    ))
    .unwrap();
    check(
        &p,
        "a.example.net.",
        A,
        &Want::Answer(&["a.example.net. 3600 A 10.0.0.1"]),
    );
    check(&p, "a.example.org.", A, &Want::Next);
    check(
        &p,
        "1.0.0.10.in-addr.arpa.",
        PTR,
        &Want::Answer(&["1.0.0.10.in-addr.arpa. 3600 PTR a.example.net."]),
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn setup_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "hosts {\n ttl\n}",
            "Corefile:3 - Error during parsing: ttl needs a time in second",
        ),
        (
            "hosts {\n ttl abc\n}",
            "Corefile:3 - Error during parsing: ttl needs a number of second",
        ),
        (
            "hosts {\n ttl 0\n}",
            "Corefile:3 - Error during parsing: ttl provided is invalid",
        ),
        (
            "hosts {\n ttl 65536\n}",
            "Corefile:3 - Error during parsing: ttl provided is invalid",
        ),
        (
            "hosts {\n reload\n}",
            "Corefile:3 - Error during parsing: reload needs a duration (zero seconds to disable)",
        ),
        (
            "hosts {\n reload 5\n}",
            "Corefile:3 - Error during parsing: invalid duration for reload '5'",
        ),
        (
            "hosts {\n reload -5s\n}",
            "Corefile:3 - Error during parsing: invalid negative duration for reload '-5s'",
        ),
        (
            "hosts {\n fallthrough\n 10.0.0.1 a.example.org\n}",
            "Corefile:4 - Error during parsing: unknown property '10.0.0.1'",
        ),
        (
            "hosts\n hosts",
            "Corefile:3 - Error during parsing: plugin/hosts: this plugin can only be used once per Server Block",
        ),
    ];
    for (body, want) in cases {
        let corefile = format!(". {{\n {body}\n}}\n");
        match build(&corefile) {
            Ok(_) => panic!("{body:?} was accepted"),
            Err(e) => assert_eq!(&e, want, "{body:?}"),
        }
    }
    for ok in [
        "hosts {\n reload 0\n}",
        "hosts {\n reload 1.5h\n}",
        "hosts {\n ttl 65535\n no_reverse\n}",
        "hosts /nonexistent/ferrodns/hosts example.org example.net",
    ] {
        assert!(build(&format!(". {{\n {ok}\n}}\n")).is_ok(), "{ok}");
    }
}

#[test]
fn reload_swaps_the_table_and_stops_with_the_plugin() {
    let path = temp_file("reload", "10.0.0.1 a.example.org\n");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let p = build(&format!(
            ". {{\n    hosts {} {{\n        reload 20ms\n    }}\n}}",
            path.display()
        ))
        .unwrap();
        check(
            &p,
            "a.example.org.",
            RecordType::A,
            &Want::Answer(&["a.example.org. 3600 A 10.0.0.1"]),
        );
        std::fs::write(&path, "10.0.0.2 a.example.org\n10.0.0.3 b.example.org\n").unwrap();
        let mut seen = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let (Want::Answer(_), a) = got(ask(&p, "b.example.org.", RecordType::A))
                && a == ["b.example.org. 3600 A 10.0.0.3"]
            {
                seen = true;
                break;
            }
        }
        assert!(seen, "the changed file was not picked up");
        check(
            &p,
            "a.example.org.",
            RecordType::A,
            &Want::Answer(&["a.example.org. 3600 A 10.0.0.2"]),
        );
        // A deleted file leaves the last data in place (CoreDNS keeps it too).
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        check(
            &p,
            "b.example.org.",
            RecordType::A,
            &Want::Answer(&["b.example.org. 3600 A 10.0.0.3"]),
        );

        let before = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(before, 1, "one reload task");
        drop(p);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let after = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(after, 0, "the reload task ended with the plugin");
    });
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn reload_zero_reads_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let path = temp_file("noreload", "10.0.0.1 a.example.org\n");
        let p = build(&format!(
            ". {{\n    hosts {} {{\n        reload 0\n    }}\n}}",
            path.display()
        ))
        .unwrap();
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            0
        );
        check(
            &p,
            "a.example.org.",
            RecordType::A,
            &Want::Answer(&["a.example.org. 3600 A 10.0.0.1"]),
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    });
}

#[test]
fn a_huge_reverse_set_is_cut_to_what_can_be_sent() {
    // A block list: many names on one address.
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!("0.0.0.0 ad{i}.example.com\n"));
    }
    let path = temp_file("blocklist", &text);
    let started = std::time::Instant::now();
    let p = build(&format!(". {{\n    hosts {}\n}}", path.display())).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "load is linear");
    check(
        &p,
        "ad19999.example.com.",
        RecordType::A,
        &Want::Answer(&["ad19999.example.com. 3600 A 0.0.0.0"]),
    );
    let Ok(r) = ask(&p, "0.0.0.0.in-addr.arpa.", RecordType::PTR) else {
        panic!("no answer");
    };
    // A UDP question without EDNS: 512 octets at most, so at most 512 / 12 + 1 records built;
    // the server truncates the rest and sets TC.
    assert_eq!(r.message().answers.len(), 512 / 12 + 1);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
