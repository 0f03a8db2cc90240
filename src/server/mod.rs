//! Running a configuration: build every server block's chain, group blocks by listener, and
//! serve them over UDP and TCP (and HTTP for the endpoints plugins ask for).

pub mod deferred;
pub mod dispatch;
pub mod http;
pub mod mmsg;
pub mod running;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::corefile::{Corefile, Directive, Error, Scheme, ServerKey, parse_key};
use crate::plugin::order::{ORDER, setup_fn};
use crate::plugin::setup::{BlockConfig, Setup, Shared};
use crate::plugin::{Chain, Plugin};
use dispatch::{BlockServer, ZoneTable};

/// How long shutdown (and a listener that a reload drops) waits for queries in flight, as
/// CoreDNS's `graceTimeout`.
pub const GRACE: Duration = Duration::from_secs(5);

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Counts queries whose answer is still being computed (those that wait, such as forwarded
/// ones), so that shutdown can let them finish.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }

    pub fn count() -> usize {
        IN_FLIGHT.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A listener's stop signal: it stops when the value turns true or the sender is gone.
pub trait Stop {
    fn stopped(&mut self) -> impl std::future::Future<Output = ()> + Send;
}

impl Stop for watch::Receiver<bool> {
    async fn stopped(&mut self) {
        let _ = self.wait_for(|stop| *stop).await;
    }
}

/// A listening address and the zones it serves.
pub struct Listener {
    pub scheme: Scheme,
    pub addr: SocketAddr,
    pub table: Arc<ZoneTable>,
}

/// The `server` label of CoreDNS's metrics for a listener: `dns://:53`, `dns://127.0.0.1:53`.
/// Requests carry it too, which is how an upstream lookup finds the listener it came through.
pub fn server_label(scheme: Scheme, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{}://:{}", scheme.as_str(), addr.port())
    } else {
        format!("{}://{}", scheme.as_str(), addr)
    }
}

impl Listener {
    /// The `server` label of the requests this listener receives.
    pub fn label(&self) -> String {
        server_label(self.scheme, self.addr)
    }

    /// CoreDNS's start-up lines for this listener (`startUpZones`): one per zone, sorted,
    /// `ZONE:PORT`, with ` on IP` when bound to one address, and a warning before zones that do
    /// not follow RFC 1035's preferred syntax.
    pub fn banner(&self) -> String {
        let mut zones: Vec<&str> = self.table.zones().collect();
        zones.sort_unstable();
        zones.dedup();
        let prefix = match self.scheme {
            Scheme::Dns => String::new(),
            s => format!("{}://", s.as_str()),
        };
        let mut out = String::new();
        for zone in zones {
            if !preferred_syntax(zone) {
                out.push_str(&format!(
                    "Warning: Domain {zone:?} does not follow RFC1035 preferred syntax\n"
                ));
            }
            let port = self.addr.port();
            if self.addr.ip().is_unspecified() {
                out.push_str(&format!("{prefix}{zone}:{port}\n"));
            } else {
                out.push_str(&format!("{prefix}{zone}:{port} on {}\n", self.addr.ip()));
            }
        }
        out
    }
}

/// RFC 1035 §2.3.1's preferred name syntax, which CoreDNS checks zones against at start-up;
/// the root and reverse zones always pass.
fn preferred_syntax(zone: &str) -> bool {
    if zone == "." || zone.ends_with(".in-addr.arpa.") || zone.ends_with(".ip6.arpa.") {
        return true;
    }
    let Some(body) = zone.strip_suffix('.') else {
        return false;
    };
    body.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphabetic()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

/// A configuration ready to serve.
pub struct Instance {
    pub listeners: Vec<Listener>,
    pub shared: Arc<Shared>,
}

/// Build the plugins of every block. Nothing is bound yet, so an error leaves no trace.
pub fn build(corefile: &Corefile, dns_port: u16, shared: &Arc<Shared>) -> Result<Instance, Error> {
    let mut listeners: BTreeMap<(u8, SocketAddr), Listener> = BTreeMap::new();
    shared
        .dns_port
        .store(dns_port, std::sync::atomic::Ordering::Relaxed);
    let mut chains = Vec::new();
    for block in &corefile.blocks {
        let mut keys: Vec<ServerKey> = Vec::new();
        for key in &block.keys {
            let parsed = parse_key(&key.text).map_err(|msg| Error::at(&key.loc, msg))?;
            keys.extend(parsed);
        }
        let mut zones: Vec<String> = Vec::new();
        for k in &keys {
            if !zones.contains(&k.zone) {
                zones.push(k.zone.clone());
            }
        }

        // Group the block's directives by plugin, rejecting the ones this build does not have.
        let mut by_plugin: BTreeMap<usize, Vec<&Directive>> = BTreeMap::new();
        for d in &block.directives {
            let pos = ORDER.iter().position(|n| *n == d.name);
            match pos {
                Some(pos) if setup_fn(&d.name).is_some() => {
                    by_plugin.entry(pos).or_default().push(d)
                }
                _ => return Err(d.err(format!("Unknown directive '{}'", d.name))),
            }
        }

        let mut cfg = BlockConfig::default();
        let mut plugins: Vec<Arc<dyn Plugin>> = Vec::new();
        for (pos, directives) in by_plugin {
            let name = ORDER[pos];
            let Some(setup) = setup_fn(name) else {
                continue;
            };
            let mut ctx = Setup {
                directives,
                keys: &keys,
                zones: zones.clone(),
                block: &mut cfg,
                shared,
            };
            match setup(&mut ctx) {
                Ok(Some(handler)) => plugins.push(handler),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error {
                        loc: None,
                        msg: format!("plugin/{name}: {e}"),
                    });
                }
            }
        }
        // CoreDNS lets other classes than IN through when `chaos` or `forward` is loaded.
        let allow_chaos = cfg.allow_chaos
            || plugins
                .iter()
                .any(|p| matches!(p.name(), "chaos" | "forward"));
        let chain = Chain { plugins };
        chains.push(chain.clone());

        for key in &keys {
            let port = key.port_or(dns_port);
            if key.scheme != Scheme::Dns {
                return Err(Error::at(
                    &block.loc,
                    format!(
                        "{}:// servers are not supported by this build",
                        key.scheme.as_str()
                    ),
                ));
            }
            let ips: Vec<IpAddr> = if cfg.listen.is_empty() {
                vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
            } else {
                cfg.listen
                    .iter()
                    .filter(|ip| !cfg.except.contains(ip))
                    .copied()
                    .collect()
            };
            for ip in ips {
                let addr = SocketAddr::new(ip, port);
                let label = server_label(key.scheme, addr);
                let listener = listeners
                    .entry((key.scheme as u8, addr))
                    .or_insert_with(|| Listener {
                        scheme: key.scheme,
                        addr,
                        table: Arc::new(ZoneTable::default()),
                    });
                let observers = &cfg.observers;
                let recorder = observers.iter().fold(None, |r, o| {
                    let attached = o.0.attach(&label, &key.zone, &chain);
                    r.or(attached)
                });
                let server = Arc::new(BlockServer {
                    chain: chain.clone(),
                    zone: Arc::from(key.zone.as_str()),
                    server: Arc::from(label.as_str()),
                    allow_chaos,
                    recorder,
                });
                let table =
                    Arc::get_mut(&mut listener.table).expect("tables are shared only after build");
                if table.dropped.is_none() {
                    table.dropped = observers.iter().find_map(|o| o.0.attach_listener(&label));
                }
                if !table.insert(key.zone.clone(), server) {
                    return Err(Error::at(
                        &block.loc,
                        format!(
                            "cannot serve {}://{}:{port} - it is already defined",
                            key.scheme.as_str(),
                            key.zone
                        ),
                    ));
                }
            }
        }
    }
    *shared.chains.write().unwrap_or_else(|e| e.into_inner()) = chains;
    Ok(Instance {
        listeners: listeners.into_values().collect(),
        shared: shared.clone(),
    })
}
