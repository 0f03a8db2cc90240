//! `ready`: the `/ready` endpoint that answers 200 once the plugins of every server block that
//! enables `ready` report ready. See README.md.

use std::sync::{Arc, Mutex, Weak};

use crate::plugin::observe::{BlockObserver, QueryRecorder};
use crate::plugin::parse::listen_addr;
use crate::plugin::setup::{HttpReply, Observer, Setup, SetupResult, Shared};
use crate::plugin::{Chain, Plugin};

const DEFAULT_ADDR: &str = ":8181";

/// The plugins `ready` watches, process-wide as in CoreDNS: every block that enables `ready`
/// adds its chain, and every `/ready` endpoint reports on all of them.
#[derive(Clone, Default)]
pub struct ReadyList(Arc<Mutex<Watched>>);

#[derive(Default)]
struct Watched {
    /// Weak, so that the plugins of a configuration replaced by a reload drop out.
    plugins: Vec<(&'static str, Weak<dyn Plugin>)>,
    /// `monitor continuously`: keep asking plugins that were ready once.
    continuously: bool,
}

impl ReadyList {
    fn watch(&self, chain: &Chain) {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for p in &chain.plugins {
            let weak = Arc::downgrade(p);
            if !w.plugins.iter().any(|(_, q)| Weak::ptr_eq(q, &weak)) {
                w.plugins.push((p.name(), weak));
            }
        }
    }

    /// The names of the plugins not ready yet, sorted and without repeats; empty when all are.
    pub fn not_ready(&self) -> Vec<&'static str> {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let continuously = w.continuously;
        let mut names: Vec<&'static str> = Vec::new();
        w.plugins.retain(|(name, weak)| {
            let Some(p) = weak.upgrade() else {
                return false;
            };
            if p.ready() {
                // Until-ready (the default): a plugin that said ready once is not asked again.
                return continuously;
            }
            names.push(name);
            true
        });
        names.sort_unstable();
        names.dedup();
        names
    }
}

struct Watch {
    list: ReadyList,
}

impl BlockObserver for Watch {
    fn attach(&self, _server: &str, _zone: &str, chain: &Chain) -> Option<Arc<dyn QueryRecorder>> {
        self.list.watch(chain);
        None
    }
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    let text = match d.args.as_slice() {
        [] => DEFAULT_ADDR.to_string(),
        [addr] => addr.text.clone(),
        _ => return Err(d.arg_err()),
    };
    let addr = listen_addr(&text).map_err(|msg| crate::plugin::SetupError { loc: None, msg })?;
    let mut continuously = false;
    for line in &d.block {
        match line.name.as_str() {
            "monitor" => {
                let [value] = line.args.as_slice() else {
                    return Err(line.arg_err());
                };
                continuously = match value.text.as_str() {
                    "until-ready" => false,
                    "continuously" => true,
                    other => {
                        return Err(line.err(format!("monitor type '{other}' not supported")));
                    }
                };
            }
            other => return Err(line.err(format!("unknown property '{other}'"))),
        }
    }

    // `Metrics::family` is the process's one-instance-per-type store: it registers nothing
    // here, it just hands every block (and a reload) the same list.
    let list = c.shared.metrics.family(|_| ReadyList::default());
    list.0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .continuously = continuously;
    c.block
        .observers
        .push(Observer(Arc::new(Watch { list: list.clone() })));
    let shared: Weak<Shared> = Arc::downgrade(c.shared);
    c.shared
        .add_http(addr, "/ready", Arc::new(move || answer(&list, &shared)));
    Ok(None)
}

fn answer(list: &ReadyList, shared: &Weak<Shared>) -> HttpReply {
    let reply = |status, body: String| HttpReply {
        status,
        content_type: "text/plain; charset=utf-8",
        body,
    };
    if shared.upgrade().is_none_or(|s| s.is_shutting_down()) {
        return reply(503, "Shutting down".into());
    }
    let not_ready = list.not_ready();
    if not_ready.is_empty() {
        return reply(200, "OK".into());
    }
    let names = not_ready.join(",");
    crate::info!("plugin/ready: Plugins not ready: {names:?}");
    reply(503, names)
}

#[cfg(test)]
mod tests;
