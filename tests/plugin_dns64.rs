//! `dns64` end to end: the real binary with `hosts` as the data, queried over UDP and TCP from
//! an IPv4 (127.0.0.1) and an IPv6 (::1) client.

mod common;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const HOSTS: &str = "
        192.0.2.33 v4only.example.org
        192.0.2.44 dual.example.org
        2001:db8::44 dual.example.org
        2001:db8::55 v6only.example.org
        ::ffff:192.0.2.66 mapped.example.org
        192.0.2.66 mapped.example.org";

fn corefile(dns64: &str) -> String {
    format!(".:PORT {{\n    {dns64}\n    hosts {{{HOSTS}\n    }}\n}}\n")
}

#[test]
fn synthesizes_for_ipv6_clients_only() {
    let srv = Server::start(&corefile("dns64"));
    for proto in ["udp", "tcp"] {
        // An IPv4-only name: synthesized with the well-known prefix. hosts sends no SOA, so
        // the TTL is min(3600, 600).
        let m = ask_from(&srv, "::1", proto, "v4only.example.org.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(
            answer_lines(&m),
            ["v4only.example.org. 600 AAAA 64:ff9b::c000:221"],
            "{proto}"
        );
        assert!(!m.metadata.authentic_data, "{proto}");

        // The same question over IPv4: untouched NODATA.
        let m = ask_from(
            &srv,
            "127.0.0.1",
            proto,
            "v4only.example.org.",
            RecordType::AAAA,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(m.answers.is_empty(), "{proto}: {:?}", answer_lines(&m));

        // A name with its own AAAA keeps it.
        let m = ask_from(&srv, "::1", proto, "dual.example.org.", RecordType::AAAA);
        assert_eq!(
            answer_lines(&m),
            ["dual.example.org. 3600 AAAA 2001:db8::44"],
            "{proto}"
        );

        // Only an IPv4-mapped AAAA: treated as none (RFC 6147 5.1.4).
        let m = ask_from(&srv, "::1", proto, "mapped.example.org.", RecordType::AAAA);
        assert_eq!(
            answer_lines(&m),
            ["mapped.example.org. 600 AAAA 64:ff9b::c000:242"],
            "{proto}"
        );

        // A name hosts does not know: SERVFAIL for AAAA counts as empty, but the A question
        // fails too, so the SERVFAIL stands.
        let m = ask_from(&srv, "::1", proto, "unknown.example.org.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{proto}");

        // A questions are never touched.
        let m = ask_from(&srv, "::1", proto, "v4only.example.org.", RecordType::A);
        assert_eq!(
            answer_lines(&m),
            ["v4only.example.org. 3600 A 192.0.2.33"],
            "{proto}"
        );
    }
}

#[test]
fn reverse_and_prefix_discovery() {
    let srv = Server::start(&corefile("dns64"));
    let reverse = "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.";
    for (client, proto) in [("::1", "udp"), ("::1", "tcp"), ("127.0.0.1", "udp")] {
        let m = ask_from(&srv, client, proto, reverse, RecordType::PTR);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(
            answer_lines(&m),
            [
                format!("{reverse} 600 CNAME 33.2.0.192.in-addr.arpa."),
                "33.2.0.192.in-addr.arpa. 3600 PTR v4only.example.org.".to_string()
            ],
            "{client} {proto}"
        );

        let m = ask_from(&srv, client, proto, "ipv4only.arpa.", RecordType::A);
        assert_eq!(
            answer_lines(&m),
            [
                "ipv4only.arpa. 600 A 192.0.0.170",
                "ipv4only.arpa. 600 A 192.0.0.171"
            ],
            "{client} {proto}"
        );
    }
    for proto in ["udp", "tcp"] {
        let m = ask_from(&srv, "::1", proto, "ipv4only.arpa.", RecordType::AAAA);
        assert_eq!(
            answer_lines(&m),
            [
                "ipv4only.arpa. 600 AAAA 64:ff9b::c000:aa",
                "ipv4only.arpa. 600 AAAA 64:ff9b::c000:ab"
            ],
            "{proto}"
        );
    }
}

#[test]
fn custom_prefix_and_allow_ipv4() {
    let srv = Server::start(&corefile(
        "dns64 {\n        prefix 2001:db8:122::/48\n        allow_ipv4\n    }",
    ));
    for (client, proto) in [("127.0.0.1", "udp"), ("127.0.0.1", "tcp"), ("::1", "udp")] {
        let m = ask_from(&srv, client, proto, "v4only.example.org.", RecordType::AAAA);
        assert_eq!(
            answer_lines(&m),
            ["v4only.example.org. 600 AAAA 2001:db8:122:c000:2:2100::"],
            "{client} {proto}"
        );
        // The reverse name of that address (a /48 splits the IPv4 address around the
        // u-octet) leads back to the hosts PTR.
        let reverse = "0.0.0.0.0.0.0.0.0.0.1.2.2.0.0.0.0.0.0.c.2.2.1.0.8.b.d.0.1.0.0.2.ip6.arpa.";
        let m = ask_from(&srv, client, proto, reverse, RecordType::PTR);
        assert_eq!(
            answer_lines(&m).last().map(String::as_str),
            Some("33.2.0.192.in-addr.arpa. 3600 PTR v4only.example.org."),
            "{client} {proto}"
        );
    }
}

#[test]
fn bad_prefix_stops_start_up() {
    let failed = run_to_exit(&corefile("dns64 64:ff9b::/72"), &[]);
    assert!(
        failed
            .stderr
            .contains("invalid prefix length \"64:ff9b::/72\"")
            || failed
                .stdout
                .contains("invalid prefix length \"64:ff9b::/72\""),
        "{}\n{}",
        failed.stdout,
        failed.stderr
    );
    assert!(!failed.status.success());
}
