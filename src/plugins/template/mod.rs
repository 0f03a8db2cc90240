//! `template`: answers queries from Go templates, chosen by class, type, zone and regular
//! expression. See README.md.

mod data;
mod gotmpl;
mod rr;
mod setup;

use std::borrow::Cow;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData, Record, RecordType};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use regex::Regex;

use crate::dnsname::{is_subdomain, longest_match};
use crate::plugin::fall::Fall;
use crate::plugin::upstream::Upstream;
use crate::plugin::{Failure, Next, Plugin, Request, Response, Served};
use data::{Dot, QueryData, presentation};
pub use setup::setup;

/// RFC 8914 Extended DNS Error option code.
const EDE_OPTION: u16 = 15;
/// miekg/dns's numbers for the ANY class and type, which match anything in a template.
const ANY: u16 = 255;

/// One `answer`, `additional` or `authority` line: the parsed template and its tree's string
/// form, CoreDNS's `template` metric label.
struct Section {
    tmpl: gotmpl::Template,
    label: Arc<str>,
}

/// One `template` directive.
struct Template {
    /// Shared with the metric labels, so a match costs no allocation for the zone.
    zones: Vec<Arc<str>>,
    class: u16,
    qtype: u16,
    regex: Vec<Regex>,
    answer: Vec<Section>,
    additional: Vec<Section>,
    authority: Vec<Section>,
    rcode: ResponseCode,
    /// RFC 8914 info code and extra text.
    ederror: Option<(u16, String)>,
    fall: Fall,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MatchLabels {
    server: Arc<str>,
    zone: Arc<str>,
    /// The *view* plugin's view name; ferrodns has no views, so always empty.
    view: &'static str,
    class: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    server: Arc<str>,
    zone: Arc<str>,
    view: &'static str,
    class: &'static str,
    r#type: &'static str,
    section: &'static str,
    template: Arc<str>,
}

#[derive(Clone)]
struct Metrics {
    matches: Family<MatchLabels, Counter>,
    template_failures: Family<FailureLabels, Counter>,
    rr_failures: Family<FailureLabels, Counter>,
}

pub struct TemplatePlugin {
    /// Every template's zones: queries outside them go straight to the next plugin.
    zones: Vec<Arc<str>>,
    templates: Vec<Template>,
    metrics: Metrics,
    /// CNAME targets are looked up through the server itself.
    upstream: Upstream,
}

/// miekg/dns's `ClassToString`: names for the classes it knows, "" for others.
fn class_name(class: u16) -> &'static str {
    match class {
        1 => "IN",
        2 => "CS",
        3 => "CH",
        4 => "HS",
        254 => "NONE",
        255 => "ANY",
        _ => "",
    }
}

/// miekg/dns's `TypeToString`, "" for a type it has no name for.
fn type_name(qtype: u16) -> &'static str {
    match RecordType::from(qtype) {
        RecordType::Unknown(_) => "",
        t => t.into(),
    }
}

/// The question name as CoreDNS's `state.Name()` spells it. For the usual name (letters,
/// digits, `-` and `_` inside labels) that is exactly the request's lower-case name, so no
/// second string is built.
fn query_name(req: &Request) -> Cow<'_, str> {
    let plain = req.qname().iter().all(|label| {
        label
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    });
    if plain {
        Cow::Borrowed(req.name())
    } else {
        Cow::Owned(presentation(req.qname(), true))
    }
}

impl Plugin for TemplatePlugin {
    fn name(&self) -> &'static str {
        "template"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        // CoreDNS matches zones and regexes against the question name in miekg/dns's
        // presentation form, lower-cased (`state.Name()`).
        let name = query_name(req);
        if longest_match(&self.zones, &name).is_none() {
            return next.serve(req);
        }
        let qclass = u16::from(req.qclass());
        let qtype = u16::from(req.qtype());
        for t in &self.templates {
            // CoreDNS's `plugin.Zones.Matches`: the longest zone containing the name.
            let Some(zone) = t
                .zones
                .iter()
                .filter(|z| is_subdomain(&name, z))
                .max_by_key(|z| z.len())
            else {
                continue;
            };
            if t.class != ANY && qclass != ANY && qclass != t.class {
                continue;
            }
            if t.qtype != ANY && qtype != ANY && qtype != t.qtype {
                continue;
            }
            let Some(regex) = t.regex.iter().find(|re| re.is_match(&name)) else {
                // The zone matched but no regex did: the next template may try, or with no
                // fallthrough the query fails (CoreDNS >= 1.9.1 answers SERVFAIL here).
                if t.fall.through(&name) {
                    continue;
                }
                return Served::Ready(Err(Failure::new(ResponseCode::ServFail)));
            };
            let class = class_name(if qclass != ANY { qclass } else { t.class });
            let type_ = type_name(if qtype != ANY { qtype } else { t.qtype });
            self.metrics
                .matches
                .get_or_create(&MatchLabels {
                    server: req.server.clone(),
                    zone: zone.clone(),
                    view: "",
                    class,
                    r#type: type_,
                })
                .inc();
            // SERVFAIL is left to the server to write, as CoreDNS returns it unwritten.
            if t.rcode == ResponseCode::ServFail {
                return Served::Ready(Err(Failure::new(ResponseCode::ServFail)));
            }
            // Capture groups are only worth finding for a template that renders records (the
            // c-ares AAAA fix renders none).
            if t.answer.is_empty() && t.additional.is_empty() && t.authority.is_empty() {
                return self.answer(req, t, None, zone.clone());
            }
            // `is_match` and `captures` agree; a disagreement would be a regex crate bug.
            let Some(caps) = regex.captures(&name) else {
                return next.serve(req);
            };
            let data = QueryData::new(req, zone, &name, regex, caps, class, type_);
            return self.answer(req, t, Some(&data), zone.clone());
        }
        next.serve(req)
    }
}

