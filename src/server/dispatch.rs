//! From bytes in to bytes out: parse a query, find its server block, run the chain, and make the
//! answer fit the client (EDNS0, truncation), as CoreDNS's `dnsserver.Server.ServeDNS` does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dnsname::is_subdomain;
use crate::plugin::{Chain, Failure, Outcome, Proto, Request};

/// The EDNS0 buffer size ferrodns advertises in its answers (DNS Flag Day 2020's value).
pub const ADVERTISED_UDP_SIZE: u16 = 1232;

/// One server block as reached through one of its keys.
pub struct BlockServer {
    pub chain: Chain,
    /// The key's zone, for metrics and logs.
    pub zone: Arc<str>,
    /// `dns://:53`-style label of the listener.
    pub server: Arc<str>,
    pub allow_chaos: bool,
}

struct ZoneEntry {
    zone: String,
    /// Only names inside this network match (CIDR keys off an octet boundary).
    network: Option<(IpAddr, u8)>,
    block: Arc<BlockServer>,
}

/// The zones served on one listener, longest first.
#[derive(Default)]
pub struct ZoneTable {
    entries: Vec<ZoneEntry>,
}

impl ZoneTable {
    /// Add a zone; false when the zone (with the same network filter) is already there.
    pub fn insert(
        &mut self,
        zone: String,
        network: Option<(IpAddr, u8)>,
        block: Arc<BlockServer>,
    ) -> bool {
        if self
            .entries
            .iter()
            .any(|e| e.zone == zone && e.network == network)
        {
            return false;
        }
        self.entries.push(ZoneEntry {
            zone,
            network,
            block,
        });
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.zone.len()));
        true
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Arc<BlockServer>> {
        self.entries.iter().map(|e| &e.block)
    }

    /// The block for `name`: the longest matching zone. A DS question is asked of the parent
    /// side of a zone cut, so a zone equal to the name itself is skipped for DS when a parent
    /// zone is also served (CoreDNS does the same).
    pub fn lookup(&self, name: &str, qtype: RecordType) -> Option<&Arc<BlockServer>> {
        let mut matches = self.entries.iter().filter(|e| {
            is_subdomain(name, &e.zone) && e.network.is_none_or(|n| in_reverse_network(name, n))
        });
        let first = matches.next()?;
        if qtype == RecordType::DS
            && first.zone == name
            && let Some(parent) = matches.next()
        {
            return Some(&parent.block);
        }
        Some(&first.block)
    }
}

/// Whether a reverse name (`5.0.0.10.in-addr.arpa.`) lies in a network. Names that are not full
/// addresses match when the prefix they spell overlaps the network.
fn in_reverse_network(name: &str, (net, bits): (IpAddr, u8)) -> bool {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    match net {
        IpAddr::V4(v4) => {
            if !name.ends_with(".in-addr.arpa.") {
                return false;
            }
            let octets: Vec<u8> = labels[..labels.len().saturating_sub(2)]
                .iter()
                .rev()
                .filter_map(|l| l.parse().ok())
                .collect();
            let net = v4.octets();
            let known = (octets.len() * 8).min(bits as usize);
            (0..known).all(|bit| {
                let (i, shift) = (bit / 8, 7 - bit % 8);
                (octets[i] >> shift) & 1 == (net[i] >> shift) & 1
            })
        }
        IpAddr::V6(v6) => {
            if !name.ends_with(".ip6.arpa.") {
                return false;
            }
            let nibbles: Vec<u8> = labels[..labels.len().saturating_sub(2)]
                .iter()
                .rev()
                .filter_map(|l| u8::from_str_radix(l, 16).ok())
                .collect();
            let net = v6.octets();
            let known = (nibbles.len() * 4).min(bits as usize);
            (0..known).all(|bit| {
                let nib = net[bit / 8] >> (if bit % 8 < 4 { 4 } else { 0 }) & 0xf;
                let shift = 3 - bit % 4;
                (nibbles[bit / 4] >> shift) & 1 == (nib >> shift) & 1
            })
        }
    }
}

/// What to do with a datagram or TCP message before any plugin runs.
pub enum Prepared {
    /// Run this block's chain on the request.
    Serve(Arc<BlockServer>, Box<Request>),
    /// Answer at once (FORMERR, REFUSED, NOTIMP, BADVERS).
    Reply(Vec<u8>),
    /// Not worth an answer (a response, or too short to carry an ID).
    Drop,
}

/// Parse and route one message.
pub fn prepare(
    table: &ZoneTable,
    wire: &[u8],
    src: SocketAddr,
    local: SocketAddr,
    proto: Proto,
) -> Prepared {
    if wire.len() < 12 {
        return Prepared::Drop;
    }
    // QR set: a response, never answered (no reflection loops).
    if wire[2] & 0x80 != 0 {
        return Prepared::Drop;
    }
    let msg = match Message::from_vec(wire) {
        Ok(m) => m,
        Err(_) => return Prepared::Reply(header_only_reply(wire, ResponseCode::FormErr)),
    };
    match msg.metadata.op_code {
        OpCode::Query | OpCode::Notify => {}
        _ => return Prepared::Reply(header_only_reply(wire, ResponseCode::NotImp)),
    }
    if msg.queries.len() != 1 {
        return Prepared::Reply(header_only_reply(wire, ResponseCode::FormErr));
    }
    let mut req = match Request::new(msg, src, local, proto, wire.len()) {
        Some(r) => r,
        None => return Prepared::Reply(header_only_reply(wire, ResponseCode::FormErr)),
    };
    if let Some(edns) = req.edns()
        && edns.version() != 0
    {
        let mut m = req.reply();
        m.metadata.response_code = ResponseCode::BADVERS;
        m.edns = Some(response_edns(req.do_bit()));
        return Prepared::Reply(encode(&m));
    }
    let Some(block) = table.lookup(req.name(), req.qtype()) else {
        return Prepared::Reply(error_reply(&req, ResponseCode::Refused));
    };
    if req.qclass() != DNSClass::IN && !block.allow_chaos {
        return Prepared::Reply(error_reply(&req, ResponseCode::Refused));
    }
    req.zone = block.zone.clone();
    req.server = block.server.clone();
    Prepared::Serve(block.clone(), Box::new(req))
}

