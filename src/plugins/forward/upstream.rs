//! One upstream server and the ways to reach it: a few shared UDP sockets with queries in
//! flight matched by ID and question, and reused TCP or TLS connections.
//!
//! Why shared UDP sockets instead of CoreDNS's one connection per query in flight: a socket
//! per query costs two system calls and a file descriptor each time and caps throughput; a small
//! fixed set of connected sockets, with a random ID per query and the reply's question checked
//! against the query's, gives the same protection against spoofed replies (RFC 5452 §9.1 asks
//! for ID and question matching; the connected socket adds source address and port) at a
//! fraction of the cost. Queries in flight are bounded per socket, so a flood towards a dead
//! upstream holds a fixed amount of memory and fails over instead of piling up.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{Notify, watch};

use super::metrics::UpstreamMetrics;
use super::reply::{self, Plain, Question};
use super::setup::{Transport, UpstreamSpec};
use crate::plugin::Request;
use crate::server::mmsg::RecvBatch;
use tokio::io::Interest;

/// The bounds of the adaptive TCP/TLS dial timeout (CoreDNS's `minDialTimeout`/`maxDialTimeout`).
const MIN_DIAL_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// A health check's read and write timeout (CoreDNS's health checker: 1s).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
/// Connected UDP sockets per upstream.
const UDP_SOCKETS: usize = 4;
/// Queries in flight per UDP socket: beyond this, the query fails over at once.
const MAX_IN_FLIGHT: usize = 4096;

/// The transport of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Udp,
    Tcp,
    Tls,
}

impl Wire {
    fn metric_index(self) -> usize {
        match self {
            Wire::Udp => 0,
            Wire::Tcp => 1,
            Wire::Tls => 2,
        }
    }

    fn net(self) -> &'static str {
        match self {
            Wire::Udp => "udp",
            Wire::Tcp | Wire::Tls => "tcp",
        }
    }
}

/// An upstream's answer to our question: its bytes when [`reply::walk`] accepted them, else
/// hickory's parse of them.
#[derive(Debug)]
pub enum Reply {
    Wire { bytes: Vec<u8>, plain: Plain },
    Parsed(Message),
}

impl Reply {
    /// Read `bytes`, which carry the ID we are waiting for: `Ok(None)` when they do not answer
    /// `question` (keep waiting), an error when they do not parse.
    fn read(
        bytes: &[u8],
        question: &Question,
        addr: SocketAddr,
    ) -> Result<Option<Reply>, ExchangeError> {
        if let Some(plain) = reply::walk(bytes, question) {
            // Room for the OPT record the server writes for an EDNS client, so that does not
            // reallocate.
            let mut copy = Vec::with_capacity(bytes.len() + 11);
            copy.extend_from_slice(bytes);
            return Ok(Some(Reply::Wire { bytes: copy, plain }));
        }
        let msg = Message::from_vec(bytes)
            .map_err(|e| ExchangeError::Malformed(format!("dns: bad reply from {addr}: {e}")))?;
        Ok(question_matches(&msg, question).then_some(Reply::Parsed(msg)))
    }

    /// The rcode: a wire-form reply has no extended rcode (its OPT, if any, has none).
    pub fn rcode(&self) -> ResponseCode {
        match self {
            Reply::Wire { bytes, .. } => ResponseCode::from(0, bytes[3] & 0x0f),
            Reply::Parsed(m) => m.metadata.response_code,
        }
    }

    pub fn truncated(&self) -> bool {
        match self {
            Reply::Wire { bytes, .. } => bytes[2] & 0x02 != 0,
            Reply::Parsed(m) => m.metadata.truncation,
        }
    }

    pub fn no_answers(&self) -> bool {
        match self {
            Reply::Wire { bytes, .. } => bytes[6] == 0 && bytes[7] == 0,
            Reply::Parsed(m) => m.answers.is_empty(),
        }
    }
}

/// Why an attempt produced no answer.
#[derive(Debug, Clone)]
pub enum ExchangeError {
    /// A reused connection turned out closed by the upstream: retry on a new one.
    CachedClosed,
    Timeout {
        net: &'static str,
        addr: SocketAddr,
    },
    Io(String),
    Malformed(String),
    /// The UDP reply was longer than the receive buffer: ask again over TCP.
    TooLong,
    /// Too many queries already wait for this upstream.
    Overloaded(SocketAddr),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::CachedClosed => f.write_str("cached connection was closed by peer"),
            ExchangeError::Timeout { net, addr } => write!(f, "read {net} {addr}: i/o timeout"),
            ExchangeError::Io(e) | ExchangeError::Malformed(e) => f.write_str(e),
            ExchangeError::TooLong => f.write_str("reply longer than the UDP buffer"),
            ExchangeError::Overloaded(addr) => {
                write!(f, "too many queries in flight to {addr}")
            }
        }
    }
}

