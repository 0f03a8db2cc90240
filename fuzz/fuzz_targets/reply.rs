//! Any bytes an upstream sends back must be refused or passed on, never crash the server: the
//! bytes are parsed as `forward` parses a reply, then go through `cache` (a miss that stores
//! them, a hit served from the stored wire copy with another spelling of the question) and
//! `dispatch::finish`. The raw bytes are also walked by the cache's wire layout directly.
#![no_main]

use std::sync::{Arc, OnceLock};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use libfuzzer_sys::fuzz_target;

use ferrodns::corefile::{Directive, parse_key, parse_str_without_files};
use ferrodns::metrics::Metrics;
use ferrodns::plugin::setup::{BlockConfig, Setup, Shared};
use ferrodns::plugin::{Next, Outcome, Plugin, Proto, Request, Response, Served};
use ferrodns::plugins::cache::wire;
use ferrodns::server::dispatch::finish;

/// The upstream: answers every question with the fuzzed reply, as `forward` would hand it on
/// (with the client's ID).
struct Upstream(Message);

impl Plugin for Upstream {
    fn name(&self) -> &'static str {
        "forward"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        let mut m = self.0.clone();
        m.metadata.id = req.id();
        // An upstream echoes the question as it was sent (the client's spelling); `forward`
        // accepts a reply whose question matches case-insensitively and passes it on as is.
        if let [q] = m.queries.as_mut_slice()
            && q.name == *req.qname()
        {
            q.name = req.qname().clone();
        }
        Served::Ready(Ok(Response::new(m, "forward")))
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    cache: Directive,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let cf = parse_str_without_files(
            "fuzz",
            ". {\n cache 30 {\n  serve_stale 1h\n  prefetch 1 1m 10%\n }\n}\n",
        )
        .expect("fixed Corefile");
        Fixture {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            shared: Shared::new(Arc::new(Metrics::new())),
            cache: cf.blocks[0].directives[0].clone(),
        }
    })
}

fn request(q: Query, flags: u8) -> Option<Request> {
    let mut m = Message::query();
    m.metadata.id = 0x4242;
    m.metadata.recursion_desired = flags & 1 != 0;
    m.metadata.checking_disabled = flags & 2 != 0;
    m.metadata.authentic_data = flags & 4 != 0;
    if flags & 8 != 0 {
        let mut e = Edns::new();
        e.set_max_payload(if flags & 16 != 0 { 512 } else { 4096 });
        e.set_dnssec_ok(flags & 32 != 0);
        m.edns = Some(e);
    }
    m.queries.push(q);
    let addr = "127.0.0.1:53".parse().unwrap();
    let proto = if flags & 64 != 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    Request::new(m, addr, addr, proto, 40)
}

/// The same name with every ASCII letter in upper case (a hit must echo the client's case).
fn upper(name: &Name) -> Name {
    let labels: Vec<Vec<u8>> = name.iter().map(|l| l.to_ascii_uppercase()).collect();
    Name::from_labels(labels).unwrap_or_else(|_| name.clone())
}

fn run(req: &Request, chain: &[Arc<dyn Plugin>], rt: &tokio::runtime::Runtime) -> Vec<u8> {
    let outcome: Outcome = rt.block_on(Next::new(chain).serve(req));
    let bytes = finish(req, outcome);
    check_reply(req, &bytes);
    if req.proto == Proto::Udp {
        assert!(
            bytes.len() <= req.size(),
            "{} > {}",
            bytes.len(),
            req.size()
        );
    }
    bytes
}

/// What a client gets must be a DNS message for its query: it parses, carries the query's ID,
/// QR set, and the question (unless it is an error reply without one).
fn check_reply(req: &Request, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let m = Message::from_vec(bytes).expect("the server's reply parses");
    assert_eq!(m.metadata.id, req.id());
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.queries.len() <= 1);
    if let [q] = m.queries.as_slice() {
        assert_eq!(q.query_type, req.qtype());
        assert!(q.name.eq_case(req.qname()), "{} != {}", q.name, req.qname());
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let flags = data.first().copied().unwrap_or(0);

    // The cache's walk over raw bytes: any layout it accepts must be patchable in place.
    if let Some(l) = wire::layout(data, 1_700_000_000) {
        let mut w = data.to_vec();
        assert!(l.qname_end <= w.len());
        for &off in &l.ttl_offsets {
            assert!(off as usize + 4 <= w.len());
        }
        wire::set_ttls(&mut w, &l.ttl_offsets, 30);
        if let Some(req) = request(Query::query(Name::root(), RecordType::A), flags) {
            wire::copy_qname(&mut w, l.qname_end, &req);
            let _ = wire::hit_flags([w[2], w[3]], &req);
        }
    }

    // `forward`: a reply that does not parse is an error, not an answer.
    let Ok(reply) = Message::from_vec(data) else {
        return;
    };
    // ... nor is one that does not answer the question (`forward`'s `question_matches`): a
    // response with exactly that question, or a header-only error.
    let answers = reply.metadata.message_type == MessageType::Response
        && match reply.queries.len() {
            1 => true,
            0 => reply.metadata.response_code != ResponseCode::NoError,
            _ => false,
        };
    if !answers {
        return;
    }
    let question = match reply.queries.as_slice() {
        [q] => q.clone(),
        _ => Query::query(Name::from_ascii("example.org.").unwrap(), RecordType::A),
    };
    let Some(req) = request(question.clone(), flags) else {
        return;
    };
    let mut shouting = question.clone();
    shouting.name = upper(&question.name);
    let Some(req2) = request(shouting, flags.rotate_left(3)) else {
        return;
    };

    let mut block = BlockConfig::default();
    let keys = parse_key(".").expect("root key");
    let mut setup = Setup {
        directives: vec![&f.cache],
        keys: &keys,
        zones: vec![".".to_string()],
        block: &mut block,
        shared: &f.shared,
    };
    let cache = ferrodns::plugins::cache::setup(&mut setup)
        .expect("fixed cache options")
        .expect("cache has a handler");
    let chain: Vec<Arc<dyn Plugin>> = vec![cache, Arc::new(Upstream(reply))];
    run(&req, &chain, &f.rt); // miss: stored
    run(&req2, &chain, &f.rt); // hit, other case and flags
    run(&req, &chain, &f.rt);
});
