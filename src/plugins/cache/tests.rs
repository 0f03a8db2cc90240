//! The cache against a fake upstream plugin, in-process: every answer goes through
//! `dispatch::finish`, so the bytes checked are the bytes a client would get.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::metrics::CacheMetrics;
use super::setup::{Config, parse};
use super::*;
use crate::corefile::parse_str;
use crate::metrics::Metrics;
use crate::plugin::setup::{BlockConfig, Shared};
use crate::plugin::{Chain, Failure, Plugin};
use crate::server::dispatch::finish;

type Answer = Box<dyn Fn(&Request) -> Outcome + Send + Sync>;

/// The rest of the chain: counts the questions it gets and answers with `answer`, after `delay`
/// when one is set (then the answer is `Pending`, as `forward`'s would be).
struct Upstream {
    calls: AtomicUsize,
    answer: Mutex<Answer>,
    delay: Option<Duration>,
}

impl Upstream {
    fn new(answer: impl Fn(&Request) -> Outcome + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Upstream {
            calls: AtomicUsize::new(0),
            answer: Mutex::new(Box::new(answer)),
            delay: None,
        })
    }

    fn set(&self, answer: impl Fn(&Request) -> Outcome + Send + Sync + 'static) {
        *self.answer.lock().unwrap() = Box::new(answer);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Plugin for Upstream {
    fn name(&self) -> &'static str {
        "upstream"
    }

    fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let out = (self.answer.lock().unwrap())(req);
        match self.delay {
            None => Served::Ready(out),
            Some(d) => Served::pending(async move {
                tokio::time::sleep(d).await;
                out
            }),
        }
    }
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(owner: &str, ttl: u32, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::from(ip))))
}

fn soa(zone: &str, ttl: u32, minimum: u32) -> Record {
    let rdata = SOA::new(
        name(&format!("ns.{zone}")),
        name(&format!("admin.{zone}")),
        1,
        7200,
        3600,
        86400,
        minimum,
    );
    Record::from_rdata(name(zone), ttl, RData::SOA(rdata))
}

/// The reply skeleton an upstream would send for `req`.
fn reply(req: &Request, rcode: ResponseCode) -> Message {
    let mut m = req.reply();
    m.metadata.response_code = rcode;
    m.metadata.recursion_available = true;
    m
}

fn answer_a(ttl: u32) -> impl Fn(&Request) -> Outcome + Send + Sync + 'static {
    move |req| {
        let mut m = reply(req, ResponseCode::NoError);
        m.answers.push(a(req.name(), ttl, [192, 0, 2, 1]));
        Ok(Response::new(m, "upstream"))
    }
}

struct Q {
    name: &'static str,
    qtype: RecordType,
    edns: bool,
    do_bit: bool,
    cd: bool,
    ad: bool,
    rd: bool,
}

fn q(name: &'static str) -> Q {
    Q {
        name,
        qtype: RecordType::A,
        edns: false,
        do_bit: false,
        cd: false,
        ad: false,
        rd: true,
    }
}

impl Q {
    fn qtype(mut self, t: RecordType) -> Self {
        self.qtype = t;
        self
    }
    fn dnssec(mut self) -> Self {
        self.edns = true;
        self.do_bit = true;
        self
    }
    fn edns(mut self) -> Self {
        self.edns = true;
        self
    }
    fn cd(mut self) -> Self {
        self.cd = true;
        self
    }
    fn ad(mut self) -> Self {
        self.ad = true;
        self
    }
    fn norec(mut self) -> Self {
        self.rd = false;
        self
    }

    fn request(&self) -> Request {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = self.rd;
        m.metadata.checking_disabled = self.cd;
        m.metadata.authentic_data = self.ad;
        m.queries.push(Query::query(name(self.name), self.qtype));
        if self.edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(self.do_bit);
            m.edns = Some(e);
        }
        let src: SocketAddr = "127.0.0.1:5300".parse().unwrap();
        let mut req = Request::new(m, src, src, Proto::Udp, 40).unwrap();
        req.server = Arc::from("dns://:53");
        req
    }
}

struct Fixture {
    cache: Arc<Cache>,
    upstream: Arc<Upstream>,
    chain: Chain,
    metrics: Arc<Metrics>,
}

