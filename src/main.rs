//! `ferrodns`: start it as you start `coredns`, with the same flags and Corefile.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use ferrodns::corefile::{self, Corefile};
use ferrodns::metrics::Metrics;
use ferrodns::plugin::order;
use ferrodns::plugin::setup::Shared;
use ferrodns::server::{self, http, tcp, udp};

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

fn version_text() -> String {
    format!(
        "ferrodns-{}\n{}/{}, rust, CoreDNS-{} compatible",
        ferrodns::VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH,
        ferrodns::COREDNS_COMPAT
    )
}

/// CoreDNS's `-plugins` listing.
fn plugins_text() -> String {
    let mut names: Vec<&str> = order::implemented().collect();
    names.sort_unstable();
    let mut out = String::from(
        "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n",
    );
    for n in names {
        out.push_str("  dns.");
        out.push_str(n);
        out.push('\n');
    }
    out
}

/// Where the configuration comes from: `-conf FILE`, `-conf stdin`, `./Corefile`, or the
/// built-in default (`whoami` and `log` on the root zone).
fn load_corefile(conf: Option<&str>, port: &str) -> Result<Corefile, String> {
    match conf {
        Some("stdin") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("reading Corefile from stdin: {e}"))?;
            let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            corefile::parse_str("stdin", &text, &cwd).map_err(|e| e.to_string())
        }
        Some(path) => {
            if !Path::new(path).exists() {
                return Err(format!("open {path}: no such file or directory"));
            }
            corefile::parse_file(Path::new(path)).map_err(|e| e.to_string())
        }
        None if Path::new("Corefile").exists() => {
            corefile::parse_file(Path::new("Corefile")).map_err(|e| e.to_string())
        }
        None => {
            let text = format!(".:{port} {{\n    whoami\n    log\n}}\n");
            corefile::parse_str("default", &text, Path::new(".")).map_err(|e| e.to_string())
        }
    }
}

fn fatal(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("[FATAL] {msg}");
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(msg) => return usage_error(&msg),
    };
    if flags.version {
        println!("{}", version_text());
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
    let corefile = match load_corefile(flags.conf.as_deref(), &port_text) {
        Ok(c) => c,
        Err(e) => return fatal(e),
    };
    for w in &corefile.warnings {
        ferrodns::warning!("{w}");
    }

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fatal(format!("starting runtime: {e}")),
    };
    rt.block_on(run(corefile, port, flags))
}

async fn run(corefile: Corefile, port: u16, flags: Flags) -> ExitCode {
    let shared = Shared::new(Arc::new(Metrics::new()));
    let instance = match server::build(&corefile, port, &shared) {
        Ok(i) => i,
        Err(e) => return fatal(e),
    };

    // Bind everything before serving anything: a taken port fails start-up as a whole.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut bound = Vec::new();
    for l in &instance.listeners {
        let udp = match udp::bind(l.addr, cores) {
            Ok(s) => s,
            Err(e) => return fatal(format!("listen udp {}: {e}", l.addr)),
        };
        let tcp = match tcp::bind(l.addr) {
            Ok(s) => s,
            Err(e) => return fatal(format!("listen tcp {}: {e}", l.addr)),
        };
        bound.push((udp, tcp, l.table.clone()));
    }
    let mut http_routes: BTreeMap<std::net::SocketAddr, Vec<_>> = BTreeMap::new();
    for (addr, path, handler) in shared.http.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        http_routes
            .entry(*addr)
            .or_default()
            .push((*path, handler.clone()));
    }
    let mut http_bound = Vec::new();
    for (addr, routes) in http_routes {
        match http::bind(addr) {
            Ok(l) => http_bound.push((l, Arc::new(routes))),
            Err(e) => return fatal(format!("listen tcp {addr}: {e}")),
        }
    }

    for (udp_socks, tcp_listener, table) in bound {
        for s in udp_socks {
            if let Err(e) = udp::spawn(s, table.clone()) {
                return fatal(format!("starting udp listener: {e}"));
            }
        }
        tokio::spawn(tcp::run(tcp_listener, table));
    }
    for (l, routes) in http_bound {
        tokio::spawn(http::run(l, routes));
    }

    if let Some(pidfile) = &flags.pidfile
        && let Err(e) = std::fs::write(pidfile, format!("{}\n", std::process::id()))
    {
        return fatal(format!("Could not write pidfile: {e}"));
    }
    if !flags.quiet {
        for l in &instance.listeners {
            for k in &l.keys {
                println!("{k}");
            }
        }
        println!("{}", version_text());
    }

    wait_for_shutdown().await;
    shared
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let lameduck = *shared.lameduck.lock().unwrap_or_else(|e| e.into_inner());
    if !lameduck.is_zero() {
        ferrodns::info!("Going into lameduck mode for {}", humantime(lameduck));
        tokio::time::sleep(lameduck).await;
    }
    if let Some(pidfile) = &flags.pidfile {
        let _ = std::fs::remove_file(pidfile);
    }
    ExitCode::SUCCESS
}

fn humantime(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
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
    fn bad_flags_are_errors() {
        assert!(parse_flags(&args("-nope")).is_err());
        assert!(parse_flags(&args("stray")).is_err());
        assert!(parse_flags(&args("-conf")).is_err());
        assert!(parse_flags(&args("-quiet extra")).is_err());
    }
}
