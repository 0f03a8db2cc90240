//! ferrodns: a DNS server that reads CoreDNS's Corefile and serves the same plugins.
//!
//! `corefile` parses the configuration, `plugin` defines the handler chain and its fixed order,
//! `plugins` holds one folder per plugin, and `server` runs the listeners and dispatches queries.

pub mod log;

pub mod corefile;
pub mod dnsname;
pub mod metrics;
pub mod plugin;
pub mod plugins;
pub mod server;

/// The version printed by `-version` and the start-up banner.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The CoreDNS release whose behaviour this build follows.
pub const COREDNS_COMPAT: &str = "1.14.7";
