//! Response rules: what `rewrite` does to the answer on its way back to the client (CoreDNS's
//! `ResponseReverter` and its `ResponseRule`s).
//!
//! CoreDNS applies the record rules to every record, authority first, then answer, then
//! additional, and for each record the rules in reverse order (the last request rewrite is
//! undone first). `rcode` rules act on the message once, so that an answer without records (a
//! bare SERVFAIL or NXDOMAIN) is rewritten too, as current CoreDNS does.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, Record};
use regex::Regex;

/// A rule applied to the answer.
#[derive(Clone, Debug)]
pub(super) enum ResponseRule {
    /// Rewrite owner names.
    Name(StringRewriter),
    /// Rewrite the names inside CNAME, DNAME, NS, PTR, MX, SRV, NAPTR and SOA (MNAME) data.
    Value(StringRewriter),
    /// Clamp TTLs into `min..=max` (a single TTL is `min == max`).
    Ttl { min: u32, max: u32 },
    /// Replace rcode `old` with `new`.
    Rcode { old: u16, new: u16 },
    /// Give the client back an EDNS0 option as it sent it (`revert`): the first option with
    /// `code` in the answer becomes `original`, or is removed when `rewrite` added it.
    EdnsRevert {
        code: u16,
        original: Option<EdnsOption>,
    },
    /// Rewrite a CNAME target and splice in the new target's records (`cname`); applied by
    /// [`super::cname::apply`], before the other rules.
    Cname(Arc<super::cname::CnameTarget>),
}

/// How a response rule maps a name (CoreDNS's `stringRewriter`s).
#[derive(Clone, Debug)]
pub(super) enum StringRewriter {
    /// `answer name|value REGEX REPLACEMENT`, with `{N}` group substitution.
    Regex(Arc<RegexRewriter>),
    /// `answer auto`: the rewritten name, or a name below it, goes back to the original.
    Remap { orig: String, replacement: String },
    /// `answer auto` on a `suffix` rule: the suffix rule run backwards.
    Suffix(Arc<(String, String)>),
}

#[derive(Debug)]
pub(super) struct RegexRewriter {
    pub pattern: Regex,
    pub replacement: String,
}

impl StringRewriter {
    /// The rewritten string, or `None` when the rule leaves `src` alone.
    fn rewrite(&self, src: &str) -> Option<String> {
        match self {
            StringRewriter::Regex(r) => substitute(&r.pattern, &r.replacement, src),
            StringRewriter::Remap { orig, replacement } => {
                if src == orig {
                    return Some(replacement.clone());
                }
                // A name below the rewritten one: `x.orig` becomes `x.replacement`.
                let below = src.strip_suffix(orig.as_str())?;
                below
                    .ends_with('.')
                    .then(|| format!("{below}{replacement}"))
            }
            StringRewriter::Suffix(s) => {
                let (suffix, replacement) = (&s.0, &s.1);
                src.strip_suffix(suffix.as_str())
                    .map(|head| format!("{head}{replacement}"))
            }
        }
    }
}

/// CoreDNS's regex replacement: when `pattern` matches, `{0}`, `{1}`, ... in `replacement` are
/// replaced, in that order, by the match and its groups (a group that did not take part is
/// empty).
pub(super) fn substitute(pattern: &Regex, replacement: &str, src: &str) -> Option<String> {
    let caps = pattern.captures(src)?;
    let mut out = replacement.to_owned();
    for i in 0..caps.len() {
        let key = format!("{{{i}}}");
        if out.contains(&key) {
            out = out.replace(&key, caps.get(i).map_or("", |m| m.as_str()));
        }
    }
    Some(out)
}

impl ResponseRule {
    /// CoreDNS's `RewriteResponse(res, rr)` for one record.
    fn apply_record(&self, rr: &mut Record) {
        match self {
            ResponseRule::Name(rw) => {
                if let Some(new) = rw.rewrite(&rr.name.to_ascii())
                    && let Ok(name) = Name::from_ascii(&new)
                {
                    rr.name = name;
                }
            }
            ResponseRule::Value(rw) => {
                let Some(target) = value_name(&mut rr.data) else {
                    return;
                };
                if let Some(new) = rw.rewrite(&target.to_ascii())
                    && let Ok(name) = Name::from_ascii(&new)
                {
                    *target = name;
                }
            }
            ResponseRule::Ttl { min, max } => {
                if rr.ttl < *min {
                    rr.ttl = *min;
                } else if rr.ttl > *max {
                    rr.ttl = *max;
                }
            }
            ResponseRule::Rcode { .. }
            | ResponseRule::EdnsRevert { .. }
            | ResponseRule::Cname(_) => {}
        }
    }

    /// The same for the answer's OPT record, which CoreDNS keeps among the additional records.
    /// Only `revert` has something to do there: the server writes the OPT header for the client
    /// anyway.
    fn apply_opt(&self, edns: &mut Edns) {
        let ResponseRule::EdnsRevert { code, original } = self else {
            return;
        };
        let code = EdnsCode::from(*code);
        let options = &mut edns.options_mut().options;
        let Some(i) = options.iter().position(|(c, _)| *c == code) else {
            return;
        };
        match original {
            Some(o) => options[i].1 = o.clone(),
            None => {
                options.remove(i);
            }
        }
    }
}

/// The name inside a record's data that `answer value` rewrites, as CoreDNS's
/// `getRecordValueForRewrite` picks it.
fn value_name(data: &mut RData) -> Option<&mut Name> {
    Some(match data {
        RData::SRV(srv) => &mut srv.target,
        RData::MX(mx) => &mut mx.exchange,
        RData::CNAME(cname) => &mut cname.0,
        RData::NS(ns) => &mut ns.0,
        RData::NAPTR(naptr) => &mut naptr.replacement,
        RData::SOA(soa) => &mut soa.mname,
        RData::PTR(ptr) => &mut ptr.0,
        // hickory keeps DNAME as unparsed data; a DNAME target is not rewritten.
        _ => return None,
    })
}

/// Apply `rules` to `msg` the way CoreDNS's reverter does.
pub(super) fn apply(rules: &[ResponseRule], msg: &mut Message) {
    if rules.is_empty() {
        return;
    }
    let mut rcode = u16::from(msg.metadata.response_code);
    let before = rcode;
    for rule in rules.iter().rev() {
        if let ResponseRule::Rcode { old, new } = rule
            && rcode == *old
        {
            rcode = *new;
        }
    }
    if rcode != before {
        msg.metadata.response_code = <ResponseCode as From<u16>>::from(rcode);
    }
    for section in [&mut msg.authorities, &mut msg.answers, &mut msg.additionals] {
        for rr in section.iter_mut() {
            for rule in rules.iter().rev() {
                rule.apply_record(rr);
            }
        }
    }
    if let Some(edns) = msg.edns.as_mut() {
        for rule in rules.iter().rev() {
            rule.apply_opt(edns);
        }
    }
}

/// Whether `rules` can change an rcode.
pub(super) fn has_rcode_rule(rules: &[ResponseRule]) -> bool {
    rules
        .iter()
        .any(|r| matches!(r, ResponseRule::Rcode { .. }))
}
