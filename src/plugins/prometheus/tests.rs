//! Table-driven tests: setup errors, label values, and what a query adds to the metrics, run
//! through the real server build and dispatch (no sockets).

use super::*;
use crate::metrics::Metrics;
use crate::plugin::setup::Shared;
use crate::server::dispatch::{Prepared, prepare, serve};
use crate::server::{Instance, build};
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{DNSClass, Name};
use std::net::SocketAddr;

/// Build a Corefile as the server would (port 53 for keys without one).
pub(crate) fn build_str(text: &str) -> Result<(Instance, Arc<Shared>), String> {
    let corefile = crate::corefile::parse_str("Corefile", text, std::path::Path::new("."))
        .map_err(|e| e.to_string())?;
    let shared = Shared::new(Arc::new(Metrics::new()));
    let instance = build(&corefile, 53, &shared).map_err(|e| e.to_string())?;
    Ok((instance, shared))
}

pub(crate) fn query(name: &str, qtype: RecordType, edns_do: bool) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = 4242;
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns_do {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.set_dnssec_ok(true);
        m.edns = Some(e);
    }
    m.to_vec().unwrap()
}

/// Send `wire` to the first listener as if it came from `src` over `proto`; the reply bytes.
pub(crate) fn ask(instance: &Instance, wire: &[u8], src: &str, proto: Proto) -> Vec<u8> {
    let src: SocketAddr = src.parse().unwrap();
    let l = &instance.listeners[0];
    match prepare(&l.table, wire, src, l.addr, proto) {
        Prepared::Serve(block, req) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(block, req))
        }
        Prepared::Reply(bytes) => bytes,
        Prepared::Drop => Vec::new(),
    }
}

