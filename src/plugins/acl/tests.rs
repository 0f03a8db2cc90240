use super::*;
use crate::plugins::whoami::testkit::{self, Answer, ask};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;

#[derive(Debug, PartialEq)]
enum Got {
    /// Passed on: the stub below answers NXDOMAIN.
    Next,
    Blocked,
    Filtered,
    Dropped,
}

fn ede(m: &Message) -> Option<Vec<u8>> {
    m.edns
        .as_ref()?
        .options()
        .options
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Unknown(EDE_OPTION, data) => Some(data.clone()),
            _ => None,
        })
}

fn outcome(plugin: &dyn Plugin, name: &str, qtype: RecordType, from: &str) -> Got {
    let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::NXDomain))];
    let req = ask(name, qtype).from(from).request();
    match testkit::run(plugin, &req, &rest) {
        Err(f) if !f.reply => Got::Dropped,
        Err(f) => panic!("unexpected failure {}", f.rcode),
        Ok(resp) => {
            let m = resp.into_message();
            assert!(m.answers.is_empty() || m.metadata.response_code == ResponseCode::NXDomain);
            match (m.metadata.response_code, ede(&m)) {
                (ResponseCode::NXDomain, None) => Got::Next,
                (ResponseCode::Refused, Some(code)) if code == [0, 15] => Got::Blocked,
                (ResponseCode::NoError, Some(code)) if code == [0, 17] => Got::Filtered,
                other => panic!("unexpected answer {other:?}"),
            }
        }
    }
}

const V4: &str = "192.168.1.2:5300";

#[test]
fn rules_in_order_first_match_wins() {
    use Got::*;
    use RecordType::{A, AAAA, MX, TXT};
    let cases: &[(&str, &str, RecordType, &str, Got)] = &[
        // block by type and network
        (
            "block type A net 192.168.0.0/16",
            "www.example.org.",
            A,
            V4,
            Blocked,
        ),
        (
            "block type A net 192.168.0.0/16",
            "www.example.org.",
            AAAA,
            V4,
            Next,
        ),
        (
            "block type A net 192.168.0.0/16",
            "www.example.org.",
            A,
            "10.1.0.2:53",
            Next,
        ),
        (
            "block type * net 192.168.0.0/16",
            "www.example.org.",
            MX,
            V4,
            Blocked,
        ),
        (
            "block type A net *",
            "www.example.org.",
            A,
            "10.9.9.9:53",
            Blocked,
        ),
        (
            "block type A AAAA",
            "x.example.org.",
            AAAA,
            "[2001:db8::1]:53",
            Blocked,
        ),
        ("block net 192.168.1.2", "x.example.org.", TXT, V4, Blocked),
        ("block net 192.168.1.3", "x.example.org.", TXT, V4, Next),
        (
            "BLOCK TYPE A NET 192.168.1.2",
            "x.example.org.",
            A,
            V4,
            Blocked,
        ),
        // IPv6 clients and networks
        (
            "block net 2001:db8::/32",
            "x.example.org.",
            A,
            "[2001:db8::53]:53",
            Blocked,
        ),
        (
            "block net 2001:db8::/32",
            "x.example.org.",
            A,
            "[2001:db9::53]:53",
            Next,
        ),
        (
            "block net 2001:db8::1",
            "x.example.org.",
            A,
            "[2001:db8::1]:53",
            Blocked,
        ),
        // An IPv4 client on a dual-stack socket matches IPv4 networks.
        (
            "block net 192.168.0.0/16",
            "x.example.org.",
            A,
            "[::ffff:192.168.7.7]:53",
            Blocked,
        ),
        (
            "block net 0.0.0.0/0",
            "x.example.org.",
            A,
            "[2001:db8::1]:53",
            Next,
        ),
        // No `net` matches IPv6 clients too.
        ("block", "x.example.org.", A, "[2001:db8::1]:53", Blocked),
        // filter and drop
        (
            "filter type A net 192.168.0.0/16",
            "x.example.org.",
            A,
            V4,
            Filtered,
        ),
        (
            "filter type A net 192.168.0.0/16",
            "x.example.org.",
            A,
            "192.167.0.2:53",
            Next,
        ),
        ("drop net 192.168.0.0/16", "x.example.org.", A, V4, Dropped),
        (
            "drop net 192.168.0.0/16",
            "x.example.org.",
            A,
            "10.0.0.1:53",
            Next,
        ),
        ("drop", "x.example.org.", A, "[::1]:53", Dropped),
        // first matching line wins; allow ends the check
        (
            "allow net 192.168.1.0/24\nblock net 192.168.0.0/16",
            "x.example.org.",
            A,
            V4,
            Next,
        ),
        (
            "allow net 192.168.1.0/24\nblock net 192.168.0.0/16",
            "x.example.org.",
            A,
            "192.168.2.1:53",
            Blocked,
        ),
        (
            "allow net 192.168.0.0/24 192.168.1.0/24\nblock",
            "x.example.org.",
            A,
            V4,
            Next,
        ),
        (
            "allow net 192.168.0.0/24 192.168.1.0/24\nblock",
            "x.example.org.",
            A,
            "10.0.0.1:53",
            Blocked,
        ),
        ("allow type A\nfilter", "x.example.org.", A, V4, Next),
        ("allow type A\nfilter", "x.example.org.", MX, V4, Filtered),
        ("allow type None\nblock", "x.example.org.", MX, V4, Next),
        // several sections, sections in any order, repeated
        (
            "block net 10.0.0.0/8 type MX net 192.168.0.0/16",
            "x.example.org.",
            MX,
            V4,
            Blocked,
        ),
        (
            "block net 10.0.0.0/8 type MX net 192.168.0.0/16",
            "x.example.org.",
            A,
            V4,
            Next,
        ),
        ("block type MX type A", "x.example.org.", A, V4, Blocked),
    ];
    for (lines, name, qtype, from, want) in cases {
        let corefile = format!("example.org {{\n acl {{\n{lines}\n }}\n}}\n");
        let built = testkit::setup(setup, "acl", &corefile).expect("setup");
        let plugin = built.handler.expect("handler");
        let got = outcome(plugin.as_ref(), name, *qtype, from);
        assert_eq!(&got, want, "{lines:?} {name} {qtype} from {from}");
    }
}

