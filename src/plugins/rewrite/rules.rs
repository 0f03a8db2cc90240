//! Request rules: parsing one `rewrite` line (CoreDNS's `newRule` and friends, with their error
//! texts) and applying it to the query on its way down the chain.

use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, RecordType};
use regex::Regex;

use super::answer::{RegexRewriter, ResponseRule, StringRewriter};
use crate::plugin::Request;
use crate::plugin::mnemonic::class_from_name;

/// `stop` (the default) or `continue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Stop,
    Continue,
}

/// One `rewrite` directive.
#[derive(Debug)]
pub(super) struct Rule {
    pub mode: Mode,
    pub kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Type {
        from: RecordType,
        to: RecordType,
    },
    Class {
        from: DNSClass,
        to: DNSClass,
    },
    Name {
        matcher: NameMatch,
        /// `answer auto` for prefix, substring and regex rules (always on for exact rules):
        /// map the rewritten name back to the asked one.
        auto: bool,
        /// The `answer name|value` rules (and, for `suffix ... answer auto`, the reversed
        /// suffix rule).
        answers: Vec<ResponseRule>,
    },
    /// `ttl` and `rcode`: a name match that only adds a response rule.
    Answer {
        matcher: Matcher,
        rule: ResponseRule,
    },
    Edns0(Edns0Rule),
    /// `cname`: matches every query, rewrites CNAME targets in the answer.
    Cname(Arc<super::cname::CnameTarget>),
}

/// How `name` rules match and rewrite.
#[derive(Debug)]
pub(super) enum NameMatch {
    Exact { from: String, to: String },
    Prefix { prefix: String, to: String },
    Suffix { suffix: String, to: String },
    Substring { substring: String, to: String },
    Regex { pattern: Regex, to: String },
}

/// How `ttl` and `rcode` rules match the question name.
#[derive(Debug)]
pub(super) enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Substring(String),
    Regex(Regex),
}

impl Matcher {
    fn matches(&self, name: &str) -> bool {
        match self {
            Matcher::Exact(s) => name == s,
            Matcher::Prefix(s) => name.starts_with(s.as_str()),
            Matcher::Suffix(s) => name.ends_with(s.as_str()),
            Matcher::Substring(s) => name.contains(s.as_str()),
            Matcher::Regex(re) => re.is_match(name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Set,
    Append,
    Replace,
    Unset,
}

#[derive(Debug)]
pub(super) struct Edns0Rule {
    pub action: Action,
    pub option: Edns0Option,
    /// `revert`: the client gets the option back as it sent it.
    pub revert: bool,
}

#[derive(Debug)]
pub(super) enum Edns0Option {
    Local { code: u16, data: Vec<u8> },
    Variable { code: u16, variable: Variable },
    Nsid,
    Subnet { v4: u8, v6: u8 },
}

/// `{qname}`, `{client_ip}`, ... A `{plugin/label}` metadata variable is accepted as CoreDNS
/// accepts it, and, as in CoreDNS without the *metadata* plugin, never has a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variable {
    Qname,
    Qtype,
    ClientIp,
    ClientPort,
    Protocol,
    ServerIp,
    ServerPort,
    Metadata,
}

/// The query as the rules have left it so far. The message is only copied when a rule first
/// changes something, so a query no rule matches costs no allocation.
pub(super) struct Work<'r> {
    pub req: &'r Request,
    pub msg: Option<Message>,
    /// The question name as written after a name rewrite (`None`: unchanged).
    pub qname: Option<String>,
    /// The current question name in lower case, what every rule matches against (CoreDNS's
    /// `state.Name()`).
    pub lower: Cow<'r, str>,
    pub qtype: RecordType,
    pub qclass: DNSClass,
}

impl<'r> Work<'r> {
    pub fn new(req: &'r Request) -> Self {
        Work {
            req,
            msg: None,
            qname: None,
            lower: Cow::Borrowed(req.name()),
            qtype: req.qtype(),
            qclass: req.qclass(),
        }
    }

    fn edns(&self) -> Option<&Edns> {
        match &self.msg {
            Some(m) => m.edns.as_ref(),
            None => self.req.edns(),
        }
    }

