//! [`Request`]: one query as the chain sees it, with the question and the client computed once
//! (CoreDNS's `request.Request`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use hickory_proto::op::{
    Edns, EdnsFlags, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// The transport a query arrived on, named as CoreDNS's `log` and metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// The smallest UDP payload every DNS client accepts (RFC 1035 §4.2.1).
pub const MIN_UDP_SIZE: u16 = 512;

/// Bytes of question name kept inside the request: the lower-case text and the wire form of a
/// name of up to 63 characters (most names asked, Kubernetes search-path expansions included)
/// fit without an allocation.
const INLINE: usize = 128;

/// The question name's storage: the lower-case text with its trailing dot, then (for a request
/// read from the wire) the name in wire form as the client spelled it.
///
/// Invariant: the bytes before `name_len` of the owning [`Request`] are valid UTF-8 (see
/// [`Request::name`]): they are either ASCII checked by [`Question::read`] or a `String`.
#[derive(Clone)]
enum NameText {
    Inline { len: u16, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl NameText {
    fn zeroed(len: usize) -> Self {
        if len <= INLINE {
            NameText::Inline {
                len: len as u16,
                bytes: [0; INLINE],
            }
        } else {
            NameText::Heap(vec![0; len].into_boxed_slice())
        }
    }

    /// Make the text `len` bytes long for a new name, keeping the memory it has where it can;
    /// the bytes are left for the caller to write, every one of them.
    fn resize(&mut self, len: usize) {
        match self {
            NameText::Inline { len: l, .. } if len <= INLINE => *l = len as u16,
            NameText::Heap(b) if b.len() == len => {}
            _ => *self = NameText::zeroed(len),
        }
    }

    fn from_string(s: String) -> Self {
        let mut text = NameText::zeroed(s.len());
        text.bytes_mut().copy_from_slice(s.as_bytes());
        text
    }

    fn bytes(&self) -> &[u8] {
        match self {
            NameText::Inline { len, bytes } => &bytes[..usize::from(*len)],
            NameText::Heap(b) => b,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            NameText::Inline { len, bytes } => &mut bytes[..usize::from(*len)],
            NameText::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for NameText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.bytes().escape_ascii().to_string())
    }
}

/// How a byte of a label maps into the lower-case name: 0 when the name must go through
/// hickory instead, else the byte in lower case. The characters are the ones hickory's
/// `to_ascii` writes unescaped, so its escaping stays the one spelling of `name()`: letters,
/// digits and `_` anywhere, `*` only first in a label, `-` anywhere but first.
static LABEL_FIRST: [u8; 256] = label_table(true);
static LABEL_REST: [u8; 256] = label_table(false);

const fn label_table(first: bool) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c.is_ascii_alphanumeric() || c == b'_' {
            c.to_ascii_lowercase()
        } else if (c == b'*' && first) || (c == b'-' && !first) {
            c
        } else {
            0
        };
        b += 1;
    }
    t
}

/// Whether any byte is 0, eight bytes at a time (the usual bit trick: a byte's high bit survives
/// `x - 0x01..` and `!x` only where the byte was 0). For names `contains(&0)` went through
/// core's general `memchr`, which cost more than the rest of reading the name.
fn has_zero(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return true;
        }
    }
    // Not `contains`: for bytes that goes to the same `memchr`.
    #[allow(clippy::manual_contains)]
    words.remainder().iter().any(|&b| b == 0)
}

/// The question of the common query, read straight from the wire (see [`Question::read`]), before
/// the server has picked the block that will answer it.
pub struct Question {
    text: NameText,
    name_len: usize,
    metadata: Metadata,
    qtype: RecordType,
    qclass: DNSClass,
    edns: Option<Edns>,
    wire_len: usize,
}

impl Question {
    /// Read the common query: a header, one question whose name is written out (no
    /// compression pointer) in letters, digits, `-`, `_` and a leading `*`, and at most an OPT
    /// record without options. `None` for anything else, which the caller then gives to
    /// hickory's full parse ([`Request::new`]); for what this accepts, the result is the one
    /// that parse gives (the dispatch tests check it on mutated queries).
    ///
    /// Why by hand: hickory's `Message::from_vec` allocates the question, every record and the
    /// name, and cannot stop after the question; for a cache hit it was the largest user-space
    /// cost of a query. Its `Header::read` alone cost more than this whole function does now.
    pub fn read(wire: &[u8]) -> Option<Question> {
        let mut text = NameText::zeroed(0);
        let read = read_question(wire, &mut text)?;
        Some(Question {
            text,
            name_len: read.name_len,
            metadata: read.metadata,
            qtype: read.qtype,
            qclass: read.qclass,
            edns: read.edns,
            wire_len: wire.len(),
        })
    }

