//! `log`: one line per query in CoreDNS's Common Log Format, or a format of your own. See
//! README.md.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::corefile::Directive;
use crate::dnsname::{fqdn_lower, is_subdomain};
use crate::plugin::mnemonic::{class_name, rcode_or_number, type_name};
use crate::plugin::response::{Class, typify};
use crate::plugin::setup::{Setup, SetupError, SetupResult};
use crate::plugin::{Failure, Next, Outcome, Plugin, Request, Served};

/// CoreDNS's Common Log Format.
pub const COMMON: &str = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";

/// `minDuration` without a value.
const DEFAULT_MIN_DURATION: Duration = Duration::from_millis(100);

/// What a placeholder stands for; the format is parsed once at setup.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    Type,
    Name,
    Class,
    Proto,
    Size,
    Remote,
    Port,
    Local,
    Id,
    Opcode,
    Do,
    Bufsize,
    Rcode,
    Rsize,
    Duration,
    Rflags,
    /// `{/label}`: a metadata value. No plugin in this build sets metadata, so it is `-`.
    Metadata,
}

fn label(text: &str) -> Option<Part> {
    Some(match text {
        "{type}" => Part::Type,
        "{name}" => Part::Name,
        "{class}" => Part::Class,
        "{proto}" => Part::Proto,
        "{size}" => Part::Size,
        "{remote}" => Part::Remote,
        "{port}" => Part::Port,
        "{local}" => Part::Local,
        "{>id}" => Part::Id,
        "{>opcode}" => Part::Opcode,
        "{>do}" => Part::Do,
        "{>bufsize}" => Part::Bufsize,
        "{rcode}" => Part::Rcode,
        "{rsize}" => Part::Rsize,
        "{duration}" => Part::Duration,
        "{>rflags}" => Part::Rflags,
        _ => return None,
    })
}

/// Split a format into literals and placeholders the way CoreDNS's replacer does: find each
/// `}`, take the nearest `{` before it; unknown `{...}` stay literal text.
fn parse_format(mut s: &str) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    let push_literal = |parts: &mut Vec<Part>, text: &str| {
        if text.is_empty() {
            return;
        }
        if let Some(Part::Literal(prev)) = parts.last_mut() {
            prev.push_str(text);
        } else {
            parts.push(Part::Literal(text.to_string()));
        }
    };
    while let Some(j) = s.find('}') {
        let Some(i) = s[..j].rfind('{') else {
            push_literal(&mut parts, &s[..=j]);
            s = &s[j + 1..];
            continue;
        };
        let token = &s[i..=j];
        let part = label(token).or_else(|| token.starts_with("{/").then_some(Part::Metadata));
        match part {
            Some(p) => {
                push_literal(&mut parts, &s[..i]);
                parts.push(p);
            }
            None => push_literal(&mut parts, &s[..=j]),
        }
        s = &s[j + 1..];
    }
    push_literal(&mut parts, s);
    parts
}

/// The response classes of `class`.
const ALL: u8 = 1;
const SUCCESS: u8 = 2;
const DENIAL: u8 = 4;
const ERROR: u8 = 8;

struct Rule {
    /// Queries for this name and below are logged by this rule.
    scope: String,
    format: Arc<[Part]>,
    classes: u8,
    min_duration: Duration,
}

pub struct Log {
    rules: Vec<Rule>,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let rules = parse(&c.directives)?;
    Ok(Some(Arc::new(Log { rules })))
}

