//! `health`: the process-wide `/health` endpoint, its self-check metrics and `lameduck`. See
//! README.md.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::metrics::histogram::Histogram;
use crate::plugin::parse::listen_addr;
use crate::plugin::setup::{HttpReply, Setup, SetupResult};

const DEFAULT_ADDR: &str = ":8080";

/// How long the self-check may take before it counts as failed (CoreDNS's client timeout).
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// A self-check slower than this is worth a warning: a local request taking a second means the
/// process cannot keep up.
const SLOW_CHECK: Duration = Duration::from_secs(1);

/// CoreDNS's `plugin.SlimTimeBuckets`: 0.25 ms, times ten, five buckets.
static SLIM_TIME_BUCKETS: [f64; 5] = [0.00025, 0.0025, 0.025, 0.25, 2.5];

#[derive(Clone)]
pub struct HealthMetrics {
    pub duration: Histogram,
    pub failures: Counter,
}

impl HealthMetrics {
    fn register(reg: &mut Registry) -> Self {
        let m = HealthMetrics {
            duration: Histogram::new(&SLIM_TIME_BUCKETS, 1e-9),
            failures: Counter::default(),
        };
        // prometheus-client adds the final period of each help text.
        reg.register(
            "coredns_health_request_duration_seconds",
            "Histogram of the time (in seconds) each request took",
            m.duration.clone(),
        );
        reg.register(
            "coredns_health_request_failures",
            "The number of times the health check failed",
            m.failures.clone(),
        );
        m
    }
}

/// What the self-check task needs; it lives as long as the `/health` route does.
struct Endpoint {
    addr: SocketAddr,
    /// The URL as CoreDNS logs it (`http://:8080/health`).
    url: String,
    metrics: HealthMetrics,
}

pub fn setup(c: &mut Setup<'_>) -> SetupResult {
    // CoreDNS reads every occurrence; the last address and lameduck win.
    let mut text = DEFAULT_ADDR.to_string();
    let mut lameduck = Duration::ZERO;
    for d in &c.directives {
        match d.args.as_slice() {
            [] => {}
            [addr] => text = addr.text.clone(),
            _ => return Err(d.arg_err()),
        }
        for line in &d.block {
            match (line.name.as_str(), line.args.as_slice()) {
                ("lameduck", [value]) => {
                    lameduck = crate::plugin::parse::go_duration(&value.text).map_err(|e| {
                        crate::plugin::SetupError {
                            loc: None,
                            msg: format!(
                                "unable to parse lameduck duration value: \"{}\": {e}",
                                value.text
                            ),
                        }
                    })?;
                }
                _ => return Err(line.arg_err()),
            }
        }
    }
    let addr = listen_addr(&text).map_err(|msg| crate::plugin::SetupError { loc: None, msg })?;
    {
        let mut longest = c.shared.lameduck.lock().unwrap_or_else(|e| e.into_inner());
        *longest = (*longest).max(lameduck);
    }

    let metrics = c.shared.metrics.family(HealthMetrics::register);
    let endpoint = Arc::new(Endpoint {
        addr,
        url: format!("http://{text}/health"),
        metrics,
    });
    let route = endpoint.clone();
    // Health is process-wide: it answers OK for as long as the process serves, lameduck
    // included (only `ready` turns away traffic during shutdown).
    c.shared.add_http(
        addr,
        "/health",
        Arc::new(move || {
            // Captured only to own the endpoint: the self-check task holds a `Weak` to it, so
            // the task lives exactly as long as this route (until a reload replaces it).
            let _ = &route;
            HttpReply {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "OK".into(),
            }
        }),
    );
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        let weak = Arc::downgrade(&endpoint);
        rt.spawn(self_check(weak));
    }
    Ok(None)
}

/// Once a second, fetch our own `/health` and record how long it took (CoreDNS's
/// `overloaded`). Ends when the endpoint is dropped by a reload.
async fn self_check(endpoint: Weak<Endpoint>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ep) = endpoint.upgrade() else {
            return;
        };
        let addr = ep.addr;
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(move || fetch(addr)).await;
        let elapsed = start.elapsed();
        ep.metrics.duration.observe_units(elapsed.as_nanos() as u64);
        match result {
            Ok(Ok(())) => {
                if elapsed > SLOW_CHECK {
                    crate::warning!(
                        "plugin/health: Local health request to \"{}\" took more than 1s: {}",
                        ep.url,
                        crate::plugin::parse::go_duration_string(elapsed)
                    );
                }
            }
            Ok(Err(e)) => {
                ep.metrics.failures.inc();
                crate::warning!(
                    "plugin/health: Local health request to \"{}\" failed: {e}",
                    ep.url
                );
            }
            Err(_) => {
                ep.metrics.failures.inc();
            }
        }
    }
}

/// One GET of `/health` on `addr` (an unspecified address means this host).
fn fetch(addr: SocketAddr) -> std::io::Result<()> {
    // `[::]` listens on IPv4 too, and 127.0.0.1 exists even where IPv6 is switched off.
    let target = if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    };
    let mut s = TcpStream::connect_timeout(&target, CHECK_TIMEOUT)?;
    s.set_read_timeout(Some(CHECK_TIMEOUT))?;
    s.set_write_timeout(Some(CHECK_TIMEOUT))?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    if reply.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(std::io::Error::other("unexpected reply"))
    }
}

#[cfg(test)]
mod tests;
