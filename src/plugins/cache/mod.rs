//! `cache`: answers repeated questions from memory, with CoreDNS's options, TTL rules and
//! metrics. See README.md.
//!
//! The hit path is the fastest thing the server does: hash the question, one read lock on one of
//! 256 shards, copy the pre-encoded answer, patch its flags, question spelling and TTLs, and hand
//! the bytes to the server ([`Response::from_wire`]), which only writes the ID and the client's
//! OPT. Nothing is parsed, built or encoded per hit.

mod metrics;
mod setup;
mod store;
// Public (hidden) so the fuzz targets in `fuzz/` can walk arbitrary answers with it.
#[doc(hidden)]
pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;
#[cfg(not(target_os = "linux"))]
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::ResponseCode;
use tokio::sync::watch;

use crate::dnsname::longest_match;
use crate::plugin::response::{Kind, typify};
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Outcome, Plugin, Proto, Request, Response, Served};
use metrics::{CacheMetrics, Handles, ServerMetrics};
pub use setup::Config;
use store::{Class, Entry, Store};

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let cfg = setup::parse(c)?;
    let family = CacheMetrics::get(&c.shared.metrics);
    Ok(Some(Arc::new(Cache::new(cfg, family))))
}

pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    /// The root is one of the zones: every question is the cache's (no per-query match).
    every_name: bool,
    store: Store,
    clock: Clock,
    metrics: ServerMetrics,
    /// Questions on their way upstream, for single-flight: later identical misses wait for the
    /// first one's answer instead of asking again.
    flights: Mutex<Flights>,
    flight_count: AtomicUsize,
    flight_ids: AtomicU64,
}

/// Keyed by the cache key, already a hash: used as it is.
type Flights = HashMap<u64, FlightSlot, std::hash::BuildHasherDefault<store::KeyHasher>>;

/// A question on its way upstream. The channel its answer is shared on is only made when a
/// second query for it arrives, which is rare: the first one alone does not pay for it.
struct FlightSlot {
    /// Tells this flight from a later one for the same question.
    id: u64,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

/// Milliseconds since the cache was made. Tests move it forward instead of sleeping.
struct Clock {
    base_ms: u64,
    skew_ms: AtomicU64,
}

impl Clock {
    fn now_ms(&self) -> u64 {
        monotonic_ms().saturating_sub(self.base_ms) + self.skew_ms.load(Ordering::Relaxed)
    }
}

/// A monotonic clock in milliseconds. TTLs count whole seconds, so Linux's coarse clock (a few
/// ms resolution, a fraction of the cost of a precise read) is plenty on the hit path.
#[cfg(target_os = "linux")]
fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Seconds since the Unix epoch, for RRSIG validity periods (whole seconds): Linux's coarse
/// clock, as for [`monotonic_ms`], where `SystemTime` cost a miss about 120 instructions.
#[cfg(target_os = "linux")]
fn unix_seconds() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    // `time_t` is 32 bits on some Linux targets.
    #[allow(clippy::unnecessary_cast)]
    let secs = ts.tv_sec as i64;
    secs
}

#[cfg(not(target_os = "linux"))]
fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(not(target_os = "linux"))]
fn monotonic_ms() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What the hit path decided under the shard lock.
// A hit (the large variant) is the common case: boxing it would allocate on every hit.
#[allow(clippy::large_enum_variant)]
enum Verdict {
    Miss,
    /// A fresh hit, answered; with the entry when it is due for a prefetch.
    Fresh(Response, Class, Option<Arc<Entry>>),
    /// A stale hit (serve_stale), handled outside the lock.
    Stale(Arc<Entry>, Class),
}

impl Cache {
    pub fn new(cfg: Config, family: CacheMetrics) -> Self {
        let zones_label = cfg.zones.join(",");
        Cache {
            inner: Arc::new(Inner {
                store: Store::new(cfg.pcap, cfg.ncap),
                every_name: cfg.zones.iter().any(|z| z == "."),
                cfg,
                clock: Clock {
                    base_ms: monotonic_ms(),
                    skew_ms: AtomicU64::new(0),
                },
                metrics: ServerMetrics::new(family, zones_label),
                flights: Mutex::new(Flights::default()),
                flight_count: AtomicUsize::new(0),
                flight_ids: AtomicU64::new(0),
            }),
        }
    }

