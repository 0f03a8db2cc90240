//! `cache` in the real binary, in front of `whoami`: whoami's answer names the client's port, so
//! a cached answer is recognisable by the port of the client that filled the cache.

mod common;

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use common::*;
use hickory_proto::op::Message;
use hickory_proto::rr::{RData, RecordType};

const COREFILE: &str = ".:PORT {
    cache {
        success 9984 30 30
    }
    whoami
}
";

/// Offsets of every TTL field (OPT's aside) in an encoded message.
fn ttl_offsets(wire: &[u8]) -> Vec<usize> {
    fn skip_name(w: &[u8], mut p: usize) -> usize {
        loop {
            let len = w[p] as usize;
            if len == 0 {
                return p + 1;
            }
            if len & 0xc0 == 0xc0 {
                return p + 2;
            }
            p += 1 + len;
        }
    }
    let count = |i: usize| u16::from_be_bytes([wire[i], wire[i + 1]]) as usize;
    let mut p = 12;
    for _ in 0..count(4) {
        p = skip_name(wire, p) + 4;
    }
    let mut out = Vec::new();
    for _ in 0..count(6) + count(8) + count(10) {
        p = skip_name(wire, p);
        let rtype = u16::from_be_bytes([wire[p], wire[p + 1]]);
        if rtype != 41 {
            out.push(p + 4);
        }
        let rdlen = u16::from_be_bytes([wire[p + 8], wire[p + 9]]) as usize;
        p += 10 + rdlen;
    }
    out
}

fn srv_port(m: &Message) -> u16 {
    m.additionals
        .iter()
        .find_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.port),
            _ => None,
        })
        .expect("whoami's SRV record")
}

fn exchange(sock: &UdpSocket, addr: std::net::SocketAddr, q: &[u8]) -> Vec<u8> {
    sock.send_to(q, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).expect("udp answer");
    buf.truncate(n);
    buf
}

#[test]
fn second_answer_is_the_same_bytes_but_ttl_and_id() {
    let s = Server::start(COREFILE);
    let mut q1 = with_edns(query("cached.example.org.", RecordType::A), 1232);
    q1.metadata.id = 0x1111;
    let first_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    first_sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let first = exchange(&first_sock, s.addr(), &q1.to_vec().unwrap());
    let first_port = first_sock.local_addr().unwrap().port();
    std::thread::sleep(Duration::from_millis(1100));

    // Another client (another port), another ID, same question.
    let mut q2 = q1.clone();
    q2.metadata.id = 0x2222;
    let second_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    second_sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let second = exchange(&second_sock, s.addr(), &q2.to_vec().unwrap());

    let m1 = Message::from_vec(&first).unwrap();
    let m2 = Message::from_vec(&second).unwrap();
    assert_eq!(m2.metadata.id, 0x2222);
    assert_eq!(srv_port(&m1), first_port);
    assert_eq!(
        srv_port(&m2),
        first_port,
        "the second answer came from the cache"
    );
    assert!(m1.additionals.iter().all(|r| r.ttl == 30));
    assert!(m2.additionals.iter().all(|r| r.ttl == 29), "{m2:?}");

    assert_eq!(first.len(), second.len());
    let offsets = ttl_offsets(&first);
    assert_eq!(offsets, ttl_offsets(&second));
    let mut a = first.clone();
    let mut b = second.clone();
    for w in [&mut a, &mut b] {
        w[..2].copy_from_slice(&[0, 0]);
        for &o in &offsets {
            w[o..o + 4].copy_from_slice(&[0, 0, 0, 0]);
        }
    }
    assert_eq!(a, b, "identical apart from ID and TTLs");
}

#[test]
fn tcp_is_answered_from_what_udp_cached() {
    let s = Server::start(COREFILE);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query("shared.example.org.", RecordType::A);
    let udp = Message::from_vec(&exchange(&sock, s.addr(), &q.to_vec().unwrap())).unwrap();
    let tcp = tcp_exchange(s.addr(), &q).expect("tcp answer");
    assert_eq!(srv_port(&tcp), srv_port(&udp));
    assert_eq!(tcp.metadata.id, q.metadata.id);
    assert_eq!(tcp.additionals.len(), udp.additionals.len());
    assert!(tcp.edns.is_none(), "no OPT for a query without one");
}