    fn msg_mut(&mut self) -> &mut Message {
        let req = self.req;
        self.msg.get_or_insert_with(|| req.msg().clone())
    }

    /// CoreDNS's `setupEdns0Opt`: the OPT record, added (4096 bytes, DO clear) when the query
    /// had none.
    fn opt(&mut self) -> &mut Vec<(EdnsCode, EdnsOption)> {
        let edns = self.msg_mut().edns.get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e
        });
        &mut edns.options_mut().options
    }

    fn set_name(&mut self, name: String) {
        self.lower = Cow::Owned(name.to_lowercase());
        self.qname = Some(name);
    }

    /// The question name as the next plugin will see it.
    pub fn written_name(&self) -> Cow<'_, str> {
        match &self.qname {
            Some(n) => Cow::Borrowed(n),
            None => Cow::Owned(self.req.qname().to_ascii()),
        }
    }
}

impl Rule {
    /// Apply the rule: `None` when it did not match (CoreDNS's `RewriteIgnored`), otherwise the
    /// response rules it asks for (`RewriteDone`).
    pub fn rewrite(&self, w: &mut Work<'_>) -> Option<Vec<ResponseRule>> {
        match &self.kind {
            Kind::Type { from, to } => {
                if w.qtype != *from {
                    return None;
                }
                w.qtype = *to;
                Some(Vec::new())
            }
            Kind::Class { from, to } => {
                if w.qclass != *from {
                    return None;
                }
                w.qclass = *to;
                Some(Vec::new())
            }
            Kind::Name {
                matcher,
                auto,
                answers,
            } => {
                let name: &str = &w.lower;
                let new = match matcher {
                    NameMatch::Exact { from, to } => (name == from).then(|| to.clone())?,
                    NameMatch::Prefix { prefix, to } => {
                        format!("{to}{}", name.strip_prefix(prefix.as_str())?)
                    }
                    NameMatch::Suffix { suffix, to } => {
                        format!("{}{to}", name.strip_suffix(suffix.as_str())?)
                    }
                    NameMatch::Substring { substring, to } => {
                        if !name.contains(substring.as_str()) {
                            return None;
                        }
                        name.replace(substring.as_str(), to)
                    }
                    NameMatch::Regex { pattern, to } => {
                        super::answer::substitute(pattern, to, name)?
                    }
                };
                let mut rules = Vec::with_capacity(answers.len() + 2);
                if *auto {
                    // Map what the next plugin was asked back to what this rule was given.
                    let remap = StringRewriter::Remap {
                        orig: new.clone(),
                        replacement: name.to_owned(),
                    };
                    rules.push(ResponseRule::Name(remap.clone()));
                    rules.push(ResponseRule::Value(remap));
                }
                rules.extend(answers.iter().cloned());
                w.set_name(new);
                Some(rules)
            }
            Kind::Answer { matcher, rule } => matcher.matches(&w.lower).then(|| vec![rule.clone()]),
            Kind::Edns0(rule) => rule.rewrite(w),
            Kind::Cname(target) => Some(vec![ResponseRule::Cname(target.clone())]),
        }
    }
}

impl Edns0Rule {
    fn code(&self) -> EdnsCode {
        match &self.option {
            Edns0Option::Local { code, .. } | Edns0Option::Variable { code, .. } => {
                EdnsCode::from(*code)
            }
            Edns0Option::Nsid => EdnsCode::NSID,
            Edns0Option::Subnet { .. } => EdnsCode::Subnet,
        }
    }

    fn rewrite(&self, w: &mut Work<'_>) -> Option<Vec<ResponseRule>> {
        let code = self.code();
        // The option this rule replaces, if any: what `revert` gives the client back.
        let original: Option<EdnsOption> = if self.revert {
            w.edns().and_then(|e| e.option(code).cloned())
        } else {
            None
        };
        let done = if self.action == Action::Unset {
            let has = w
                .edns()
                .is_some_and(|e| e.options().options.iter().any(|(c, _)| *c == code));
            if has {
                w.opt().retain(|(c, _)| *c != code);
            }
            has
        } else {
            let Some(option) = self.option_for(w) else {
                // A variable without a value: the rule does not apply.
                return None;
            };
            let action = self.action;
            let options = w.opt();
            match options.iter_mut().find(|(c, _)| *c == code) {
                Some((_, existing)) => match action {
                    Action::Set | Action::Replace => {
                        *existing = option;
                        true
                    }
                    _ => false,
                },
                None => match action {
                    Action::Set | Action::Append => {
                        options.push((code, option));
                        true
                    }
                    _ => false,
                },
            }
        };
        if !done {
            return None;
        }
        Some(if self.revert && self.action != Action::Unset {
            vec![ResponseRule::EdnsRevert {
                code: u16::from(code),
                original,
            }]
        } else {
            Vec::new()
        })
    }

