//! `any`: answers ANY queries with the single HINFO record of RFC 8482 §4.2. See README.md.

use std::sync::Arc;

use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Response, Served};

/// RFC 8482 §4.2 suggests a TTL around 8482 for the synthesized HINFO; CoreDNS uses exactly that.
const TTL: u32 = 8482;

pub struct Any;

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    c.no_arguments()?;
    Ok(Some(Arc::new(Any)))
}

impl Plugin for Any {
    fn name(&self) -> &'static str {
        "any"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        if req.qtype() != RecordType::ANY {
            return next.serve(req);
        }
        let mut m = req.reply();
        // Class IN and the question name as written, whatever the question's class: CoreDNS's
        // answer, not marked authoritative.
        let hinfo = HINFO::new("ANY obsoleted".into(), "See RFC 8482".into());
        m.answers.push(Record::from_rdata(
            req.qname().clone(),
            TTL,
            RData::HINFO(hinfo),
        ));
        Served::Ready(Ok(Response::new(m, "any")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, ask, message, run, show};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::DNSClass;

    #[test]
    fn any_is_answered_other_types_pass_on() {
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::NXDomain))];
        for (q, rcode, answer) in [
            (
                ask("example.org.", RecordType::ANY),
                ResponseCode::NoError,
                vec!["example.org. 8482 IN HINFO ANY obsoleted See RFC 8482"],
            ),
            (
                ask("WWW.Example.org.", RecordType::ANY).tcp(),
                ResponseCode::NoError,
                vec!["WWW.Example.org. 8482 IN HINFO ANY obsoleted See RFC 8482"],
            ),
            (
                ask("version.bind.", RecordType::ANY).class(DNSClass::CH),
                ResponseCode::NoError,
                vec!["version.bind. 8482 IN HINFO ANY obsoleted See RFC 8482"],
            ),
            (
                ask("example.org.", RecordType::A),
                ResponseCode::NXDomain,
                vec![],
            ),
            (
                ask("example.org.", RecordType::HINFO),
                ResponseCode::NXDomain,
                vec![],
            ),
        ] {
            let req = q.request();
            let m = message(run(&Any, &req, &rest));
            assert_eq!(m.metadata.response_code, rcode, "{}", req.name());
            assert_eq!(show(&m.answers), answer, "{}", req.name());
            assert!(m.authorities.is_empty() && m.additionals.is_empty());
            assert!(!m.metadata.authoritative);
            if let Some(RData::HINFO(h)) = m.answers.first().map(|r| &r.data) {
                assert_eq!(
                    (&*h.cpu, &*h.os),
                    (&b"ANY obsoleted"[..], &b"See RFC 8482"[..])
                );
            }
        }
    }

    #[test]
    fn setup_syntax() {
        for (corefile, want) in [
            (". {\n any\n}\n", Ok(())),
            (". {\n any\n any\n}\n", Ok(())),
            (
                ". {\n any x\n}\n",
                Err(
                    "plugin/any: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
                ),
            ),
            (
                ". {\n any {\n  foo\n }\n}\n",
                Err(
                    "plugin/any: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '{'",
                ),
            ),
        ] {
            let got = testkit::setup(setup, "any", corefile).map(|_| ());
            assert_eq!(got, want.map_err(String::from), "{corefile}");
        }
    }
}
