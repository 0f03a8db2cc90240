//! The configuration being served, and moving from one configuration to the next.
//!
//! Every DNS listener reads its zone table, and every HTTP listener its routes, through an
//! `ArcSwap`. A reload builds the new configuration completely, binds only the addresses it
//! adds, then swaps tables and routes under the listeners it keeps and stops the ones it no
//! longer uses. Nothing is closed that the new configuration still uses, so queries keep flowing
//! through a reload, and a reload that fails (a bad Corefile, a taken port) changes nothing.
//! Queries in flight keep the blocks they started with: they hold their own `Arc`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::dispatch::ZoneTable;
use super::{Instance, http, tcp, udp};
use crate::plugin::setup::{HttpHandler, Shared};

struct DnsListener {
    table: Arc<ArcSwap<ZoneTable>>,
    stop: watch::Sender<bool>,
}

struct HttpListener {
    routes: Arc<ArcSwap<Vec<(&'static str, HttpHandler)>>>,
    stop: watch::Sender<bool>,
}

/// The listeners of the configuration being served.
pub struct Running {
    dns: BTreeMap<SocketAddr, DnsListener>,
    http: BTreeMap<SocketAddr, HttpListener>,
    /// The process-wide state of the configuration being served (its `shutting_down` flag is
    /// the one `/ready` reads).
    pub shared: Arc<Shared>,
    /// The start-up lines of the configuration being served.
    pub banner: String,
}

/// A bind error as Go prints it: `listen udp :53: bind: address already in use`.
pub fn listen_error(proto: &str, addr: SocketAddr, e: &std::io::Error) -> String {
    let shown = if addr.ip().is_unspecified() {
        format!(":{}", addr.port())
    } else {
        addr.to_string()
    };
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "bind: address already in use".to_string(),
        std::io::ErrorKind::PermissionDenied => "bind: permission denied".to_string(),
        std::io::ErrorKind::AddrNotAvailable => "bind: cannot assign requested address".to_string(),
        _ => e.to_string(),
    };
    format!("listen {proto} {shown}: {why}")
}

/// The HTTP routes an instance's plugins asked for, by address.
fn http_routes(shared: &Shared) -> BTreeMap<SocketAddr, Vec<(&'static str, HttpHandler)>> {
    let mut routes: BTreeMap<SocketAddr, Vec<_>> = BTreeMap::new();
    for (addr, path, handler) in shared.http.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        routes
            .entry(*addr)
            .or_default()
            .push((*path, handler.clone()));
    }
    routes
}

impl Running {
    /// Bind and serve a first configuration. Must run inside the main tokio runtime.
    pub fn start(instance: Instance) -> Result<Running, String> {
        let mut running = Running {
            dns: BTreeMap::new(),
            http: BTreeMap::new(),
            shared: instance.shared.clone(),
            banner: String::new(),
        };
        running.apply(instance)?;
        Ok(running)
    }

    /// Serve `instance` instead of the current configuration. On error nothing has changed.
    pub fn apply(&mut self, instance: Instance) -> Result<(), String> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

        // Bind everything new before touching anything that runs.
        let mut new_dns = Vec::new();
        for l in &instance.listeners {
            if self.dns.contains_key(&l.addr) {
                continue;
            }
            let udp = udp::bind(l.addr, cores).map_err(|e| listen_error("udp", l.addr, &e))?;
            let tcp = tcp::bind(l.addr).map_err(|e| listen_error("tcp", l.addr, &e))?;
            new_dns.push((l.addr, udp, tcp));
        }
        let routes = http_routes(&instance.shared);
        let mut new_http = Vec::new();
        for addr in routes.keys() {
            if self.http.contains_key(addr) {
                continue;
            }
            let l = http::bind(*addr).map_err(|e| listen_error("tcp", *addr, &e))?;
            new_http.push((*addr, l));
        }

