//! Reading `forward FROM TO... { ... }` stanzas into [`Config`]s, with CoreDNS's checks and
//! error texts (`plugin/forward/setup.go`, `plugin/pkg/parse/host.go`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::Name;

use crate::corefile::{Directive, Error, normalize_exact};
use crate::dnsname::fqdn_lower;
use crate::plugin::parse::go_duration;

use super::policy::Policy;

/// CoreDNS refuses more upstreams than this in one stanza.
pub const MAX_UPSTREAMS: usize = 15;
/// Idle connections are closed after this long unless `expire` says otherwise.
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(10);
/// How long an attempt waits for a reply unless `read_timeout` says otherwise.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a failing upstream is probed unless `health_check` says otherwise.
pub const DEFAULT_HEALTH_CHECK: Duration = Duration::from_millis(500);

/// How an upstream is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Dns,
    Tls,
}

/// One **TO** after files are expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSpec {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The per-upstream TLS server name of `tls://IP%NAME:PORT`.
    pub server_name: Option<String>,
}

impl UpstreamSpec {
    /// The `to` label of the metrics: `IP:PORT` without scheme, as CoreDNS's `proxy.Addr()`.
    pub fn label(&self) -> String {
        self.addr.to_string()
    }
}

/// The files named by `tls CERT KEY CA` (0 to 3 of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

/// One parsed `forward` stanza.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub from: String,
    pub except: Vec<String>,
    pub upstreams: Vec<UpstreamSpec>,
    pub force_tcp: bool,
    pub prefer_udp: bool,
    pub expire: Duration,
    /// How long one attempt waits for the upstream's reply.
    pub read_timeout: Duration,
    /// Absolute lifetime of a TCP/TLS connection; zero: none.
    pub max_age: Duration,
    /// Idle TCP/TLS connections kept per upstream; zero: no limit.
    pub max_idle_conns: usize,
    pub max_fails: u32,
    /// Upstream attempts per query; zero: no cap beyond the overall deadline.
    pub max_connect_attempts: u32,
    pub tls: Option<TlsFiles>,
    pub tls_servername: Option<String>,
    pub policy: Policy,
    pub health_check: Duration,
    pub hc_recursion_desired: bool,
    pub hc_domain: Name,
    pub max_concurrent: u64,
    pub next: Vec<ResponseCode>,
    pub next_on_nodata: bool,
    pub failover: Vec<ResponseCode>,
    pub failfast_all_unhealthy: bool,
}

impl Config {
    fn new(from: String, upstreams: Vec<UpstreamSpec>) -> Self {
        Config {
            from,
            except: Vec::new(),
            upstreams,
            force_tcp: false,
            prefer_udp: false,
            expire: DEFAULT_EXPIRE,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_age: Duration::ZERO,
            max_idle_conns: 0,
            max_fails: 2,
            max_connect_attempts: 0,
            tls: None,
            tls_servername: None,
            policy: Policy::Random,
            health_check: DEFAULT_HEALTH_CHECK,
            hc_recursion_desired: true,
            hc_domain: Name::root(),
            max_concurrent: 0,
            next: Vec::new(),
            next_on_nodata: false,
            failover: Vec::new(),
            failfast_all_unhealthy: false,
        }
    }
}

