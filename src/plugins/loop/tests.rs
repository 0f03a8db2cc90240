//! Detection logic with a recorder in place of the fatal exit, and the probe against real UDP
//! servers on loopback: one that answers, one whose chain sends every query back to itself.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::*;
use crate::corefile::{parse_key, parse_str};
use crate::metrics::Metrics;
use crate::plugin::setup::{BlockConfig, Shared};
use crate::plugin::{Chain, Failure, Proto, Response};

type Log = Arc<Mutex<Vec<String>>>;

fn recorder() -> (Log, OnLoop) {
    let log: Log = Arc::default();
    let sink = log.clone();
    (
        log,
        Box::new(move |m: &str| sink.lock().unwrap().push(m.to_string())),
    )
}

fn request(name: &str, qtype: RecordType, src: &str) -> Request {
    let mut m = Message::query();
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let src: SocketAddr = src.parse().unwrap();
    Request::new(m, src, src, Proto::Udp, 40).unwrap()
}

/// Answers everything with an empty NOERROR.
struct Answer;

impl Plugin for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }
    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        Served::Ready(Ok(Response::new(req.reply(), "answer")))
    }
}

fn serve_once(l: &Arc<Loop>, req: &Request) {
    let chain = Chain {
        plugins: vec![l.clone() as Arc<dyn Plugin>, Arc::new(Answer)],
    };
    match chain.serve(req) {
        Served::Ready(Ok(_)) => {}
        _ => panic!("the query must pass through"),
    }
}

#[test]
fn qname_is_two_random_numbers_in_the_zone() {
    for (zone, suffix) in [(".", ""), ("example.org.", "example.org.")] {
        let l = Loop::new(zone, ":53".into(), Box::new(|_| {}));
        let q = l.qname();
        let rest = q.strip_suffix(suffix).unwrap();
        let labels: Vec<&str> = rest.trim_end_matches('.').split('.').collect();
        assert_eq!(labels.len(), 2, "{q}");
        for label in labels {
            let n: u64 = label.parse().unwrap();
            assert!(n <= i64::MAX as u64);
        }
        assert!(q.ends_with('.'));
        let other = Loop::new(zone, ":53".into(), Box::new(|_| {}));
        assert_ne!(q, other.qname());
    }
}

#[test]
fn third_sighting_is_fatal_with_coredns_message() {
    let (log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":1053".into(), on_loop));
    let probe = l.qname().to_string();
    let req = request(&probe, RecordType::HINFO, "127.0.0.1:55953");
    serve_once(&l, &req);
    serve_once(&l, &req);
    assert!(log.lock().unwrap().is_empty(), "twice is not yet a loop");
    serve_once(&l, &req);
    let got = log.lock().unwrap().clone();
    assert_eq!(
        got,
        [format!(
            "Loop (127.0.0.1:55953 -> :1053) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {probe}\""
        )]
    );
}

