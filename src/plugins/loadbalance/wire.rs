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

use crate::plugin::rr::{HEADER, TYPE_A, TYPE_AAAA, TYPE_CNAME, TYPE_MX};
use rand::seq::SliceRandom;

/// Records in one run of addresses shuffled here; a longer run goes the parsed way.
const MAX_RUN_RECORDS: usize = 64;
/// Bytes of address records moved through the stack buffer.
const MAX_RUN: usize = 2048;

/// `round_robin`'s rank of a type: CNAME, other, address, MX.
fn rank(rtype: u16) -> u8 {
    match rtype {
        TYPE_CNAME => 0,
        TYPE_A | TYPE_AAAA => 2,
        TYPE_MX => 3,
        _ => 1,
    }
}

/// The byte range `[start, end)` of the address records of one section, and how many.
#[derive(Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    records: usize,
    /// Every record of the run can be moved as bytes.
    movable: bool,
}

/// Shuffle every section of `wire` as `order::round_robin` would. Returns false, with `wire`
/// unchanged, when the message is not one this can handle; the caller then parses it.
pub fn round_robin(wire: &mut [u8]) -> bool {
    let Some(header) = wire.get(..HEADER) else {
        return false;
    };
    let count = |i: usize| usize::from(u16::from_be_bytes([header[i], header[i + 1]]));
    let (qd, sections) = (count(4), [count(6), count(8), count(10)]);
    if nothing_to_shuffle(wire) {
        return true;
    }
    let mut pos = HEADER;
    for _ in 0..qd {
        let Some(end) = skip_name(wire, pos) else {
            return false;
        };
        pos = end + 4;
    }
    // Check every section first, so a message this cannot handle is left as it is.
    let mut runs: [Option<Run>; 3] = [None; 3];
    for (s, &n) in sections.iter().enumerate() {
        let mut last_rank = 0;
        let mut mx = 0;
        let mut run: Option<Run> = None;
        for _ in 0..n {
            let Some((rtype, movable, end)) = record(wire, pos) else {
                return false;
            };
            let r = rank(rtype);
            if r < last_rank {
                return false;
            }
            last_rank = r;
            match r {
                2 => {
                    let run = run.get_or_insert(Run {
                        start: pos,
                        end: pos,
                        records: 0,
                        movable: true,
                    });
                    run.end = end;
                    run.records += 1;
                    run.movable &= movable;
                }
                3 => mx += 1,
                _ => {}
            }
            pos = end;
        }
        // MX exchange names may be pointed at from later records: two or more go the parsed
        // way. A lone record of a group needs no shuffle.
        if mx > 1 {
            return false;
        }
        if let Some(run) = run.filter(|r| r.records > 1) {
            // An address with a literal owner name might be pointed at: parse instead.
            if !run.movable || run.records > MAX_RUN_RECORDS || run.end - run.start > MAX_RUN {
                return false;
            }
            runs[s] = Some(run);
        }
    }
    if runs.iter().any(Option::is_some) {
        let mut rng = rand::rng();
        for run in runs.into_iter().flatten() {
            shuffle_run(wire, run, &mut rng);
        }
    }
    true
}

/// No section holds two records: `order::round_robin` leaves such sections as they are, so
/// the usual answer (one address, maybe one NS and its glue) needs no walk at all.
pub fn nothing_to_shuffle(wire: &[u8]) -> bool {
    wire.get(6..HEADER)
        .is_some_and(|counts| counts.chunks_exact(2).all(|c| c[0] == 0 && c[1] < 2))
}

/// The record at `pos`: its type, whether it is an A or AAAA record with a compression pointer
/// for its owner (one that can be moved), and where it ends.
fn record(wire: &[u8], pos: usize) -> Option<(u16, bool, usize)> {
    let after_name = skip_name(wire, pos)?;
    let fixed = wire.get(after_name..after_name + 10)?;
    let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    let end = after_name + 10 + rdlen;
    if end > wire.len() {
        return None;
    }
    let pointer_owner = wire[pos] & 0xc0 == 0xc0;
    let rdata_ok = matches!((rtype, rdlen), (TYPE_A, 4) | (TYPE_AAAA, 16));
    Some((rtype, pointer_owner && rdata_ok, end))
}

/// Rewrite the records of `run` in a uniformly random order.
fn shuffle_run(wire: &mut [u8], run: Run, rng: &mut rand::rngs::ThreadRng) {
    let mut bounds = [(0usize, 0usize); MAX_RUN_RECORDS];
    let bounds = &mut bounds[..run.records];
    let mut pos = run.start;
    for b in bounds.iter_mut() {
        // Checked by `round_robin` already.
        let Some((_, _, end)) = record(wire, pos) else {
            return;
        };
        *b = (pos - run.start, end - run.start);
        pos = end;
    }
    bounds.shuffle(rng);
    let len = run.end - run.start;
    let mut copy = [0u8; MAX_RUN];
    copy[..len].copy_from_slice(&wire[run.start..run.end]);
    let mut at = run.start;
    for &(from, to) in bounds.iter() {
        let n = to - from;
        wire[at..at + n].copy_from_slice(&copy[from..to]);
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
