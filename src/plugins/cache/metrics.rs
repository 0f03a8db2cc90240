//! CoreDNS's cache metrics, same names, help texts and labels (`plugin/cache/metrics.go`).
//!
//! Labels are resolved per `server` once and kept in a few lock-free slots, so a hit costs two
//! counter increments and no label hashing.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::store::Class;
use crate::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    pub server: String,
    pub view: String,
    pub zones: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypedLabels {
    pub server: String,
    pub r#type: String,
    pub view: String,
    pub zones: String,
}

#[derive(Clone)]
pub struct CacheMetrics {
    entries: Family<TypedLabels, Gauge>,
    requests: Family<Labels, Counter>,
    hits: Family<TypedLabels, Counter>,
    misses: Family<Labels, Counter>,
    prefetch: Family<Labels, Counter>,
    drops: Family<Labels, Counter>,
    served_stale: Family<Labels, Counter>,
    evictions: Family<TypedLabels, Counter>,
}

impl CacheMetrics {
    pub fn get(metrics: &Metrics) -> Self {
        metrics.family(|r: &mut Registry| {
            let m = CacheMetrics {
                entries: Family::default(),
                requests: Family::default(),
                hits: Family::default(),
                misses: Family::default(),
                prefetch: Family::default(),
                drops: Family::default(),
                served_stale: Family::default(),
                evictions: Family::default(),
            };
            r.register(
                "coredns_cache_entries",
                "The number of elements in the cache.",
                m.entries.clone(),
            );
            r.register(
                "coredns_cache_requests",
                "The count of cache requests.",
                m.requests.clone(),
            );
            r.register(
                "coredns_cache_hits",
                "The count of cache hits.",
                m.hits.clone(),
            );
            r.register(
                "coredns_cache_misses",
                "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
                m.misses.clone(),
            );
            r.register(
                "coredns_cache_prefetch",
                "The number of times the cache has prefetched a cached item.",
                m.prefetch.clone(),
            );
            r.register(
                "coredns_cache_drops",
                "The number responses that are not cached, because the reply is malformed.",
                m.drops.clone(),
            );
            r.register(
                "coredns_cache_served_stale",
                "The number of requests served from stale cache entries.",
                m.served_stale.clone(),
            );
            r.register(
                "coredns_cache_evictions",
                "The count of cache evictions.",
                m.evictions.clone(),
            );
            m
        })
    }

    fn handles(&self, server: &Arc<str>, zones: &str, view: &str) -> Handles {
        let plain = Labels {
            server: server.to_string(),
            view: view.to_string(),
            zones: zones.to_string(),
        };
        let typed = |class: Class| TypedLabels {
            server: server.to_string(),
            r#type: class.label().to_string(),
            view: view.to_string(),
            zones: zones.to_string(),
        };
        let one = |f: &Family<Labels, Counter>| Lazy::new(f.clone(), plain.clone());
        let both = |f: &Family<TypedLabels, Counter>| {
            [
                Lazy::new(f.clone(), typed(Class::Success)),
                Lazy::new(f.clone(), typed(Class::Denial)),
            ]
        };
        Handles {
            server: server.clone(),
            requests: one(&self.requests),
            misses: one(&self.misses),
            prefetch: one(&self.prefetch),
            drops: one(&self.drops),
            served_stale: one(&self.served_stale),
            hits: both(&self.hits),
            evictions: both(&self.evictions),
            entries: [
                Lazy::new(self.entries.clone(), typed(Class::Success)),
                Lazy::new(self.entries.clone(), typed(Class::Denial)),
            ],
        }
    }
}

/// A series created on first use, so the exposition shows only the label sets that have
/// happened, as Go's metric vectors do; after that a plain atomic.
pub struct Lazy<L, M> {
    family: Family<L, M>,
    labels: L,
    cell: OnceLock<M>,
}

impl<L, M> Lazy<L, M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
{
    fn new(family: Family<L, M>, labels: L) -> Self {
        Lazy {
            family,
            labels,
            cell: OnceLock::new(),
        }
    }

    fn get(&self) -> &M {
        self.cell
            .get_or_init(|| self.family.get_or_create_owned(&self.labels))
    }
}

impl<L: Clone + std::hash::Hash + Eq> Lazy<L, Counter> {
    pub fn inc(&self) {
        self.get().inc();
    }
}

impl<L: Clone + std::hash::Hash + Eq> Lazy<L, Gauge> {
    pub fn set(&self, v: i64) {
        self.get().set(v);
    }
}

/// The metric handles of one `server` label.
pub struct Handles {
    server: Arc<str>,
    pub requests: Lazy<Labels, Counter>,
    pub misses: Lazy<Labels, Counter>,
    pub prefetch: Lazy<Labels, Counter>,
    pub drops: Lazy<Labels, Counter>,
    pub served_stale: Lazy<Labels, Counter>,
    pub hits: [Lazy<TypedLabels, Counter>; 2],
    pub evictions: [Lazy<TypedLabels, Counter>; 2],
    pub entries: [Lazy<TypedLabels, Gauge>; 2],
}

const SLOTS: usize = 16;

/// Per-server handles of one cache instance. A block has a handful of listeners at most; past
/// [`SLOTS`] of them the handles are looked up per query (correct, only slower).
pub struct ServerMetrics {
    family: CacheMetrics,
    zones: String,
    view: String,
    slots: [OnceLock<Handles>; SLOTS],
}

pub enum HandleRef<'a> {
    Slot(&'a Handles),
    Owned(Box<Handles>),
}

impl Deref for HandleRef<'_> {
    type Target = Handles;
    fn deref(&self) -> &Handles {
        match self {
            HandleRef::Slot(h) => h,
            HandleRef::Owned(h) => h,
        }
    }
}

impl ServerMetrics {
    pub fn new(family: CacheMetrics, zones: String) -> Self {
        ServerMetrics {
            family,
            zones,
            // ferrodns has no `view` plugin: the label is empty, as in CoreDNS without views.
            view: String::new(),
            slots: Default::default(),
        }
    }

    pub fn for_server(&self, server: &Arc<str>) -> HandleRef<'_> {
        for slot in &self.slots {
            match slot.get() {
                Some(h) if Arc::ptr_eq(&h.server, server) || *h.server == **server => {
                    return HandleRef::Slot(h);
                }
                Some(_) => continue,
                None => {
                    let made = self.family.handles(server, &self.zones, &self.view);
                    // Another thread may have filled this slot meanwhile; then keep looking.
                    if slot.set(made).is_ok()
                        && let Some(h) = slot.get()
                    {
                        return HandleRef::Slot(h);
                    }
                    if let Some(h) = slot.get()
                        && *h.server == **server
                    {
                        return HandleRef::Slot(h);
                    }
                }
            }
        }
        HandleRef::Owned(Box::new(self.family.handles(
            server,
            &self.zones,
            &self.view,
        )))
    }
}
