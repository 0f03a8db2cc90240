//! `minimal`: drops the AUTHORITY and ADDITIONAL sections from positive answers. See README.md.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};

use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Served};

pub struct Minimal;

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    c.no_arguments()?;
    Ok(Some(Arc::new(Minimal)))
}

impl Plugin for Minimal {
    fn name(&self) -> &'static str {
        "minimal"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        // A zone transfer is a stream of messages that each must stay whole.
        if matches!(req.qtype(), RecordType::AXFR | RecordType::IXFR) {
            return next.serve(req);
        }
        next.serve(req).map(|outcome| {
            outcome.map(|mut resp| {
                if is_plain_success(resp.message()) {
                    let m = resp.message_mut();
                    m.authorities.clear();
                    // The OPT record is not in `additionals` (hickory keeps it in `edns`), so
                    // its options (NSID, EDE, cookies) stay, as CoreDNS keeps them.
                    m.additionals.clear();
                }
                resp
            })
        })
    }
}

/// Whether CoreDNS's `response.Typify` calls this answer `NoError`: a positive answer that is
/// neither a referral, a negative answer, an error, a transfer, nor signed with an RRSIG that is
/// out of its validity period (checked only when the answer carries the DO bit).
fn is_plain_success(m: &Message) -> bool {
    if matches!(m.metadata.op_code, OpCode::Update | OpCode::Notify) {
        return false;
    }
    if m.queries
        .first()
        .is_some_and(|q| matches!(q.query_type, RecordType::AXFR | RecordType::IXFR))
    {
        return false;
    }
    if m.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok) && has_expired_signature(m) {
        return false;
    }
    let rcode = m.metadata.response_code;
    if rcode != ResponseCode::NoError {
        return false;
    }
    if !m.answers.is_empty() {
        return true;
    }
    // No answer: an SOA in the authority section makes it NODATA, NS records a referral.
    !m.authorities
        .iter()
        .any(|r| matches!(r.record_type(), RecordType::SOA | RecordType::NS))
}

fn has_expired_signature(m: &Message) -> bool {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    [&m.answers, &m.authorities, &m.additionals]
        .into_iter()
        .flatten()
        .any(|r| rrsig_outside_validity(r, now))
}