#[test]
fn zones_scope_the_rules() {
    use Got::*;
    let corefile = "example.org {\n acl a.example.org {\n  block net 192.168.1.0/24\n }\n acl b.example.org {\n  filter net 192.168.1.0/24\n }\n}\n";
    let built = testkit::setup(setup, "acl", corefile).expect("setup");
    let plugin = built.handler.expect("handler");
    for (name, want) in [
        ("a.example.org.", Blocked),
        ("www.A.example.org.", Blocked),
        ("b.example.org.", Filtered),
        ("c.example.org.", Next),
        ("example.org.", Next),
    ] {
        assert_eq!(
            outcome(plugin.as_ref(), name, RecordType::A, V4),
            want,
            "{name}"
        );
    }
    // A later rule still applies when an earlier rule's zone matched but none of its lines did.
    let corefile = "example.org {\n acl {\n  block net 10.0.0.0/8\n }\n acl {\n  drop net 192.168.0.0/16\n }\n}\n";
    let plugin = testkit::setup(setup, "acl", corefile)
        .unwrap()
        .handler
        .unwrap();
    assert_eq!(
        outcome(plugin.as_ref(), "x.example.org.", RecordType::A, V4),
        Dropped
    );
    // ... but `allow` stops the search for good.
    let corefile = "example.org {\n acl {\n  allow net 192.168.0.0/16\n }\n acl {\n  drop\n }\n}\n";
    let plugin = testkit::setup(setup, "acl", corefile)
        .unwrap()
        .handler
        .unwrap();
    assert_eq!(
        outcome(plugin.as_ref(), "x.example.org.", RecordType::A, V4),
        Next
    );
}

#[test]
fn counts_with_coredns_names_and_labels() {
    let corefile = "example.org {\n acl {\n  block type A net 192.168.0.0/16\n  filter type MX\n  drop type TXT\n }\n}\n";
    let built = testkit::setup(setup, "acl", corefile).expect("setup");
    let plugin = built.handler.expect("handler");
    for (qtype, n) in [
        (RecordType::A, 2),
        (RecordType::MX, 1),
        (RecordType::TXT, 3),
        (RecordType::AAAA, 4),
    ] {
        for _ in 0..n {
            outcome(plugin.as_ref(), "x.example.org.", qtype, V4);
        }
    }
    let text = built.shared.metrics.encode();
    for line in [
        "coredns_acl_blocked_requests_total{server=\"\",view=\"\",zone=\"example.org.\"} 2",
        "coredns_acl_filtered_requests_total{server=\"\",view=\"\",zone=\"example.org.\"} 1",
        "coredns_acl_dropped_requests_total{server=\"\",view=\"\",zone=\"example.org.\"} 3",
        "coredns_acl_allowed_requests_total{server=\"\",view=\"\"} 4",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}

#[test]
fn setup_errors_read_as_coredns() {
    let pre = "plugin/acl: Corefile:3 - Error during parsing: ";
    for (line, want) in [
        ("block type A net 192.168.0.0/16", None),
        (
            "block type A file x.txt",
            Some("unexpected token \"file\"; expect legal QTYPE"),
        ),
        (
            "block A net 192.168.0.0/16",
            Some("unexpected token \"A\"; expect 'type | net'"),
        ),
        (
            "block type net 192.168.0.0/16",
            Some("no token specified in \"type\" section"),
        ),
        (
            "block type A net",
            Some("no token specified in \"net\" section"),
        ),
        (
            "block type ABC net 192.168.0.0/16",
            Some("unexpected token \"ABC\"; expect legal QTYPE"),
        ),
        (
            "block type a",
            Some("unexpected token \"a\"; expect legal QTYPE"),
        ),
        (
            "blck type A",
            Some("unexpected token \"blck\"; expect 'allow', 'block', 'filter' or 'drop'"),
        ),
        (
            "block net 192.168.0/16",
            Some("illegal CIDR notation \"192.168.0/16\""),
        ),
        (
            "block net 192.168.0.0/33",
            Some("illegal CIDR notation \"192.168.0.0/33\""),
        ),
        (
            "block net 300.1.1.1",
            Some("illegal CIDR notation \"300.1.1.1/32\""),
        ),
        (
            "block net zz::1",
            Some("illegal CIDR notation \"zz::1/128\""),
        ),
        // Nothing after `*` is looked at, as in CoreDNS.
        ("block type * ABC", None),
        ("block net * garbage", None),
    ] {
        let corefile = format!(". {{\n acl {{\n  {line}\n }}\n}}\n");
        let got = testkit::setup(setup, "acl", &corefile).map(|_| ());
        assert_eq!(
            got,
            want.map_or(Ok(()), |w| Err(format!("{pre}{w}"))),
            "{line}"
        );
    }
}

#[test]
fn no_rules_allow_everything() {
    let built = testkit::setup(setup, "acl", ". {\n acl\n}\n").expect("setup");
    let plugin = built.handler.expect("handler");
    assert_eq!(
        outcome(plugin.as_ref(), "example.org.", RecordType::A, V4),
        Got::Next
    );
}