#[test]
fn only_the_probe_counts() {
    struct Case {
        name: &'static str,
        zone: &'static str,
        /// Which question to send three times (`PROBE` stands for the probe name).
        qname: &'static str,
        qtype: RecordType,
        disabled: bool,
        fatal: bool,
    }
    let cases = [
        Case {
            name: "probe",
            zone: ".",
            qname: "PROBE",
            qtype: RecordType::HINFO,
            disabled: false,
            fatal: true,
        },
        Case {
            name: "probe in a zone",
            zone: "example.org.",
            qname: "PROBE",
            qtype: RecordType::HINFO,
            disabled: false,
            fatal: true,
        },
        Case {
            name: "upper-case probe",
            zone: ".",
            qname: "UPPER",
            qtype: RecordType::HINFO,
            disabled: false,
            fatal: true,
        },
        Case {
            name: "other type",
            zone: ".",
            qname: "PROBE",
            qtype: RecordType::A,
            disabled: false,
            fatal: false,
        },
        Case {
            name: "other name",
            zone: ".",
            qname: "1.2.",
            qtype: RecordType::HINFO,
            disabled: false,
            fatal: false,
        },
        Case {
            name: "outside the zone",
            zone: "example.org.",
            qname: "1.2.example.net.",
            qtype: RecordType::HINFO,
            disabled: false,
            fatal: false,
        },
        Case {
            name: "after the probe ended",
            zone: ".",
            qname: "PROBE",
            qtype: RecordType::HINFO,
            disabled: true,
            fatal: false,
        },
    ];
    for case in cases {
        let (log, on_loop) = recorder();
        let l = Arc::new(Loop::new(case.zone, ":53".into(), on_loop));
        if case.disabled {
            l.off.store(true, Ordering::Relaxed);
        }
        let qname = match case.qname {
            "PROBE" => l.qname().to_string(),
            "UPPER" => l.qname().to_uppercase(),
            other => other.to_string(),
        };
        let req = request(&qname, case.qtype, "[::1]:4000");
        for _ in 0..3 {
            serve_once(&l, &req);
        }
        let log = log.lock().unwrap();
        assert_eq!(!log.is_empty(), case.fatal, "{}", case.name);
        if case.fatal {
            assert!(
                log[0].starts_with("Loop ([::1]:4000 -> :53) detected for zone \""),
                "{}",
                log[0]
            );
            assert!(log[0].contains(&format!("for zone \"{}\"", case.zone)));
        }
    }
}

fn setup_loop(lines: &str, key: &str, listen: Vec<IpAddr>) -> Result<Arc<dyn Plugin>, String> {
    let text = format!("{key} {{\n{lines}\n}}\n");
    let corefile = parse_str("Corefile", &text, Path::new("/")).map_err(|e| e.to_string())?;
    let keys = parse_key(key).unwrap();
    let mut cfg = BlockConfig {
        listen,
        ..BlockConfig::default()
    };
    let shared = Shared::new(Arc::new(Metrics::new()));
    let mut c = Setup {
        directives: corefile.blocks[0].directives.iter().collect(),
        keys: &keys,
        zones: keys.iter().map(|k| k.zone.clone()).collect(),
        block: &mut cfg,
        shared: &shared,
    };
    match setup(&mut c) {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err("no handler".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn setup_takes_no_arguments() {
    assert!(setup_loop("loop", ".:53", vec![]).is_ok());
    assert_eq!(
        setup_loop("loop now", ".:53", vec![]).err().as_deref(),
        Some(
            "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'now'"
        )
    );
    assert!(setup_loop("loop\nloop", ".:53", vec![]).is_err());
}

#[test]
fn probe_and_shown_addresses() {
    let table: [(Option<&str>, &str, &str); 5] = [
        (None, ":1053", "127.0.0.1:1053"),
        (Some("127.0.0.2"), "127.0.0.2:1053", "127.0.0.2:1053"),
        (Some("0.0.0.0"), "0.0.0.0:1053", "127.0.0.1:1053"),
        (Some("::1"), "[::1]:1053", "[::1]:1053"),
        (Some("::"), "[::]:1053", "[::1]:1053"),
    ];
    for (listen, shown, target) in table {
        let (s, t) = addresses(listen.map(|ip| ip.parse().unwrap()), 1053);
        assert_eq!(s, shown);
        assert_eq!(t.to_string(), target);
    }
}

/// A tiny UDP server on loopback running `chain` for every datagram.
async fn udp_server(chain: Chain) -> SocketAddr {
    let sock = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, src)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(msg) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(req) = Request::new(msg, src, addr, Proto::Udp, n) else {
                continue;
            };
            let (sock, chain) = (sock.clone(), chain.clone());
            tokio::spawn(async move {
                if let Ok(resp) = chain.serve(&req).await {
                    let _ = sock
                        .send_to(&resp.into_message().to_vec().unwrap(), src)
                        .await;
                }
            });
        }
    });
    addr
}

