//! `dualstack` end to end: the real binary with `hosts` as the data (and `dns64`, `acl` where a
//! case needs them), queried over UDP and TCP from 127.0.0.1, 127.0.0.2 and ::1.
//!
//! An upstream that answers SERVFAIL for AAAA needs `forward`, which this branch does not
//! have; `acl ... block type AAAA` stands in for a failing AAAA answer here (REFUSED), and the
//! SERVFAIL, timeout and NXDOMAIN cases are covered by the unit tests in
//! `src/plugins/dualstack/tests.rs`.

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const HOSTS: &str = "
        192.0.2.33 v4only.example.org
        192.0.2.44 dual.example.org
        2001:db8::44 dual.example.org
        2001:db8::55 v6only.example.org";

fn corefile(plugins: &str) -> String {
    format!(".:PORT {{\n{plugins}\n    hosts {{{HOSTS}\n    }}\n}}\n")
}

#[test]
fn aaaa_failure_becomes_nodata_when_a_exists() {
    // acl refuses every AAAA question; dualstack's A question passes.
    let acl = "    acl {\n        block type AAAA\n    }";
    let with = Server::start(&corefile(&format!(
        "    dualstack {{\n        aaaa_failure nodata\n    }}\n{acl}"
    )));
    let without = Server::start(&corefile(acl));
    for proto in ["udp", "tcp"] {
        for name in ["v4only.example.org.", "dual.example.org."] {
            let m = ask_from(&without, "127.0.0.1", proto, name, RecordType::AAAA);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::Refused,
                "{proto} {name}"
            );

            let m = ask_from(&with, "127.0.0.1", proto, name, RecordType::AAAA);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{proto} {name}"
            );
            assert!(
                m.answers.is_empty(),
                "{proto} {name}: {:?}",
                answer_lines(&m)
            );
        }
        // No A record (hosts knows only an AAAA): the failure stands.
        let m = ask_from(
            &with,
            "127.0.0.1",
            proto,
            "v6only.example.org.",
            RecordType::AAAA,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{proto}");
        // A name hosts does not know: its A question fails too (hosts answers SERVFAIL, having
        // no SOA to say NXDOMAIN with), so there is nothing to fall back to.
        let m = ask_from(
            &with,
            "127.0.0.1",
            proto,
            "unknown.example.org.",
            RecordType::AAAA,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{proto}");
        // A questions are untouched.
        let m = ask_from(
            &with,
            "127.0.0.1",
            proto,
            "dual.example.org.",
            RecordType::A,
        );
        assert_eq!(
            answer_lines(&m),
            ["dual.example.org. 3600 A 192.0.2.44"],
            "{proto}"
        );
    }
}

#[test]
fn filter_aaaa_for_listed_clients() {
    let srv = Server::start(&corefile(
        "    dualstack {\n        filter_aaaa 127.0.0.2/32\n    }",
    ));
    for proto in ["udp", "tcp"] {
        // Listed client, name with both families: AAAA withheld.
        let m = ask_from(
            &srv,
            "127.0.0.2",
            proto,
            "dual.example.org.",
            RecordType::AAAA,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(m.answers.is_empty(), "{proto}: {:?}", answer_lines(&m));
        // Listed client, IPv6-only name: the AAAA is its only way in, so it stays.
        let m = ask_from(
            &srv,
            "127.0.0.2",
            proto,
            "v6only.example.org.",
            RecordType::AAAA,
        );
        assert_eq!(
            answer_lines(&m),
            ["v6only.example.org. 3600 AAAA 2001:db8::55"],
            "{proto}"
        );
        // Other clients see everything.
        for client in ["127.0.0.1", "::1"] {
            let m = ask_from(&srv, client, proto, "dual.example.org.", RecordType::AAAA);
            assert_eq!(
                answer_lines(&m),
                ["dual.example.org. 3600 AAAA 2001:db8::44"],
                "{client} {proto}"
            );
        }
    }
}

#[test]
fn filter_a_for_ipv6_only_clients_behind_dns64() {
    let srv = Server::start(&corefile(
        "    dualstack {\n        filter_a ::1\n    }\n    dns64",
    ));
    for proto in ["udp", "tcp"] {
        // The NAT64 incident: an IPv6-only client must not get the IPv4 address of a name
        // that dns64 gives an AAAA for, nor of one that has its own AAAA.
        for name in ["v4only.example.org.", "dual.example.org."] {
            let m = ask_from(&srv, "::1", proto, name, RecordType::A);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{proto} {name}"
            );
            assert!(
                m.answers.is_empty(),
                "{proto} {name}: {:?}",
                answer_lines(&m)
            );
        }
        // Its AAAA question gets the synthesized address.
        let m = ask_from(&srv, "::1", proto, "v4only.example.org.", RecordType::AAAA);
        assert_eq!(
            answer_lines(&m),
            ["v4only.example.org. 600 AAAA 64:ff9b::c000:221"],
            "{proto}"
        );
        // An IPv4 client keeps its A records.
        let m = ask_from(
            &srv,
            "127.0.0.1",
            proto,
            "v4only.example.org.",
            RecordType::A,
        );
        assert_eq!(
            answer_lines(&m),
            ["v4only.example.org. 3600 A 192.0.2.33"],
            "{proto}"
        );
    }
}