fn fixture(cfg: Config, upstream: Arc<Upstream>) -> Fixture {
    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(Cache::new(cfg, CacheMetrics::get(&metrics)));
    let chain = Chain {
        plugins: vec![cache.clone() as Arc<dyn Plugin>, upstream.clone()],
    };
    Fixture {
        cache,
        upstream,
        chain,
        metrics,
    }
}

fn config(text: &str) -> Config {
    try_config(text).unwrap()
}

fn try_config(text: &str) -> Result<Config, String> {
    let file = parse_str("Corefile", &format!(". {{\n{text}\n}}\n"), Path::new(".")).unwrap();
    let d = &file.blocks[0].directives[0];
    let shared = Shared::new(Arc::new(Metrics::new()));
    let mut block = BlockConfig::default();
    let setup = Setup {
        directives: vec![d],
        keys: &[],
        zones: vec![".".into()],
        block: &mut block,
        shared: &shared,
    };
    parse(&setup).map_err(|e| e.to_string())
}

impl Fixture {
    async fn ask(&self, q: &Q) -> Message {
        let req = q.request();
        let outcome = self.chain.serve(&req).await;
        let wire = finish(&req, outcome);
        Message::from_vec(&wire).expect("a parseable answer")
    }

    /// The raw bytes the client would get.
    async fn ask_wire(&self, q: &Q) -> Vec<u8> {
        let req = q.request();
        let outcome = self.chain.serve(&req).await;
        finish(&req, outcome)
    }

