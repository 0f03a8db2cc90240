//! `bufsize`: caps the EDNS0 UDP payload size a client advertises, so that neither the answers
//! to it nor the queries made on its behalf (`forward`) risk IP fragmentation. See README.md.

use std::sync::Arc;

use hickory_proto::op::{Edns, Message};

use crate::corefile::Error;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Proto, Request, Served};
use crate::server::dispatch::encode;

/// DNS Flag Day 2020's recommendation, CoreDNS's default.
const DEFAULT_SIZE: u16 = 1232;

pub struct Bufsize {
    size: u16,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    // CoreDNS uses the first `bufsize` line of a block and ignores any later one.
    let Some(&d) = c.directives.first() else {
        return c.once().map(|_| None);
    };
    // CoreDNS wraps this error in `plugin/bufsize: ` twice; the server adds the outer one.
    let arg_err = || Error {
        loc: None,
        msg: format!("plugin/bufsize: {}", d.arg_err()),
    };
    if !d.block.is_empty() {
        return Err(arg_err());
    }
    let size = match d.arg_strs().as_slice() {
        [] => DEFAULT_SIZE,
        // RFC 6891 §6.2.5: below 512 is treated as 512; 4096 is the usual upper bound.
        [n] => match n.parse::<u16>() {
            Ok(n) if (512..=4096).contains(&n) => n,
            _ => return Err(arg_err()),
        },
        _ => return Err(arg_err()),
    };
    Ok(Some(Arc::new(Bufsize { size })))
}

impl Plugin for Bufsize {
    fn name(&self) -> &'static str {
        "bufsize"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        // Only a larger advertised size is lowered; queries without EDNS0 stay as they are.
        let Some(edns) = req.edns().filter(|e| e.max_payload() > self.size) else {
            return next.serve(req);
        };
        let mut msg = req.msg.clone();
        let mut clamped_edns = edns.clone();
        clamped_edns.set_max_payload(self.size);
        msg.edns = Some(clamped_edns);
        let Some(clamped) = req.with_message(msg) else {
            return next.serve(req);
        };
        let limit = usize::from(self.size);
        let udp = req.proto == Proto::Udp;
        let do_bit = req.do_bit();
        // The server fits the answer to the size the client itself advertised; CoreDNS fits it
        // to the lowered size (its writer reads the request bufsize changed). So the answer is
        // cut to the lowered size here, the same way the server would cut it.
        Served::Pending(next.serve_owned(clamped)).map(move |outcome| {
            outcome.map(|mut resp| {
                if udp {
                    fit(resp.message_mut(), limit, do_bit);
                }
                resp
            })
        })
    }
}

/// Make `m` fit in `limit` octets the way the server does: additional records go first, then
/// answer and authority records from the end, with TC set once the answer lost records.
fn fit(m: &mut Message, limit: usize, do_bit: bool) {
    // The OPT record the server will add counts too; adding it now changes no size.
    m.edns.get_or_insert_with(|| {
        let mut e = Edns::new();
        e.set_dnssec_ok(do_bit);
        e
    });
    if encode(m).len() <= limit {
        return;
    }
    while m.additionals.pop().is_some() {
        if encode(m).len() <= limit {
            return;
        }
    }
    m.metadata.truncation = true;
    while m.authorities.pop().is_some() || m.answers.pop().is_some() {
        if encode(m).len() <= limit {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, Recorder, ask, message, record, run};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{RData, RecordType};
    use std::sync::Mutex;

    fn plugin(line: &str) -> Arc<dyn Plugin> {
        testkit::setup(setup, "bufsize", &format!(". {{\n {line}\n}}\n"))
            .expect("setup")
            .handler
            .expect("handler")
    }

    #[test]
    fn lowers_only_larger_sizes() {
        for (line, client, seen) in [
            ("bufsize", Some(4096), Some(1232)),
            ("bufsize", Some(1232), Some(1232)),
            ("bufsize", Some(1400), Some(1232)),
            ("bufsize", Some(512), Some(512)),
            ("bufsize 1500", Some(1232), Some(1232)),
            ("bufsize 512", Some(4096), Some(512)),
            ("bufsize 4096", Some(65000), Some(4096)),
            ("bufsize", None, None),
        ] {
            let recorder = Arc::new(Recorder {
                seen: Mutex::new(Vec::new()),
                answer: Answer::new(ResponseCode::NoError),
            });
            let rest: Vec<Arc<dyn Plugin>> = vec![recorder.clone()];
            let mut q = ask("example.org.", RecordType::A);
            if let Some(size) = client {
                q = q.edns(size).dnssec_ok();
            }
            let req = q.request();
            message(run(plugin(line).as_ref(), &req, &rest));
            let asked = recorder.seen.lock().unwrap().pop().expect("passed on");
            assert_eq!(
                asked.edns.as_ref().map(|e| e.max_payload()),
                seen,
                "{line} {client:?}"
            );
            // Nothing else about the query changes.
            assert_eq!(asked.queries, req.msg.queries);
            assert_eq!(asked.metadata.id, req.id());
            assert_eq!(
                asked.edns.as_ref().map(|e| e.flags().dnssec_ok),
                client.map(|_| true)
            );
        }
    }

    #[test]
    fn answer_is_cut_to_the_lowered_size_over_udp() {
        let txt = |i: usize| {
            record(
                "example.org.",
                60,
                RData::TXT(TXT::new(vec![format!("{i:03}{}", "x".repeat(97))])),
            )
        };
        let mut big = Answer::new(ResponseCode::NoError);
        big.answers = (0..10).map(txt).collect();
        big.additionals = (10..12).map(txt).collect();
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(big)];
        let p = plugin("bufsize 512");

        let req = ask("example.org.", RecordType::TXT).edns(4096).request();
        let m = message(run(p.as_ref(), &req, &rest));
        assert!(m.metadata.truncation);
        assert!(m.additionals.is_empty());
        assert!(!m.answers.is_empty() && m.answers.len() < 10);
        assert!(encode(&m).len() <= 512);

        // TCP has no such limit.
        let req = ask("example.org.", RecordType::TXT)
            .edns(4096)
            .tcp()
            .request();
        let m = message(run(p.as_ref(), &req, &rest));
        assert!(!m.metadata.truncation);
        assert_eq!((m.answers.len(), m.additionals.len()), (10, 2));
    }

    #[test]
    fn setup_syntax() {
        let err = |line: u8, after: &str| {
            Err(format!(
                "plugin/bufsize: plugin/bufsize: Corefile:{line} - Error during parsing: Wrong argument count or unexpected line ending after '{after}'"
            ))
        };
        for (corefile, want) in [
            (". {\n bufsize\n}\n", Ok(())),
            (". {\n bufsize 1220\n}\n", Ok(())),
            (". {\n bufsize 512\n bufsize 9999\n}\n", Ok(())),
            (". {\n bufsize 5000\n}\n", err(2, "5000")),
            (". {\n bufsize 511\n}\n", err(2, "511")),
            (". {\n bufsize abc123\n}\n", err(2, "abc123")),
            (". {\n bufsize 512 512\n}\n", err(2, "512")),
        ] {
            let got = testkit::setup(setup, "bufsize", corefile).map(|_| ());
            assert_eq!(got, want, "{corefile}");
        }
    }
}
