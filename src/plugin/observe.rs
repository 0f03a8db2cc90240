//! Hooks for plugins that watch the server rather than answer: `prometheus` records every
//! answer after the server's final encode (the only point where the size sent is known), and
//! `ready` learns each block's finished chain.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;

use crate::plugin::{Chain, Request};

/// A plugin that wants to know each block's finished chain (`prometheus`, `ready`), set in
/// [`crate::plugin::setup::BlockConfig::observers`] at setup.
pub trait BlockObserver: Send + Sync {
    /// The block's chain, as served on `server` (`dns://:53`) for `zone`; called for every key
    /// and listen address. A returned recorder sees every query this block answers there.
    fn attach(&self, server: &str, zone: &str, chain: &Chain) -> Option<Arc<dyn QueryRecorder>>;

    /// A recorder for queries `server` refuses before any block sees them (CoreDNS counts
    /// those under the zone "dropped").
    fn attach_listener(&self, _server: &str) -> Option<Arc<dyn QueryRecorder>> {
        None
    }
}

/// Told about each answered query after its final encode, so the size is the one sent.
pub trait QueryRecorder: Send + Sync {
    /// `rcode` and `plugin` as the chain answered (`plugin` is empty when the server wrote a
    /// failure's reply), `size` the bytes sent (0 when nothing was sent).
    fn record(
        &self,
        req: &Request,
        rcode: ResponseCode,
        plugin: &'static str,
        size: usize,
        start: Instant,
    );

    /// [`QueryRecorder::record`] for a query that took `elapsed_ns` nanoseconds, measured on
    /// [`crate::metrics::clock`] (the server's hot path does, to spare an `Instant`).
    fn record_ns(
        &self,
        req: &Request,
        rcode: ResponseCode,
        plugin: &'static str,
        size: usize,
        elapsed_ns: u64,
    ) {
        let now = Instant::now();
        let start = now
            .checked_sub(std::time::Duration::from_nanos(elapsed_ns))
            .unwrap_or(now);
        self.record(req, rcode, plugin, size, start);
    }
}
