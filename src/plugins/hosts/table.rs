//! The hosts data: parsing `/etc/hosts`-style text, and the immutable lookup table that queries
//! read.
//!
//! Parsing follows CoreDNS's `hostsfile.go` (itself Go's `net/hosts.go`): text after `#` is a
//! comment, a line needs an address and at least one name, an address that does not parse
//! drops the whole line, an IPv6 zone (`fe80::1%eth0`) is ignored, and every name is lowercased
//! and made fully qualified without further checks. Names outside the plugin's zones are not
//! stored at all.
//!
//! The file and the inline entries are parsed separately ([`HostsMap`], which also gives the
//! `coredns_hosts_entries` count exactly as CoreDNS counts it) and then merged into one
//! [`Table`]: one hash lookup per query answers both "which addresses" and "does the name
//! exist with the other family" (CoreDNS's `otherRecordsExist`), which decides NODATA against
//! NXDOMAIN.

use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use crate::dnsname::is_subdomain;

/// rustc's FxHash, finished with a rotation so that the low bits hashbrown indexes with are
/// well mixed. Every key comes from the operator's own file, so a keyed hash (SipHash, std's
/// default) buys no protection against flooding here, and Fx is several times faster: it
/// halves the load time of a large block list and trims the per-query lookup.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ rest.len() as u64);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;
pub type HashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;
pub type HashSet<K> = std::collections::HashSet<K, FxBuild>;

/// One source of entries (the file, or the Corefile's inline lines) as CoreDNS keeps it.
#[derive(Debug, Default, Clone)]
pub struct HostsMap {
    pub name4: HashMap<String, Vec<Ipv4Addr>>,
    pub name6: HashMap<String, Vec<Ipv6Addr>>,
    /// Reverse entries, keyed by the address in canonical form (an IPv4-mapped IPv6 address is
    /// its IPv4 address, as Go's `net.IP.String` prints it).
    pub addr: HashMap<IpAddr, Vec<String>>,
}

impl HostsMap {
    /// CoreDNS's `Map.Len`: every forward and reverse entry, duplicates included.
    pub fn len(&self) -> usize {
        self.name4.values().map(Vec::len).sum::<usize>()
            + self.name6.values().map(Vec::len).sum::<usize>()
            + self.addr.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.name4.is_empty() && self.name6.is_empty() && self.addr.is_empty()
    }
}

