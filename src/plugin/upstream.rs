//! [`Upstream`]: a plugin asks its own server a new question (CoreDNS's `plugin/pkg/upstream`).
//!
//! `rewrite`'s `cname` rule and `template`'s CNAME targets need the records of a name the client
//! did not ask for, resolved the way the server resolves any query: the listener the request
//! arrived on picks the server block by zone, and that block's whole chain answers. The lookup
//! is served in-process, without a socket.
//!
//! How the listener is found: every listener's zone table sits behind an `ArcSwap` that a reload
//! swaps ([`crate::server::running`]). When a configuration starts serving, its listeners are
//! registered in [`Listeners`] under the `server` label the dispatcher writes into every
//! request (`dns://:53`), and a lookup reads the current table through it at query time. Only
//! `Weak` references are kept: a plugin holds its `Upstream`, and a table holds the plugins,
//! so a strong reference would keep a replaced configuration alive forever.
//!
//! Loops: a lookup can cause another lookup (a CNAME pointing back at itself, a `cname` rule
//! whose new target is rewritten again). CoreDNS has no bound; ferrodns stops at
//! [`MAX_DEPTH`] nested lookups. The depth travels with the lookup's future as a tokio task-local
//! value, so a lookup made from a task that a plugin spawned starts counting afresh.

use std::fmt;
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::plugin::setup::Shared;
use crate::plugin::{Failure, Request};
use crate::server::dispatch::ZoneTable;

/// How many lookups may nest inside one client query. A CNAME chain longer than this is
/// unusual (resolvers give up around 8 to 16 links), and each level may fan out (a template
/// answering with several CNAMEs), so the bound is kept small.
pub const MAX_DEPTH: u8 = 8;

tokio::task_local! {
    /// The nesting depth of the lookup being served; absent for a client's query.
    static DEPTH: u8;
}

/// A listener's zone table as a reload swaps it.
type SwappedTable = ArcSwap<ZoneTable>;

/// The DNS listeners of one configuration, by the `server` label of the requests they receive.
#[derive(Default)]
pub struct Listeners {
    tables: RwLock<Vec<(Arc<str>, Weak<SwappedTable>)>>,
}

impl Listeners {
    /// Serve lookups for requests labelled `server` through `table` (done when a configuration
    /// starts serving on a listener, new or kept).
    pub fn register(&self, server: &str, table: &Arc<ArcSwap<ZoneTable>>) {
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        tables.retain(|(label, t)| &**label != server && t.strong_count() > 0);
        tables.push((Arc::from(server), Arc::downgrade(table)));
    }

    /// The zone table currently served for `server`.
    fn table(&self, server: &str) -> Option<Arc<ZoneTable>> {
        let tables = self.tables.read().unwrap_or_else(|e| e.into_inner());
        let (_, table) = tables.iter().find(|(label, _)| &**label == server)?;
        Some(table.upgrade()?.load_full())
    }
}

/// Why a lookup produced no answer (CoreDNS's `Lookup` error, or its nil message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The request did not come through a running listener (CoreDNS: "no full server is
    /// running"), or the configuration it came through was replaced and is gone.
    NoServer,
    /// [`MAX_DEPTH`] lookups were already nested.
    TooDeep,
    /// The chain decided not to answer at all (`acl ... drop`).
    NoReply,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::NoServer => f.write_str("no full server is running"),
            LookupError::TooDeep => write!(f, "more than {MAX_DEPTH} nested lookups"),
            LookupError::NoReply => f.write_str("no response from server"),
        }
    }
}

/// A handle to ask the server a question from inside a plugin. Cheap to clone; obtained at
/// setup with [`Upstream::new`].
#[derive(Clone)]
pub struct Upstream {
    listeners: Arc<Listeners>,
}

impl Upstream {
    pub fn new(shared: &Shared) -> Self {
        Upstream {
            listeners: shared.listeners.clone(),
        }
    }

