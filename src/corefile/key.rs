//! Server block keys: `[SCHEME://]ZONE[:PORT]`, as CoreDNS's `dnsserver` reads them.
//!
//! What CoreDNS 1.14 does, and this follows:
//! - The scheme (`dns`, `tls`, `quic`, `grpc`, `https`, `https3`) selects the transport; without
//!   one the key is plain DNS. A port left out means the scheme's default: 53 (or `-dns.port`)
//!   for DNS, 853 for TLS and QUIC, 443 for gRPC, HTTPS and HTTPS/3.
//! - The port is what follows the *last* colon when it is a number, so the colons of an IPv6
//!   CIDR need no brackets (`2001:db8::/32:1053`).
//! - A zone longer than 255 characters, or one that is not a domain name in miekg/dns's liberal
//!   sense (empty, empty labels, labels over 63 octets), is an error.
//! - A CIDR (`10.0.0.0/24`, `2001:db8::/32`) becomes the reverse zone(s) of that network. A prefix
//!   that does not end on a label boundary (8 bits for IPv4, 4 for IPv6) is split into the
//!   networks of the next boundary, and the block serves each of their reverse zones:
//!   `10.0.0.0/27` is the 32 zones `0.0.0.10.in-addr.arpa.` ... `31.0.0.10.in-addr.arpa.`,
//!   `10.0.0.0/15` is `0.10.in-addr.arpa.` and `1.10.in-addr.arpa.` (CoreDNS's `cidr.Split`).
//!   No name filter is involved: routing needs only the zone names.
//! - Zones are lowercase FQDNs.
//!
//! Where ferrodns is stricter: CoreDNS accepts an unknown scheme, a non-numeric or out-of-range
//! port, a malformed CIDR and bracketed IPv6 addresses as part of the zone name (`udp://x.` or
//! `[::1].` are then zones nobody can query). ferrodns rejects these keys with an error.

use std::net::IpAddr;

/// The transport a server block's key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Dns,
    Tls,
    Https,
    Grpc,
    Quic,
    Https3,
}

impl Scheme {
    const ALL: [Scheme; 6] = [
        Scheme::Dns,
        Scheme::Tls,
        Scheme::Https,
        Scheme::Grpc,
        Scheme::Quic,
        Scheme::Https3,
    ];

    /// The port a key of this scheme gets when it names none (DNS: unless `-dns.port` says
    /// otherwise, which the server applies).
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Dns => 53,
            Scheme::Tls | Scheme::Quic => 853,
            Scheme::Https | Scheme::Grpc | Scheme::Https3 => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Dns => "dns",
            Scheme::Tls => "tls",
            Scheme::Https => "https",
            Scheme::Grpc => "grpc",
            Scheme::Quic => "quic",
            Scheme::Https3 => "https3",
        }
    }

    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// One zone a server block serves, with its transport and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub scheme: Scheme,
    /// Lowercase FQDN.
    pub zone: String,
    /// The port written in the key; `None` means the scheme's default.
    pub port: Option<u16>,
    /// The key as written (after environment variables).
    pub original: String,
}

impl ServerKey {
    /// The port to listen on, given the `-dns.port` value for plain DNS.
    pub fn port_or(&self, dns_port: u16) -> u16 {
        self.port.unwrap_or(match self.scheme {
            Scheme::Dns => dns_port,
            s => s.default_port(),
        })
    }
}

/// Read one key. A CIDR key may give several zones; any other key gives one.
pub fn parse_key(key: &str) -> Result<Vec<ServerKey>, String> {
    let (scheme, rest) = match key.split_once("://") {
        Some((name, rest)) => match Scheme::from_name(name) {
            Some(s) => (s, rest),
            None => {
                return Err(format!(
                    "unknown scheme '{name}' in '{key}': expected dns, tls, quic, grpc, https or https3"
                ));
            }
        },
        None => (Scheme::Dns, key),
    };
    let (host, port) = split_port(rest, key)?;

    if host.len() > 255 {
        return Err(format!("specified zone is too long: {} > 255", host.len()));
    }
    if !is_domain_name(host) {
        return Err(format!("zone is not a valid domain name: {host}"));
    }
    let zones = match reverse_zones(host)? {
        Some(zones) => zones,
        None => {
            if host.contains(':') {
                return Err(format!(
                    "zone is not a valid domain name: {host} (a ':' starts the port; an IPv6 \
                     reverse zone is written as a CIDR such as 2001:db8::/32)"
                ));
            }
            vec![crate::dnsname::fqdn_lower(host)]
        }
    };
    Ok(zones
        .into_iter()
        .map(|zone| ServerKey {
            scheme,
            zone,
            port,
            original: key.to_string(),
        })
        .collect())
}

