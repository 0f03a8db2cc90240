//! The `weighted` policy's weight file: its format, loading it, and re-reading it every
//! `reload` interval.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use hickory_proto::rr::Name;

/// Addresses and their weights, per owner name. Names compare case-insensitively.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Weights {
    domains: HashMap<Name, Vec<(IpAddr, u8)>>,
}

impl Weights {
    /// The weight of `ip` for `name`; 1 when the file does not list it.
    pub fn weight(&self, name: &Name, ip: IpAddr) -> u8 {
        self.domains
            .get(name)
            .and_then(|list| list.iter().find(|(a, _)| *a == ip))
            .map_or(1, |(_, w)| *w)
    }

    /// Parse a weight file: a domain name on a line of its own, followed by `ADDRESS WEIGHT`
    /// lines (weight 1 to 255) for it; blank lines and lines starting with `#` are skipped.
    /// `file` names the file in error messages, which read as CoreDNS's.
    pub fn parse(text: &str, file: &str) -> Result<Weights, String> {
        let mut domains: HashMap<Name, Vec<(IpAddr, u8)>> = HashMap::new();
        let mut current: Option<Name> = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [domain] => {
                    // A lone address is almost certainly a line that lost its weight.
                    let wrong = || {
                        format!(
                            "wrong domain name:\"{domain}\" in weight file {file}. (Maybe a missing weight value?)"
                        )
                    };
                    if domain.parse::<IpAddr>().is_ok() {
                        return Err(wrong());
                    }
                    let fqdn = if domain.ends_with('.') {
                        domain.to_string()
                    } else {
                        format!("{domain}.")
                    };
                    let name = Name::from_ascii(&fqdn).map_err(|_| wrong())?;
                    domains.entry(name.clone()).or_default();
                    current = Some(name);
                }
                [ip, weight] => {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| format!("wrong IP address:\"{ip}\" in weight file {file}"))?;
                    let w = match weight.parse::<u8>() {
                        Ok(w) if w > 0 => w,
                        _ => {
                            return Err(format!(
                                "wrong weight value:\"{weight}\" in weight file {file}"
                            ));
                        }
                    };
                    let Some(name) = &current else {
                        return Err(format!("missing domain name in weight file {file}"));
                    };
                    domains.entry(name.clone()).or_default().push((ip, w));
                }
                _ => {
                    return Err(format!(
                        "could not parse weight line:\"{line}\" in weight file {file}"
                    ));
                }
            }
        }
        Ok(Weights { domains })
    }
}

/// Why a weight file could not be loaded.
#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be opened or read (CoreDNS says only "weight file open error").
    Open,
    Parse(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Open => f.write_str("weight file open error"),
            LoadError::Parse(msg) => f.write_str(msg),
        }
    }
}

/// A weight file and the weights last loaded from it.
pub struct WeightFile {
    pub path: PathBuf,
    /// How often to look at the file again; zero: never.
    pub reload: Duration,
    /// The content last read, to skip parsing (and logging) when nothing changed. It is updated
    /// even when the new content does not parse, so a broken file is reported once, not on
    /// every tick, while the last good weights stay in use (as CoreDNS does with its checksum).
    last: Mutex<Option<Vec<u8>>>,
    current: RwLock<Arc<Weights>>,
}

impl WeightFile {
    pub fn new(path: PathBuf, reload: Duration) -> Self {
        WeightFile {
            path,
            reload,
            last: Mutex::new(None),
            current: RwLock::new(Arc::new(Weights::default())),
        }
    }