    /// The option this rule puts in the query.
    fn option_for(&self, w: &Work<'_>) -> Option<EdnsOption> {
        let req = w.req;
        Some(match &self.option {
            Edns0Option::Local { code, data } => EdnsOption::Unknown(*code, data.clone()),
            Edns0Option::Variable { code, variable } => {
                let data = match variable {
                    Variable::Qname => w.written_name().into_owned().into_bytes(),
                    Variable::Qtype => u16::from(w.qtype).to_be_bytes().to_vec(),
                    Variable::ClientIp => ip_bytes(req.ip()),
                    // CoreDNS writes the server address in the client's address family.
                    Variable::ServerIp => {
                        let local = match req.local.ip() {
                            IpAddr::V6(v6) => {
                                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                            }
                            v4 => v4,
                        };
                        match (req.ip(), local) {
                            (IpAddr::V6(_), IpAddr::V4(v4)) => {
                                v4.to_ipv6_mapped().octets().to_vec()
                            }
                            (IpAddr::V4(_), IpAddr::V6(_)) => return None,
                            (_, ip) => ip_bytes(ip),
                        }
                    }
                    Variable::ClientPort => req.src.port().to_be_bytes().to_vec(),
                    Variable::ServerPort => req.local.port().to_be_bytes().to_vec(),
                    Variable::Protocol => req.proto.as_str().as_bytes().to_vec(),
                    Variable::Metadata => return None,
                };
                EdnsOption::Unknown(*code, data)
            }
            Edns0Option::Nsid => EdnsOption::NSID(NSIDPayload::new(Vec::new()).ok()?),
            Edns0Option::Subnet { v4, v6 } => {
                let (addr, bits) = match req.ip() {
                    IpAddr::V4(a) => (IpAddr::V4(mask_v4(a, *v4)), *v4),
                    IpAddr::V6(a) => (IpAddr::V6(mask_v6(a, *v6)), *v6),
                };
                EdnsOption::Subnet(ClientSubnet::new(addr, bits, 0))
            }
        })
    }
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn mask_v4(a: std::net::Ipv4Addr, bits: u8) -> std::net::Ipv4Addr {
    let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
    (u32::from(a) & mask).into()
}

fn mask_v6(a: std::net::Ipv6Addr, bits: u8) -> std::net::Ipv6Addr {
    let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
    (u128::from(a) & mask).into()
}

// ---------------------------------------------------------------------------------------------
// Parsing. The error texts are CoreDNS's, typos included, so that searches for them find answers.

const EXACT: &str = "exact";
const PREFIX: &str = "prefix";
const SUFFIX: &str = "suffix";
const SUBSTRING: &str = "substring";
const REGEX: &str = "regex";

/// Go's `%q` for the ASCII strings a Corefile holds.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// CoreDNS's `plugin.Name(s).Normalize()`: lower case, fully qualified.
fn normalize(s: &str) -> String {
    let mut s = s.to_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// CoreDNS's `newRule`: one rule from the words of a `rewrite` line (or block, flattened).
pub(super) fn parse(args: &[String]) -> Result<Rule, String> {
    let Some(first) = args.first() else {
        return Err("no rule type specified for rewrite".into());
    };
    let arg0 = first.to_lowercase();
    let (mode, rest) = match arg0.as_str() {
        "continue" | "stop" => {
            if args.len() < 2 {
                return Err(format!("{arg0} rule must begin with a rule type"));
            }
            let mode = if arg0 == "continue" {
                Mode::Continue
            } else {
                Mode::Stop
            };
            (mode, &args[1..])
        }
        _ => (Mode::Stop, args),
    };
    let field = rest[0].to_lowercase();
    let params = &rest[1..];
    let kind = match field.as_str() {
        "answer" => return Err("response rewrites must begin with a name rule".into()),
        "name" => parse_name(params)?,
        "class" | "type" => {
            if params.len() != 2 {
                return Err(format!("{field} rules must have exactly two arguments"));
            }
            let (from, to) = (params[0].to_uppercase(), params[1].to_uppercase());
            if field == "type" {
                let ty = |s: &str| {
                    RecordType::from_str(s).map_err(|_| format!("invalid type {}", quote(s)))
                };
                Kind::Type {
                    from: ty(&from)?,
                    to: ty(&to)?,
                }
            } else {
                let class = |s: &str| {
                    class_from_name(s).ok_or_else(|| format!("invalid class {}", quote(s)))
                };
                Kind::Class {
                    from: class(&from)?,
                    to: class(&to)?,
                }
            }
        }
        "edns0" => Kind::Edns0(parse_edns0(params)?),
        "ttl" => parse_ttl(params)?,
        "rcode" => parse_rcode(params)?,
        "cname" => Kind::Cname(Arc::new(super::cname::parse(params)?)),
        _ => return Err(format!("invalid rule type {}", quote(first))),
    };
    Ok(Rule { mode, kind })
}

fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

/// How many of `{0}` ... `{100}` a replacement uses (CoreDNS's `getSubExprUsage`).
fn groups_used(s: &str) -> usize {
    (0..=100)
        .filter(|i| s.contains(&format!("{{{i}}}")))
        .count()
}

/// The longest regular expression CoreDNS compiles (a guard against memory exhaustion at
/// start-up).
const MAX_REGEX_LEN: usize = 10_000;

/// CoreDNS's `isValidRegexPattern`.
pub(super) fn regex_for(from: &str, to: &str) -> Result<Regex, String> {
    if from.len() > MAX_REGEX_LEN {
        return Err(format!(
            "regex pattern too long: {} > {MAX_REGEX_LEN}",
            from.len()
        ));
    }
    let re = compile(from).ok_or_else(|| format!("invalid regex matching pattern: {from}"))?;
    if groups_used(to) > re.captures_len() - 1 {
        return Err(format!(
            "the rewrite regex pattern ({to}) uses more subexpressions than its corresponding \
             matching regex pattern ({from})"
        ));
    }
    Ok(re)
}

fn parse_name(args: &[String]) -> Result<Kind, String> {
    if args.len() < 2 {
        return Err("too few arguments for a name rule".into());
    }
    let (match_type, mut from, mut to) = if args.len() == 2 {
        (EXACT.to_owned(), normalize(&args[0]), normalize(&args[1]))
    } else {
        let t = args[0].to_lowercase();
        match t.as_str() {
            REGEX => (t, args[1].clone(), args[2].clone()),
            // Partial matches work inside labels (`prefix api- svc-`): lower case only.
            PREFIX | SUBSTRING => (t, args[1].to_lowercase(), args[2].to_lowercase()),
            _ => (t, normalize(&args[1]), normalize(&args[2])),
        }
    };
    if match_type == EXACT || match_type == SUFFIX {
        if !from.ends_with('.') {
            from.push('.');
        }
        if !to.ends_with('.') {
            to.push('.');
        }
    }
    let (auto, mut answers) = if args.len() > 3 {
        parse_answers(&match_type, &args[3..])?
    } else {
        (false, Vec::new())
    };
    let (matcher, auto) = match match_type.as_str() {
        EXACT => {
            // CoreDNS compiles the target as a pattern here and fails on what is not one.
            regex_for(&to, &from)?;
            (NameMatch::Exact { from, to }, true)
        }
        PREFIX => (NameMatch::Prefix { prefix: from, to }, auto),
        SUFFIX => {
            if auto {
                // Exchanging suffix and replacement maps answers back more precisely than a
                // per-query remap would.
                let back = StringRewriter::Suffix(Arc::new((to.clone(), from.clone())));
                let mut rules = vec![ResponseRule::Name(back.clone()), ResponseRule::Value(back)];
                rules.append(&mut answers);
                answers = rules;
            }
            (NameMatch::Suffix { suffix: from, to }, false)
        }
        SUBSTRING => (
            NameMatch::Substring {
                substring: from,
                to,
            },
            auto,
        ),
        REGEX => {
            let pattern = regex_for(&from, &to)?;
            (
                NameMatch::Regex {
                    pattern,
                    to: normalize(&args[2]),
                },
                auto,
            )
        }
        _ => {
            return Err(format!(
                "name rule supports only exact, prefix, suffix, substring, and regex name \
                 matching, received: {match_type}"
            ));
        }
    };
    Ok(Kind::Name {
        matcher,
        auto,
        answers,
    })
}

/// CoreDNS's `parseAnswerRules`: `answer auto`, `answer name FROM TO`, `answer value FROM TO`,
/// repeated, the word `answer` optional after the first.
fn parse_answers(name: &str, args: &[String]) -> Result<(bool, Vec<ResponseRule>), String> {
    let mut auto = false;
    let mut rules = Vec::new();
    let mut name_rules = 0;
    let mut last = "";
    if args.len() < 2 {
        return Err(format!("invalid arguments for {name} rule"));
    }
    let mut i = 0;
    while i < args.len() {
        if last.is_empty() && args[i] != "answer" {
            return Err(format!(
                "exceeded the number of arguments for a non-answer rule argument for {name} rule"
            ));
        }
        if args[i] == "answer" {
            i += 1;
        }
        if i == args.len() {
            return Err(format!("type missing for answer rule for {name} rule"));
        }
        last = &args[i];
        i += 1;
        match last {
            "auto" => auto = true,
            "name" | "value" => {
                if args.len() - i < 2 {
                    return Err(format!(
                        "{last} answer rule for {name} rule: 2 arguments required"
                    ));
                }
                let (from, to) = (&args[i], &args[i + 1]);
                let pattern = regex_for(from, to)
                    .map_err(|e| format!("{last} answer rule for {name} rule: {e}"))?;
                let rw = StringRewriter::Regex(Arc::new(RegexRewriter {
                    pattern,
                    replacement: normalize(to),
                }));
                if last == "name" {
                    rules.push(ResponseRule::Name(rw));
                    name_rules += 1;
                } else {
                    rules.push(ResponseRule::Value(rw));
                }
                i += 2;
            }
            _ => {
                return Err(format!(
                    "invalid type {} for answer rule for {name} rule",
                    quote(last)
                ));
            }
        }
    }
    if auto && name_rules > 0 {
        return Err(
            "auto name answer rule cannot be combined with explicit name anwer rules".into(),
        );
    }
    Ok((auto, rules))
}

/// A `ttl`/`rcode` name matcher from its type word and string.
fn matcher(kind: &str, s: &str, field: &str) -> Result<Matcher, String> {
    Ok(match kind.to_lowercase().as_str() {
        EXACT => Matcher::Exact(normalize(s)),
        PREFIX => Matcher::Prefix(s.to_lowercase()),
        SUFFIX => Matcher::Suffix(normalize(s)),
        SUBSTRING => Matcher::Substring(s.to_lowercase()),
        REGEX => {
            if s.len() > MAX_REGEX_LEN {
                return Err(format!(
                    "regex pattern too long in a {field} rule: {} > {MAX_REGEX_LEN}",
                    s.len()
                ));
            }
            Matcher::Regex(
                compile(s)
                    .ok_or_else(|| format!("invalid regex pattern in a {field} rule: {s}"))?,
            )
        }
        _ => {
            return Err(format!(
                "{field} rule supports only exact, prefix, suffix, substring, and regex name \
                 matching"
            ));
        }
    })
}

/// The upper end of an open range `MIN-` (RFC 2181 §8's largest TTL). Explicit values may go up
/// to 2^32-1, as CoreDNS parses them.
const MAX_TTL: u64 = 2_147_483_647;

/// A TTL or a `MIN-MAX` range (either end may be left out, not both).
fn parse_ttl_value(v: &str) -> Option<(u32, u32)> {
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u32>().ok().map(u64::from)
    };
    let parts: Vec<&str> = v.split('-').collect();
    let (min, max) = match parts.as_slice() {
        [one] => {
            let n = num(one)?;
            (n, n)
        }
        [lo, hi] => {
            if lo.is_empty() && hi.is_empty() {
                return None;
            }
            let min = if lo.is_empty() { 0 } else { num(lo)? };
            let max = if hi.is_empty() { MAX_TTL } else { num(hi)? };
            (min, max)
        }
        _ => return None,
    };
    if min > max {
        return None;
    }
    Some((min as u32, max as u32))
}

fn parse_ttl(args: &[String]) -> Result<Kind, String> {
    if args.len() < 2 {
        return Err(format!("too few ({}) arguments for a ttl rule", args.len()));
    }
    let value = match args.len() {
        2 => args[1].as_str(),
        3 => args[2].as_str(),
        _ => "",
    };
    let (min, max) =
        parse_ttl_value(value).ok_or_else(|| format!("invalid TTL '{value}' for a ttl rule"))?;
    let matcher = match args.len() {
        2 => Matcher::Exact(normalize(&args[0])),
        3 => matcher(&args[0], &args[1], "ttl")?,
        _ => return Err("many few arguments for a ttl rule".into()),
    };
    Ok(Kind::Answer {
        matcher,
        rule: ResponseRule::Ttl { min, max },
    })
}

fn parse_rcode_value(v: &str) -> Option<u16> {
    if let Ok(n) = v.parse::<u16>()
        && v.bytes().all(|b| b.is_ascii_digit())
        && n <= 23
    {
        return Some(n);
    }
    crate::plugin::mnemonic::rcode_from_name(v)
}

fn parse_rcode(args: &[String]) -> Result<Kind, String> {
    if args.len() < 3 {
        return Err(format!(
            "too few ({}) arguments for a rcode rule",
            args.len()
        ));
    }
    let (old, new) = match args.len() {
        3 => (args[1].as_str(), args[2].as_str()),
        4 => (args[2].as_str(), args[3].as_str()),
        _ => ("", ""),
    };
    let old_code = parse_rcode_value(old)
        .ok_or_else(|| format!("invalid matching RCODE '{old}' for a rcode rule"))?;
    let new_code = parse_rcode_value(new)
        .ok_or_else(|| format!("invalid replacement RCODE '{new}' for a rcode rule"))?;
    let matcher = match args.len() {
        3 => Matcher::Exact(normalize(&args[0])),
        4 => matcher(&args[0], &args[1], "rcode")?,
        _ => return Err("many few arguments for a rcode rule".into()),
    };
    Ok(Kind::Answer {
        matcher,
        rule: ResponseRule::Rcode {
            old: old_code,
            new: new_code,
        },
    })
}

/// Go's `strconv.ParseUint(s, 0, bits)`: decimal, `0x` hex, `0o`/`0` octal, `0b` binary.
fn parse_uint(s: &str, bits: u32) -> Result<u64, String> {
    let syntax = || format!("strconv.ParseUint: parsing {}: invalid syntax", quote(s));
    let digits: String = s.chars().filter(|c| *c != '_').collect();
    let (radix, body) = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, h)
    } else if let Some(b) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, b)
    } else if let Some(o) = digits
        .strip_prefix("0o")
        .or_else(|| digits.strip_prefix("0O"))
    {
        (8, o)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits.as_str())
    };
    if body.is_empty() || body.starts_with('+') || body.starts_with('-') {
        return Err(syntax());
    }
    let n = u64::from_str_radix(body, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => {
            format!(
                "strconv.ParseUint: parsing {}: value out of range",
                quote(s)
            )
        }
        _ => syntax(),
    })?;
    if bits < 64 && n >> bits != 0 {
        return Err(format!(
            "strconv.ParseUint: parsing {}: value out of range",
            quote(s)
        ));
    }
    Ok(n)
}

