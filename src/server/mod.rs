//! Running a configuration: build every server block's chain, group blocks by listener, and
//! serve them over UDP and TCP (and HTTP for the endpoints plugins ask for).

pub mod dispatch;
pub mod http;
pub mod mmsg;
pub mod tcp;
pub mod udp;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use crate::corefile::{Corefile, Directive, Error, Scheme, ServerKey, parse_key};
use crate::plugin::order::{ORDER, setup_fn};
use crate::plugin::setup::{BlockConfig, Setup, Shared};
use crate::plugin::{Chain, Plugin};
use dispatch::{BlockServer, ZoneTable};

/// A listening address and the zones it serves.
pub struct Listener {
    pub scheme: Scheme,
    pub addr: SocketAddr,
    pub table: Arc<ZoneTable>,
    /// The keys as the banner prints them (`.:53`).
    pub keys: Vec<String>,
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
                let label = if ip.is_unspecified() {
                    format!("{}://:{port}", key.scheme.as_str())
                } else {
                    format!("{}://{}", key.scheme.as_str(), addr)
                };
                let listener = listeners
                    .entry((key.scheme as u8, addr))
                    .or_insert_with(|| Listener {
                        scheme: key.scheme,
                        addr,
                        table: Arc::new(ZoneTable::default()),
                        keys: Vec::new(),
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
                    allow_chaos: cfg.allow_chaos,
                    recorder,
                });
                let table =
                    Arc::get_mut(&mut listener.table).expect("tables are shared only after build");
                if table.dropped.is_none() {
                    table.dropped = observers.iter().find_map(|o| o.0.attach_listener(&label));
                }
                if !table.insert(key.zone.clone(), key.network, server) {
                    return Err(Error::at(
                        &block.loc,
                        format!(
                            "cannot serve {}://{}:{port} - it is already defined",
                            key.scheme.as_str(),
                            key.zone
                        ),
                    ));
                }
                let shown = format!("{}:{port}", key.original_zone_for_banner());
                if !listener.keys.contains(&shown) {
                    listener.keys.push(shown);
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

trait BannerName {
    fn original_zone_for_banner(&self) -> String;
}

impl BannerName for ServerKey {
    /// The banner shows `scheme://zone` for non-DNS schemes and the bare zone for DNS.
    fn original_zone_for_banner(&self) -> String {
        match self.scheme {
            Scheme::Dns => self.zone.clone(),
            s => format!("{}://{}", s.as_str(), self.zone),
        }
    }
}