#[test]
fn keys_differ_by_type_and_dnssec_ok() {
    let s = Server::start(COREFILE);
    let port_for = |m: Message| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let answer = Message::from_vec(&exchange(&sock, s.addr(), &m.to_vec().unwrap())).unwrap();
        (srv_port(&answer), sock.local_addr().unwrap().port(), answer)
    };
    let (a1, own1, _) = port_for(query("k.example.org.", RecordType::A));
    assert_eq!(a1, own1, "first A question is a miss");
    let (a2, own2, _) = port_for(query("K.Example.ORG.", RecordType::A));
    assert_eq!(a2, own1, "case does not matter");
    assert_ne!(own2, own1);
    let (aaaa, own3, _) = port_for(query("k.example.org.", RecordType::AAAA));
    assert_eq!(aaaa, own3, "another type is another entry");
    let mut signed = with_edns(query("k.example.org.", RecordType::A), 1232);
    signed.edns.as_mut().unwrap().set_dnssec_ok(true);
    let (d, own4, answer) = port_for(signed);
    assert_eq!(d, own4, "DO is part of the key");
    assert!(answer.edns.unwrap().flags().dnssec_ok);
}

#[test]
fn bad_options_stop_the_server_with_coredns_messages() {
    let cases = [
        (
            "cache 0",
            "plugin/cache: cache TTL can not be zero or negative: 0",
        ),
        (
            "cache {\n        servfail 10m\n    }",
            "plugin/cache: caching SERVFAIL responses over 5 minutes is not permitted",
        ),
        (
            "cache {\n        nonsense\n    }",
            "Error during parsing: Wrong argument count or unexpected line ending after 'nonsense'",
        ),
    ];
    for (directive, want) in cases {
        let dir = temp_dir("cache-bad");
        let conf = dir.join("Corefile");
        std::fs::write(
            &conf,
            format!(".:{} {{\n    {directive}\n    whoami\n}}\n", free_port()),
        )
        .unwrap();
        let out = Command::new(binary())
            .arg("-conf")
            .arg(&conf)
            .output()
            .expect("run ferrodns");
        assert!(!out.status.success(), "{directive} must be rejected");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(want), "{directive}: {text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Ask from a fresh socket: (answer, our port).
fn ask_from_new_port(s: &Server, name: &str) -> (Message, u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query(name, RecordType::A);
    let m = Message::from_vec(&exchange(&sock, s.addr(), &q.to_vec().unwrap())).unwrap();
    (m, sock.local_addr().unwrap().port())
}

fn srv_owner(m: &Message) -> String {
    m.additionals
        .iter()
        .find(|r| matches!(r.data, RData::SRV(_)))
        .map(|r| r.name.to_ascii())
        .unwrap_or_default()
}

#[test]
fn serve_stale_answers_expired_entries_and_refreshes_them() {
    let s = Server::start(
        ".:PORT {
    cache 1 {
        success 9984 1 1
        serve_stale
    }
    whoami
}
",
    );
    let (first, port_a) = ask_from_new_port(&s, "stale.example.org.");
    assert_eq!(srv_port(&first), port_a);
    std::thread::sleep(Duration::from_millis(2200));
    let (stale, port_b) = ask_from_new_port(&s, "stale.example.org.");
    assert_eq!(srv_port(&stale), port_a, "the expired answer");
    assert!(stale.additionals.iter().all(|r| r.ttl == 0), "{stale:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (fresh, _) = ask_from_new_port(&s, "stale.example.org.");
    // The background refresh asked with the second client's address, over TCP as CoreDNS does.
    assert_eq!(srv_port(&fresh), port_b);
    assert!(srv_owner(&fresh).starts_with("_tcp."), "{fresh:?}");
    assert!(fresh.additionals.iter().all(|r| r.ttl == 1));
}

#[test]
fn prefetch_refreshes_before_expiry() {
    let s = Server::start(
        ".:PORT {
    cache {
        success 9984 10 10
        prefetch 1 1m 90%
    }
    whoami
}
",
    );
    let (first, port_a) = ask_from_new_port(&s, "pre.example.org.");
    assert_eq!(srv_port(&first), port_a);
    std::thread::sleep(Duration::from_millis(1100));
    // TTL 9 of 10 left, within 90%: served from cache and prefetched.
    let (hit, port_b) = ask_from_new_port(&s, "pre.example.org.");
    assert_eq!(srv_port(&hit), port_a);
    // 9 s left (8 on a machine slow enough to take another second).
    assert!(
        hit.additionals.iter().all(|r| (8..=9).contains(&r.ttl)),
        "{hit:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (after, _) = ask_from_new_port(&s, "pre.example.org.");
    assert_eq!(srv_port(&after), port_b, "the prefetched answer");
    assert!(after.additionals.iter().all(|r| r.ttl == 10));
}
