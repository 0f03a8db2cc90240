//! `cache [TTL] [ZONES...] { ... }`: CoreDNS's `cacheParse`, with its defaults and messages.

use std::time::Duration;

use crate::corefile::{Directive, Error};
use crate::dnsname::fqdn_lower;
use crate::plugin::parse::go_duration;
use crate::plugin::setup::Setup;

/// How one cache instance behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub zones: Vec<String>,
    /// Capacities as written (the store rounds them to 256 shards, at least 4 each).
    pub pcap: i64,
    pub ncap: i64,
    /// Maximum and minimum TTL (s) of success and denial entries.
    pub pttl: u32,
    pub minpttl: u32,
    pub nttl: u32,
    pub minnttl: u32,
    /// How long SERVFAIL is cached; zero disables it.
    pub failttl: Duration,
    /// Prefetch: hits needed (0: off), the gap that resets the count, and the TTL percentage
    /// left at which to refresh.
    pub prefetch: u32,
    pub prefetch_window: Duration,
    pub percentage: u32,
    /// Serve expired entries up to this long after expiry (zero: off); `verify` asks upstream
    /// first.
    pub stale_up_to: Duration,
    pub verify_stale: bool,
    /// Zones where success / denial answers are not cached.
    pub pexcept: Vec<String>,
    pub nexcept: Vec<String>,
    pub keepttl: bool,
}

/// CoreDNS's `defaultCap`.
pub const DEFAULT_CAP: i64 = 10000;

impl Default for Config {
    fn default() -> Self {
        Config {
            zones: vec![".".into()],
            pcap: DEFAULT_CAP,
            ncap: DEFAULT_CAP,
            pttl: 3600,
            minpttl: 5,
            nttl: 1800,
            minnttl: 5,
            failttl: Duration::from_secs(5),
            prefetch: 0,
            prefetch_window: Duration::from_secs(60),
            percentage: 10,
            stale_up_to: Duration::ZERO,
            verify_stale: false,
            pexcept: Vec::new(),
            nexcept: Vec::new(),
            keepttl: false,
        }
    }
}

/// An error CoreDNS reports without a position (its `fmt.Errorf` errors).
fn plain(msg: impl Into<String>) -> Error {
    Error {
        loc: None,
        msg: msg.into(),
    }
}

/// Go's `strconv.Atoi`, with its error text.
fn atoi(s: &str) -> Result<i64, Error> {
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        plain(format!("strconv.Atoi: parsing \"{s}\": {why}"))
    })
}

/// Go's `time.ParseDuration`, which (unlike the shared parser) accepts a sign, so the callers
/// can give CoreDNS's "negative" messages.
fn duration(s: &str) -> Result<(bool, Duration), Error> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let d = go_duration(body).map_err(|_| plain(format!("time: invalid duration \"{s}\"")))?;
    Ok((negative && !d.is_zero(), d))
}

fn ttl_arg(s: &str) -> Result<u32, Error> {
    let v = atoi(s)?;
    if v <= 0 {
        return Err(plain(format!("cache TTL can not be zero or negative: {v}")));
    }
    Ok(v.min(u32::MAX as i64) as u32)
}

fn min_ttl_arg(s: &str) -> Result<u32, Error> {
    let v = atoi(s)?;
    if v < 0 {
        return Err(plain(format!("cache min TTL can not be negative: {v}")));
    }
    Ok(v.min(u32::MAX as i64) as u32)
}

/// CoreDNS's `c.ArgErr()` on a block line whose name is the current token.
fn bad_property(line: &Directive) -> Error {
    Error::at(
        &line.loc,
        format!(
            "Wrong argument count or unexpected line ending after '{}'",
            line.name
        ),
    )
}

