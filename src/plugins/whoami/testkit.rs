//! Unit-test support shared by the small plugins: run a plugin's setup on Corefile text, build
//! queries as a client would send them, and run a handler against a stub rest-of-chain.
//!
//! It lives beside `whoami` (the foundation plugin every build has) so that no shared file had to
//! change; it could move to `src/plugin/` unchanged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::corefile::{self, parse_key};
use crate::metrics::Metrics;
use crate::plugin::setup::{BlockConfig, Setup, SetupFn, Shared};
use crate::plugin::{Failure, Next, Outcome, Plugin, Proto, Request, Response, Served};

/// What a setup produced: the handler (if any), the block settings, and the shared state (for
/// metrics).
pub struct Built {
    pub handler: Option<Arc<dyn Plugin>>,
    pub block: BlockConfig,
    pub shared: Arc<Shared>,
}

/// Run `setup` on the directives named `name` in `corefile` (one server block).
pub fn setup(setup: SetupFn, name: &str, corefile: &str) -> Result<Built, String> {
    let shared = Shared::new(Arc::new(Metrics::new()));
    setup_shared(setup, name, corefile, &shared)
}

/// Like [`setup`], with given shared state (several blocks, or a reload, in one process).
pub fn setup_shared(
    setup: SetupFn,
    name: &str,
    corefile: &str,
    shared: &Arc<Shared>,
) -> Result<Built, String> {
    let parsed =
        corefile::parse_str("Corefile", corefile, Path::new(".")).map_err(|e| e.to_string())?;
    let block = parsed.blocks.first().ok_or("no server block")?;
    let mut keys = Vec::new();
    for k in &block.keys {
        keys.extend(parse_key(&k.text)?);
    }
    let mut zones: Vec<String> = Vec::new();
    for k in &keys {
        if !zones.contains(&k.zone) {
            zones.push(k.zone.clone());
        }
    }
    let mut cfg = BlockConfig::default();
    let mut ctx = Setup {
        directives: block.directives.iter().filter(|d| d.name == name).collect(),
        keys: &keys,
        zones,
        block: &mut cfg,
        shared,
    };
    let handler = setup(&mut ctx).map_err(|e| format!("plugin/{name}: {e}"))?;
    Ok(Built {
        handler,
        block: cfg,
        shared: shared.clone(),
    })
}

/// A query as a client sends it; adjust with the builder methods.
pub struct Ask {
    msg: Message,
    src: SocketAddr,
    proto: Proto,
}

pub fn ask(name: &str, qtype: RecordType) -> Ask {
    let mut msg = Message::query();
    msg.metadata.id = 4242;
    msg.metadata.recursion_desired = true;
    msg.queries.push(Query::query(
        Name::from_ascii(name).expect("test name"),
        qtype,
    ));
    Ask {
        msg,
        src: "127.0.0.1:53000".parse().expect("addr"),
        proto: Proto::Udp,
    }
}

impl Ask {
    pub fn class(mut self, class: DNSClass) -> Self {
        self.msg.queries[0].query_class = class;
        self
    }

    /// Add an OPT record advertising `size`.
    pub fn edns(mut self, size: u16) -> Self {
        let mut e = Edns::new();
        e.set_max_payload(size);
        self.msg.edns = Some(e);
        self
    }

    pub fn dnssec_ok(mut self) -> Self {
        self.msg
            .edns
            .get_or_insert_with(Edns::new)
            .set_dnssec_ok(true);
        self
    }

    /// Ask for the server's NSID (RFC 5001: an empty NSID option).
    pub fn nsid(mut self) -> Self {
        let e = self.msg.edns.get_or_insert_with(Edns::new);
        e.options_mut().insert(EdnsOption::NSID(
            NSIDPayload::new(Vec::new()).expect("empty"),
        ));
        self
    }

    pub fn from(mut self, src: &str) -> Self {
        self.src = src.parse().expect("test client address");
        self
    }

    pub fn tcp(mut self) -> Self {
        self.proto = Proto::Tcp;
        self
    }

    pub fn request(self) -> Request {
        let local: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let len = self.msg.to_vec().map_or(0, |v| v.len());
        Request::new(self.msg, self.src, local, self.proto, len).expect("one question")
    }
}

/// A stand-in for the rest of the chain: answers every query with the given sections and rcode,
/// as a backend plugin would.
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    pub edns: Option<Edns>,
}

impl Answer {
    pub fn new(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            edns: None,
        }
    }
}

impl Plugin for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = req.reply();
        m.metadata.response_code = self.rcode;
        m.answers = self.answers.clone();
        m.authorities = self.authorities.clone();
        m.additionals = self.additionals.clone();
        m.edns = self.edns.clone();
        Served::Ready(Ok(Response::new(m, "answer")))
    }
}

/// Records what the rest of the chain was asked (for `bufsize`), then answers like [`Answer`].
pub struct Recorder {
    pub seen: std::sync::Mutex<Vec<Message>>,
    pub answer: Answer,
}

impl Plugin for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(req.msg().clone());
        self.answer.serve(req, next)
    }
}

/// Run `plugin` on `req` with `rest` as the rest of the chain.
pub fn run(plugin: &dyn Plugin, req: &Request, rest: &[Arc<dyn Plugin>]) -> Outcome {
    let served = plugin.serve(req, Next::new(rest));
    match served {
        Served::Ready(outcome) => outcome,
        pending => tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(pending),
    }
}

/// The answer message of an outcome that must be an answer.
pub fn message(outcome: Outcome) -> Message {
    match outcome {
        Ok(resp) => resp.into_message(),
        Err(Failure { rcode, reply, .. }) => {
            panic!("expected an answer, got {rcode} (reply {reply})")
        }
    }
}

/// A record from zone-file-like parts, for expectations.
pub fn record(name: &str, ttl: u32, rdata: RData) -> Record {
    Record::from_rdata(Name::from_ascii(name).expect("test name"), ttl, rdata)
}

/// `name ttl class type rdata` of every record, as `dig` prints them, to compare sections.
pub fn show(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.name,
                r.ttl,
                r.dns_class,
                r.record_type(),
                r.data
            )
        })
        .collect()
}
