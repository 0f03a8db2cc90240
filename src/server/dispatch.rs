//! From bytes in to bytes out: parse a query, find its server block, run the chain, and make the
//! answer fit the client (EDNS0, truncation), as CoreDNS's `dnsserver.Server.ServeDNS` does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dnsname::is_subdomain;
use crate::metrics::clock;
use crate::plugin::observe::QueryRecorder;
use crate::plugin::request::Question;
use crate::plugin::{Chain, Failure, Outcome, Proto, Request, Served};

/// One server block as reached through one of its keys.
pub struct BlockServer {
    pub chain: Chain,
    /// The key's zone, for metrics and logs.
    pub zone: Arc<str>,
    /// `dns://:53`-style label of the listener.
    pub server: Arc<str>,
    pub allow_chaos: bool,
    /// Per-query metrics (`prometheus`), told about every answer once it is encoded.
    pub recorder: Option<Arc<dyn QueryRecorder>>,
}

struct ZoneEntry {
    zone: String,
    /// The zone is the root (decided once, not by a string comparison per query).
    root: bool,
    block: Arc<BlockServer>,
}

/// The zones served on one listener, longest first.
#[derive(Default)]
pub struct ZoneTable {
    entries: Vec<ZoneEntry>,
    /// Records the queries this listener refuses because no zone (or class) matched.
    pub dropped: Option<Arc<dyn QueryRecorder>>,
    /// Classes other than IN reach the chains: some block on this listener loads `chaos` or
    /// `forward` (CoreDNS decides this per listener, not per block).
    pub allow_chaos: bool,
}

impl ZoneTable {
    /// Add a zone; false when the zone is already there. (CIDR keys arrive already split into
    /// reverse zones on label boundaries, as CoreDNS 1.14 splits them, so a zone name is all
    /// that routing needs.)
    pub fn insert(&mut self, zone: String, block: Arc<BlockServer>) -> bool {
        if self.entries.iter().any(|e| e.zone == zone) {
            return false;
        }
        self.allow_chaos |= block.allow_chaos;
        let root = zone == ".";
        self.entries.push(ZoneEntry { zone, root, block });
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.zone.len()));
        true
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Arc<BlockServer>> {
        self.entries.iter().map(|e| &e.block)
    }

    /// The zones of this listener, longest first.
    pub fn zones(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.zone.as_str())
    }

    /// The block for `name`, picked as CoreDNS's `Server.ServeDNS` picks it: the longest
    /// matching zone, the root zone as the last resort. A DS record lives on the parent side of a zone
    /// cut, so for DS CoreDNS keeps climbing and uses the highest non-root zone that matched.
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Option<&Arc<BlockServer>> {
        let mut root = None;
        let mut ds = None;
        for e in &self.entries {
            if e.root {
                root = root.or(Some(&e.block));
                continue;
            }
            if !is_subdomain(name, &e.zone) {
                continue;
            }
            if qtype == RecordType::DS {
                ds = Some(&e.block);
                continue;
            }
            return Some(&e.block);
        }
        ds.or(root)
    }
}

/// What to do with a datagram or TCP message before any plugin runs.
// The request is moved from here into the serve future by value; boxing it would cost an
// allocation per query to save copying a few hundred bytes once.
#[allow(clippy::large_enum_variant)]
pub enum Prepared {
    /// Run this block's chain on the request.
    Serve(Arc<BlockServer>, Request),
    /// Answer at once (FORMERR, REFUSED, NOTIMP, BADVERS).
    Reply(Vec<u8>),
    /// Not worth an answer (a response, or too short to carry a header).
    Drop,
}

const OPCODE_QUERY: u8 = 0;
const OPCODE_NOTIFY: u8 = 4;

