//! Unit-test stand-in for the rest of the chain, shared by `dns64` and `dualstack`: scripted
//! answers per (name, type), a record of every question it was asked, and an optional wait so
//! both the ready and the waiting paths of a handler are exercised.

use std::collections::HashMap;
use std::sync::Mutex;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::plugin::{Failure, Next, Outcome, Plugin, Request, Response, Served};

/// What the fake answers for one (name, type).
#[derive(Clone)]
pub enum Script {
    /// An answer with this rcode and these answer and authority records.
    Answer {
        rcode: ResponseCode,
        answer: Vec<Record>,
        authority: Vec<Record>,
    },
    /// A plugin failure (an upstream timeout, say), answered by the server with this rcode.
    Fail(ResponseCode),
}

pub fn answer(records: &[&str]) -> Script {
    Script::Answer {
        rcode: ResponseCode::NoError,
        answer: records.iter().map(|r| rr(r)).collect(),
        authority: Vec::new(),
    }
}

pub fn negative(rcode: ResponseCode, authority: &[&str]) -> Script {
    Script::Answer {
        rcode,
        answer: Vec::new(),
        authority: authority.iter().map(|r| rr(r)).collect(),
    }
}

pub fn with_authority(script: Script, authority: &[&str]) -> Script {
    match script {
        Script::Answer { rcode, answer, .. } => Script::Answer {
            rcode,
            answer,
            authority: authority.iter().map(|r| rr(r)).collect(),
        },
        fail => fail,
    }
}

/// The fake: names it has no script for are NXDOMAIN.
#[derive(Default)]
pub struct Fake {
    scripts: HashMap<(String, RecordType), Script>,
    /// Every question asked: (name, type).
    pub asked: Mutex<Vec<(String, RecordType)>>,
    /// Answer through a boxed future instead of at once.
    pub wait: bool,
}

impl Fake {
    pub fn new(entries: &[(&str, RecordType, Script)]) -> Self {
        Fake {
            scripts: entries
                .iter()
                .map(|(n, t, s)| ((n.to_string(), *t), s.clone()))
                .collect(),
            asked: Mutex::new(Vec::new()),
            wait: false,
        }
    }

    pub fn waiting(mut self) -> Self {
        self.wait = true;
        self
    }

    pub fn asked(&self) -> Vec<(String, RecordType)> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn outcome(&self, req: &Request) -> Outcome {
        let key = (req.name().to_string(), req.qtype());
        match self.scripts.get(&key) {
            Some(Script::Fail(rcode)) => Err(Failure::new(*rcode)),
            Some(Script::Answer {
                rcode,
                answer,
                authority,
            }) => {
                let mut m = req.reply();
                m.metadata.response_code = *rcode;
                m.metadata.recursion_available = true;
                m.answers = answer.clone();
                m.authorities = authority.clone();
                Ok(Response::new(m, "fake"))
            }
            None => {
                let mut m = req.reply();
                m.metadata.response_code = ResponseCode::NXDomain;
                Ok(Response::new(m, "fake"))
            }
        }
    }
}

impl Plugin for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((req.name().to_string(), req.qtype()));
        let outcome = self.outcome(req);
        if self.wait {
            Served::pending(async move {
                tokio::task::yield_now().await;
                outcome
            })
        } else {
            Served::Ready(outcome)
        }
    }
}

/// A record from `NAME TTL TYPE RDATA` (A, AAAA, CNAME, PTR, SOA).
pub fn rr(text: &str) -> Record {
    let w: Vec<&str> = text.split_whitespace().collect();
    let name = Name::from_ascii(w[0]).expect("owner");
    let ttl: u32 = w[1].parse().expect("ttl");
    let rdata = match w[2] {
        "A" => RData::A(A(w[3].parse().expect("v4"))),
        "AAAA" => RData::AAAA(AAAA(w[3].parse().expect("v6"))),
        "CNAME" => RData::CNAME(CNAME(Name::from_ascii(w[3]).expect("target"))),
        "PTR" => RData::PTR(PTR(Name::from_ascii(w[3]).expect("target"))),
        "SOA" => RData::SOA(SOA::new(
            Name::from_ascii(w[3]).expect("mname"),
            Name::from_ascii(w[4]).expect("rname"),
            w[5].parse().expect("serial"),
            w[6].parse().expect("refresh"),
            w[7].parse().expect("retry"),
            w[8].parse().expect("expire"),
            w[9].parse().expect("minimum"),
        )),
        other => panic!("fake: no record type {other}"),
    };
    Record::from_rdata(name, ttl, rdata)
}
