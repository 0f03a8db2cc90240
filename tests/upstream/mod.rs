//! A small scriptable DNS server on loopback, to stand in for the upstreams of `forward`: it
//! answers over UDP, TCP and (optionally) TLS, and can be told to fail in the ways real
//! upstreams fail.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// What the upstream does with a query.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// An A record with this upstream's address tag (NOERROR, empty for other types).
    Answer,
    /// The rcode, with no records.
    Rcode(ResponseCode),
    /// Say nothing (a timeout for the asker).
    Drop,
    /// Over UDP: TC set and no records. Over TCP: the full answer.
    Truncate,
    /// Forty A records: too large for 512 bytes, fine for EDNS or TCP.
    Large,
    /// 255 A records, 4,109 octets over UDP or TCP: longer than a 4 KiB receive buffer.
    Huge,
    /// Bytes that do not parse as DNS, with the query's ID.
    Malformed,
    /// The answer under a different question (a forged or confused reply).
    WrongQuestion,
    /// Over TCP: close the connection instead of answering.
    CloseTcp,
    /// Answer after this many milliseconds.
    Delay(u64),
}

pub struct State {
    /// Behaviour for every name without an override.
    pub default: Mutex<Behavior>,
    /// Per-name behaviour (lowercase FQDN).
    pub names: Mutex<HashMap<String, Behavior>>,
    /// Per-name-and-type behaviour (lowercase FQDN), ahead of the per-name one.
    pub types: Mutex<HashMap<(String, RecordType), Behavior>>,
    pub udp_queries: AtomicUsize,
    pub tcp_queries: AtomicUsize,
    /// `. NS` or other NS queries: the health checks.
    pub health_checks: AtomicUsize,
    /// The name and RD bit of the last NS query (health check).
    pub last_health: Mutex<Option<(String, bool)>>,
    /// TCP (or TLS) connections accepted.
    pub connections: AtomicUsize,
    /// Query IDs seen, to check they are randomized.
    pub ids: Mutex<Vec<u16>>,
    stop: AtomicBool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub tag: Ipv4Addr,
    pub state: Arc<State>,
    tls: Option<Arc<rustls::ServerConfig>>,
    threads: Vec<JoinHandle<()>>,
}

/// A certificate for `localhost` and 127.0.0.1, self-signed; `.0` is its PEM (the CA file
/// for the client).
pub struct TestCert {
    pub pem: String,
    /// The private key, PEM (to stand in as a client certificate too).
    pub key_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_cert() -> TestCert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("cert");
    let der = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .expect("server config");
    TestCert {
        pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        server: Arc::new(server),
    }
}

impl Upstream {
    /// A plain DNS upstream (UDP and TCP on one port) whose answers carry `tag`.
    pub fn start(tag: [u8; 4]) -> Upstream {
        Self::start_on(tag, SocketAddr::from(([127, 0, 0, 1], 0)), None)
    }

    /// A plain DNS upstream on a given address (port 0: any free port).
    pub fn start_at(tag: [u8; 4], addr: SocketAddr) -> Upstream {
        Self::start_on(tag, addr, None)
    }

    /// A DNS-over-TLS upstream.
    pub fn start_tls(tag: [u8; 4], cert: &TestCert) -> Upstream {
        Self::start_on(
            tag,
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(cert.server.clone()),
        )
    }