/// Parse one `forward` line and its block. `root` resolves relative file names.
pub fn parse_stanza(d: &Directive, root: &Path) -> Result<Config, Error> {
    let args = d.arg_strs();
    if args.len() < 2 {
        return Err(d.arg_err());
    }
    let from = normalize_from(args[0]).ok_or_else(|| {
        d.err_at(
            &d.args[0],
            format!("unable to normalize '{}'", d.args[0].text),
        )
    })?;

    let mut raw: Vec<(String, Option<String>)> = Vec::new();
    for (i, to) in args[1..].iter().enumerate() {
        let tok = &d.args[i + 1];
        let expanded = host_port_or_file(to, root).map_err(|m| d.err_at(tok, m))?;
        raw.extend(expanded);
    }
    if raw.is_empty() {
        return Err(d.err("no nameservers found"));
    }

    // The block first: `tls_servername` decides whether `%NAME` on a TO is allowed.
    let mut cfg = Config::new(from, Vec::new());
    for line in &d.block {
        parse_option(line, &mut cfg, root)?;
    }

    for (text, server_name) in raw {
        let spec = to_upstream(&text, server_name).map_err(|m| d.err(m))?;
        if spec.transport == Transport::Tls
            && let (Some(global), Some(own)) = (&cfg.tls_servername, &spec.server_name)
        {
            return Err(d.err(format!(
                "both forward ('{global}') and proxy level ('{own}') TLS servernames are set for upstream proxy '{}'",
                text
            )));
        }
        cfg.upstreams.push(spec);
    }
    if cfg.upstreams.len() > MAX_UPSTREAMS {
        return Err(d.err(format!(
            "more than {MAX_UPSTREAMS} TOs configured: {}",
            cfg.upstreams.len()
        )));
    }
    Ok(cfg)
}

/// FROM as a zone: a name, or a CIDR's first reverse zone (CoreDNS takes
/// `NormalizeExact()[0]`, so `10.0.0.0/15` is `0.10.in-addr.arpa.` only).
fn normalize_from(text: &str) -> Option<String> {
    normalize_exact(text).into_iter().next()
}

/// `host_port_or_file` of CoreDNS: an address (with optional scheme and port) stays as written;
/// anything else must be a resolv.conf-style file whose `nameserver` lines are the upstreams.
/// Returns (address text, per-upstream TLS server name).
fn host_port_or_file(to: &str, root: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    let (_, rest) = split_scheme(to);
    let (host, server_name) = split_server_name(rest);
    if parse_addr(&host, 53).is_some() {
        return Ok(vec![(with_scheme(to, &host), server_name)]);
    }
    let path = if Path::new(rest).is_absolute() {
        PathBuf::from(rest)
    } else {
        root.join(rest)
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(resolv_conf_nameservers(&text)
            .into_iter()
            .map(|ns| (ns, None))
            .collect()),
        Err(_) => Err(format!("not an IP address or file: \"{rest}\"")),
    }
}

fn with_scheme(original: &str, host: &str) -> String {
    match split_scheme(original) {
        (Some(s), _) => format!("{s}://{host}"),
        (None, _) => host.to_string(),
    }
}

fn split_scheme(s: &str) -> (Option<&str>, &str) {
    match s.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, s),
    }
}

/// `IP%NAME[:PORT]` -> (`IP[:PORT]`, NAME), CoreDNS's `splitZone`.
fn split_server_name(host: &str) -> (String, Option<String>) {
    let Some(pct) = host.rfind('%') else {
        return (host.to_string(), None);
    };
    let (addr, mut name) = (&host[..pct], &host[pct + 1..]);
    let mut addr = addr.to_string();
    if let Some(colon) = name.rfind(':') {
        addr.push_str(&name[colon..]);
        name = &name[..colon];
    }
    (addr, Some(name.to_string()))
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
fn parse_addr(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

/// The `nameserver` lines of a resolv.conf, as `IP:53` (IPv6 in brackets).
pub fn resolv_conf_nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "nameserver" {
                return None;
            }
            let ip: IpAddr = words.next()?.split('%').next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53).to_string())
        })
        .collect()
}

fn to_upstream(text: &str, server_name: Option<String>) -> Result<UpstreamSpec, String> {
    let (scheme, host) = split_scheme(text);
    let transport = match scheme {
        None | Some("dns") => Transport::Dns,
        Some("tls") => Transport::Tls,
        Some(other) => {
            return Err(format!(
                "'{other}' is not supported as a destination protocol in forward: {text}"
            ));
        }
    };
    let port = if transport == Transport::Tls { 853 } else { 53 };
    let addr =
        parse_addr(host, port).ok_or_else(|| format!("not an IP address or file: \"{host}\""))?;
    Ok(UpstreamSpec {
        addr,
        transport,
        server_name: if transport == Transport::Tls {
            server_name
        } else {
            None
        },
    })
}