/// The zones a host names, as CoreDNS's `plugin.Host.NormalizeExact` gives them to plugins
/// (`forward`'s FROM and `except`, the ZONES of `hosts`, `cache`, `acl`, ...): scheme and port
/// dropped, a CIDR expanded into its reverse zones (several when the prefix is not on an octet
/// or nibble boundary), anything else a lowercase FQDN. Empty when the host is not valid.
pub fn normalize_exact(host: &str) -> Vec<String> {
    parse_key(host)
        .map(|keys| keys.into_iter().map(|k| k.zone).collect())
        .unwrap_or_default()
}

/// Split off `:PORT`: the text after the last colon, when it is a number. Text after the last
/// colon that is not a number belongs to the zone only in an IPv6 CIDR.
fn split_port<'a>(s: &'a str, key: &str) -> Result<(&'a str, Option<u16>), String> {
    let Some(colon) = s.rfind(':') else {
        return Ok((s, None));
    };
    let (host, tail) = (&s[..colon], &s[colon + 1..]);
    if tail.is_empty() {
        return Err(format!("expecting data after last colon: {s:?}"));
    }
    if tail.bytes().all(|b| b.is_ascii_digit()) {
        return match tail.parse::<u16>() {
            Ok(port) if port > 0 => Ok((host, Some(port))),
            _ => Err(format!(
                "invalid port '{tail}' in '{key}': a port is a number from 1 to 65535"
            )),
        };
    }
    if host.contains(':') || tail.contains('/') {
        return Ok((s, None));
    }
    Err(format!(
        "invalid port '{tail}' in '{key}': a port is a number from 1 to 65535"
    ))
}

/// miekg/dns `IsDomainName`: not empty, no leading dot (except the root), no empty label, labels
/// of at most 63 octets and at most 255 octets on the wire (escapes `\X` and `\DDD` count as one).
fn is_domain_name(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    if s == "." {
        return true;
    }
    let b = s.as_bytes();
    let mut off = 0usize;
    let mut begin = 0usize;
    let mut was_dot = false;
    let mut i = 0usize;
    let fqdn_len = if s.ends_with('.') {
        b.len()
    } else {
        b.len() + 1
    };
    while i < fqdn_len {
        let c = if i < b.len() { b[i] } else { b'.' };
        match c {
            b'\\' => {
                if i + 3 < b.len() && b[i + 1..=i + 3].iter().all(u8::is_ascii_digit) {
                    i += 3;
                    begin += 3;
                } else {
                    i += 1;
                    begin += 1;
                }
                was_dot = false;
            }
            b'.' => {
                if i == 0 || was_dot {
                    return false;
                }
                was_dot = true;
                let label = i.saturating_sub(begin);
                if label >= 64 {
                    return false;
                }
                off += 1 + label;
                if off > 256 {
                    return false;
                }
                begin = i + 1;
            }
            _ => was_dot = false,
        }
        i += 1;
    }
    true
}