    /// Ask the server that received `req` for `name`/`qtype`, class IN, as CoreDNS's
    /// `upstream.Lookup` does: the query is a copy of `req` (same client, transport, flags and
    /// EDNS0 record, RD set) with only the question replaced, routed by zone on the same
    /// listener and answered by that block's whole chain. A failure the chain returns becomes an
    /// answer with that rcode, as the server would send it; no zone on the listener is REFUSED.
    ///
    /// The answer is not fitted to the client's buffer: the plugin puts its records into the
    /// client's answer, which the server fits when it sends it.
    pub async fn lookup(
        &self,
        req: &Request,
        name: Name,
        qtype: RecordType,
    ) -> Result<Message, LookupError> {
        let depth = DEPTH.try_with(|d| *d).unwrap_or(0);
        if depth >= MAX_DEPTH {
            return Err(LookupError::TooDeep);
        }
        let table = self
            .listeners
            .table(&req.server)
            .ok_or(LookupError::NoServer)?;
        let mut msg = req.msg().clone();
        msg.metadata.recursion_desired = true;
        msg.queries.clear();
        let mut query = Query::query(name, qtype);
        query.query_class = DNSClass::IN;
        msg.queries.push(query);
        let mut sub = req.with_message(msg).ok_or(LookupError::NoReply)?;
        let Some(block) = table.lookup(sub.name(), qtype).cloned() else {
            let mut m = sub.reply();
            m.metadata.response_code = ResponseCode::Refused;
            // Counted as the listener counts a client's query that no zone takes.
            if let Some(recorder) = &table.dropped {
                let size = m.to_vec().map_or(0, |w| w.len());
                recorder.record(&sub, ResponseCode::Refused, "", size, Instant::now());
            }
            return Ok(m);
        };
        sub.zone = block.zone.clone();
        sub.server = block.server.clone();
        let start = Instant::now();
        let outcome = DEPTH
            .scope(depth + 1, async { block.chain.serve(&sub).await })
            .await;
        let answer = match outcome {
            Ok(resp) => {
                let plugin = resp.plugin;
                let m = resp.into_message();
                (m, plugin)
            }
            Err(Failure { reply: false, .. }) => return Err(LookupError::NoReply),
            Err(Failure { rcode, .. }) => {
                let mut m = sub.reply();
                m.metadata.response_code = rcode;
                (m, "")
            }
        };
        // The block's metrics count the lookup as they count a client's query, as CoreDNS's
        // do: its *prometheus* sits in the chain the lookup runs through.
        if let Some(recorder) = &block.recorder {
            let size = answer.0.to_vec().map_or(0, |w| w.len());
            recorder.record(&sub, answer.0.metadata.response_code, answer.1, size, start);
        }
        Ok(answer.0)
    }
}

#[cfg(test)]
pub mod testkit {
    //! Zone tables for plugin unit tests that look names up through "the server".

    use super::*;
    use crate::plugin::{Chain, Plugin};
    use crate::server::dispatch::BlockServer;

    /// The `server` label the test tables are registered under.
    pub const SERVER: &str = "dns://test:53";

    /// A listener serving `blocks` (zone, chain), registered in `shared` under [`SERVER`]. Keep
    /// the returned table alive for as long as lookups should find it.
    pub fn listener(
        shared: &Shared,
        blocks: Vec<(&str, Vec<Arc<dyn Plugin>>)>,
    ) -> Arc<ArcSwap<ZoneTable>> {
        let mut table = ZoneTable::default();
        for (zone, plugins) in blocks {
            table.insert(
                zone.to_string(),
                Arc::new(BlockServer {
                    chain: Chain { plugins },
                    zone: Arc::from(zone),
                    server: Arc::from(SERVER),
                    allow_chaos: false,
                    recorder: None,
                }),
            );
        }
        let table = Arc::new(ArcSwap::from_pointee(table));
        shared.listeners.register(SERVER, &table);
        table
    }