/// Parse and route one message, checking it in the order CoreDNS does (miekg/dns's server,
/// then `dnsserver.Server.ServeDNS`):
///
/// 1. no complete header: dropped (any reply could be used for amplification);
/// 2. QR set: a response, dropped (no reflection loops);
/// 3. opcode other than QUERY or NOTIFY: NOTIMP, header only;
/// 4. QDCOUNT != 1, ANCOUNT > 1, NSCOUNT > 1 or ARCOUNT > 2: FORMERR, header only
///    (miekg's `DefaultMsgAcceptFunc`);
/// 5. a body that does not parse: FORMERR, with the question when it could be read;
/// 6. a class other than IN without `chaos`/`forward` on this listener: REFUSED;
/// 7. an EDNS version other than 0: BADVERS, no question, an OPT of version 0;
/// 8. no zone of this listener matches and there is no root zone: REFUSED.
pub fn prepare(
    table: &ZoneTable,
    wire: &[u8],
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Prepared {
    match prepare_routed(table, wire, src, local, proto) {
        Routed::Question(q, block) => {
            let (zone, server) = (block.zone.clone(), block.server.clone());
            Prepared::Serve(
                block.clone(),
                Request::asking(q, src, local, proto, zone, server),
            )
        }
        Routed::Prepared(prepared) => prepared,
    }
}

/// What [`prepare_routed`] made of a message.
// A question is moved once, into the request its listener builds in place.
#[allow(clippy::large_enum_variant)]
pub enum Routed<'t> {
    /// The common query, read by hand ([`Question::read`]), and the block that answers it: the
    /// listener makes the request ([`Request::asking`]) where it keeps it, and clones the block
    /// only when the answer waits.
    Question(Question, &'t Arc<BlockServer>),
    /// Anything else, as [`prepare`] has it.
    Prepared(Prepared),
}

/// [`prepare`], leaving the common query as a question routed to its block.
pub fn prepare_routed<'t>(
    table: &'t ZoneTable,
    wire: &[u8],
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Routed<'t> {
    if let Some(early) = check_header(wire) {
        return Routed::Prepared(early);
    }
    // The common query is read by hand, and only becomes a request once its block is known
    // (so the zone and server are set once); anything else gets hickory's full parse, which
    // also decides what is malformed.
    if let Some(q) = Question::read(wire) {
        return match route(table, q.qclass(), q.edns(), q.name(), q.qtype()) {
            Ok(block) => Routed::Question(q, block),
            Err(refusal) => {
                let req = Request::asking(q, src, local, proto, Arc::from("."), Arc::from(""));
                Routed::Prepared(Prepared::Reply(refusal.reply(table, &req)))
            }
        };
    }
    Routed::Prepared(match full_parse(table, wire, src, local, proto) {
        Ok((req, block)) => Prepared::Serve(block.clone(), req),
        Err(reply) => Prepared::Reply(reply),
    })
}

/// What [`prepare_in`] made of a message.
pub enum Placed<'t> {
    /// The request is in place: run this block's chain on it.
    Serve(&'t Arc<BlockServer>),
    /// Answer at once (see [`Prepared::Reply`]).
    Reply(Vec<u8>),
    /// Not worth an answer.
    Drop,
}

/// [`prepare`] into a request a listener keeps for query after query: the common query is read
/// straight into `req`'s memory ([`Request::reread`]), and its zone and server are only
/// replaced when the block is another one (no reference count touched for the usual query).
/// After anything but [`Placed::Serve`], `req` holds nothing the caller should serve.
pub fn prepare_in<'t>(
    table: &'t ZoneTable,
    wire: &[u8],
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
    req: &mut Request,
) -> Placed<'t> {
    let placed = |prepared: Prepared| match prepared {
        Prepared::Reply(bytes) => Placed::Reply(bytes),
        _ => Placed::Drop,
    };
    if let Some(early) = check_header(wire) {
        return placed(early);
    }
    let block = if req.reread(wire, src, local, proto) {
        match route(table, req.qclass(), req.edns(), req.name(), req.qtype()) {
            Ok(block) => block,
            Err(refusal) => return Placed::Reply(refusal.reply(table, req)),
        }
    } else {
        match full_parse(table, wire, src, local, proto) {
            Ok((parsed, block)) => {
                *req = parsed;
                block
            }
            Err(reply) => return Placed::Reply(reply),
        }
    };
    if !Arc::ptr_eq(&req.zone, &block.zone) {
        req.zone = block.zone.clone();
    }
    if !Arc::ptr_eq(&req.server, &block.server) {
        req.server = block.server.clone();
    }
    Placed::Serve(block)
}

/// Steps 1 to 4 of [`prepare`]: what becomes of a message whose header alone decides.
fn check_header(wire: &[u8]) -> Option<Prepared> {
    let Some(header) = wire.get(..12) else {
        return Some(Prepared::Drop);
    };
    if header[2] & 0x80 != 0 {
        return Some(Prepared::Drop);
    }
    let opcode = (header[2] >> 3) & 0x0f;
    if opcode != OPCODE_QUERY && opcode != OPCODE_NOTIFY {
        return Some(Prepared::Reply(reject(wire, ResponseCode::NotImp, false)));
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if count(4) != 1 || count(6) > 1 || count(8) > 1 || count(10) > 2 {
        return Some(Prepared::Reply(reject(wire, ResponseCode::FormErr, false)));
    }
    None
}

/// The rest of [`prepare`] for a message that is not the common query: the request with its
/// zone and server set, and its block; or the reply to send instead.
fn full_parse<'t>(
    table: &'t ZoneTable,
    wire: &[u8],
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Result<(Request, &'t Arc<BlockServer>), Vec<u8>> {
    let msg = match Message::from_vec(wire) {
        Ok(m) => m,
        Err(_) => return Err(reject(wire, ResponseCode::FormErr, true)),
    };
    let Some(mut req) = Request::new(msg, src, local, proto, wire.len()) else {
        return Err(reject(wire, ResponseCode::FormErr, false));
    };
    match route(table, req.qclass(), req.edns(), req.name(), req.qtype()) {
        Ok(block) => {
            req.zone = block.zone.clone();
            req.server = block.server.clone();
            Ok((req, block))
        }
        Err(refusal) => Err(refusal.reply(table, &req)),
    }
}

/// Why a well-formed query gets no block.
enum Refusal {
    /// A class this listener does not serve, or no zone matched: REFUSED.
    Refused,
    /// An EDNS version other than 0: BADVERS.
    BadVers,
}

impl Refusal {
    fn reply(self, table: &ZoneTable, req: &Request) -> Vec<u8> {
        match self {
            Refusal::Refused => refuse(table, req),
            Refusal::BadVers => badvers(req),
        }
    }
}

/// Steps 6 to 8 of [`prepare`]: the block that answers this question.
fn route<'t>(
    table: &'t ZoneTable,
    qclass: DNSClass,
    edns: Option<&Edns>,
    name: &str,
    qtype: RecordType,
) -> Result<&'t Arc<BlockServer>, Refusal> {
    if qclass != DNSClass::IN && !table.allow_chaos {
        return Err(Refusal::Refused);
    }
    if edns.is_some_and(|e| e.version() != 0) {
        return Err(Refusal::BadVers);
    }
    table.lookup(name, qtype).ok_or(Refusal::Refused)
}

