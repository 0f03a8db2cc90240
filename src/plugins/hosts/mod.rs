//! `hosts`: answers A, AAAA and PTR questions from an `/etc/hosts`-style file and from lines
//! written in the Corefile. See README.md.
//!
//! Hot path: the plugin reads one immutable [`Table`] through an [`ArcSwap`] (no lock, no
//! reference-count traffic on the shared cache line), does one hash lookup with the request's
//! already-lowercased name, and allocates only the answer. The file is re-read in a background
//! task that builds a new table and swaps it in whole.

// Public (hidden) so the fuzz targets in `fuzz/` can feed the parser arbitrary files.
#[doc(hidden)]
pub mod table;

use std::fs::File;
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{RData, Record, RecordType};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::corefile::Directive;
use crate::dnsname::is_subdomain;
use crate::plugin::fall::Fall;
use crate::plugin::parse::go_duration;
use crate::plugin::setup::{Setup, SetupResult};
use crate::plugin::{Failure, Next, Plugin, Request, Response, Served};
use crate::warning;

use table::{HostsMap, Table, reverse_addr};

const NAME: &str = "hosts";
const DEFAULT_PATH: &str = "/etc/hosts";
const DEFAULT_TTL: u32 = 3600;
const DEFAULT_RELOAD: Duration = Duration::from_secs(5);

/// CoreDNS's hosts metrics. `coredns_hosts_entries` carries the file path as its `hostsfile`
/// label (CoreDNS 1.11.4+), so several blocks with different files each keep their count.
#[derive(Clone)]
struct HostsMetrics {
    entries: Family<Vec<(String, String)>, Gauge>,
    reload_timestamp: Gauge<f64, AtomicU64>,
}

impl HostsMetrics {
    fn get(setup: &Setup<'_>) -> Self {
        setup.shared.metrics.family(|reg| {
            let m = HostsMetrics {
                entries: Family::default(),
                reload_timestamp: Gauge::default(),
            };
            reg.register(
                "coredns_hosts_entries",
                "The combined number of entries in hosts and Corefile.",
                m.entries.clone(),
            );
            reg.register(
                "coredns_hosts_reload_timestamp_seconds",
                "The timestamp of the last reload of hosts file.",
                m.reload_timestamp.clone(),
            );
            m
        })
    }
}

/// The hosts data of one plugin instance and what is needed to reload it. The background
/// reload task holds only a `Weak` to this, so dropping the plugin ends the task.
struct Source {
    path: PathBuf,
    origins: Vec<String>,
    reverse: bool,
    inline: HostsMap,
    table: ArcSwap<Table>,
    /// Modification time and size of the file as last parsed (CoreDNS re-parses only when
    /// either changed). Only the reload task and setup touch it.
    stamp: Mutex<Option<(Option<SystemTime>, u64)>>,
    metrics: HostsMetrics,
}

impl Source {
    /// CoreDNS's `readHosts`: re-parse the file if its mtime or size changed. A file that
    /// cannot be opened leaves the current data in place (CoreDNS logs nothing then: the
    /// missing file was reported at setup).
    fn read(&self) {
        let Ok(mut file) = File::open(&self.path) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let stamp = (meta.modified().ok(), meta.len());
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == Some(stamp) {
            return;
        }
        // A read error part-way (a directory, an I/O error) parses what was read, as Go's
        // scanner stops at the error.
        let mut text = Vec::with_capacity(meta.len().min(1 << 26) as usize);
        let _ = file.read_to_end(&mut text);
        let parsed = table::parse(&text, &self.origins, self.reverse);
        self.table
            .store(Arc::new(Table::build(&parsed, &self.inline)));
        *last = Some(stamp);
        drop(last);

        let label = vec![(
            "hostsfile".to_string(),
            self.path.to_string_lossy().into_owned(),
        )];
        self.metrics
            .entries
            .get_or_create(&label)
            .set((parsed.len() + self.inline.len()) as i64);
        // As CoreDNS does, the "reload timestamp" is the file's modification time.
        if let Some(secs) = stamp
            .0
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        {
            self.metrics.reload_timestamp.set(secs.as_secs_f64());
        }
    }
}

