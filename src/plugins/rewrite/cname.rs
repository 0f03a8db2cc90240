//! `rewrite [continue|stop] cname [exact|prefix|suffix|substring|regex] FROM TO`: CoreDNS's CNAME
//! target rewrite (`cname_target.go`, as fixed for CNAME chains in 1.14.2).
//!
//! The rule matches every query (it only acts on the answer, so a `stop` cname rule ends the
//! rule list for every query, as in CoreDNS). On the way back it looks for the first CNAME in
//! the answer whose target it rewrites; when there is one:
//! - the CNAMEs before it are kept, every other record before it is dropped;
//! - its target becomes the new name;
//! - the new name is looked up with the question's type through the server itself
//!   ([`Upstream`]) and every record of that answer follows (the chain behind the new target);
//! - the records that followed the matched CNAME (the old target's chain) are dropped;
//! - the TC bit of the lookup's answer is copied, so a truncated answer is not mistaken for a
//!   complete one (and cached);
//! - the rcode stays the one of the original answer.
//!
//! A lookup that fails leaves the answer as it was.

use hickory_proto::rr::{Name, RData, Record};
use regex::{Regex, RegexBuilder};

use super::answer::{ResponseRule, substitute};
use crate::plugin::request::lowercase_name;
use crate::plugin::upstream::Upstream;
use crate::plugin::{Outcome, Request, Response};

/// How a `cname` rule picks the CNAME targets it rewrites and what it writes instead. Every
/// form is matched against the target in lower case.
#[derive(Debug)]
pub(super) enum CnameTarget {
    /// The target is FROM: it becomes TO. Both are made fully qualified.
    Exact { from: String, to: String },
    /// The target starts with FROM, which is replaced by TO.
    Prefix { from: String, to: String },
    /// The target ends with FROM, which is replaced by TO.
    Suffix { from: String, to: String },
    /// Every occurrence of FROM in the target is replaced by TO.
    Substring { from: String, to: String },
    /// The target matches FROM; `{0}`, `{1}`, ... in TO are the match and its groups.
    Regex { pattern: Regex, to: String },
}

impl CnameTarget {
    /// The new target for a CNAME pointing at `target`, or `None` when the rule leaves it.
    fn rewrite(&self, target: &str) -> Option<String> {
        match self {
            CnameTarget::Exact { from, to } => (target == from).then(|| to.clone()),
            CnameTarget::Prefix { from, to } => target
                .strip_prefix(from.as_str())
                .map(|rest| format!("{to}{rest}")),
            CnameTarget::Suffix { from, to } => target
                .strip_suffix(from.as_str())
                .map(|head| format!("{head}{to}")),
            CnameTarget::Substring { from, to } => target
                .contains(from.as_str())
                .then(|| target.replace(from.as_str(), to)),
            CnameTarget::Regex { pattern, to } => substitute(pattern, to, target),
        }
    }
}

/// CoreDNS's `newCNAMERule` on the words after `cname`, with its error texts.
pub(super) fn parse(args: &[String]) -> Result<CnameTarget, String> {
    let (kind, from, to) = match args {
        [from, to] => ("exact".to_owned(), from, to),
        [kind, from, to] => (kind.to_lowercase(), from, to),
        _ => {
            return Err(format!(
                "too few ({}) arguments for a cname rule",
                args.len()
            ));
        }
    };
    let (from_l, to_l) = (from.to_lowercase(), to.to_lowercase());
    Ok(match kind.as_str() {
        // Made fully qualified, as CoreDNS's fix for its issue #6922 does: without it,
        // `cname exact a.example b.example` never matches a target (targets end in a dot).
        "exact" => CnameTarget::Exact {
            from: fqdn(from_l),
            to: fqdn(to_l),
        },
        "prefix" => CnameTarget::Prefix {
            from: from_l,
            to: to_l,
        },
        "suffix" => CnameTarget::Suffix {
            from: from_l,
            to: to_l,
        },
        "substring" => CnameTarget::Substring {
            from: from_l,
            to: to_l,
        },
        "regex" => {
            // Checked as `name` regexes are (length, syntax, groups used), where CoreDNS
            // compiles the pattern on every answer and panics on a bad one. Matched without
            // regard to case instead of lower-casing the pattern as CoreDNS does, which would
            // turn `\D` or `\S` into `\d` or `\s`.
            super::rules::regex_for(from, to)?;
            let pattern = RegexBuilder::new(from)
                .case_insensitive(true)
                .build()
                .map_err(|_| format!("invalid regex matching pattern: {from}"))?;
            CnameTarget::Regex { pattern, to: to_l }
        }
        other => return Err(format!("unknown cname rewrite type: {other}")),
    })
}

fn fqdn(mut s: String) -> String {
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// The first CNAME in `answers` that `rule` rewrites: its index and the new target.
fn find(rule: &CnameTarget, answers: &[Record]) -> Option<(usize, Name)> {
    answers.iter().enumerate().find_map(|(i, rr)| {
        let RData::CNAME(c) = &rr.data else {
            return None;
        };
        let new = rule.rewrite(&lowercase_name(&c.0))?;
        // A rewrite that does not spell a domain name leaves the record alone.
        let name = Name::from_ascii(fqdn(new)).ok()?;
        Some((i, name))
    })
}

fn cname_rules(rules: &[ResponseRule]) -> impl Iterator<Item = &CnameTarget> {
    // Response rules run last rule first, as CoreDNS's reverter runs them.
    rules.iter().rev().filter_map(|r| match r {
        ResponseRule::Cname(c) => Some(&**c),
        _ => None,
    })
}

/// Whether any cname rule among `rules` has something to do with `outcome`.
pub(super) fn wants_lookup(rules: &[ResponseRule], outcome: &Outcome) -> bool {
    let Ok(resp) = outcome else {
        return false;
    };
    let mut rules = cname_rules(rules).peekable();
    if rules.peek().is_none() {
        return false;
    }
    let answers = &resp.message().answers;
    rules.any(|rule| find(rule, answers).is_some())
}

/// Apply the cname rules among `rules` to the answer of `rewritten` (the query as the rest of
/// the chain was asked it: its type, flags and EDNS0 options go into the lookup, as CoreDNS
/// looks up with the request it rewrote).
pub(super) async fn apply(
    rules: &[ResponseRule],
    resp: &mut Response,
    rewritten: &Request,
    upstream: &Upstream,
) {
    for rule in cname_rules(rules) {
        let Some((i, target)) = find(rule, &resp.message().answers) else {
            continue;
        };
        let found = match upstream
            .lookup(rewritten, target.clone(), rewritten.qtype())
            .await
        {
            Ok(m) => m,
            Err(e) => {
                crate::error!("plugin/rewrite: upstream lookup of {target} failed: {e}");
                continue;
            }
        };
        let m = resp.message_mut();
        let old = std::mem::take(&mut m.answers);
        let mut answers: Vec<Record> = old
            .into_iter()
            .take(i + 1)
            .filter(|rr| matches!(rr.data, RData::CNAME(_)))
            .collect();
        if let Some(RData::CNAME(c)) = answers.last_mut().map(|rr| &mut rr.data) {
            c.0 = target;
        }
        answers.extend(found.answers);
        m.answers = answers;
        m.metadata.truncation = found.metadata.truncation;
    }
}
