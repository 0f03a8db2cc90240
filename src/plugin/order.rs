//! The plugin order, and which plugins this build has.
//!
//! CoreDNS runs a server block's plugins in one fixed order, whatever order the Corefile lists
//! them in. [`ORDER`] is CoreDNS 1.14.7's `plugin.cfg`, written out once. [`setup_fn`] names the
//! plugins ferrodns implements; a directive in ORDER that it does not implement is rejected at
//! start-up like any unknown directive, never accepted and ignored.

use crate::plugin::setup::SetupFn;
use crate::plugins;

/// CoreDNS 1.14.7's `plugin.cfg`, first to last, plus ferrodns's own `dualstack` (marked).
pub const ORDER: &[&str] = &[
    "root",
    "metadata",
    "geoip",
    "cancel",
    "proxyproto",
    "quic",
    "grpc_server",
    "https",
    "https3",
    "timeouts",
    "multisocket",
    "reload",
    "nsid",
    "bufsize",
    "bind",
    "debug",
    "trace",
    "ready",
    "health",
    "pprof",
    "shed",
    "prometheus",
    "errors",
    "log",
    "dnstap",
    "local",
    // ferrodns extension, not in CoreDNS's plugin.cfg: `dualstack` runs directly before
    // `dns64` so that the A and AAAA questions it asks of the rest of the chain pass through
    // `dns64` (an IPv6-only client's AAAA check sees synthesized records) and through `cache`;
    // and `dns64`'s own A question for synthesis never meets `dualstack`'s `filter_a`.
    "dualstack",
    "dns64",
    "any",
    "chaos",
    "loadbalance",
    "tsig",
    "rewrite",
    "autopath",
    "acl",
    "cache",
    "header",
    "dnssec",
    "tls",
    "minimal",
    "template",
    "transfer",
    "hosts",
    "route53",
    "azure",
    "clouddns",
    "k8s_external",
    "kubernetes",
    "file",
    "auto",
    "secondary",
    "etcd",
    "loop",
    "forward",
    "grpc",
    "erratic",
    "whoami",
    "on",
    "sign",
    "view",
    "nomad",
];

/// The setup function of an implemented plugin.
pub fn setup_fn(name: &str) -> Option<SetupFn> {
    Some(match name {
        "acl" => plugins::acl::setup,
        "any" => plugins::any::setup,
        "bind" => plugins::bind::setup,
        "bufsize" => plugins::bufsize::setup,
        "cache" => plugins::cache::setup,
        "chaos" => plugins::chaos::setup,
        "dns64" => plugins::dns64::setup,
        "dualstack" => plugins::dualstack::setup,
        "errors" => plugins::errors::setup,
        "forward" => plugins::forward::setup,
        "health" => plugins::health::setup,
        "hosts" => plugins::hosts::setup,
        "loadbalance" => plugins::loadbalance::setup,
        "local" => plugins::local::setup,
        "log" => plugins::log::setup,
        "loop" => plugins::r#loop::setup,
        "minimal" => plugins::minimal::setup,
        "nsid" => plugins::nsid::setup,
        "prometheus" => plugins::prometheus::setup,
        "ready" => plugins::ready::setup,
        "reload" => plugins::reload::setup,
        "rewrite" => plugins::rewrite::setup,
        "root" => plugins::root::setup,
        "template" => plugins::template::setup,
        "whoami" => plugins::whoami::setup,
        _ => return None,
    })
}

/// The implemented plugins, in chain order.
pub fn implemented() -> impl Iterator<Item = &'static str> {
    ORDER.iter().copied().filter(|n| setup_fn(n).is_some())
}

/// Position of a plugin in the chain.
pub fn position(name: &str) -> Option<usize> {
    ORDER.iter().position(|n| *n == name)
}
