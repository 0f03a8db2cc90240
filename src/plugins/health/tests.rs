use super::*;
use crate::plugins::prometheus::tests::build_str;

#[test]
fn setup_errors_read_as_coredns() {
    for (conf, want) in [
        (
            ". {\n health a:1 b:2\n whoami\n}\n",
            "Wrong argument count or unexpected line ending after 'b:2'",
        ),
        (
            ". {\n health foo\n whoami\n}\n",
            "plugin/health: address foo: missing port in address",
        ),
        (
            ". {\n health {\n  lameduck\n }\n whoami\n}\n",
            "Corefile:3 - Error during parsing: Wrong argument count",
        ),
        (
            ". {\n health {\n  lameduck 5x\n }\n whoami\n}\n",
            "plugin/health: unable to parse lameduck duration value: \"5x\": time: invalid duration \"5x\"",
        ),
        (
            ". {\n health {\n  bogus 1\n }\n whoami\n}\n",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '1'",
        ),
    ] {
        let err = build_str(conf).err().unwrap_or_default();
        assert!(err.contains(want), "{conf:?}: {err}");
    }
}

#[test]
fn endpoint_answers_ok_and_lameduck_is_recorded() {
    let (_, shared) = build_str(
        "a.example {\n health 127.0.0.1:18099 {\n  lameduck 2s\n }\n whoami\n}\nb.example {\n health 127.0.0.1:18098 {\n  lameduck 500ms\n }\n whoami\n}\n",
    )
    .unwrap();
    assert_eq!(*shared.lameduck.lock().unwrap(), Duration::from_secs(2));
    let routes = shared.http.lock().unwrap();
    let (_, _, handler) = routes
        .iter()
        .find(|(a, p, _)| a.to_string() == "127.0.0.1:18099" && *p == "/health")
        .unwrap();
    let reply = handler();
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert_eq!(routes.len(), 2);
    drop(routes);
    let text = shared.metrics.encode();
    assert!(text.contains("# HELP coredns_health_request_duration_seconds Histogram of the time (in seconds) each request took.\n"), "{text}");
    assert!(
        text.contains("coredns_health_request_duration_seconds_bucket{le=\"2.5\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "# HELP coredns_health_request_failures The number of times the health check failed.\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("coredns_health_request_failures_total 0\n"),
        "{text}"
    );
}

#[test]
fn default_address_is_every_interface_on_8080() {
    let (_, shared) = build_str(". {\n health\n whoami\n}\n").unwrap();
    let routes = shared.http.lock().unwrap();
    assert_eq!(routes[0].0.to_string(), "[::]:8080");
    assert_eq!(routes[0].1, "/health");
}
