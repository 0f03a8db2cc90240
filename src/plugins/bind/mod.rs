//! `bind`: the addresses a server block listens on, instead of every address. See README.md.
//!
//! Setup only fills [`BlockConfig::listen`]; the server opens one listener per address, so
//! several blocks can share a port on different addresses.

use std::ffi::CStr;
use std::net::IpAddr;

use crate::corefile::Directive;
use crate::plugin::setup::{Setup, SetupError, SetupResult};

/// One address of a network interface, from getifaddrs(3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub interface: String,
    pub ip: IpAddr,
}

/// Every address of every interface, as Go's `net.Interfaces()` + `Addrs()` list them.
pub fn interface_addrs() -> std::io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points at a sockaddr whose family tells its real type.
        let ip = match unsafe { (*ifa.ifa_addr).sa_family } as i32 {
            libc::AF_INET => {
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::from(sin6.sin6_addr.s6_addr)
            }
            _ => continue,
        };
        out.push(IfAddr {
            interface: name,
            ip,
        });
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// IPv6 link-local addresses need a zone (`fe80::1%eth0`) to be bound; CoreDNS skips them when
/// it expands an interface name, and so does ferrodns.
fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_multicast(),
    }
}

/// Addresses from words that are IP addresses or interface names (CoreDNS's `listIP`).
fn list_ips(words: &[&str], ifaces: &[IfAddr]) -> Result<Vec<IpAddr>, String> {
    let mut all = Vec::new();
    for w in words {
        let of_iface: Vec<IpAddr> = ifaces
            .iter()
            .filter(|a| a.interface == *w && usable(&a.ip))
            .map(|a| a.ip)
            .collect();
        if ifaces.iter().any(|a| a.interface == *w) {
            all.extend(of_iface);
            continue;
        }
        match w.parse::<IpAddr>() {
            Ok(ip) => all.push(ip),
            Err(_) => {
                return Err(format!("not a valid IP address or interface name: \"{w}\""));
            }
        }
    }
    Ok(all)
}

/// One `bind` line: its addresses minus its `except` addresses.
fn parse(d: &Directive, ifaces: &[IfAddr]) -> Result<Vec<IpAddr>, String> {
    let addrs = d.arg_strs();
    if addrs.is_empty() {
        return Err("at least one address or interface name is expected".into());
    }
    let mut except = Vec::new();
    for line in &d.block {
        match line.name.as_str() {
            "except" => {
                let words = line.arg_strs();
                if words.is_empty() {
                    return Err(
                        "at least one address or interface must be given to except subdirective"
                            .into(),
                    );
                }
                except.extend(list_ips(&words, ifaces)?);
            }
            other => return Err(format!("invalid option \"{other}\"")),
        }
    }
    let mut ips = list_ips(&addrs, ifaces)?;
    ips.retain(|ip| !except.contains(ip));
    Ok(ips)
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let ifaces = interface_addrs().map_err(|_| SetupError {
        loc: None,
        msg: "failed to get interfaces list".into(),
    })?;
    let mut all: Vec<IpAddr> = Vec::new();
    for d in &c.directives {
        let ips = parse(d, &ifaces).map_err(|msg| d.err(msg))?;
        for ip in ips {
            if !all.contains(&ip) {
                all.push(ip);
            }
        }
    }
    if all.is_empty() {
        // Everything was excepted: CoreDNS would then listen nowhere for this block; say so
        // instead of silently serving nothing.
        return Err(c.directives[0].err("no address left to bind to after except"));
    }
    c.block.listen = all;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;

    fn ifaces() -> Vec<IfAddr> {
        let a = |i: &str, ip: &str| IfAddr {
            interface: i.into(),
            ip: ip.parse().unwrap(),
        };
        vec![
            a("lo", "127.0.0.1"),
            a("lo", "::1"),
            a("eth0", "192.0.2.2"),
            a("eth0", "fd00::2"),
            a("eth0", "fe80::1"),
        ]
    }

    fn bind_of(text: &str) -> Result<Vec<String>, String> {
        let c = parse_str(
            "Corefile",
            &format!(".:53 {{\n{text}\n}}\n"),
            std::path::Path::new("."),
        )
        .map_err(|e| e.to_string())?;
        let mut all = Vec::new();
        for d in &c.blocks[0].directives {
            all.extend(parse(d, &ifaces())?.iter().map(|ip| ip.to_string()));
        }
        Ok(all)
    }

    #[test]
    fn addresses_interfaces_and_except() {
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            ("bind 127.0.0.1", Ok(&["127.0.0.1"])),
            ("bind 127.0.0.1 ::1", Ok(&["127.0.0.1", "::1"])),
            ("bind 127.0.0.1\nbind ::1", Ok(&["127.0.0.1", "::1"])),
            ("bind lo", Ok(&["127.0.0.1", "::1"])),
            // Link-local addresses need a zone to bind: skipped.
            ("bind eth0", Ok(&["192.0.2.2", "fd00::2"])),
            (
                "bind lo eth0 {\n except ::1 fd00::2\n}",
                Ok(&["127.0.0.1", "192.0.2.2"]),
            ),
            ("bind eth0 {\n except eth0\n}", Ok(&[])),
            (
                "bind",
                Err("at least one address or interface name is expected"),
            ),
            (
                "bind nosuch0",
                Err("not a valid IP address or interface name: \"nosuch0\""),
            ),
            (
                "bind lo {\n except\n}",
                Err("at least one address or interface must be given to except subdirective"),
            ),
            (
                "bind lo {\n only 127.0.0.1\n}",
                Err("invalid option \"only\""),
            ),
        ];
        for (text, want) in cases {
            let got = bind_of(text);
            match want {
                Ok(w) => assert_eq!(
                    got.as_deref().ok(),
                    Some(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>()[..]),
                    "{text}"
                ),
                Err(e) => assert_eq!(got.as_ref().err().map(String::as_str), Some(*e), "{text}"),
            }
        }
    }

    #[test]
    fn this_host_has_a_loopback_interface() {
        let addrs = interface_addrs().unwrap();
        assert!(
            addrs.iter().any(|a| a.ip == IpAddr::from([127, 0, 0, 1])),
            "{addrs:?}"
        );
    }
}