/// RFC 4034 §3.1.5: inception and expiration are 32-bit serial numbers (RFC 1982) compared with
/// the current time; miekg/dns's `ValidityPeriod`, which CoreDNS uses, does the same.
fn rrsig_outside_validity(r: &Record, now: u64) -> bool {
    if r.record_type() != RecordType::RRSIG {
        return false;
    }
    // Without hickory's DNSSEC feature an RRSIG arrives as raw RDATA: type covered (2),
    // algorithm (1), labels (1), original TTL (4), expiration (4), inception (4), ...
    let RData::Unknown { rdata, .. } = &r.data else {
        return false;
    };
    let raw = &rdata.anything;
    if raw.len() < 16 {
        return false;
    }
    let expiration = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
    let inception = u32::from_be_bytes([raw[12], raw[13], raw[14], raw[15]]);
    // miekg: modi = (int64(inception) - utc) / year68, mode likewise; ti/te add modi/mode
    // multiples of 2^32 so the comparison works across the 32-bit wrap.
    const YEAR68: i64 = 1 << 31;
    let utc = now as i64;
    let modi = (inception as i64 - utc) / YEAR68;
    let mode = (expiration as i64 - utc) / YEAR68;
    let ti = inception as i64 + modi * YEAR68;
    let te = expiration as i64 + mode * YEAR68;
    !(ti <= utc && utc <= te)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{Answer, ask, message, record, run, show};
    use hickory_proto::op::Edns;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::opt::{EdnsOption, NSIDPayload};
    use hickory_proto::rr::rdata::{A, NS, NULL, SOA};

    fn a(name: &str, ip: [u8; 4]) -> Record {
        record(name, 300, RData::A(A(std::net::Ipv4Addr::from(ip))))
    }
    fn ns(name: &str, target: &str) -> Record {
        record(name, 300, RData::NS(NS(Name::from_ascii(target).unwrap())))
    }
    fn soa(name: &str) -> Record {
        let n = Name::from_ascii("ns.example.com.").unwrap();
        record(name, 300, RData::SOA(SOA::new(n.clone(), n, 1, 2, 3, 4, 5)))
    }
    fn rrsig(name: &str, inception: u32, expiration: u32) -> Record {
        let mut raw = vec![0, 1, 8, 2, 0, 0, 1, 44];
        raw.extend_from_slice(&expiration.to_be_bytes());
        raw.extend_from_slice(&inception.to_be_bytes());
        raw.extend_from_slice(&[0, 1, 0]);
        record(
            name,
            300,
            RData::Unknown {
                code: RecordType::RRSIG,
                rdata: NULL::with(raw),
            },
        )
    }

    #[test]
    fn strips_only_plain_positive_answers() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let answer = vec![a("example.com.", [192, 0, 2, 1])];
        let nss = vec![
            ns("example.com.", "ns1.example.com."),
            ns("example.com.", "ns2.example.com."),
        ];
        let glue = vec![
            a("ns1.example.com.", [192, 0, 2, 53]),
            a("ns2.example.com.", [192, 0, 2, 54]),
        ];
        struct Case {
            what: &'static str,
            rcode: ResponseCode,
            answer: Vec<Record>,
            authority: Vec<Record>,
            additional: Vec<Record>,
            do_bit: bool,
            stripped: bool,
        }
        let case = |what, rcode, answer: &[Record], authority: &[Record], stripped| Case {
            what,
            rcode,
            answer: answer.to_vec(),
            authority: authority.to_vec(),
            additional: glue.clone(),
            do_bit: false,
            stripped,
        };
        let mut cases = vec![
            case("answer", ResponseCode::NoError, &answer, &nss, true),
            case(
                "answer, no authority",
                ResponseCode::NoError,
                &answer,
                &[],
                true,
            ),
            case("referral", ResponseCode::NoError, &[], &nss, false),
            case(
                "nodata",
                ResponseCode::NoError,
                &[],
                &[soa("example.com.")],
                false,
            ),
            case(
                "nxdomain",
                ResponseCode::NXDomain,
                &[],
                &[soa("example.com.")],
                false,
            ),
            case(
                "refused with records",
                ResponseCode::Refused,
                &answer,
                &nss,
                false,
            ),
            case("servfail", ResponseCode::ServFail, &[], &[], false),
            // NOERROR with nothing at all in answer or authority is still "NoError".
            case("empty noerror", ResponseCode::NoError, &[], &[], true),
        ];
        let signed = |inception: u32, expiration: u32| {
            let mut answer = answer.clone();
            answer.push(rrsig("example.com.", inception, expiration));
            answer
        };
        cases.push(Case {
            do_bit: true,
            ..case(
                "signed, valid",
                ResponseCode::NoError,
                &signed(now - 3600, now + 3600),
                &nss,
                true,
            )
        });
        cases.push(Case {
            do_bit: true,
            ..case(
                "signed, expired, DO",
                ResponseCode::NoError,
                &signed(now - 7200, now - 3600),
                &nss,
                false,
            )
        });
        cases.push(case(
            "signed, expired, no DO",
            ResponseCode::NoError,
            &signed(now - 7200, now - 3600),
            &nss,
            true,
        ));

        for c in cases {
            let mut stub = Answer::new(c.rcode);
            stub.answers = c.answer.clone();
            stub.authorities = c.authority.clone();
            stub.additionals = c.additional.clone();
            if c.do_bit {
                let mut e = Edns::new();
                e.set_dnssec_ok(true);
                stub.edns = Some(e);
            }
            let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(stub)];
            let m = message(run(
                &Minimal,
                &ask("example.com.", RecordType::A).request(),
                &rest,
            ));
            assert_eq!(m.metadata.response_code, c.rcode, "{}", c.what);
            assert_eq!(show(&m.answers), show(&c.answer), "{}", c.what);
            let (authority, additional) = if c.stripped {
                (vec![], vec![])
            } else {
                (c.authority.clone(), c.additional.clone())
            };
            assert_eq!(show(&m.authorities), show(&authority), "{}", c.what);
            assert_eq!(show(&m.additionals), show(&additional), "{}", c.what);
        }
    }

    #[test]
    fn keeps_edns_options_and_failures() {
        let mut stub = Answer::new(ResponseCode::NoError);
        stub.answers = vec![a("example.com.", [192, 0, 2, 1])];
        stub.additionals = vec![a("ns.example.com.", [192, 0, 2, 2])];
        let mut e = Edns::new();
        e.options_mut().insert(EdnsOption::NSID(
            NSIDPayload::new(b"c0ffee".to_vec()).unwrap(),
        ));
        stub.edns = Some(e);
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(stub)];
        let req = ask("example.com.", RecordType::A).edns(1232).request();
        let m = message(run(&Minimal, &req, &rest));
        assert!(m.additionals.is_empty());
        let opt = m.edns.expect("OPT kept");
        assert!(
            opt.option(hickory_proto::rr::rdata::opt::EdnsCode::NSID)
                .is_some()
        );

        // A failure the server will answer passes through untouched.
        let rest: Vec<Arc<dyn Plugin>> = vec![];
        let out = run(&Minimal, &req, &rest);
        assert!(matches!(out, Err(f) if f.rcode == ResponseCode::ServFail));
    }

    #[test]
    fn transfers_are_not_touched() {
        let mut stub = Answer::new(ResponseCode::NoError);
        stub.answers = vec![soa("example.com.")];
        stub.additionals = vec![a("ns.example.com.", [192, 0, 2, 2])];
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(stub)];
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            let m = message(run(
                &Minimal,
                &ask("example.com.", qtype).tcp().request(),
                &rest,
            ));
            assert_eq!(m.additionals.len(), 1, "{qtype}");
        }
    }

    #[test]
    fn setup_syntax() {
        use crate::plugins::whoami::testkit;
        assert!(testkit::setup(setup, "minimal", ". {\n minimal\n}\n").is_ok());
        assert_eq!(
            testkit::setup(setup, "minimal", ". {\n minimal yes\n}\n").map(|_| ()),
            Err("plugin/minimal: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'yes'".into())
        );
        assert_eq!(
            testkit::setup(setup, "minimal", ". {\n minimal {\n  x\n }\n}\n").map(|_| ()),
            Err("plugin/minimal: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '{'".into())
        );
        assert_eq!(
            testkit::setup(setup, "minimal", ". {\n minimal\n minimal\n}\n").map(|_| ()),
            Ok(())
        );
    }
}