/// Sends every query on to `upstream` over UDP, as `forward` would: with `upstream` set to
/// the server itself, this is the loop the plugin is there to find.
struct Reflect {
    upstream: Mutex<Option<SocketAddr>>,
}

impl Plugin for Reflect {
    fn name(&self) -> &'static str {
        "reflect"
    }
    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let upstream = self.upstream.lock().unwrap().expect("upstream set");
        Served::pending(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            sock.send_to(&req.msg().to_vec().unwrap(), upstream)
                .await
                .unwrap();
            let mut buf = vec![0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf)).await {
                Ok(Ok(n)) => Ok(Response::new(
                    Message::from_vec(&buf[..n]).unwrap(),
                    "reflect",
                )),
                _ => Err(Failure::new(ResponseCode::ServFail)),
            }
        })
    }
}

fn fast() -> Timing {
    Timing {
        first: Duration::ZERO,
        retry: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        deadline: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_finds_a_real_forwarding_loop() {
    let (log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":PORT".into(), on_loop));
    let reflect = Arc::new(Reflect {
        upstream: Mutex::new(None),
    });
    let addr = udp_server(Chain {
        plugins: vec![l.clone() as Arc<dyn Plugin>, reflect.clone()],
    })
    .await;
    *reflect.upstream.lock().unwrap() = Some(addr);
    let task = tokio::spawn(probe(Arc::downgrade(&l), addr, fast()));
    for _ in 0..100 {
        if !log.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = log.lock().unwrap().first().cloned().expect("loop detected");
    assert!(got.starts_with("Loop (127.0.0.1:"), "{got}");
    assert!(got.ends_with(&format!(
        " -> :PORT) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
        l.qname()
    )), "{got}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answered_switches_the_plugin_off() {
    let (log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":PORT".into(), on_loop));
    let addr = udp_server(Chain {
        plugins: vec![l.clone() as Arc<dyn Plugin>, Arc::new(Answer)],
    })
    .await;
    probe(Arc::downgrade(&l), addr, fast()).await;
    assert!(l.disabled());
    assert!(log.lock().unwrap().is_empty());
    // The probe name replayed by anyone afterwards is harmless.
    let req = request(l.qname(), RecordType::HINFO, "127.0.0.1:1");
    for _ in 0..5 {
        serve_once(&l, &req);
    }
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_retries_until_the_server_listens() {
    let (log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":PORT".into(), on_loop));
    // Find a free port, then start listening on it only after a while.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target: SocketAddr = ([127, 0, 0, 1], port).into();
    let task = tokio::spawn(probe(Arc::downgrade(&l), target, fast()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!l.disabled(), "still trying");
    let sock = tokio::net::UdpSocket::bind(target).await.unwrap();
    let mut buf = vec![0u8; 512];
    let (n, src) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let q = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(q.queries[0].query_type, RecordType::HINFO);
    assert_eq!(q.queries[0].name.to_ascii(), l.qname());
    assert!(q.metadata.recursion_desired);
    let mut reply = Message::response(q.metadata.id, q.metadata.op_code);
    reply.queries = q.queries.clone();
    sock.send_to(&reply.to_vec().unwrap(), src).await.unwrap();
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
    assert!(l.disabled());
    assert!(log.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_gives_up_at_the_deadline() {
    let (_log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":PORT".into(), on_loop));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let timing = Timing {
        deadline: Duration::from_millis(600),
        ..fast()
    };
    let started = std::time::Instant::now();
    probe(Arc::downgrade(&l), ([127, 0, 0, 1], port).into(), timing).await;
    assert!(l.disabled());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_ends_when_the_plugin_is_dropped() {
    let (_log, on_loop) = recorder();
    let l = Arc::new(Loop::new(".", ":PORT".into(), on_loop));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let timing = Timing {
        deadline: Duration::from_secs(60),
        ..fast()
    };
    let task = tokio::spawn(probe(
        Arc::downgrade(&l),
        ([127, 0, 0, 1], port).into(),
        timing,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(l);
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .expect("probe task ended")
        .unwrap();
}
