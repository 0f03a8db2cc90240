//! The upstream's reply kept as bytes: a walk that decides, without hickory's parse, that a
//! reply is one hickory would read and that answers our question, so the bytes can be passed on
//! as they came (a wire-form [`crate::plugin::Response`]) instead of being parsed into owned
//! records and encoded again, which was most of the user-space cost of a forwarded miss.
//!
//! The walk accepts a narrow, common shape and declines everything else; a declined reply goes
//! through hickory's parse exactly as before, so its verdict (answer, forged, malformed) does not
//! change. What is accepted must therefore be a subset of what hickory reads (the tests check
//! this on mutated replies):
//! - a response (QR set, opcode QUERY, Z clear) with one question, written out without a
//!   pointer, equal to ours ignoring ASCII case;
//! - records of class IN with RDATA of type A, AAAA, CNAME, NS, PTR, SOA or TXT that fill their
//!   RDLENGTH exactly (hickory's length check), none empty (hickory refuses empty RDATA outside
//!   UPDATE);
//! - names whose compression pointers point at the start of a label of an earlier name (which
//!   is what hickory's "prior to this name" rule needs, and also what `loadbalance` relies on to
//!   move address records as bytes), at most 255 octets expanded (hickory's limit);
//! - at most one OPT record, the last one, with a root owner, no options, no extended rcode,
//!   version 0 and no flag but DO: that is all the server replaces with the client's own OPT;
//!   any other OPT (options such as NSID, an extended rcode) keeps hickory's path, which passes
//!   it on;
//! - nothing after the last record.

use hickory_proto::rr::Name;

use crate::plugin::Request;
use crate::plugin::rr::{
    CLASS_IN, HEADER, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_NS, TYPE_OPT, TYPE_PTR, TYPE_SOA,
    TYPE_TXT,
};

/// The question a reply must answer, kept without allocating: its name in wire form in lower
/// case, its type and class.
#[derive(Clone, Copy)]
pub struct Question {
    name: [u8; 255],
    len: u8,
    /// A name built without the trailing root (possible only for a query a plugin rewrote) is
    /// never equal to a name read from the wire in hickory's eyes; kept so, as before.
    fqdn: bool,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    pub fn of(req: &Request) -> Self {
        match req.qname_wire() {
            Some(w) if w.len() <= 255 => {
                let mut q = Question::empty(req.qtype().into(), req.qclass().into());
                for (d, s) in q.name.iter_mut().zip(w) {
                    *d = s.to_ascii_lowercase();
                }
                q.len = w.len() as u8;
                q
            }
            _ => Question::new(req.qname(), req.qtype().into(), req.qclass().into()),
        }
    }

    pub fn new(name: &Name, qtype: u16, qclass: u16) -> Self {
        let mut q = Question::empty(qtype, qclass);
        q.set_name(name);
        q.fqdn = name.is_fqdn();
        q
    }

    fn empty(qtype: u16, qclass: u16) -> Self {
        Question {
            name: [0; 255],
            len: 1,
            fqdn: true,
            qtype,
            qclass,
        }
    }

    fn set_name(&mut self, name: &Name) {
        let mut pos = 0;
        for label in name.iter() {
            // A valid name fits: at most 255 octets with the root label.
            if pos + 1 + label.len() >= self.name.len() {
                break;
            }
            self.name[pos] = label.len() as u8;
            for (d, s) in self.name[pos + 1..].iter_mut().zip(label) {
                *d = s.to_ascii_lowercase();
            }
            pos += 1 + label.len();
        }
        self.name[pos] = 0;
        self.len = (pos + 1) as u8;
    }

    /// The name in wire form, lower case.
    pub fn name(&self) -> &[u8] {
        &self.name[..self.len as usize]
    }

