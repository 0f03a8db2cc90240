//! `forward` passes a plain upstream reply on as bytes (and `cache` stores those bytes): the
//! real binary in front of a raw UDP upstream that answers with hand-made bytes, so the replies
//! can be compressed, forged, malformed or carry EDNS as a real server's would. What the client
//! sees must be what the parsed path gave: its own ID, question spelling and OPT record, the
//! upstream's records, options and extended rcode passed on, bad replies refused.

mod common;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// How the upstream answers a query (given the query's bytes): the datagrams to send back.
type Script = dyn Fn(&[u8]) -> Vec<Vec<u8>> + Send + Sync;

/// A UDP upstream on loopback that answers every query with what `script` makes of it.
fn upstream(script: Arc<Script>) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, src)) = sock.recv_from(&mut buf) {
            for reply in script(&buf[..n]) {
                let _ = sock.send_to(&reply, src);
            }
        }
    });
    addr.to_string()
}

/// The question section of `query` (name as sent, type, class).
fn question(query: &[u8]) -> &[u8] {
    let mut i = 12;
    while query[i] != 0 {
        i += 1 + query[i] as usize;
    }
    &query[12..i + 5]
}

/// A reply to `query`: header (QR, RD, RA, `rcode`, the counts given), the question as the
/// upstream echoes it (in lower case, as some servers do), then `rest`.
fn reply(query: &[u8], rcode: u8, counts: [u16; 3], rest: &[u8]) -> Vec<u8> {
    let mut w = vec![query[0], query[1], 0x81, 0x80 | rcode, 0, 1];
    for c in counts {
        w.extend_from_slice(&c.to_be_bytes());
    }
    w.extend(question(query).iter().map(u8::to_ascii_lowercase));
    w.extend_from_slice(rest);
    w
}

/// An A record owned by the question name (a pointer to offset 12).
fn a_record(ttl: u32, ip: [u8; 4]) -> Vec<u8> {
    let mut r = vec![0xc0, 12, 0, 1, 0, 1];
    r.extend_from_slice(&ttl.to_be_bytes());
    r.extend_from_slice(&[0, 4]);
    r.extend_from_slice(&ip);
    r
}

/// An OPT record: UDP size 1232, extended rcode `ext`, DO set, `options` as RDATA.
fn opt(ext: u8, options: &[u8]) -> Vec<u8> {
    let mut r = vec![0, 0, 41, 0x04, 0xd0, ext, 0, 0x80, 0];
    r.extend_from_slice(&(options.len() as u16).to_be_bytes());
    r.extend_from_slice(options);
    r
}

fn server(up: &str, cache: bool) -> Server {
    let cache = if cache { "cache 30\n" } else { "" };
    Server::start(&format!(".:PORT {{\n{cache}forward . {up}\n}}\n"))
}

fn ask(srv: &Server, m: &Message) -> Message {
    udp_exchange(srv.addr(), m).expect("an answer")
}

/// Ask, waiting up to 8 s: a query whose upstream keeps failing is retried until forward's
/// 5 s deadline before it is answered SERVFAIL.
fn ask_patiently(srv: &Server, m: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    sock.send_to(&m.to_vec().unwrap(), srv.addr()).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    Message::from_vec(&buf[..n]).expect("a DNS message")
}

fn first_a(m: &Message) -> Option<[u8; 4]> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0.octets()),
        _ => None,
    })
}

#[test]
fn plain_replies_keep_the_clients_id_question_and_edns() {
    // A CNAME chain with names compressed against the question and each other, and the
    // upstream's own OPT record, which the client must not see in place of its own.
    let script: Arc<Script> = Arc::new(|q: &[u8]| {
        let mut rest = Vec::new();
        // QNAME CNAME web.<pointer to the question's second label>
        rest.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'e', b'b']);
        let second = 12 + 1 + q[12] as usize;
        rest.extend_from_slice(&[0xc0, second as u8]);
        // web... A, its owner a pointer to the CNAME's target
        let target = 12 + question(q).len() + 12;
        rest.extend_from_slice(&[
            0xc0,
            target as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            0,
            60,
            0,
            4,
            192,
            0,
            2,
            9,
        ]);
        rest.extend(opt(0, &[]));
        vec![reply(q, 0, [2, 0, 1], &rest)]
    });
    let up = upstream(script);
    for cache in [false, true] {
        let srv = server(&up, cache);
        for round in 0..2 {
            // Without EDNS: no OPT comes back.
            let m = ask(&srv, &query("WwW.ExAmple.ORG.", RecordType::A));
            assert_eq!(
                m.queries[0].name.to_ascii(),
                "WwW.ExAmple.ORG.",
                "{cache} {round}"
            );
            assert!(m.edns.is_none(), "{cache} {round}");
            assert_eq!(m.answers.len(), 2);
            assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
            assert_eq!(first_a(&m), Some([192, 0, 2, 9]));
            // The target's suffix points into the question, which carries the client's
            // spelling (a name's case carries no meaning, RFC 4343).
            assert_eq!(
                m.answers[1].name.to_lowercase().to_ascii(),
                "web.example.org."
            );

            // With EDNS: the client's size echoed, its DO mirrored (clear here though the
            // upstream set it), one OPT.
            let mut q = with_edns(query("www.EXAMPLE.org.", RecordType::A), 4000);
            q.metadata.id = 999;
            let m = ask(&srv, &q);
            assert_eq!(m.metadata.id, 999);
            assert_eq!(m.queries[0].name.to_ascii(), "www.EXAMPLE.org.");
            let e = m.edns.as_ref().expect("the client's OPT");
            assert_eq!(e.max_payload(), 4000);
            assert!(!e.flags().dnssec_ok);
            assert_eq!(m.additionals.len(), 0);
            assert_eq!(first_a(&m), Some([192, 0, 2, 9]));
        }
    }
}

