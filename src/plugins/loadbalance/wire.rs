//! `round_robin` on an answer that is still in wire form (a cache hit), so that shuffling does
//! not cost a parse and an encode per query.
//!
//! Why by hand: hickory can only parse the whole message into owned records and encode it again,
//! which is most of the cost of a cache hit; here the address records are moved as byte ranges.
//!
//! Moving byte ranges is only sound when nothing in the message points into them. The ranges
//! moved are runs of A and AAAA records whose owner name is a single compression pointer: their
//! RDATA holds no name and their owner writes no label, so an encoder that only points at labels
//! it wrote (hickory's, which made every wire-form answer, see `Response::from_wire`) never
//! points into them. Anything else (a section not already in `round_robin`'s group order, two or
//! more MX records whose exchange names may be pointed at, an address with a literal owner name)
//! is left to the parsed path.

use rand::seq::SliceRandom;

const HEADER: usize = 12;
const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;

/// Records per section handled here; a longer section goes the parsed way.
const MAX_RECORDS: usize = 64;
/// Bytes of address records moved through the stack buffer.
const MAX_RUN: usize = 2048;

#[derive(Clone, Copy, Default)]
struct Rr {
    start: usize,
    end: usize,
    rank: u8,
    /// An A or AAAA record whose owner is one compression pointer.
    movable: bool,
}

/// `round_robin`'s rank of a type: CNAME, other, address, MX.
fn rank(rtype: u16) -> u8 {
    match rtype {
        TYPE_CNAME => 0,
        TYPE_A | TYPE_AAAA => 2,
        TYPE_MX => 3,
        _ => 1,
    }
}

/// Shuffle every section of `wire` as `order::round_robin` would. Returns false, with `wire`
/// unchanged, when the message is not one this can handle; the caller then parses it.
pub fn round_robin(wire: &mut [u8]) -> bool {
    let Some(header) = wire.get(..HEADER) else {
        return false;
    };
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let (qd, sections) = (count(4), [count(6), count(8), count(10)]);
    let mut pos = HEADER;
    for _ in 0..qd {
        let Some(end) = skip_name(wire, pos) else {
            return false;
        };
        pos = end + 4;
    }
    // Read every section first, so a malformed tail changes nothing.
    let mut runs: [Option<(usize, usize, usize)>; 3] = [None; 3];
    let mut records = [[Rr::default(); MAX_RECORDS]; 3];
    for (s, &n) in sections.iter().enumerate() {
        if n > MAX_RECORDS {
            return false;
        }
        let section = &mut records[s][..n];
        for rr in section.iter_mut() {
            let Some(after_name) = skip_name(wire, pos) else {
                return false;
            };
            let Some(fixed) = wire.get(after_name..after_name + 10) else {
                return false;
            };
            let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
            let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
            let end = after_name + 10 + rdlen;
            if end > wire.len() {
                return false;
            }
            let pointer_owner = wire[pos] & 0xc0 == 0xc0;
            let rdata_ok = matches!((rtype, rdlen), (TYPE_A, 4) | (TYPE_AAAA, 16));
            *rr = Rr {
                start: pos,
                end,
                rank: rank(rtype),
                movable: pointer_owner && rdata_ok,
            };
            pos = end;
        }
        if section.windows(2).any(|w| w[0].rank > w[1].rank) {
            return false;
        }
        let of = |r: u8| {
            let first = section.partition_point(|x| x.rank < r);
            let last = section.partition_point(|x| x.rank <= r);
            (first, last)
        };
        let (mx_first, mx_last) = of(3);
        if mx_last - mx_first > 1 {
            return false;
        }
        let (first, last) = of(2);
        if last - first > 1 {
            if !section[first..last].iter().all(|r| r.movable) {
                return false;
            }
            if section[last - 1].end - section[first].start > MAX_RUN {
                return false;
            }
            runs[s] = Some((s, first, last));
        }
    }
    let mut rng = rand::rng();
    for (s, first, last) in runs.into_iter().flatten() {
        shuffle_run(wire, &records[s][first..last], &mut rng);
    }
    true
}

/// Rewrite the contiguous records `run` in a uniformly random order.
fn shuffle_run(wire: &mut [u8], run: &[Rr], rng: &mut rand::rngs::ThreadRng) {
    let mut order = [0u8; MAX_RECORDS];
    let order = &mut order[..run.len()];
    for (i, o) in order.iter_mut().enumerate() {
        *o = i as u8;
    }
    order.shuffle(rng);
    let base = run[0].start;
    let len = run[run.len() - 1].end - base;
    let mut copy = [0u8; MAX_RUN];
    copy[..len].copy_from_slice(&wire[base..base + len]);
    let mut at = base;
    for &i in order.iter() {
        let r = run[usize::from(i)];
        let n = r.end - r.start;
        wire[at..at + n].copy_from_slice(&copy[r.start - base..r.end - base]);
        at += n;
    }
}

fn skip_name(wire: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = usize::from(*wire.get(pos)?);
        match len & 0xc0 {
            0 if len == 0 => return Some(pos + 1),
            0 => pos += 1 + len,
            0xc0 => return wire.get(pos + 1).map(|_| pos + 2),
            _ => return None,
        }
    }
}