/// Go's `bytes.Fields` separators (the ASCII ones; hosts files are ASCII in practice).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// The address field of a line: an IPv6 zone is dropped, then Go's `net.ParseIP` rules (which
/// Rust's parser shares: dotted quads without leading zeros, RFC 4291 text for IPv6).
fn parse_addr(field: &[u8]) -> Option<IpAddr> {
    let field = match field.iter().position(|&b| b == b'%') {
        Some(i) => &field[..i],
        None => field,
    };
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Parse hosts-file text. `origins` are the zones the plugin serves (lowercase FQDNs);
/// `reverse` is false under `no_reverse`.
pub fn parse(text: &[u8], origins: &[String], reverse: bool) -> HostsMap {
    let mut map = HostsMap::default();
    // Most lines of a large file are IPv4 entries with one name: sizing for them up front
    // saves the rehashing of a growing map.
    let lines = text.iter().filter(|&&b| b == b'\n').count();
    map.name4.reserve(lines);
    for line in text.split(|&b| b == b'\n') {
        let line = match line.iter().position(|&b| b == b'#') {
            Some(i) => &line[..i],
            None => line,
        };
        let mut fields = line.split(|&b| is_space(b)).filter(|f| !f.is_empty());
        let Some(first) = fields.next() else {
            continue;
        };
        let Some(addr) = parse_addr(first) else {
            continue;
        };
        // CoreDNS decides the family with `To4() != nil`: an IPv4-mapped IPv6 address
        // (`::ffff:192.0.2.1`) gives an A record, and its reverse entry is the IPv4 one.
        let addr = addr.to_canonical();
        for field in fields {
            let mut name = String::from_utf8_lossy(field).to_ascii_lowercase();
            if !name.ends_with('.') {
                name.push('.');
            }
            if !origins.iter().any(|z| is_subdomain(&name, z)) {
                continue;
            }
            match addr {
                IpAddr::V4(v4) => map.name4.entry(name.clone()).or_default().push(v4),
                IpAddr::V6(v6) => map.name6.entry(name.clone()).or_default().push(v6),
            }
            if reverse {
                map.addr.entry(addr).or_default().push(name);
            }
        }
    }
    map
}

/// The addresses of one name.
#[derive(Debug, Default)]
pub struct Addrs {
    pub v4: Box<[Ipv4Addr]>,
    pub v6: Box<[Ipv6Addr]>,
}

/// What queries read: built once per load, never changed, swapped whole on reload.
#[derive(Debug, Default)]
pub struct Table {
    names: HashMap<Box<str>, Addrs>,
    /// PTR targets, already in wire-ready form.
    ptr: HashMap<IpAddr, Box<[Name]>>,
}

impl Table {
    /// Merge the file's entries and the inline ones, file first, as CoreDNS's lookups append
    /// the inline addresses after the file's.
    ///
    /// CoreDNS answers the same address twice when it is listed twice (or in both the file and
    /// the Corefile); RFC 2181 §5 says duplicates in an RRset should be suppressed, so ferrodns
    /// folds them here, where it costs queries nothing. The sets keep this linear: a block
    /// list maps hundreds of thousands of names to `0.0.0.0`.
    pub fn build(file: &HostsMap, inline: &HostsMap) -> Table {
        type Pending = (Vec<Ipv4Addr>, Vec<Ipv6Addr>);
        let mut names: HashMap<&str, Pending> = HashMap::default();
        let mut seen: HashSet<(&str, IpAddr)> = HashSet::default();
        for src in [file, inline] {
            for (name, ips) in &src.name4 {
                let e = names.entry(name.as_str()).or_default();
                for ip in ips {
                    if seen.insert((name.as_str(), IpAddr::V4(*ip))) {
                        e.0.push(*ip);
                    }
                }
            }
            for (name, ips) in &src.name6 {
                let e = names.entry(name.as_str()).or_default();
                for ip in ips {
                    if seen.insert((name.as_str(), IpAddr::V6(*ip))) {
                        e.1.push(*ip);
                    }
                }
            }
        }
        // The names of one address keep the order in which the file lists them.
        let mut ptr: HashMap<IpAddr, Vec<Name>> = HashMap::default();
        seen.clear();
        for src in [file, inline] {
            for (addr, hosts) in &src.addr {
                let targets = match ptr.entry(*addr) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => v.insert(Vec::new()),
                };
                for host in hosts {
                    if !seen.insert((host.as_str(), *addr)) {
                        continue;
                    }
                    // A name that is not a valid DNS name (a label over 63 octets, say) could
                    // not be written in an answer; it is left out rather than spoiling the
                    // others.
                    if let Ok(n) = Name::from_ascii(host) {
                        targets.push(n);
                    }
                }
            }
        }
        Table {
            names: names
                .into_iter()
                .map(|(k, (v4, v6))| {
                    (
                        Box::from(k),
                        Addrs {
                            v4: v4.into_boxed_slice(),
                            v6: v6.into_boxed_slice(),
                        },
                    )
                })
                .collect(),
            ptr: ptr
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
        }
    }

    /// The addresses of `name` (a lowercase FQDN), if it has any.
    pub fn lookup(&self, name: &str) -> Option<&Addrs> {
        self.names.get(name)
    }

    /// The names whose reverse entry is `addr` (canonical form).
    pub fn reverse(&self, addr: &IpAddr) -> Option<&[Name]> {
        self.ptr.get(addr).map(|v| &v[..])
    }
}

/// A small stack buffer for assembling an address text without allocating per query.
struct Buf {
    bytes: [u8; 64],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Buf {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) -> Option<()> {
        let end = self.len.checked_add(s.len())?;
        self.bytes.get_mut(self.len..end)?.copy_from_slice(s);
        self.len = end;
        Some(())
    }

    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes[..self.len]).ok()
    }
}

