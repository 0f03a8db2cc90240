//! The server itself, end to end: the real binary on loopback, queried over UDP and TCP.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

const WHOAMI: &str = ".:PORT {\n    whoami\n}\n";

#[test]
fn whoami_over_udp_and_tcp() {
    let srv = Server::start(WHOAMI);
    for (m, proto) in [
        (srv.udp("example.org.", RecordType::A), "_udp"),
        (srv.tcp("example.org.", RecordType::A), "_tcp"),
    ] {
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.queries[0].name.to_ascii(), "example.org.");
        let a = m.additionals.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        });
        assert_eq!(a, Some("127.0.0.1".parse().unwrap()));
        assert!(
            m.additionals
                .iter()
                .any(|r| r.name.to_ascii().starts_with(proto)),
            "{m:?}"
        );
    }
}

#[test]
fn reply_echoes_id_and_question_case() {
    let srv = Server::start(WHOAMI);
    let q = query("ExAmPlE.org.", RecordType::AAAA);
    let r = udp_exchange(srv.addr(), &q).unwrap();
    assert_eq!(r.metadata.id, q.metadata.id);
    assert_eq!(r.queries[0].name.to_ascii(), "ExAmPlE.org.");
    assert_eq!(r.queries[0].query_type, RecordType::AAAA);
}

#[test]
fn names_outside_every_zone_are_refused() {
    let srv = Server::start("example.org:PORT {\n    whoami\n}\n");
    assert_eq!(
        srv.udp("www.example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        srv.udp("example.net.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::Refused
    );
    assert_eq!(
        srv.tcp("org.", RecordType::A).metadata.response_code,
        ResponseCode::Refused
    );
}

#[test]
fn non_in_class_is_refused_without_chaos() {
    let srv = Server::start(WHOAMI);
    let r = udp_exchange(
        srv.addr(),
        &query_class("version.bind.", RecordType::TXT, DNSClass::CH),
    )
    .unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn unknown_edns_version_is_badvers() {
    let srv = Server::start(WHOAMI);
    let mut q = with_edns(query("example.org.", RecordType::A), 1232);
    q.edns.as_mut().unwrap().set_version(1);
    let r = udp_exchange(srv.addr(), &q).unwrap();
    // BADVERS and BADSIG share the value 16 (RFC 6891, RFC 8945).
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert_eq!(r.edns.as_ref().map(|e| e.version()), Some(0));
}

#[test]
fn edns_is_echoed_only_when_asked() {
    let srv = Server::start(WHOAMI);
    let plain = srv.udp("example.org.", RecordType::A);
    assert!(plain.edns.is_none());
    let r = udp_exchange(
        srv.addr(),
        &with_edns(query("example.org.", RecordType::A), 4096),
    )
    .unwrap();
    assert!(r.edns.is_some());
}

fn raw_query(opcode: u8) -> Vec<u8> {
    let mut q = query("example.org.", RecordType::A).to_vec().unwrap();
    q[2] = (q[2] & 0x87) | (opcode << 3);
    q
}

#[test]
fn unknown_opcode_is_notimp() {
    let srv = Server::start(WHOAMI);
    for opcode in [2u8, 5, 15] {
        let raw = udp_raw(srv.addr(), &raw_query(opcode)).expect("an answer");
        let r = Message::from_vec(&raw).unwrap();
        assert_eq!(
            r.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}"
        );
    }
}

#[test]
fn unparseable_queries_get_formerr_with_their_id() {
    let srv = Server::start(WHOAMI);
    // A header that claims a question that is not there.
    let raw = [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let r = udp_raw(srv.addr(), &raw).expect("an answer");
    assert_eq!(&r[..2], &[0xab, 0xcd]);
    assert_eq!(r[3] & 0x0f, 1, "FORMERR");
    // Two questions: FORMERR too.
    let mut two = query("a.example.", RecordType::A);
    two.queries.push(two.queries[0].clone());
    let r = Message::from_vec(&udp_raw(srv.addr(), &two.to_vec().unwrap()).unwrap()).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

/// Malformed input of every kind, over UDP and TCP; the server must answer a good query after
/// each one.
#[test]
fn malformed_packets_never_stop_the_server() {
    let mut srv = Server::start(WHOAMI);
    let good = query("example.org.", RecordType::A).to_vec().unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0; 11],
        // Compression pointer pointing at itself.
        [&good[..12], &[0xc0, 0x0c, 0, 1, 0, 1][..]].concat(),
        // Pointer loop between two labels.
        [&good[..12], &[0x01, b'a', 0xc0, 0x0c, 0, 1, 0, 1][..]].concat(),
        // Counts far larger than the data.
        [
            &good[..4],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &good[12..],
        ]
        .concat(),
        // A label longer than 63 octets.
        [
            &good[..12],
            &[0x7f][..],
            &[b'x'; 127][..],
            &[0, 0, 1, 0, 1][..],
        ]
        .concat(),
        // Truncated question.
        good[..good.len() - 3].to_vec(),
        // A response: must be ignored, never answered.
        {
            let mut r = good.clone();
            r[2] |= 0x80;
            r
        },
    ];
    // Deterministic pseudo-random garbage, some starting with a valid header.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..300 {
        let len = (i * 7) % 300 + 1;
        let mut pkt: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        if i % 2 == 0 && len > 12 {
            pkt[..12].copy_from_slice(&good[..12]);
            pkt[2] &= 0x7f;
        }
        cases.push(pkt);
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for c in &cases {
        sock.send_to(c, srv.addr()).unwrap();
    }
    for c in cases.iter().take(40) {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        write_frame(&mut s, c);
        drop(s);
    }
    // A frame that promises more than it sends, then closes.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.write_all(&[0x01, 0x00, 1, 2, 3]).unwrap();
    drop(s);
    // The largest length prefix, then close.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.write_all(&[0xff, 0xff]).unwrap();
    drop(s);
    // A zero-length frame: the server ends that connection and nothing else.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&[0, 0]).unwrap();
    let mut buf = [0u8; 2];
    assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap_or(0), 0);
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.alive(), "server died: {}", srv.stderr_text());
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        srv.tcp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
}

