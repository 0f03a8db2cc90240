//! The observability plugins end to end: the real binary on loopback, answers from `whoami`,
//! `/metrics`, `/health` and `/ready` scraped over real HTTP, log lines read from stdout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// GET `path` from 127.0.0.1:`port`: (status, body). None when nothing listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Wait until `port` answers HTTP (the endpoints start with the DNS listeners).
fn wait_http(port: u16, path: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(r) = http_get(port, path) {
            return r;
        }
        assert!(Instant::now() < deadline, "nothing on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the sample whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_scraped_with_coredns_names_and_labels() {
    let mport = free_port();
    let srv = Server::start(&format!(
        "example.org:PORT {{\n    prometheus 127.0.0.1:{mport}\n    whoami\n}}\n"
    ));
    srv.udp("www.example.org.", RecordType::A);
    srv.udp("www.example.org.", RecordType::A);
    srv.tcp("www.example.org.", RecordType::AAAA);
    srv.udp("www.example.org.", RecordType::CAA);
    // No zone matches: REFUSED before any block, counted under zone "dropped".
    assert_eq!(
        srv.udp("example.net.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    let (status, text) = wait_http(mport, "/metrics");
    assert_eq!(status, 200);
    let port = srv.port;
    let z = format!("server=\"dns://:{port}\",view=\"\",zone=\"example.org.\"");
    for (series, want) in [
        (
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{port}\",type=\"A\",view=\"\",zone=\"example.org.\"}}"
            ),
            2.0,
        ),
        (
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"tcp\",server=\"dns://:{port}\",type=\"AAAA\",view=\"\",zone=\"example.org.\"}}"
            ),
            1.0,
        ),
        (
            format!(
                "coredns_dns_requests_total{{family=\"1\",proto=\"udp\",server=\"dns://:{port}\",type=\"other\",view=\"\",zone=\"example.org.\"}}"
            ),
            1.0,
        ),
        (
            format!("coredns_dns_responses_total{{plugin=\"whoami\",rcode=\"NOERROR\",{z}}}"),
            4.0,
        ),
        (
            format!(
                "coredns_dns_responses_total{{plugin=\"\",rcode=\"REFUSED\",server=\"dns://:{port}\",view=\"\",zone=\"dropped\"}}"
            ),
            1.0,
        ),
        (
            format!("coredns_dns_request_duration_seconds_count{{{z}}}"),
            4.0,
        ),
        (
            format!("coredns_dns_request_size_bytes_count{{proto=\"udp\",{z}}}"),
            3.0,
        ),
        (
            format!("coredns_dns_response_size_bytes_count{{proto=\"tcp\",{z}}}"),
            1.0,
        ),
        (
            format!("coredns_plugin_enabled{{name=\"whoami\",{z}}}"),
            1.0,
        ),
        (
            format!("coredns_plugin_enabled{{name=\"prometheus\",{z}}}"),
            1.0,
        ),
        ("coredns_panics_total".to_string(), 0.0),
    ] {
        assert_eq!(value(&text, &series), Some(want), "{series}\n{text}");
    }
    assert!(text.contains("# TYPE coredns_dns_request_duration_seconds histogram"));
    assert!(text.contains(&format!(
        "coredns_dns_request_duration_seconds_bucket{{le=\"0.00025\",{z}}}"
    )));
    assert!(text.contains("coredns_build_info{goversion=\"rust\",revision=\"\",version=\""));
    assert_eq!(http_get(mport, "/other").map(|r| r.0), Some(404));
}

#[test]
fn blocks_naming_the_same_address_share_one_endpoint() {
    let mport = free_port();
    let srv = Server::start(&format!(
        "a.example:PORT {{\n    prometheus 127.0.0.1:{mport}\n    whoami\n}}\nb.example:PORT {{\n    prometheus 127.0.0.1:{mport}\n    whoami\n}}\n"
    ));
    srv.udp("x.a.example.", RecordType::A);
    srv.tcp("x.b.example.", RecordType::A);
    let (_, text) = wait_http(mport, "/metrics");
    let port = srv.port;
    for (proto, zone) in [("udp", "a.example."), ("tcp", "b.example.")] {
        let series = format!(
            "coredns_dns_requests_total{{family=\"1\",proto=\"{proto}\",server=\"dns://:{port}\",type=\"A\",view=\"\",zone=\"{zone}\"}}"
        );
        assert_eq!(value(&text, &series), Some(1.0), "{series}\n{text}");
    }
}

#[test]
fn health_answers_ok_and_checks_itself() {
    let (mport, hport) = (free_port(), free_port());
    let srv = Server::start(&format!(
        ".:PORT {{\n    health 127.0.0.1:{hport}\n    prometheus 127.0.0.1:{mport}\n    whoami\n}}\n"
    ));
    assert_eq!(wait_http(hport, "/health"), (200, "OK".to_string()));
    // The self-check runs once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, text) = wait_http(mport, "/metrics");
        let n = value(&text, "coredns_health_request_duration_seconds_count").unwrap_or(0.0);
        if n >= 1.0 {
            assert_eq!(
                value(&text, "coredns_health_request_failures_total"),
                Some(0.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "no self-check recorded:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(srv);
}

/// The health README's claim: two blocks naming one address share the endpoint (CoreDNS fails
/// to listen twice).
#[test]
fn health_in_two_blocks_on_one_address_is_one_endpoint() {
    let hport = free_port();
    let srv = Server::start(&format!(
        "a.example:PORT {{\n    health 127.0.0.1:{hport}\n    whoami\n}}\nb.example:PORT {{\n    health 127.0.0.1:{hport}\n    whoami\n}}\n"
    ));
    assert_eq!(wait_http(hport, "/health"), (200, "OK".to_string()));
    drop(srv);
}

#[test]
fn ready_turns_503_in_lameduck_while_health_stays_ok() {
    let (hport, rport) = (free_port(), free_port());
    let mut srv = Server::start(&format!(
        ".:PORT {{\n    health 127.0.0.1:{hport} {{\n        lameduck 2s\n    }}\n    ready 127.0.0.1:{rport}\n    whoami\n}}\n"
    ));
    assert_eq!(wait_http(rport, "/ready"), (200, "OK".to_string()));
    srv.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = None;
    while Instant::now() < deadline {
        if let Some((503, body)) = http_get(rport, "/ready") {
            seen = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen.as_deref(), Some("Shutting down"));
    assert_eq!(http_get(hport, "/health"), Some((200, "OK".to_string())));
    // Still answering queries during lameduck.
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    assert!(srv.alive());
    let out = srv.wait_stdout("Going into lameduck mode");
    assert!(
        out.contains("[INFO] plugin/health: Going into lameduck mode for 2s"),
        "{out}"
    );
}

#[test]
fn log_writes_the_common_log_format() {
    let srv = Server::start(".:PORT {\n    log\n    whoami\n}\n");
    let q = query("Example.ORG.", RecordType::A);
    let r = udp_exchange(srv.addr(), &q).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let id = q.metadata.id;
    let out = srv.wait_stdout(&format!(" - {id} "));
    let line = out
        .lines()
        .find(|l| l.contains(&format!(" - {id} ")))
        .unwrap_or_else(|| panic!("no log line:\n{out}"));
    // [INFO] 127.0.0.1:PORT - ID "A IN example.org. udp SIZE false 512" NOERROR qr,aa,rd RSIZE DURs
    let size = q.to_vec().unwrap().len();
    assert!(line.starts_with("[INFO] 127.0.0.1:"), "{line}");
    let rest = line.split_once(" - ").unwrap().1;
    let want = format!("{id} \"A IN example.org. udp {size} false 512\" NOERROR qr,aa,rd ");
    assert!(rest.starts_with(&want), "{line}");
    let tail: Vec<&str> = rest[want.len()..].split(' ').collect();
    assert_eq!(tail.len(), 2, "{line}");
    assert!(tail[0].parse::<usize>().unwrap() > 0, "{line}");
    let secs = tail[1].strip_suffix('s').unwrap();
    assert!(secs.parse::<f64>().unwrap() < 1.0, "{line}");
    assert!(!secs.contains('e'), "{line}");
}

#[test]
fn log_filters_names_and_classes_and_takes_a_format() {
    let srv = Server::start(
        ".:PORT {\n    log example.org {proto}:{name}:{type}:{rcode}\n    log example.net {\n        class denial error\n    }\n    whoami\n}\n",
    );
    srv.tcp("www.example.org.", RecordType::MX);
    srv.udp("www.example.net.", RecordType::A);
    srv.udp("other.test.", RecordType::A);
    srv.udp("www.example.org.", RecordType::A);
    let out = srv.wait_stdout("udp:www.example.org.:A:NOERROR");
    assert!(
        out.contains("[INFO] tcp:www.example.org.:MX:NOERROR\n"),
        "{out}"
    );
    // A success for example.net is not in the classes asked for; other.test matches no name.
    assert!(!out.contains("example.net"), "{out}");
    assert!(!out.contains("other.test"), "{out}");
}

#[test]
fn errors_and_log_report_a_failure() {
    // No plugin answers: the chain ends in a SERVFAIL with an error that `errors` prints and
    // `log` records as the SERVFAIL the client gets.
    let srv = Server::start(".:PORT {\n    errors\n    log . {\n        class error\n    }\n}\n");
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::ServFail
    );
    let out = srv.wait_stdout("plugin/errors:");
    assert!(
        out.contains("[ERROR] plugin/errors: 2 example.org. A: plugin/"),
        "{out}"
    );
    let out = srv.wait_stdout("SERVFAIL");
    assert!(
        out.contains("\"A IN example.org. udp ") && out.contains("\" SERVFAIL qr,rd "),
        "{out}"
    );
}

#[test]
fn consolidated_errors_print_a_summary() {
    let srv = Server::start(
        ".:PORT {\n    errors {\n        consolidate 1s next.plugin warning\n    }\n}\n",
    );
    for _ in 0..3 {
        srv.udp("example.org.", RecordType::A);
    }
    let out = srv.wait_stdout("occurred in last 1s");
    assert!(
        out.contains("[WARNING] plugin/errors: 3 errors like 'next.plugin' occurred in last 1s"),
        "{out}"
    );
    assert!(!out.contains("[ERROR]"), "{out}");
}