/// Re-read the file every `every` until the plugin is gone.
async fn reload_loop(source: Weak<Source>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; setup has just read the file
    loop {
        ticker.tick().await;
        let Some(source) = source.upgrade() else {
            return;
        };
        // Parsing a large block list takes a while: keep it off the query workers.
        if tokio::task::spawn_blocking(move || source.read())
            .await
            .is_err()
        {
            return;
        }
    }
}

pub struct Hosts {
    origins: Vec<String>,
    fall: Fall,
    ttl: u32,
    source: Arc<Source>,
}

/// The options of one `hosts` directive.
struct Options {
    path: PathBuf,
    origins: Vec<String>,
    fall: Fall,
    ttl: u32,
    reverse: bool,
    reload: Duration,
    inline: Vec<String>,
}

fn parse_options(c: &Setup<'_>, d: &Directive) -> Result<Options, crate::plugin::SetupError> {
    let args = d.arg_strs();
    let mut path = PathBuf::from(DEFAULT_PATH);
    let mut zones: Vec<String> = Vec::new();
    if let Some((file, rest)) = args.split_first() {
        path = c.path(file);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                warning!("plugin/hosts: Hosts file {:?} is a directory", path);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                warning!("plugin/hosts: File does not exist: {}", path.display());
            }
            Err(e) => {
                return Err(d.err(format!(
                    "unable to access hosts file '{}': {e}",
                    path.display()
                )));
            }
        }
        zones = rest.iter().map(|s| s.to_string()).collect();
    }
    let mut o = Options {
        path,
        origins: c.origins(&zones),
        fall: Fall::default(),
        ttl: DEFAULT_TTL,
        reverse: true,
        reload: DEFAULT_RELOAD,
        inline: Vec::new(),
    };
    for line in &d.block {
        let first = |msg: &str| {
            line.args
                .first()
                .map(|t| t.text.as_str())
                .ok_or_else(|| line.err(msg))
        };
        match line.name.as_str() {
            "fallthrough" => o.fall = Fall::from_directive(line),
            // CoreDNS ignores anything after `no_reverse`, and after the first word of `ttl`.
            "no_reverse" => o.reverse = false,
            "ttl" => {
                let text = first("ttl needs a time in second")?;
                let ttl: i64 = text
                    .parse()
                    .map_err(|_| line.err("ttl needs a number of second"))?;
                if !(1..=65535).contains(&ttl) {
                    return Err(line.err("ttl provided is invalid"));
                }
                o.ttl = ttl as u32;
            }
            "reload" => {
                if line.args.len() != 1 {
                    return Err(line.err("reload needs a duration (zero seconds to disable)"));
                }
                let text = line.args[0].text.as_str();
                o.reload = match text.strip_prefix('-').map(go_duration) {
                    Some(Ok(d)) if !d.is_zero() => {
                        return Err(
                            line.err(format!("invalid negative duration for reload '{text}'"))
                        );
                    }
                    Some(Ok(d)) => d,
                    Some(Err(_)) => {
                        return Err(line.err(format!("invalid duration for reload '{text}'")));
                    }
                    None => go_duration(text)
                        .map_err(|_| line.err(format!("invalid duration for reload '{text}'")))?,
                };
            }
            // Any other line is a hosts entry, until `fallthrough` has been seen: after it,
            // CoreDNS takes an unknown word for a mistyped option.
            _ if !o.fall.is_set() && line.block.is_empty() => {
                let mut entry = line.name.clone();
                for a in &line.args {
                    entry.push(' ');
                    entry.push_str(&a.text);
                }
                o.inline.push(entry);
            }
            _ => return Err(Directive::unknown_property(line)),
        }
    }
    Ok(o)
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    let o = parse_options(c, d)?;
    let inline = table::parse(o.inline.join("\n").as_bytes(), &o.origins, o.reverse);
    let source = Arc::new(Source {
        path: o.path,
        origins: o.origins.clone(),
        reverse: o.reverse,
        table: ArcSwap::from_pointee(Table::build(&HostsMap::default(), &inline)),
        inline,
        stamp: Mutex::new(None),
        metrics: HostsMetrics::get(c),
    });
    // CoreDNS reads the file once at start-up whatever `reload` says; `reload 0` only stops
    // the re-reads.
    source.read();
    if !o.reload.is_zero()
        && let Ok(rt) = tokio::runtime::Handle::try_current()
    {
        rt.spawn(reload_loop(Arc::downgrade(&source), o.reload));
    }
    Ok(Some(Arc::new(Hosts {
        origins: o.origins,
        fall: o.fall,
        ttl: o.ttl,
        source,
    })))
}