/// The address a reverse name stands for (CoreDNS's `dnsutil.ExtractAddressFromReverse`),
/// in canonical form so that it matches [`Table::reverse`] keys. `name` is a lowercase FQDN.
///
/// As in CoreDNS, the labels before `.in-addr.arpa.` are reversed and read as a dotted quad;
/// the labels before `.ip6.arpa.` are reversed and read four at a time as the groups of an
/// IPv6 address (a name that is not a full address gives `None`). An `ip6.arpa` name of an
/// IPv4-mapped address finds the IPv4 entry, as Go's `net.IP.String` makes it do.
pub fn reverse_addr(name: &str) -> Option<IpAddr> {
    if let Some(labels) = name.strip_suffix(".in-addr.arpa.") {
        let mut buf = Buf::new();
        for (i, label) in labels.rsplit('.').enumerate() {
            if i > 0 {
                buf.push(b".")?;
            }
            buf.push(label.as_bytes())?;
        }
        let v4: Ipv4Addr = buf.as_str()?.parse().ok()?;
        return Some(IpAddr::V4(v4));
    }
    let labels = name.strip_suffix(".ip6.arpa.")?;
    let count = labels.split('.').count();
    let mut buf = Buf::new();
    // Only whole groups of four labels count; leftover leading labels are ignored, as the
    // CoreDNS code does.
    for (i, label) in labels.rsplit('.').take(count / 4 * 4).enumerate() {
        if i > 0 && i % 4 == 0 {
            buf.push(b":")?;
        }
        buf.push(label.as_bytes())?;
    }
    let v6: Ipv6Addr = buf.as_str()?.parse().ok()?;
    Some(IpAddr::V6(v6).to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Vec<String> {
        vec![".".to_string()]
    }

    #[test]
    fn parse_lines_comments_aliases_and_junk() {
        let text = b"# a comment line\n\
            127.0.0.1\tlocalhost   # trailing comment\n\
            192.0.2.10 Example.ORG www.example.org. alias\r\n\
            2001:db8::10 example.org\n\
            fe80::1%eth0 link.example.org\n\
            ::ffff:192.0.2.20 mapped.example.org\n\
            not-an-address name.example.org\n\
            127.000.000.002 leading-zeros.example.org\n\
            192.0.2.30\n\
            \n\
            #192.0.2.40 commented.example.org\n";
        let m = parse(text, &root(), true);
        assert_eq!(m.name4["localhost."], vec![Ipv4Addr::new(127, 0, 0, 1)]);
        assert_eq!(m.name4["example.org."], vec![Ipv4Addr::new(192, 0, 2, 10)]);
        assert_eq!(
            m.name4["www.example.org."],
            vec![Ipv4Addr::new(192, 0, 2, 10)]
        );
        assert_eq!(m.name4["alias."], vec![Ipv4Addr::new(192, 0, 2, 10)]);
        assert_eq!(
            m.name6["example.org."],
            vec!["2001:db8::10".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(
            m.name6["link.example.org."],
            vec!["fe80::1".parse::<Ipv6Addr>().unwrap()]
        );
        // IPv4-mapped: an A record and an in-addr.arpa reverse entry, no AAAA.
        assert_eq!(
            m.name4["mapped.example.org."],
            vec![Ipv4Addr::new(192, 0, 2, 20)]
        );
        assert!(!m.name6.contains_key("mapped.example.org."));
        assert!(
            m.addr
                .contains_key(&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20)))
        );
        for skipped in [
            "name.example.org.",
            "leading-zeros.example.org.",
            "commented.example.org.",
        ] {
            assert!(!m.name4.contains_key(skipped), "{skipped}");
        }
        assert_eq!(
            m.addr[&IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))],
            vec!["example.org.", "www.example.org.", "alias."]
        );
        // Five A and two AAAA entries, each with its reverse entry.
        assert_eq!(m.len(), 2 * (5 + 2));
    }

    #[test]
    fn names_outside_origins_and_no_reverse() {
        let zones = vec!["example.org.".to_string()];
        let m = parse(
            b"192.0.2.1 a.example.org b.example.net example.org\n",
            &zones,
            false,
        );
        assert!(m.name4.contains_key("a.example.org."));
        assert!(m.name4.contains_key("example.org."));
        assert!(!m.name4.contains_key("b.example.net."));
        assert!(m.addr.is_empty());
    }

    #[test]
    fn table_merges_file_then_inline_without_duplicates() {
        let file = parse(
            b"192.0.2.1 a.example.\n192.0.2.2 a.example.\n",
            &root(),
            true,
        );
        let inline = parse(
            b"192.0.2.3 a.example.\n192.0.2.1 a.example.\n",
            &root(),
            true,
        );
        let t = Table::build(&file, &inline);
        let a = t.lookup("a.example.").unwrap();
        assert_eq!(
            &a.v4[..],
            &[
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(192, 0, 2, 3)
            ]
        );
        assert!(a.v6.is_empty());
        let names = t.reverse(&"192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(names, &[Name::from_ascii("a.example.").unwrap()]);
        assert!(t.lookup("b.example.").is_none());
    }

    #[test]
    fn reverse_names() {
        let cases: &[(&str, Option<&str>)] = &[
            ("10.2.0.192.in-addr.arpa.", Some("192.0.2.10")),
            ("1.0.0.127.in-addr.arpa.", Some("127.0.0.1")),
            ("2.0.192.in-addr.arpa.", None),
            ("010.2.0.192.in-addr.arpa.", None),
            ("in-addr.arpa.", None),
            ("example.org.", None),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
                Some("::1"),
            ),
            (
                "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
                Some("2001:db8::10"),
            ),
            // ::ffff:192.0.2.10 is the IPv4 address.
            (
                "a.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa.",
                Some("192.0.2.10"),
            ),
            ("8.b.d.0.1.0.0.2.ip6.arpa.", None),
        ];
        for (name, want) in cases {
            let want: Option<IpAddr> = want.map(|w| w.parse().unwrap());
            assert_eq!(reverse_addr(name), want, "{name}");
        }
    }
}
