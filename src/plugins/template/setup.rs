//! `template CLASS TYPE [ZONE...] { ... }`: parsing the directive, with CoreDNS's errors.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use prometheus_client::metrics::family::Family;
use regex::Regex;

use super::gotmpl;
use super::{Metrics, Section, Template, TemplatePlugin, rr};
use crate::corefile::{Directive, parse_key};
use crate::dnsname::fqdn_lower;
use crate::plugin::fall::Fall;
use crate::plugin::setup::{Setup, SetupError, SetupResult};

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let mut templates = Vec::new();
    let mut all_zones: Vec<Arc<str>> = Vec::new();
    for d in &c.directives {
        let t = parse_template(c, d)?;
        for z in &t.zones {
            if !all_zones.contains(z) {
                all_zones.push(z.clone());
            }
        }
        templates.push(t);
    }
    let metrics = c.shared.metrics.family(|r| {
        let m = Metrics {
            matches: Family::default(),
            template_failures: Family::default(),
            rr_failures: Family::default(),
        };
        r.register(
            "coredns_template_matches",
            "Counter of template regex matches.",
            m.matches.clone(),
        );
        r.register(
            "coredns_template_template_failures",
            "Counter of go template failures.",
            m.template_failures.clone(),
        );
        r.register(
            "coredns_template_rr_failures",
            "Counter of mis-templated RRs.",
            m.rr_failures.clone(),
        );
        m
    });
    Ok(Some(Arc::new(TemplatePlugin {
        zones: all_zones,
        templates,
        metrics,
        upstream: crate::plugin::upstream::Upstream::new(c.shared),
    })))
}

/// miekg/dns's `StringToRcode` (exact case, as CoreDNS looks it up).
fn rcode(s: &str) -> Option<ResponseCode> {
    let code: u16 = match s {
        "NOERROR" => 0,
        "FORMERR" => 1,
        "SERVFAIL" => 2,
        "NXDOMAIN" => 3,
        "NOTIMP" | "NOTIMPL" => 4,
        "REFUSED" => 5,
        "YXDOMAIN" => 6,
        "YXRRSET" => 7,
        "NXRRSET" => 8,
        "NOTAUTH" => 9,
        "NOTZONE" => 10,
        "DSOTYPENI" => 11,
        "BADSIG" => 16,
        "BADKEY" => 17,
        "BADTIME" => 18,
        "BADMODE" => 19,
        "BADNAME" => 20,
        "BADALG" => 21,
        "BADTRUNC" => 22,
        "BADCOOKIE" => 23,
        _ => return None,
    };
    Some(ResponseCode::from((code >> 4) as u8, (code & 0xf) as u8))
}

/// CoreDNS's `c.ArgErr()` for a line in the block: it names the property itself.
fn line_arg_err(line: &Directive) -> SetupError {
    line.err(format!(
        "Wrong argument count or unexpected line ending after '{}'",
        line.name
    ))
}

fn section(line: &Directive, name: &'static str, out: &mut Vec<Section>) -> Result<(), SetupError> {
    if line.args.is_empty() {
        return Err(line_arg_err(line));
    }
    for a in &line.args {
        let tmpl = gotmpl::Template::parse(name, &a.text).map_err(|e| {
            line.err_at(
                a,
                format!(
                    "could not compile template: {}, {e}",
                    line.args.last().map_or("", |t| t.text.as_str())
                ),
            )
        })?;
        let label = Arc::from(tmpl.tree_string());
        out.push(Section { tmpl, label });
    }
    Ok(())
}

fn parse_template(c: &Setup<'_>, d: &Directive) -> Result<Template, SetupError> {
    let args = d.arg_strs();
    let (Some(class), Some(qtype)) = (args.first(), args.get(1)) else {
        return Err(d.arg_err());
    };
    // Class and type names are looked up exactly as written, as CoreDNS does in miekg/dns's
    // `StringToClass` and `StringToType`.
    let class = match *class {
        "IN" => 1,
        "CS" => 2,
        "CH" => 3,
        "HS" => 4,
        "NONE" => 254,
        "ANY" => 255,
        _ => return Err(d.err(format!("invalid query class {class}"))),
    };
    let qtype = match rr::parse_type(qtype) {
        _ if *qtype == "ANY" => 255,
        Some(t)
            if !qtype.starts_with("TYPE") && !qtype.chars().any(|ch| ch.is_ascii_lowercase()) =>
        {
            u16::from(t)
        }
        _ => return Err(d.err(format!("invalid RR class {qtype}"))),
    };
    // CoreDNS normalizes each zone as a server block key (`plugin.Host.NormalizeExact`): a
    // CIDR such as `10.0.0.0/8` stands for its reverse zones.
    let mut zones: Vec<Arc<str>> = Vec::new();
    if args.len() == 2 {
        zones.extend(c.zones.iter().map(|z| Arc::from(z.as_str())));
    }
    for a in &args[2..] {
        let named = match parse_key(a) {
            Ok(keys) => keys.into_iter().map(|k| k.zone).collect(),
            Err(_) => vec![fqdn_lower(a)],
        };
        for z in named {
            if !zones.iter().any(|have| **have == *z) {
                zones.push(Arc::from(z));
            }
        }
    }
    let mut t = Template {
        zones,
        class,
        qtype,
        regex: Vec::new(),
        answer: Vec::new(),
        additional: Vec::new(),
        authority: Vec::new(),
        rcode: ResponseCode::NoError,
        ederror: None,
        fall: Fall::default(),
    };
    for line in &d.block {
        match line.name.as_str() {
            "match" => {
                if line.args.is_empty() {
                    return Err(line_arg_err(line));
                }
                for a in &line.args {
                    let re = Regex::new(&a.text).map_err(|e| {
                        line.err_at(a, format!("could not parse regex: {}, {e}", a.text))
                    })?;
                    t.regex.push(re);
                }
            }
            "answer" => section(line, "answer", &mut t.answer)?,
            "additional" => section(line, "additional", &mut t.additional)?,
            "authority" => section(line, "authority", &mut t.authority)?,
            "rcode" => {
                let [code] = line.args.as_slice() else {
                    return Err(line_arg_err(line));
                };
                t.rcode = rcode(&code.text)
                    .ok_or_else(|| line.err(format!("unknown rcode {}", code.text)))?;
            }
            "ederror" => {
                let words = line.arg_strs();
                if words.is_empty() || words.len() > 2 {
                    return Err(line_arg_err(line));
                }
                let code = gotmpl::parse_uint(words[0], 10, 16).map_err(|e| {
                    line.err(format!(
                        "error parsing extended DNS error code {}, {e}",
                        words[words.len() - 1]
                    ))
                })?;
                let reason = words.get(1).map_or(String::new(), |r| r.to_string());
                t.ederror = Some((code as u16, reason));
            }
            "fallthrough" => t.fall = Fall::from_directive(line),
            // Accepted and ignored, as CoreDNS still does: CNAME targets are always looked up.
            "upstream" => {}
            _ => return Err(line_arg_err(line)),
        }
    }
    if t.regex.is_empty() {
        t.regex
            .push(Regex::new(".*").map_err(|e| d.err(e.to_string()))?);
    }
    Ok(t)
}
