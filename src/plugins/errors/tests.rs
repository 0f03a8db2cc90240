use super::*;
use crate::plugin::Proto;
use crate::plugins::prometheus::tests::build_str;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

fn errors_from(conf: &str) -> Result<Arc<dyn Plugin>, String> {
    let (inst, _) = build_str(conf)?;
    let block = inst.listeners[0].table.blocks().next().unwrap().clone();
    Ok(block
        .chain
        .plugins
        .iter()
        .find(|p| p.name() == "errors")
        .unwrap()
        .clone())
}

fn parsed(block: &str) -> Errors {
    let conf = format!(". {{\n errors {{\n{block}\n }}\n}}\n");
    let corefile =
        crate::corefile::parse_str("Corefile", &conf, std::path::Path::new(".")).unwrap();
    let d = &corefile.blocks[0].directives[0];
    let patterns = d
        .block
        .iter()
        .filter(|l| l.name == "consolidate")
        .map(|l| Arc::new(consolidate(l).unwrap()))
        .collect();
    Errors {
        patterns,
        debug: false,
    }
}

fn request(name: &str, qtype: RecordType) -> Request {
    let mut m = Message::query();
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let a = "127.0.0.1:53".parse().unwrap();
    Request::new(m, a, a, Proto::Udp, 30).unwrap()
}

fn failure(msg: &str) -> Failure {
    Failure::error(ResponseCode::ServFail, "forward", msg)
}

#[test]
fn setup_errors_read_as_coredns() {
    for (conf, want) in [
        (
            ". {\n errors\n errors\n}\n",
            "can only be used once per Server Block",
        ),
        (
            ". {\n errors stderr\n}\n",
            "Corefile:2 - Error during parsing: invalid log file: stderr",
        ),
        (
            ". {\n errors stdout x\n}\n",
            "Wrong argument count or unexpected line ending after 'x'",
        ),
        (
            ". {\n errors {\n  bogus\n }\n}\n",
            "Corefile:3 - Syntax error: Unexpected token 'bogus', expecting 'Unknown field bogus'",
        ),
        (
            ". {\n errors {\n  consolidate 5m\n }\n}\n",
            "Wrong argument count",
        ),
        (
            ". {\n errors {\n  consolidate 5x .* \n }\n}\n",
            "time: invalid duration \"5x\"",
        ),
        (
            ". {\n errors {\n  consolidate 5m .* fatal\n }\n}\n",
            "unknown option in consolidate: fatal",
        ),
        (
            ". {\n errors {\n  consolidate 5m .* show_first info\n }\n}\n",
            "log level must come before show_first in consolidate",
        ),
        (
            ". {\n errors {\n  consolidate 5m .* info error\n }\n}\n",
            "multiple log levels specified in consolidate",
        ),
        (
            ". {\n errors {\n  consolidate 5m (\n }\n}\n",
            "Corefile:3 - Error during parsing: regex",
        ),
    ] {
        let err = errors_from(conf).err().unwrap_or_default();
        assert!(err.contains(want), "{conf:?}: {err}");
    }
    let long = format!(
        ". {{\n errors {{\n  consolidate 5m {}\n }}\n}}\n",
        "a".repeat(10_001)
    );
    assert!(
        errors_from(&long)
            .err()
            .unwrap()
            .contains("regex pattern too long: 10001 > 10000")
    );
    assert!(
        errors_from(
            ". {\n errors stdout {\n  stacktrace\n  consolidate 30s ^x warning show_first\n }\n}\n"
        )
        .is_ok()
    );
}

#[test]
fn failures_are_logged_as_coredns_logs_them() {
    let e = parsed("");
    let req = request("Example.ORG.", RecordType::A);
    assert_eq!(
        e.decide(&req, &failure("no healthy upstream")),
        Some((
            Level::Error,
            "plugin/errors: 2 example.org. A: plugin/forward: no healthy upstream".to_string()
        ))
    );
    let req = request("example.org.", RecordType::Unknown(65280));
    let (_, line) = e.decide(&req, &failure("x")).unwrap();
    assert!(
        line.starts_with("plugin/errors: 2 example.org. TYPE65280: "),
        "{line}"
    );
    // A failure without an error (REFUSED from acl, say) is not an error to log.
    assert_eq!(e.decide(&req, &Failure::new(ResponseCode::Refused)), None);
}

#[test]
fn consolidation_counts_and_summarizes() {
    let e = parsed("  consolidate 30s i/o.timeout$ warning\n  consolidate 5m ^plugin/forward");
    let req = request("example.org.", RecordType::A);
    for _ in 0..3 {
        assert_eq!(e.decide(&req, &failure("read udp: i/o timeout")), None);
    }
    // The second pattern catches what the first does not.
    assert_eq!(e.decide(&req, &failure("refused")), None);
    assert_eq!(
        summary(&e.patterns[0]).as_deref(),
        Some("plugin/errors: 3 errors like 'i/o.timeout$' occurred in last 30s")
    );
    assert_eq!(summary(&e.patterns[0]), None);
    assert_eq!(
        summary(&e.patterns[1]).as_deref(),
        Some("plugin/errors: 1 errors like '^plugin/forward' occurred in last 5m0s")
    );
}

#[test]
fn show_first_logs_the_first_at_the_pattern_level() {
    let e = parsed("  consolidate 30s timeout warning show_first");
    let req = request("example.org.", RecordType::AAAA);
    let first = e.decide(&req, &failure("timeout")).unwrap();
    assert_eq!(first.0, Level::Warning);
    assert_eq!(
        first.1,
        "plugin/errors: 2 example.org. AAAA: plugin/forward: timeout"
    );
    // Alone in its period: no summary, it was printed already.
    assert_eq!(summary(&e.patterns[0]), None);
    e.decide(&req, &failure("timeout"));
    e.decide(&req, &failure("timeout"));
    assert_eq!(
        summary(&e.patterns[0]).as_deref(),
        Some("plugin/errors: 2 errors like 'timeout' occurred in last 30s")
    );
}
