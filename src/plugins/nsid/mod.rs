//! `nsid`: adds the server's identifier (RFC 5001 NSID) to answers for clients that ask for it.
//! See README.md.

use std::sync::Arc;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};

use crate::corefile::Directive;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Served};

pub struct Nsid {
    /// The option as it goes on the wire: the identifier's bytes (CoreDNS shows them in hex,
    /// as `dig +nsid` does, but sends the bytes themselves).
    option: EdnsOption,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    if let Some(line) = d.block.first() {
        return Err(Directive::unknown_property(line));
    }
    let data = if d.args.is_empty() {
        crate::plugins::chaos::hostname()
    } else {
        d.arg_strs().join(" ")
    };
    let payload = NSIDPayload::new(data.into_bytes())
        .map_err(|_| d.err("NSID data is longer than an EDNS option can carry"))?;
    Ok(Some(Arc::new(Nsid {
        option: EdnsOption::NSID(payload),
    })))
}

impl Plugin for Nsid {
    fn name(&self) -> &'static str {
        "nsid"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let asked = req
            .edns()
            .is_some_and(|e| e.option(EdnsCode::NSID).is_some());
        if !asked {
            return next.serve(req);
        }
        // Only answers written by a plugin carry the NSID; a failure the server answers itself
        // (SERVFAIL, REFUSED) does not, as in CoreDNS.
        next.serve(req).map(move |outcome| {
            outcome.map(|mut resp| {
                let edns = resp.message_mut().edns.get_or_insert_with(|| {
                    // The server sets size and DO for the client when it writes the answer.
                    Edns::new()
                });
                let options = &mut edns.options_mut().options;
                let mut replaced = false;
                for (code, option) in options.iter_mut() {
                    if *code == EdnsCode::NSID {
                        *option = self.option.clone();
                        replaced = true;
                    }
                }
                if !replaced {
                    options.push((EdnsCode::NSID, self.option.clone()));
                }
                resp
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, ask, message, run};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;

    fn nsid_of(m: &hickory_proto::op::Message) -> Vec<Vec<u8>> {
        m.edns
            .iter()
            .flat_map(|e| e.options().options.iter())
            .filter_map(|(_, o)| match o {
                EdnsOption::NSID(p) => Some(p.as_ref().to_vec()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn adds_nsid_only_when_asked() {
        let host = crate::plugins::chaos::hostname().into_bytes();
        let mut upstream_edns = Edns::new();
        upstream_edns.options_mut().insert(EdnsOption::NSID(
            NSIDPayload::new(b"upstream".to_vec()).unwrap(),
        ));
        let with_nsid = {
            let mut a = Answer::new(ResponseCode::NoError);
            a.edns = Some(upstream_edns);
            a
        };
        for (line, q, stub, want) in [
            (
                "nsid",
                ask("example.org.", RecordType::A).nsid(),
                Answer::new(ResponseCode::NoError),
                vec![host.clone()],
            ),
            (
                "nsid ferro dns 1",
                ask("example.org.", RecordType::A).edns(1232).nsid(),
                Answer::new(ResponseCode::NXDomain),
                vec![b"ferro dns 1".to_vec()],
            ),
            // An NSID already in the answer (from an upstream) is replaced, not duplicated.
            (
                "nsid me",
                ask("example.org.", RecordType::A).nsid().tcp(),
                with_nsid,
                vec![b"me".to_vec()],
            ),
            // Not asked: nothing added, not even an OPT record.
            (
                "nsid me",
                ask("example.org.", RecordType::A),
                Answer::new(ResponseCode::NoError),
                vec![],
            ),
            (
                "nsid me",
                ask("example.org.", RecordType::A).edns(4096),
                Answer::new(ResponseCode::NoError),
                vec![],
            ),
        ] {
            let built = testkit::setup(setup, "nsid", &format!(". {{\n {line}\n}}\n")).unwrap();
            let plugin = built.handler.unwrap();
            let req = q.request();
            let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(stub)];
            let m = message(run(plugin.as_ref(), &req, &rest));
            assert_eq!(nsid_of(&m), want, "{line}");
            if want.is_empty() && req.edns().is_none() {
                assert!(m.edns.is_none());
            }
        }
    }

    #[test]
    fn failures_pass_through() {
        let built = testkit::setup(setup, "nsid", ". {\n nsid x\n}\n").unwrap();
        let plugin = built.handler.unwrap();
        let req = ask("example.org.", RecordType::A).nsid().request();
        assert!(run(plugin.as_ref(), &req, &[]).is_err());
    }

    #[test]
    fn only_once_per_block() {
        let got = testkit::setup(setup, "nsid", ". {\n nsid a\n nsid b\n}\n").map(|_| ());
        let err = got.expect_err("second nsid");
        assert!(
            err.starts_with("plugin/nsid: ")
                && err.ends_with("this plugin can only be used once per Server Block"),
            "{err}"
        );
    }
}