    fn advance(&self, secs: u64) {
        self.cache.advance(Duration::from_secs(secs));
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

fn ttls(m: &Message) -> Vec<u32> {
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| r.ttl)
        .collect()
}

#[tokio::test]
async fn hit_and_miss_and_ttl_countdown() {
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    let first = f.ask(&q("example.org.")).await;
    assert_eq!(ttls(&first), vec![300]);
    f.advance(3);
    let second = f.ask(&q("example.org.")).await;
    assert_eq!(f.upstream.calls(), 1, "second question answered from cache");
    assert_eq!(ttls(&second), vec![297]);
    assert_eq!(second.answers[0].data, first.answers[0].data);
    assert_eq!(second.metadata.id, 4242);
    assert_eq!(second.metadata.message_type, MessageType::Response);
    assert!(second.metadata.recursion_available);
    f.advance(297);
    f.ask(&q("example.org.")).await;
    assert_eq!(f.upstream.calls(), 2, "expired entry is a miss");
    let text = f.metrics();
    for line in [
        "coredns_cache_requests_total{server=\"dns://:53\",view=\"\",zones=\".\"} 3",
        "coredns_cache_hits_total{server=\"dns://:53\",type=\"success\",view=\"\",zones=\".\"} 1",
        "coredns_cache_misses_total{server=\"dns://:53\",view=\"\",zones=\".\"} 2",
        "coredns_cache_entries{server=\"dns://:53\",type=\"success\",view=\"\",zones=\".\"} 1",
        "coredns_cache_entries{server=\"dns://:53\",type=\"denial\",view=\"\",zones=\".\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // As with Go's metric vectors, series appear once they happen.
    for absent in [
        "coredns_cache_hits_total{server=\"dns://:53\",type=\"denial\"",
        "coredns_cache_served_stale_total{",
        "coredns_cache_evictions_total{",
    ] {
        assert!(!text.contains(absent), "unexpected {absent} in\n{text}");
    }
}

#[tokio::test]
async fn ttls_are_clamped_and_equalised() {
    // (Corefile, record TTLs, TTL the client sees)
    let cases: &[(&str, &[u32], u32)] = &[
        ("cache", &[300, 600], 300),
        ("cache", &[100_000], 3600),
        ("cache", &[1], 5),
        ("cache", &[0], 5),
        ("cache 10", &[300], 10),
        ("cache {\n success 10000 60 30\n}", &[10], 30),
        ("cache {\n success 10000 60 30\n}", &[100], 60),
        ("cache {\n success 10000 3600 0\n}", &[0], 0),
    ];
    for (conf, record_ttls, want) in cases {
        let record_ttls = record_ttls.to_vec();
        let f = fixture(
            config(conf),
            Upstream::new(move |req| {
                let mut m = reply(req, ResponseCode::NoError);
                for (i, ttl) in record_ttls.iter().enumerate() {
                    m.answers.push(a(req.name(), *ttl, [192, 0, 2, i as u8]));
                }
                Ok(Response::new(m, "upstream"))
            }),
        );
        let got = f.ask(&q("example.org.")).await;
        assert!(
            ttls(&got).iter().all(|t| t == want),
            "{conf}: {:?}",
            ttls(&got)
        );
        let again = f.ask(&q("example.org.")).await;
        let cached = if *want == 0 { 2 } else { 1 };
        assert_eq!(f.upstream.calls(), cached, "{conf}");
        assert!(
            ttls(&again).iter().all(|t| t == want),
            "{conf}: {:?}",
            ttls(&again)
        );
    }
}

#[tokio::test]
async fn negative_answers_use_the_soa() {
    // (rcode, SOA TTL, SOA MINIMUM, cached, TTL seen)
    let cases = [
        (ResponseCode::NXDomain, 3600, 60, true, 60),
        (ResponseCode::NXDomain, 30, 600, true, 30),
        (ResponseCode::NoError, 3600, 120, true, 120),
        (ResponseCode::NXDomain, 9000, 9000, true, 1800),
        (ResponseCode::NXDomain, 1, 1, true, 5),
    ];
    for (rcode, ttl, minimum, cached, seen) in cases {
        let f = fixture(
            config("cache"),
            Upstream::new(move |req| {
                let mut m = reply(req, rcode);
                m.authorities.push(soa("example.org.", ttl, minimum));
                Ok(Response::new(m, "upstream"))
            }),
        );
        let first = f.ask(&q("nope.example.org.")).await;
        assert_eq!(first.metadata.response_code, rcode);
        assert_eq!(ttls(&first), vec![seen], "{rcode:?} {ttl} {minimum}");
        let second = f.ask(&q("nope.example.org.")).await;
        assert_eq!(f.upstream.calls() == 1, cached);
        assert_eq!(second.metadata.response_code, rcode);
        assert_eq!(second.authorities.len(), 1);
        assert!(
            f.metrics().contains(
                "coredns_cache_hits_total{server=\"dns://:53\",type=\"denial\",view=\"\",zones=\".\"} 1"
            ),
            "{}",
            f.metrics()
        );
    }
    // NXDOMAIN without SOA is not a denial CoreDNS caches.
    let f = fixture(
        config("cache"),
        Upstream::new(|req| {
            Ok(Response::new(
                reply(req, ResponseCode::NXDomain),
                "upstream",
            ))
        }),
    );
    f.ask(&q("nope.example.org.")).await;
    f.ask(&q("nope.example.org.")).await;
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn servfail_is_cached_for_the_configured_time() {
    // (Corefile, seconds later, upstream asked again)
    let cases = [
        ("cache", 4, false),
        ("cache", 5, true),
        ("cache {\n servfail 2s\n}", 1, false),
        ("cache {\n servfail 2s\n}", 2, true),
        ("cache {\n servfail 0\n}", 0, true),
    ];
    for (conf, later, again) in cases {
        let f = fixture(
            config(conf),
            Upstream::new(|req| {
                Ok(Response::new(
                    reply(req, ResponseCode::ServFail),
                    "upstream",
                ))
            }),
        );
        let first = f.ask(&q("broken.example.")).await;
        assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
        f.advance(later);
        let second = f.ask(&q("broken.example.")).await;
        assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(f.upstream.calls() == 2, again, "{conf} after {later}s");
    }
}

#[tokio::test]
async fn failures_and_uncacheable_answers_pass_through() {
    let cases: Vec<(&str, Answer)> = vec![
        (
            "refused",
            Box::new(|req: &Request| {
                Ok(Response::new(reply(req, ResponseCode::Refused), "upstream"))
            }),
        ),
        (
            "truncated",
            Box::new(|req: &Request| {
                let mut m = reply(req, ResponseCode::NoError);
                m.metadata.truncation = true;
                m.answers.push(a(req.name(), 300, [192, 0, 2, 1]));
                Ok(Response::new(m, "upstream"))
            }),
        ),
        (
            "failure without an answer",
            Box::new(|_: &Request| Err(Failure::new(ResponseCode::ServFail))),
        ),
        (
            "wrong question",
            Box::new(|req: &Request| {
                let mut m = reply(req, ResponseCode::NoError);
                m.queries[0].name = name("other.example.");
                m.answers.push(a("other.example.", 300, [192, 0, 2, 1]));
                Ok(Response::new(m, "upstream"))
            }),
        ),
    ];
    for (what, answer) in cases {
        let f = fixture(config("cache"), Upstream::new(answer));
        let first = f.ask(&q("example.org.")).await;
        f.ask(&q("example.org.")).await;
        assert_eq!(f.upstream.calls(), 2, "{what} must not be cached");
        if what == "truncated" {
            assert!(first.metadata.truncation);
        }
        if what == "wrong question" {
            assert!(
                f.metrics().contains(
                    "coredns_cache_drops_total{server=\"dns://:53\",view=\"\",zones=\".\"} 2"
                ),
                "{}",
                f.metrics()
            );
        }
    }
    // Zone transfers are never cached.
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    f.ask(&q("example.org.").qtype(RecordType::AXFR)).await;
    f.ask(&q("example.org.").qtype(RecordType::AXFR)).await;
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn keys_cover_name_case_type_do_and_cd() {
    // Questions asked in order, and how many reached upstream after each.
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    let steps: Vec<(Q, usize)> = vec![
        (q("example.org."), 1),
        (q("EXAMPLE.org."), 1),
        (q("example.org.").edns(), 1),
        (q("example.org.").dnssec(), 2),
        (q("example.org.").dnssec(), 2),
        (q("example.org.").cd(), 3),
        (q("example.org.").cd().dnssec(), 4),
        (q("example.org.").qtype(RecordType::AAAA), 5),
        (q("example.org.").norec(), 5),
        (q("www.example.org."), 6),
    ];
    for (i, (question, calls)) in steps.iter().enumerate() {
        f.ask(question).await;
        assert_eq!(f.upstream.calls(), *calls, "step {i}");
    }
}

#[tokio::test]
async fn hits_echo_the_question_and_header_of_the_query() {
    let f = fixture(
        config("cache"),
        Upstream::new(|req| {
            let mut m = reply(req, ResponseCode::NoError);
            m.metadata.authentic_data = true;
            m.metadata.authoritative = true;
            m.answers.push(a(req.name(), 300, [192, 0, 2, 1]));
            Ok(Response::new(m, "upstream"))
        }),
    );
    let miss = f.ask(&q("example.org.")).await;
    assert!(
        !miss.metadata.authentic_data,
        "AD only for DO or AD queries"
    );
    let hit = f.ask(&q("ExAmPle.ORG.").norec()).await;
    assert_eq!(hit.queries[0].name.to_ascii(), "ExAmPle.ORG.");
    assert!(!hit.metadata.recursion_desired);
    assert!(hit.metadata.authoritative, "AA as the cached answer had it");
    assert!(!hit.metadata.authentic_data);
    assert!(hit.edns.is_none(), "no OPT for a query without one");
    let with_ad = f.ask(&q("example.org.").ad()).await;
    assert!(with_ad.metadata.authentic_data);
    let with_edns = f.ask(&q("example.org.").edns()).await;
    let e = with_edns.edns.expect("OPT for an EDNS query");
    assert_eq!(
        e.max_payload(),
        4096,
        "the client's size echoed, as SizeAndDo does"
    );
    assert!(!e.flags().dnssec_ok);
    let signed = f.ask(&q("example.org.").dnssec()).await;
    assert!(signed.metadata.authentic_data);
    assert!(signed.edns.unwrap().flags().dnssec_ok);
}

#[tokio::test]
async fn non_authoritative_answers_stay_non_authoritative() {
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    assert!(!f.ask(&q("example.org.")).await.metadata.authoritative);
    assert!(!f.ask(&q("example.org.")).await.metadata.authoritative);
    assert_eq!(f.upstream.calls(), 1);
}

#[tokio::test]
async fn a_hit_is_the_miss_answer_except_id_and_ttl() {
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    let first = f.ask_wire(&q("example.org.").edns()).await;
    f.advance(7);
    let second = f.ask_wire(&q("example.org.").edns()).await;
    assert_eq!(first.len(), second.len());
    let diff: Vec<usize> = (0..first.len())
        .filter(|&i| first[i] != second[i])
        .collect();
    // Only the TTL's low byte (300 -> 293) may differ; the ID is the same in both queries.
    assert_eq!(diff.len(), 1, "{diff:?}");
}

#[tokio::test]
async fn capacity_bounds_each_shard_and_evicts() {
    let f = fixture(
        config("cache {\n success 1024\n}"),
        Upstream::new(answer_a(300)),
    );
    for i in 0..3000 {
        let n: &'static str = Box::leak(format!("host{i}.example.").into_boxed_str());
        f.ask(&q(n)).await;
    }
    let len = f.cache.inner.store.len(Class::Success);
    assert!(len <= 1024 && len > 900, "{len}");
    let text = f.metrics();
    let evictions = text
        .lines()
        .find(|l| {
            l.starts_with("coredns_cache_evictions_total{server=\"dns://:53\",type=\"success\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(evictions as usize, 3000 - len);
}

#[tokio::test]
async fn disable_skips_caching_per_zone_and_kind() {
    let nx = |req: &Request| {
        let mut m = reply(req, ResponseCode::NXDomain);
        m.authorities.push(soa("example.org.", 300, 300));
        Ok(Response::new(m, "upstream"))
    };
    // (Corefile, positive question cached, negative question cached)
    let cases = [
        ("cache {\n disable success\n}", false, true),
        ("cache {\n disable denial\n}", true, false),
        ("cache {\n disable denial sub.example.org\n}", true, true),
        (
            "cache {\n disable success sub.example.org other.\n}",
            true,
            true,
        ),
    ];
    for (conf, pos, neg) in cases {
        let f = fixture(config(conf), Upstream::new(answer_a(300)));
        f.ask(&q("a.example.org.")).await;
        f.ask(&q("a.example.org.")).await;
        assert_eq!(f.upstream.calls() == 1, pos, "{conf} success");
        f.upstream.set(nx);
        f.ask(&q("b.example.org.")).await;
        f.ask(&q("b.example.org.")).await;
        let neg_calls = f.upstream.calls() - if pos { 1 } else { 2 };
        assert_eq!(neg_calls == 1, neg, "{conf} denial");
    }
    // Inside the disabled zone.
    let f = fixture(
        config("cache {\n disable denial sub.example.org\n}"),
        Upstream::new(nx),
    );
    f.ask(&q("x.sub.example.org.")).await;
    f.ask(&q("x.sub.example.org.")).await;
    assert_eq!(f.upstream.calls(), 2);
}

#[tokio::test]
async fn keepttl_serves_the_original_ttl() {
    let f = fixture(config("cache {\n keepttl\n}"), Upstream::new(answer_a(300)));
    f.ask(&q("example.org.")).await;
    f.advance(100);
    assert_eq!(ttls(&f.ask(&q("example.org.")).await), vec![300]);
    f.advance(200);
    f.ask(&q("example.org.")).await;
    assert_eq!(f.upstream.calls(), 2, "the entry still expires");
}

#[tokio::test]
async fn zones_limit_what_is_cached() {
    let f = fixture(config("cache example.org"), Upstream::new(answer_a(300)));
    f.ask(&q("a.example.org.")).await;
    f.ask(&q("a.example.org.")).await;
    assert_eq!(f.upstream.calls(), 1);
    let other = f.ask(&q("a.example.net.")).await;
    f.ask(&q("a.example.net.")).await;
    assert_eq!(f.upstream.calls(), 3);
    assert_eq!(
        ttls(&other),
        vec![300],
        "outside the zones answers pass untouched"
    );
}

async fn settle(f: &Fixture, calls: usize) {
    for _ in 0..100 {
        if f.upstream.calls() >= calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the refresh store its answer.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test]
async fn prefetch_refreshes_popular_entries_before_expiry() {
    let f = fixture(
        config("cache {\n prefetch 2 2m 20%\n}"),
        Upstream::new(answer_a(100)),
    );
    f.ask(&q("example.org.")).await;
    f.ask(&q("example.org.")).await; // hit 1, TTL 100
    f.advance(85);
    f.ask(&q("example.org.")).await; // hit 2, TTL 15 <= 20: prefetch
    settle(&f, 2).await;
    assert_eq!(f.upstream.calls(), 2, "one prefetch");
    let refreshed = f.ask(&q("example.org.")).await;
    assert_eq!(
        ttls(&refreshed),
        vec![100],
        "served from the refreshed entry"
    );
    assert!(
        f.metrics()
            .contains("coredns_cache_prefetch_total{server=\"dns://:53\",view=\"\",zones=\".\"} 1")
    );

    // Not popular enough: one hit, then a gap longer than the window.
    let f = fixture(
        config("cache {\n prefetch 2 10s\n}"),
        Upstream::new(answer_a(100)),
    );
    f.ask(&q("example.org.")).await;
    f.ask(&q("example.org.")).await;
    f.advance(95);
    f.ask(&q("example.org.")).await;
    settle(&f, 2).await;
    assert_eq!(f.upstream.calls(), 1, "no prefetch after a gap");
}

#[tokio::test]
async fn serve_stale_immediate_answers_with_ttl_zero_and_refreshes() {
    let f = fixture(
        config("cache {\n serve_stale 1h\n}"),
        Upstream::new(answer_a(60)),
    );
    f.ask(&q("example.org.")).await;
    f.advance(120);
    f.upstream
        .set(|_| Err(Failure::new(ResponseCode::ServFail)));
    let stale = f.ask(&q("example.org.")).await;
    assert_eq!(ttls(&stale), vec![0]);
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    settle(&f, 2).await;
    assert_eq!(f.upstream.calls(), 2, "refresh attempted in the background");
    assert!(f.metrics().contains(
        "coredns_cache_served_stale_total{server=\"dns://:53\",view=\"\",zones=\".\"} 1"
    ));
    // Upstream back: the next refresh replaces the entry.
    f.upstream.set(answer_a(60));
    f.ask(&q("example.org.")).await;
    settle(&f, 3).await;
    assert_eq!(ttls(&f.ask(&q("example.org.")).await), vec![60]);
    // Past the stale window it is a plain miss.
    f.advance(60 + 3601);
    f.upstream
        .set(|_| Err(Failure::new(ResponseCode::ServFail)));
    let gone = f.ask(&q("example.org.")).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn serve_stale_verify_asks_upstream_first() {
    let f = fixture(
        config("cache {\n serve_stale 1h verify\n}"),
        Upstream::new(answer_a(60)),
    );
    f.ask(&q("example.org.")).await;
    f.advance(120);
    // Upstream fails: the stale answer is served.
    f.upstream.set(|req| {
        Ok(Response::new(
            reply(req, ResponseCode::ServFail),
            "upstream",
        ))
    });
    let stale = f.ask(&q("example.org.")).await;
    assert_eq!(f.upstream.calls(), 2);
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ttls(&stale), vec![0]);
    // Upstream answers: the fresh answer wins at once.
    f.upstream.set(|req| {
        let mut m = reply(req, ResponseCode::NoError);
        m.answers.push(a(req.name(), 30, [192, 0, 2, 9]));
        Ok(Response::new(m, "upstream"))
    });
    let fresh = f.ask(&q("example.org.")).await;
    assert_eq!(ttls(&fresh), vec![30]);
    assert_eq!(
        fresh.answers[0].data,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 9)))
    );
}

#[tokio::test]
async fn identical_misses_go_upstream_once() {
    let upstream = Arc::new(Upstream {
        calls: AtomicUsize::new(0),
        answer: Mutex::new(Box::new(answer_a(300))),
        delay: Some(Duration::from_millis(50)),
    });
    let f = fixture(config("cache"), upstream);
    let questions: Vec<Q> = (0..8).map(|_| q("example.org.")).collect();
    let answers = futures_join(questions.iter().map(|question| f.ask(question)).collect()).await;
    assert_eq!(f.upstream.calls(), 1);
    for m in answers {
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.metadata.id, 4242);
    }
    assert!(f.cache.inner.flights.lock().unwrap().is_empty());
    // A different question is its own flight.
    f.ask(&q("other.org.")).await;
    assert_eq!(f.upstream.calls(), 2);
}

/// Poll all futures to completion on this task (no extra crate needed).
async fn futures_join<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}

#[tokio::test]
async fn cached_answers_too_big_for_the_client_are_truncated() {
    let f = fixture(
        config("cache"),
        Upstream::new(|req| {
            let mut m = reply(req, ResponseCode::NoError);
            for i in 0..60 {
                m.answers.push(a(req.name(), 300, [192, 0, 2, i]));
            }
            Ok(Response::new(m, "upstream"))
        }),
    );
    let mut big = q("big.example.").edns();
    big.do_bit = false;
    assert_eq!(f.ask(&big).await.answers.len(), 60);
    let small = f.ask(&q("big.example.")).await;
    assert_eq!(f.upstream.calls(), 1);
    assert!(small.metadata.truncation);
    assert!(small.answers.len() < 60);
    assert!(f.ask_wire(&q("big.example.")).await.len() <= 512);
    // The cached entry itself stays whole.
    assert_eq!(f.ask(&big).await.answers.len(), 60);
}

fn rrsig(owner: &str, inception: u32, expiration: u32) -> Record {
    let mut rdata = vec![0, 1, 8, 2, 0, 0, 1, 44];
    rdata.extend_from_slice(&expiration.to_be_bytes());
    rdata.extend_from_slice(&inception.to_be_bytes());
    rdata.extend_from_slice(&[0, 1]);
    rdata.extend_from_slice(&[7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0]);
    rdata.extend_from_slice(&[1, 2, 3, 4]);
    Record::from_rdata(
        name(owner),
        300,
        RData::Unknown {
            code: RecordType::RRSIG,
            rdata: hickory_proto::rr::rdata::NULL::with(rdata),
        },
    )
}

#[tokio::test]
async fn answers_with_expired_signatures_are_not_cached_for_dnssec_clients() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    // (signature window, DO query, cached)
    let cases = [
        ((now - 100, now + 100), true, true),
        ((now - 200, now - 100), true, false),
        ((now + 100, now + 200), true, false),
        ((now - 200, now - 100), false, true),
    ];
    for ((inception, expiration), dnssec, cached) in cases {
        let f = fixture(
            config("cache"),
            Upstream::new(move |req| {
                let mut m = reply(req, ResponseCode::NoError);
                m.answers.push(a(req.name(), 300, [192, 0, 2, 1]));
                m.answers.push(rrsig(req.name(), inception, expiration));
                Ok(Response::new(m, "upstream"))
            }),
        );
        let question = if dnssec {
            q("example.").dnssec()
        } else {
            q("example.")
        };
        let first = f.ask(&question).await;
        assert_eq!(first.answers.len(), 2);
        f.ask(&question).await;
        assert_eq!(
            f.upstream.calls() == 1,
            cached,
            "{inception} {expiration} {dnssec}"
        );
    }
}

#[tokio::test]
async fn delegations_are_cached_briefly() {
    let f = fixture(
        config("cache"),
        Upstream::new(|req| {
            let mut m = reply(req, ResponseCode::NoError);
            m.authorities.push(Record::from_rdata(
                name("sub.example.org."),
                86400,
                RData::NS(NS(name("ns.sub.example.org."))),
            ));
            Ok(Response::new(m, "upstream"))
        }),
    );
    let first = f.ask(&q("www.sub.example.org.")).await;
    // CoreDNS's MinimalTTL gives a delegation the 5 s default.
    assert_eq!(ttls(&first), vec![5]);
    f.ask(&q("www.sub.example.org.")).await;
    assert_eq!(f.upstream.calls(), 1);
}

#[test]
fn setup_defaults_and_options() {
    let d = config("cache");
    assert_eq!(d, Config::default());
    assert_eq!((d.pttl, d.nttl, d.minpttl, d.minnttl), (3600, 1800, 5, 5));
    assert_eq!(d.failttl, Duration::from_secs(5));
    let c = config("cache 300 example.org Example.NET");
    assert_eq!((c.pttl, c.nttl), (300, 300));
    assert_eq!(c.zones, vec!["example.org.", "example.net."]);
    let c = config(
        "cache {\n success 5000 100 10\n denial 2500 50 1\n prefetch 10 2m 50%\n serve_stale 2h VERIFY\n servfail 1m\n disable denial a.org\n keepttl\n}",
    );
    assert_eq!((c.pcap, c.pttl, c.minpttl), (5000, 100, 10));
    assert_eq!((c.ncap, c.nttl, c.minnttl), (2500, 50, 1));
    assert_eq!(
        (c.prefetch, c.prefetch_window, c.percentage),
        (10, Duration::from_secs(120), 50)
    );
    assert_eq!(c.stale_up_to, Duration::from_secs(7200));
    assert!(c.verify_stale && c.keepttl);
    assert_eq!(c.failttl, Duration::from_secs(60));
    assert_eq!(c.nexcept, vec!["a.org."]);
    let c = config("cache {\n serve_stale\n disable success\n}");
    assert_eq!(c.stale_up_to, Duration::from_secs(3600));
    assert!(!c.verify_stale);
    assert_eq!(c.pexcept, vec!["."]);
}

#[test]
fn setup_errors_read_as_coredns() {
    let cases = [
        ("cache 0", "cache TTL can not be zero or negative: 0"),
        ("cache -3", "cache TTL can not be zero or negative: -3"),
        (
            "cache {\n success\n}",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'success'",
        ),
        (
            "cache {\n success x\n}",
            "strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "cache {\n success 10 0\n}",
            "cache TTL can not be zero or negative: 0",
        ),
        (
            "cache {\n denial 10 20 -1\n}",
            "cache min TTL can not be negative: -1",
        ),
        (
            "cache {\n prefetch\n}",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'prefetch'",
        ),
        (
            "cache {\n prefetch -1\n}",
            "prefetch amount should be positive: -1",
        ),
        (
            "cache {\n prefetch 1 1m 5%\n}",
            "percentage should fall in range [10, 90]: 5",
        ),
        (
            "cache {\n prefetch 1 1m 50\n}",
            "last character of percentage should be `%`, but is: '0'",
        ),
        (
            "cache {\n serve_stale -1s\n}",
            "invalid negative duration for serve_stale",
        ),
        (
            "cache {\n serve_stale 1h later\n}",
            "invalid value for serve_stale refresh mode: later",
        ),
        (
            "cache {\n servfail 6m\n}",
            "caching SERVFAIL responses over 5 minutes is not permitted",
        ),
        (
            "cache {\n servfail -1s\n}",
            "invalid negative ttl for servfail",
        ),
        (
            "cache {\n servfail\n}",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'servfail'",
        ),
        (
            "cache {\n disable everything\n}",
            "cache type for disable must be \"success\" or \"denial\"",
        ),
        (
            "cache {\n keepttl 5\n}",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after '5'",
        ),
        (
            "cache {\n bogus 1\n}",
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'bogus'",
        ),
    ];
    for (conf, want) in cases {
        assert_eq!(try_config(conf).unwrap_err(), want, "{conf}");
    }
    // Twice in one block.
    let file = parse_str("Corefile", ". {\ncache\ncache\n}\n", Path::new(".")).unwrap();
    let ds: Vec<_> = file.blocks[0].directives.iter().collect();
    let shared = Shared::new(Arc::new(Metrics::new()));
    let mut block = BlockConfig::default();
    let setup = Setup {
        directives: ds,
        keys: &[],
        zones: vec![".".into()],
        block: &mut block,
        shared: &shared,
    };
    assert!(
        parse(&setup)
            .unwrap_err()
            .to_string()
            .contains("only be used once")
    );
}

#[test]
fn op_code_is_echoed_on_hits() {
    // Opcode bits come from the query, as `SetReply` does.
    let req = q("example.org.").request();
    let flags = wire::hit_flags([0x84, 0x80], &req);
    assert_eq!(flags[0] & 0x78, (u8::from(OpCode::Query) & 0x0f) << 3);
    assert_eq!(flags[0] & 0x04, 0x04);
    assert_eq!(flags[1] & 0x80, 0x80);
    let _ = DNSClass::IN;
}

/// The cost of a hit inside the server (lookup, copy, patches, `finish`), without the socket
/// and query parsing: `cargo test --release --lib plugins::cache::tests::hit_cost -- --ignored
/// --nocapture`.
#[tokio::test]
#[ignore]
async fn hit_cost() {
    let f = fixture(config("cache"), Upstream::new(answer_a(300)));
    let req = q("bench.example.org.").edns().request();
    f.ask(&q("bench.example.org.").edns()).await;
    let rounds = 2_000_000u32;
    // Thread CPU time, not wall time: the machine may be busy with other work.
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
    };
    let start = cpu();
    let mut bytes = 0usize;
    for _ in 0..rounds {
        let outcome = match f.chain.serve(&req) {
            Served::Ready(o) => o,
            Served::Pending(_) => panic!("a hit is ready at once"),
        };
        bytes += finish(&req, outcome).len();
    }
    let per = (cpu() - start) / rounds as f64;
    println!("cache hit + finish: {per:.0} ns CPU per query ({bytes} bytes)");
    assert_eq!(f.upstream.calls(), 1);
}