impl TemplatePlugin {
    fn answer<'a>(
        &'a self,
        req: &'a Request,
        t: &'a Template,
        data: Option<&QueryData<'_>>,
        zone: Arc<str>,
    ) -> Served<'a> {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        m.metadata.response_code = t.rcode;
        if let Some(data) = data
            && let Err(f) = self.render(req, t, data, &zone, &mut m)
        {
            return Served::Ready(Err(f));
        }
        if let Some((code, reason)) = &t.ederror {
            // CoreDNS adds its own OPT record (4096, DO) carrying the error; the server then
            // fits it to the client, and drops it for a client that sent no OPT (RFC 6891 §7).
            let mut edns = Edns::new();
            edns.set_max_payload(4096);
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            edns.options_mut()
                .insert(EdnsOption::Unknown(EDE_OPTION, payload));
            m.edns = Some(edns);
        }
        let qtype = req.qtype();
        let chase = matches!(qtype, RecordType::A | RecordType::AAAA)
            && m.answers.iter().any(|r| matches!(r.data, RData::CNAME(_)));
        if !chase {
            return Served::Ready(Ok(Response::new(m, "template")));
        }
        Served::pending(chase_cnames(&self.upstream, req, m))
    }

    /// Render the template's records into `m`'s sections.
    fn render(
        &self,
        req: &Request,
        t: &Template,
        data: &QueryData<'_>,
        zone: &Arc<str>,
        m: &mut Message,
    ) -> Result<(), Failure> {
        let dot_data = Dot::new(data);
        let dot = gotmpl::Value::Object(&dot_data);
        let mut buf = String::new();
        let sections: [(&'static str, &[Section]); 3] = [
            ("answer", &t.answer),
            ("additional", &t.additional),
            ("authority", &t.authority),
        ];
        for (section, list) in sections {
            for s in list {
                buf.clear();
                let labels = || FailureLabels {
                    server: req.server.clone(),
                    zone: zone.clone(),
                    view: "",
                    class: data.class,
                    r#type: data.qtype,
                    section,
                    template: s.label.clone(),
                };
                if let Err(e) = s.tmpl.execute(&dot, &mut buf) {
                    self.metrics
                        .template_failures
                        .get_or_create(&labels())
                        .inc();
                    return Err(Failure::error(
                        ResponseCode::ServFail,
                        "template",
                        e.to_string(),
                    ));
                }
                let record = match rr::parse(&buf) {
                    Ok(Some(r)) => r,
                    // A template that renders nothing adds no record (CoreDNS would add a nil
                    // record and fail to write the reply).
                    Ok(None) => continue,
                    Err(e) => {
                        self.metrics.rr_failures.get_or_create(&labels()).inc();
                        return Err(Failure::error(ResponseCode::ServFail, "template", e));
                    }
                };
                match section {
                    "answer" => m.answers.push(record),
                    "additional" => m.additionals.push(record),
                    _ => m.authorities.push(record),
                }
            }
        }
        Ok(())
    }
}

/// CoreDNS looks up the target of every CNAME a template answers an A or AAAA query with,
/// through the whole server (`upstream.Lookup`: the zone that holds the target, whichever server
/// block of the listener that is), and appends the answer records right after the CNAME. A
/// failed lookup adds nothing.
async fn chase_cnames(
    upstream: &Upstream,
    req: &Request,
    mut m: Message,
) -> Result<Response, Failure> {
    let answers = std::mem::take(&mut m.answers);
    let mut out: Vec<Record> = Vec::with_capacity(answers.len() + 1);
    for rec in answers {
        let target = match &rec.data {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        };
        out.push(rec);
        let Some(target) = target else { continue };
        if let Ok(found) = upstream.lookup(req, target, req.qtype()).await {
            out.extend(found.answers);
        }
    }
    m.answers = out;
    Ok(Response::new(m, "template"))
}

#[cfg(test)]
mod tests;
