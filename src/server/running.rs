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
        for (addr, udp_socks, tcp_listener) in new_dns {
            let table = Arc::new(ArcSwap::new(tables[&addr].clone()));
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