        // Start the new listeners with their tables.
        let tables: BTreeMap<SocketAddr, Arc<ZoneTable>> = instance
            .listeners
            .iter()
            .map(|l| (l.addr, l.table.clone()))
            .collect();
        // Upstream lookups of the new configuration go through the listener's table as it is
        // when they run, so they are registered before any query can reach the new plugins.
        let labels: BTreeMap<SocketAddr, String> = instance
            .listeners
            .iter()
            .map(|l| (l.addr, l.label()))
            .collect();
        for (addr, udp_socks, tcp_listener) in new_dns {
            let table = Arc::new(ArcSwap::new(tables[&addr].clone()));
            instance.shared.listeners.register(&labels[&addr], &table);
            let (stop, stopped) = watch::channel(false);
            for s in udp_socks {
                udp::spawn(s, table.clone(), stopped.clone())
                    .map_err(|e| format!("starting udp listener: {e}"))?;
            }
            tokio::spawn(tcp::run(tcp_listener, table.clone(), stopped));
            self.dns.insert(addr, DnsListener { table, stop });
        }
        for (addr, listener) in new_http {
            let r = Arc::new(ArcSwap::from_pointee(routes[&addr].clone()));
            let (stop, stopped) = watch::channel(false);
            tokio::spawn(http::run(listener, r.clone(), stopped));
            self.http.insert(addr, HttpListener { routes: r, stop });
        }

