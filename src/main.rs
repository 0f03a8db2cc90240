//! `ferrodns`: start it as you start `coredns`, with the same flags and Corefile.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use ferrodns::corefile::{self, Corefile};
use ferrodns::metrics::Metrics;
use ferrodns::plugin::order;
use ferrodns::plugin::parse::go_duration_string;
use ferrodns::plugin::setup::Shared;
use ferrodns::plugins::reload;
use ferrodns::server::{self, running::Running};

/// Command-line options, spelled as CoreDNS (Go's `flag` package) spells them.
#[derive(Debug, Default)]
struct Flags {
    conf: Option<String>,
    dns_port: Option<String>,
    pidfile: Option<String>,
    plugins: bool,
    quiet: bool,
    version: bool,
}

const USAGE: &str = "Usage of ferrodns:
  -conf string
    \tCorefile to load (default \"Corefile\")
  -dns.port string
    \tDefault port (default \"53\")
  -p string
    \tDefault port (default \"53\")
  -pidfile string
    \tPath to write pid file
  -plugins
    \tList installed plugins
  -quiet
    \tQuiet mode (no initialization output)
  -version
    \tShow version
";

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("{msg}");
    eprint!("{USAGE}");
    ExitCode::from(1)
}

/// Go flag syntax: `-name value`, `-name=value`, `--name`, booleans as `-name` or `-name=true`;
/// `--` ends the flags.
fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!(
                "extra command line arguments: [{}]",
                args[i - 1..].join(" ")
            ));
        };
        if body.is_empty() {
            return Err(format!("bad flag syntax: {arg}"));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or(format!("flag needs an argument: -{name}"))?;
            i += 1;
            Ok(v)
        };
        let boolean = |v: &Option<String>| -> Result<bool, String> {
            match v.as_deref() {
                None | Some("true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(true),
                Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(false),
                Some(other) => Err(format!(
                    "invalid boolean value \"{other}\" for -{name}: parse error"
                )),
            }
        };
        match name {
            "conf" => f.conf = Some(value(name)?),
            "dns.port" | "p" => f.dns_port = Some(value(name)?),
            "pidfile" => f.pidfile = Some(value(name)?),
            "plugins" => f.plugins = boolean(&inline)?,
            "quiet" => f.quiet = boolean(&inline)?,
            "version" => f.version = boolean(&inline)?,
            "h" | "help" => return Err(String::new()),
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    if i < args.len() {
        return Err(format!(
            "extra command line arguments: [{}]",
            args[i..].join(" ")
        ));
    }
    Ok(f)
}

/// Go's name for the architecture, as CoreDNS prints `runtime.GOARCH`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// CoreDNS's `showVersion`: `NAME-VERSION`, then `OS/ARCH, RUNTIME, COMMIT`. The runtime field
/// says rust, and the commit field names the CoreDNS release this build follows.
fn version_text() -> String {
    format!(
        "ferrodns-{}\n{}/{}, rust, CoreDNS-{}\n",
        ferrodns::VERSION,
        std::env::consts::OS,
        go_arch(),
        ferrodns::COREDNS_COMPAT
    )
}

/// CoreDNS's `-plugins` listing (Caddy's `DescribePlugins`, printed with a final newline).
fn plugins_text() -> String {
    let mut names: Vec<String> = order::implemented()
        .map(|n| {
            // `on` is registered for every server type, so it has no `dns.` prefix.
            if n == "on" {
                n.to_string()
            } else {
                format!("dns.{n}")
            }
        })
        .collect();
    names.sort_unstable();
    let mut out = String::from(
        "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n",
    );
    for n in names {
        out.push_str("  ");
        out.push_str(&n);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Where the configuration comes from, kept so that a reload reads it again.
#[derive(Clone)]
enum Source {
    /// `-conf FILE`, or `./Corefile` when it exists.
    File(PathBuf),
    /// `-conf stdin`, read once: a reload restarts the same text.
    Stdin(String),
    /// No Corefile: `whoami` and `log` on the root zone at the default port.
    Default(String),
}

impl Source {
    fn pick(conf: Option<&str>, port: &str) -> Result<Source, String> {
        match conf {
            Some("stdin") => {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .map_err(|e| format!("reading Corefile from stdin: {e}"))?;
                Ok(Source::Stdin(text))
            }
            Some(path) => {
                if !Path::new(path).exists() {
                    return Err(format!("open {path}: no such file or directory"));
                }
                Ok(Source::File(PathBuf::from(path)))
            }
            None if Path::new("Corefile").exists() => Ok(Source::File(PathBuf::from("Corefile"))),
            None => Ok(Source::Default(format!(".:{port} {{\nwhoami\nlog\n}}\n"))),
        }
    }

    fn load(&self) -> Result<Corefile, String> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        match self {
            Source::File(path) => corefile::parse_file(path).map_err(|e| e.to_string()),
            Source::Stdin(text) => {
                corefile::parse_str("stdin", text, &cwd).map_err(|e| e.to_string())
            }
            Source::Default(text) => {
                corefile::parse_str("Corefile", text, &cwd).map_err(|e| e.to_string())
            }
        }
    }
}

/// Go's `log.Fatal` as CoreDNS uses it at start-up: the message alone on stderr, exit 1.
fn fatal(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(msg) if msg.is_empty() => {
            // -h: Go prints the usage and exits 0.
            eprint!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => return usage_error(&msg),
    };
    if flags.version {
        print!("{}", version_text());
        return ExitCode::SUCCESS;
    }
    if flags.plugins {
        print!("{}", plugins_text());
        return ExitCode::SUCCESS;
    }
    let port_text = flags.dns_port.clone().unwrap_or_else(|| "53".into());
    let Ok(port) = port_text.parse::<u16>() else {
        return fatal(format!("invalid port: {port_text}"));
    };
    let source = match Source::pick(flags.conf.as_deref(), &port_text) {
        Ok(s) => s,
        Err(e) => return fatal(e),
    };
    let corefile = match source.load() {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };
    for w in &corefile.warnings {
        ferrodns::warning!("{w}");
    }

    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(format!("starting runtime: {e}")),
    };
    let code = rt.block_on(run(source, corefile, port, flags));
    // Listener threads and connections still open must not hold the exit.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// Raise the soft limit on open files to the hard limit, as the Go runtime does for CoreDNS at
/// start-up (Go 1.19+): every TCP client holds a descriptor, and 1024 is a common soft default.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The SHA-512 of the configuration as it was parsed, lowercase hex: for a file, of the bytes
/// of every file the parser read (imports too, in order); for stdin or the default, of the
/// text. Never a second read of the files, which could see a newer version than was parsed.
fn config_hash(source: &Source, corefile: &Corefile) -> String {
    use sha2::{Digest, Sha512};
    match source {
        Source::File(_) => corefile.sha512.clone(),
        Source::Stdin(text) | Source::Default(text) => Sha512::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    }
}

/// Build and serve the next configuration; on error the running one stays untouched.
fn restart(
    source: &Source,
    port: u16,
    metrics: &Arc<Metrics>,
    running: &mut Running,
) -> Result<Corefile, String> {
    apply(source.load()?, port, metrics, running)
}

/// Build and serve `corefile`; on error the running configuration stays untouched.
fn apply(
    corefile: Corefile,
    port: u16,
    metrics: &Arc<Metrics>,
    running: &mut Running,
) -> Result<Corefile, String> {
    let shared = Shared::new(metrics.clone());
    let instance = server::build(&corefile, port, &shared).map_err(|e| e.to_string())?;
    running.apply(instance)?;
    Ok(corefile)
}

/// The reload plugin's watch over the configuration files.
struct Watch {
    every: std::time::Duration,
    hash: String,
    /// When to look next; kept across other events so that signals do not delay the check.
    next: tokio::time::Instant,
}

fn watch_for(running: &Running, source: &Source, corefile: &Corefile) -> Option<Watch> {
    let every = (*running
        .shared
        .reload
        .lock()
        .unwrap_or_else(|e| e.into_inner()))?;
    let hash = config_hash(source, corefile);
    ferrodns::info!("plugin/reload: Running configuration SHA512 = {hash}");
    reload::metrics(&running.shared.metrics).set_version(None, &hash);
    Some(Watch {
        every,
        hash,
        next: tokio::time::Instant::now() + every,
    })
}

async fn run(source: Source, corefile: Corefile, port: u16, flags: Flags) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // Caddy's signal handling as CoreDNS inherits it: TERM and INT shut down gracefully, QUIT
    // quits at once, USR1 reloads, USR2 (binary upgrade) is refused, HUP is ignored.
    let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1), Ok(mut usr2), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::quit()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::hangup()),
    ) else {
        return fatal("cannot install signal handlers");
    };
    let metrics = Arc::new(Metrics::new());
    let shared = Shared::new(metrics.clone());
    let instance = match server::build(&corefile, port, &shared) {
        Ok(i) => i,
        Err(e) => return fatal(e),
    };
    // Bind everything before serving anything: a taken port fails start-up as a whole.
    let mut running = match Running::start(instance) {
        Ok(r) => r,
        Err(e) => return fatal(e),
    };
    let remove_pidfile = || {
        if let Some(pidfile) = &flags.pidfile {
            let _ = std::fs::remove_file(pidfile);
        }
    };

    if let Some(pidfile) = &flags.pidfile
        && let Err(e) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        return fatal(format!("Could not write pidfile: {e}"));
    }
    if !flags.quiet {
        print!("{}{}", running.banner, version_text());
    }

    let mut watch = watch_for(&running, &source, &corefile);
    loop {
        let tick = async {
            match &watch {
                Some(w) => tokio::time::sleep_until(w.next).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => {
                ferrodns::info!("SIGTERM: Shutting down servers then terminating");
                break;
            }
            _ = int.recv() => {
                ferrodns::info!("SIGINT: Shutting down");
                break;
            }
            _ = quit.recv() => {
                ferrodns::info!("SIGQUIT: Quitting process immediately");
                remove_pidfile();
                return ExitCode::SUCCESS;
            }
            _ = usr2.recv() => {
                ferrodns::info!("SIGUSR2: Upgrading");
                ferrodns::error!("SIGUSR2: upgrading: binary upgrade is not supported; restart the process");
            }
            _ = hup.recv() => {
                // Ignored: this signal is sometimes sent outside of the user's control.
            }
            _ = usr1.recv() => {
                ferrodns::info!("SIGUSR1: Reloading");
                ferrodns::info!("Reloading");
                match restart(&source, port, &metrics, &mut running) {
                    Ok(corefile) => {
                        let previous = watch.as_ref().map(|w| w.hash.clone());
                        watch = watch_for(&running, &source, &corefile);
                        if let (Some(p), Some(w)) = (previous, &watch) && p != w.hash {
                            reload::metrics(&metrics).version.remove(&vec![
                                ("hash".to_string(), "sha512".to_string()),
                                ("value".to_string(), p),
                            ]);
                        }
                        ferrodns::info!("Reloading complete");
                    }
                    Err(e) => ferrodns::error!("SIGUSR1: {e}"),
                }
            }
            _ = tick => {
                let Some(w) = watch.as_mut() else { continue };
                w.next = tokio::time::Instant::now() + w.every;
                let loaded = match source.load() {
                    Ok(c) => c,
                    Err(e) => {
                        ferrodns::warning!("plugin/reload: Corefile load failed: {e}");
                        continue;
                    }
                };
                let current = config_hash(&source, &loaded);
                if current == w.hash {
                    continue;
                }
                let rm = reload::metrics(&metrics);
                rm.set_version(Some(&w.hash), &current);
                // The same broken file is not tried again: only a further change is.
                w.hash = current;
                ferrodns::info!("Reloading");
                // The configuration just hashed is the one applied: reading the files again
                // could pick up a newer version than the hash describes.
                match apply(loaded, port, &metrics, &mut running) {
                    Ok(corefile) => {
                        watch = watch_for(&running, &source, &corefile);
                        ferrodns::info!("Reloading complete");
                    }
                    Err(e) => {
                        ferrodns::error!("Restart failed: {e}");
                        ferrodns::error!("plugin/reload: Corefile changed but reload failed: {e}");
                        rm.failed.inc();
                    }
                }
            }
        }
    }

    // Graceful shutdown: /ready turns 503 at once; queries are still served through the
    // lameduck; then the listeners stop and the queries in flight get up to GRACE to finish.
    running
        .shared
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let lameduck = *running
        .shared
        .lameduck
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // A second SIGINT forces the exit (a second SIGTERM is ignored, as in CoreDNS); QUIT still
    // quits at once.
    let forced = async {
        tokio::select! {
            _ = int.recv() => {
                ferrodns::info!("SIGINT: Force quit");
                ExitCode::from(2)
            }
            _ = quit.recv() => {
                ferrodns::info!("SIGQUIT: Quitting process immediately");
                ExitCode::SUCCESS
            }
        }
    };
    let graceful = async {
        if !lameduck.is_zero() {
            ferrodns::info!(
                "plugin/health: Going into lameduck mode for {}",
                go_duration_string(lameduck)
            );
            tokio::time::sleep(lameduck).await;
        }
        running.stop();
        let deadline = tokio::time::Instant::now() + server::GRACE;
        while server::InFlight::count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let code = tokio::select! {
        _ = graceful => ExitCode::SUCCESS,
        code = forced => code,
    };
    remove_pidfile();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn go_style_flags() {
        let f = parse_flags(&args(
            "-conf /etc/Corefile -dns.port=1053 -quiet --pidfile /run/x",
        ))
        .unwrap();
        assert_eq!(f.conf.as_deref(), Some("/etc/Corefile"));
        assert_eq!(f.dns_port.as_deref(), Some("1053"));
        assert_eq!(f.pidfile.as_deref(), Some("/run/x"));
        assert!(f.quiet);
        assert!(parse_flags(&args("-p 5300")).unwrap().dns_port.is_some());
        assert!(!parse_flags(&args("-quiet=false")).unwrap().quiet);
    }

    #[test]
    fn version_and_plugins_text() {
        let v = version_text();
        assert!(
            v.starts_with(&format!("ferrodns-{}\n", ferrodns::VERSION)),
            "{v}"
        );
        assert_eq!(v.lines().count(), 2);
        let p = plugins_text();
        assert!(p.starts_with(
            "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n"
        ));
        assert!(p.contains("  dns.bind\n") && p.contains("  dns.reload\n") && p.ends_with("\n\n"));
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(parse_flags(&args("-nope")).is_err());
        assert!(parse_flags(&args("stray")).is_err());
        assert!(parse_flags(&args("-conf")).is_err());
        assert!(parse_flags(&args("-quiet extra")).is_err());
    }
}
