//! `reload`: re-read the Corefile every INTERVAL (± JITTER) and, when it changed, serve the new
//! configuration without a restart. See README.md.
//!
//! Setup only checks the options and records the interval in [`Shared::reload`]; the watch
//! itself belongs to the process (`main`), because it replaces the configuration this plugin is
//! part of. The metrics live here so that both sides name them once.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;
use crate::plugin::parse::go_duration;
use crate::plugin::setup::{Setup, SetupError, SetupResult, Shared};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_JITTER: Duration = Duration::from_secs(15);
const MIN_INTERVAL: Duration = Duration::from_secs(2);
const MIN_JITTER: Duration = Duration::from_secs(1);

/// `coredns_reload_failed_total` and `coredns_reload_version_info{hash,value}`.
#[derive(Clone)]
pub struct ReloadMetrics {
    pub failed: Counter,
    pub version: Family<Vec<(String, String)>, Gauge>,
}

/// The process's reload metrics (registered on first use).
pub fn metrics(m: &Metrics) -> ReloadMetrics {
    m.family(|r| {
        let failed = Counter::default();
        r.register(
            "coredns_reload_failed",
            "Counter of the number of failed reload attempts.",
            failed.clone(),
        );
        let version = Family::<Vec<(String, String)>, Gauge>::default();
        r.register(
            "coredns_reload_version_info",
            "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
            version.clone(),
        );
        ReloadMetrics { failed, version }
    })
}

impl ReloadMetrics {
    /// Show `hash` as the running configuration's, replacing `previous`.
    pub fn set_version(&self, previous: Option<&str>, hash: &str) {
        if let Some(p) = previous {
            self.version.remove(&labels(p));
        }
        self.version.get_or_create(&labels(hash)).set(1);
    }
}

fn labels(hash: &str) -> Vec<(String, String)> {
    vec![
        ("hash".to_string(), "sha512".to_string()),
        ("value".to_string(), hash.to_string()),
    ]
}

fn parse(args: &[&str]) -> Result<(Duration, Duration), String> {
    let interval = match args.first() {
        Some(a) => go_duration(a)?,
        None => DEFAULT_INTERVAL,
    };
    if interval < MIN_INTERVAL {
        return Err("interval value must be greater or equal to 2s".into());
    }
    let mut jitter = match args.get(1) {
        Some(a) => go_duration(a)?,
        None => DEFAULT_JITTER,
    };
    if jitter < MIN_JITTER {
        return Err("jitter value must be greater or equal to 1s".into());
    }
    jitter = jitter.min(interval / 2);
    Ok((interval, jitter))
}

/// INTERVAL moved by a random amount in [-JITTER/2, +JITTER/2), as CoreDNS spreads the checks of
/// many instances started together.
fn jittered(interval: Duration, jitter: Duration) -> Duration {
    let j = jitter.as_nanos() as i128;
    if j == 0 {
        return interval;
    }
    let offset = rand::random_range(0..j) - j / 2;
    let nanos = (interval.as_nanos() as i128 + offset).max(MIN_INTERVAL.as_nanos() as i128 / 2);
    Duration::from_nanos(nanos as u64)
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    let d = c.once()?;
    let args = d.arg_strs();
    if args.len() > 2 || !d.block.is_empty() {
        return Err(d.arg_err());
    }
    let (interval, jitter) = parse(&args).map_err(|msg| SetupError { loc: None, msg })?;
    metrics(&c.shared.metrics);
    set(c.shared, jittered(interval, jitter));
    Ok(None)
}

/// Several blocks may each load `reload`; the process checks at the shortest interval asked.
fn set(shared: &Shared, interval: Duration) {
    let mut r = shared.reload.lock().unwrap_or_else(|e| e.into_inner());
    *r = Some(r.map_or(interval, |cur| cur.min(interval)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let s = Duration::from_secs;
        type Case<'a> = (&'a [&'a str], Result<(Duration, Duration), &'a str>);
        let cases: &[Case] = &[
            (&[], Ok((s(30), s(15)))),
            (&["10s"], Ok((s(10), s(5)))),
            (&["1m", "5s"], Ok((s(60), s(5)))),
            (&["2s", "1s"], Ok((s(2), s(1)))),
            (
                &["1s"],
                Err("interval value must be greater or equal to 2s"),
            ),
            (
                &["10s", "500ms"],
                Err("jitter value must be greater or equal to 1s"),
            ),
            (&["ten"], Err("time: invalid duration \"ten\"")),
        ];
        for (args, want) in cases {
            let got = parse(args);
            match want {
                Ok(w) => assert_eq!(got.as_ref().ok(), Some(w), "{args:?}"),
                Err(e) => assert_eq!(got.as_ref().err().map(String::as_str), Some(*e), "{args:?}"),
            }
        }
    }

    #[test]
    fn metrics_have_coredns_names() {
        let m = Metrics::new();
        let r = metrics(&m);
        r.failed.inc();
        r.set_version(None, "aa");
        r.set_version(Some("aa"), "bb");
        let text = m.encode();
        assert!(text.contains("coredns_reload_failed_total 1"), "{text}");
        assert!(
            text.contains("coredns_reload_version_info{hash=\"sha512\",value=\"bb\"} 1"),
            "{text}"
        );
        assert!(!text.contains("value=\"aa\""), "{text}");
        // A second setup (another block, a reload) shares the same counter.
        metrics(&m).failed.inc();
        assert!(m.encode().contains("coredns_reload_failed_total 2"));
    }

    #[test]
    fn jitter_stays_within_half_either_side() {
        let (i, j) = (Duration::from_secs(30), Duration::from_secs(15));
        for _ in 0..200 {
            let d = jittered(i, j);
            assert!(
                d >= Duration::from_millis(22_500) && d < Duration::from_millis(37_500),
                "{d:?}"
            );
        }
        assert_eq!(jittered(i, Duration::ZERO), i);
    }
}