    /// Move the cache's clock forward (tests).
    #[cfg(test)]
    fn advance(&self, d: Duration) {
        self.inner
            .clock
            .skew_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// An expired entry within the `serve_stale` window: RFC 8767 answers carry TTL 0
    /// (keepttl aside, which CoreDNS applies to stale answers too).
    fn stale<'a>(
        &'a self,
        e: Arc<Entry>,
        req: &'a Request,
        key: u64,
        next: Next<'a>,
        now: u64,
        h: &Handles,
    ) -> Served<'a> {
        let inner = &*self.inner;
        let stale_ttl = if inner.cfg.keepttl { e.orig_ttl } else { 0 };
        if inner.cfg.verify_stale {
            return Served::pending(async move {
                let outcome = next.serve(req).await;
                // RFC 8767 §4: only NOERROR and NXDOMAIN replace what we have.
                if let Ok(resp) = &outcome
                    && matches!(resp.rcode(), ResponseCode::NoError | ResponseCode::NXDomain)
                {
                    return inner.absorb(req, key, outcome, false);
                }
                inner.metrics.for_server(&req.server).served_stale.inc();
                Ok(respond(&e, req, stale_ttl))
            });
        }
        self.refresh(&e, req, key, next, now, h);
        h.served_stale.inc();
        Served::Ready(Ok(respond(&e, req, stale_ttl)))
    }

    /// Ask the rest of the chain again in the background and store the answer (prefetch, and
    /// serve_stale's `immediate` refresh). At most one refresh per entry is in flight.
    fn refresh(
        &self,
        e: &Arc<Entry>,
        req: &Request,
        key: u64,
        next: Next<'_>,
        now: u64,
        h: &Handles,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if e.refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        h.prefetch.inc();
        let chain = next.plugins().to_vec();
        let inner = self.inner.clone();
        let mut req = req.clone();
        // The client's transport does not matter for a refresh; TCP's size limit keeps the
        // answer whole (CoreDNS does the same).
        req.proto = Proto::Tcp;
        let old = e.clone();
        rt.spawn(async move {
            let outcome = Next::new(&chain).serve(&req).await;
            let _ = inner.absorb(&req, key, outcome, true);
            // The new entry starts with the popularity the old one had gathered.
            if let Some(found) = inner.store.get(key) {
                for fresh in found.iter().flatten() {
                    if !Arc::ptr_eq(fresh, &old) {
                        fresh.freq.reset(now, old.freq.hits());
                    }
                }
            }
            old.refreshing.store(false, Ordering::Release);
        });
    }

    fn miss<'a>(&'a self, req: &'a Request, key: u64, next: Next<'a>) -> Served<'a> {
        let inner = &*self.inner;
        if inner.flight_count.load(Ordering::Acquire) > 0
            && let Some(rx) = inner.flight(key)
        {
            return Served::pending(inner.wait(rx, req, key, next));
        }
        match next.serve(req) {
            Served::Ready(outcome) => Served::Ready(inner.absorb(req, key, outcome, false)),
            Served::Pending(fut) => {
                let id = {
                    let mut flights = inner.flights.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(slot) = flights.get_mut(&key) {
                        // Another thread started the same question meanwhile: wait for it and
                        // drop ours before it has been polled (nothing was sent yet).
                        let rx = slot.subscribe();
                        drop(flights);
                        drop(fut);
                        return Served::pending(inner.wait(rx, req, key, next));
                    }
                    let id = inner.flight_ids.fetch_add(1, Ordering::Relaxed);
                    flights.insert(key, FlightSlot { id, tx: None });
                    inner.flight_count.fetch_add(1, Ordering::AcqRel);
                    id
                };
                let flight = Flight {
                    inner,
                    key,
                    id,
                    landed: false,
                };
                Served::pending(async move {
                    let outcome = inner.absorb(req, key, fut.await, false);
                    flight.land(outcome)
                })
            }
        }
    }
}

impl FlightSlot {
    fn subscribe(&mut self) -> watch::Receiver<Option<Outcome>> {
        match &self.tx {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                self.tx = Some(tx);
                rx
            }
        }
    }
}

/// The first of identical misses; dropping it (answered or abandoned) ends the flight. Waiters
/// of an abandoned flight ask upstream themselves.
struct Flight<'a> {
    inner: &'a Inner,
    key: u64,
    id: u64,
    landed: bool,
}