fn one_arg(line: &Directive) -> Result<&str, Error> {
    match line.args.as_slice() {
        [only] => Ok(&only.text),
        _ => Err(line.arg_err()),
    }
}

fn no_args(line: &Directive) -> Result<(), Error> {
    if line.args.is_empty() && line.block.is_empty() {
        Ok(())
    } else {
        Err(line.arg_err())
    }
}

/// Go's `strconv.Atoi` error text.
fn atoi(line: &Directive, text: &str) -> Result<i64, Error> {
    text.parse::<i64>()
        .map_err(|_| line.err(format!("strconv.Atoi: parsing \"{text}\": invalid syntax")))
}

/// Go's `strconv.ParseUint(s, 10, 32)` error text.
fn parse_u32(line: &Directive, text: &str) -> Result<u32, Error> {
    text.parse::<u32>().map_err(|_| {
        let why = if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            "value out of range"
        } else {
            "invalid syntax"
        };
        line.err(format!("strconv.ParseUint: parsing \"{text}\": {why}"))
    })
}

fn duration(line: &Directive, text: &str, what: &str) -> Result<Duration, Error> {
    if text.starts_with('-') && go_duration(&text[1..]).is_ok() {
        return Err(line.err(format!("{what} can't be negative: {text}")));
    }
    go_duration(text).map_err(|e| line.err(e))
}

/// miekg/dns's `StringToRcode`, case-insensitive, as CoreDNS reads `next` and `failover`.
pub fn parse_rcode(text: &str) -> Option<ResponseCode> {
    crate::plugin::mnemonic::rcode_from_name(text).map(<ResponseCode as From<u16>>::from)
}

fn rcodes(line: &Directive, failover: bool) -> Result<Vec<ResponseCode>, Error> {
    if line.args.is_empty() {
        return Err(line.arg_err());
    }
    let mut out = Vec::new();
    for t in &line.args {
        let rc = parse_rcode(&t.text)
            .ok_or_else(|| line.err_at(t, format!("{} is not a valid rcode", t.text)))?;
        if failover && rc == ResponseCode::NoError {
            return Err(line.err_at(t, "NoError cannot be used in failover"));
        }
        out.push(rc);
    }
    Ok(out)
}