/// Every `log` line of the block, in order; a line naming several zones makes a rule each.
fn parse(directives: &[&Directive]) -> Result<Vec<Rule>, SetupError> {
    let mut rules = Vec::new();
    for d in directives {
        let mut args = d.arg_strs();
        let mut format = COMMON.to_string();
        if args.len() >= 2 && args[args.len() - 1].contains('{') {
            format = match args[args.len() - 1] {
                "{common}" => COMMON.to_string(),
                "{combined}" => format!("{COMMON} \"{{>opcode}}\""),
                custom => custom.to_string(),
            };
            args.pop();
        }
        let scopes: Vec<String> = if args.is_empty() {
            vec![".".to_string()]
        } else {
            args.iter().map(|a| fqdn_lower(a)).collect()
        };
        let mut classes = 0;
        let mut min_duration = Duration::ZERO;
        for line in &d.block {
            match line.name.as_str() {
                "class" => {
                    if line.args.is_empty() {
                        return Err(line.arg_err());
                    }
                    for a in &line.args {
                        classes |= match a.text.as_str() {
                            "all" => ALL,
                            "success" => SUCCESS,
                            "denial" => DENIAL,
                            "error" => ERROR,
                            other => {
                                return Err(SetupError {
                                    loc: None,
                                    msg: format!("invalid Class: {other}"),
                                });
                            }
                        };
                    }
                }
                "minDuration" => match line.args.as_slice() {
                    [] => min_duration = DEFAULT_MIN_DURATION,
                    [value] => {
                        min_duration =
                            crate::plugin::parse::go_duration(&value.text).map_err(|_| {
                                line.err(format!("Illegal duration found: '{}'", value.text))
                            })?;
                    }
                    _ => return Err(line.arg_err()),
                },
                _ => return Err(line.arg_err()),
            }
        }
        if classes == 0 {
            classes = ALL;
        }
        let format: Arc<[Part]> = parse_format(&format).into();
        for scope in scopes {
            rules.push(Rule {
                scope,
                format: format.clone(),
                classes,
                min_duration,
            });
        }
    }
    Ok(rules)
}

impl Plugin for Log {
    fn name(&self) -> &'static str {
        "log"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        // The first rule whose name matches decides, as in CoreDNS.
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| is_subdomain(req.name(), &r.scope))
        else {
            return next.serve(req);
        };
        let start = Instant::now();
        next.serve(req).map(move |outcome| {
            let elapsed = start.elapsed();
            let wanted = rule.classes & ALL != 0
                || rule.classes & class(&outcome) != 0
                || (!rule.min_duration.is_zero() && elapsed > rule.min_duration);
            if wanted {
                let line = render(&rule.format, req, &outcome, elapsed);
                crate::info!("{line}");
            }
            outcome
        })
    }
}

/// The answer the client gets, as far as the log line needs it.
struct Answer<'m> {
    rcode: Option<u16>,
    flags: Option<Flags>,
    msg: Option<&'m Message>,
    /// The length of a pre-encoded answer (a cache hit), which needs no encode to measure.
    wire_len: Option<usize>,
}

#[derive(Clone, Copy)]
struct Flags {
    qr: bool,
    aa: bool,
    tc: bool,
    rd: bool,
    ra: bool,
    ad: bool,
    cd: bool,
}

impl Flags {
    fn of(m: &Metadata) -> Self {
        Flags {
            qr: m.message_type == MessageType::Response,
            aa: m.authoritative,
            tc: m.truncation,
            rd: m.recursion_desired,
            ra: m.recursion_available,
            ad: m.authentic_data,
            cd: m.checking_disabled,
        }
    }

    /// The flags of a DNS header's third and fourth octets.
    fn of_header(b2: u8, b3: u8) -> Self {
        Flags {
            qr: b2 & 0x80 != 0,
            aa: b2 & 0x04 != 0,
            tc: b2 & 0x02 != 0,
            rd: b2 & 0x01 != 0,
            ra: b3 & 0x80 != 0,
            ad: b3 & 0x20 != 0,
            cd: b3 & 0x10 != 0,
        }
    }
}

/// A failure the server answers is logged as the reply the server writes for it (CoreDNS
/// synthesizes that reply in `log` too); a dropped query has no answer: `-`.
fn answer<'m>(req: &Request, outcome: &'m Outcome) -> Answer<'m> {
    match outcome {
        // A pre-encoded answer (a cache hit) is read from its bytes: logging it must not cost a
        // parse and an encode. The server only changes its ID and adds the client's OPT.
        Ok(resp) => match resp.wire() {
            Some(wire @ &[_, _, b2, b3, ..]) => Answer {
                rcode: Some(u16::from(resp.rcode())),
                flags: Some(Flags::of_header(b2, b3)),
                msg: None,
                wire_len: Some(wire.len()),
            },
            _ => Answer {
                rcode: Some(u16::from(resp.rcode())),
                flags: Some(Flags::of(&resp.message().metadata)),
                msg: Some(resp.message()),
                wire_len: None,
            },
        },
        Err(Failure { reply: false, .. }) => Answer {
            rcode: None,
            flags: None,
            msg: None,
            wire_len: None,
        },
        Err(f) => Answer {
            rcode: Some(u16::from(f.rcode)),
            flags: Some(Flags {
                qr: true,
                aa: false,
                tc: false,
                rd: req.metadata().recursion_desired,
                ra: false,
                ad: false,
                cd: req.metadata().checking_disabled,
            }),
            msg: None,
            wire_len: None,
        },
    }
}

