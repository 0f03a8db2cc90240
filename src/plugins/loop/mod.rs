//! `loop`: finds a forwarding loop at start-up by sending itself a random HINFO query and
//! halting the process when that query comes back through the chain. See README.md.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::dnsname::is_subdomain;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Next, Plugin, Request, Served};

/// What to do when a loop is found: log CoreDNS's fatal line and exit non-zero. Tests record
/// the message instead.
pub type OnLoop = Box<dyn Fn(&str) + Send + Sync>;

pub struct Loop {
    /// The zone probed: the block's first key, as CoreDNS takes it.
    zone: String,
    /// `<random>.<random>.<zone>`, lower case, fully qualified.
    qname: String,
    /// The block's address as CoreDNS prints it in the fatal message (`:53`, `127.0.0.1:53`).
    shown_addr: String,
    /// How often the probe has come through the chain.
    seen: AtomicU32,
    /// Set once the probe is answered or its time is up: from then on every query passes
    /// straight through, so a client cannot kill the server by replaying the probe name.
    off: AtomicBool,
    on_loop: OnLoop,
}

/// How the probe is paced. CoreDNS keeps trying for 30 seconds, one second apart, each try
/// waiting up to two seconds (miekg/dns's default exchange timeout).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Before the first try: the listeners are bound right after setup.
    pub first: Duration,
    pub retry: Duration,
    pub timeout: Duration,
    pub deadline: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            first: Duration::from_millis(100),
            retry: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(30),
        }
    }
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    if !d.args.is_empty() || !d.block.is_empty() {
        return Err(d.arg_err());
    }
    // CoreDNS probes the zone of the block's first key only.
    let zone = c
        .keys
        .first()
        .map_or_else(|| ".".to_string(), |k| k.zone.clone());
    let port = c
        .keys
        .first()
        .and_then(|k| k.port)
        .unwrap_or_else(|| c.shared.dns_port.load(Ordering::Relaxed));
    let listen = c
        .block
        .listen
        .iter()
        .find(|ip| !c.block.except.contains(ip))
        .copied();
    let (shown_addr, target) = addresses(listen, port);
    let l = Arc::new(Loop::new(&zone, shown_addr, Box::new(fatal)));
    // Setup runs before the listeners are bound; the probe waits and retries until they are.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(probe(Arc::downgrade(&l), target, Timing::default()));
    }
    Ok(Some(l))
}

/// The address shown in the fatal message (Go's `JoinHostPort(ListenHosts[0], Port)`, whose
/// host is empty without `bind`), and where to send the probe: the block's first address, or
/// loopback when the block listens on every address.
fn addresses(listen: Option<IpAddr>, port: u16) -> (String, SocketAddr) {
    match listen {
        None => (
            format!(":{port}"),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        ),
        Some(ip) => {
            let target = match ip {
                IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                other => other,
            };
            (
                SocketAddr::new(ip, port).to_string(),
                SocketAddr::new(target, port),
            )
        }
    }
}

/// Log the loop as CoreDNS's `log.Fatalf` does and stop the process.
fn fatal(msg: &str) {
    crate::log::write_line("FATAL", format_args!("plugin/loop: {msg}"));
    std::process::exit(1);
}

impl Loop {
    pub fn new(zone: &str, shown_addr: String, on_loop: OnLoop) -> Self {
        // Go's `rand.Int()`: a non-negative 63-bit number.
        let n1 = rand::random::<u64>() >> 1;
        let n2 = rand::random::<u64>() >> 1;
        let qname = if zone == "." {
            format!("{n1}.{n2}.")
        } else {
            format!("{n1}.{n2}.{zone}")
        };
        Loop {
            zone: zone.to_string(),
            qname,
            shown_addr,
            seen: AtomicU32::new(0),
            off: AtomicBool::new(false),
            on_loop,
        }
    }

    pub fn qname(&self) -> &str {
        &self.qname
    }

    pub fn disabled(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    /// Count `req` if it is the probe; the fatal message once it was seen more than twice.
    fn observe(&self, req: &Request) -> Option<String> {
        if req.qtype() != RecordType::HINFO || self.disabled() {
            return None;
        }
        if !is_subdomain(req.name(), &self.zone) {
            return None;
        }
        let seen = if req.name() == self.qname {
            self.seen.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.seen.load(Ordering::Relaxed)
        };
        if seen <= 2 {
            return None;
        }
        let from = SocketAddr::new(req.ip(), req.src.port());
        Some(format!(
            "Loop ({from} -> {}) detected for zone \"{}\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
            self.shown_addr, self.zone, self.qname
        ))
    }
}

impl Plugin for Loop {
    fn name(&self) -> &'static str {
        "loop"
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        if let Some(msg) = self.observe(req) {
            (self.on_loop)(&msg);
        }
        next.serve(req)
    }
}

/// Send the probe to `target` until it is answered or the deadline passes, then switch the
/// plugin off. The task holds only a `Weak`: a plugin dropped by a reload ends it.
pub async fn probe(l: Weak<Loop>, target: SocketAddr, timing: Timing) {
    let start = tokio::time::Instant::now();
    let deadline = start + timing.deadline;
    tokio::time::sleep(timing.first).await;
    while tokio::time::Instant::now() < deadline {
        let Some(plugin) = l.upgrade() else {
            return;
        };
        let qname = plugin.qname.clone();
        drop(plugin);
        if exchange(target, &qname, timing.timeout).await.is_ok() {
            break;
        }
        // No answer (not listening yet, or the probe is still going round): start counting
        // afresh for the next try, as CoreDNS does.
        match l.upgrade() {
            Some(plugin) => plugin.seen.store(0, Ordering::Relaxed),
            None => return,
        }
        tokio::time::sleep(timing.retry).await;
    }
    if let Some(plugin) = l.upgrade() {
        plugin.off.store(true, Ordering::Relaxed);
    }
}

/// One HINFO query over UDP; any reply with our ID counts as an answer.
async fn exchange(target: SocketAddr, qname: &str, timeout: Duration) -> std::io::Result<()> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let name = Name::from_ascii(qname).map_err(|e| invalid(e.to_string()))?;
    let mut m = Message::query();
    let id: u16 = rand::random();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.queries.push(Query::query(name, RecordType::HINFO));
    let wire = m.to_vec().map_err(|e| invalid(e.to_string()))?;

    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(target).await?;
    sock.send(&wire).await?;
    let wait = async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await?;
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return Ok(());
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "probe timed out"))?
}

#[cfg(test)]
mod tests;
