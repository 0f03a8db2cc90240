//! The cached answer on the wire: where its TTLs are, how a hit is made from it for one client,
//! and the TTL CoreDNS's `dnsutil.MinimalTTL` gives it.
//!
//! Why bytes and not a `Message`: a hit must cost a copy and a few patches, never an encode.
//! The answer is encoded once when it is stored; [`Layout`] records the offset of every TTL so a
//! hit writes the remaining TTL in place.

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::plugin::Request;
use crate::plugin::response::{Kind, Shape};
use crate::plugin::rr::{HEADER, TYPE_NS, TYPE_OPT, TYPE_RRSIG, TYPE_SOA, TYPE_TSIG};

/// Where the parts of an encoded answer are.
#[derive(Debug)]
pub struct Layout {
    /// End of the question name (it starts at offset 12, never compressed).
    pub qname_end: usize,
    /// Offset of the TTL field of every record except OPT.
    pub ttl_offsets: Vec<u16>,
    /// Some RRSIG is outside its validity period at the time given to [`layout`].
    pub expired_sig: bool,
    /// What the walk saw, for typing and timing an answer without parsing it ([`Layout::shape`],
    /// [`Layout::minimal_ttl`]); only meaningful when [`Layout::plain`].
    pub plain: bool,
    pub qtype: u16,
    pub authority_soa: bool,
    pub authority_ns: bool,
    /// The smallest TTL of any record.
    pub min_ttl: Option<u32>,
    /// The smallest MINIMUM field of the authority section's SOA records.
    pub soa_minimum: Option<u32>,
}

/// Walk an encoded message with exactly one question. `None` for anything malformed (then the
/// answer is passed on but not cached).
pub fn layout(wire: &[u8], now_unix: i64) -> Option<Layout> {
    if wire.len() < HEADER || u16::from_be_bytes([wire[4], wire[5]]) != 1 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([wire[i], wire[i + 1]]) as usize;
    let (an, ns) = (count(6), count(8));
    let records = an + ns + count(10);
    let qname_end = skip_name(wire, HEADER)?;
    let qtype = u16::from_be_bytes(wire.get(qname_end..qname_end + 2)?.try_into().ok()?);
    let mut pos = qname_end + 4;
    let mut l = Layout {
        qname_end,
        ttl_offsets: Vec::with_capacity(records),
        expired_sig: false,
        plain: true,
        qtype,
        authority_soa: false,
        authority_ns: false,
        min_ttl: None,
        soa_minimum: None,
    };
    for i in 0..records {
        pos = skip_name(wire, pos)?;
        let fixed = wire.get(pos..pos + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata = wire.get(pos + 10..pos + 10 + rdlen)?;
        if rtype != TYPE_OPT {
            l.ttl_offsets.push(u16::try_from(pos + 4).ok()?);
            l.min_ttl = Some(l.min_ttl.map_or(ttl, |t| t.min(ttl)));
        }
        // OPT and TSIG are not records of the answer in hickory's parse (they become its
        // `edns` and `signature`), and an empty RDATA is one it refuses: all left to the parse.
        if rtype == TYPE_OPT || rtype == TYPE_TSIG || rdlen == 0 {
            l.plain = false;
        }
        if (an..an + ns).contains(&i) {
            match rtype {
                TYPE_NS => l.authority_ns = true,
                TYPE_SOA => {
                    l.authority_soa = true;
                    match soa_minimum(wire, pos + 10, pos + 10 + rdlen) {
                        Some(m) => l.soa_minimum = Some(l.soa_minimum.map_or(m, |t| t.min(m))),
                        None => l.plain = false,
                    }
                }
                _ => {}
            }
        }
        if rtype == TYPE_RRSIG && rdata.len() >= 16 {
            let expiration = u32::from_be_bytes([rdata[8], rdata[9], rdata[10], rdata[11]]);
            let inception = u32::from_be_bytes([rdata[12], rdata[13], rdata[14], rdata[15]]);
            l.expired_sig |= !sig_valid(inception, expiration, now_unix);
        }
        pos += 10 + rdlen;
    }
    (pos == wire.len()).then_some(l)
}

/// The MINIMUM field of the SOA RDATA at `[start, end)`: two names, then five 32-bit fields.
fn soa_minimum(wire: &[u8], start: usize, end: usize) -> Option<u32> {
    let p = skip_name(wire, start)?;
    let p = skip_name(wire, p)?;
    (p + 20 == end)
        .then(|| u32::from_be_bytes([wire[end - 4], wire[end - 3], wire[end - 2], wire[end - 1]]))
}

impl Layout {
    /// What `typify` looks at, for an answer in wire form without an OPT record (so its rcode
    /// is the header's 4 bits). Only for a [`Layout::plain`] answer.
    pub fn shape(&self, wire: &[u8]) -> Shape {
        Shape {
            op_code: OpCode::from_u8((wire[2] >> 3) & 0x0f),
            qtype: Some(RecordType::from(self.qtype)),
            rcode: ResponseCode::from(0, wire[3] & 0x0f),
            answers: wire[6] != 0 || wire[7] != 0,
            authority_soa: self.authority_soa,
            authority_ns: self.authority_ns,
        }
    }

    /// [`minimal_ttl`] from the walk, for a [`Layout::plain`] answer.
    pub fn minimal_ttl(&self, kind: Kind) -> u32 {
        if !matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
            return DEFAULT_TTL;
        }
        let Some(ttl) = self.min_ttl else {
            return DEFAULT_TTL;
        };
        let mut ttl = ttl.min(MAX_TTL);
        if matches!(kind, Kind::NameError | Kind::NoData)
            && let Some(m) = self.soa_minimum
        {
            ttl = ttl.min(m);
        }
        ttl
    }
}

