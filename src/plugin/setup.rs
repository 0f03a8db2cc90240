//! Turning a server block's directives into configured plugins.
//!
//! Each plugin's `setup` function receives every occurrence of its directive in one server block
//! (CoreDNS hands a plugin all its tokens at once too), checks them, and returns its handler, or
//! `None` for plugins that only configure the server (`bind`, `root`, `health`, ...).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::corefile::{Directive, ServerKey};
use crate::metrics::Metrics;
use crate::plugin::{Chain, Plugin};

pub type SetupError = crate::corefile::Error;

/// What a plugin's setup returns: its handler, if it has one.
pub type SetupResult = Result<Option<Arc<dyn Plugin>>, SetupError>;

/// A plugin's setup function, as listed in [`crate::plugin::order`].
pub type SetupFn = fn(&mut Setup<'_>) -> SetupResult;

/// Everything a setup function may look at or change.
pub struct Setup<'a> {
    /// Every occurrence of this plugin's directive in the block, in Corefile order.
    pub directives: Vec<&'a Directive>,
    /// The block's keys, parsed.
    pub keys: &'a [ServerKey],
    /// The block's zones (lowercase FQDNs), CoreDNS's `ServerBlockKeys` normalized: the
    /// default origins of `hosts`, `template`, ...
    pub zones: Vec<String>,
    /// Settings that the server itself reads for this block.
    pub block: &'a mut BlockConfig,
    /// Process-wide state shared by all blocks.
    pub shared: &'a Arc<Shared>,
}

impl<'a> Setup<'a> {
    /// The one occurrence of a plugin that may appear once per block (CoreDNS's `plugin.ErrOnce`).
    pub fn once(&self) -> Result<&Directive, SetupError> {
        match self.directives.as_slice() {
            [only] => Ok(only),
            [_, second, ..] => Err(second.err(format!(
                "plugin/{}: this plugin can only be used once per Server Block",
                second.name
            ))),
            [] => Err(SetupError {
                loc: None,
                msg: "no directive".into(),
            }),
        }
    }

    /// The first occurrence, for plugins CoreDNS configures from the block's first line and
    /// whose later lines change nothing (`any`, `bufsize`, `chaos`, `whoami`, ...).
    pub fn first(&self) -> Result<&'a Directive, SetupError> {
        self.directives.first().copied().ok_or_else(|| SetupError {
            loc: None,
            msg: "no directive".into(),
        })
    }

    /// Check a directive that takes no arguments and no block (`any`, `minimal`, `whoami`),
    /// reading its first line as CoreDNS does.
    pub fn no_arguments(&self) -> Result<(), SetupError> {
        let d = self.first()?;
        if !d.args.is_empty() {
            return Err(d.arg_err());
        }
        if !d.block.is_empty() {
            // CoreDNS reads the `{` as an unexpected argument.
            return Err(SetupError::at(
                &d.loc,
                "Wrong argument count or unexpected line ending after '{'",
            ));
        }
        Ok(())
    }

    /// A file path from the Corefile, relative to the `root` directory when not absolute.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.block.root.join(p)
        }
    }

    /// Origins from the directive's arguments, or the block's zones when there are none
    /// (CoreDNS's `plugin.OriginsFromArgsOrServerBlock`): a CIDR argument stands for its reverse
    /// zones, and an argument that is not a valid zone is dropped, as CoreDNS drops it.
    pub fn origins(&self, args: &[String]) -> Vec<String> {
        if args.is_empty() {
            return self.zones.clone();
        }
        args.iter()
            .flat_map(|a| crate::corefile::normalize_exact(a))
            .collect()
    }
}

/// Per-block settings that plugins give the server.
#[derive(Clone, Debug)]
pub struct BlockConfig {
    /// Addresses to listen on (`bind`); empty means every address.
    pub listen: Vec<std::net::IpAddr>,
    /// Excluded addresses (`bind ... { except ... }`).
    pub except: Vec<std::net::IpAddr>,
    /// Base directory for relative file names (`root`, default: the working directory).
    pub root: PathBuf,
    /// `chaos` is loaded: class CH queries reach the chain.
    pub allow_chaos: bool,
    /// `debug` is loaded.
    pub debug: bool,
    /// Plugins told about the block's finished chain (`prometheus`, `ready`).
    pub observers: Vec<Observer>,
}

/// A [`BlockObserver`](crate::plugin::observe::BlockObserver) kept in a [`BlockConfig`].
#[derive(Clone)]
pub struct Observer(pub Arc<dyn crate::plugin::observe::BlockObserver>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            listen: Vec::new(),
            except: Vec::new(),
            root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            allow_chaos: false,
            debug: false,
            observers: Vec::new(),
        }
    }
}

/// An HTTP endpoint's answer (`/health`, `/ready`, `/metrics`).
pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

pub type HttpHandler = Arc<dyn Fn() -> HttpReply + Send + Sync>;

/// Process-wide state: the metrics registry, the HTTP endpoints plugins ask for, the chains that
/// `ready` watches, and the shutdown state that `health` and `ready` report.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// (listen address, path, handler), served by [`crate::server::http`].
    pub http: Mutex<Vec<(SocketAddr, &'static str, HttpHandler)>>,
    /// Every chain the server runs, set once the blocks are built.
    pub chains: RwLock<Vec<Chain>>,
    /// Set when shutdown starts: `/ready` answers 503 from then on.
    pub shutting_down: std::sync::atomic::AtomicBool,
    /// The longest `lameduck` any `health` asked for: how long to keep serving after SIGTERM.
    pub lameduck: Mutex<std::time::Duration>,
    /// The port of keys that name none (`-dns.port`, default 53), set by the server before
    /// setup runs: `loop` sends its probe to the block's own address.
    pub dns_port: std::sync::atomic::AtomicU16,
    /// `reload`'s check interval, jitter already applied; `None` when no block loads `reload`.
    pub reload: Mutex<Option<std::time::Duration>>,
    /// The DNS listeners serving this configuration, for [`crate::plugin::upstream::Upstream`].
    pub listeners: Arc<crate::plugin::upstream::Listeners>,
}

impl Shared {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Shared {
            metrics,
            http: Mutex::new(Vec::new()),
            chains: RwLock::new(Vec::new()),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            lameduck: Mutex::new(std::time::Duration::ZERO),
            dns_port: std::sync::atomic::AtomicU16::new(53),
            reload: Mutex::new(None),
            listeners: Arc::default(),
        })
    }

    /// Serve `path` on `addr`. The first handler registered for an (address, path) wins, so
    /// several blocks can name the same `prometheus :9153`.
    pub fn add_http(&self, addr: SocketAddr, path: &'static str, handler: HttpHandler) {
        let mut routes = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if !routes.iter().any(|(a, p, _)| *a == addr && *p == path) {
            routes.push((addr, path, handler));
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_expand_cidrs_and_drop_what_is_no_zone() {
        let shared = Shared::new(Arc::new(Metrics::new()));
        let mut block = BlockConfig::default();
        let s = Setup {
            directives: Vec::new(),
            keys: &[],
            zones: vec!["example.org.".into()],
            block: &mut block,
            shared: &shared,
        };
        assert_eq!(s.origins(&[]), ["example.org."]);
        let args: Vec<String> = ["Example.NET", "10.0.0.0/15", "a..b"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(
            s.origins(&args),
            ["example.net.", "0.10.in-addr.arpa.", "1.10.in-addr.arpa."]
        );
    }
}
