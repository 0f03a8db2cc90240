//! Sets of client networks (`acl`'s `net`, `dualstack`'s `filter_aaaa` and `filter_a`), built
//! once at setup and matched per query with a binary search.
//!
//! Each address family keeps its networks as sorted, disjoint, inclusive ranges of integers, so
//! that a thousand CIDRs cost the same ten comparisons as one, and overlapping or adjacent
//! networks (`10.0.0.0/9` and `10.128.0.0/9`) merge into one range.

use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    /// Every IPv4 and IPv6 address (`net *`, or no `net` at all).
    pub fn all() -> Self {
        NetSet {
            v4: vec![(0, u32::MAX)],
            v6: vec![(0, u128::MAX)],
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => in_ranges(&self.v4, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6, u128::from(a)),
        }
    }

    /// Build from parsed networks (address, prefix length); host bits are ignored, as Go's
    /// `net.ParseCIDR` masks them.
    pub fn from_networks(nets: &[(IpAddr, u8)]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(addr, bits) in nets {
            match addr {
                IpAddr::V4(a) => {
                    let host = u32::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
                    let start = u32::from(a) & !host;
                    v4.push((start, start | host));
                }
                IpAddr::V6(a) => {
                    let host = u128::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
                    let start = u128::from(a) & !host;
                    v6.push((start, start | host));
                }
            }
        }
        NetSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }
}

fn in_ranges<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(_, end)| end < x);
    ranges.get(i).is_some_and(|&(start, _)| start <= x)
}

/// Sort and coalesce overlapping or touching ranges.
fn merge<T: Ord + Copy + Adjacent>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 || last.1.next() == Some(start) => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out.shrink_to_fit();
    out
}

trait Adjacent: Sized {
    fn next(self) -> Option<Self>;
}

impl Adjacent for u32 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Adjacent for u128 {
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// Parse a `net` word as CoreDNS does: `ADDR/BITS`, or a bare address meaning one host (`/32`
/// or `/128`, chosen by whether the word has a colon). `None` if it is not valid CIDR notation.
pub fn parse_cidr(word: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match word.split_once('/') {
        Some((addr, bits)) => (addr, bits),
        None if word.contains(':') => (word, "128"),
        None => (word, "32"),
    };
    // Go's parser takes plain decimal digits only (no sign).
    if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u8 = bits.parse().ok()?;
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> NetSet {
        let nets: Vec<(IpAddr, u8)> = words.iter().map(|w| parse_cidr(w).unwrap()).collect();
        NetSet::from_networks(&nets)
    }

    #[test]
    fn parses_like_go() {
        for (word, want) in [
            ("192.168.0.0/16", Some(("192.168.0.0", 16))),
            ("192.168.1.7/24", Some(("192.168.1.7", 24))),
            ("10.0.0.1", Some(("10.0.0.1", 32))),
            ("2001:db8::/32", Some(("2001:db8::", 32))),
            ("::1", Some(("::1", 128))),
            ("0.0.0.0/0", Some(("0.0.0.0", 0))),
            ("192.168.0/16", None),
            ("192.168.0.0/33", None),
            ("::/129", None),
            ("10.0.0.0/+8", None),
            ("10.0.0.0/", None),
            ("example.org", None),
            ("fe80::1%eth0/64", None),
        ] {
            let got = parse_cidr(word);
            let want = want.map(|(a, b)| (a.parse::<IpAddr>().unwrap(), b));
            assert_eq!(got, want, "{word}");
        }
    }

    #[test]
    fn matches_and_merges() {
        let s = set(&[
            "10.0.0.0/9",
            "10.128.0.0/9",
            "192.168.1.7/24",
            "2001:db8::/48",
            "::1",
        ]);
        assert_eq!(
            s.v4,
            vec![(0x0a00_0000, 0x0aff_ffff), (0xc0a8_0100, 0xc0a8_01ff)]
        );
        for (ip, want) in [
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("192.168.1.0", true),
            ("192.168.1.255", true),
            ("192.168.2.0", false),
            ("2001:db8::53", true),
            ("2001:db8:0:ffff::1", true),
            ("2001:db8:1::1", false),
            ("::1", true),
            ("::2", false),
        ] {
            assert_eq!(s.contains(ip.parse().unwrap()), want, "{ip}");
        }
        let all = NetSet::all();
        assert!(all.contains("255.255.255.255".parse().unwrap()));
        assert!(all.contains("::".parse().unwrap()));
        let v4_only = set(&["0.0.0.0/0"]);
        assert!(!v4_only.contains("::1".parse().unwrap()));
        assert!(NetSet::default() == set(&[]));
        assert!(!NetSet::default().contains("1.2.3.4".parse().unwrap()));
    }

    /// The cost of a lookup in a large set (run with `--release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn lookup_cost() {
        let nets: Vec<(IpAddr, u8)> = (0..10_000u32)
            .map(|i| (IpAddr::V4((0x0a00_0000 + i * 512).into()), 24))
            .collect();
        let s = NetSet::from_networks(&nets);
        let probes: Vec<IpAddr> = (0..1_000_000u32)
            .map(|i| {
                IpAddr::V4((0x0a00_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761) >> 8)).into())
            })
            .collect();
        let start = std::time::Instant::now();
        let hits = probes.iter().filter(|ip| s.contains(**ip)).count();
        let per = start.elapsed().as_nanos() as f64 / probes.len() as f64;
        println!(
            "10000 networks, {} lookups, {hits} hits: {per:.1} ns per lookup",
            probes.len()
        );
    }
}