    /// Whether `name` (hickory's, from a parsed reply) is this question's name, ignoring ASCII
    /// case as hickory's `Name` equality does.
    pub fn same_name(&self, name: &Name) -> bool {
        if self.fqdn != name.is_fqdn() {
            return false;
        }
        let mut pos = 0;
        let want = self.name();
        for label in name.iter() {
            let Some(&len) = want.get(pos) else {
                return false;
            };
            let len = len as usize;
            if len != label.len() || len == 0 {
                return false;
            }
            let Some(mine) = want.get(pos + 1..pos + 1 + len) else {
                return false;
            };
            if !mine.eq_ignore_ascii_case(label) {
                return false;
            }
            pos += 1 + len;
        }
        want.get(pos) == Some(&0) && pos + 1 == want.len()
    }
}

/// A reply the walk accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plain {
    /// Where the OPT record starts (it is the last record), if there is one.
    pub opt_at: Option<usize>,
    /// Where the question name ends.
    pub qname_end: usize,
}

/// Label starts seen so far, with the expanded length of the name from there (root included):
/// where a pointer may point, and how long it makes the name. Only the first `done` entries
/// count: the labels of the name being read are added after them and only count once that name
/// is read, so a pointer can only reach an earlier name (hickory's rule).
struct Labels {
    offset: [u16; 48],
    /// The length of the name from that label on (while its name is read: before it).
    len: [u8; 48],
    done: usize,
}

impl Labels {
    fn suffix(&self, target: usize) -> Option<usize> {
        let i = self.offset[..self.done]
            .iter()
            .position(|&o| usize::from(o) == target)?;
        Some(usize::from(self.len[i]))
    }
}

/// Read the name at `pos`; returns where it ends.
fn name(wire: &[u8], mut pos: usize, labels: &mut Labels) -> Option<usize> {
    // Each label of this name is noted with the length of the name before it; once the whole
    // length is known, that becomes the length from it on. Labels past the table's room are
    // not noted (a pointer to them makes the walk decline).
    let mut n = labels.done;
    let mut own = 0usize;
    let (end, tail) = loop {
        let len = *wire.get(pos)? as usize;
        match len & 0xc0 {
            0 if len == 0 => break (pos + 1, 1),
            0 => {
                if n < labels.offset.len() {
                    labels.offset[n] = pos as u16;
                    labels.len[n] = own as u8;
                    n += 1;
                }
                own += 1 + len;
                if own > 255 {
                    return None;
                }
                pos += 1 + len;
            }
            0xc0 => {
                let target = (len & 0x3f) << 8 | usize::from(*wire.get(pos + 1)?);
                break (pos + 2, labels.suffix(target)?);
            }
            _ => return None,
        }
    };
    let total = own + tail;
    if total > 255 {
        return None;
    }
    for len in &mut labels.len[labels.done..n] {
        *len = (total - usize::from(*len)) as u8;
    }
    labels.done = n;
    Some(end)
}

