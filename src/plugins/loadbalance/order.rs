//! How each policy reorders one section of an answer.
//!
//! CoreDNS splits a section into four groups: CNAME, address (A and AAAA), MX, and everything
//! else. Every policy puts the CNAMEs first, because glibc and other stub resolvers expect the
//! chain before the addresses it leads to. The groups keep their relative order (a stable sort
//! by group), so these functions allocate nothing for sections of the usual size.

use std::net::IpAddr;

use hickory_proto::rr::{RData, Record, RecordType};
use rand::RngExt;
use rand::seq::SliceRandom;

use super::weighted::Weights;

/// The group a record belongs to when reordering.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    Cname,
    Address,
    Mx,
    Other,
}

fn group(r: &Record) -> Group {
    match r.record_type() {
        RecordType::CNAME => Group::Cname,
        RecordType::A | RecordType::AAAA => Group::Address,
        RecordType::MX => Group::Mx,
        _ => Group::Other,
    }
}

/// The address an A or AAAA record carries.
pub fn address(r: &Record) -> Option<IpAddr> {
    match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

/// The `[start, end)` range of `group` in a section already sorted by group.
fn range_of(section: &[Record], g: Group, rank: impl Fn(Group) -> u8) -> (usize, usize) {
    let start = section.partition_point(|r| rank(group(r)) < rank(g));
    let end = section.partition_point(|r| rank(group(r)) <= rank(g));
    (start, end)
}

/// `round_robin`: CNAMEs, then other records, then the addresses and the MX records, each of
/// those two groups shuffled uniformly.
pub fn round_robin(section: &mut [Record]) {
    if section.len() <= 1 {
        return;
    }
    let mut rng = rand::rng();
    // The common case, a plain A or AAAA RRset: shuffle it as it is.
    let first = section[0].record_type();
    if matches!(first, RecordType::A | RecordType::AAAA)
        && section.iter().all(|r| r.record_type() == first)
    {
        section.shuffle(&mut rng);
        return;
    }
    let rank = |g: Group| match g {
        Group::Cname => 0,
        Group::Other => 1,
        Group::Address => 2,
        Group::Mx => 3,
    };
    section.sort_by_key(|r| rank(group(r)));
    let (a, b) = range_of(section, Group::Address, rank);
    section[a..b].shuffle(&mut rng);
    let (a, b) = range_of(section, Group::Mx, rank);
    section[a..b].shuffle(&mut rng);
}

/// `weighted`: CNAMEs, other records, addresses, MX; one address, drawn with probability
/// proportional to its weight, is swapped into the first address position. A section without
/// addresses is left exactly as it is.
pub fn weighted(section: &mut [Record], weights: &Weights) {
    weighted_with(section, weights, |sum| rand::rng().random_range(0..sum))
}

/// [`weighted`] with the random draw supplied (`draw(sum)` returns a value in `0..sum`), so
/// tests can pin the choice.
pub fn weighted_with(section: &mut [Record], weights: &Weights, draw: impl FnOnce(u32) -> u32) {
    if !section.iter().any(|r| group(r) == Group::Address) {
        return;
    }
    let rank = |g: Group| match g {
        Group::Cname => 0,
        Group::Other => 1,
        Group::Address => 2,
        Group::Mx => 3,
    };
    section.sort_by_key(|r| rank(group(r)));
    let (start, end) = range_of(section, Group::Address, rank);
    let addresses = &mut section[start..end];
    let weight_of = |r: &Record| match address(r) {
        Some(ip) => weights.weight(&r.name, ip),
        None => 1,
    };
    let sum: u32 = addresses.iter().map(|r| u32::from(weight_of(r))).sum();
    // Walking the records in answer order with cumulative weights gives each one a chance of
    // weight/sum, the same distribution as CoreDNS's walk over the weight-sorted list.
    let mut v = draw(sum);
    let mut top = 0;
    for (i, r) in addresses.iter().enumerate() {
        let w = u32::from(weight_of(r));
        if v < w {
            top = i;
            break;
        }
        v -= w;
    }
    addresses.swap(0, top);
}

/// One `prefer` network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub bits: u8,
}

impl Cidr {
    /// `ADDRESS/BITS`, as Go's `net.ParseCIDR` reads it; the host bits are cleared.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let err = || format!("invalid CIDR address: {text}");
        let (ip, bits) = text.split_once('/').ok_or_else(err)?;
        let ip: IpAddr = ip.parse().map_err(|_| err())?;
        if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || bits.len() > 3 {
            return Err(err());
        }
        let bits: u8 = bits.parse().map_err(|_| err())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            return Err(err());
        }
        let net = match ip {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & mask32(bits)).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & mask128(bits)).into()),
        };
        Ok(Cidr { net, bits })
    }

    /// Whether `ip` lies in the network. As in Go, an IPv4-mapped IPv6 address counts as the
    /// IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.bits) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.bits) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

fn mask32(bits: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0)
}

fn mask128(bits: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0)
}

/// `prefer`: CNAMEs, then the addresses (those in the first preferred network, then those in
/// the second, ..., then the rest, each keeping its order), then MX, then everything else.
/// Note the different place of "everything else" from the other policies: CoreDNS does the same.
pub fn prefer(section: &mut [Record], nets: &[Cidr]) {
    if section.len() <= 1 {
        return;
    }
    let unmatched = nets.len();
    section.sort_by_key(|r| match group(r) {
        Group::Cname => (0, 0),
        Group::Address => {
            let net = address(r)
                .and_then(|ip| nets.iter().position(|n| n.contains(ip)))
                .unwrap_or(unmatched);
            (1, net)
        }
        Group::Mx => (2, 0),
        Group::Other => (3, 0),
    });
}
