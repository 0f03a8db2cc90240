//! The client networks of `filter_aaaa` and `filter_a`.
//!
//! These lists are short (a pod CIDR or two, a NAT64 client range), so a linear scan over
//! (network, mask) pairs of the client's family is cheaper than anything cleverer; an IPv4
//! client is compared as an IPv4 address even when it arrived on a dual-stack socket
//! ([`crate::plugin::Request::ip`] unmaps it).

use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().any(|&(net, mask)| a & mask == net)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().any(|&(net, mask)| a & mask == net)
            }
        }
    }

    /// Add `ADDR/BITS`, or a bare address meaning that one host; host bits are ignored, as
    /// Go's `net.ParseCIDR` (and so `acl`) ignores them. `false` if the word is not that.
    pub fn add(&mut self, word: &str) -> bool {
        let (addr, bits) = match word.split_once('/') {
            Some((addr, bits)) => (addr, Some(bits)),
            None => (word, None),
        };
        let Ok(addr) = addr.parse::<IpAddr>() else {
            return false;
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) if !b.is_empty() && b.len() <= 3 && b.bytes().all(|c| c.is_ascii_digit()) => {
                match b.parse::<u32>() {
                    Ok(n) if n <= max => n,
                    _ => return false,
                }
            }
            Some(_) => return false,
        };
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                self.v4.push((u32::from(a) & mask, mask));
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                self.v6.push((u128::from(a) & mask, mask));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_by_family_and_prefix() {
        let mut set = NetSet::default();
        for w in ["10.0.0.0/8", "192.0.2.7", "2001:db8:6::1/48", "::1"] {
            assert!(set.add(w), "{w}");
        }
        for (ip, want) in [
            ("10.255.0.1", true),
            ("11.0.0.1", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("2001:db8:6:ffff::1", true),
            ("2001:db8:7::1", false),
            ("::1", true),
            ("::2", false),
        ] {
            assert_eq!(set.contains(ip.parse().unwrap()), want, "{ip}");
        }
        let mut all = NetSet::default();
        assert!(all.add("0.0.0.0/0") && all.add("::/0"));
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert!(all.contains("2001:db8::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "net",
            "*",
        ] {
            assert!(!NetSet::default().add(bad), "{bad}");
        }
    }
}