/// REFUSED before any block, counted as CoreDNS's `errorAndMetricsFunc` counts it.
fn refuse(table: &ZoneTable, req: &Request) -> Vec<u8> {
    let bytes = error_reply(req, ResponseCode::Refused);
    if let Some(r) = &table.dropped {
        r.record(req, ResponseCode::Refused, "", bytes.len(), Instant::now());
    }
    bytes
}

/// CoreDNS's `edns.Version` answer: the reply header, BADVERS, no question section, and an
/// OPT record of version 0.
fn badvers(req: &Request) -> Vec<u8> {
    let mut m = req.reply();
    m.queries.clear();
    m.metadata.response_code = ResponseCode::BADVERS;
    let mut e = Edns::new();
    e.set_version(0);
    m.edns = Some(e);
    encode(&m)
}

/// Run the chain and encode what it answered. The future owns everything it needs, so a
/// listener can poll it once in place and only spawn it when it really waits.
pub async fn serve(block: Arc<BlockServer>, req: Request) -> Vec<u8> {
    serve_since(block, req, clock::now_ns()).await
}

/// [`serve`] for a query received at `received` (a [`clock::now_ns`] reading), which is where its
/// duration is measured from
/// (`coredns_dns_request_duration_seconds`). A UDP listener passes the time it read the batch
/// of queries: the clock is read once per batch instead of once per query, and the duration
/// then also counts the wait behind the batch's earlier queries, which the client sees too.
// Not an `async fn`: that would move the request from the future's arguments into its body's
// locals on the first poll (a copy of a few hundred bytes per query); an `async move` block
// uses what it captured where it lies.
#[allow(clippy::manual_async_fn)]
pub fn serve_since(
    block: Arc<BlockServer>,
    req: Request,
    received: u64,
) -> impl Future<Output = Vec<u8>> + Send {
    async move {
        // Most answers are ready at once; only a handler that waits pays for the await.
        let outcome = match block.chain.serve(&req) {
            Served::Ready(outcome) => outcome,
            Served::Pending(fut) => fut.await,
        };
        answered(&block, &req, outcome, received)
    }
}

/// The bytes to send for the chain's `outcome` ([`finish`]), recorded by the block's metrics
/// with the time since `received` (a [`clock::now_ns`] reading).
pub fn answered(block: &BlockServer, req: &Request, outcome: Outcome, received: u64) -> Vec<u8> {
    let Some(recorder) = &block.recorder else {
        return finish(req, outcome);
    };
    let (rcode, plugin) = match &outcome {
        Ok(resp) => (resp.rcode(), resp.plugin),
        Err(f) => (f.rcode, ""),
    };
    let bytes = finish(req, outcome);
    recorder.record_ns(req, rcode, plugin, bytes.len(), clock::since_ns(received));
    bytes
}

/// Turn a chain outcome into the bytes to send; empty when nothing must be sent.
pub fn finish(req: &Request, outcome: Outcome) -> Vec<u8> {
    match outcome {
        Ok(resp) => {
            use crate::plugin::response::Form;
            let cap = resp.max_udp_size;
            match resp.into_form() {
                // A pre-encoded answer (a cache hit): patch the ID, set QR, add the client's OPT
                // and send it as is when it fits; only an answer too big for the client goes
                // through parsing and `fit`.
                Form::Wire(mut wire) if wire.len() >= 12 => {
                    wire[..2].copy_from_slice(&req.id().to_be_bytes());
                    wire[2] |= 0x80;
                    if let Some(asked) = req.edns() {
                        // OPT as SizeAndDo writes it: root owner, type 41, the client's UDP
                        // size echoed as class, extended rcode 0, version 0, DO echoed, no
                        // options.
                        let size = asked.max_payload().to_be_bytes();
                        let flags: u8 = if req.do_bit() { 0x80 } else { 0 };
                        wire.extend_from_slice(&[0, 0, 41, size[0], size[1], 0, 0, flags, 0, 0, 0]);
                        let arcount = u16::from_be_bytes([wire[10], wire[11]]).wrapping_add(1);
                        wire[10..12].copy_from_slice(&arcount.to_be_bytes());
                    }
                    if wire.len() <= size_limit(req, cap) {
                        return wire;
                    }
                    match Message::from_vec(&wire) {
                        Ok(m) => fit(req, m, cap),
                        Err(_) => error_reply(req, ResponseCode::ServFail),
                    }
                }
                Form::Wire(_) => error_reply(req, ResponseCode::ServFail),
                Form::Message(mut m) => {
                    m.metadata.id = req.id();
                    m.metadata.message_type = MessageType::Response;
                    fit(req, m, cap)
                }
            }
        }
        Err(Failure { reply: false, .. }) => Vec::new(),
        Err(Failure { rcode, .. }) => error_reply(req, rcode),
    }
}

