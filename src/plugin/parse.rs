//! Parsing the value forms that Corefile options share, with CoreDNS's (Go's) spelling, and
//! printing a duration back as Go does for log lines CoreDNS writes with `%v`; and the
//! `host:port` of the HTTP endpoints (`health`, `ready`, `prometheus`) read as Go's `net.Listen`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A Go duration (`time.ParseDuration`): `300ms`, `1.5h`, `2h45m`, `10s`. Units: `ns`, `us`
/// (or `µs`), `ms`, `s`, `m`, `h`. A bare `0` is zero; negative durations are rejected because
/// no Corefile option takes one.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration \"{text}\"");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// A whole number of seconds or a Go duration (several CoreDNS options accept both).
pub fn seconds_or_duration(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => go_duration(text),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `5m0s`, `1.5s`, `300ms`, `1.2µs`, `0s`.
pub fn go_duration_string(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (digits, unit) = match nanos {
            n if n < 1_000 => (0, "ns"),
            n if n < 1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        return format!("{}{unit}", fraction(nanos, digits));
    }
    let secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let mut s_part = fraction(secs % 60 * 1_000_000_000 + frac, 9);
    s_part.push('s');
    let mins = secs / 60;
    if mins == 0 {
        return s_part;
    }
    let hours = mins / 60;
    if hours == 0 {
        return format!("{}m{s_part}", mins % 60);
    }
    format!("{hours}h{}m{s_part}", mins % 60)
}

/// `v / 10^digits` with the fraction's trailing zeros (and a bare point) left out.
fn fraction(v: u128, digits: u32) -> String {
    let scale = 10u128.pow(digits);
    let (whole, frac) = (v / scale, v % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let mut f = format!("{frac:0width$}", width = digits as usize);
    while f.ends_with('0') {
        f.pop();
    }
    format!("{whole}.{f}")
}

/// Turn `host:port` into the address to listen on, as Go's `net.Listen` would: an empty host
/// is every address, a name is resolved (first IPv4 address preferred, as Go does for
/// `localhost`). Errors read as Go's `net.SplitHostPort` errors.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = split_host_port(text)?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("listen tcp: address {text}: invalid port"))?;
    if host.is_empty() {
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("listen tcp: lookup {host}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("listen tcp: lookup {host}: no such host"))
}

/// Go's `net.SplitHostPort`.
pub fn split_host_port(text: &str) -> Result<(&str, &str), String> {
    let err = |why: &str| format!("address {text}: {why}");
    let Some(colon) = text.rfind(':') else {
        return Err(err("missing port in address"));
    };
    let (host, port) = (&text[..colon], &text[colon + 1..]);
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(err("missing ']' in address"));
        };
        return Ok((inner, port));
    }
    if host.contains(':') {
        return Err(err("too many colons in address"));
    }
    if host.contains('[') || host.contains(']') || port.contains(']') {
        return Err(err("unexpected '[' in address"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "s", "5x", "-1s", "1..5s"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds_or_duration("30"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_nanos(1500), "1.5µs"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_micros(2500), "2.5ms"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(42), "42ns"),
        ] {
            assert_eq!(go_duration_string(d), want);
        }
    }

    #[test]
    fn addresses_follow_go() {
        for (text, want) in [
            (":9153", Ok("[::]:9153")),
            ("127.0.0.1:9253", Ok("127.0.0.1:9253")),
            ("[::1]:9153", Ok("[::1]:9153")),
            ("localhost:9153", Ok("127.0.0.1:9153")),
            ("9153", Err("address 9153: missing port in address")),
            (
                "::1:9153",
                Err("address ::1:9153: too many colons in address"),
            ),
            (
                "[::1:9153",
                Err("address [::1:9153: missing ']' in address"),
            ),
        ] {
            let got = listen_addr(text).map(|a| a.to_string());
            assert_eq!(got, want.map(String::from).map_err(String::from), "{text}");
        }
    }
}
