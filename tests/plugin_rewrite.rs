//! `rewrite` end to end: the real binary on loopback, `rewrite` in front of `hosts`, queried over
//! UDP and TCP (and with `dig` where it is installed).

mod common;

use std::process::{Command, Stdio};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

/// The answer records as `owner ttl TYPE rdata`.
fn answers(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|rr| format!("{} {} {} {}", rr.name, rr.ttl, rr.record_type(), rr.data))
        .collect()
}

fn question(m: &Message) -> String {
    let q = &m.queries[0];
    format!("{} {}", q.name, q.query_type)
}

/// `rewrite` lines in front of a `hosts` block that knows a few names, A records only for
/// `www` and `ftp.service.us-west-1.consul`.
fn corefile(rewrites: &str) -> String {
    format!(
        ".:PORT {{\n{rewrites}\n    hosts {{\n        192.0.2.10 www.example.org\n        192.0.2.11 www.example.org\n        2001:db8::20 v6.example.org\n        10.10.10.10 ftp.service.us-west-1.consul\n        10.20.20.20 ftp.service.us-west-1.consul\n        ttl 300\n    }}\n}}\n"
    )
}

type Ask = fn(&Server, &str, RecordType) -> Message;
const TRANSPORTS: [(&str, Ask); 2] = [("udp", Server::udp), ("tcp", Server::tcp)];

/// The nginx incident: with `rewrite type AAAA A`, an AAAA question is answered with the A
/// records, under the AAAA question. A resolver that checks record types (nginx's) rejects it.
#[test]
fn type_aaaa_to_a_answers_the_aaaa_question_with_a_records() {
    let srv = Server::start(&corefile("    rewrite type AAAA A"));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "www.example.org.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(question(&m), "www.example.org. AAAA", "{proto}");
        assert_eq!(
            answers(&m),
            [
                "www.example.org. 300 A 192.0.2.10",
                "www.example.org. 300 A 192.0.2.11"
            ],
            "{proto}"
        );
        // A questions are untouched.
        let m = ask(&srv, "www.example.org.", RecordType::A);
        assert_eq!(question(&m), "www.example.org. A", "{proto}");
        assert_eq!(answers(&m).len(), 2, "{proto}");
        // A name with only an AAAA record now gets an empty answer for AAAA.
        let m = ask(&srv, "v6.example.org.", RecordType::AAAA);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert!(m.answers.is_empty(), "{proto}");
    }
    if require("dig") {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &srv.port.to_string(),
                "+norec",
                "+noall",
                "+question",
                "+answer",
                "www.example.org",
                "AAAA",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(";www.example.org.\t\tIN\tAAAA"), "{text}");
        assert!(text.contains("IN\tA\t192.0.2.10"), "{text}");
        assert!(!text.contains("mismatch"), "{text}");
    }
}

/// With `continue` and no rule that restores it, CoreDNS hands back the rewritten question; so
/// does ferrodns.
#[test]
fn continue_type_rewrite_keeps_the_rewritten_question() {
    let srv = Server::start(&corefile("    rewrite continue type AAAA A"));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "www.example.org.", RecordType::AAAA);
        assert_eq!(question(&m), "www.example.org. A", "{proto}");
        assert_eq!(answers(&m).len(), 2, "{proto}");
    }
}

#[test]
fn name_regex_answer_auto() {
    let srv = Server::start(&corefile(
        r"    rewrite name regex (.*)-(us-west-1)\.coredns\.rocks {1}.service.{2}.consul answer auto",
    ));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "ftp-us-west-1.coredns.rocks.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(question(&m), "ftp-us-west-1.coredns.rocks. A", "{proto}");
        assert_eq!(
            answers(&m),
            [
                "ftp-us-west-1.coredns.rocks. 300 A 10.10.10.10",
                "ftp-us-west-1.coredns.rocks. 300 A 10.20.20.20"
            ],
            "{proto}"
        );
    }
}

/// Without an answer rule the records keep the rewritten owner name (the README's "mismatch").
#[test]
fn name_regex_without_answer_rule_shows_the_rewritten_owner() {
    let srv = Server::start(&corefile(
        r"    rewrite name regex (.*)-(us-west-1)\.coredns\.rocks {1}.service.{2}.consul",
    ));
    let m = srv.udp("ftp-us-west-1.coredns.rocks.", RecordType::A);
    assert_eq!(question(&m), "ftp-us-west-1.coredns.rocks. A");
    assert_eq!(
        answers(&m),
        [
            "ftp.service.us-west-1.consul. 300 A 10.10.10.10",
            "ftp.service.us-west-1.consul. 300 A 10.20.20.20"
        ]
    );
}