#[test]
fn responses_sent_to_the_server_are_not_answered() {
    let srv = Server::start(WHOAMI);
    let mut r = query("example.org.", RecordType::A).to_vec().unwrap();
    r[2] |= 0x80;
    assert!(udp_raw(srv.addr(), &r).is_none());
}

#[test]
fn tcp_pipelines_many_queries_on_one_connection() {
    let srv = Server::start(WHOAMI);
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        let q = query(&format!("n{i}.example.org."), RecordType::A);
        ids.push(q.metadata.id);
        write_frame(&mut s, &q.to_vec().unwrap());
    }
    let mut got = Vec::new();
    for _ in 0..50 {
        let m = Message::from_vec(&read_frame(&mut s).expect("answer")).unwrap();
        got.push(m.metadata.id);
    }
    got.sort_unstable();
    ids.sort_unstable();
    assert_eq!(got, ids);
}

#[test]
fn idle_tcp_connections_do_not_block_service_and_are_closed() {
    let srv = Server::start(WHOAMI);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(srv.addr()).unwrap())
        .collect();
    // Service goes on over both transports while they sit there.
    assert_eq!(
        srv.tcp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    // And the server closes them after its read timeout.
    let mut s = idle.into_iter().next().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "connection closed by the server");
    assert!(start.elapsed() < Duration::from_secs(8));
}