/// Walk `wire` as described in the module documentation. `None`: leave it to hickory.
pub fn walk(wire: &[u8], question: &Question) -> Option<Plain> {
    let header = wire.get(..HEADER)?;
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    // QR set, opcode QUERY; Z clear (hickory does not keep it, so a re-encoded reply drops it).
    if header[2] & 0xf8 != 0x80 || header[3] & 0x40 != 0 || count(4) != 1 || !question.fqdn {
        return None;
    }
    let (an, ns, ar) = (count(6), count(8), count(10));
    // The question: written out at offset 12 (nothing earlier to point to), our name. Compared
    // whole: length octets (below 64) are their own lower case, so bytes equal ignoring case
    // are the same labels.
    let want = question.name();
    let qname_end = HEADER + want.len();
    if !wire.get(HEADER..qname_end)?.eq_ignore_ascii_case(want) {
        return None;
    }
    let fixed = wire.get(qname_end..qname_end + 4)?;
    if u16::from_be_bytes([fixed[0], fixed[1]]) != question.qtype
        || u16::from_be_bytes([fixed[2], fixed[3]]) != question.qclass
    {
        return None;
    }
    let mut labels = Labels {
        offset: [0; 48],
        len: [0; 48],
        done: 0,
    };
    name(wire, HEADER, &mut labels)?;
    let mut pos = qname_end + 4;

    let records = an + ns + ar;
    let mut opt_at = None;
    for i in 0..records {
        let start = pos;
        pos = name(wire, pos, &mut labels)?;
        let fixed = wire.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata_at = pos + 10;
        let end = rdata_at + rdlen;
        if end > wire.len() {
            return None;
        }
        if rtype == TYPE_OPT {
            // Only the last record, in the additional section, plain (see above).
            let plain = i + 1 == records
                && i >= an + ns
                && pos == start + 1
                && fixed[4] == 0
                && fixed[5] == 0
                && fixed[6] & 0x7f == 0
                && fixed[7] == 0
                && rdlen == 0;
            if !plain {
                return None;
            }
            opt_at = Some(start);
            pos = end;
            continue;
        }
        if class != CLASS_IN || rdlen == 0 {
            return None;
        }
        let filled = match rtype {
            TYPE_A => rdlen == 4,
            TYPE_AAAA => rdlen == 16,
            TYPE_CNAME | TYPE_NS | TYPE_PTR => name(wire, rdata_at, &mut labels)? == end,
            TYPE_SOA => {
                let p = name(wire, rdata_at, &mut labels)?;
                let p = name(wire, p, &mut labels)?;
                p + 20 == end
            }
            TYPE_TXT => {
                // Character strings until RDLENGTH is used up, the last one inside it.
                let mut p = rdata_at;
                while p < end {
                    p += 1 + usize::from(wire[p]);
                }
                p == end
            }
            _ => false,
        };
        if !filled {
            return None;
        }
        pos = end;
    }
    (pos == wire.len()).then_some(Plain { opt_at, qname_end })
}

