//! `bufsize`: caps the EDNS0 UDP payload size a client advertises, so that neither the answers
//! to it nor the queries made on its behalf (`forward`) risk IP fragmentation. See README.md.

use std::sync::Arc;

use crate::corefile::Error;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Served};

/// DNS Flag Day 2020's recommendation, CoreDNS's default.
const DEFAULT_SIZE: u16 = 1232;

pub struct Bufsize {
    size: u16,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    // CoreDNS uses the first `bufsize` line of a block and ignores any later one.
    let d = c.first()?;
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
        let mut msg = req.msg().clone();
        let mut clamped_edns = edns.clone();
        clamped_edns.set_max_payload(self.size);
        msg.edns = Some(clamped_edns);
        let Some(clamped) = req.with_message(msg) else {
            return next.serve(req);
        };
        // CoreDNS's writer fits the answer to the request as bufsize changed it; here the
        // server fits it to the client's own size unless the answer says otherwise.
        let size = self.size;
        Served::Pending(next.serve_owned(clamped)).map(move |outcome| {
            outcome.map(|mut resp| {
                resp.max_udp_size = Some(size);
                resp
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::whoami::testkit::{self, Answer, Recorder, ask, message, run};
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
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
            assert_eq!(asked.queries, req.msg().queries);
            assert_eq!(asked.metadata.id, req.id());
            assert_eq!(
                asked.edns.as_ref().map(|e| e.flags().dnssec_ok),
                client.map(|_| true)
            );
        }
    }

    #[test]
    fn answer_carries_the_lowered_size() {
        let rest: Vec<Arc<dyn Plugin>> = vec![Arc::new(Answer::new(ResponseCode::NoError))];
        let p = plugin("bufsize 512");
        for (q, cap) in [
            (ask("example.org.", RecordType::TXT).edns(4096), Some(512)),
            (
                ask("example.org.", RecordType::TXT).edns(4096).tcp(),
                Some(512),
            ),
            (ask("example.org.", RecordType::TXT).edns(500), None),
            (ask("example.org.", RecordType::TXT), None),
        ] {
            let req = q.request();
            match run(p.as_ref(), &req, &rest) {
                Ok(resp) => assert_eq!(resp.max_udp_size, cap, "{:?}", req.edns()),
                Err(f) => panic!("failed: {}", f.rcode),
            }
        }
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
