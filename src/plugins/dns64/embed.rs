//! RFC 6052 IPv4-embedded IPv6 addresses: the NAT64 prefix (`Pref64::/n`), putting an IPv4
//! address into it and taking one out, and the prefix's reverse (`ip6.arpa`) zone.
//!
//! RFC 6052 §2.2 defines the layout for prefix lengths 32, 40, 48, 56, 64 and 96. Bits 64 to 71
//! (the "u-octet", byte 8) are always zero and never carry IPv4 bits, so with a /40, /48 or /56
//! prefix the IPv4 address is split around that byte; whatever follows the IPv4 address (the
//! suffix) is zero.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The prefix lengths RFC 6052 defines.
pub const LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// Byte 8 of the address: bits 64..71, RFC 6052's u-octet.
const U_OCTET: usize = 8;

/// A NAT64 prefix with an RFC 6052 length; host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    octets: [u8; 16],
    len: u8,
}

/// Why a prefix word was refused, so setup can word the error as CoreDNS does.
#[derive(Debug, PartialEq, Eq)]
pub enum PrefixError {
    /// Not `ADDRESS/LENGTH` (Go's `invalid CIDR address: WORD`).
    Syntax,
    /// An IPv4 network; carries the masked network and its length.
    NotIpv6(String),
    /// A length RFC 6052 does not define; carries the masked network and its length.
    Length(String),
}

impl Prefix {
    /// The well-known prefix `64:ff9b::/96` (RFC 6052 §2.1).
    pub fn well_known() -> Self {
        let mut octets = [0u8; 16];
        octets[1] = 0x64;
        octets[2] = 0xff;
        octets[3] = 0x9b;
        Prefix { octets, len: 96 }
    }

    /// Parse `ADDRESS/LENGTH` as Go's `net.ParseCIDR` does (host bits are masked off), then
    /// require an IPv6 network of an RFC 6052 length.
    pub fn parse(word: &str) -> Result<Self, PrefixError> {
        let (addr, bits) = word.split_once('/').ok_or(PrefixError::Syntax)?;
        if bits.is_empty() || bits.len() > 3 || !bits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PrefixError::Syntax);
        }
        let bits: u8 = bits.parse().map_err(|_| PrefixError::Syntax)?;
        match addr.parse::<IpAddr>().map_err(|_| PrefixError::Syntax)? {
            IpAddr::V4(v4) => {
                if bits > 32 {
                    return Err(PrefixError::Syntax);
                }
                let host = u32::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
                let net = Ipv4Addr::from(u32::from(v4) & !host);
                Err(PrefixError::NotIpv6(format!("{net}/{bits}")))
            }
            IpAddr::V6(v6) => {
                if bits > 128 {
                    return Err(PrefixError::Syntax);
                }
                let host = u128::MAX.checked_shr(u32::from(bits)).unwrap_or(0);
                let net = u128::from(v6) & !host;
                if !LENGTHS.contains(&bits) {
                    return Err(PrefixError::Length(format!(
                        "{}/{bits}",
                        Ipv6Addr::from(net)
                    )));
                }
                Ok(Prefix {
                    octets: net.to_be_bytes(),
                    len: bits,
                })
            }
        }
    }

    /// Whether a /96 prefix has a non-zero u-octet, which RFC 6052 §2.2 forbids (CoreDNS
    /// accepts it, and so does ferrodns, with a warning).
    pub fn u_octet_set(&self) -> bool {
        self.octets[U_OCTET] != 0
    }

    /// The byte positions that carry the IPv4 address, in order.
    fn v4_positions(&self) -> [usize; 4] {
        let mut at = usize::from(self.len / 8);
        let mut out = [0usize; 4];
        for slot in &mut out {
            if at == U_OCTET {
                at += 1;
            }
            *slot = at;
            at += 1;
        }
        out
    }

    /// RFC 6052 §2.2: the IPv4-embedded IPv6 address of `v4`.
    pub fn embed(&self, v4: Ipv4Addr) -> Ipv6Addr {
        let n = usize::from(self.len / 8);
        let mut out = [0u8; 16];
        out[..n].copy_from_slice(&self.octets[..n]);
        for (at, octet) in self.v4_positions().into_iter().zip(v4.octets()) {
            out[at] = octet;
        }
        Ipv6Addr::from(out)
    }

    /// RFC 6052 §2.3: the IPv4 address embedded in `v6`, if `v6` is an address this prefix
    /// would have produced: inside the prefix, u-octet zero, suffix zero.
    pub fn extract(&self, v6: Ipv6Addr) -> Option<Ipv4Addr> {
        let b = v6.octets();
        let n = usize::from(self.len / 8);
        if b[..n] != self.octets[..n] {
            return None;
        }
        let at = self.v4_positions();
        let mut v4 = [0u8; 4];
        for (o, &i) in v4.iter_mut().zip(&at) {
            *o = b[i];
        }
        // Every byte after the prefix that is not an IPv4 byte (the u-octet and the suffix)
        // must be zero.
        let zero_elsewhere = (n..16).filter(|i| !at.contains(i)).all(|i| b[i] == 0);
        zero_elsewhere.then(|| Ipv4Addr::from(v4))
    }

    /// The prefix's reverse zone: its `len / 4` nibbles, least significant first, under
    /// `ip6.arpa.` (lowercase, as [`crate::plugin::Request::name`] is).
    pub fn reverse_zone(&self) -> String {
        let nibbles = usize::from(self.len / 4);
        let mut s = String::with_capacity(nibbles * 2 + 9);
        for i in (0..nibbles).rev() {
            let byte = self.octets[i / 2];
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            s.push('.');
        }
        s.push_str("ip6.arpa.");
        s
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv6Addr::from(self.octets), self.len)
    }
}