/// The reverse zones of a CIDR, `None` when `host` is not one. Text before a `/` that is not an
/// IP address is a name (RFC 2317 zones such as `0/26.2.0.192.in-addr.arpa`).
fn reverse_zones(host: &str) -> Result<Option<Vec<String>>, String> {
    let Some((addr, mask)) = host.split_once('/') else {
        return Ok(None);
    };
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return Ok(None);
    };
    let invalid = || format!("invalid CIDR {host}");
    // CoreDNS refuses IPv6 CIDRs written from `:` or `0` (`::/0`, `::ffff:10.0.0.0/104`,
    // `0:0::/16`), which would otherwise name most of ip6.arpa.
    if host.starts_with(':') || (host.starts_with('0') && host.contains(':')) {
        return Err(invalid());
    }
    let (bits, digit, value): (u32, u32, u128) = match ip {
        IpAddr::V4(v4) => (32, 8, u32::from(v4) as u128),
        IpAddr::V6(v6) => (128, 4, u128::from(v6)),
    };
    if mask.is_empty() || mask.len() > 10 || !mask.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let ones: u32 = mask.parse().map_err(|_| invalid())?;
    if ones > bits {
        return Err(invalid());
    }
    let host_mask = |len: u32| -> u128 {
        if len >= bits {
            0
        } else {
            (u128::MAX >> (128 - bits)) >> len
        }
    };
    let network = value & !host_mask(ones);
    let boundary = ones.div_ceil(digit) * digit;
    let count = 1u128 << (boundary - ones);
    // Only used when the prefix is split, that is when `boundary` is above `ones` and so
    // below 128.
    let step = 1u128.checked_shl(bits - boundary).unwrap_or(0);
    let labels = (boundary / digit) as usize;
    let mut zones = Vec::with_capacity(count as usize);
    for i in 0..count {
        let net = network + i * step;
        let mut zone = String::new();
        for l in (0..labels).rev() {
            let shift = bits - digit * (l as u32 + 1);
            let part = (net >> shift) & ((1u128 << digit) - 1);
            if digit == 8 {
                zone.push_str(&part.to_string());
            } else {
                zone.push(char::from_digit(part as u32, 16).unwrap_or('0'));
            }
            zone.push('.');
        }
        zone.push_str(if digit == 8 {
            "in-addr.arpa."
        } else {
            "ip6.arpa."
        });
        zones.push(zone);
    }
    Ok(Some(zones))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(key: &str) -> Vec<String> {
        parse_key(key)
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .into_iter()
            .map(|k| k.zone)
            .collect()
    }

    #[test]
    fn schemes_zones_and_ports() {
        let cases: &[(&str, Scheme, &str, Option<u16>, u16)] = &[
            (".", Scheme::Dns, ".", None, 53),
            (".:53", Scheme::Dns, ".", Some(53), 53),
            ("example.org", Scheme::Dns, "example.org.", None, 53),
            ("Example.ORG.", Scheme::Dns, "example.org.", None, 53),
            (
                "example.org:1053",
                Scheme::Dns,
                "example.org.",
                Some(1053),
                1053,
            ),
            ("dns://example.org", Scheme::Dns, "example.org.", None, 53),
            ("dns://.:5300", Scheme::Dns, ".", Some(5300), 5300),
            ("tls://example.org", Scheme::Tls, "example.org.", None, 853),
            (
                "quic://example.org",
                Scheme::Quic,
                "example.org.",
                None,
                853,
            ),
            (
                "grpc://example.org",
                Scheme::Grpc,
                "example.org.",
                None,
                443,
            ),
            (
                "https://example.org",
                Scheme::Https,
                "example.org.",
                None,
                443,
            ),
            (
                "https3://example.org",
                Scheme::Https3,
                "example.org.",
                None,
                443,
            ),
            ("https://.:8443", Scheme::Https, ".", Some(8443), 8443),
            ("tls://.:5553", Scheme::Tls, ".", Some(5553), 5553),
            // RFC 2317 delegation names contain a slash but are not CIDRs.
            (
                "0/26.2.0.192.in-addr.arpa",
                Scheme::Dns,
                "0/26.2.0.192.in-addr.arpa.",
                None,
                53,
            ),
            ("10.0.0.1", Scheme::Dns, "10.0.0.1.", None, 53),
        ];
        for (key, scheme, zone, port, effective) in cases {
            let k = parse_key(key).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(k.len(), 1, "{key}");
            assert_eq!(k[0].scheme, *scheme, "{key}");
            assert_eq!(k[0].zone, *zone, "{key}");
            assert_eq!(k[0].port, *port, "{key}");
            assert_eq!(k[0].port_or(53), *effective, "{key}");
            assert_eq!(k[0].original, *key);
        }
        assert_eq!(parse_key("example.org").unwrap()[0].port_or(1053), 1053);
        assert_eq!(
            parse_key("tls://example.org").unwrap()[0].port_or(1053),
            853
        );
    }

    #[test]
    fn cidr_keys_become_reverse_zones() {
        let cases: &[(&str, &[&str])] = &[
            ("10.0.0.0/24", &["0.0.10.in-addr.arpa."]),
            ("10.0.0.5/24", &["0.0.10.in-addr.arpa."]),
            ("10.0.0.0/8", &["10.in-addr.arpa."]),
            ("172.16.0.0/16:1053", &["16.172.in-addr.arpa."]),
            ("dns://10.1.2.3/32", &["3.2.1.10.in-addr.arpa."]),
            ("0.0.0.0/0", &["in-addr.arpa."]),
            ("10.0.0.0/15", &["0.10.in-addr.arpa.", "1.10.in-addr.arpa."]),
            (
                "192.168.0.0/22",
                &[
                    "0.168.192.in-addr.arpa.",
                    "1.168.192.in-addr.arpa.",
                    "2.168.192.in-addr.arpa.",
                    "3.168.192.in-addr.arpa.",
                ],
            ),
            (
                "10.0.0.64/31",
                &["64.0.0.10.in-addr.arpa.", "65.0.0.10.in-addr.arpa."],
            ),
            ("2001:db8::/32", &["8.b.d.0.1.0.0.2.ip6.arpa."]),
            ("2001:DB8::/32:1053", &["8.b.d.0.1.0.0.2.ip6.arpa."]),
            (
                "2001:db8::/30",
                &[
                    "8.b.d.0.1.0.0.2.ip6.arpa.",
                    "9.b.d.0.1.0.0.2.ip6.arpa.",
                    "a.b.d.0.1.0.0.2.ip6.arpa.",
                    "b.b.d.0.1.0.0.2.ip6.arpa.",
                ],
            ),
            (
                "2001:db8:abcd::/47",
                &[
                    "c.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa.",
                    "d.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa.",
                ],
            ),
            ("fd00::/8", &["d.f.ip6.arpa."]),
        ];
        for (key, want) in cases {
            assert_eq!(zones(key), *want, "{key}");
        }
        let slash27 = zones("10.0.0.0/27");
        assert_eq!(slash27.len(), 32);
        assert_eq!(slash27[0], "0.0.0.10.in-addr.arpa.");
        assert_eq!(slash27[31], "31.0.0.10.in-addr.arpa.");
        let slash25 = zones("10.0.0.128/25");
        assert_eq!(slash25.len(), 128);
        assert_eq!(slash25[0], "128.0.0.10.in-addr.arpa.");
        assert_eq!(slash25[127], "255.0.0.10.in-addr.arpa.");
        assert_eq!(zones("10.0.0.0/9").len(), 128);
        assert_eq!(zones("2001:db8::1/128")[0].matches('.').count(), 34);
    }

    #[test]
    fn bad_keys_are_errors() {
        let cases = [
            ("udp://example.org", "unknown scheme 'udp'"),
            ("DNS://example.org", "unknown scheme 'DNS'"),
            (
                "example.org:",
                "expecting data after last colon: \"example.org:\"",
            ),
            ("example.org:70000", "invalid port '70000'"),
            ("example.org:0", "invalid port '0'"),
            ("example.org:99999999999999999999", "invalid port"),
            ("example.org:dns", "invalid port 'dns'"),
            (":53", "zone is not a valid domain name: "),
            ("", "zone is not a valid domain name: "),
            ("a..b", "zone is not a valid domain name: a..b"),
            (".example.org", "zone is not a valid domain name"),
            (
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
                "not a valid domain name",
            ),
            ("10.0.0.0/33", "invalid CIDR 10.0.0.0/33"),
            ("10.0.0.0/", "invalid CIDR"),
            ("10.0.0.0/2x", "invalid CIDR"),
            ("2001:db8::/129", "invalid CIDR"),
            ("::/0", "invalid CIDR ::/0"),
            ("::ffff:10.0.0.0/104", "invalid CIDR"),
            ("0:0::/16", "invalid CIDR"),
            ("[::1]:53", "zone is not a valid domain name: [::1]"),
            ("2001:db8::1", "not a valid domain name"),
            ("dns://dns://x", "not a valid domain name"),
        ];
        for (key, want) in cases {
            let err = parse_key(key).expect_err(key);
            assert!(err.contains(want), "{key}: {err}");
        }
        let long = format!("{}.org", "a.".repeat(130));
        assert!(
            parse_key(&long)
                .unwrap_err()
                .starts_with("specified zone is too long")
        );
    }
}