    /// The weights in force.
    pub fn weights(&self) -> Arc<Weights> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Read the file again and install its weights if it changed. `Ok(true)`: new weights
    /// were installed.
    pub fn load_bytes(&self, bytes: Vec<u8>) -> Result<bool, LoadError> {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_deref() == Some(bytes.as_slice()) {
                return Ok(false);
            }
            *last = Some(bytes.clone());
        }
        let text = String::from_utf8_lossy(&bytes);
        let weights =
            Weights::parse(&text, &self.path.display().to_string()).map_err(LoadError::Parse)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(weights);
        crate::info!(
            "plugin/loadbalance: Successfully reloaded weight file {}",
            self.path.display()
        );
        Ok(true)
    }

    /// Load the file now (blocking read; used at setup).
    pub fn load(&self) -> Result<bool, LoadError> {
        let bytes = std::fs::read(&self.path).map_err(|_| LoadError::Open)?;
        self.load_bytes(bytes)
    }

    /// Re-read the file every `reload` in a background task that ends once the plugin that
    /// owns this file is gone (a reload built a new one, or the server stopped).
    pub fn spawn_reload(self: &Arc<Self>) {
        if self.reload.is_zero() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<WeightFile> = Arc::downgrade(self);
        let period = self.reload;
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(file) = weak.upgrade() else {
                    return;
                };
                let result = match tokio::fs::read(&file.path).await {
                    Ok(bytes) => file.load_bytes(bytes),
                    Err(_) => Err(LoadError::Open),
                };
                if let Err(e) = result {
                    crate::error!("plugin/loadbalance: {e}");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn parses_the_documented_format() {
        let text = "# weights for www\n\nwww.example.com\n100.64.1.1 3\n100.64.1.2 1\n\n  \
                    Other.Example.COM.\n2001:db8::1 255\n# trailing comment\n";
        let w = Weights::parse(text, "wf").unwrap();
        let www = name("www.example.com.");
        assert_eq!(w.weight(&www, "100.64.1.1".parse().unwrap()), 3);
        assert_eq!(w.weight(&www, "100.64.1.2".parse().unwrap()), 1);
        // Not listed: the default weight.
        assert_eq!(w.weight(&www, "100.64.1.9".parse().unwrap()), 1);
        // Names match whatever their case.
        assert_eq!(
            w.weight(&name("other.example.com."), "2001:db8::1".parse().unwrap()),
            255
        );
        assert_eq!(
            w.weight(&name("nowhere.example."), "100.64.1.1".parse().unwrap()),
            1
        );
    }

    #[test]
    fn a_domain_may_be_listed_twice() {
        let w = Weights::parse("a.example\n10.0.0.1 2\na.example.\n10.0.0.2 5\n", "wf").unwrap();
        let a = name("a.example.");
        assert_eq!(w.weight(&a, "10.0.0.1".parse().unwrap()), 2);
        assert_eq!(w.weight(&a, "10.0.0.2".parse().unwrap()), 5);
    }

    #[test]
    fn rejects_what_coredns_rejects() {
        let cases = [
            (
                "10.0.0.1\n",
                "wrong domain name:\"10.0.0.1\" in weight file wf. (Maybe a missing weight value?)",
            ),
            (
                "a.example\nnot-an-ip 3\n",
                "wrong IP address:\"not-an-ip\" in weight file wf",
            ),
            (
                "a.example\n10.0.0.1 0\n",
                "wrong weight value:\"0\" in weight file wf",
            ),
            (
                "a.example\n10.0.0.1 256\n",
                "wrong weight value:\"256\" in weight file wf",
            ),
            (
                "a.example\n10.0.0.1 -1\n",
                "wrong weight value:\"-1\" in weight file wf",
            ),
            ("10.0.0.1 3\n", "missing domain name in weight file wf"),
            (
                "a.example\n10.0.0.1 3 extra\n",
                "could not parse weight line:\"10.0.0.1 3 extra\" in weight file wf",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Weights::parse(text, "wf").unwrap_err(), want, "{text:?}");
        }
    }

    #[test]
    fn reload_installs_changes_and_keeps_last_good_weights() {
        let f = WeightFile::new(PathBuf::from("wf"), Duration::ZERO);
        let a = name("a.example.");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(f.load_bytes(b"a.example\n10.0.0.1 7\n".to_vec()), Ok(true));
        assert_eq!(f.weights().weight(&a, ip), 7);
        // Same content: nothing to do.
        assert_eq!(f.load_bytes(b"a.example\n10.0.0.1 7\n".to_vec()), Ok(false));
        // Broken content: an error once, the old weights stay.
        assert!(matches!(
            f.load_bytes(b"a.example\n10.0.0.1 x\n".to_vec()),
            Err(LoadError::Parse(_))
        ));
        assert_eq!(f.weights().weight(&a, ip), 7);
        assert_eq!(f.load_bytes(b"a.example\n10.0.0.1 x\n".to_vec()), Ok(false));
        assert_eq!(f.load_bytes(b"a.example\n10.0.0.1 9\n".to_vec()), Ok(true));
        assert_eq!(f.weights().weight(&a, ip), 9);
    }

    #[test]
    fn missing_file_is_an_open_error() {
        let f = WeightFile::new(PathBuf::from("/nonexistent/ferrodns/wf"), Duration::ZERO);
        assert_eq!(f.load(), Err(LoadError::Open));
        assert_eq!(LoadError::Open.to_string(), "weight file open error");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_task_picks_up_changes_and_ends_with_its_plugin() {
        let dir = std::env::temp_dir().join(format!("ferrodns-lb-wf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("weights");
        std::fs::write(&path, "a.example\n10.0.0.1 2\n").unwrap();
        let f = Arc::new(WeightFile::new(path.clone(), Duration::from_millis(100)));
        f.load().unwrap();
        f.spawn_reload();
        let a = name("a.example.");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(f.weights().weight(&a, ip), 2);
        std::fs::write(&path, "a.example\n10.0.0.1 4\n").unwrap();
        for _ in 0..50 {
            if f.weights().weight(&a, ip) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(f.weights().weight(&a, ip), 4);
        let weak = Arc::downgrade(&f);
        drop(f);
        // The task holds the file only while it reads it; it notices within a period.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            weak.upgrade().is_none(),
            "the reload task must not keep the file alive"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
