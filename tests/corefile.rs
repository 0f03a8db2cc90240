//! The Corefile language end to end: the real binary started on Corefiles that use snippets,
//! imports, globs, environment variables, comma-separated keys, a block without braces and CIDR
//! keys, then queried over UDP and TCP; and broken Corefiles that must stop it before it binds.

mod common;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// whoami answered (NOERROR with its additional records), as opposed to REFUSED for a name no
/// block serves.
fn served(srv: &Server, name: &str) -> bool {
    let udp = srv.udp(name, RecordType::A);
    let tcp = srv.tcp(name, RecordType::A);
    assert_eq!(rcode(&udp), rcode(&tcp), "{name}");
    match rcode(&udp) {
        ResponseCode::NoError => {
            assert!(!udp.additionals.is_empty(), "{name}: {udp:?}");
            true
        }
        ResponseCode::Refused => false,
        other => panic!("{name}: unexpected rcode {other:?}"),
    }
}

#[test]
fn snippets_imports_globs_env_and_comma_keys() {
    let corefile = r#"# Snippets first, then zones from files.
(common) {
    whoami # every block answers with whoami
}

import zones/*.conf

{$FERRODNS_TEST_ZONE}:PORT, "example.net:PORT",
    {%FERRODNS_TEST_OTHER%}:PORT {
    import common
}
"#;
    let files = [
        ("zones/a.conf", "a.example:PORT {\n    import common\n}\n"),
        (
            "zones/b.conf",
            "b.example:PORT {\n    import ../snippets/inner.conf\n}\n",
        ),
        ("snippets/inner.conf", "import common\n"),
        ("zones/ignored.txt", "this is not Corefile syntax {\n"),
    ];
    let env = [
        ("FERRODNS_TEST_ZONE", "Example.ORG"),
        ("FERRODNS_TEST_OTHER", "other.test"),
    ];
    let srv = start_with_files(corefile, &files, &env);
    for name in [
        "example.org.",
        "www.example.org.",
        "example.net.",
        "other.test.",
        "a.example.",
        "x.b.example.",
    ] {
        assert!(served(&srv, name), "{name} should be served");
    }
    for name in ["example.com.", "c.example.", "org."] {
        assert!(!served(&srv, name), "{name} should be refused");
    }
}

#[test]
fn a_single_block_without_braces() {
    let srv = start_with_files("example.org:PORT\nwhoami\n", &[], &[]);
    assert!(served(&srv, "example.org."));
    assert!(served(&srv, "deep.www.example.org."));
    assert!(!served(&srv, "example.com."));
}

#[test]
fn cidr_keys_off_an_octet_boundary_serve_each_reverse_zone() {
    // 10.0.0.0/27 is the 32 zones 0.0.0.10.in-addr.arpa. .. 31.0.0.10.in-addr.arpa., as in
    // CoreDNS 1.14; fd00::/7 is the two zones c.f.ip6.arpa. and d.f.ip6.arpa.
    let srv = start_with_files(
        "10.0.0.0/27:PORT fd00::/7:PORT {\n    whoami\n}\n",
        &[],
        &[],
    );
    assert!(served(&srv, "5.0.0.10.in-addr.arpa."));
    assert!(served(&srv, "31.0.0.10.in-addr.arpa."));
    assert!(!served(&srv, "32.0.0.10.in-addr.arpa."));
    assert!(!served(&srv, "0.0.10.in-addr.arpa."));
    assert!(served(&srv, "1.0.0.0.d.f.ip6.arpa."));
    assert!(served(&srv, "c.f.ip6.arpa."));
    assert!(!served(&srv, "e.f.ip6.arpa."));
}

#[test]
fn a_broken_corefile_stops_the_server_before_it_binds() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            ".:PORT {\n    whoami\n    log {\n",
            &[],
            "Corefile:3 - Error during parsing: Unexpected EOF, expecting '}' to close the block opened at line 3",
        ),
        (
            ".:PORT {\n    whoami\n}\n}\n",
            &[],
            "Corefile:4 - Error during parsing: Unexpected '}' because no matching opening brace",
        ),
        (
            ".:PORT {\n    whoami\n}\n\nexample.org:99999 {\n    whoami\n}\n",
            &[],
            "Corefile:5 - Error during parsing: invalid port '99999'",
        ),
        (
            ".:PORT {\n    import missing\n}\n",
            &[],
            "Corefile:2 - Error during parsing: File to import not found: missing",
        ),
        (
            ".:PORT {\n    whoami\n    nosuchplugin\n}\n",
            &[],
            "Corefile:3 - Error during parsing: Unknown directive 'nosuchplugin'",
        ),
        (
            ".:PORT {\n    import loop.conf\n}\n",
            &[("loop.conf", "whoami\nimport loop.conf\n")],
            "loop.conf:2 - Error during parsing: Import cycle detected: ",
        ),
    ];
    for (corefile, files, want) in cases {
        let run = run_to_exit(corefile, files);
        assert!(!run.status.success(), "{corefile:?}: {:?}", run.status);
        assert!(
            run.stderr.contains(want),
            "{corefile:?}: stderr {:?}",
            run.stderr
        );
        if !want.starts_with("loop.conf") {
            let line = format!("{}:", run.conf.display());
            assert!(run.stderr.contains(&line), "{corefile:?}: {:?}", run.stderr);
        }
        // Nothing was served: no banner, and the port is still free.
        assert!(run.stdout.is_empty(), "{corefile:?}: {:?}", run.stdout);
        assert!(std::net::UdpSocket::bind(("127.0.0.1", run.port)).is_ok());
    }
}
