//! Interoperability with Debian's real DNS clients: BIND's `dig` and Knot's `kdig`, over UDP
//! and TCP. The test script installs both; without them these tests say SKIPPED.

mod common;

use std::process::Command;

use common::*;

const COREFILE: &str = ".:PORT {\n    whoami\n}\n";

fn run(cmd: &str, args: &[String]) -> String {
    let out = Command::new(cmd).args(args).output().expect("run client");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn dig_over_udp_and_tcp() {
    if !require("dig") {
        return;
    }
    let srv = Server::start(COREFILE);
    let port = srv.port.to_string();
    for transport in ["+notcp", "+tcp"] {
        let out = run(
            "dig",
            &args(&[
                "@127.0.0.1",
                "-p",
                &port,
                "example.org",
                "A",
                transport,
                "+tries=1",
                "+time=3",
            ]),
        );
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("flags: qr aa rd;"), "{out}");
        assert!(out.contains("example.org.\t\t0\tIN\tA\t127.0.0.1"), "{out}");
        let proto = if transport == "+tcp" { "_tcp" } else { "_udp" };
        assert!(out.contains(&format!("{proto}.example.org.")), "{out}");
    }
}

#[test]
fn dig_sees_edns_and_refusals() {
    if !require("dig") {
        return;
    }
    let srv = Server::start("example.org:PORT {\n    whoami\n}\n");
    let port = srv.port.to_string();
    let out = run(
        "dig",
        &args(&[
            "@127.0.0.1",
            "-p",
            &port,
            "example.org",
            "+edns=0",
            "+tries=1",
        ]),
    );
    assert!(out.contains("EDNS: version: 0"), "{out}");
    let out = run(
        "dig",
        &args(&["@127.0.0.1", "-p", &port, "example.net", "+tries=1"]),
    );
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = run(
        "dig",
        &args(&[
            "@127.0.0.1",
            "-p",
            &port,
            "example.org",
            "+edns=1",
            "+noednsnegotiation",
            "+tries=1",
        ]),
    );
    assert!(out.contains("status: BADVERS"), "{out}");
}

#[test]
fn kdig_over_udp_and_tcp() {
    if !require("kdig") {
        return;
    }
    let srv = Server::start(COREFILE);
    let port = srv.port.to_string();
    for transport in ["+notcp", "+tcp"] {
        let out = run(
            "kdig",
            &args(&["@127.0.0.1", "-p", &port, "example.org", "A", transport]),
        );
        assert!(out.contains("status: NOERROR"), "{out}");
        assert!(out.contains("127.0.0.1"), "{out}");
    }
}

#[test]
fn dig_edns_sizes_opcodes_and_classes() {
    if !require("dig") {
        return;
    }
    let srv = Server::start(COREFILE);
    let port = srv.port.to_string();
    let dig = |extra: &[&str]| {
        let mut a = args(&["@127.0.0.1", "-p", &port, "+tries=1", "+time=3"]);
        a.extend(extra.iter().map(|s| s.to_string()));
        run("dig", &a)
    };
    for size in ["512", "1232", "4096"] {
        for transport in ["+notcp", "+tcp"] {
            let out = dig(&["example.org", &format!("+bufsize={size}"), transport]);
            assert!(out.contains("status: NOERROR"), "{out}");
            // The client's buffer size comes back in the OPT record, as CoreDNS echoes it.
            assert!(
                out.contains(&format!("; EDNS: version: 0, flags:; udp: {size}")),
                "{out}"
            );
        }
    }
    let out = dig(&["example.org", "+noedns"]);
    assert!(!out.contains("EDNS:"), "{out}");
    let out = dig(&["example.org", "+opcode=status", "+noedns"]);
    assert!(out.contains("opcode: STATUS, status: NOTIMP"), "{out}");
    let out = dig(&["version.bind", "TXT", "CH"]);
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(&["example.org", "+dnssec"]);
    assert!(out.contains("flags: do;"), "DO bit mirrored: {out}");
}

#[test]
fn kdig_edns_sizes() {
    if !require("kdig") {
        return;
    }
    let srv = Server::start(COREFILE);
    let port = srv.port.to_string();
    for size in ["1232", "4096"] {
        for transport in ["+notcp", "+tcp"] {
            let out = run(
                "kdig",
                &args(&[
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "example.org",
                    &format!("+bufsize={size}"),
                    transport,
                ]),
            );
            assert!(out.contains("status: NOERROR"), "{out}");
            assert!(out.contains(&format!("UDP size: {size} B")), "{out}");
        }
    }
}

/// `big.example.` has 40 addresses: 12 + 17 + 40 * 16 = 669 octets, over 512 without EDNS, so
/// UDP answers keep the 30 records that fit, set TC, and both clients retry over TCP.
fn big_answer_corefile() -> String {
    let mut hosts = String::new();
    for i in 1..=40 {
        hosts.push_str(&format!("        192.0.2.{i} big.example\n"));
    }
    format!(".:PORT {{\n    hosts {{\n{hosts}    }}\n}}\n")
}

#[test]
fn dig_falls_back_to_tcp_on_truncation() {
    if !require("dig") {
        return;
    }
    let srv = Server::start(&big_answer_corefile());
    let port = srv.port.to_string();
    let base = [
        "@127.0.0.1",
        "-p",
        &port,
        "big.example",
        "+tries=1",
        "+time=3",
    ];
    let with = |extra: &[&str]| {
        let mut a = args(&base);
        a.extend(extra.iter().map(|s| s.to_string()));
        run("dig", &a)
    };
    let truncated = with(&["+noedns", "+ignore"]);
    assert!(truncated.contains("flags: qr aa tc rd;"), "{truncated}");
    assert!(truncated.contains("ANSWER: 30"), "{truncated}");
    let retried = with(&["+noedns"]);
    assert!(
        retried.contains(";; Truncated, retrying in TCP mode."),
        "{retried}"
    );
    assert!(retried.contains("flags: qr aa rd;"), "{retried}");
    assert!(retried.contains("ANSWER: 40"), "{retried}");
    assert!(retried.contains("MSG SIZE  rcvd: 669"), "{retried}");
    // A large enough EDNS buffer needs no retry.
    let big = with(&["+bufsize=1232"]);
    assert!(!big.contains("Truncated"), "{big}");
    assert!(big.contains("flags: qr aa rd;"), "{big}");
}

#[test]
fn kdig_falls_back_to_tcp_on_truncation() {
    if !require("kdig") {
        return;
    }
    let srv = Server::start(&big_answer_corefile());
    let port = srv.port.to_string();
    let out = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port, "big.example", "+noedns"])
        .output()
        .expect("run kdig");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated reply"), "{stderr}");
    assert!(stdout.contains("(TCP)"), "{stdout}");
    assert!(stdout.contains("Received 669 B"), "{stdout}");
}