/// Run the chain and encode what it answered. The future owns everything it needs, so a
/// listener can poll it once in place and only spawn it when it really waits.
pub async fn serve(block: Arc<BlockServer>, req: Box<Request>) -> Vec<u8> {
    let outcome = block.chain.serve(&req).await;
    finish(&req, outcome)
}

/// Turn a chain outcome into the bytes to send; empty when nothing must be sent.
pub fn finish(req: &Request, outcome: Outcome) -> Vec<u8> {
    match outcome {
        Ok(resp) => {
            use crate::plugin::response::Form;
            match resp.into_form() {
                // A pre-encoded answer (a cache hit): patch the ID, set QR, add the client's OPT
                // and send it as is when it fits; only an answer too big for the client goes
                // through parsing and `fit`.
                Form::Wire(mut wire) if wire.len() >= 12 => {
                    wire[..2].copy_from_slice(&req.id().to_be_bytes());
                    wire[2] |= 0x80;
                    if req.edns().is_some() {
                        // OPT: root owner, type 41, our UDP size as class, extended rcode 0,
                        // version 0, the DO bit echoed, no options.
                        let size = ADVERTISED_UDP_SIZE.to_be_bytes();
                        let flags: u8 = if req.do_bit() { 0x80 } else { 0 };
                        wire.extend_from_slice(&[0, 0, 41, size[0], size[1], 0, 0, flags, 0, 0, 0]);
                        let arcount = u16::from_be_bytes([wire[10], wire[11]]).wrapping_add(1);
                        wire[10..12].copy_from_slice(&arcount.to_be_bytes());
                    }
                    if wire.len() <= req.size() {
                        return wire;
                    }
                    match Message::from_vec(&wire) {
                        Ok(m) => fit(req, m),
                        Err(_) => error_reply(req, ResponseCode::ServFail),
                    }
                }
                Form::Wire(_) => error_reply(req, ResponseCode::ServFail),
                Form::Message(mut m) => {
                    m.metadata.id = req.id();
                    m.metadata.message_type = MessageType::Response;
                    fit(req, m)
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
    fit(req, m)
}

fn response_edns(do_bit: bool) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(ADVERTISED_UDP_SIZE);
    e.set_dnssec_ok(do_bit);
    e
}

/// Give the answer the OPT record the client expects and make it fit the client's buffer:
/// additional records go first, then answer and authority records from the end, with TC set
/// when the answer lost records (RFC 2181 §9; CoreDNS's `request.Scrub`).
fn fit(req: &Request, mut m: Message) -> Vec<u8> {
    match req.edns() {
        Some(_) => {
            let mut e = m.edns.take().unwrap_or_else(|| response_edns(req.do_bit()));
            e.set_max_payload(ADVERTISED_UDP_SIZE);
            e.set_dnssec_ok(req.do_bit());
            e.set_version(0);
            m.edns = Some(e);
        }
        None => m.edns = None,
    }
    let limit = req.size();
    let wire = encode(&m);
    if wire.len() <= limit {
        return wire;
    }
    while !m.additionals.is_empty() {
        m.additionals.pop();
        let wire = encode(&m);
        if wire.len() <= limit {
            return wire;
        }
    }
    m.metadata.truncation = true;
    loop {
        if m.authorities.pop().is_none() && m.answers.pop().is_none() {
            return encode(&m);
        }
        let wire = encode(&m);
        if wire.len() <= limit {
            return wire;
        }
    }
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

/// A reply made from the query's header alone, for queries that could not be parsed: same ID
/// and opcode, QR set, no sections.
pub fn header_only_reply(wire: &[u8], rcode: ResponseCode) -> Vec<u8> {
    let mut out = vec![0u8; 12];
    out[0] = wire[0];
    out[1] = wire[1];
    // QR=1, keep opcode and RD.
    out[2] = 0x80 | (wire[2] & 0x79);
    out[3] = u16::from(rcode) as u8 & 0x0f;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_network_filter() {
        let net = ("10.0.0.0".parse().unwrap(), 27);
        assert!(in_reverse_network("5.0.0.10.in-addr.arpa.", net));
        assert!(in_reverse_network("31.0.0.10.in-addr.arpa.", net));
        assert!(!in_reverse_network("32.0.0.10.in-addr.arpa.", net));
        assert!(in_reverse_network("0.0.10.in-addr.arpa.", net));
        assert!(!in_reverse_network("example.org.", net));
    }

    #[test]
    fn header_only_reply_keeps_id_and_sets_qr() {
        let q = [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let r = header_only_reply(&q, ResponseCode::FormErr);
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[2], 0x81);
        assert_eq!(r[3], 1);
        assert_eq!(r.len(), 12);
    }
}