impl Flight<'_> {
    /// End the flight with its answer, shared with the queries that wait for it (taken out of
    /// the map first, so that none starts waiting after it was sent).
    fn land(mut self, outcome: Outcome) -> Outcome {
        self.landed = true;
        if let Some(tx) = self.leave() {
            tx.send_replace(Some(outcome.clone()));
        }
        outcome
    }

    /// Take this flight out of the map; its channel, if a query waits on it.
    fn leave(&self) -> Option<watch::Sender<Option<Outcome>>> {
        let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
        if flights.get(&self.key).is_none_or(|slot| slot.id != self.id) {
            return None;
        }
        self.inner.flight_count.fetch_sub(1, Ordering::AcqRel);
        flights.remove(&self.key).and_then(|slot| slot.tx)
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        // Abandoned: the channel closes once out of the map, so a waiter that sees it close
        // without an answer and asks upstream itself starts a new flight rather than finding
        // this dead one.
        let tx = self.leave();
        drop(tx);
    }
}

impl Inner {
    fn flight(&self, key: u64) -> Option<watch::Receiver<Option<Outcome>>> {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        flights.get_mut(&key).map(FlightSlot::subscribe)
    }

    async fn wait(
        &self,
        mut rx: watch::Receiver<Option<Outcome>>,
        req: &Request,
        key: u64,
        next: Next<'_>,
    ) -> Outcome {
        let shared = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        match shared {
            Some(outcome) => self.adapt(req, key, outcome),
            None => {
                let outcome = next.serve(req).await;
                self.absorb(req, key, outcome, false)
            }
        }
    }

    /// The first query's answer, made this query's: from the cache when it was stored, else
    /// the message with this query's question and header bits.
    fn adapt(&self, req: &Request, key: u64, outcome: Outcome) -> Outcome {
        let resp = outcome?;
        let now = self.clock.now_ms();
        if let Some((e, _)) = self.lookup(key, req, now)
            && e.ttl(now) > 0
        {
            let ttl = if self.cfg.keepttl {
                e.orig_ttl
            } else {
                e.ttl(now) as u32
            };
            return Ok(respond(&e, req, ttl));
        }
        let plugin = resp.plugin;
        let mut m = resp.into_message();
        m.queries = vec![req.query().clone()];
        let q = &req.metadata();
        m.metadata.recursion_desired = q.recursion_desired;
        m.metadata.checking_disabled = q.checking_disabled;
        if !req.do_bit() && !q.authentic_data {
            m.metadata.authentic_data = false;
        }
        Ok(Response::new(m, plugin))
    }