    /// The question name in lower case, fully qualified (`example.org.`).
    pub fn name(&self) -> &str {
        // SAFETY: `read` accepted only the bytes of `LABEL_FIRST`/`LABEL_REST` (ASCII) and
        // dots before `name_len`.
        unsafe { std::str::from_utf8_unchecked(&self.text.bytes()[..self.name_len]) }
    }

    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    pub fn qclass(&self) -> DNSClass {
        self.qclass
    }

    pub fn edns(&self) -> Option<&Edns> {
        self.edns.as_ref()
    }
}

/// What [`read_question`] read besides the name.
struct Read {
    name_len: usize,
    metadata: Metadata,
    qtype: RecordType,
    qclass: DNSClass,
    edns: Option<Edns>,
}

/// [`Question::read`], writing the name (lower case, then as spelled) into `text`, which may
/// be the buffer of an earlier request. On `None` the text is left partly written: the caller
/// must not read it as a name.
fn read_question(wire: &[u8], text: &mut NameText) -> Option<Read> {
    let header = wire.get(..12)?;
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let (flags, codes) = (header[2], header[3]);
    let low_rcode = codes & 0x0f;
    let message_type = if flags & 0x80 != 0 {
        MessageType::Response
    } else {
        MessageType::Query
    };
    let mut metadata = Metadata::new(count(0), message_type, OpCode::from_u8((flags >> 3) & 0x0f));
    metadata.authoritative = flags & 0x04 != 0;
    metadata.truncation = flags & 0x02 != 0;
    metadata.recursion_desired = flags & 0x01 != 0;
    metadata.recursion_available = codes & 0x80 != 0;
    metadata.authentic_data = codes & 0x20 != 0;
    metadata.checking_disabled = codes & 0x10 != 0;
    if low_rcode != 0 {
        metadata.response_code = ResponseCode::from_low(low_rcode);
    }

    // The name: at offset 12 nothing earlier can be pointed to, and hickory's limits apply
    // (labels of at most 63 octets, 255 octets in all with the root label). First its
    // extent, from the length octets alone.
    let mut pos = 12;
    loop {
        let len = usize::from(*wire.get(pos)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        pos += 1 + len;
        if pos - 12 >= 255 {
            return None;
        }
    }
    let qname_end = pos + 1;
    let spelled = &wire[12..qname_end];
    // `www.example.org.` is the wire form `\3www\7example\3org\0` moved one octet to the
    // left, with the length octets turned into dots; the root is `.`.
    let name_len = (spelled.len() - 1).max(1);
    text.resize(name_len + spelled.len());
    let (lower, copy) = text.bytes_mut().split_at_mut(name_len);
    copy.copy_from_slice(spelled);
    if spelled.len() == 1 {
        lower[0] = b'.';
    } else {
        // Every octet through the table at once (no per-label loop), then each length
        // octet becomes a dot and each label's first octet gets its own rule; a 0 left
        // anywhere is a character for hickory.
        for (o, &b) in lower.iter_mut().zip(&spelled[1..]) {
            *o = LABEL_REST[usize::from(b)];
        }
        let mut at = 0;
        while at + 1 < spelled.len() {
            let len = usize::from(spelled[at]);
            lower[at] = LABEL_FIRST[usize::from(spelled[at + 1])];
            lower[at + len] = b'.';
            at += 1 + len;
        }
        if has_zero(lower) {
            return None;
        }
    }

    let fixed = wire.get(qname_end..qname_end + 4)?;
    let qtype = RecordType::from(u16::from_be_bytes([fixed[0], fixed[1]]));
    let qclass = DNSClass::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    let pos = qname_end + 4;

    let edns = if count(10) == 1 {
        // Root owner, type OPT, no RDATA; anything else (options, another record type) is
        // left to hickory.
        let opt = wire.get(pos..pos + 11)?;
        if opt[0] != 0 || opt[1..3] != [0, 41] || opt[9..11] != [0, 0] {
            return None;
        }
        let class = u16::from_be_bytes([opt[3], opt[4]]);
        let mut e = Edns::new();
        e.set_max_payload(class);
        e.set_rcode_high(opt[5]);
        e.set_version(opt[6]);
        *e.flags_mut() = EdnsFlags::from(u16::from_be_bytes([opt[7], opt[8]]));
        metadata.merge_response_code(opt[5]);
        Some(e)
    } else {
        None
    };
    Some(Read {
        name_len,
        metadata,
        qtype,
        qclass,
        edns,
    })
}

/// A query that has a single question: the server answers FORMERR to anything else before a
/// plugin sees it, so [`Request::query`] never fails.
///
/// The common query (one question, maybe an OPT record without options) is read straight from
/// the wire by [`Question::read`]: header, question and EDNS fields are kept as fields, and
/// the question's [`Name`], its [`Query`] and the whole [`Message`] are only built when a plugin
/// asks for them ([`Request::qname`], [`Request::query`], [`Request::msg`]). A cache hit or a
/// local answer then never pays for hickory's full parse.
#[derive(Clone, Debug)]
pub struct Request {
    pub src: SocketAddr,
    pub local: SocketAddr,
    pub proto: Proto,
    /// Size of the query on the wire, in bytes.
    pub wire_len: usize,
    /// The server block zone that this query was dispatched to (`example.org.`), and the
    /// server's address as CoreDNS labels it in metrics (`dns://:53`).
    pub zone: Arc<str>,
    pub server: Arc<str>,
    /// The question name in lower case with its trailing dot (`name_len` bytes), as logs,
    /// metrics and most plugins compare it; for a request read by [`Question::read`] it is
    /// followed by the question name in wire form as the client wrote it. Both live in one
    /// buffer, inside the request for all but long names.
    text: NameText,
    name_len: usize,
    metadata: Metadata,
    qtype: RecordType,
    qclass: DNSClass,
    edns: Option<Edns>,
    /// Built on first use, and boxed so that a `Request` stays small to move.
    query: OnceLock<Box<Query>>,
    msg: OnceLock<Box<Message>>,
}

impl Request {
    /// Build a request from a parsed message that has exactly one question.
    pub fn new(
        msg: Message,
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
        wire_len: usize,
    ) -> Option<Self> {
        if msg.queries.len() != 1 {
            return None;
        }
        let q = &msg.queries[0];
        let text = lowercase_name(&q.name);
        Some(Request {
            src,
            local,
            proto,
            wire_len,
            zone: Arc::from("."),
            server: Arc::from(""),
            name_len: text.len(),
            text: NameText::from_string(text),
            metadata: msg.metadata,
            qtype: q.query_type,
            qclass: q.query_class,
            edns: msg.edns.clone(),
            query: OnceLock::new(),
            msg: OnceLock::from(Box::new(msg)),
        })
    }

    /// Read the common query straight from `wire` ([`Question::read`]), for the root zone
    /// and no server; `None` for anything else, which then needs [`Request::new`].
    pub fn from_wire(
        wire: &[u8],
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
    ) -> Option<Self> {
        let q = Question::read(wire)?;
        Some(Request::asking(
            q,
            src,
            local,
            proto,
            Arc::from("."),
            Arc::from(""),
        ))
    }

    /// The request for a question read from the wire, routed to `zone` on `server`.
    // Inlined so that the question's fields are written straight into the request's place.
    #[inline(always)]
    pub fn asking(
        q: Question,
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
        zone: Arc<str>,
        server: Arc<str>,
    ) -> Self {
        Request {
            src,
            local,
            proto,
            wire_len: q.wire_len,
            zone,
            server,
            text: q.text,
            name_len: q.name_len,
            metadata: q.metadata,
            qtype: q.qtype,
            qclass: q.qclass,
            edns: q.edns,
            query: OnceLock::new(),
            msg: OnceLock::new(),
        }
    }

    /// Read the common query from `wire` into this request, in place of the question it held:
    /// a listener reuses one request's memory (name buffer included) query after query, so a
    /// query is written where it is served instead of being built and moved there. `zone` and
    /// `server` are left for the caller to set. `false` for anything [`Question::read`]
    /// declines; the request then asks for the root, until the caller replaces it.
    pub(crate) fn reread(
        &mut self,
        wire: &[u8],
        src: SocketAddr,
        local: SocketAddr,
        proto: Proto,
    ) -> bool {
        self.query = OnceLock::new();
        self.msg = OnceLock::new();
        let Some(read) = read_question(wire, &mut self.text) else {
            // The name buffer may hold half a name: make it a valid one.
            self.text.resize(1);
            self.text.bytes_mut()[0] = b'.';
            self.name_len = 1;
            return false;
        };
        self.src = src;
        self.local = local;
        self.proto = proto;
        self.wire_len = wire.len();
        self.name_len = read.name_len;
        self.metadata = read.metadata;
        self.qtype = read.qtype;
        self.qclass = read.qclass;
        self.edns = read.edns;
        true
    }

    /// The same client and transport asking `msg` instead (for `rewrite`, `dns64`, ...).
    /// Returns `None` when `msg` does not carry exactly one question.
    pub fn with_message(&self, msg: Message) -> Option<Self> {
        let mut req = Request::new(msg, self.src, self.local, self.proto, self.wire_len)?;
        req.zone = self.zone.clone();
        req.server = self.server.clone();
        Some(req)
    }

    /// The whole query as a hickory message, parsed on first use.
    pub fn msg(&self) -> &Message {
        self.msg.get_or_init(|| {
            let mut m = Message::query();
            m.metadata = self.metadata;
            m.queries.push(self.query().clone());
            m.edns = self.edns.clone();
            Box::new(m)
        })
    }

    /// The query's header fields (ID, opcode, RD, CD, AD ...).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    pub fn query(&self) -> &Query {
        if let Some(m) = self.msg.get() {
            return &m.queries[0];
        }
        self.query.get_or_init(|| {
            // `from_wire` checked the name, so this read cannot fail; the fallback (the
            // lower-case name) keeps a broken invariant from crashing a server.
            let name = Name::read(&mut BinDecoder::new(self.qname_wire().unwrap_or_default()))
                .ok()
                .or_else(|| Name::from_ascii(self.name()).ok())
                .unwrap_or_else(Name::root);
            let mut q = Query::query(name, self.qtype);
            q.query_class = self.qclass;
            Box::new(q)
        })
    }

    /// The question name as the client wrote it.
    pub fn qname(&self) -> &Name {
        &self.query().name
    }

    /// The question name in wire form as the client wrote it (case kept), when the request was
    /// read from the wire; `None` for a request built from a parsed message.
    pub fn qname_wire(&self) -> Option<&[u8]> {
        let wire = &self.text.bytes()[self.name_len..];
        (!wire.is_empty()).then_some(wire)
    }

    /// The question name in lower case, fully qualified (`example.org.`).
    pub fn name(&self) -> &str {
        // SAFETY: the bytes before `name_len` are a `String`'s (`Request::new`) or the ASCII
        // that `Question::read` accepted (`Request::asking`), and nothing else writes them.
        unsafe { std::str::from_utf8_unchecked(&self.text.bytes()[..self.name_len]) }
    }

    pub fn qtype(&self) -> RecordType {
        self.qtype
    }

    pub fn qclass(&self) -> DNSClass {
        self.qclass
    }

    pub fn id(&self) -> u16 {
        self.metadata.id
    }

    pub fn edns(&self) -> Option<&Edns> {
        self.edns.as_ref()
    }

    /// The DNSSEC OK bit.
    pub fn do_bit(&self) -> bool {
        self.edns().is_some_and(|e| e.flags().dnssec_ok)
    }

    /// The largest reply the client accepts: 65535 over TCP, otherwise the EDNS0 buffer size,
    /// never less than 512 (CoreDNS's `request.Size`).
    pub fn size(&self) -> usize {
        if self.proto == Proto::Tcp {
            return u16::MAX as usize;
        }
        let advertised = self.edns().map_or(MIN_UDP_SIZE, |e| e.max_payload());
        advertised.max(MIN_UDP_SIZE) as usize
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        match self.src.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        }
    }

    /// 1 for IPv4, 2 for IPv6, as CoreDNS's `family` label.
    pub fn family(&self) -> u8 {
        if self.ip().is_ipv4() { 1 } else { 2 }
    }

    /// A reply skeleton: same ID, opcode, RD and CD bits, and question (miekg/dns `SetReply`).
    pub fn reply(&self) -> Message {
        let mut m = Message::response(self.id(), self.metadata.op_code);
        m.metadata.recursion_desired = self.metadata.recursion_desired;
        m.metadata.checking_disabled = self.metadata.checking_disabled;
        m.queries.push(self.query().clone());
        m
    }
}

