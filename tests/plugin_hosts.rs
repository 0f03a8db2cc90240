//! `hosts` end to end: the real binary on loopback, a real hosts file, queried over UDP and
//! TCP (and with `dig` where it is installed).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// The answer records as `owner ttl TYPE rdata`.
fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|rr| format!("{} {} {} {}", rr.name, rr.ttl, rr.record_type(), rr.data))
        .collect()
}

fn corefile(hosts: &Path, options: &str) -> String {
    format!(
        ".:PORT {{\n    hosts {} example.org {{\n{options}\n    }}\n    whoami\n}}\n",
        hosts.display()
    )
}

const HOSTS: &str = "# test hosts file\n\
127.0.0.1 localhost\n\
192.0.2.10 www.example.org web.example.org   # aliases on one line\n\
192.0.2.11 www.example.org\n\
2001:db8::10 www.example.org v6.example.org\n\
bogus-line without.example.org\n\
192.0.2.99 outside.example.net\n";

#[test]
fn answers_over_udp_and_tcp() {
    let dir = temp_dir("hosts-e2e");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, HOSTS).unwrap();
    let srv = Server::start(&corefile(&hosts, "        192.0.2.20 inline.example.org"));

    type Ask = fn(&Server, &str, RecordType) -> Message;
    let transports: [(&str, Ask); 2] = [("udp", Server::udp), ("tcp", Server::tcp)];
    for (proto, ask) in transports {
        let m = ask(&srv, "WWW.Example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(m.metadata.authoritative, "{proto}");
        assert_eq!(
            answers(&m),
            [
                "www.example.org. 3600 A 192.0.2.10",
                "www.example.org. 3600 A 192.0.2.11"
            ],
            "{proto}"
        );
        // The question goes back as it was asked.
        assert_eq!(m.queries[0].name.to_ascii(), "WWW.Example.org.");

        let m = ask(&srv, "www.example.org.", RecordType::AAAA);
        assert_eq!(
            answers(&m),
            ["www.example.org. 3600 AAAA 2001:db8::10"],
            "{proto}"
        );

        let m = ask(&srv, "inline.example.org.", RecordType::A);
        assert_eq!(
            answers(&m),
            ["inline.example.org. 3600 A 192.0.2.20"],
            "{proto}"
        );

        // The name exists with the other family only: NOERROR, no records (NODATA).
        for (name, qtype) in [
            ("web.example.org.", RecordType::AAAA),
            ("v6.example.org.", RecordType::A),
            ("www.example.org.", RecordType::MX),
        ] {
            let m = ask(&srv, name, qtype);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(m.metadata.authoritative, "{name}");
            assert!(m.answers.is_empty(), "{name} {qtype}: {m:?}");
        }

        // Not in the file, no fallthrough: SERVFAIL, as CoreDNS answers.
        let m = ask(&srv, "missing.example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{proto}");
        let m = ask(&srv, "without.example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{proto}");

        // Outside the plugin's zone: the next plugin (whoami) answers.
        let m = ask(&srv, "outside.example.net.", RecordType::A);
        assert!(m.answers.is_empty());
        assert!(
            m.additionals.iter().any(|r| matches!(r.data, RData::A(_))),
            "whoami should have answered: {m:?}"
        );

        // Reverse lookups.
        let m = ask(&srv, "10.2.0.192.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            answers(&m),
            [
                "10.2.0.192.in-addr.arpa. 3600 PTR www.example.org.",
                "10.2.0.192.in-addr.arpa. 3600 PTR web.example.org."
            ],
            "{proto}"
        );
        let m = ask(
            &srv,
            "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
            RecordType::PTR,
        );
        assert_eq!(m.answers.len(), 2, "{proto}: {m:?}");
        // An unknown address goes on to whoami.
        let m = ask(&srv, "77.2.0.192.in-addr.arpa.", RecordType::PTR);
        assert!(m.answers.is_empty() && !m.additionals.is_empty(), "{m:?}");
    }
}