#[test]
fn block_form_with_answer_name() {
    let srv = Server::start(&corefile(
        "    rewrite stop {\n        name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul\n        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks\n    }",
    ));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "ftp-us-west-1.coredns.rocks.", RecordType::A);
        assert_eq!(
            answers(&m),
            [
                "ftp-us-west-1.coredns.rocks. 300 A 10.10.10.10",
                "ftp-us-west-1.coredns.rocks. 300 A 10.20.20.20"
            ],
            "{proto}"
        );
    }
}

/// `stop` ends the rule list at the first match; `continue` goes on.
#[test]
fn stop_and_continue() {
    let stop = Server::start(&corefile(
        "    rewrite name a.example.org www.example.org\n    rewrite name www.example.org nowhere.example.org",
    ));
    let cont = Server::start(&corefile(
        "    rewrite continue name a.example.org b.example.org\n    rewrite name b.example.org www.example.org",
    ));
    let broken = Server::start(&corefile(
        "    rewrite continue name a.example.org www.example.org\n    rewrite name www.example.org nowhere.example.org",
    ));
    for (proto, ask) in TRANSPORTS {
        // The exact rule maps the answer back to the asked name.
        let m = ask(&stop, "a.example.org.", RecordType::A);
        assert_eq!(question(&m), "a.example.org. A", "{proto}");
        assert_eq!(
            answers(&m),
            [
                "a.example.org. 300 A 192.0.2.10",
                "a.example.org. 300 A 192.0.2.11"
            ],
            "{proto}"
        );
        let m = ask(&cont, "a.example.org.", RecordType::A);
        assert_eq!(question(&m), "a.example.org. A", "{proto}");
        assert_eq!(answers(&m).len(), 2, "{proto}");
        assert!(answers(&m)[0].starts_with("a.example.org. "), "{proto}");
        // `continue` carries the query on to the second rule, which sends it nowhere.
        let m = ask(&broken, "a.example.org.", RecordType::A);
        assert_eq!(question(&m), "a.example.org. A", "{proto}");
        assert!(m.answers.is_empty(), "{proto}: {:?}", answers(&m));
    }
}

#[test]
fn ttl_rewrite() {
    let srv = Server::start(&corefile("    rewrite ttl suffix example.org 15-60"));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "www.example.org.", RecordType::A);
        assert!(answers(&m).iter().all(|a| a.contains(" 60 A ")), "{proto}");
    }
}

#[test]
fn setup_error_names_file_and_line() {
    let failed = run_to_exit(".:PORT {\n    rewrite name regex ( x\n    whoami\n}\n", &[]);
    assert!(!failed.status.success());
    let text = format!("{}{}", failed.stdout, failed.stderr);
    assert!(
        text.contains("plugin/rewrite: ")
            && text
                .contains("Corefile:2 - Error during parsing: invalid regex matching pattern: ("),
        "{text}"
    );
}

/// The README's use case: a failure of the rest of the chain (here `hosts` without
/// `fallthrough`, which answers SERVFAIL for names it does not know) turned into NOERROR.
#[test]
fn rcode_rewrite_of_a_bare_failure() {
    let srv = Server::start(&corefile(
        "    rewrite rcode suffix example.org SERVFAIL NOERROR",
    ));
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "unknown.example.org.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(question(&m), "unknown.example.org. A", "{proto}");
        assert!(m.answers.is_empty(), "{proto}");
        // Other names keep their failure.
        let m = ask(&srv, "unknown.example.net.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{proto}");
    }
}

/// An EDNS0 rewrite changes what the chain sees, never what the client gets: no OPT record for
/// a client that sent none.
#[test]
fn edns0_rewrite_keeps_the_clients_edns() {
    let srv = Server::start(&corefile(
        "    rewrite continue edns0 local set 0xffee {client_ip}\n    rewrite edns0 subnet set 24 56",
    ));
    let plain = udp_exchange(srv.addr(), &query("www.example.org.", RecordType::A)).unwrap();
    assert_eq!(plain.answers.len(), 2);
    assert!(plain.edns.is_none());
    let with = udp_exchange(
        srv.addr(),
        &with_edns(query("www.example.org.", RecordType::A), 1232),
    )
    .unwrap();
    assert_eq!(with.answers.len(), 2);
    assert!(with.edns.is_some());
    let tcp = tcp_exchange(srv.addr(), &query("www.example.org.", RecordType::A)).unwrap();
    assert_eq!(tcp.answers.len(), 2);
}