/// What a health check sends: `DOMAIN IN NS`, RD set unless `no_rec`.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    pub interval: Duration,
    pub domain: Name,
    pub recursion_desired: bool,
    /// Over TCP (`force_tcp`); TLS upstreams are always checked over TLS.
    pub tcp: bool,
}

/// Connection-reuse settings shared by a stanza's upstreams.
#[derive(Clone, Copy, Debug)]
pub struct Reuse {
    pub expire: Duration,
    pub max_age: Duration,
    pub max_idle: usize,
}

pub struct Upstream {
    pub addr: SocketAddr,
    /// The `to` label: `IP:PORT`.
    pub label: String,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    fails: AtomicU32,
    probing: AtomicBool,
    health: HealthCheck,
    reuse: Reuse,
    /// One set of UDP sockets per thread that sends queries: each listener thread runs its own
    /// runtime, and a socket set whose reader lives on the same thread answers its queries
    /// without waking another thread.
    udp: Mutex<Vec<(ThreadId, Arc<UdpPool>)>>,
    udp_next: AtomicUsize,
    idle: Mutex<Vec<Idle>>,
    /// Moving average of dial times, in nanoseconds (CoreDNS's `avgDialTime`).
    avg_dial: AtomicU64,
    pub metrics: UpstreamMetrics,
}

impl Upstream {
    pub fn new(
        spec: &UpstreamSpec,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        health: HealthCheck,
        reuse: Reuse,
        metrics: UpstreamMetrics,
    ) -> Self {
        Upstream {
            addr: spec.addr,
            label: spec.label(),
            tls: if spec.transport == Transport::Tls {
                tls
            } else {
                None
            },
            fails: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            health,
            reuse,
            udp: Mutex::new(Vec::new()),
            udp_next: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            avg_dial: AtomicU64::new(0),
            metrics,
        }
    }

