//! `loadbalance`: reorders the records of an answer on its way back to the client. See
//! README.md.

mod order;
// Public (hidden) so the fuzz targets in `fuzz/` can feed the weight-file parser.
#[doc(hidden)]
pub mod weighted;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

use crate::corefile::Error;
use crate::plugin::parse::{go_duration, go_duration_string};
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Outcome, Plugin, Request, Served};

use order::Cidr;
use weighted::{LoadError, WeightFile};

/// How the addresses of an answer are ordered.
enum Policy {
    RoundRobin,
    Weighted(Arc<WeightFile>),
}

pub struct LoadBalance {
    policy: Policy,
    /// `prefer` networks, applied after the policy.
    prefer: Vec<Cidr>,
}

/// The policy as read from the Corefile, before the weight file is loaded.
enum Parsed {
    RoundRobin,
    Weighted { file: String, reload: Duration },
}

fn parse(c: &Setup<'_>) -> Result<(Parsed, Vec<Cidr>), Error> {
    let mut policy = Parsed::RoundRobin;
    let mut prefer = Vec::new();
    // Several `loadbalance` lines in one block: CoreDNS reads them all, the last policy wins.
    for d in &c.directives {
        let args = d.arg_strs();
        let weighted = match args.as_slice() {
            [] | ["round_robin"] => false,
            ["round_robin", ..] => return Err(d.err("unknown property for round_robin")),
            ["weighted"] => return Err(d.err("missing weight file argument")),
            ["weighted", _] => true,
            ["weighted", ..] => return Err(d.err("unexpected argument(s)")),
            // CoreDNS returns this one without a file and line.
            [other, ..] => {
                return Err(Error {
                    loc: None,
                    msg: format!("unknown policy: {other}"),
                });
            }
        };
        let mut reload = Duration::from_secs(30);
        for line in &d.block {
            let values = line.arg_strs();
            match line.name.as_str() {
                "reload" if weighted => {
                    reload = match values.as_slice() {
                        [] => return Err(line.err("reload duration value is missing")),
                        [v] => go_duration(v)
                            .map_err(|_| line.err(format!("invalid reload duration '{v}'")))?,
                        _ => return Err(line.err("unexpected argument")),
                    };
                }
                "prefer" => {
                    for v in values {
                        let net = Cidr::parse(v)
                            .map_err(|e| line.err(format!("invalid CIDR \"{v}\": {e}")))?;
                        prefer.push(net);
                    }
                }
                other => return Err(line.err(format!("unknown property '{other}'"))),
            }
        }
        policy = if weighted {
            Parsed::Weighted {
                file: args[1].to_string(),
                reload,
            }
        } else {
            Parsed::RoundRobin
        };
    }
    Ok((policy, prefer))
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let (parsed, prefer) = parse(c)?;
    let policy = match parsed {
        Parsed::RoundRobin => Policy::RoundRobin,
        Parsed::Weighted { file, reload } => {
            let file = Arc::new(WeightFile::new(c.path(&file), reload));
            // CoreDNS loads the file at start-up: a missing file is only a warning when a later
            // reload may find it; anything else stops the server.
            match file.load() {
                Ok(_) => {}
                Err(LoadError::Open) if !reload.is_zero() => crate::warning!(
                    "plugin/loadbalance: Failed to open weight file:{}. Will try again in {}",
                    LoadError::Open,
                    go_duration_string(reload)
                ),
                Err(e) => {
                    return Err(Error {
                        loc: None,
                        msg: e.to_string(),
                    });
                }
            }
            file.spawn_reload();
            Policy::Weighted(file)
        }
    };
    Ok(Some(Arc::new(LoadBalance { policy, prefer })))
}

impl LoadBalance {
    /// Reorder a successful answer in place (CoreDNS's response writer wrapper).
    fn reorder(&self, qtype: RecordType, m: &mut Message) {
        if m.metadata.response_code != ResponseCode::NoError {
            return;
        }
        // A zone transfer is a sequence, SOA first and last: never touch it.
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            return;
        }
        match &self.policy {
            Policy::RoundRobin => {
                order::round_robin(&mut m.answers);
                order::round_robin(&mut m.authorities);
                order::round_robin(&mut m.additionals);
            }
            Policy::Weighted(file) => {
                // Only address and service lookups are weighted; the addresses of an SRV
                // answer's targets are in the additional section.
                if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::SRV) {
                    let weights = file.weights();
                    order::weighted(&mut m.answers, &weights);
                    order::weighted(&mut m.additionals, &weights);
                }
            }
        }
        if !self.prefer.is_empty() {
            order::prefer(&mut m.answers, &self.prefer);
            order::prefer(&mut m.additionals, &self.prefer);
        }
    }
}

impl LoadBalance {
    /// `round_robin` without `prefer` on a wire-form answer: true when the answer is done
    /// (shuffled, or nothing to do), false when it must go through [`LoadBalance::reorder`].
    fn wire_round_robin(&self, qtype: RecordType, resp: &mut crate::plugin::Response) -> bool {
        if !matches!(self.policy, Policy::RoundRobin) || !self.prefer.is_empty() {
            return false;
        }
        let Some(bytes) = resp.wire() else {
            return false;
        };
        // The rcode as `Response::rcode` reads a wire-form answer (no OPT record in it).
        let noerror = bytes.get(3).is_some_and(|b| b & 0x0f == 0);
        if !noerror
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
            || wire::nothing_to_shuffle(bytes)
        {
            return true;
        }
        resp.wire_mut().is_some_and(wire::round_robin)
    }
}

impl Plugin for LoadBalance {
    fn name(&self) -> &'static str {
        "loadbalance"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        next.serve(req).map(move |mut outcome| {
            self.back(req, &mut outcome);
            outcome
        })
    }

    fn passes_through(&self) -> bool {
        true
    }

    fn back(&self, req: &Request, outcome: &mut Outcome) {
        let qtype = req.qtype();
        if let Ok(resp) = outcome {
            // A cache hit is shuffled as bytes when it can be; anything else is parsed.
            if self.wire_round_robin(qtype, resp) {
                return;
            }
            self.reorder(qtype, resp.message_mut());
        }
    }
}

#[cfg(test)]
mod tests;