#[test]
fn edns_options_and_extended_rcodes_pass_on() {
    let script: Arc<Script> = Arc::new(|q: &[u8]| {
        let name = question(q);
        if name.windows(4).any(|w| w.eq_ignore_ascii_case(b"nsid")) {
            // NSID "up1" in the upstream's OPT.
            let nsid = [0, 3, 0, 3, b'u', b'p', b'1'];
            let mut rest = a_record(60, [192, 0, 2, 1]);
            rest.extend(opt(0, &nsid));
            vec![reply(q, 0, [1, 0, 1], &rest)]
        } else {
            // BADVERS (16): extended rcode 1 in the OPT, 0 in the header.
            vec![reply(q, 0, [0, 0, 1], &opt(1, &[]))]
        }
    });
    let up = upstream(script);
    let srv = server(&up, false);
    let m = ask(
        &srv,
        &with_edns(query("nsid.example.", RecordType::A), 1232),
    );
    let e = m.edns.as_ref().expect("OPT");
    let options = format!("{:?}", e.options());
    assert!(
        options.contains("NSIDPayload([117, 112, 49])"),
        "the upstream's NSID: {options}"
    );
    assert_eq!(first_a(&m), Some([192, 0, 2, 1]));

    let m = ask(
        &srv,
        &with_edns(query("vers.example.", RecordType::A), 1232),
    );
    // 16: BADVERS (hickory names the code BADSIG, which shares it).
    assert_eq!(u16::from(m.metadata.response_code), 16);
}

#[test]
fn forged_malformed_and_truncated_replies() {
    let script: Arc<Script> = Arc::new(|q: &[u8]| {
        let name = String::from_utf8_lossy(question(q)).to_ascii_lowercase();
        if name.contains("forged") {
            // Right ID, another question first (ignored), then the real answer.
            let mut other = q.to_vec();
            let at = 12 + 1;
            other[at] = b'x';
            let forged = reply(&other, 0, [1, 0, 0], &a_record(60, [6, 6, 6, 6]));
            let real = reply(q, 0, [1, 0, 0], &a_record(60, [192, 0, 2, 2]));
            vec![forged, real]
        } else if name.contains("junk") {
            // Right ID and question, then an answer cut in the middle of its RDATA.
            let mut r = reply(q, 0, [1, 0, 0], &a_record(60, [192, 0, 2, 3]));
            r.truncate(r.len() - 2);
            vec![r]
        } else if name.contains("badptr") {
            // An owner name pointing forward, past itself: hickory refuses it.
            let mut rec = a_record(60, [192, 0, 2, 4]);
            rec[1] = 200;
            vec![reply(q, 0, [1, 0, 0], &rec)]
        } else {
            // TC set, no records.
            let mut r = reply(q, 0, [0, 0, 0], &[]);
            r[2] |= 0x02;
            vec![r]
        }
    });
    let up = upstream(script);
    let srv = server(&up, true);
    let m = ask(&srv, &query("forged.example.", RecordType::A));
    assert_eq!(first_a(&m), Some([192, 0, 2, 2]));
    let m = ask_patiently(&srv, &query("junk.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = ask_patiently(&srv, &query("badptr.example.", RecordType::A));
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let m = ask(&srv, &query("tc.example.", RecordType::A));
    assert!(m.metadata.truncation);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Not cached: a truncated answer is asked again (and still truncated).
    let m = ask(&srv, &query("tc.example.", RecordType::A));
    assert!(m.metadata.truncation);
}

#[test]
fn cached_wire_answers_count_down_and_keep_their_shape() {
    let script: Arc<Script> = Arc::new(|q: &[u8]| {
        let mut rest = a_record(300, [192, 0, 2, 5]);
        rest.extend(a_record(100, [192, 0, 2, 6]));
        vec![reply(q, 0, [2, 0, 0], &rest)]
    });
    let up = upstream(script);
    let srv = server(&up, true);
    let first = ask(&srv, &query("ttl.example.", RecordType::A));
    // Every TTL is the smallest one, at most `cache 30`'s 30 s (CoreDNS's cache sets them
    // all).
    assert!(first.answers.iter().all(|r| r.ttl == 30), "{first:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let hit = ask(&srv, &query("TTL.example.", RecordType::A));
    assert_eq!(hit.queries[0].name.to_ascii(), "TTL.example.");
    assert_eq!(hit.answers.len(), 2);
    assert!(hit.answers.iter().all(|r| r.ttl < 30), "{hit:?}");
}