fn run(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn unknown_directive_fails_startup_with_file_and_line() {
    let dir = temp_dir("bad");
    std::fs::write(
        dir.join("Corefile"),
        ".:1053 {\n    whoami\n    nosuchplugin\n}\n",
    )
    .unwrap();
    let out = run(&["-conf", "Corefile"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Corefile:3") && err.contains("nosuchplugin"),
        "{err}"
    );
}

#[test]
fn duplicate_zone_and_port_is_an_error() {
    let dir = temp_dir("dup");
    std::fs::write(
        dir.join("Corefile"),
        "example.org:1053 {\n whoami\n}\nexample.org:1053 {\n whoami\n}\n",
    )
    .unwrap();
    let out = run(&["-conf", "Corefile"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already defined"));
}

#[test]
fn flags_behave_like_coredns() {
    let dir = temp_dir("flags");
    let v = run(&["-version"], &dir);
    assert!(v.status.success());
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("ferrodns-"));
    let p = run(&["-plugins"], &dir);
    let text = String::from_utf8_lossy(&p.stdout);
    assert!(text.starts_with("Server types:\n  dns\n"), "{text}");
    assert!(
        text.contains("Other plugins:\n") && text.contains("  dns.whoami\n"),
        "{text}"
    );
    for bad in [&["-nosuch"][..], &["stray"][..], &["-conf"][..]] {
        let out = run(bad, &dir);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage"),
            "{bad:?}"
        );
    }
    let missing = run(&["-conf", "/nonexistent/Corefile"], &dir);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn conf_stdin_and_quiet() {
    let port = free_port();
    let mut child = Command::new(binary())
        .args(["-conf", "stdin", "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!(".:{port} {{\n whoami\n}}\n").as_bytes())
        .unwrap();
    let answered = first_answer(port);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(answered.is_some());
    assert!(out.stdout.is_empty(), "-quiet prints no banner");
}

#[test]
fn banner_lists_server_keys_and_version() {
    let srv = Server::start(WHOAMI);
    let out = srv.wait_stdout("ferrodns-");
    assert!(out.contains(&format!(".:{}", srv.port)), "{out}");
}

#[test]
fn dns_port_flag_sets_the_default_port() {
    let port = free_port();
    let dir = temp_dir("port");
    std::fs::write(dir.join("Corefile"), ". {\n whoami\n}\n").unwrap();
    let mut child = Command::new(binary())
        .args(["-conf", "Corefile", "-dns.port", &port.to_string()])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let answered = first_answer(port);
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered.is_some());
}

#[test]
fn sigterm_exits_zero_and_removes_pidfile() {
    let dir = temp_dir("pid");
    let pidfile = dir.join("ferrodns.pid");
    let mut srv = Server::start_with(WHOAMI, &["-pidfile", pidfile.to_str().unwrap()]);
    wait_for_file(&pidfile);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, srv.child.id());
    srv.signal(libc::SIGTERM);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pidfile.exists());
    assert!(
        srv.stdout_text()
            .contains("[INFO] SIGTERM: Shutting down servers then terminating")
    );
}

#[test]
fn badvers_answer_has_no_question() {
    let srv = Server::start(WHOAMI);
    let mut q = with_edns(query("example.org.", RecordType::A), 1232);
    q.edns.as_mut().unwrap().set_version(1);
    let r = tcp_exchange(srv.addr(), &q).unwrap();
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(
        r.queries.is_empty(),
        "CoreDNS's edns.Version drops the question"
    );
}

#[test]
fn edns_buffer_size_is_echoed() {
    let srv = Server::start(WHOAMI);
    for size in [512u16, 1232, 4096] {
        let r = udp_exchange(
            srv.addr(),
            &with_edns(query("example.org.", RecordType::A), size),
        )
        .unwrap();
        assert_eq!(r.edns.map(|e| e.max_payload()), Some(size));
    }
}

/// Clients that open connections and send nothing must not lock out the others: past the cap
/// the oldest idle connection is closed for the new one.
#[test]
fn idle_connection_flood_does_not_lock_out_tcp_clients() {
    // This test holds 1100 sockets: lift a 1024 soft limit up to the hard one.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    let srv = Server::start(WHOAMI);
    let mut idle = Vec::new();
    for _ in 0..1100 {
        match TcpStream::connect(srv.addr()) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    for i in 0..5 {
        let r = tcp_exchange(
            srv.addr(),
            &query(&format!("n{i}.example.org."), RecordType::A),
        )
        .expect("a fresh TCP query is answered under an idle flood");
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    }
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    drop(idle);
}

#[test]
fn banner_is_coredns_shaped() {
    let srv =
        Server::start("example.org:PORT example.net:PORT {\n whoami\n}\n.:PORT {\n whoami\n}\n");
    let out = srv.wait_stdout("ferrodns-");
    let p = srv.port;
    let want = format!(".:{p}\nexample.net.:{p}\nexample.org.:{p}\nferrodns-");
    assert!(out.starts_with(&want), "{out}");
}

#[test]
fn bind_serves_blocks_on_different_addresses_of_one_port() {
    // 127.0.0.2 is loopback too on Linux.
    let srv = Server::start(
        ".:PORT {\n bind 127.0.0.1\n whoami\n}\nexample.org:PORT {\n bind 127.0.0.2\n whoami\n}\n",
    );
    let p = srv.port;
    let one = std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let two = std::net::SocketAddr::from(([127, 0, 0, 2], p));
    // 127.0.0.1 serves the root zone, 127.0.0.2 only example.org.
    let r = udp_exchange(one, &query("example.net.", RecordType::A)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let r = udp_exchange(two, &query("example.net.", RecordType::A)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    let r = tcp_exchange(two, &query("www.example.org.", RecordType::A)).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let out = srv.wait_stdout("ferrodns-");
    assert!(out.contains(&format!(".:{p} on 127.0.0.1\n")), "{out}");
    assert!(
        out.contains(&format!("example.org.:{p} on 127.0.0.2\n")),
        "{out}"
    );
}

#[test]
fn bind_except_and_interface_names() {
    // `lo` is 127.0.0.1 and ::1; except ::1 leaves 127.0.0.1 only.
    let srv = Server::start(".:PORT {\n bind lo {\n  except ::1\n }\n whoami\n}\n");
    let out = srv.wait_stdout("ferrodns-");
    assert!(
        out.contains(&format!(".:{} on 127.0.0.1\n", srv.port)),
        "{out}"
    );
    assert!(!out.contains("on ::1"), "{out}");
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, srv.port));
    assert!(std::net::TcpStream::connect_timeout(&v6, Duration::from_secs(1)).is_err());
}

#[test]
fn bind_errors_fail_startup() {
    let dir = temp_dir("bindbad");
    for (text, needle) in [
        ("bind nosuch0", "not a valid IP address or interface name"),
        ("bind", "at least one address"),
    ] {
        std::fs::write(
            dir.join("Corefile"),
            format!(".:1053 {{\n {text}\n whoami\n}}\n"),
        )
        .unwrap();
        let out = run(&["-conf", "Corefile"], &dir);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("plugin/bind") && err.contains(needle), "{err}");
    }
}

#[test]
fn taken_port_fails_startup() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = temp_dir("taken");
    std::fs::write(
        dir.join("Corefile"),
        format!(".:{port} {{\n bind 127.0.0.1\n whoami\n}}\n"),
    )
    .unwrap();
    let out = run(&["-conf", "Corefile"], &dir);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn default_corefile_is_whoami_and_log() {
    let port = free_port();
    let dir = temp_dir("default");
    let mut child = Command::new(binary())
        .args(["-dns.port", &port.to_string()])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let answered = first_answer(port);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(answered.is_some());
    assert!(text.starts_with(&format!(".:{port}\nferrodns-")), "{text}");
    // `log` wrote the query it answered.
    assert!(text.contains("\"A IN example.org. udp "), "{text}");
}

#[test]
fn help_flag_exits_zero() {
    let out = run(&["-h"], &temp_dir("help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-dns.port"));
}

#[test]
fn sigint_shuts_down_gracefully_too() {
    let dir = temp_dir("int");
    let pidfile = dir.join("ferrodns.pid");
    let mut srv = Server::start_with(WHOAMI, &["-pidfile", pidfile.to_str().unwrap()]);
    wait_for_file(&pidfile);
    srv.signal(libc::SIGINT);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pidfile.exists());
    assert!(srv.stdout_text().contains("[INFO] SIGINT: Shutting down"));
}

#[test]
fn sighup_is_ignored_and_sigquit_quits_at_once() {
    let dir = temp_dir("quit");
    let pidfile = dir.join("ferrodns.pid");
    let mut srv = Server::start_with(WHOAMI, &["-pidfile", pidfile.to_str().unwrap()]);
    wait_for_file(&pidfile);
    srv.signal(libc::SIGHUP);
    srv.signal(libc::SIGUSR2);
    std::thread::sleep(Duration::from_millis(200));
    assert!(srv.alive());
    assert_eq!(
        srv.udp("example.org.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NoError
    );
    srv.signal(libc::SIGQUIT);
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!pidfile.exists());
    let out = srv.stdout_text();
    assert!(
        out.contains("[INFO] SIGQUIT: Quitting process immediately"),
        "{out}"
    );
    assert!(out.contains("[ERROR] SIGUSR2: upgrading: "), "{out}");
}

/// The pidfile is written just after the listeners are bound, so it may trail readiness a bit.
fn wait_for_file(path: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(path.exists(), "{} was not written", path.display());
}

/// Ask `example.org. A` of a server started by hand on 127.0.0.1:`port` until it answers (it
/// may still be starting), for up to ten seconds.
fn first_answer(port: u16) -> Option<Message> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(m) = udp_exchange(addr, &query("example.org.", RecordType::A)) {
            return Some(m);
        }
    }
    None
}