    fn start_on(
        tag: [u8; 4],
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Upstream {
        let state = Arc::new(State {
            default: Mutex::new(Behavior::Answer),
            names: Mutex::new(HashMap::new()),
            types: Mutex::new(HashMap::new()),
            udp_queries: AtomicUsize::new(0),
            tcp_queries: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            last_health: Mutex::new(None),
            ids: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut up = Upstream {
            addr,
            tag: Ipv4Addr::from(tag),
            state,
            tls,
            threads: Vec::new(),
        };
        let port = (addr.port() != 0).then_some(addr.port());
        up.bind(port);
        up
    }

    fn bind(&mut self, port: Option<u16>) {
        let (udp, tcp) = loop {
            let want = port.unwrap_or(0);
            let ip = self.addr.ip();
            let udp = match UdpSocket::bind((ip, want)) {
                Ok(u) => u,
                Err(_) if port.is_some() => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => panic!("bind udp: {e}"),
            };
            let p = udp.local_addr().unwrap().port();
            match TcpListener::bind((ip, p)) {
                Ok(t) => break (udp, t),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        self.addr = udp.local_addr().unwrap();
        self.state.stop.store(false, Ordering::SeqCst);
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let st = self.state.clone();
        let tag = self.tag;
        let tls = self.tls.clone();
        if tls.is_none() {
            self.threads
                .push(std::thread::spawn(move || udp_loop(udp, st, tag)));
        }
        let st = self.state.clone();
        self.threads
            .push(std::thread::spawn(move || tcp_loop(tcp, st, tag, tls)));
    }

    /// `127.0.0.1:PORT`, as a Corefile TO.
    pub fn to(&self) -> String {
        self.addr.to_string()
    }

    pub fn set(&self, b: Behavior) {
        *self.state.default.lock().unwrap() = b;
    }

    pub fn set_name(&self, name: &str, b: Behavior) {
        self.state
            .names
            .lock()
            .unwrap()
            .insert(name.to_ascii_lowercase(), b);
    }

    /// Behaviour for one type of one name only (e.g. SERVFAIL for AAAA while A answers).
    pub fn set_name_type(&self, name: &str, qtype: RecordType, b: Behavior) {
        self.state
            .types
            .lock()
            .unwrap()
            .insert((name.to_ascii_lowercase(), qtype), b);
    }

    pub fn queries(&self) -> usize {
        self.state.udp_queries.load(Ordering::SeqCst)
            + self.state.tcp_queries.load(Ordering::SeqCst)
    }

    pub fn udp_queries(&self) -> usize {
        self.state.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_queries(&self) -> usize {
        self.state.tcp_queries.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    /// Close every socket: the port refuses (ICMP unreachable, TCP RST) until `revive`.
    pub fn kill(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Listen again on the same port.
    pub fn revive(&mut self) {
        let port = self.addr.port();
        self.bind(Some(port));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

fn behavior_for(st: &State, msg: &Message) -> Behavior {
    let name = msg
        .queries
        .first()
        .map(|q| q.name.to_ascii().to_ascii_lowercase())
        .unwrap_or_default();
    let name = if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    };
    if let Some(q) = msg.queries.first()
        && let Some(b) = st.types.lock().unwrap().get(&(name.clone(), q.query_type))
    {
        return b.clone();
    }
    if let Some(b) = st.names.lock().unwrap().get(&name) {
        return b.clone();
    }
    st.default.lock().unwrap().clone()
}

/// The reply bytes for `query`, or None to stay silent.
fn respond(st: &State, query: &[u8], tag: Ipv4Addr, over_tcp: bool) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    if over_tcp {
        st.tcp_queries.fetch_add(1, Ordering::SeqCst);
    } else {
        st.udp_queries.fetch_add(1, Ordering::SeqCst);
    }
    st.ids.lock().unwrap().push(msg.metadata.id);
    let is_health = msg
        .queries
        .first()
        .is_some_and(|q| q.query_type == RecordType::NS);
    if is_health {
        st.health_checks.fetch_add(1, Ordering::SeqCst);
        let q = &msg.queries[0];
        *st.last_health.lock().unwrap() = Some((q.name.to_ascii(), msg.metadata.recursion_desired));
    }
    let b = behavior_for(st, &msg);
    let mut r = Message::response(msg.metadata.id, msg.metadata.op_code);
    r.metadata.message_type = MessageType::Response;
    r.metadata.recursion_desired = msg.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.queries = msg.queries.clone();
    r.edns = msg.edns.clone();
    let q = msg.queries.first()?.clone();
    let a = |r: &mut Message, n: u8| {
        for i in 0..n {
            let mut ip = tag.octets();
            ip[3] = ip[3].wrapping_add(i);
            r.answers.push(Record::from_rdata(
                q.name.clone(),
                300,
                RData::A(A(Ipv4Addr::from(ip))),
            ));
        }
    };
    match b {
        Behavior::Answer | Behavior::Delay(_) => {
            if let Behavior::Delay(ms) = b {
                std::thread::sleep(Duration::from_millis(ms));
            }
            if q.query_type == RecordType::A {
                a(&mut r, 1);
            }
        }
        Behavior::Rcode(rc) => r.metadata.response_code = rc,
        Behavior::Drop => return None,
        Behavior::Truncate => {
            if over_tcp {
                a(&mut r, 1);
            } else {
                r.metadata.truncation = true;
            }
        }
        Behavior::Large => a(&mut r, 40),
        Behavior::Huge => a(&mut r, 255),
        Behavior::Malformed => {
            let mut junk = query[..2].to_vec();
            junk.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff]);
            return Some(junk);
        }
        Behavior::WrongQuestion => {
            r.queries[0].name = Name::from_ascii("spoofed.invalid.").unwrap();
            a(&mut r, 1);
        }
        Behavior::CloseTcp => {
            if over_tcp {
                return None;
            }
            a(&mut r, 1);
        }
    }
    r.to_vec().ok()
}

fn udp_loop(sock: UdpSocket, st: Arc<State>, tag: Ipv4Addr) {
    let mut buf = vec![0u8; 65535];
    while !st.stop.load(Ordering::SeqCst) {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let st2 = st.clone();
        let sock2 = sock.try_clone().unwrap();
        // Each query in its own thread, so a delayed answer does not hold up the others.
        std::thread::spawn(move || {
            if let Some(reply) = respond(&st2, &query, tag, false) {
                let _ = sock2.send_to(&reply, src);
            }
        });
    }
}

fn tcp_loop(
    listener: TcpListener,
    st: Arc<State>,
    tag: Ipv4Addr,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    while !st.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st = st.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    match tls {
                        None => serve_stream(stream, &st, tag),
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            let s = rustls::StreamOwned::new(conn, stream);
                            serve_stream(s, &st, tag)
                        }
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn read_full<S: Read>(s: &mut S, buf: &mut [u8], st: &State) -> bool {
    let mut got = 0;
    while got < buf.len() {
        if st.stop.load(Ordering::SeqCst) {
            return false;
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue;
            }
            Err(_) => return false,
        }
    }
    true
}

fn serve_stream<S: Read + Write>(mut s: S, st: &State, tag: Ipv4Addr) {
    loop {
        let mut len = [0u8; 2];
        if !read_full(&mut s, &mut len, st) {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if !read_full(&mut s, &mut q, st) {
            return;
        }
        let close = Message::from_vec(&q)
            .map(|m| behavior_for(st, &m) == Behavior::CloseTcp)
            .unwrap_or(false);
        let reply = respond(st, &q, tag, true);
        if close {
            return;
        }
        let Some(reply) = reply else {
            continue;
        };
        let mut frame = (reply.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&reply);
        if s.write_all(&frame).is_err() || s.flush().is_err() {
            return;
        }
    }
}

/// The first A record's address in `m`.
pub fn first_a(m: &Message) -> Option<Ipv4Addr> {
    m.answers.iter().find_map(|r| match &r.data {
        RData::A(a) => Some(a.0),
        _ => None,
    })
}