/// RFC 4034 §3.1.5 serial-number arithmetic for signature times, as miekg/dns's
/// `RRSIG.ValidityPeriod` computes it.
fn sig_valid(inception: u32, expiration: u32, now: i64) -> bool {
    const YEAR68: i64 = 1 << 31;
    let modi = (inception as i64 - now) / YEAR68;
    let mode = (expiration as i64 - now) / YEAR68;
    let ti = inception as i64 + modi * YEAR68;
    let te = expiration as i64 + mode * YEAR68;
    ti <= now && now <= te
}

fn skip_name(wire: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *wire.get(pos)? as usize;
        match len & 0xc0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len,
            0xc0 => return wire.get(pos + 1).map(|_| pos + 2),
            _ => return None,
        }
    }
}

/// Write `ttl` into every TTL field.
pub fn set_ttls(wire: &mut [u8], offsets: &[u16], ttl: u32) {
    let bytes = ttl.to_be_bytes();
    for &off in offsets {
        let off = off as usize;
        wire[off..off + 4].copy_from_slice(&bytes);
    }
}

/// The header bits a cached answer is served with (CoreDNS's `item.toMsg`): opcode, RD and CD
/// from the query, AA, RA and rcode from the cached answer, TC clear, and AD only when the
/// client asked for DNSSEC (DO) or set AD itself (RFC 6840 §5.7-5.8).
pub fn hit_flags(cached: [u8; 2], req: &Request) -> [u8; 2] {
    let q = &req.metadata();
    let aa = cached[0] & 0x04;
    let opcode = (u8::from(q.op_code) & 0x0f) << 3;
    let rd = u8::from(q.recursion_desired);
    let ra = cached[1] & 0x80;
    let ad = if req.do_bit() || q.authentic_data {
        cached[1] & 0x20
    } else {
        0
    };
    let cd = if q.checking_disabled { 0x10 } else { 0 };
    [0x80 | opcode | aa | rd, ra | ad | cd | (cached[1] & 0x0f)]
}

/// Copy the client's spelling of the question name over the cached one (same name, maybe other
/// case), as a reply's question echoes the query's.
pub fn copy_qname(wire: &mut [u8], qname_end: usize, req: &Request) {
    if let Some(asked) = req.qname_wire() {
        // The entry matched this name, so the lengths agree; the check only guards the copy.
        if let Some(dst) = wire.get_mut(HEADER..qname_end)
            && dst.len() == asked.len()
        {
            dst.copy_from_slice(asked);
        }
        return;
    }
    let mut pos = HEADER;
    for label in req.qname().iter() {
        let end = pos + 1 + label.len();
        if end >= qname_end || wire[pos] as usize != label.len() {
            return;
        }
        wire[pos + 1..end].copy_from_slice(label);
        pos = end;
    }
}

const DEFAULT_TTL: u32 = 5;
const MAX_TTL: u32 = 3600;

/// The TTL (seconds) an answer deserves before clamping: `dnsutil.MinimalTTL`, the smallest TTL
/// of any record (OPT aside), at most an hour, 5 s when there is nothing to look at or the answer
/// is neither NOERROR nor a denial. For denials RFC 2308 §5 also bounds it by the SOA's MINIMUM
/// field (CoreDNS reads the SOA record's TTL, which RFC 2308 §3 servers already set to at most
/// MINIMUM; taking both gives the same answer for them and the RFC's for the others).
pub fn minimal_ttl(m: &Message, kind: Kind) -> u32 {
    if !matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
        return DEFAULT_TTL;
    }
    if m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty() {
        return DEFAULT_TTL;
    }
    let mut ttl = MAX_TTL;
    for r in m.answers.iter().chain(&m.authorities).chain(&m.additionals) {
        ttl = ttl.min(r.ttl);
    }
    if matches!(kind, Kind::NameError | Kind::NoData) {
        for r in &m.authorities {
            if let RData::SOA(soa) = &r.data {
                ttl = ttl.min(soa.minimum);
            }
        }
    }
    ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_validity_window() {
        let now = 1_700_000_000;
        assert!(sig_valid(now as u32 - 10, now as u32 + 10, now));
        assert!(!sig_valid(now as u32 - 20, now as u32 - 10, now));
        assert!(!sig_valid(now as u32 + 10, now as u32 + 20, now));
    }

    #[test]
    fn malformed_wire_has_no_layout() {
        assert!(layout(&[0u8; 5], 0).is_none());
        let mut header = [0u8; 12];
        header[5] = 1;
        // Question count 1 but no question.
        assert!(layout(&header, 0).is_none());
    }
}