fn parse_option(line: &Directive, cfg: &mut Config, root: &Path) -> Result<(), Error> {
    if !line.block.is_empty() {
        return Err(line.arg_err());
    }
    match line.name.as_str() {
        "except" => {
            if line.args.is_empty() {
                return Err(line.arg_err());
            }
            // Every zone of a CIDR, as CoreDNS appends all of `NormalizeExact`. CoreDNS skips a
            // word that is no zone; ferrodns says so instead of ignoring a typo.
            for t in &line.args {
                let zones = normalize_exact(&t.text);
                if zones.is_empty() {
                    return Err(line.err_at(t, format!("unable to normalize '{}'", t.text)));
                }
                cfg.except.extend(zones);
            }
        }
        "max_fails" => cfg.max_fails = parse_u32(line, one_arg(line)?)?,
        "max_connect_attempts" => cfg.max_connect_attempts = parse_u32(line, one_arg(line)?)?,
        "health_check" => {
            let Some((first, rest)) = line.args.split_first() else {
                return Err(line.arg_err());
            };
            cfg.health_check = duration(line, &first.text, "health_check")?;
            cfg.hc_domain = Name::root();
            let mut it = rest.iter();
            while let Some(t) = it.next() {
                match t.text.as_str() {
                    "no_rec" => cfg.hc_recursion_desired = false,
                    "domain" => {
                        let Some(dom) = it.next() else {
                            return Err(line.arg_err());
                        };
                        cfg.hc_domain = Name::from_ascii(fqdn_lower(&dom.text))
                            .ok()
                            .filter(|_| !dom.text.is_empty())
                            .ok_or_else(|| {
                                line.err_at(
                                    dom,
                                    format!("health_check: invalid domain name {}", dom.text),
                                )
                            })?;
                    }
                    other => {
                        return Err(line.err_at(t, format!("health_check: unknown option {other}")));
                    }
                }
            }
        }
        "force_tcp" => {
            no_args(line)?;
            cfg.force_tcp = true;
        }
        "prefer_udp" => {
            no_args(line)?;
            cfg.prefer_udp = true;
        }
        "tls" => {
            let paths: Vec<PathBuf> = line
                .args
                .iter()
                .map(|t| {
                    let p = Path::new(&t.text);
                    if p.is_absolute() {
                        p.to_path_buf()
                    } else {
                        root.join(p)
                    }
                })
                .collect();
            let files = match paths.as_slice() {
                [] => TlsFiles::default(),
                [ca] => TlsFiles {
                    ca: Some(ca.clone()),
                    ..Default::default()
                },
                [cert, key] => TlsFiles {
                    cert: Some(cert.clone()),
                    key: Some(key.clone()),
                    ca: None,
                },
                [cert, key, ca] => TlsFiles {
                    cert: Some(cert.clone()),
                    key: Some(key.clone()),
                    ca: Some(ca.clone()),
                },
                _ => return Err(line.arg_err()),
            };
            // Load now, so that a bad file fails start-up rather than the first query.
            super::tls::client_config(&files).map_err(|e| line.err(e))?;
            cfg.tls = Some(files);
        }
        "tls_servername" => cfg.tls_servername = Some(one_arg(line)?.to_string()),
        "expire" => cfg.expire = duration(line, one_arg(line)?, "expire")?,
        "max_age" => cfg.max_age = duration(line, one_arg(line)?, "max_age")?,
        "read_timeout" => {
            let text = one_arg(line)?;
            let d = duration(line, text, "read_timeout")?;
            if d.is_zero() {
                return Err(line.err(format!("read_timeout must be positive: {text}")));
            }
            cfg.read_timeout = d;
        }
        "max_idle_conns" => {
            let n = atoi(line, one_arg(line)?)?;
            if n < 0 {
                return Err(line.err(format!("max_idle_conns can't be negative: {n}")));
            }
            cfg.max_idle_conns = n as usize;
        }
        "policy" => {
            let p = one_arg(line)?;
            cfg.policy = match p {
                "random" => Policy::Random,
                "round_robin" => Policy::RoundRobin,
                "sequential" => Policy::Sequential,
                other => return Err(line.err(format!("unknown policy '{other}'"))),
            };
        }
        "max_concurrent" => {
            let n = atoi(line, one_arg(line)?)?;
            if n < 0 {
                return Err(line.err(format!("max_concurrent can't be negative: {n}")));
            }
            cfg.max_concurrent = n as u64;
        }
        "next" => cfg.next.extend(rcodes(line, false)?),
        "next_on_nodata" => {
            no_args(line)?;
            cfg.next_on_nodata = true;
        }
        "failover" => cfg.failover.extend(rcodes(line, true)?),
        "failfast_all_unhealthy_upstreams" => {
            no_args(line)?;
            cfg.failfast_all_unhealthy = true;
        }
        "doh_method" | "resolver" => {
            return Err(line.err(format!(
                "'{}' is not supported by ferrodns: upstreams must be IP addresses or files, over dns:// or tls://",
                line.name
            )));
        }
        _ => return Err(Directive::unknown_property(line)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corefile::parse_str;

    fn parse(text: &str) -> Result<Config, String> {
        parse_in(text, Path::new("/nonexistent-root"))
    }

    fn parse_in(text: &str, root: &Path) -> Result<Config, String> {
        let corefile = parse_str("Corefile", &format!(". {{\n{text}\n}}\n"), root)
            .map_err(|e| e.to_string())?;
        let d = &corefile.blocks[0].directives[0];
        parse_stanza(d, root).map_err(|e| e.to_string())
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults() {
        let c = parse("forward . 127.0.0.1").unwrap();
        assert_eq!(c.from, ".");
        assert_eq!(
            c.upstreams,
            vec![UpstreamSpec {
                addr: addr("127.0.0.1:53"),
                transport: Transport::Dns,
                server_name: None
            }]
        );
        assert_eq!(c.max_fails, 2);
        assert_eq!(c.expire, Duration::from_secs(10));
        assert_eq!(c.read_timeout, Duration::from_secs(2));
        assert_eq!(c.health_check, Duration::from_millis(500));
        assert_eq!(c.policy, Policy::Random);
        assert!(c.hc_recursion_desired);
        assert_eq!(c.hc_domain, Name::root());
        assert_eq!(c.max_concurrent, 0);
    }

    #[test]
    fn upstream_forms() {
        let c = parse(
            "forward Example.ORG 10.0.0.1:1053 dns://10.0.0.2 [::1]:5353 ::2 tls://10.0.0.3 tls://10.0.0.4%dns.example:8853 tls://[::1]:853",
        )
        .unwrap();
        assert_eq!(c.from, "example.org.");
        let got: Vec<(SocketAddr, Transport, Option<String>)> = c
            .upstreams
            .iter()
            .map(|u| (u.addr, u.transport, u.server_name.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (addr("10.0.0.1:1053"), Transport::Dns, None),
                (addr("10.0.0.2:53"), Transport::Dns, None),
                (addr("[::1]:5353"), Transport::Dns, None),
                (addr("[::2]:53"), Transport::Dns, None),
                (addr("10.0.0.3:853"), Transport::Tls, None),
                (
                    addr("10.0.0.4:8853"),
                    Transport::Tls,
                    Some("dns.example".into())
                ),
                (addr("[::1]:853"), Transport::Tls, None),
            ]
        );
        assert_eq!(c.upstreams[0].label(), "10.0.0.1:1053");
    }

    #[test]
    fn from_cidr_is_reverse_zone() {
        assert_eq!(
            parse("forward 10.0.0.0/8 1.1.1.1").unwrap().from,
            "10.in-addr.arpa."
        );
        assert_eq!(
            parse("forward 192.168.1.0/24 1.1.1.1").unwrap().from,
            "1.168.192.in-addr.arpa."
        );
        // Off an octet boundary: the first of the reverse zones, not the enclosing one.
        assert_eq!(
            parse("forward 10.0.0.0/15 1.1.1.1").unwrap().from,
            "0.10.in-addr.arpa."
        );
        assert_eq!(
            parse("forward . 1.1.1.1 {\nexcept 10.0.0.0/15 Example.ORG\n}")
                .unwrap()
                .except,
            ["0.10.in-addr.arpa.", "1.10.in-addr.arpa.", "example.org."]
        );
    }

    #[test]
    fn resolv_conf_file() {
        let dir = std::env::temp_dir().join(format!("fwd-setup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("resolv.conf"),
            "# comment\nsearch example.org\nnameserver 10.1.1.1\nnameserver ::1\noptions ndots:5\n",
        )
        .unwrap();
        let c = parse_in("forward . resolv.conf 10.9.9.9", &dir).unwrap();
        let got: Vec<SocketAddr> = c.upstreams.iter().map(|u| u.addr).collect();
        assert_eq!(
            got,
            vec![addr("10.1.1.1:53"), addr("[::1]:53"), addr("10.9.9.9:53")]
        );
        std::fs::write(dir.join("empty.conf"), "search x\n").unwrap();
        let err = parse_in("forward . empty.conf", &dir).unwrap_err();
        assert_eq!(
            err,
            "Corefile:2 - Error during parsing: no nameservers found"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_option() {
        let c = parse(
            "forward . 127.0.0.1 {
                except Example.com sub.example.net
                force_tcp
                prefer_udp
                expire 30s
                max_age 1m
                read_timeout 3s
                max_idle_conns 20
                max_fails 3
                max_connect_attempts 4
                policy round_robin
                health_check 5s no_rec domain Example.org
                max_concurrent 1000
                next NXDOMAIN servfail
                next_on_nodata
                failover SERVFAIL REFUSED
                failfast_all_unhealthy_upstreams
                tls_servername dns.example
            }",
        )
        .unwrap();
        assert_eq!(c.except, vec!["example.com.", "sub.example.net."]);
        assert!(c.force_tcp && c.prefer_udp);
        assert_eq!(c.expire, Duration::from_secs(30));
        assert_eq!(c.max_age, Duration::from_secs(60));
        assert_eq!(c.read_timeout, Duration::from_secs(3));
        assert_eq!(c.max_idle_conns, 20);
        assert_eq!(c.max_fails, 3);
        assert_eq!(c.max_connect_attempts, 4);
        assert_eq!(c.policy, Policy::RoundRobin);
        assert_eq!(c.health_check, Duration::from_secs(5));
        assert!(!c.hc_recursion_desired);
        assert_eq!(c.hc_domain, Name::from_ascii("example.org.").unwrap());
        assert_eq!(c.max_concurrent, 1000);
        assert_eq!(c.next, vec![ResponseCode::NXDomain, ResponseCode::ServFail]);
        assert!(c.next_on_nodata);
        assert_eq!(
            c.failover,
            vec![ResponseCode::ServFail, ResponseCode::Refused]
        );
        assert!(c.failfast_all_unhealthy);
        assert_eq!(c.tls_servername.as_deref(), Some("dns.example"));
        for (text, policy) in [
            ("random", Policy::Random),
            ("sequential", Policy::Sequential),
        ] {
            let c = parse(&format!("forward . 127.0.0.1 {{\npolicy {text}\n}}")).unwrap();
            assert_eq!(c.policy, policy);
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let p = "Corefile:3 - Error during parsing: ";
        let cases: &[(&str, String)] = &[
            (
                "max_fails x",
                format!("{p}strconv.ParseUint: parsing \"x\": invalid syntax"),
            ),
            (
                "max_fails -1",
                format!("{p}strconv.ParseUint: parsing \"-1\": invalid syntax"),
            ),
            (
                "max_fails",
                format!("{p}Wrong argument count or unexpected line ending after 'max_fails'"),
            ),
            (
                "max_connect_attempts z",
                format!("{p}strconv.ParseUint: parsing \"z\": invalid syntax"),
            ),
            (
                "health_check",
                format!("{p}Wrong argument count or unexpected line ending after 'health_check'"),
            ),
            ("health_check x", format!("{p}time: invalid duration \"x\"")),
            (
                "health_check -1s",
                format!("{p}health_check can't be negative: -1s"),
            ),
            (
                "health_check 1s bogus",
                format!("{p}health_check: unknown option bogus"),
            ),
            (
                "health_check 1s domain",
                format!("{p}Wrong argument count or unexpected line ending after 'domain'"),
            ),
            (
                "health_check 1s domain a..b",
                format!("{p}health_check: invalid domain name a..b"),
            ),
            (
                "force_tcp x",
                format!("{p}Wrong argument count or unexpected line ending after 'x'"),
            ),
            (
                "prefer_udp x",
                format!("{p}Wrong argument count or unexpected line ending after 'x'"),
            ),
            (
                "tls a b c d",
                format!("{p}Wrong argument count or unexpected line ending after 'd'"),
            ),
            (
                "tls /nonexistent/ca.pem",
                format!(
                    "{p}unable to read CA file /nonexistent/ca.pem: No such file or directory (os error 2)"
                ),
            ),
            (
                "tls_servername",
                format!("{p}Wrong argument count or unexpected line ending after 'tls_servername'"),
            ),
            ("expire x", format!("{p}time: invalid duration \"x\"")),
            ("expire -5s", format!("{p}expire can't be negative: -5s")),
            (
                "read_timeout 0s",
                format!("{p}read_timeout must be positive: 0s"),
            ),
            (
                "read_timeout -1s",
                format!("{p}read_timeout can't be negative: -1s"),
            ),
            (
                "max_idle_conns -1",
                format!("{p}max_idle_conns can't be negative: -1"),
            ),
            (
                "max_idle_conns q",
                format!("{p}strconv.Atoi: parsing \"q\": invalid syntax"),
            ),
            ("policy bogus", format!("{p}unknown policy 'bogus'")),
            (
                "policy",
                format!("{p}Wrong argument count or unexpected line ending after 'policy'"),
            ),
            (
                "max_concurrent -1",
                format!("{p}max_concurrent can't be negative: -1"),
            ),
            (
                "max_concurrent many",
                format!("{p}strconv.Atoi: parsing \"many\": invalid syntax"),
            ),
            (
                "next",
                format!("{p}Wrong argument count or unexpected line ending after 'next'"),
            ),
            ("next BOGUS", format!("{p}BOGUS is not a valid rcode")),
            (
                "failover NOERROR",
                format!("{p}NoError cannot be used in failover"),
            ),
            ("failover nope", format!("{p}nope is not a valid rcode")),
            (
                "failfast_all_unhealthy_upstreams x",
                format!("{p}Wrong argument count or unexpected line ending after 'x'"),
            ),
            (
                "except",
                format!("{p}Wrong argument count or unexpected line ending after 'except'"),
            ),
            ("bogus", format!("{p}unknown property 'bogus'")),
            (
                "resolver 10.0.0.1",
                format!(
                    "{p}'resolver' is not supported by ferrodns: upstreams must be IP addresses or files, over dns:// or tls://"
                ),
            ),
        ];
        for (option, want) in cases {
            let got = parse(&format!("forward . 127.0.0.1 {{\n{option}\n}}")).unwrap_err();
            assert_eq!(&got, want, "option {option}");
        }
    }

    #[test]
    fn stanza_errors() {
        let p = "Corefile:2 - Error during parsing: ";
        let many: Vec<String> = (1..=16).map(|i| format!("10.0.0.{i}")).collect();
        let cases: Vec<(String, String)> = vec![
            (
                "forward".into(),
                format!("{p}Wrong argument count or unexpected line ending after 'forward'"),
            ),
            (
                "forward .".into(),
                format!("{p}Wrong argument count or unexpected line ending after '.'"),
            ),
            (
                "forward . not-an-ip".into(),
                format!("{p}not an IP address or file: \"not-an-ip\""),
            ),
            (
                "forward . https://10.0.0.1".into(),
                format!(
                    "{p}'https' is not supported as a destination protocol in forward: https://10.0.0.1"
                ),
            ),
            (
                format!("forward . {}", many.join(" ")),
                format!("{p}more than 15 TOs configured: 16"),
            ),
            (
                "forward . tls://10.0.0.1%a.example {\ntls_servername b.example\n}".into(),
                format!(
                    "{p}both forward ('b.example') and proxy level ('a.example') TLS servernames are set for upstream proxy 'tls://10.0.0.1'"
                ),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn rcode_names() {
        assert_eq!(parse_rcode("nxdomain"), Some(ResponseCode::NXDomain));
        assert_eq!(parse_rcode("REFUSED"), Some(ResponseCode::Refused));
        assert_eq!(parse_rcode("BADCOOKIE"), Some(ResponseCode::BADCOOKIE));
        assert_eq!(parse_rcode("nope"), None);
    }
}