/// An answer with only the question and an rcode (CoreDNS's `errorFunc`).
pub fn error_reply(req: &Request, rcode: ResponseCode) -> Vec<u8> {
    let mut m = req.reply();
    m.metadata.response_code = rcode;
    fit(req, m, None)
}

/// Give the answer the OPT record the client expects (CoreDNS's `SizeAndDo`): none when the
/// query had none; otherwise the plugin's own OPT (keeping its options) or a fresh one, with
/// version 0, the client's buffer size echoed and the DO bit mirrored. Options the client sent
/// are not echoed, as CoreDNS drops options that no plugin declared it supports.
fn size_and_do(req: &Request, m: &mut Message) {
    match req.edns() {
        Some(asked) => {
            let mut e = m.edns.take().unwrap_or_default();
            e.set_max_payload(asked.max_payload());
            e.set_dnssec_ok(req.do_bit());
            e.set_version(0);
            m.edns = Some(e);
        }
        None => m.edns = None,
    }
}

/// The largest answer the client takes: its own limit, lowered over UDP by a plugin's `cap`.
fn size_limit(req: &Request, cap: Option<u16>) -> usize {
    match cap {
        Some(cap) if req.proto == Proto::Udp => req
            .size()
            .min(usize::from(cap.max(crate::plugin::request::MIN_UDP_SIZE))),
        _ => req.size(),
    }
}

/// Make the answer fit the client's buffer as miekg/dns's `Msg.Truncate` (CoreDNS's
/// `request.Scrub`) does: keep the longest run of answer, then authority, then additional
/// records that fits beside the header, question and OPT record, and set TC when any record
/// was left out, so that the client retries over TCP (RFC 2181 §9, RFC 7766 §5). `cap` is a
/// lower UDP limit a plugin set on the answer ([`crate::plugin::Response::max_udp_size`]).
fn fit(req: &Request, mut m: Message, cap: Option<u16>) -> Vec<u8> {
    size_and_do(req, &mut m);
    let limit = size_limit(req, cap);
    let wire = encode(&m);
    if wire.len() <= limit {
        return wire;
    }
    let answers = std::mem::take(&mut m.answers);
    let authorities = std::mem::take(&mut m.authorities);
    let additionals = std::mem::take(&mut m.additionals);
    let total = answers.len() + authorities.len() + additionals.len();
    let fill = |m: &mut Message, keep: usize| {
        let a = keep.min(answers.len());
        let n = (keep - a).min(authorities.len());
        let x = keep - a - n;
        m.answers = answers[..a].to_vec();
        m.authorities = authorities[..n].to_vec();
        m.additionals = additionals[..x].to_vec();
    };
    // The longest prefix that fits, by bisection: encoding is the costly step.
    let (mut lo, mut hi) = (0usize, total);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        fill(&mut m, mid);
        if encode(&m).len() <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    fill(&mut m, lo);
    m.metadata.truncation = true;
    encode(&m)
}

/// Encode a message; a message that cannot be encoded (a record too long for its field, say)
/// becomes SERVFAIL so the client is not left waiting.
pub fn encode(m: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let mut enc = BinEncoder::new(&mut buf);
    if m.emit(&mut enc).is_ok() {
        return buf;
    }
    let mut fail = Message::response(m.metadata.id, m.metadata.op_code);
    fail.metadata.response_code = ResponseCode::ServFail;
    fail.queries = m.queries.clone();
    fail.to_vec().unwrap_or_default()
}

/// The reply miekg/dns writes for a query it rejects: the query's header with QR set; AA, TC,
/// RA and Z clear; RD, AD and CD kept; opcode QUERY for FORMERR (the query's own for NOTIMP);
/// no records. `with_question` copies the question when it can be read on its own (the body
/// failed further on), as miekg keeps what it had unpacked. `wire` holds at least a header.
pub fn reject(wire: &[u8], rcode: ResponseCode, with_question: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&wire[..12]);
    let opcode = if rcode == ResponseCode::NotImp {
        wire[2] & 0x78
    } else {
        0
    };
    out[2] = 0x80 | opcode | (wire[2] & 0x01);
    out[3] = (wire[3] & 0x30) | (u16::from(rcode) as u8 & 0x0f);
    out[4..12].fill(0);
    if with_question && let Some(end) = question_end(wire) {
        out[5] = 1;
        out.extend_from_slice(&wire[12..end]);
    }
    out
}