    /// `req` as the listener of [`listener`] would have labelled it.
    pub fn arrived(mut req: Request) -> Request {
        req.server = Arc::from(SERVER);
        req
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{A, CNAME};

    use super::testkit::{arrived, listener};
    use super::*;
    use crate::metrics::Metrics;
    use crate::plugin::{Next, Plugin, Response, Served};
    use crate::plugins::whoami::testkit::{Answer, ask, record, show};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn answer_a(name: &str, ip: &str) -> Arc<dyn Plugin> {
        let mut a = Answer::new(ResponseCode::NoError);
        a.answers
            .push(record(name, 60, RData::A(A(ip.parse().unwrap()))));
        Arc::new(a)
    }

    /// Answers every query with a CNAME from the question name to `target`, then looks the
    /// target up through the server and appends what it finds (template's behaviour), and
    /// records every request it saw.
    struct Chaser {
        upstream: Upstream,
        target: &'static str,
        seen: Mutex<Vec<(String, u16, bool)>>,
    }

    impl Plugin for Chaser {
        fn name(&self) -> &'static str {
            "chaser"
        }

        fn serve<'a>(&'a self, req: &'a Request, _next: Next<'a>) -> Served<'a> {
            self.seen.lock().unwrap().push((
                req.name().to_string(),
                req.id(),
                req.msg().metadata.recursion_desired,
            ));
            Served::pending(async move {
                let target = Name::from_ascii(self.target).unwrap();
                let mut m = req.reply();
                m.answers
                    .push(record(req.name(), 60, RData::CNAME(CNAME(target.clone()))));
                if let Ok(found) = self.upstream.lookup(req, target, req.qtype()).await {
                    m.answers.extend(found.answers);
                }
                Ok(Response::new(m, "chaser"))
            })
        }
    }

    #[test]
    fn lookups_cross_server_blocks_of_the_listener() {
        let shared = Shared::new(Arc::new(Metrics::new()));
        let up = Upstream::new(&shared);
        let _table = listener(
            &shared,
            vec![
                (
                    "example.org.",
                    vec![answer_a("www.example.org.", "192.0.2.1")],
                ),
                (
                    "example.net.",
                    vec![answer_a("www.example.net.", "192.0.2.2")],
                ),
            ],
        );
        let req = arrived(ask("www.example.org.", RecordType::A).edns(1232).request());
        let name = Name::from_ascii("www.example.net.").unwrap();
        let m = block_on(up.lookup(&req, name, RecordType::A)).unwrap();
        assert_eq!(show(&m.answers), ["www.example.net. 60 IN A 192.0.2.2"]);
        assert_eq!(m.queries[0].name.to_ascii(), "www.example.net.");
        assert_eq!(m.metadata.id, req.id());

        // No zone on the listener for the name, and no root zone: REFUSED, as a client gets.
        let name = Name::from_ascii("example.com.").unwrap();
        let m = block_on(up.lookup(&req, name, RecordType::A)).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);

        // A failing chain becomes an answer with its rcode.
        let _failing = listener(&shared, vec![(".", vec![])]);
        let name = Name::from_ascii("example.com.").unwrap();
        let m = block_on(up.lookup(&req, name, RecordType::A)).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn no_registered_listener_is_an_error() {
        let shared = Shared::new(Arc::new(Metrics::new()));
        let up = Upstream::new(&shared);
        let req = arrived(ask("www.example.org.", RecordType::A).request());
        let name = Name::from_ascii("a.example.").unwrap();
        assert_eq!(
            block_on(up.lookup(&req, name.clone(), RecordType::A)),
            Err(LookupError::NoServer)
        );
        // A table that is gone (its configuration was replaced) is not found either.
        drop(listener(&shared, vec![(".", vec![])]));
        assert_eq!(
            block_on(up.lookup(&req, name, RecordType::A)),
            Err(LookupError::NoServer)
        );
    }

    #[test]
    fn a_cname_loop_stops_at_the_depth_bound() {
        let shared = Shared::new(Arc::new(Metrics::new()));
        let chaser = Arc::new(Chaser {
            upstream: Upstream::new(&shared),
            target: "loop.example.",
            seen: Mutex::new(Vec::new()),
        });
        let _table = listener(
            &shared,
            vec![(".", vec![chaser.clone() as Arc<dyn Plugin>])],
        );
        let req = arrived(ask("start.example.", RecordType::A).request());
        let m = match chaser.serve(&req, Next::new(&[])) {
            Served::Pending(f) => block_on(f).unwrap().into_message(),
            Served::Ready(o) => o.unwrap().into_message(),
        };
        // The client's query, then MAX_DEPTH nested lookups of the loop's target.
        let seen = chaser.seen.lock().unwrap();
        assert_eq!(seen.len(), 1 + usize::from(MAX_DEPTH));
        assert!(
            seen[1..]
                .iter()
                .all(|(n, id, rd)| n == "loop.example." && *id == req.id() && *rd)
        );
        assert_eq!(m.answers.len(), 1 + usize::from(MAX_DEPTH));
    }

    /// A plugin holding an `Upstream` does not keep the table it is served from alive: a reload
    /// that replaces the table frees the old configuration.
    #[test]
    fn tables_are_not_kept_alive_by_their_plugins() {
        let shared = Shared::new(Arc::new(Metrics::new()));
        let chaser: Arc<dyn Plugin> = Arc::new(Chaser {
            upstream: Upstream::new(&shared),
            target: "a.example.",
            seen: Mutex::new(Vec::new()),
        });
        let plugin = Arc::downgrade(&chaser);
        let table = listener(&shared, vec![(".", vec![chaser])]);
        assert!(plugin.upgrade().is_some());
        drop(table);
        assert!(plugin.upgrade().is_none());
    }
}
