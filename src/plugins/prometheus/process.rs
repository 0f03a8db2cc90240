//! The `process_*` metrics that Go's Prometheus client exports for every process, which CoreDNS
//! dashboards chart as "CPU" and "memory": read from `/proc` at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub struct ProcessCollector;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub virtual_bytes: f64,
    pub resident_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
}

fn sysconf(name: libc::c_int) -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 { v as f64 } else { 0.0 }
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so the split is after its last `)`): index 0 is field 3, `state`.
pub fn parse_stat(stat: &str, boot_time: f64, ticks: f64, page: f64) -> Option<Sample> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(Sample {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        start_time_seconds: boot_time + num(19)? / ticks,
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * page,
        ..Sample::default()
    })
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut s = parse_stat(
        &stat,
        boot_time()?,
        sysconf(libc::_SC_CLK_TCK),
        sysconf(libc::_SC_PAGESIZE),
    )?;
    s.open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        s.max_fds = lim.rlim_cur as f64;
    }
    Some(s)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?)?;
        for (name, help, value) in [
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_bytes,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
        ] {
            ConstGauge::new(value).encode(encoder.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // pid (comm with ") x") state ppid ... utime=11 stime=12 ... starttime=19 vsize=20 rss=21
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[11] = "250".into(); // utime, field 14
        fields[12] = "50".into(); // stime, field 15
        fields[19] = "1000".into(); // starttime, field 22
        fields[20] = "4096000".into(); // vsize, field 23
        fields[21] = "100".into(); // rss pages, field 24
        let stat = format!("42 (odd ) name) {}", fields.join(" "));
        let s = parse_stat(&stat, 1_700_000_000.0, 100.0, 4096.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_000_010.0);
        assert_eq!(s.virtual_bytes, 4_096_000.0);
        assert_eq!(s.resident_bytes, 409_600.0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample().unwrap();
        assert!(s.resident_bytes > 0.0 && s.open_fds > 0.0 && s.max_fds > 0.0);
    }
}
