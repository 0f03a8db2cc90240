//! `rewrite`: rewrite the query before the rest of the chain sees it, and the answer on its way
//! back. See README.md.
//!
//! The flow is CoreDNS's `Rewrite.ServeDNS`:
//! - rules run in Corefile order on the query; a matching `stop` rule ends the list, a matching
//!   `continue` rule goes on;
//! - a rewritten name that is not a domain name is SERVFAIL (`invalid name after rewrite`);
//! - when a `stop` rule matched, or any rule asked for a response rewrite, the answer goes back
//!   with the client's own question (name, type and class as asked) and the response rules
//!   applied in reverse order. The answer records themselves are never turned back into the
//!   asked type: `rewrite type AAAA A` answers an AAAA question with A records;
//! - otherwise (only `continue` rules matched, none with response rules) the answer carries the
//!   question as rewritten, exactly as CoreDNS sends it;
//! - `cname` rules run on the answer before the other response rules, and may look the new
//!   CNAME target up through the server ([`Upstream`], see `cname.rs`).

mod answer;
mod cname;
mod rules;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::Name;

use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::upstream::Upstream;
use crate::plugin::{Failure, Next, Outcome, Plugin, Request, Response, Served};

use answer::ResponseRule;
use rules::{Mode, Rule, Work};

pub struct Rewrite {
    rules: Vec<Rule>,
    /// For `cname` rules: the new target is looked up through the server itself.
    upstream: Upstream,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let mut rules = Vec::with_capacity(c.directives.len());
    for d in &c.directives {
        let mut args: Vec<String> = d.args.iter().map(|t| t.text.clone()).collect();
        if args.len() < 2 {
            // `rewrite [continue|stop] { ... }`: CoreDNS reads every word of the block as if
            // it followed on the directive's line, so a block holds one rule (typically a
            // `name` line and its `answer` line).
            for line in &d.block {
                if !line.block.is_empty() {
                    return Err(line.err(format!("Unexpected token '{{' after '{}'", line.name)));
                }
                args.push(line.name.clone());
                args.extend(line.args.iter().map(|t| t.text.clone()));
            }
        } else if !d.block.is_empty() {
            return Err(d.arg_err());
        }
        let rule = rules::parse(&args).map_err(|msg| d.err(msg))?;
        rules.push(rule);
    }
    Ok(Some(Arc::new(Rewrite {
        rules,
        upstream: Upstream::new(c.shared),
    })))
}

/// What the answer needs on its way back.
struct Reverter {
    /// The question as the client asked it.
    original: Query,
    rules: Vec<ResponseRule>,
}

impl Reverter {
    /// [`Reverter::finish`] after the `cname` rules, which may look names up.
    async fn finish_after_lookups(
        self,
        mut outcome: Outcome,
        rewritten: &Request,
        upstream: &Upstream,
    ) -> Outcome {
        if let Ok(resp) = &mut outcome {
            cname::apply(&self.rules, resp, rewritten, upstream).await;
        }
        self.finish(outcome, rewritten)
    }

    fn finish(self, outcome: Outcome, rewritten: &Request) -> Outcome {
        match outcome {
            Ok(mut resp) => {
                let msg = resp.message_mut();
                match msg.queries.first_mut() {
                    Some(q) => *q = self.original,
                    None => msg.queries.push(self.original),
                }
                answer::apply(&self.rules, msg);
                Ok(resp)
            }
            Err(failure) if failure.reply => {
                // CoreDNS writes the failure answer of the rest of the chain itself, through the
                // reverter: the client's question, and the response rules applied, so that
                // `rcode ... SERVFAIL NOERROR` works on a bare failure. The answer only differs
                // from the server's own failure answer (which also carries the client's
                // question) when an rcode rule fired; otherwise the failure, and its error for
                // `errors`, goes on as it is.
                if !answer::has_rcode_rule(&self.rules) {
                    return Err(failure);
                }
                let mut msg = rewritten.reply();
                msg.metadata.response_code = failure.rcode;
                msg.queries[0] = self.original;
                answer::apply(&self.rules, &mut msg);
                if msg.metadata.response_code == failure.rcode {
                    return Err(failure);
                }
                Ok(Response::new(msg, "rewrite"))
            }
            Err(failure) => Err(failure),
        }
    }
}

impl Plugin for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let mut work = Work::new(req);
        let mut responses: Vec<ResponseRule> = Vec::new();
        let mut matched = false;
        let mut stopped = false;
        for rule in &self.rules {
            let Some(mut asked) = rule.rewrite(&mut work) else {
                continue;
            };
            matched = true;
            if work.qname.is_some() {
                let written = work.written_name();
                if Name::from_ascii(written.as_ref()).is_err() {
                    return Served::Ready(Err(Failure::error(
                        ResponseCode::ServFail,
                        "rewrite",
                        format!("invalid name after rewrite: {written}"),
                    )));
                }
            }
            responses.append(&mut asked);
            if rule.mode == Mode::Stop {
                stopped = true;
                break;
            }
        }
        let changed = work.msg.is_some()
            || work.qname.is_some()
            || work.qtype != req.qtype()
            || work.qclass != req.qclass();
        if !matched && !changed {
            return next.serve(req);
        }
        let revert = stopped || !responses.is_empty();
        if !changed {
            // Only response rules (`ttl`, `rcode`): the query goes on as it is.
            let reverter = Reverter {
                original: req.query().clone(),
                rules: responses,
            };
            return match next.serve(req) {
                Served::Ready(outcome) if !cname::wants_lookup(&reverter.rules, &outcome) => {
                    Served::Ready(reverter.finish(outcome, req))
                }
                served => Served::pending(async move {
                    let outcome = served.await;
                    reverter
                        .finish_after_lookups(outcome, req, &self.upstream)
                        .await
                }),
            };
        }

        let mut msg = work.msg.take().unwrap_or_else(|| req.msg().clone());
        let name = match &work.qname {
            // Checked above.
            Some(n) => Name::from_ascii(n).unwrap_or_else(|_| req.qname().clone()),
            None => req.qname().clone(),
        };
        msg.queries[0] = Query::query(name, work.qtype);
        msg.queries[0].query_class = work.qclass;
        let Some(rewritten) = req.with_message(msg) else {
            return next.serve(req);
        };
        if !revert {
            // Nothing to undo: the answer goes back as the rest of the chain wrote it, with
            // the rewritten question (CoreDNS passes its own writer in this case).
            return Served::Pending(next.serve_owned(rewritten));
        }
        let reverter = Reverter {
            original: req.query().clone(),
            rules: responses,
        };
        // The same as `serve_owned` followed by `map`, in one allocation instead of two.
        Served::pending(async move {
            let outcome = next.serve(&rewritten).await;
            reverter
                .finish_after_lookups(outcome, &rewritten, &self.upstream)
                .await
        })
    }
}