        // Swap what is kept, stop what is gone.
        self.dns.retain(|addr, l| match tables.get(addr) {
            Some(t) => {
                instance.shared.listeners.register(&labels[addr], &l.table);
                l.table.store(t.clone());
                true
            }
            None => {
                let _ = l.stop.send(true);
                false
            }
        });
        self.http.retain(|addr, l| match routes.get(addr) {
            Some(r) => {
                l.routes.store(Arc::new(r.clone()));
                true
            }
            None => {
                let _ = l.stop.send(true);
                false
            }
        });
        self.banner = instance.listeners.iter().map(|l| l.banner()).collect();
        self.shared = instance.shared;
        Ok(())
    }

    /// Stop accepting queries and connections on every listener.
    pub fn stop(&mut self) {
        for l in self.dns.values() {
            let _ = l.stop.send(true);
        }
        for l in self.http.values() {
            let _ = l.stop.send(true);
        }
    }

    /// The DNS addresses being served.
    pub fn dns_addrs(&self) -> impl Iterator<Item = &SocketAddr> {
        self.dns.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::plugin::setup::HttpReply;
    use std::io::{Read, Write};

    fn instance(metrics: &Arc<Metrics>, routes: &[(SocketAddr, &'static str)]) -> Instance {
        let shared = Shared::new(metrics.clone());
        for (addr, body) in routes {
            let body = *body;
            shared.add_http(
                *addr,
                "/health",
                Arc::new(move || HttpReply {
                    status: 200,
                    content_type: "text/plain",
                    body: body.to_string(),
                }),
            );
        }
        Instance {
            listeners: Vec::new(),
            shared,
        }
    }

    fn get(addr: SocketAddr) -> Option<String> {
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_listeners_are_kept_swapped_or_closed() {
        let metrics = Arc::new(Metrics::new());
        let addr = free_addr();
        let mut running = Running::start(instance(&metrics, &[(addr, "one")])).unwrap();
        let body = tokio::task::spawn_blocking(move || get(addr))
            .await
            .unwrap();
        assert!(body.unwrap().ends_with("one"));

        // A client connected before the reload is served by the same listener after it.
        let early = std::net::TcpStream::connect(addr).unwrap();
        running.apply(instance(&metrics, &[(addr, "two")])).unwrap();
        let body = tokio::task::spawn_blocking(move || get(addr))
            .await
            .unwrap();
        assert!(body.unwrap().ends_with("two"));
        drop(early);

        // A reload that cannot bind changes nothing.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let err = running
            .apply(instance(&metrics, &[(addr, "three"), (busy, "x")]))
            .unwrap_err();
        assert!(err.contains("address already in use"), "{err}");
        let body = tokio::task::spawn_blocking(move || get(addr))
            .await
            .unwrap();
        assert!(body.unwrap().ends_with("two"));

        // Dropped from the configuration: closed, and so is a connection still open to it
        // (it would hold the old routes alive).
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        running.apply(instance(&metrics, &[])).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(std::net::TcpStream::connect(addr).is_err());
        let closed = tokio::task::spawn_blocking(move || {
            use std::io::Read;
            idle.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            // End of stream or a reset: closed. A read timeout: still open.
            match idle.read(&mut [0u8; 64]) {
                Ok(n) => n == 0,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .await
        .unwrap();
        assert!(closed, "the idle connection outlived its listener");
    }

    /// Answers after a pause, like a forwarded query.
    struct Slow;

    impl crate::plugin::Plugin for Slow {
        fn name(&self) -> &'static str {
            "slow"
        }

        fn serve<'a>(
            &'a self,
            req: &'a crate::plugin::Request,
            _next: crate::plugin::Next<'a>,
        ) -> crate::plugin::Served<'a> {
            crate::plugin::Served::pending(async move {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                Ok(crate::plugin::Response::new(req.reply(), "slow"))
            })
        }
    }

    fn slow_instance(metrics: &Arc<Metrics>, addr: SocketAddr) -> Instance {
        let mut table = ZoneTable::default();
        table.insert(
            ".".into(),
            Arc::new(super::super::dispatch::BlockServer {
                chain: crate::plugin::Chain {
                    plugins: vec![Arc::new(Slow)],
                },
                zone: Arc::from("."),
                server: Arc::from("dns://test"),
                allow_chaos: false,
                recorder: None,
            }),
        );
        Instance {
            listeners: vec![super::super::Listener {
                scheme: crate::corefile::Scheme::Dns,
                addr,
                table: Arc::new(table),
            }],
            shared: Shared::new(metrics.clone()),
        }
    }

    fn query_bytes() -> Vec<u8> {
        let mut m = hickory_proto::op::Message::query();
        m.metadata.id = 99;
        m.queries.push(hickory_proto::op::Query::query(
            hickory_proto::rr::Name::from_ascii("example.org.").unwrap(),
            hickory_proto::rr::RecordType::A,
        ));
        m.to_vec().unwrap()
    }

    /// Stopping the listeners (shutdown, or a reload that drops the address) lets the queries
    /// already in flight finish and reach their clients.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queries_in_flight_finish_after_stop() {
        let metrics = Arc::new(Metrics::new());
        // A port free for both UDP and TCP right now.
        let port = loop {
            let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let p = u.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
                break p;
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut running = Running::start(slow_instance(&metrics, addr)).unwrap();
        let q = query_bytes();

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        udp.send_to(&q, addr).unwrap();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        let mut frame = (q.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&q);
        tcp.write_all(&frame).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        running.stop();

        let answers = tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 512];
            let udp_answer = udp.recv(&mut buf).map(|n| buf[..n].to_vec()).ok();
            let mut len = [0u8; 2];
            let tcp_answer = tcp.read_exact(&mut len).ok().map(|_| {
                let mut b = vec![0u8; u16::from_be_bytes(len) as usize];
                let _ = tcp.read_exact(&mut b);
                b
            });
            (udp_answer, tcp_answer)
        })
        .await
        .unwrap();
        for (what, a) in [("udp", answers.0), ("tcp", answers.1)] {
            let a = a.unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!(&a[..2], &[0, 99], "{what}");
        }
        // And nothing listens any more.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(std::net::TcpStream::connect(addr).is_err());
    }

    #[test]
    fn go_shaped_bind_errors() {
        let e = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert_eq!(
            listen_error("udp", "[::]:53".parse().unwrap(), &e),
            "listen udp :53: bind: address already in use"
        );
        assert_eq!(
            listen_error("tcp", "127.0.0.1:53".parse().unwrap(), &e),
            "listen tcp 127.0.0.1:53: bind: address already in use"
        );
    }
}