/// `Name` in lower case with a trailing dot; the root is `.`.
pub fn lowercase_name(name: &Name) -> String {
    let mut s = name.to_ascii();
    s.make_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, edns: Option<u16>, proto: Proto) -> Request {
        let mut m = Message::query();
        m.queries
            .push(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.edns = Some(e);
        }
        let a: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        Request::new(m, a, a, proto, 40).unwrap()
    }

    #[test]
    fn name_is_lowercase_fqdn() {
        assert_eq!(req("ExAmple.ORG", None, Proto::Udp).name(), "example.org.");
        assert_eq!(req(".", None, Proto::Udp).name(), ".");
    }

    #[test]
    fn size_follows_edns_and_transport() {
        assert_eq!(req("a.", None, Proto::Udp).size(), 512);
        assert_eq!(req("a.", Some(100), Proto::Udp).size(), 512);
        assert_eq!(req("a.", Some(4096), Proto::Udp).size(), 4096);
        assert_eq!(req("a.", Some(4096), Proto::Tcp).size(), 65535);
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn has_zero_finds_a_zero_anywhere() {
        assert!(!has_zero(b""));
        for len in 1..20 {
            let plain = vec![b'a'; len];
            assert!(!has_zero(&plain), "{len}");
            for at in 0..len {
                let mut with = plain.clone();
                with[at] = 0;
                assert!(has_zero(&with), "{len} {at}");
            }
        }
        // Bytes around 0 and 0x80, which the borrow of the subtraction must not confuse.
        assert!(!has_zero(&[1, 0x80, 0x81, 0xff, 1, 1, 0x7f, 2, 0x80]));
    }

    fn query(labels: &[&[u8]], opt: Option<[u8; 11]>) -> Vec<u8> {
        let mut w = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            opt.is_some() as u8,
        ];
        for l in labels {
            w.push(l.len() as u8);
            w.extend_from_slice(l);
        }
        w.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(o) = opt {
            w.extend_from_slice(&o);
        }
        w
    }

    /// Where the hand reader declines, hickory decides; where it reads, hickory agrees.
    #[test]
    fn hand_reader_matches_hickory_or_declines() {
        let a: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let l63 = [b'a'; 63];
        let l61 = [b'b'; 61];
        let l62 = [b'b'; 62];
        let opt = |class: u16, ttl: [u8; 4], rdlen: u8| {
            let c = class.to_be_bytes();
            Some([
                0, 0, 41, c[0], c[1], ttl[0], ttl[1], ttl[2], ttl[3], 0, rdlen,
            ])
        };
        // (query, read by hand)
        let cases: Vec<(Vec<u8>, bool)> = vec![
            (query(&[b"WwW", b"Example", b"org"], None), true),
            (query(&[], None), true),
            (query(&[b"*", b"_sip", b"_tcp", b"x-1"], None), true),
            // 255 octets in all is the limit; 256 is hickory's to refuse.
            (query(&[&l63, &l63, &l63, &l61], None), true),
            (query(&[&l63, &l63, &l63, &l62], None), false),
            // Escaped by hickory: left to it.
            (query(&[b"a b"], None), false),
            (query(&[b"-a"], None), false),
            (query(&[b"a.b"], None), false),
            (query(&[b"a*"], None), false),
            (query(&[&[0xc3, 0xa9]], None), false),
            (query(&[b"a"], opt(4096, [0, 0, 0x80, 0], 0)), true),
            (query(&[b"a"], opt(100, [0, 1, 0, 0], 0)), true),
            (query(&[b"a"], opt(1232, [3, 0, 0, 0], 0)), true),
            // Options, or an RDLENGTH past the end: hickory's.
            (query(&[b"a"], opt(1232, [0, 0, 0, 0], 4)), false),
        ];
        for (wire, by_hand) in cases {
            let fast = Request::from_wire(&wire, a, a, Proto::Udp);
            assert_eq!(fast.is_some(), by_hand, "{wire:02x?}");
            let Some(fast) = fast else { continue };
            let msg = Message::from_vec(&wire).expect("hickory reads it too");
            let full = Request::new(msg.clone(), a, a, Proto::Udp, wire.len()).unwrap();
            assert_eq!(fast.name(), full.name());
            assert_eq!(fast.qname().to_ascii(), full.qname().to_ascii());
            assert_eq!(fast.edns(), full.edns());
            assert_eq!(fast.metadata(), full.metadata());
            assert_eq!(fast.size(), full.size());
            assert_eq!(fast.msg(), &msg);
        }
    }
}