    /// The usable entry for this question: fresh, or expired within the serve_stale window.
    /// Denials first, as CoreDNS looks in its denial cache first, except that a cached SERVFAIL
    /// does not hide a usable success entry.
    fn pick<'f>(
        &self,
        found: Option<&'f store::Found>,
        req: &Request,
        now: u64,
    ) -> Option<(&'f Arc<Entry>, Class)> {
        let [success, denial] = found?;
        let stale = self.cfg.stale_up_to.as_secs() as i64;
        let usable = |e: &&Arc<Entry>| {
            let t = e.ttl(now);
            e.matches(req) && (t > 0 || (stale > 0 && -t < stale))
        };
        if let Some(d) = denial.as_ref().filter(usable) {
            if d.servfail
                && let Some(s) = success.as_ref().filter(usable)
            {
                return Some((s, Class::Success));
            }
            return Some((d, Class::Denial));
        }
        success.as_ref().filter(usable).map(|s| (s, Class::Success))
    }

    fn lookup(&self, key: u64, req: &Request, now: u64) -> Option<(Arc<Entry>, Class)> {
        self.store.with(key, |found| {
            self.pick(found, req, now)
                .map(|(e, class)| (e.clone(), class))
        })
    }

    /// The hit path, run under the shard's read lock.
    fn judge(&self, found: Option<&store::Found>, req: &Request, now: u64) -> Verdict {
        let Some((e, class)) = self.pick(found, req, now) else {
            return Verdict::Miss;
        };
        let ttl = e.ttl(now);
        if ttl <= 0 {
            return Verdict::Stale(e.clone(), class);
        }
        let prefetch = self.should_prefetch(e, now).then(|| e.clone());
        let ttl = if self.cfg.keepttl {
            e.orig_ttl
        } else {
            ttl as u32
        };
        Verdict::Fresh(respond(e, req, ttl), class, prefetch)
    }

    fn should_prefetch(&self, e: &Entry, now: u64) -> bool {
        if self.cfg.prefetch == 0 {
            return false;
        }
        let hits = e
            .freq
            .update(self.cfg.prefetch_window.as_millis() as u64, now);
        // Computed in floating point as CoreDNS does, so the threshold rounds the same way.
        let threshold = (self.cfg.percentage as f64 / 100.0 * e.orig_ttl as f64).ceil() as i64;
        hits >= self.cfg.prefetch && e.ttl(now) <= threshold
    }

    /// How long an answer of this kind is cached, from its own TTLs (CoreDNS's `computeTTL`).
    fn duration(&self, kind: Kind, msg_ttl: u32) -> Duration {
        let clamp =
            |ttl: u32, min: u32, max: u32| Duration::from_secs(ttl.max(min).min(max) as u64);
        match kind {
            Kind::NameError | Kind::NoData => clamp(msg_ttl, self.cfg.minnttl, self.cfg.nttl),
            Kind::ServerError => self.cfg.failttl,
            _ => clamp(msg_ttl, self.cfg.minpttl, self.cfg.pttl),
        }
    }

    /// An answer from the rest of the chain: cache it when CoreDNS would, and give the client
    /// the same answer with every TTL set to the cached duration (CoreDNS does this "to avoid
    /// jarring TTL experience 1799 -> 8").
    fn absorb(&self, req: &Request, key: u64, outcome: Outcome, prefetch: bool) -> Outcome {
        let resp = outcome?;
        let unix = unix_seconds();
        // An answer still in wire form (a reply `forward` passed on as it came) is cached from
        // its own bytes: no parse, no encode.
        let plain = resp
            .wire()
            .and_then(|w| wire::layout(w, unix))
            .filter(|l| l.plain);
        let plugin = resp.plugin;
        let resp = match plain {
            Some(l) => match resp.into_wire() {
                Ok(w) => return self.absorb_wire(req, key, plugin, w, l, prefetch),
                Err(resp) => resp,
            },
            None => resp,
        };
        let mut m = resp.into_message();
        let do_bit = req.do_bit();
        let q = &req.metadata();
        // OPT is hop-by-hop and never cached (RFC 6891 §6.1.1); the server gives the client
        // its own. A TSIG signature belongs to the upstream exchange.
        let edns = m.edns.take();
        let signature = m.signature.take();
        let extended_rcode = m.metadata.response_code.high() != 0;
        let mut encoded = match extended_rcode {
            false => m.to_vec().ok(),
            true => None,
        };
        let layout = encoded.as_deref().and_then(|w| wire::layout(w, unix));
        let kind = typify(&m, do_bit, layout.as_ref().is_some_and(|l| l.expired_sig));
        let duration = self.duration(kind, wire::minimal_ttl(&m, kind));
        let ttl = duration.as_secs().min(u32::MAX as u64) as u32;

        if let (Some(w), Some(l)) = (encoded.as_mut(), layout.as_ref()) {
            wire::set_ttls(w, &l.ttl_offsets, ttl);
            if !m.metadata.truncation && kind.cacheable() && !duration.is_zero() {
                // CoreDNS's `state.Match`: the answer must be for the question asked.
                self.store_answer(
                    req,
                    key,
                    question_is(&m, req),
                    kind,
                    w,
                    l.ttl_offsets.clone(),
                    l.qname_end,
                    ttl,
                );
            }
        }
        if prefetch {
            return Err(crate::plugin::Failure::no_reply());
        }
        // RFC 6840 §5.7-5.8: AD only for clients that asked for DNSSEC or set AD themselves.
        let keep_ad = do_bit || q.authentic_data;
        if let (Some(mut w), Some(_)) = (encoded, layout) {
            if !keep_ad {
                w[3] &= !0x20;
            }
            return Ok(Response::from_wire(w, plugin));
        }
        for r in m
            .answers
            .iter_mut()
            .chain(m.authorities.iter_mut())
            .chain(m.additionals.iter_mut())
        {
            r.ttl = ttl;
        }
        if !keep_ad {
            m.metadata.authentic_data = false;
        }
        if extended_rcode {
            m.edns = edns;
        }
        m.signature = signature;
        Ok(Response::new(m, plugin))
    }

    /// [`Inner::absorb`] for an answer in wire form whose walk found nothing that needs
    /// hickory (no OPT, no TSIG): the same rules, read from the bytes.
    fn absorb_wire(
        &self,
        req: &Request,
        key: u64,
        plugin: &'static str,
        mut w: Vec<u8>,
        l: wire::Layout,
        prefetch: bool,
    ) -> Outcome {
        let do_bit = req.do_bit();
        let kind = l.shape(&w).typify(do_bit, l.expired_sig);
        let duration = self.duration(kind, l.minimal_ttl(kind));
        let ttl = duration.as_secs().min(u32::MAX as u64) as u32;
        wire::set_ttls(&mut w, &l.ttl_offsets, ttl);
        let truncated = w[2] & 0x02 != 0;
        if !truncated && kind.cacheable() && !duration.is_zero() {
            // CoreDNS's `state.Match`: the answer must be for the question asked.
            let matches = l.qtype == u16::from(req.qtype())
                && match req.qname_wire() {
                    Some(asked) => w[12..l.qname_end].eq_ignore_ascii_case(asked),
                    None => {
                        hickory_proto::op::Message::from_vec(&w).is_ok_and(|m| question_is(&m, req))
                    }
                };
            let qname_end = l.qname_end;
            self.store_answer(req, key, matches, kind, &w, l.ttl_offsets, qname_end, ttl);
        }
        if prefetch {
            return Err(crate::plugin::Failure::no_reply());
        }
        // RFC 6840 §5.7-5.8: AD only for clients that asked for DNSSEC or set AD themselves.
        if !do_bit && !req.metadata().authentic_data {
            w[3] &= !0x20;
        }
        Ok(Response::from_wire(w, plugin))
    }

    #[allow(clippy::too_many_arguments)]
    fn store_answer(
        &self,
        req: &Request,
        key: u64,
        matches: bool,
        kind: Kind,
        w: &[u8],
        ttl_offsets: Vec<u16>,
        qname_end: usize,
        ttl: u32,
    ) {
        let h = self.metrics.for_server(&req.server);
        if !matches {
            h.drops.inc();
            return;
        }
        let class = if kind.is_denial() {
            Class::Denial
        } else {
            Class::Success
        };
        let except = match class {
            Class::Success => &self.cfg.pexcept,
            Class::Denial => &self.cfg.nexcept,
        };
        if longest_match(except, req.name()).is_some() {
            return;
        }
        let entry = Arc::new(Entry::new(
            w,
            req.name(),
            ttl_offsets.into_boxed_slice(),
            qname_end,
            req.qtype(),
            req.qclass(),
            kind == Kind::ServerError,
            self.clock.now_ms(),
            ttl,
        ));
        if self.store.insert(key, class, entry) {
            h.evictions[class as usize].inc();
        }
        h.entries[Class::Success as usize].set(self.store.len(Class::Success) as i64);
        h.entries[Class::Denial as usize].set(self.store.len(Class::Denial) as i64);
    }
}

