//! The process's Prometheus registry. Plugins register their own metrics here at setup; the
//! `prometheus` plugin serves the text exposition format.
//!
//! Why [`Metrics::family`]: `reload` builds every plugin again in the same process, and a
//! Prometheus registry cannot register a name twice. So a plugin keeps its metrics in one
//! `Clone` struct (prometheus-client metrics are shared handles) and asks for it by type: the
//! first setup registers it, every later setup (another server block, a reload) gets the same
//! counters back, so values survive a reload as they do in CoreDNS.

pub mod clock;
pub mod histogram;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

pub struct Metrics {
    registry: Mutex<Registry>,
    families: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            registry: Mutex::new(Registry::default()),
            families: Mutex::new(HashMap::new()),
        }
    }

    /// The process's one instance of `T`, registered by `init` the first time it is asked for.
    /// `T` is a plugin's struct of metric handles; clones share the same values.
    pub fn family<T>(&self, init: impl FnOnce(&mut Registry) -> T) -> T
    where
        T: Clone + Send + Sync + 'static,
    {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = families
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref::<T>())
        {
            return existing.clone();
        }
        let value = self.with_registry(init);
        families.insert(TypeId::of::<T>(), Box::new(value.clone()));
        value
    }

    /// Run `f` with the registry locked, to register metrics.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut reg)
    }

    /// The text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[derive(Clone)]
    struct Demo {
        hits: Counter,
    }

    #[test]
    fn family_is_registered_once_and_shared() {
        let m = Metrics::new();
        let make = |r: &mut Registry| {
            let hits = Counter::default();
            r.register("demo_hits", "Hits.", hits.clone());
            Demo { hits }
        };
        m.family(make).hits.inc();
        m.family(make).hits.inc();
        assert!(m.encode().contains("demo_hits_total 2"), "{}", m.encode());
    }
}