    #[cfg(test)]
    pub fn set_fails(&self, n: u32) {
        self.fails.store(n, Ordering::Relaxed);
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Down when more health checks in a row failed than `max_fails` allows; never when
    /// `max_fails` is 0 (CoreDNS's `Proxy.Down`).
    pub fn down(&self, max_fails: u32) -> bool {
        max_fails != 0 && self.fails.load(Ordering::Relaxed) > max_fails
    }

    /// Send `wire` (a query whose first two bytes get a fresh ID) and wait up to `timeout` for
    /// the reply to `question`.
    pub async fn exchange(
        &self,
        wire: Wire,
        query: &mut [u8],
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        match wire {
            Wire::Udp => self.exchange_udp(query, req, timeout).await,
            // Boxed: a TLS handshake's state is large, and would otherwise bloat every UDP
            // query's future, which is moved into its task.
            Wire::Tcp | Wire::Tls => {
                Box::pin(self.exchange_stream(wire, query, req, timeout)).await
            }
        }
    }

    // ---- UDP ----

    fn udp_pool(&self) -> Result<Arc<UdpPool>, ExchangeError> {
        let me = std::thread::current().id();
        let mut pools = self.udp.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, pool)) = pools.iter().find(|(t, _)| *t == me) {
            self.metrics.cache(0, true);
            return Ok(pool.clone());
        }
        let pool = Arc::new(
            UdpPool::open(self.addr)
                .map_err(|e| ExchangeError::Io(format!("dial udp {}: {e}", self.addr)))?,
        );
        self.metrics.cache(0, false);
        pools.push((me, pool.clone()));
        Ok(pool)
    }

    async fn exchange_udp(
        &self,
        query: &mut [u8],
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        let pool = self.udp_pool()?;
        let pool = &*pool;
        let n = self.udp_next.fetch_add(1, Ordering::Relaxed);
        let slot = &pool.slots[n % pool.slots.len()];
        let deadline = tokio::time::Instant::now() + timeout;
        let id = slot
            .register(Question::of(req), deadline)
            .ok_or(ExchangeError::Overloaded(self.addr))?;
        // Removes the entry however this future ends: answered, timed out, or dropped.
        let mut guard = InFlightGuard {
            slot,
            id,
            taken: false,
        };
        query[..2].copy_from_slice(&id.to_be_bytes());
        if crate::server::deferred::active() {
            // Served in a listener's batch: the query leaves with the batch's others in one
            // system call (a failure comes back through `Target::failed`).
            let target: Arc<dyn crate::server::deferred::Target> = slot.clone();
            let _ = crate::server::deferred::send(&target, id, query.to_vec());
        } else if slot.sock.try_send(query).is_err() {
            // Boxed: rare (a full send buffer), and large.
            Box::pin(slot.sock.send(query))
                .await
                .map_err(|e| ExchangeError::Io(format!("write udp {}: {e}", self.addr)))?;
        }
        // The reader task fails the query at its deadline (see `read_replies`).
        match std::future::poll_fn(|cx| slot.poll_reply(&mut guard, cx)).await {
            Some(result) => result,
            None => Err(ExchangeError::Io(format!("read udp {}: closed", self.addr))),
        }
    }

    // ---- TCP and TLS ----

    /// The most recently used idle connection that has not expired, with its birth time.
    fn take_idle(&self) -> Option<(Box<dyn Stream>, Instant)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            if !c.expired(&self.reuse) {
                return Some((c.conn, c.born));
            }
        }
        None
    }

    fn put_idle(&self, conn: Box<dyn Stream>, born: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // The oldest sit at the front: drop the expired ones while here.
        let reuse = self.reuse;
        idle.retain(|c| !c.expired(&reuse));
        if self.reuse.max_idle != 0 && idle.len() >= self.reuse.max_idle {
            return;
        }
        let c = Idle {
            conn,
            since: Instant::now(),
            born,
        };
        if !c.expired(&reuse) {
            idle.push(c);
        }
    }

    fn dial_timeout(&self) -> Duration {
        let avg = Duration::from_nanos(self.avg_dial.load(Ordering::Relaxed));
        if avg < MIN_DIAL_TIMEOUT {
            MIN_DIAL_TIMEOUT
        } else if avg < MAX_DIAL_TIMEOUT / 2 {
            avg * 2
        } else {
            MAX_DIAL_TIMEOUT
        }
    }

    fn record_dial(&self, took: Duration) {
        // avg += (observed - avg) / 4, as CoreDNS's cumulative average.
        let avg = self.avg_dial.load(Ordering::Relaxed) as i128;
        let next = avg + (took.as_nanos() as i128 - avg) / 4;
        self.avg_dial
            .store(next.clamp(0, u64::MAX as i128) as u64, Ordering::Relaxed);
    }

    async fn dial(&self, wire: Wire, limit: Duration) -> Result<Box<dyn Stream>, ExchangeError> {
        let start = Instant::now();
        let timeout = self.dial_timeout().min(limit);
        let result = tokio::time::timeout(timeout, async {
            let tcp = TcpStream::connect(self.addr).await?;
            let _ = tcp.set_nodelay(true);
            match (&self.tls, wire) {
                (Some((config, name)), Wire::Tls) => {
                    let connector = tokio_rustls::TlsConnector::from(config.clone());
                    let tls = connector.connect(name.clone(), tcp).await?;
                    Ok::<Box<dyn Stream>, io::Error>(Box::new(tls))
                }
                _ => Ok(Box::new(tcp) as Box<dyn Stream>),
            }
        })
        .await;
        self.record_dial(start.elapsed());
        match result {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(ExchangeError::Io(format!("dial tcp {}: {e}", self.addr))),
            Err(_) => Err(ExchangeError::Io(format!(
                "dial tcp {}: i/o timeout",
                self.addr
            ))),
        }
    }

    async fn exchange_stream(
        &self,
        wire: Wire,
        query: &mut [u8],
        req: &Request,
        timeout: Duration,
    ) -> Result<Reply, ExchangeError> {
        let deadline = Instant::now() + timeout;
        let (mut conn, born, cached) = match self.take_idle() {
            Some((c, born)) => {
                self.metrics.cache(wire.metric_index(), true);
                (c, born, true)
            }
            None => {
                self.metrics.cache(wire.metric_index(), false);
                let c = self.dial(wire, timeout).await?;
                (c, Instant::now(), false)
            }
        };
        let id: u16 = rand::random();
        query[..2].copy_from_slice(&id.to_be_bytes());
        let mut frame = Vec::with_capacity(query.len() + 2);
        frame.extend_from_slice(&(query.len() as u16).to_be_bytes());
        frame.extend_from_slice(query);
        let remaining = deadline.saturating_duration_since(Instant::now());
        let io = async {
            conn.write_all(&frame).await?;
            conn.flush().await?;
            loop {
                let mut len = [0u8; 2];
                conn.read_exact(&mut len).await?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                conn.read_exact(&mut buf).await?;
                if buf.len() < 12 || buf[..2] != id.to_be_bytes() {
                    // An out-of-order reply to an earlier query on this connection.
                    continue;
                }
                return Ok::<Vec<u8>, io::Error>(buf);
            }
        };
        let bytes = match tokio::time::timeout(remaining, io).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                if cached
                    && matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionAborted
                    )
                {
                    return Err(ExchangeError::CachedClosed);
                }
                return Err(ExchangeError::Io(format!(
                    "read {} {}: {e}",
                    wire.net(),
                    self.addr
                )));
            }
            Err(_) => {
                return Err(ExchangeError::Timeout {
                    net: wire.net(),
                    addr: self.addr,
                });
            }
        };
        let Some(reply) = Reply::read(&bytes, &Question::of(req), self.addr)? else {
            return Err(ExchangeError::Malformed(format!(
                "dns: reply from {} does not match the question",
                self.addr
            )));
        };
        self.put_idle(conn, born);
        Ok(reply)
    }

    // ---- health ----

    /// Start probing after a failed exchange, unless a probe already runs (CoreDNS's
    /// `up.Probe.Do`): check at once, then every interval until a check succeeds.
    pub fn start_probe(self: &Arc<Self>) {
        if self.health.interval.is_zero() || self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Upstream> = Arc::downgrade(self);
        let interval = self.health.interval;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.probing.store(false, Ordering::Release);
            return;
        };
        handle.spawn(async move {
            loop {
                // Only a live plugin is probed: a reload that drops it ends this task.
                let Some(up) = weak.upgrade() else {
                    return;
                };
                match up.check().await {
                    Ok(()) => {
                        up.fails.store(0, Ordering::Relaxed);
                        up.probing.store(false, Ordering::Release);
                        return;
                    }
                    // CoreDNS logs nothing here; the failures show in
                    // coredns_proxy_healthcheck_failures_total.
                    Err(_) => {
                        up.metrics.hc_failures.inc();
                        up.fails.fetch_add(1, Ordering::Relaxed);
                    }
                }
                drop(up);
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// One health check on a fresh connection: any reply that parses as DNS is healthy, even
    /// REFUSED or SERVFAIL; only network errors and silence count as failures.
    pub async fn check(&self) -> Result<(), String> {
        let mut q = Message::query();
        q.metadata.id = rand::random();
        q.metadata.recursion_desired = self.health.recursion_desired;
        q.queries
            .push(Query::query(self.health.domain.clone(), RecordType::NS));
        let wire = q.to_vec().map_err(|e| e.to_string())?;
        let reply = if self.tls.is_some() || self.health.tcp {
            let kind = if self.tls.is_some() {
                Wire::Tls
            } else {
                Wire::Tcp
            };
            let mut conn = self
                .dial(kind, HEALTH_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let mut frame = (wire.len() as u16).to_be_bytes().to_vec();
            frame.extend_from_slice(&wire);
            tokio::time::timeout(HEALTH_TIMEOUT, async {
                conn.write_all(&frame).await?;
                let mut len = [0u8; 2];
                conn.read_exact(&mut len).await?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                conn.read_exact(&mut buf).await?;
                Ok::<Vec<u8>, io::Error>(buf)
            })
            .await
            .map_err(|_| format!("read tcp {}: i/o timeout", self.addr))?
            .map_err(|e| format!("read tcp {}: {e}", self.addr))?
        } else {
            let bind = any_port_for(self.addr);
            let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
            sock.connect(self.addr).await.map_err(|e| e.to_string())?;
            sock.send(&wire)
                .await
                .map_err(|e| format!("write udp {}: {e}", self.addr))?;
            let mut buf = vec![0u8; 65535];
            let n = tokio::time::timeout(HEALTH_TIMEOUT, sock.recv(&mut buf))
                .await
                .map_err(|_| format!("read udp {}: i/o timeout", self.addr))?
                .map_err(|e| format!("read udp {}: {e}", self.addr))?;
            buf.truncate(n);
            buf
        };
        Message::from_vec(&reply)
            .map(|_| ())
            .map_err(|e| format!("dns: bad health check reply: {e}"))
    }
}

/// Whether `msg` answers `question`. A header-only error reply (FORMERR and the like, which
/// some servers send without the question) is accepted when the ID already matched.
fn question_matches(msg: &Message, question: &Question) -> bool {
    // A query coming back (QR clear: a reflection, or a forwarding loop) is no answer.
    if msg.metadata.message_type != hickory_proto::op::MessageType::Response {
        return false;
    }
    match msg.queries.as_slice() {
        [q] => {
            u16::from(q.query_type) == question.qtype
                && u16::from(q.query_class) == question.qclass
                && question.same_name(&q.name)
        }
        [] => msg.metadata.response_code != hickory_proto::op::ResponseCode::NoError,
        _ => false,
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

struct Idle {
    conn: Box<dyn Stream>,
    since: Instant,
    born: Instant,
}

impl Idle {
    fn expired(&self, reuse: &Reuse) -> bool {
        self.since.elapsed() >= reuse.expire
            || (!reuse.max_age.is_zero() && self.born.elapsed() >= reuse.max_age)
    }
}

// ---- the UDP socket set ----

struct UdpPool {
    slots: Vec<Arc<UdpSlot>>,
    /// Dropping the pool (with its upstream) drops this sender, which ends the readers.
    _stop: watch::Sender<()>,
}

type Delivery = Result<Reply, ExchangeError>;

/// A query waiting for its reply. The reader task leaves the reply here and wakes the query's
/// task: no channel to allocate per query.
struct Pending {
    question: Question,
    reply: Option<Delivery>,
    waker: Option<Waker>,
    /// When the query gives up: the reader task then answers it with a timeout.
    deadline: tokio::time::Instant,
}

struct UdpSlot {
    sock: UdpSocket,
    addr: SocketAddr,
    in_flight: Mutex<HashMap<u16, Pending, BuildHasherDefault<IdHasher>>>,
    /// The reader task checks deadlines (it does while queries are in flight); when it does
    /// not, a new query wakes it through `wake_reader`.
    sweeping: AtomicBool,
    wake_reader: Notify,
}

impl UdpPool {
    fn open(addr: SocketAddr) -> io::Result<UdpPool> {
        let (stop, _) = watch::channel(());
        let mut slots = Vec::with_capacity(UDP_SOCKETS);
        for _ in 0..UDP_SOCKETS {
            let bind = any_port_for(addr);
            let std = std::net::UdpSocket::bind(bind)?;
            // Connected: the kernel drops datagrams from any other address and port.
            std.connect(addr)?;
            std.set_nonblocking(true)?;
            // Room for a burst of answers: up to `max_concurrent` queries can be in flight, and
            // the default buffer (about 300 small datagrams) overflowed under dnsperf, each drop
            // a client left to time out. 4 MiB, capped by net.core.rmem_max.
            let _ = socket2::SockRef::from(&std).set_recv_buffer_size(4 << 20);
            let sock = UdpSocket::from_std(std)?;
            let slot = Arc::new(UdpSlot {
                sock,
                addr,
                in_flight: Mutex::new(HashMap::default()),
                sweeping: AtomicBool::new(false),
                wake_reader: Notify::new(),
            });
            tokio::spawn(read_replies(slot.clone(), stop.subscribe()));
            slots.push(slot);
        }
        Ok(UdpPool { slots, _stop: stop })
    }
}

impl UdpSlot {
    /// A fresh random ID for `question`, or None when this socket has too much in flight.
    fn register(&self, question: Question, deadline: tokio::time::Instant) -> Option<u16> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_IN_FLIGHT {
            return None;
        }
        let id = loop {
            let id: u16 = rand::random();
            if let std::collections::hash_map::Entry::Vacant(v) = map.entry(id) {
                v.insert(Pending {
                    question,
                    reply: None,
                    waker: None,
                    deadline,
                });
                break id;
            }
        };
        drop(map);
        if !self.sweeping.load(Ordering::SeqCst) {
            self.wake_reader.notify_one();
        }
        Some(id)
    }

    /// Answer every query whose deadline has passed with a timeout.
    fn expire(&self, now: tokio::time::Instant) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut wakers = Vec::new();
        for p in map.values_mut() {
            if p.reply.is_none() && p.deadline <= now {
                p.reply = Some(Err(ExchangeError::Timeout {
                    net: "udp",
                    addr: self.addr,
                }));
                wakers.extend(p.waker.take());
            }
        }
        drop(map);
        for w in wakers {
            w.wake();
        }
    }

    /// The reply to the guarded query once it is there (taking the entry out of the map);
    /// `None` when the entry is gone.
    fn poll_reply(
        &self,
        guard: &mut InFlightGuard<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Delivery>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(&guard.id) else {
            return Poll::Ready(None);
        };
        if p.reply.is_some() {
            guard.taken = true;
            return Poll::Ready(map.remove(&guard.id).and_then(|p| p.reply));
        }
        if !p.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            p.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    fn deliver(&self, bytes: &[u8]) {
        if bytes.len() < 12 {
            return;
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        // Nobody waits for it (late, already timed out, or forged), or it was answered already.
        let Some(pending) = map.get_mut(&id).filter(|p| p.reply.is_none()) else {
            return;
        };
        let reply = match Reply::read(bytes, &pending.question, self.addr) {
            Ok(Some(reply)) => Ok(reply),
            // Right ID, wrong question: a spoofing attempt or a confused upstream. Keep
            // waiting for the real answer.
            Ok(None) => return,
            Err(e) => Err(e),
        };
        pending.reply = Some(reply);
        let waker = pending.waker.take();
        drop(map);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Fail one query now (its query could not be sent, or its reply could not be read), as
    /// long as nothing answered it yet.
    fn fail(&self, id: u16, err: ExchangeError) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = map.get_mut(&id).filter(|p| p.reply.is_none()) else {
            return;
        };
        p.reply = Some(Err(err));
        let waker = p.waker.take();
        drop(map);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A reply longer than the receive buffer arrived cut short: if it is a reply to a query
    /// in flight (ID, QR and question as far as they go), that query goes to TCP at once rather
    /// than waiting for its timeout.
    fn deliver_cut(&self, bytes: &[u8]) {
        if bytes.len() < 12 || bytes[2] & 0x80 == 0 || bytes[4..6] != [0, 1] {
            return;
        }
        let id = u16::from_be_bytes([bytes[0], bytes[1]]);
        let asked = {
            let map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&id).filter(|p| p.reply.is_none()) {
                Some(p) => p.question,
                None => return,
            }
        };
        let name = asked.name();
        let Some(got) = bytes.get(12..12 + name.len() + 4) else {
            return;
        };
        let fixed = [
            (asked.qtype >> 8) as u8,
            asked.qtype as u8,
            (asked.qclass >> 8) as u8,
            asked.qclass as u8,
        ];
        if got[..name.len()].eq_ignore_ascii_case(name) && got[name.len()..] == fixed {
            self.fail(id, ExchangeError::TooLong);
        }
    }

    /// The upstream refused (ICMP port unreachable): every query waiting on this socket is
    /// lost, so fail them now rather than at their timeout.
    fn fail_all(&self, why: &io::Error) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut wakers = Vec::new();
        for p in map.values_mut().filter(|p| p.reply.is_none()) {
            p.reply = Some(Err(ExchangeError::Io(format!(
                "read udp {}: {why}",
                self.addr
            ))));
            wakers.extend(p.waker.take());
        }
        drop(map);
        for w in wakers {
            w.wake();
        }
    }
}

impl crate::server::deferred::Target for UdpSlot {
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.sock.as_raw_fd()
    }

    fn failed(&self, id: u16, err: io::Error) {
        self.fail(
            id,
            ExchangeError::Io(format!("write udp {}: {err}", self.addr)),
        );
    }
}

/// Query IDs are random already: spreading them over the 64-bit hash by one multiplication is
/// all the map needs (SipHash, the default, costs more than the rest of the lookup).
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

struct InFlightGuard<'a> {
    slot: &'a UdpSlot,
    id: u16,
    /// The reply was taken, and the entry with it.
    taken: bool,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut map = self
            .slot
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.remove(&self.id);
    }
}

/// Replies read per system call on one upstream socket.
const REPLY_BATCH: usize = 32;
/// The largest UDP reply read whole: 4 KiB, the largest EDNS buffer clients commonly offer
/// (the DNS flag day's 1232 is now the usual). A longer reply arrives cut and its query is
/// asked again over TCP (`ExchangeError::TooLong`). 32 x 4 KiB per socket, where a 64 KiB
/// buffer per read used to be.
const REPLY_BUFFER: usize = 4096;

/// How often the reader task looks for queries past their deadline while any is in flight: a
/// UDP query times out up to this much after its read timeout.
const SWEEP: Duration = Duration::from_millis(20);

/// Receive the socket's replies and hand each to its query; fail queries past their deadline.
///
/// Why deadlines are kept here rather than with a timer per query: registering and removing a
/// timer was a large share of what a forwarded query cost; one timer per socket, re-armed every
/// `SWEEP` while queries are in flight, does the same work.
async fn read_replies(slot: Arc<UdpSlot>, mut stop: watch::Receiver<()>) {
    use std::os::fd::AsRawFd;
    let fd = slot.sock.as_raw_fd();
    let mut batch = RecvBatch::sized(REPLY_BATCH, REPLY_BUFFER);
    let sweep = tokio::time::sleep(SWEEP);
    tokio::pin!(sweep);
    loop {
        // Cleared before looking, so that a query registered after the look sees it clear
        // and wakes this task.
        slot.sweeping.store(false, Ordering::SeqCst);
        let busy = !slot
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if busy {
            slot.sweeping.store(true, Ordering::SeqCst);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = &mut sweep, if busy => {
                let now = tokio::time::Instant::now();
                slot.expire(now);
                sweep.as_mut().reset(now + SWEEP);
            }
            _ = slot.wake_reader.notified(), if !busy => {
                sweep.as_mut().reset(tokio::time::Instant::now() + SWEEP);
            }
            // ERROR too: an ICMP port unreachable sets only EPOLLERR, and the read that reports
            // it is what fails the queries at once instead of at their timeout.
            r = slot.sock.ready(Interest::READABLE | Interest::ERROR) => {
                let Ok(ready) = r else {
                    continue;
                };
                // One interest at a time: tokio clears the readiness of a single interest when
                // the read would block (a combined one it never clears).
                let interest = if ready.is_error() {
                    Interest::ERROR
                } else {
                    Interest::READABLE
                };
                // Drain what is queued, a batch per system call, before waiting again.
                loop {
                    match slot.sock.try_io(interest, || batch.recv(fd)) {
                        Ok(n) => {
                            for i in 0..n {
                                match batch.get_cut(i) {
                                    Some((bytes, false)) => slot.deliver(bytes),
                                    Some((bytes, true)) => slot.deliver_cut(bytes),
                                    None => {}
                                }
                            }
                            if n < REPLY_BATCH {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            // Read on: replies queued behind the error still count.
                            slot.fail_all(&e);
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Upstream({})", self.label)
    }
}

/// The wildcard address of `upstream`'s family with port 0: where a socket to it binds.
fn any_port_for(upstream: SocketAddr) -> SocketAddr {
    let ip = if upstream.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(name: &str) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
    }

    fn asked(name: &str) -> Question {
        Question::new(&Name::from_ascii(name).unwrap(), 1, 1)
    }

    #[tokio::test]
    async fn in_flight_is_bounded_and_cleaned_up() {
        // A silent upstream: the port is held, nothing ever answers (and no ICMP comes back).
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let pool = UdpPool::open(hole.local_addr().unwrap()).unwrap();
        let slot = &pool.slots[0];
        let q = asked("example.org.");
        let later = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut waiting = Vec::new();
        for _ in 0..MAX_IN_FLIGHT {
            waiting.push(slot.register(q, later).expect("room"));
        }
        assert!(slot.register(q, later).is_none(), "the cap holds");
        // Every ID is distinct.
        let mut ids = waiting.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), MAX_IN_FLIGHT);
        for &id in &waiting {
            drop(InFlightGuard {
                slot,
                id,
                taken: false,
            });
        }
        assert!(slot.in_flight.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn replies_match_by_id_and_question() {
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let pool = UdpPool::open(hole.local_addr().unwrap()).unwrap();
        let slot = &pool.slots[0];
        // What the waiting query would see if polled now.
        let try_recv = |id: u16| {
            let mut guard = InFlightGuard {
                slot,
                id,
                taken: false,
            };
            let mut cx = Context::from_waker(Waker::noop());
            let got = slot.poll_reply(&mut guard, &mut cx);
            std::mem::forget(guard);
            got
        };
        let later = tokio::time::Instant::now() + Duration::from_secs(60);
        let id = slot.register(asked("Example.ORG."), later).unwrap();
        let reply = |id: u16, name: &str| {
            let mut m = Message::response(id, hickory_proto::op::OpCode::Query);
            m.queries.push(question(name));
            m.to_vec().unwrap()
        };
        // Wrong ID, then right ID with the wrong question: both ignored.
        slot.deliver(&reply(id.wrapping_add(1), "example.org."));
        slot.deliver(&reply(id, "other.example."));
        assert!(try_recv(id).is_pending());
        // Too short to carry a header: ignored.
        slot.deliver(&[0, 1, 2]);
        // The query itself coming back (QR clear): ignored.
        let mut echo = Message::query();
        echo.metadata.id = id;
        echo.queries.push(question("example.org."));
        slot.deliver(&echo.to_vec().unwrap());
        assert!(try_recv(id).is_pending());
        // The question matches case-insensitively.
        slot.deliver(&reply(id, "EXAMPLE.org."));
        // A second reply with the same ID changes nothing.
        slot.deliver(&reply(id, "example.org."));
        let Poll::Ready(Some(got)) = try_recv(id) else {
            panic!("delivered");
        };
        let got = got.expect("a reply");
        let Reply::Wire { bytes, .. } = got else {
            panic!("a plain reply is kept as bytes");
        };
        assert_eq!(bytes[..2], id.to_be_bytes());
        assert!(slot.in_flight.lock().unwrap().is_empty());

        // A reply that does not parse fails the query instead of leaving it waiting.
        let id = slot.register(asked("example.org."), later).unwrap();
        let mut junk = id.to_be_bytes().to_vec();
        junk.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xff]);
        slot.deliver(&junk);
        assert!(matches!(
            try_recv(id),
            Poll::Ready(Some(Err(ExchangeError::Malformed(_))))
        ));
        assert!(slot.in_flight.lock().unwrap().is_empty());

        // Past its deadline, a query is answered with a timeout.
        let id = slot
            .register(asked("example.org."), tokio::time::Instant::now())
            .unwrap();
        slot.expire(tokio::time::Instant::now());
        assert!(matches!(
            try_recv(id),
            Poll::Ready(Some(Err(ExchangeError::Timeout { net: "udp", .. })))
        ));
    }

    /// A silent upstream: the query fails with an i/o timeout shortly after its read timeout,
    /// from the reader task's sweep.
    #[tokio::test]
    async fn silent_upstream_times_out() {
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let m = crate::metrics::Metrics::new();
        let family = super::super::metrics::ForwardMetrics::get(&m);
        let spec = UpstreamSpec {
            addr: hole.local_addr().unwrap(),
            transport: Transport::Dns,
            server_name: None,
        };
        let health = HealthCheck {
            interval: Duration::ZERO,
            domain: Name::root(),
            recursion_desired: true,
            tcp: false,
        };
        let reuse = Reuse {
            expire: Duration::from_secs(10),
            max_age: Duration::ZERO,
            max_idle: 0,
        };
        let up = Upstream::new(
            &spec,
            None,
            health,
            reuse,
            UpstreamMetrics::new(&family, spec.label()),
        );
        let mut query = Message::query();
        query.queries.push(question("example.org."));
        let mut wire = query.to_vec().unwrap();
        let a: SocketAddr = "127.0.0.1:53".parse().unwrap();
        let req = Request::new(query, a, a, crate::plugin::Proto::Udp, wire.len()).unwrap();
        let start = Instant::now();
        let got = up
            .exchange(Wire::Udp, &mut wire, &req, Duration::from_millis(100))
            .await;
        let took = start.elapsed();
        assert!(
            matches!(got, Err(ExchangeError::Timeout { net: "udp", .. })),
            "{got:?}"
        );
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(1000),
            "{took:?}"
        );
        // And the next query on the now idle socket times out too (the reader wakes for it).
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = up
            .exchange(Wire::Udp, &mut wire, &req, Duration::from_millis(50))
            .await;
        assert!(matches!(got, Err(ExchangeError::Timeout { .. })), "{got:?}");
    }

    fn upstream(reuse: Reuse) -> Upstream {
        let m = crate::metrics::Metrics::new();
        let family = super::super::metrics::ForwardMetrics::get(&m);
        let spec = UpstreamSpec {
            addr: "127.0.0.1:53".parse().unwrap(),
            transport: Transport::Dns,
            server_name: None,
        };
        let health = HealthCheck {
            interval: Duration::from_millis(500),
            domain: Name::root(),
            recursion_desired: true,
            tcp: false,
        };
        let metrics = UpstreamMetrics::new(&family, spec.label());
        Upstream::new(&spec, None, health, reuse, metrics)
    }

    fn conn() -> Box<dyn Stream> {
        Box::new(tokio::io::duplex(64).0)
    }

    #[tokio::test]
    async fn idle_connections_expire_and_are_capped() {
        let up = upstream(Reuse {
            expire: Duration::from_millis(100),
            max_age: Duration::ZERO,
            max_idle: 2,
        });
        let now = Instant::now();
        for _ in 0..3 {
            up.put_idle(conn(), now);
        }
        assert_eq!(
            up.idle.lock().unwrap().len(),
            2,
            "max_idle_conns caps the pool"
        );
        let (_, born) = up.take_idle().expect("an idle connection");
        assert_eq!(born, now, "a reused connection keeps its age");
        std::thread::sleep(Duration::from_millis(150));
        assert!(up.take_idle().is_none(), "idle longer than expire");

        let up = upstream(Reuse {
            expire: Duration::from_secs(10),
            max_age: Duration::from_millis(100),
            max_idle: 0,
        });
        up.put_idle(conn(), Instant::now() - Duration::from_millis(200));
        assert!(up.take_idle().is_none(), "older than max_age");
        up.put_idle(conn(), Instant::now());
        assert!(up.take_idle().is_some());
    }

    #[test]
    fn dial_timeout_adapts_between_one_and_thirty_seconds() {
        let up = upstream(Reuse {
            expire: Duration::from_secs(10),
            max_age: Duration::ZERO,
            max_idle: 0,
        });
        assert_eq!(up.dial_timeout(), Duration::from_secs(1));
        for _ in 0..40 {
            up.record_dial(Duration::from_secs(4));
        }
        let t = up.dial_timeout();
        assert!(
            t > Duration::from_secs(7) && t <= Duration::from_secs(8),
            "{t:?}"
        );
        for _ in 0..40 {
            up.record_dial(Duration::from_secs(60));
        }
        assert_eq!(up.dial_timeout(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn dropping_the_sockets_ends_their_readers() {
        let hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let pool = UdpPool::open(hole.local_addr().unwrap()).unwrap();
        let weak: Vec<Weak<UdpSlot>> = pool.slots.iter().map(Arc::downgrade).collect();
        drop(pool);
        for _ in 0..100 {
            if weak.iter().all(|w| w.upgrade().is_none()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a reader task outlived its upstream");
    }
}