pub fn parse(c: &Setup<'_>) -> Result<Config, Error> {
    let d = c.once()?;
    let mut cfg = Config::default();
    let mut args: Vec<String> = d.args.iter().map(|t| t.text.clone()).collect();
    // A first argument that is a number is the TTL, anything else is a zone.
    if let Some(first) = args.first()
        && let Ok(ttl) = first.parse::<i64>()
    {
        if ttl <= 0 {
            return Err(plain(format!(
                "cache TTL can not be zero or negative: {ttl}"
            )));
        }
        cfg.pttl = ttl.min(u32::MAX as i64) as u32;
        cfg.nttl = cfg.pttl;
        args.remove(0);
    }
    cfg.zones = c.origins(&args);

    for line in &d.block {
        let a: Vec<&str> = line.args.iter().map(|t| t.text.as_str()).collect();
        match line.name.as_str() {
            "success" | "denial" => {
                let Some(cap) = a.first() else {
                    return Err(line.arg_err());
                };
                // CoreDNS ignores words after MINTTL; so do we, to read the same Corefiles.
                let cap = atoi(cap)?;
                let ttl = a.get(1).map(|s| ttl_arg(s)).transpose()?;
                let min = a.get(2).map(|s| min_ttl_arg(s)).transpose()?;
                if line.name == "success" {
                    cfg.pcap = cap;
                    cfg.pttl = ttl.unwrap_or(cfg.pttl);
                    cfg.minpttl = min.unwrap_or(cfg.minpttl);
                } else {
                    cfg.ncap = cap;
                    cfg.nttl = ttl.unwrap_or(cfg.nttl);
                    cfg.minnttl = min.unwrap_or(cfg.minnttl);
                }
            }
            "prefetch" => {
                if a.is_empty() || a.len() > 3 {
                    return Err(line.arg_err());
                }
                let amount = atoi(a[0])?;
                if amount < 0 {
                    return Err(plain(format!(
                        "prefetch amount should be positive: {amount}"
                    )));
                }
                cfg.prefetch = amount.min(u32::MAX as i64) as u32;
                if let Some(d) = a.get(1) {
                    cfg.prefetch_window = duration(d)?.1;
                }
                if let Some(pct) = a.get(2) {
                    let Some(num) = pct.strip_suffix('%') else {
                        let last = pct.chars().last().unwrap_or('\0');
                        return Err(plain(format!(
                            "last character of percentage should be `%`, but is: '{last}'"
                        )));
                    };
                    let num = atoi(num)?;
                    if !(10..=90).contains(&num) {
                        return Err(plain(format!(
                            "percentage should fall in range [10, 90]: {num}"
                        )));
                    }
                    cfg.percentage = num as u32;
                }
            }
            "serve_stale" => {
                if a.len() > 2 {
                    return Err(line.arg_err());
                }
                cfg.stale_up_to = Duration::from_secs(3600);
                if let Some(d) = a.first() {
                    let (negative, d) = duration(d)?;
                    if negative {
                        return Err(plain("invalid negative duration for serve_stale"));
                    }
                    cfg.stale_up_to = d;
                }
                cfg.verify_stale = false;
                if let Some(mode) = a.get(1) {
                    let mode = mode.to_ascii_lowercase();
                    if mode != "immediate" && mode != "verify" {
                        return Err(plain(format!(
                            "invalid value for serve_stale refresh mode: {mode}"
                        )));
                    }
                    cfg.verify_stale = mode == "verify";
                }
            }
            "servfail" => {
                if a.len() != 1 {
                    return Err(line.arg_err());
                }
                let (negative, d) = duration(a[0])?;
                if negative {
                    return Err(plain("invalid negative ttl for servfail"));
                }
                // RFC 2308 §7.1: SERVFAIL must not be cached for longer than five minutes.
                if d > Duration::from_secs(300) {
                    return Err(plain(
                        "caching SERVFAIL responses over 5 minutes is not permitted",
                    ));
                }
                cfg.failttl = d;
            }
            "disable" => {
                let Some(which) = a.first() else {
                    return Err(line.arg_err());
                };
                let zones: Vec<String> = if a.len() > 1 {
                    a[1..].iter().map(|z| fqdn_lower(z)).collect()
                } else {
                    vec![".".into()]
                };
                match *which {
                    "success" => cfg.pexcept = zones,
                    "denial" => cfg.nexcept = zones,
                    _ => {
                        return Err(plain(
                            "cache type for disable must be \"success\" or \"denial\"",
                        ));
                    }
                }
            }
            "keepttl" => {
                if !a.is_empty() {
                    return Err(line.arg_err());
                }
                cfg.keepttl = true;
            }
            _ => return Err(bad_property(line)),
        }
    }
    Ok(cfg)
}