/// Whether `m` has exactly the question `req` asked (CoreDNS's `state.Match`).
fn question_is(m: &hickory_proto::op::Message, req: &Request) -> bool {
    m.queries.len() == 1
        && m.queries[0].query_type == req.qtype()
        && crate::plugin::request::lowercase_name(&m.queries[0].name) == req.name()
}

/// A hit: the cached bytes with this client's header bits, question spelling and `ttl`.
fn respond(e: &Entry, req: &Request, ttl: u32) -> Response {
    // Room for the OPT record the server may add, so that does not reallocate; a buffer the
    // listener sent earlier when there is one.
    let cached = e.wire();
    let mut w = crate::plugin::wirebuf::take(cached.len() + 11);
    w.extend_from_slice(cached);
    let flags = wire::hit_flags([w[2], w[3]], req);
    w[2] = flags[0];
    w[3] = flags[1];
    wire::copy_qname(&mut w, e.qname_end, req);
    wire::set_ttls(&mut w, &e.ttl_offsets, ttl);
    Response::from_wire(w, NAME)
}

/// The plugin's name, one string for `name()` and for the answers it writes: `prometheus`
/// finds a plugin's response counters by the string's address before comparing text.
static NAME: &str = "cache";

impl Plugin for Cache {
    fn name(&self) -> &'static str {
        NAME
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let inner = &*self.inner;
        if !inner.every_name && longest_match(&inner.cfg.zones, req.name()).is_none() {
            return next.serve(req);
        }
        let h = inner.metrics.for_server(&req.server);
        h.requests.inc();
        let key = store::key(
            req.name(),
            req.qtype(),
            req.qclass(),
            req.do_bit(),
            req.metadata().checking_disabled,
        );
        let now = inner.clock.now_ms();
        match inner.store.with(key, |found| inner.judge(found, req, now)) {
            Verdict::Fresh(resp, class, prefetch) => {
                h.hits[class as usize].inc();
                if let Some(e) = prefetch {
                    self.refresh(&e, req, key, next, now, &h);
                }
                Served::Ready(Ok(resp))
            }
            Verdict::Stale(e, class) => {
                h.hits[class as usize].inc();
                self.stale(e, req, key, next, now, &h)
            }
            Verdict::Miss => {
                h.misses.inc();
                drop(h);
                self.miss(req, key, next)
            }
        }
    }
}