#[test]
fn setup_error_stops_start_up() {
    let failed = run_to_exit(&corefile("    dualstack"), &[]);
    let text = format!("{}{}", failed.stdout, failed.stderr);
    assert!(!failed.status.success());
    assert!(
        text.contains("plugin/dualstack: ") && text.contains("no policy configured"),
        "{text}"
    );
}

/// GET `path` from 127.0.0.1:`port`, retrying until the endpoint is up: the body.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut raw = String::new();
            let _ = s.read_to_string(&mut raw);
            if let Some((_, body)) = raw.split_once("\r\n\r\n") {
                return body.to_string();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no metrics on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_of_both_plugins() {
    let mport = free_port();
    let srv = Server::start(&corefile(&format!(
        "    prometheus 127.0.0.1:{mport}\n    dualstack {{\n        filter_a ::1\n        filter_aaaa 127.0.0.2\n    }}\n    dns64"
    )));
    // dns64 synthesizes once for the AAAA question and once for dualstack's AAAA check behind
    // the A question; dualstack empties one A and one AAAA answer.
    ask_from(&srv, "::1", "udp", "v4only.example.org.", RecordType::AAAA);
    ask_from(&srv, "::1", "tcp", "v4only.example.org.", RecordType::A);
    ask_from(
        &srv,
        "127.0.0.2",
        "udp",
        "dual.example.org.",
        RecordType::AAAA,
    );
    let body = http_get(mport, "/metrics");
    let server = format!("server=\"dns://:{}\"", srv.port);
    for line in [
        format!("coredns_dns64_requests_translated_total{{{server}}} 2"),
        format!("coredns_dualstack_filtered_total{{{server},type=\"A\"}} 1"),
        format!("coredns_dualstack_filtered_total{{{server},type=\"AAAA\"}} 1"),
    ] {
        assert!(body.contains(&line), "{line}\n{body}");
    }
}

#[test]
fn dig_sees_the_policies() {
    if !require("dig") {
        return;
    }
    let srv = Server::start(&corefile(
        "    dualstack {\n        filter_a ::1\n    }\n    dns64",
    ));
    let dig = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args([
                "@::1",
                "-p",
                &srv.port.to_string(),
                "+short",
                "+tries=1",
                "+time=2",
            ])
            .args(args)
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(dig(&["v4only.example.org", "AAAA"]), "64:ff9b::c000:221");
    assert_eq!(dig(&["v4only.example.org", "A"]), "");
    assert_eq!(dig(&["+tcp", "v4only.example.org", "A"]), "");
    // The reverse of the synthesized address, as dig -x writes it.
    assert_eq!(
        dig(&["-x", "64:ff9b::c000:221"]),
        "33.2.0.192.in-addr.arpa.\nv4only.example.org."
    );
}