#[test]
fn fallthrough_hands_unknown_names_on() {
    let dir = temp_dir("hosts-fall");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, HOSTS).unwrap();
    let srv = Server::start(&corefile(&hosts, "        ttl 30\n        fallthrough"));
    let m = srv.udp("missing.example.org.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.additionals.is_empty(), "whoami answered: {m:?}");
    // Known names still answer from hosts, NODATA included, never falling through.
    let m = srv.tcp("www.example.org.", RecordType::A);
    assert_eq!(m.answers.len(), 2);
    assert_eq!(m.answers[0].ttl, 30);
    let m = srv.tcp("web.example.org.", RecordType::AAAA);
    assert!(m.answers.is_empty() && m.additionals.is_empty(), "{m:?}");
}

#[test]
fn changed_file_is_picked_up_after_reload() {
    let dir = temp_dir("hosts-reload");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "192.0.2.1 a.example.org\n").unwrap();
    let srv = Server::start(&corefile(&hosts, "        reload 200ms"));
    assert_eq!(
        answers(&srv.udp("a.example.org.", RecordType::A)),
        ["a.example.org. 3600 A 192.0.2.1"]
    );
    assert_eq!(
        srv.udp("b.example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::ServFail
    );

    std::fs::write(&hosts, "192.0.2.2 a.example.org\n192.0.2.3 b.example.org\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = srv.udp("b.example.org.", RecordType::A);
        if answers(&m) == ["b.example.org. 3600 A 192.0.2.3"] {
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        answers(&srv.tcp("a.example.org.", RecordType::A)),
        ["a.example.org. 3600 A 192.0.2.2"]
    );
}

#[test]
fn bad_option_fails_start_up_with_file_and_line() {
    let dir = temp_dir("hosts-bad");
    let conf = dir.join("Corefile");
    std::fs::write(
        &conf,
        ".:1053 {\n    hosts {\n        10.0.0.1 a.example.org\n        ttl soon\n    }\n}\n",
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "plugin/hosts: {}:4 - Error during parsing: ttl needs a number of second",
        conf.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn dig_reads_the_answers() {
    if !require("dig") {
        return;
    }
    let dir = temp_dir("hosts-dig");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, HOSTS).unwrap();
    let srv = Server::start(&corefile(&hosts, ""));
    for extra in [&[][..], &["+tcp"][..]] {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &srv.port.to_string()])
            .args(["+short", "-x", "192.0.2.10"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, "www.example.org.\nweb.example.org.\n", "{extra:?}");
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &srv.port.to_string()])
            .args(["+norec", "v6.example.org", "AAAA"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("status: NOERROR"), "{text}");
        assert!(text.contains("flags: qr aa;"), "{text}");
        let words: Vec<&str> = text.split_whitespace().collect();
        assert!(
            words
                .windows(5)
                .any(|w| w == ["v6.example.org.", "3600", "IN", "AAAA", "2001:db8::10"]),
            "{text}"
        );
    }
}

#[test]
fn missing_file_is_reported_and_used_once_it_appears() {
    let dir = temp_dir("hosts-missing");
    let hosts = dir.join("later.hosts");
    let srv = Server::start(&corefile(
        &hosts,
        "        192.0.2.50 inline.example.org\n        reload 100ms",
    ));
    let out = srv.wait_stdout("File does not exist");
    let want = format!(
        "[WARNING] plugin/hosts: File does not exist: {}",
        hosts.display()
    );
    assert!(out.contains(&want), "{out}");
    assert_eq!(
        answers(&srv.udp("inline.example.org.", RecordType::A)),
        ["inline.example.org. 3600 A 192.0.2.50"]
    );

    std::fs::write(&hosts, "192.0.2.51 late.example.org\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = srv.tcp("late.example.org.", RecordType::A);
        if answers(&m) == ["late.example.org. 3600 A 192.0.2.51"] {
            break;
        }
        assert!(Instant::now() < deadline, "file not picked up: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The inline entries are still there.
    assert_eq!(
        answers(&srv.udp("inline.example.org.", RecordType::A)),
        ["inline.example.org. 3600 A 192.0.2.50"]
    );
}