/// The address of a full `ip6.arpa.` name (32 one-nibble labels), lowercase FQDN in.
pub fn ip6_arpa_addr(name: &str) -> Option<Ipv6Addr> {
    let nibbles = name.strip_suffix("ip6.arpa.")?;
    let bytes = nibbles.as_bytes();
    // "x." 32 times.
    if bytes.len() != 64 {
        return None;
    }
    let mut addr: u128 = 0;
    for pair in bytes.chunks_exact(2).rev() {
        if pair[1] != b'.' {
            return None;
        }
        let nibble = char::from(pair[0]).to_digit(16)?;
        addr = (addr << 4) | u128::from(nibble);
    }
    Some(Ipv6Addr::from(addr))
}

/// `d.c.b.a.in-addr.arpa.` for `a.b.c.d`.
pub fn in_addr_arpa(v4: Ipv4Addr) -> String {
    let [a, b, c, d] = v4.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6052 §2.4, Table 1: 192.0.2.33 in each prefix length.
    const TABLE_1: [(&str, &str); 7] = [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
        ("2001:db8:122:344::/96", "2001:db8:122:344::c000:221"),
        ("64:ff9b::/96", "64:ff9b::c000:221"),
    ];

    #[test]
    fn rfc6052_table_1_both_ways() {
        let v4: Ipv4Addr = "192.0.2.33".parse().unwrap();
        for (prefix, want) in TABLE_1 {
            let p = Prefix::parse(prefix).unwrap();
            let want: Ipv6Addr = want.parse().unwrap();
            assert_eq!(p.embed(v4), want, "{prefix}");
            assert_eq!(p.extract(want), Some(v4), "{prefix}");
        }
    }

    #[test]
    fn extract_refuses_other_addresses() {
        let p = Prefix::parse("2001:db8:122::/48").unwrap();
        for addr in [
            // Outside the prefix.
            "2001:db8:123:c000:2:2100::",
            // u-octet set.
            "2001:db8:122:c000:102:2100::",
            // Suffix set.
            "2001:db8:122:c000:2:2100::1",
        ] {
            assert_eq!(p.extract(addr.parse().unwrap()), None, "{addr}");
        }
    }

    #[test]
    fn parse_masks_and_checks_length() {
        assert_eq!(Prefix::parse("64:ff9b::1/96"), Ok(Prefix::well_known()));
        assert_eq!(Prefix::well_known().to_string(), "64:ff9b::/96");
        for len in [72, 80, 88, 52, 104, 128, 33] {
            let word = format!("64:ff9b::/{len}");
            assert_eq!(
                Prefix::parse(&word),
                Err(PrefixError::Length(word.clone())),
                "{word}"
            );
        }
        assert_eq!(
            Prefix::parse("8.8.8.8/24"),
            Err(PrefixError::NotIpv6("8.8.8.0/24".into()))
        );
        for bad in [
            "foobar",
            "64:ff9b::",
            "64:ff9b::/",
            "64:ff9b::/+96",
            "64:ff9b::/129",
        ] {
            assert_eq!(Prefix::parse(bad), Err(PrefixError::Syntax), "{bad}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            Prefix::well_known().reverse_zone(),
            "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa."
        );
        assert_eq!(
            Prefix::parse("2001:db8::/32").unwrap().reverse_zone(),
            "8.b.d.0.1.0.0.2.ip6.arpa."
        );
        let name = "1.2.2.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa.";
        assert_eq!(
            ip6_arpa_addr(name),
            Some("64:ff9b::c000:221".parse().unwrap())
        );
        assert_eq!(ip6_arpa_addr("0.ip6.arpa."), None);
        assert_eq!(ip6_arpa_addr(&name.replace("1.2.2", "g.2.2")), None);
        assert_eq!(
            in_addr_arpa("192.0.2.33".parse().unwrap()),
            "33.2.0.192.in-addr.arpa."
        );
    }
}