fn sample(text: &str, line_start: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

#[test]
fn setup_errors_read_as_coredns() {
    for (conf, want) in [
        (
            ". {\n prometheus a:1 b:2\n}\n",
            "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'b:2'",
        ),
        (
            ". {\n prometheus foo\n}\n",
            "plugin/prometheus: address foo: missing port in address",
        ),
        (
            ". {\n prometheus :1\n prometheus :2\n}\n",
            "this plugin can only be used once per Server Block",
        ),
        (
            ". {\n prometheus :9153 {\n  tls a b\n }\n}\n",
            "Corefile:3 - Error during parsing: tls for metrics is not supported by this build",
        ),
        (
            ". {\n prometheus :9153 {\n  bogus\n }\n}\n",
            "Corefile:3 - Error during parsing: unknown option: bogus",
        ),
    ] {
        let err = build_str(conf).err().unwrap_or_default();
        assert!(err.contains(want), "{conf:?}: {err}");
    }
}

#[test]
fn labels_use_coredns_names() {
    for (t, want) in [
        (RecordType::A, "A"),
        (RecordType::HTTPS, "HTTPS"),
        (RecordType::NSEC3, "NSEC3"),
        (RecordType::AXFR, "AXFR"),
        (RecordType::CAA, "other"),
        (RecordType::Unknown(999), "other"),
    ] {
        assert_eq!(type_label(t), want);
    }
    for (rc, want) in [
        (0, "NOERROR"),
        (2, "SERVFAIL"),
        (3, "NXDOMAIN"),
        (5, "REFUSED"),
        (16, "BADSIG"),
        (23, "BADCOOKIE"),
        (12, "RCODE12"),
        (4000, "RCODE4000"),
    ] {
        assert_eq!(rcode_name(rc), want);
    }
}

#[test]
fn queries_are_counted_with_coredns_labels() {
    let (inst, shared) =
        build_str("example.org:53 {\n prometheus localhost:9253\n whoami\n}\n").unwrap();
    let routes = shared.http.lock().unwrap();
    assert!(
        routes
            .iter()
            .any(|(a, p, _)| a.to_string() == "127.0.0.1:9253" && *p == "/metrics")
    );
    drop(routes);
    let a = ask(
        &inst,
        &query("www.example.org.", RecordType::A, false),
        "127.0.0.1:5000",
        Proto::Udp,
    );
    assert!(!a.is_empty());
    ask(
        &inst,
        &query("www.example.org.", RecordType::CAA, true),
        "[::1]:5000",
        Proto::Tcp,
    );
    // Outside every zone: refused before any block, counted under zone "dropped".
    let refused = ask(
        &inst,
        &query("example.net.", RecordType::A, false),
        "127.0.0.1:5000",
        Proto::Udp,
    );
    assert_eq!(refused[3] & 0x0f, 5);
    let text = shared.metrics.encode();
    let s = "server=\"dns://:53\",view=\"\"";
    for (series, value) in [
        (
            "coredns_dns_requests_total{family=\"1\",proto=\"udp\",server=\"dns://:53\",type=\"A\",view=\"\",zone=\"example.org.\"}".to_string(),
            "1".to_string(),
        ),
        (
            "coredns_dns_requests_total{family=\"2\",proto=\"tcp\",server=\"dns://:53\",type=\"other\",view=\"\",zone=\"example.org.\"}".to_string(),
            "1".into(),
        ),
        (
            format!("coredns_dns_do_requests_total{{{s},zone=\"example.org.\"}}"),
            "1".into(),
        ),
        (
            format!(
                "coredns_dns_responses_total{{plugin=\"whoami\",rcode=\"NOERROR\",{s},zone=\"example.org.\"}}"
            ),
            "2".into(),
        ),
        (
            format!("coredns_dns_request_duration_seconds_count{{{s},zone=\"example.org.\"}}"),
            "2".into(),
        ),
        (
            format!(
                "coredns_dns_response_size_bytes_sum{{proto=\"udp\",{s},zone=\"example.org.\"}}"
            ),
            format!("{}.0", a.len()),
        ),
        (
            format!(
                "coredns_dns_request_size_bytes_count{{proto=\"tcp\",{s},zone=\"example.org.\"}}"
            ),
            "1".into(),
        ),
        (
            "coredns_dns_requests_total{family=\"1\",proto=\"udp\",server=\"dns://:53\",type=\"A\",view=\"\",zone=\"dropped\"}".to_string(),
            "1".into(),
        ),
        (
            format!(
                "coredns_dns_responses_total{{plugin=\"\",rcode=\"REFUSED\",{s},zone=\"dropped\"}}"
            ),
            "1".into(),
        ),
        (
            format!("coredns_plugin_enabled{{name=\"whoami\",{s},zone=\"example.org.\"}}"),
            "1".into(),
        ),
        (
            format!("coredns_plugin_enabled{{name=\"prometheus\",{s},zone=\"example.org.\"}}"),
            "1".into(),
        ),
        (
            "coredns_build_info{goversion=\"rust\",revision=\"\",version=\"0.1.0\"}".to_string(),
            "1".into(),
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(value), "{series}\n{text}");
    }
    assert!(text.contains("# HELP coredns_dns_requests Counter of DNS requests made per zone, protocol and family.\n"), "{text}");
    assert!(
        text.contains("coredns_dns_request_duration_seconds_bucket{le=\"8.192\","),
        "{text}"
    );
    assert!(
        text.contains("coredns_dns_response_size_bytes_bucket{le=\"8291.0\","),
        "{text}"
    );
    // Its value depends on whether other tests of this process panicked; its presence not.
    assert!(text.contains("\ncoredns_panics_total "), "{text}");
}

#[test]
fn failures_count_under_the_server_with_no_plugin() {
    // No handler after prometheus: CoreDNS's "no next plugin found" SERVFAIL.
    let (inst, shared) = build_str(". {\n prometheus\n errors\n}\n").unwrap();
    let reply = ask(
        &inst,
        &query("a.example.", RecordType::A, false),
        "127.0.0.1:5000",
        Proto::Udp,
    );
    assert_eq!(reply[3] & 0x0f, 2);
    let text = shared.metrics.encode();
    let series = "coredns_dns_responses_total{plugin=\"\",rcode=\"SERVFAIL\",server=\"dns://:53\",view=\"\",zone=\".\"}";
    assert_eq!(sample(&text, series).as_deref(), Some("1"), "{text}");
}

#[test]
fn class_chaos_refused_is_dropped() {
    let (inst, shared) = build_str(". {\n prometheus\n whoami\n}\n").unwrap();
    let mut m = Message::from_vec(&query("version.bind.", RecordType::TXT, false)).unwrap();
    m.queries[0].query_class = DNSClass::CH;
    ask(&inst, &m.to_vec().unwrap(), "127.0.0.1:5000", Proto::Udp);
    let text = shared.metrics.encode();
    let series = "coredns_dns_responses_total{plugin=\"\",rcode=\"REFUSED\",server=\"dns://:53\",view=\"\",zone=\"dropped\"}";
    assert_eq!(sample(&text, series).as_deref(), Some("1"), "{text}");
}

#[test]
fn type_index_follows_monitored_types() {
    for (i, t) in MONITORED_TYPES.iter().enumerate() {
        assert_eq!(type_index(*t), Some(i), "{t}");
    }
    for t in [
        RecordType::CAA,
        RecordType::NAPTR,
        RecordType::Unknown(65000),
    ] {
        assert_eq!(type_index(t), None, "{t}");
        assert_eq!(type_label(t), "other");
    }
}