/// Where the first question ends, when it is a plain uncompressed name followed by type and
/// class (the only form a name at offset 12 can take: there is nothing earlier to point to).
fn question_end(wire: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = *wire.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 || i - 12 + 1 + len > 254 {
            return None;
        }
        i += 1 + len;
    }
    let end = i + 4;
    (end <= wire.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::rdata::{A, TXT};
    use hickory_proto::rr::{Name, RData, Record};

    fn block(zone: &str, allow_chaos: bool) -> Arc<BlockServer> {
        Arc::new(BlockServer {
            chain: Chain::default(),
            zone: Arc::from(zone),
            server: Arc::from("dns://:53"),
            allow_chaos,
            recorder: None,
        })
    }

    fn table(zones: &[&str], allow_chaos: bool) -> ZoneTable {
        let mut t = ZoneTable::default();
        for z in zones {
            assert!(t.insert(z.to_string(), block(z, allow_chaos)));
        }
        t
    }

    fn addr() -> SocketAddr {
        "127.0.0.1:5353".parse().unwrap()
    }

    fn query_wire(
        name: &str,
        qtype: RecordType,
        class: DNSClass,
        edns: Option<(u16, u8)>,
    ) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x4242;
        m.metadata.recursion_desired = true;
        let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
        q.query_class = class;
        m.queries.push(q);
        if let Some((size, version)) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_version(version);
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }

    enum Want {
        Zone(&'static str),
        Rcode(ResponseCode),
        Drop,
    }

    fn run(t: &ZoneTable, wire: &[u8], proto: Proto) -> Prepared {
        prepare(t, wire, addr(), addr(), proto)
    }

    fn check(t: &ZoneTable, wire: &[u8], want: &Want, what: &str) {
        match (run(t, wire, Proto::Udp), want) {
            (Prepared::Serve(b, _), Want::Zone(z)) => assert_eq!(&*b.zone, *z, "{what}"),
            (Prepared::Reply(bytes), Want::Rcode(rc)) => {
                let m = Message::from_vec(&bytes).expect(what);
                // Compared as numbers: BADVERS and BADSIG share 16 (RFC 6891, RFC 8945).
                assert_eq!(
                    u16::from(m.metadata.response_code),
                    u16::from(*rc),
                    "{what}"
                );
                assert_eq!(
                    m.metadata.id,
                    u16::from_be_bytes([wire[0], wire[1]]),
                    "{what}"
                );
                assert_eq!(m.metadata.message_type, MessageType::Response, "{what}");
            }
            (Prepared::Drop, Want::Drop) => {}
            (Prepared::Serve(b, _), _) => panic!("{what}: served by {}", b.zone),
            (Prepared::Reply(b), _) => panic!("{what}: replied {:?}", Message::from_vec(&b)),
            (Prepared::Drop, _) => panic!("{what}: dropped"),
        }
    }

    #[test]
    fn routing_follows_coredns() {
        use RecordType::*;
        let t = table(
            &[".", "example.org.", "a.example.org.", "example.net."],
            false,
        );
        let no_root = table(&["example.org.", "a.example.org."], false);
        let in_ = DNSClass::IN;
        let cases: &[(&ZoneTable, &str, RecordType, Want)] = &[
            (&t, "example.org.", A, Want::Zone("example.org.")),
            (&t, "www.EXAMPLE.org.", A, Want::Zone("example.org.")),
            (&t, "x.a.example.org.", A, Want::Zone("a.example.org.")),
            (&t, "a.example.org.", A, Want::Zone("a.example.org.")),
            (&t, "aexample.org.", A, Want::Zone(".")),
            (&t, "example.com.", A, Want::Zone(".")),
            (&t, ".", NS, Want::Zone(".")),
            // DS goes to the highest non-root zone that matches.
            (&t, "a.example.org.", DS, Want::Zone("example.org.")),
            (&t, "x.a.example.org.", DS, Want::Zone("example.org.")),
            (&t, "example.org.", DS, Want::Zone("example.org.")),
            (&t, "example.com.", DS, Want::Zone(".")),
            (
                &no_root,
                "example.com.",
                A,
                Want::Rcode(ResponseCode::Refused),
            ),
            (&no_root, "org.", A, Want::Rcode(ResponseCode::Refused)),
            (&no_root, "b.example.org.", DS, Want::Zone("example.org.")),
        ];
        for (tbl, name, qtype, want) in cases {
            let wire = query_wire(name, *qtype, in_, None);
            check(tbl, &wire, want, &format!("{name} {qtype}"));
        }
    }

    #[test]
    fn class_edns_and_opcode_checks() {
        let plain = table(&["."], false);
        let chaos = table(&["."], true);
        let ch = DNSClass::CH;
        let cases: &[(&ZoneTable, Vec<u8>, Want, &str)] = &[
            (
                &plain,
                query_wire("version.bind.", RecordType::TXT, ch, None),
                Want::Rcode(ResponseCode::Refused),
                "CH without chaos",
            ),
            (
                &chaos,
                query_wire("version.bind.", RecordType::TXT, ch, None),
                Want::Zone("."),
                "CH with chaos",
            ),
            (
                &plain,
                query_wire("a.", RecordType::A, DNSClass::HS, None),
                Want::Rcode(ResponseCode::Refused),
                "HS",
            ),
            // The class check comes before the EDNS version check.
            (
                &plain,
                query_wire("a.", RecordType::A, ch, Some((1232, 1))),
                Want::Rcode(ResponseCode::Refused),
                "CH and EDNS1",
            ),
            (
                &plain,
                query_wire("a.", RecordType::A, DNSClass::IN, Some((1232, 1))),
                Want::Rcode(ResponseCode::BADVERS),
                "EDNS1",
            ),
            (
                &plain,
                query_wire("a.", RecordType::A, DNSClass::IN, Some((1232, 0))),
                Want::Zone("."),
                "EDNS0",
            ),
        ];
        for (tbl, wire, want, what) in cases {
            check(tbl, wire, want, what);
        }
    }

    #[test]
    fn header_level_rejections_match_miekg() {
        let t = table(&["."], false);
        let good = query_wire("example.org.", RecordType::A, DNSClass::IN, None);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut w = good.clone();
            f(&mut w);
            w
        };
        let set16 =
            |w: &mut Vec<u8>, at: usize, v: u16| w[at..at + 2].copy_from_slice(&v.to_be_bytes());
        let cases: Vec<(Vec<u8>, Want, &str)> = vec![
            (vec![], Want::Drop, "empty"),
            (good[..11].to_vec(), Want::Drop, "short header"),
            (with(&|w| w[2] |= 0x80), Want::Drop, "a response"),
            (
                with(&|w| w[2] |= 2 << 3),
                Want::Rcode(ResponseCode::NotImp),
                "STATUS opcode",
            ),
            (
                with(&|w| w[2] |= 5 << 3),
                Want::Rcode(ResponseCode::NotImp),
                "UPDATE opcode",
            ),
            (with(&|w| w[2] |= 4 << 3), Want::Zone("."), "NOTIFY opcode"),
            (
                with(&|w| set16(w, 4, 0)),
                Want::Rcode(ResponseCode::FormErr),
                "QDCOUNT 0",
            ),
            (
                with(&|w| set16(w, 4, 2)),
                Want::Rcode(ResponseCode::FormErr),
                "QDCOUNT 2",
            ),
            (
                with(&|w| set16(w, 6, 2)),
                Want::Rcode(ResponseCode::FormErr),
                "ANCOUNT 2",
            ),
            (
                with(&|w| set16(w, 8, 2)),
                Want::Rcode(ResponseCode::FormErr),
                "NSCOUNT 2",
            ),
            (
                with(&|w| set16(w, 10, 3)),
                Want::Rcode(ResponseCode::FormErr),
                "ARCOUNT 3",
            ),
            (
                with(&|w| set16(w, 10, 1)),
                Want::Rcode(ResponseCode::FormErr),
                "missing OPT",
            ),
            (
                good[..good.len() - 2].to_vec(),
                Want::Rcode(ResponseCode::FormErr),
                "cut question",
            ),
            (
                [&good[..12], &[0xc0, 0x0c, 0, 1, 0, 1][..]].concat(),
                Want::Rcode(ResponseCode::FormErr),
                "pointer to itself",
            ),
        ];
        for (wire, want, what) in &cases {
            check(&t, wire, want, what);
        }
    }

    #[test]
    fn rejected_replies_have_miekgs_shape() {
        // RD, AD, CD set; TC and RA set too (must not come back).
        let mut q = query_wire("example.org.", RecordType::A, DNSClass::IN, None);
        q[2] |= 0x03;
        q[3] |= 0xb0;
        q[2] |= 5 << 3;
        let r = reject(&q, ResponseCode::NotImp, false);
        assert_eq!(r.len(), 12);
        assert_eq!(r[2], 0x80 | (5 << 3) | 0x01, "QR, opcode kept, RD");
        assert_eq!(r[3], 0x30 | 4, "AD, CD, NOTIMP");
        let r = reject(&q, ResponseCode::FormErr, true);
        assert_eq!(r[2], 0x81, "FORMERR answers with opcode QUERY");
        assert_eq!(&r[4..6], &[0, 1]);
        assert_eq!(&r[12..], &q[12..]);
        // A question that cannot be read is left out.
        let bad = [&q[..12], &[0x40, b'x'][..]].concat();
        assert_eq!(reject(&bad, ResponseCode::FormErr, true).len(), 12);
    }

    #[test]
    fn badvers_has_no_question_and_an_edns0_opt() {
        let t = table(&["."], false);
        let wire = query_wire("a.", RecordType::A, DNSClass::IN, Some((1232, 1)));
        let Prepared::Reply(bytes) = run(&t, &wire, Proto::Udp) else {
            panic!("no reply")
        };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.queries.is_empty());
        assert_eq!(m.edns.as_ref().map(|e| e.version()), Some(0));
    }

    fn request(edns: Option<u16>, do_bit: bool, proto: Proto) -> Request {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.queries.push(Query::query(
            Name::from_ascii("big.example.").unwrap(),
            RecordType::A,
        ));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            e.set_dnssec_ok(do_bit);
            m.edns = Some(e);
        }
        Request::new(m, addr(), addr(), proto, 40).unwrap()
    }

    fn big_answer(req: &Request, answers: usize, extras: usize) -> Outcome {
        let mut m = req.reply();
        let name = Name::from_ascii("big.example.").unwrap();
        for i in 0..answers {
            m.answers.push(Record::from_rdata(
                name.clone(),
                60,
                RData::A(A::new(10, 0, (i / 256) as u8, i as u8)),
            ));
        }
        for i in 0..extras {
            m.additionals.push(Record::from_rdata(
                name.clone(),
                60,
                RData::TXT(TXT::new(vec![format!("{i:0>100}")])),
            ));
        }
        Ok(crate::plugin::Response::new(m, "test"))
    }

    #[test]
    fn answers_fit_the_clients_buffer() {
        // (edns size, proto, answers, extras) -> (bytes at most, TC, answers kept at least)
        let cases = [
            (None, Proto::Udp, 10, 0, 512, false, 10),
            (None, Proto::Udp, 100, 0, 512, true, 20),
            (Some(4096), Proto::Udp, 100, 0, 4096, false, 100),
            (Some(1232), Proto::Udp, 100, 0, 1232, true, 60),
            (Some(100), Proto::Udp, 100, 0, 512, true, 20),
            // Dropped additional records alone set TC too (miekg's Truncate).
            (Some(1232), Proto::Udp, 5, 20, 1232, true, 5),
            (None, Proto::Tcp, 1000, 0, 65535, false, 1000),
        ];
        for (edns, proto, answers, extras, max, tc, min_kept) in cases {
            let req = request(edns, false, proto);
            let bytes = finish(&req, big_answer(&req, answers, extras));
            let m = Message::from_vec(&bytes).unwrap();
            let what = format!("{edns:?} {proto:?} {answers}+{extras}");
            assert!(bytes.len() <= max, "{what}: {} bytes", bytes.len());
            assert_eq!(m.metadata.truncation, tc, "{what}");
            assert!(
                m.answers.len() >= min_kept,
                "{what}: kept {}",
                m.answers.len()
            );
            assert_eq!(m.edns.is_some(), edns.is_some(), "{what}");
            assert_eq!(m.metadata.id, 7);
        }
    }

    #[test]
    fn opt_echoes_the_clients_size_and_do_bit() {
        for (size, do_bit) in [(1232u16, false), (4096, true), (512, true)] {
            let req = request(Some(size), do_bit, Proto::Udp);
            let m = Message::from_vec(&finish(&req, big_answer(&req, 1, 0))).unwrap();
            let e = m.edns.expect("OPT");
            assert_eq!(e.max_payload(), size);
            assert_eq!(e.flags().dnssec_ok, do_bit);
            assert_eq!(e.version(), 0);
        }
    }

    #[test]
    fn failures_become_error_replies_or_silence() {
        let req = request(Some(1232), false, Proto::Udp);
        let m =
            Message::from_vec(&finish(&req, Err(Failure::new(ResponseCode::ServFail)))).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.queries.len(), 1);
        assert!(m.edns.is_some());
        assert!(finish(&req, Err(Failure::no_reply())).is_empty());
    }

    /// An in-process cousin of `fuzz/fuzz_targets/query.rs`: mutated queries through `prepare`
    /// and `finish` must always come out as a drop or a well-formed, bounded reply.
    #[test]
    fn mutated_queries_never_panic() {
        let t = table(&[".", "example.org."], false);
        let seeds = [
            query_wire("www.example.org.", RecordType::A, DNSClass::IN, None),
            query_wire(
                "example.org.",
                RecordType::DS,
                DNSClass::IN,
                Some((1232, 0)),
            ),
            query_wire("a.b.c.", RecordType::TXT, DNSClass::CH, Some((4096, 1))),
            query_wire(
                "Www.ExAmple.ORG.",
                RecordType::AAAA,
                DNSClass::IN,
                Some((700, 0)),
            ),
            query_wire("*._tcp.a-b.org.", RecordType::SRV, DNSClass::IN, None),
            query_wire(".", RecordType::NS, DNSClass::IN, Some((100, 0))),
        ];
        let mut fast = 0;
        // One request reused for every mutant, as a UDP listener reuses it.
        let mut kept = Request::from_wire(&seeds[0], addr(), addr(), Proto::Udp).unwrap();
        let mut x: u64 = 0x2545f4914f6cdd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..20_000 {
            let mut w = seeds[round % seeds.len()].clone();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                match r % 4 {
                    0 if !w.is_empty() => {
                        let i = (r >> 8) as usize % w.len();
                        w[i] = (r >> 32) as u8;
                    }
                    1 => w.truncate((r >> 8) as usize % (w.len() + 1)),
                    2 => w.push((r >> 8) as u8),
                    _ => w.insert((r >> 8) as usize % (w.len() + 1), 0xc0),
                }
            }
            if same_as_full_parse(&w) {
                fast += 1;
            }
            same_in_place(&t, &w, &mut kept);
            for proto in [Proto::Udp, Proto::Tcp] {
                match run(&t, &w, proto) {
                    Prepared::Serve(_, req) => {
                        let mut m = req.reply();
                        m.additionals.extend(req.msg().additionals.iter().cloned());
                        let bytes = finish(&req, Ok(crate::plugin::Response::new(m, "t")));
                        assert!(bytes.len() <= req.size());
                        assert!(Message::from_vec(&bytes).is_ok());
                    }
                    Prepared::Reply(bytes) => {
                        assert!(bytes.len() >= 12);
                        assert_eq!(&bytes[..2], &w[..2]);
                        assert!(bytes[2] & 0x80 != 0);
                    }
                    Prepared::Drop => assert!(w.len() < 12 || w[2] & 0x80 != 0),
                }
            }
        }
        // Enough mutants stay on the hand-read path for the comparison to mean something.
        assert!(fast > 2_000, "only {fast} mutants read by hand");
    }

    /// `prepare_in` into a request that served other queries before must come to what
    /// `prepare` comes to with a fresh one.
    fn same_in_place(t: &ZoneTable, wire: &[u8], kept: &mut Request) {
        let what = format!("{wire:02x?}");
        match (
            prepare(t, wire, addr(), addr(), Proto::Udp),
            prepare_in(t, wire, addr(), addr(), Proto::Udp, kept),
        ) {
            (Prepared::Drop, Placed::Drop) => {}
            (Prepared::Reply(a), Placed::Reply(b)) => assert_eq!(a, b, "{what}"),
            (Prepared::Serve(a, fresh), Placed::Serve(b)) => {
                assert!(Arc::ptr_eq(&a, b), "{what}");
                assert_eq!(fresh.zone, kept.zone, "{what}");
                assert_eq!(fresh.server, kept.server, "{what}");
                assert_eq!(fresh.name(), kept.name(), "{what}");
                assert_eq!(fresh.qname_wire(), kept.qname_wire(), "{what}");
                assert_eq!(fresh.qtype(), kept.qtype(), "{what}");
                assert_eq!(fresh.qclass(), kept.qclass(), "{what}");
                assert_eq!(fresh.metadata(), kept.metadata(), "{what}");
                assert_eq!(fresh.edns(), kept.edns(), "{what}");
                assert_eq!(fresh.wire_len, kept.wire_len, "{what}");
                assert_eq!(fresh.msg(), kept.msg(), "{what}");
                assert_eq!(fresh.reply(), kept.reply(), "{what}");
            }
            _ => panic!("prepare and prepare_in differ: {what}"),
        }
    }

    /// When `Request::from_wire` reads `wire`, hickory's full parse must read it too and agree
    /// on every field. Returns whether the hand parser took it.
    fn same_as_full_parse(wire: &[u8]) -> bool {
        let a = addr();
        let Some(fast) = Request::from_wire(wire, a, a, Proto::Udp) else {
            return false;
        };
        let what = format!("{wire:02x?}");
        let msg = Message::from_vec(wire).expect(&what);
        let full = Request::new(msg.clone(), a, a, Proto::Udp, wire.len()).expect(&what);
        assert_eq!(fast.name(), full.name(), "{what}");
        assert_eq!(fast.qtype(), full.qtype(), "{what}");
        assert_eq!(fast.qclass(), full.qclass(), "{what}");
        assert_eq!(fast.metadata(), full.metadata(), "{what}");
        assert_eq!(fast.edns(), full.edns(), "{what}");
        assert_eq!(fast.size(), full.size(), "{what}");
        assert_eq!(fast.do_bit(), full.do_bit(), "{what}");
        assert_eq!(fast.wire_len, full.wire_len, "{what}");
        // Name equality ignores case; the client's spelling must be kept exactly.
        assert_eq!(fast.qname().to_ascii(), full.qname().to_ascii(), "{what}");
        let mut spelled = Vec::new();
        let mut enc = BinEncoder::new(&mut spelled);
        full.qname().emit(&mut enc).unwrap();
        assert_eq!(fast.qname_wire(), Some(&spelled[..]), "{what}");
        assert_eq!(fast.msg(), &msg, "{what}");
        assert_eq!(fast.reply(), full.reply(), "{what}");
        true
    }
}

#[cfg(test)]
mod sizes {
    /// Requests and responses are moved through every plugin of the chain on every query; the
    /// lazily built parts are boxed to keep these small. A guard against a field that undoes it.
    #[test]
    fn hot_path_values_stay_small() {
        // A request is moved a few times before the chain borrows it; its question name lives
        // inside it (128 bytes) because an allocation per query costs more than those moves.
        assert!(std::mem::size_of::<crate::plugin::Request>() <= 384);
        assert!(std::mem::size_of::<crate::plugin::Outcome>() <= 80);
    }
}