/// Go's `hex.DecodeString`, with its error texts.
fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let val = |c: u8| -> Result<u8, String> {
        (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| {
            format!(
                "encoding/hex: invalid byte: U+{:04X} {}",
                c,
                format_args!("'{}'", c as char)
            )
        })
    };
    let mut out = Vec::with_capacity(b.len() / 2);
    for pair in b.chunks(2) {
        if pair.len() < 2 {
            val(pair[0])?;
            return Err("encoding/hex: odd length hex string".into());
        }
        out.push(val(pair[0])? << 4 | val(pair[1])?);
    }
    Ok(out)
}

fn parse_edns0(args: &[String]) -> Result<Edns0Rule, String> {
    if args.len() < 2 {
        return Err("too few arguments for an EDNS0 rule".into());
    }
    let rule_type = args[0].to_lowercase();
    let action = match args[1].to_lowercase().as_str() {
        "set" => Action::Set,
        "append" => Action::Append,
        "replace" => Action::Replace,
        "unset" => Action::Unset,
        other => return Err(format!("invalid action: {}", quote(other))),
    };
    // `revert` ends a set/append/replace rule: the option is for the chain only.
    let mut args = args;
    let mut revert = false;
    if action != Action::Unset && args.len() > 2 && args[args.len() - 1] == "revert" {
        revert = true;
        args = &args[..args.len() - 1];
    }
    let unset = action == Action::Unset;
    let option = match rule_type.as_str() {
        "local" => {
            if unset {
                if args.len() != 3 {
                    return Err("EDNS0 local unset rules require exactly one arg".into());
                }
                Edns0Option::Local {
                    code: parse_uint(&args[2], 16)? as u16,
                    data: Vec::new(),
                }
            } else {
                if args.len() != 4 {
                    return Err("EDNS0 local rules require three or four args".into());
                }
                let code = parse_uint(&args[2], 16)? as u16;
                let data = &args[3];
                if data.starts_with('{') && data.ends_with('}') {
                    Edns0Option::Variable {
                        code,
                        variable: parse_variable(data)?,
                    }
                } else if let Some(hex) = data.strip_prefix("0x") {
                    Edns0Option::Local {
                        code,
                        data: decode_hex(hex)?,
                    }
                } else {
                    Edns0Option::Local {
                        code,
                        data: data.as_bytes().to_vec(),
                    }
                }
            }
        }
        "nsid" => {
            if args.len() != 2 {
                return Err("EDNS0 NSID rules can accept no more than one arg".into());
            }
            Edns0Option::Nsid
        }
        "subnet" => {
            if unset {
                if args.len() != 2 {
                    return Err("EDNS0 subnet unset rules do not accept args".into());
                }
                Edns0Option::Subnet { v4: 0, v6: 0 }
            } else {
                if args.len() != 4 {
                    return Err("EDNS0 subnet rules require three or four args".into());
                }
                let v4 = parse_uint(&args[2], 16)?;
                if v4 > 32 {
                    return Err(format!("invalid IPv4 bit mask length {v4}"));
                }
                let v6 = parse_uint(&args[3], 16)?;
                if v6 > 128 {
                    return Err(format!("invalid IPv6 bit mask length {v6}"));
                }
                Edns0Option::Subnet {
                    v4: v4 as u8,
                    v6: v6 as u8,
                }
            }
        }
        _ => return Err(format!("invalid rule type {}", quote(&rule_type))),
    };
    Ok(Edns0Rule {
        action,
        option,
        revert,
    })
}

fn parse_variable(v: &str) -> Result<Variable, String> {
    Ok(match v {
        "{qname}" => Variable::Qname,
        "{qtype}" => Variable::Qtype,
        "{client_ip}" => Variable::ClientIp,
        "{client_port}" => Variable::ClientPort,
        "{protocol}" => Variable::Protocol,
        "{server_ip}" => Variable::ServerIp,
        "{server_port}" => Variable::ServerPort,
        _ => {
            // CoreDNS's `metadata.IsLabel`: exactly one `/`, not first or last.
            let label = &v[1..v.len() - 1];
            let slash = label.find('/');
            let ok = matches!(slash, Some(p) if p > 0 && p < label.len() - 1 && label.rfind('/') == Some(p));
            if !ok {
                return Err(format!("unsupported variable name {}", quote(v)));
            }
            Variable::Metadata
        }
    })
}

#[cfg(test)]
pub(super) fn ttl_value(v: &str) -> Option<(u32, u32)> {
    parse_ttl_value(v)
}