/// `rewrite cname`: the chain answers with a CNAME to `old.b.test`; the rule points it at
/// `new.b.test`, whose address only the `hosts` of another server block of the same listener
/// knows, so the lookup has to go through the server's zones. (*template*'s own lookup of the
/// old target crosses blocks too; the rule replaces what it found.)
#[test]
fn cname_rule_looks_the_new_target_up_in_another_server_block() {
    let srv = Server::start(
        "a.test:PORT {
    rewrite cname exact old.b.test new.b.test
    template IN A a.test {
        answer \"{{ .Name }} 60 IN CNAME old.b.test.\"
    }
}
b.test:PORT {
    hosts {
        192.0.2.6 old.b.test
        192.0.2.7 new.b.test
    }
}
",
    );
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "www.a.test.", RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        assert_eq!(question(&m), "www.a.test. A", "{proto}");
        assert_eq!(
            answers(&m),
            [
                "www.a.test. 60 CNAME new.b.test.",
                "new.b.test. 3600 A 192.0.2.7"
            ],
            "{proto}"
        );
        // The other block answers on its own as before.
        let m = ask(&srv, "old.b.test.", RecordType::A);
        assert_eq!(answers(&m), ["old.b.test. 3600 A 192.0.2.6"], "{proto}");
    }
    if require("dig") {
        let out = Command::new("dig")
            .args(["+short", "-p", &srv.addr().port().to_string(), "@127.0.0.1"])
            .args(["www.a.test", "A"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, "new.b.test.\n192.0.2.7\n", "{text}");
    }
}

/// A rule whose new target is rewritten again by the lookup it causes (a CNAME to itself): the
/// lookups nest, and ferrodns cuts them at 8 levels; the client still gets an answer at once.
#[test]
fn cname_rule_loop_is_cut_at_the_depth_bound() {
    let srv = Server::start(
        "loop.test:PORT {
    rewrite cname exact b.loop.test b.loop.test
    template IN TXT loop.test {
        answer \"{{ .Name }} 60 IN CNAME b.loop.test.\"
    }
}
",
    );
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "a.loop.test.", RecordType::TXT);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{proto}");
        // The client's CNAME, then one per nested lookup.
        let got = answers(&m);
        assert_eq!(got.len(), 9, "{proto}: {got:?}");
        assert_eq!(got[0], "a.loop.test. 60 CNAME b.loop.test.", "{proto}");
        assert!(
            got[1..]
                .iter()
                .all(|a| a == "b.loop.test. 60 CNAME b.loop.test."),
            "{proto}: {got:?}"
        );
    }
    srv.wait_stdout("[ERROR] plugin/rewrite: upstream lookup of b.loop.test. failed: more than 8 nested lookups");
}

/// A reload that keeps the listener: the new configuration's lookups go through the new zone
/// table (the new `hosts` data), not the one that was replaced.
#[test]
fn cname_rule_lookups_follow_a_reload() {
    let config = |ip: &str| {
        format!(
            "a.test:PORT {{\n    rewrite cname exact old.b.test new.b.test\n    template IN A a.test {{\n        answer \"{{{{ .Name }}}} 60 IN CNAME old.b.test.\"\n    }}\n}}\nb.test:PORT {{\n    hosts {{\n        {ip} new.b.test\n    }}\n}}\n"
        )
    };
    let srv = Server::start(&config("192.0.2.7"));
    let m = srv.udp("www.a.test.", RecordType::A);
    assert_eq!(answers(&m)[1], "new.b.test. 3600 A 192.0.2.7");
    let tmp = srv.dir.join("Corefile.tmp");
    std::fs::write(
        &tmp,
        config("192.0.2.8").replace("PORT", &srv.port.to_string()),
    )
    .unwrap();
    std::fs::rename(&tmp, srv.dir.join("Corefile")).unwrap();
    srv.signal(libc::SIGUSR1);
    srv.wait_stdout("Reloading complete");
    for (proto, ask) in TRANSPORTS {
        let m = ask(&srv, "www.a.test.", RecordType::A);
        assert_eq!(
            answers(&m),
            [
                "www.a.test. 60 CNAME new.b.test.",
                "new.b.test. 3600 A 192.0.2.8"
            ],
            "{proto}"
        );
    }
}