/// The query to send upstream, written straight from a request read from the wire
/// ([`Request::from_wire`]: header, one question, at most an OPT record without options); the
/// bytes are the ones `req.msg().to_vec()` gives (the tests compare them), without building the
/// message. `None` for a request built from a parsed message (a query a plugin changed, or one
/// the hand reader declined): that one is encoded by hickory.
pub fn query(req: &Request) -> Option<Vec<u8>> {
    let qname = req.qname_wire()?;
    let m = req.metadata();
    let edns = req.edns();
    let mut w = Vec::with_capacity(HEADER + qname.len() + 4 + 11);
    let b2 = u8::from(m.message_type == hickory_proto::op::MessageType::Response) << 7
        | (u8::from(m.op_code) & 0x0f) << 3
        | u8::from(m.authoritative) << 2
        | u8::from(m.truncation) << 1
        | u8::from(m.recursion_desired);
    let b3 = u8::from(m.recursion_available) << 7
        | u8::from(m.authentic_data) << 5
        | u8::from(m.checking_disabled) << 4
        | m.response_code.low();
    let id = m.id.to_be_bytes();
    w.extend_from_slice(&[
        id[0],
        id[1],
        b2,
        b3,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ]);
    w.extend_from_slice(qname);
    w.extend_from_slice(&u16::from(req.qtype()).to_be_bytes());
    w.extend_from_slice(&u16::from(req.qclass()).to_be_bytes());
    if let Some(e) = edns {
        if !e.options().options.is_empty() {
            return None;
        }
        // As hickory writes it: the size at least 512, the extended rcode from the header's.
        let size = e.max_payload().max(512).to_be_bytes();
        let flags = u16::from(*e.flags()).to_be_bytes();
        w.extend_from_slice(&[
            0,
            0,
            41,
            size[0],
            size[1],
            m.response_code.high(),
            e.version(),
            flags[0],
            flags[1],
            0,
            0,
        ]);
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Proto;
    use crate::plugin::response::typify;
    use crate::plugins::cache::wire as cache_wire;
    use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
    use hickory_proto::rr::{RData, Record, RecordType};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    /// Replies of the shapes the walk accepts, and a few it leaves to hickory.
    fn replies() -> Vec<Vec<u8>> {
        let q = Query::query(n("WWW.example.org."), RecordType::A);
        let mut out = Vec::new();
        for variant in 0..6 {
            let mut m = Message::response(0x1234, OpCode::Query);
            m.metadata.recursion_available = true;
            m.queries.push(q.clone());
            match variant {
                0 => {
                    m.answers.push(Record::from_rdata(
                        n("www.example.org."),
                        300,
                        RData::CNAME(CNAME(n("web.example.org."))),
                    ));
                    m.answers.push(Record::from_rdata(
                        n("web.example.org."),
                        60,
                        RData::A(A::new(192, 0, 2, 1)),
                    ));
                    m.additionals.push(Record::from_rdata(
                        n("web.example.org."),
                        60,
                        RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
                    ));
                }
                1 | 2 => {
                    m.metadata.response_code = if variant == 1 {
                        ResponseCode::NXDomain
                    } else {
                        ResponseCode::NoError
                    };
                    m.authorities.push(Record::from_rdata(
                        n("example.org."),
                        900,
                        RData::SOA(SOA::new(
                            n("ns.example.org."),
                            n("admin.example.org."),
                            1,
                            3600,
                            600,
                            86400,
                            120,
                        )),
                    ));
                }
                3 => {
                    m.authorities.push(Record::from_rdata(
                        n("example.org."),
                        900,
                        RData::NS(NS(n("ns.example.org."))),
                    ));
                    m.additionals.push(Record::from_rdata(
                        n("ns.example.org."),
                        900,
                        RData::TXT(TXT::new(vec!["a".into(), "".into(), "bcd".into()])),
                    ));
                }
                4 => m.metadata.response_code = ResponseCode::ServFail,
                _ => {
                    m.answers.push(Record::from_rdata(
                        n("www.example.org."),
                        30,
                        RData::A(A::new(192, 0, 2, 7)),
                    ));
                }
            }
            for edns in [false, true] {
                let mut m = m.clone();
                if edns {
                    let mut e = Edns::new();
                    e.set_max_payload(1232);
                    e.set_dnssec_ok(variant % 2 == 0);
                    m.edns = Some(e);
                }
                out.push(m.to_vec().unwrap());
            }
        }
        out
    }

    /// A small deterministic generator, so a failure can be reproduced.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// Whatever the walk accepts, hickory reads as an answer to the question, and the bytes
    /// with the OPT stripped read as the same message without EDNS; the cache's typing and TTL
    /// from the bytes agree with those from the parse.
    #[test]
    fn walk_accepts_only_what_hickory_reads() {
        let question = Question::new(&n("www.EXAMPLE.org."), 1, 1);
        let mut rng = Lcg(7);
        let (mut accepted, mut declined) = (0, 0);
        for base in replies() {
            assert!(walk(&base, &question).is_some(), "{base:02x?}");
            for round in 0..3000 {
                let mut w = base.clone();
                let edits = 1 + rng.next() % 3;
                for _ in 0..edits {
                    let i = (rng.next() as usize) % w.len();
                    match rng.next() % 5 {
                        0 => w[i] = rng.next() as u8,
                        1 => w[i] ^= 1 << (rng.next() % 8),
                        2 => w.truncate(i.max(12)),
                        3 => w.insert(i, rng.next() as u8),
                        _ => {
                            // A pointer somewhere: the interesting case for names.
                            if i + 1 < w.len() {
                                w[i] = 0xc0;
                                w[i + 1] = (rng.next() % w.len() as u64) as u8;
                            }
                        }
                    }
                }
                if round == 0 {
                    w = base.clone();
                }
                let Some(plain) = walk(&w, &question) else {
                    declined += 1;
                    continue;
                };
                accepted += 1;
                let m = Message::from_vec(&w).unwrap_or_else(|e| {
                    panic!("walk accepted what hickory refuses ({e}): {w:02x?}")
                });
                assert_eq!(
                    m.metadata.message_type,
                    hickory_proto::op::MessageType::Response
                );
                assert_eq!(m.queries.len(), 1);
                assert_eq!(m.queries[0].name, n("www.example.org."));
                assert!(m.signature.is_none());
                assert_eq!(m.metadata.response_code.high(), 0);
                let mut stripped = w.clone();
                if let Some(at) = plain.opt_at {
                    let e = m.edns.as_ref().expect("an OPT");
                    assert!(e.options().options.is_empty());
                    stripped.truncate(at);
                    let ar = u16::from_be_bytes([stripped[10], stripped[11]]) - 1;
                    stripped[10..12].copy_from_slice(&ar.to_be_bytes());
                } else {
                    assert!(m.edns.is_none());
                }
                let s = Message::from_vec(&stripped).expect("stripped reads");
                let mut want = m.clone();
                want.edns = None;
                assert_eq!(s, want, "{w:02x?}");

                let l = cache_wire::layout(&stripped, 0).expect("the cache walks it");
                assert!(l.plain, "{w:02x?}");
                for do_bit in [false, true] {
                    let kind = typify(&s, do_bit, l.expired_sig);
                    assert_eq!(l.shape(&stripped).typify(do_bit, l.expired_sig), kind);
                    assert_eq!(l.minimal_ttl(kind), cache_wire::minimal_ttl(&s, kind));
                }
            }
        }
        assert!(accepted > 1000 && declined > 1000, "{accepted} {declined}");
    }

    #[test]
    fn question_names_compare_as_hickory_does() {
        let q = Question::new(&n("Www.Example.ORG."), 1, 1);
        assert!(q.same_name(&n("www.example.org.")));
        assert!(!q.same_name(&n("www.example.org")), "not fully qualified");
        assert!(!q.same_name(&n("ww.example.org.")));
        assert!(!q.same_name(&n("www.example.org.x.")));
        assert!(!q.same_name(&Name::root()));
        assert!(Question::new(&Name::root(), 1, 1).same_name(&Name::root()));
    }

    /// The hand-written upstream query is byte for byte the one hickory encodes.
    #[test]
    fn query_bytes_are_hickorys() {
        let a: std::net::SocketAddr = "127.0.0.1:53".parse().unwrap();
        let mut cases = Vec::new();
        for flags in [
            [0x01u8, 0x00],
            [0x00, 0x30],
            [0x01, 0x20],
            [0x79, 0x9f],
            [0x81, 0x80],
        ] {
            for opt in [
                None,
                Some([0u8, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]),
                Some([0, 0, 41, 0, 100, 0, 0, 0, 0, 0, 0]),
                Some([0, 0, 41, 0x04, 0xd0, 1, 1, 0x7f, 0xff, 0, 0]),
            ] {
                let mut w = vec![0xab, 0xcd, flags[0], flags[1], 0, 1, 0, 0, 0, 0, 0, 0];
                w[11] = u8::from(opt.is_some());
                for l in [&b"Www"[..], b"eXample", b"org"] {
                    w.push(l.len() as u8);
                    w.extend_from_slice(l);
                }
                w.extend_from_slice(&[0, 0, 28, 0, 1]);
                if let Some(o) = opt {
                    w.extend_from_slice(&o);
                }
                cases.push(w);
            }
        }
        for w in cases {
            let Some(req) = Request::from_wire(&w, a, a, Proto::Udp) else {
                continue;
            };
            let mine = query(&req).expect("read from the wire");
            assert_eq!(mine, req.msg().to_vec().unwrap(), "{w:02x?}");
        }
        // A request built from a message is left to hickory.
        let mut m = Message::query();
        m.queries.push(Query::query(n("a.example."), RecordType::A));
        let req = Request::new(m, a, a, Proto::Udp, 30).unwrap();
        assert!(query(&req).is_none());
    }
}