impl Hosts {
    fn answer(&self, req: &Request, answers: Vec<Record>) -> Served<'static> {
        let mut m = req.reply();
        m.metadata.authoritative = true;
        m.answers = answers;
        Served::Ready(Ok(Response::new(m, NAME)))
    }
}

impl Plugin for Hosts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn serve<'a>(&'a self, req: &'a Request, next: Next<'a>) -> Served<'a> {
        let name = req.name();
        let qtype = req.qtype();
        // Reverse names need not be inside the plugin's zones; any other name outside them
        // goes on whatever `fallthrough` says.
        if qtype != RecordType::PTR && !self.origins.iter().any(|z| is_subdomain(name, z)) {
            return next.serve(req);
        }
        let table = self.source.table.load();
        // CoreDNS answers with the lowercased question name as the owner.
        let owner = || req.qname().to_lowercase();
        // No record takes fewer than 12 octets on the wire (a one-octet owner at the least,
        // type, class, TTL and length, one octet of data), so records beyond this many could
        // only be cut by truncation. Not building them bounds what a question costs when a
        // block list maps 100,000 names to `0.0.0.0`; one extra record keeps such an answer
        // over the limit, so the client still gets TC exactly as it would with all of them.
        let most = req.size() / 12 + 1;
        // A reverse question is answered from the address map only.
        let found = if qtype == RecordType::PTR {
            None
        } else {
            table.lookup(name)
        };
        let answers: Vec<Record> = match qtype {
            RecordType::PTR => {
                let targets = reverse_addr(name).and_then(|ip: IpAddr| table.reverse(&ip));
                // An address the data does not know goes on, fallthrough or not.
                let Some(targets) = targets else {
                    return next.serve(req);
                };
                let owner = owner();
                targets
                    .iter()
                    .take(most)
                    .map(|t| {
                        Record::from_rdata(owner.clone(), self.ttl, RData::PTR(PTR(t.clone())))
                    })
                    .collect()
            }
            RecordType::A => match found {
                Some(a) if !a.v4.is_empty() => {
                    let owner = owner();
                    a.v4.iter()
                        .take(most)
                        .map(|ip| Record::from_rdata(owner.clone(), self.ttl, RData::A(A(*ip))))
                        .collect()
                }
                _ => Vec::new(),
            },
            RecordType::AAAA => match found {
                Some(a) if !a.v6.is_empty() => {
                    let owner = owner();
                    a.v6.iter()
                        .take(most)
                        .map(|ip| {
                            Record::from_rdata(owner.clone(), self.ttl, RData::AAAA(AAAA(*ip)))
                        })
                        .collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        // A name with addresses of either family exists: an empty answer is NODATA. A name
        // with none is NXDOMAIN, which hosts cannot say without an SOA, so CoreDNS answers
        // SERVFAIL unless `fallthrough` passes it on.
        if answers.is_empty() && found.is_none() {
            if self.fall.through(name) {
                return next.serve(req);
            }
            return Served::Ready(Err(Failure::new(ResponseCode::ServFail)));
        }
        self.answer(req, answers)
    }
}

#[cfg(test)]
mod tests;