/// CoreDNS's `response.Typify` + `Classify`, as the bit `log`'s class filter tests. CoreDNS
/// also counts an answer with an expired RRSIG as an error; ferrodns does not check signature
/// times here.
fn class(outcome: &Outcome) -> u8 {
    let Ok(resp) = outcome else {
        return ERROR;
    };
    match typify(resp.message(), false, false).class() {
        Class::Success => SUCCESS,
        Class::Denial => DENIAL,
        Class::Error => ERROR,
    }
}

thread_local! {
    /// Scratch space to measure an answer's size without allocating per query.
    static SIZE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The size of the answer as encoded before the server fits it to the client.
fn encoded_len(m: &Message) -> usize {
    SIZE_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        let mut enc = BinEncoder::new(&mut buf);
        match m.emit(&mut enc) {
            Ok(()) => buf.len(),
            Err(_) => 0,
        }
    })
}

fn push_addr(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let _ = write!(out, "{v4}");
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "[{v6}]");
        }
    }
}

/// The error reply the server writes for a failure, for its size.
fn failure_len(req: &Request, rcode: ResponseCode) -> usize {
    crate::server::dispatch::error_reply(req, rcode).len()
}

fn render(format: &[Part], req: &Request, outcome: &Outcome, elapsed: Duration) -> String {
    let ans = answer(req, outcome);
    let mut out = String::with_capacity(128);
    for part in format {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Type => out.push_str(&type_name(req.qtype())),
            Part::Name => out.push_str(req.name()),
            Part::Class => out.push_str(&class_name(req.qclass())),
            Part::Proto => out.push_str(req.proto.as_str()),
            Part::Size => {
                let _ = write!(out, "{}", req.wire_len);
            }
            Part::Remote => push_addr(&mut out, req.ip()),
            Part::Port => {
                let _ = write!(out, "{}", req.src.port());
            }
            Part::Local => {
                let ip = match req.local.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                push_addr(&mut out, ip);
            }
            Part::Id => {
                let _ = write!(out, "{}", req.id());
            }
            Part::Opcode => {
                let _ = write!(out, "{}", u8::from(req.metadata().op_code));
            }
            Part::Do => out.push_str(if req.do_bit() { "true" } else { "false" }),
            Part::Bufsize => {
                let _ = write!(out, "{}", req.size());
            }
            Part::Rcode => match ans.rcode {
                // CoreDNS's replacer: the name, or the bare number.
                Some(rc) => out.push_str(&rcode_or_number(rc)),
                None => out.push('-'),
            },
            Part::Rsize => {
                let len = match (ans.wire_len, ans.msg, outcome) {
                    (Some(n), _, _) => n,
                    (None, Some(m), _) => encoded_len(m),
                    (None, None, Err(f)) if f.reply => failure_len(req, f.rcode),
                    _ => 0,
                };
                let _ = write!(out, "{len}");
            }
            Part::Duration => {
                // Go's strconv.FormatFloat(secs, 'f', -1, 64): shortest exact decimal, no
                // exponent; Rust's Display prints the same digits.
                let _ = write!(out, "{}s", elapsed.as_secs_f64());
            }
            Part::Rflags => match ans.flags {
                Some(f) => push_flags(&mut out, f),
                None => out.push('-'),
            },
            Part::Metadata => out.push('-'),
        }
    }
    out
}

fn push_flags(out: &mut String, f: Flags) {
    let start = out.len();
    for (set, name) in [
        (f.qr, "qr"),
        (f.aa, "aa"),
        (f.tc, "tc"),
        (f.rd, "rd"),
        (f.ra, "ra"),
        (f.ad, "ad"),
        (f.cd, "cd"),
    ] {
        if set {
            if out.len() > start {
                out.push(',');
            }
            out.push_str(name);
        }
    }
}

#[cfg(test)]
mod tests;
