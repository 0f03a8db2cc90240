//! Issue 4's interop suite: real client software (glibc, musl, c-ares 1.18 and 1.15, PgBouncer,
//! nginx) resolving through ferrodns from inside network namespaces, against a scriptable
//! upstream on loopback that fails AAAA questions the way the incidents' upstream did.
//!
//! Every test builds its own namespace and veth pair (198.18.0.0/15 and fd00:f3d::/48 only) and
//! removes them again through a Drop guard, also when an assertion fails. ferrodns listens on the
//! host side of the link, port 53, because `/etc/resolv.conf` cannot name a port; `ip netns exec`
//! bind-mounts `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf` for the clients. Namespace
//! tests hold a file-level mutex and a `flock` (for other processes running the suite), so they
//! run one after the other.
//!
//! The clients are built by `tests/interop/build.sh` into `target/interop/` (kept across runs).
//! What each client does, measured here, is tabled in `tests/interop/README.md`.

mod common;
mod upstream;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use common::Server;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use upstream::{Behavior, Upstream};

/// The name PgBouncer's database host had in the incident.
const NAME: &str = "postgresql-primary.interop.test";

/// One namespace test at a time: they share port 53 and the `ip` command's view of the host.
static NETNS: Mutex<()> = Mutex::new(());

/// Held for the whole of a namespace test: the file-level mutex for this test binary, and an
/// exclusive `flock` for other processes running the suite at the same time (another worktree,
/// a second `cargo test`), which would otherwise put the same addresses on a second veth pair.
struct Serial {
    _lock: File,
    _guard: MutexGuard<'static, ()>,
}

fn serial() -> Serial {
    let guard = NETNS.lock().unwrap_or_else(|e| e.into_inner());
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("ferrodns-interop-netns.lock"))
        .expect("open the interop lock file");
    // Blocks until the other process's test has finished (its lock goes with its descriptor,
    // also when it dies).
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock: {}", std::io::Error::last_os_error());
    Serial {
        _lock: lock,
        _guard: guard,
    }
}

fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("FERRODNS_REQUIRE_TOOLS").is_some()
}

/// Skip (loudly) or, where the tools are required, fail.
fn skip(why: &str) {
    if required() {
        panic!("interop suite cannot run: {why} (run scripts/install-deps.sh as root)");
    }
    shout(&format!("SKIPPED interop test: {why}"));
}

/// A skip must not pass unseen: the test harness captures `eprintln!` of passing tests, but not
/// what is written to the stderr handle directly.
fn shout(what: &str) {
    let _ = writeln!(std::io::stderr(), "\n*** {what} ***\n");
}

/// Root, `ip`, the Debian packages and the built clients; None (after a loud skip) otherwise.
fn clients() -> Option<&'static Clients> {
    if unsafe { libc::geteuid() } != 0 {
        // CI runs as root; a developer running scripts/test.sh as themselves gets the loud
        // skip rather than a failure they cannot fix by installing something.
        if std::env::var_os("CI").is_some() {
            panic!("interop suite cannot run: network namespaces need root");
        }
        shout("SKIPPED interop test: network namespaces need root (run as root)");
        return None;
    }
    for cmd in [
        "ip",
        "getent",
        "gcc",
        "musl-gcc",
        "nginx",
        "pgbouncer",
        "setpriv",
    ] {
        if !common::have(cmd) && !Path::new(&format!("/usr/sbin/{cmd}")).exists() {
            skip(&format!("{cmd} is not installed"));
            return None;
        }
    }
    static BUILT: OnceLock<Result<Clients, String>> = OnceLock::new();
    match BUILT.get_or_init(build_clients) {
        Ok(c) => Some(c),
        Err(e) => {
            skip(e);
            None
        }
    }
}

/// Where the clients live: `target/interop/`, beside the ferrodns binary's profile directory.
struct Clients {
    dir: PathBuf,
}

impl Clients {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn build_clients() -> Result<Clients, String> {
    let bin = PathBuf::from(common::binary());
    let target = bin
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory")?;
    let dir = target.join("interop");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the interop clients failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Clients { dir })
}

/// Whether this ferrodns build has `plugin` (as `ferrodns -plugins` lists it).
fn has_plugin(plugin: &str) -> bool {
    let out = Command::new(common::binary())
        .arg("-plugins")
        .output()
        .expect("ferrodns -plugins");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("dns.{plugin}"))
}

/// A scenario needs plugins that another branch is still writing: without them it must say so
/// loudly instead of passing silently.
fn plugins_present(plugins: &[&str]) -> bool {
    let missing: Vec<&str> = plugins.iter().copied().filter(|p| !has_plugin(p)).collect();
    if missing.is_empty() {
        return true;
    }
    shout(&format!(
        "SKIPPED interop scenario {}: this ferrodns build has no {} plugin (ferrodns -plugins)",
        std::thread::current().name().unwrap_or("?"),
        missing.join(", ")
    ));
    false
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace joined to the host by a veth pair; removed (with the pair and its
/// resolv.conf) when dropped.
struct Netns {
    name: String,
    /// The host side of the link: where ferrodns listens.
    host4: Option<Ipv4Addr>,
    host6: Ipv6Addr,
    /// The namespace side.
    ns4: Option<Ipv4Addr>,
    ns6: Ipv6Addr,
    etc: PathBuf,
}

impl Netns {
    /// `dual`: the namespace has IPv4 and IPv6; otherwise IPv6 only, plus `extra6` on its
    /// loopback (a NAT64 address standing for an IPv4-only service, so that a client that uses
    /// it reaches something, and nothing leaves the namespace).
    fn new(index: u8, dual: bool, extra6: &[Ipv6Addr]) -> Netns {
        static SWEPT: OnceLock<()> = OnceLock::new();
        SWEPT.get_or_init(sweep_stale_namespaces);
        // At most 15 bytes with the suffixes below (interface names are limited to that).
        let name = format!("fdi{}n{index}", std::process::id());
        let host_if = format!("{name}h");
        let ns_if = format!("{name}c");
        let etc = PathBuf::from("/etc/netns").join(&name);
        let ns = Netns {
            host4: dual.then(|| Ipv4Addr::new(198, 18, index, 1)),
            ns4: dual.then(|| Ipv4Addr::new(198, 18, index, 2)),
            host6: format!("fd00:f3d:0:{index:x}::1").parse().unwrap(),
            ns6: format!("fd00:f3d:0:{index:x}::2").parse().unwrap(),
            name,
            etc,
        };
        run("ip", &["netns", "add", &ns.name]);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns.name,
            ],
        );
        let nsx = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        if let (Some(h), Some(c)) = (ns.host4, ns.ns4) {
            run("ip", &["addr", "add", &format!("{h}/30"), "dev", &host_if]);
            nsx(&["addr", "add", &format!("{c}/30"), "dev", &ns_if]);
        }
        run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{}/64", ns.host6),
                "dev",
                &host_if,
                "nodad",
            ],
        );
        nsx(&[
            "-6",
            "addr",
            "add",
            &format!("{}/64", ns.ns6),
            "dev",
            &ns_if,
            "nodad",
        ]);
        for a in extra6 {
            nsx(&["-6", "addr", "add", &format!("{a}/128"), "dev", "lo"]);
        }
        run("ip", &["link", "set", &host_if, "up"]);
        nsx(&["link", "set", &ns_if, "up"]);
        nsx(&["link", "set", "lo", "up"]);
        std::fs::create_dir_all(&ns.etc).unwrap();
        // No search list, so a failed name is not retried under other suffixes; a short timeout
        // so failures are quick; the nameserver is ferrodns on this link, over IPv4 where the
        // namespace has it.
        let server = ns.dns_server();
        std::fs::write(
            ns.etc.join("resolv.conf"),
            format!("nameserver {server}\noptions timeout:2 attempts:1\n"),
        )
        .unwrap();
        ns
    }

    /// The address clients use to reach ferrodns: IPv4 where the namespace has it.
    fn dns_server(&self) -> IpAddr {
        match self.host4 {
            Some(a) => IpAddr::V4(a),
            None => IpAddr::V6(self.host6),
        }
    }

    /// The namespace's own address, for services in it that the test talks to from the host.
    fn service_addr(&self) -> IpAddr {
        match self.ns4 {
            Some(a) => IpAddr::V4(a),
            None => IpAddr::V6(self.ns6),
        }
    }

    /// `ip netns exec NAME` + `argv`, environment added, killed after `limit`.
    fn exec(&self, argv: &[&str], env: &[(&str, &str)], limit: Duration) -> (bool, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ip netns exec");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("client output");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// A long-running process in the namespace (nginx, PgBouncer), killed when dropped.
    fn spawn(&self, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Daemon {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("stderr")).unwrap())
            .spawn()
            .expect("ip netns exec");
        Daemon(child)
    }
}

/// Namespaces of runs that were killed before their Drop guards ran (`fdi<PID>n<N>` whose PID is
/// gone): their host-side addresses would clash with this run's.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("fdi")
            .and_then(|rest| rest.split('n').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(name));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, and with it the host end.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = std::fs::remove_dir_all(&self.etc);
    }
}

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// ferrodns on port 53 of the host side of `ns`'s link, `plugins` before a `forward` to `up`.
fn ferrodns(ns: &Netns, plugins: &str, up: &Upstream) -> Server {
    let mut bind = String::new();
    if let Some(a) = ns.host4 {
        bind.push_str(&format!(" {a}"));
    }
    bind.push_str(&format!(" {}", ns.host6));
    let corefile = format!(
        ".:53 {{\n    bind{bind}\n    log\n{plugins}\n    forward . {}\n}}\n",
        up.to()
    );
    let dir = common::temp_dir("interop");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, &corefile).unwrap();
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let child = Command::new(common::binary())
        .arg("-conf")
        .arg(&conf)
        .current_dir(&dir)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start ferrodns");
    let mut srv = Server {
        child,
        port: 53,
        dir,
        stdout,
        stderr,
    };
    let target = SocketAddr::new(IpAddr::V6(ns.host6), 53);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = srv.child.try_wait() {
            panic!(
                "ferrodns exited with {status} on\n{corefile}\n{}",
                srv.stderr_text()
            );
        }
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ferrodns did not listen on {target}: {}",
            srv.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    srv
}

/// What a client made of the name.
#[derive(Clone, Debug)]
struct Outcome {
    /// The addresses in the order the client returned (or, nginx, tried) them.
    addrs: Vec<IpAddr>,
    /// nginx: the first address each request tried (others: the first address returned).
    firsts: Vec<IpAddr>,
    /// The client's own words for a failure.
    error: Option<String>,
    /// The questions ferrodns saw from it, in order, with their rcodes ("A NOERROR").
    queries: Vec<String>,
    /// Everything it printed or logged, shown (through Debug) when an assertion fails.
    #[allow(dead_code)]
    detail: String,
}

impl Outcome {
    fn resolved(&self) -> bool {
        self.error.is_none() && !self.addrs.is_empty()
    }

    fn has_v4(&self) -> bool {
        self.addrs.iter().any(IpAddr::is_ipv4)
    }

    fn parse(ok: bool, text: &str) -> Outcome {
        let addrs: Vec<IpAddr> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ADDR "))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let error = text
            .lines()
            .find(|l| l.starts_with("ERROR") || l.starts_with("UNSUPPORTED"))
            .map(str::to_string)
            .or_else(|| (!ok).then(|| format!("exit failure: {text}")));
        Outcome::new(addrs, error, text.to_string())
    }

    fn new(addrs: Vec<IpAddr>, error: Option<String>, detail: String) -> Outcome {
        Outcome {
            firsts: addrs.first().copied().into_iter().collect(),
            addrs,
            error,
            queries: Vec::new(),
            detail,
        }
    }
}

/// The clients the suite drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Client {
    /// glibc getaddrinfo(AF_UNSPEC).
    Glibc,
    /// `getent ahosts` (glibc, through NSS).
    Getent,
    /// musl 1.2.3 getaddrinfo(AF_UNSPEC), static.
    Musl,
    /// Debian's c-ares 1.18: ares_getaddrinfo(AF_UNSPEC).
    Cares118Gai,
    /// Debian's c-ares 1.18: ares_gethostbyname(AF_UNSPEC).
    Cares118Ghbn,
    /// c-ares 1.15.0: ares_gethostbyname(AF_UNSPEC) (1.15 has no ares_getaddrinfo).
    Cares115Ghbn,
    /// PgBouncer 1.18 as Debian ships it (libc-ares 1.18).
    PgBouncer,
    /// PgBouncer 1.18 with c-ares 1.15's libcares.so.2 (the incident).
    PgBouncer115,
    /// nginx 1.22's own resolver, `ipv6=on`, at request time.
    Nginx,
}

const ALL: [Client; 9] = [
    Client::Glibc,
    Client::Getent,
    Client::Musl,
    Client::Cares118Gai,
    Client::Cares118Ghbn,
    Client::Cares115Ghbn,
    Client::PgBouncer,
    Client::PgBouncer115,
    Client::Nginx,
];

impl Client {
    fn resolve(self, c: &Clients, ns: &Netns, name: &str) -> Outcome {
        let limit = Duration::from_secs(15);
        let exe = |bin: &str, args: &[&str]| {
            let path = c.path(bin);
            let mut argv = vec![path.to_str().unwrap()];
            argv.extend_from_slice(args);
            let (ok, text) = ns.exec(&argv, &[], limit);
            Outcome::parse(ok, &text)
        };
        match self {
            Client::Glibc => exe("resolve-glibc", &[name]),
            Client::Musl => exe("resolve-musl", &[name]),
            Client::Cares118Gai => exe("ares-1.18", &["gai", name]),
            Client::Cares118Ghbn => exe("ares-1.18", &["ghbn", name]),
            Client::Cares115Ghbn => exe("ares-1.15", &["ghbn", name]),
            Client::Getent => {
                let (ok, text) = ns.exec(&["getent", "ahosts", name], &[], limit);
                // One line per address and socket type; the first column, first occurrence.
                let mut addrs: Vec<IpAddr> = Vec::new();
                for a in text
                    .lines()
                    .filter_map(|l| l.split_whitespace().next()?.parse().ok())
                {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                let error = (!ok).then(|| format!("getent: exit failure {text}"));
                Outcome::new(addrs, error, text)
            }
            Client::PgBouncer => pgbouncer(c, ns, name, false),
            Client::PgBouncer115 => pgbouncer(c, ns, name, true),
            Client::Nginx => nginx(ns, name),
        }
    }
}

/// A directory a dropped-privilege daemon can write to.
fn daemon_dir(tag: &str) -> PathBuf {
    let dir = common::temp_dir(tag);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    dir
}

/// PgBouncer resolves its database host when a client logs in; a PostgreSQL server is not
/// needed. Its log says either `DNS lookup failed` or, after resolving, which address it could
/// not connect to (nothing listens on port 5432 there).
fn pgbouncer(c: &Clients, ns: &Netns, name: &str, cares115: bool) -> Outcome {
    let dir = daemon_dir("pgbouncer");
    let listen = ns.service_addr();
    let log = dir.join("pgbouncer.log");
    std::fs::write(dir.join("users.txt"), "\"u\" \"\"\n").unwrap();
    let ini = format!(
        "[databases]\ndb = host={name} port=5432 dbname=db\n\n[pgbouncer]\n\
         listen_addr = {listen}\nlisten_port = 6432\nunix_socket_dir =\n\
         auth_type = trust\nauth_file = {users}\nlogfile = {log}\npidfile =\n\
         verbose = 1\nserver_login_retry = 30\ndns_max_ttl = 1\ndns_nxdomain_ttl = 1\n",
        users = dir.join("users.txt").display(),
        log = log.display()
    );
    let conf = dir.join("pgbouncer.ini");
    std::fs::write(&conf, ini).unwrap();
    let lib = c.path("cares-1.15");
    let env: Vec<(&str, &str)> = if cares115 {
        vec![("LD_LIBRARY_PATH", lib.to_str().unwrap())]
    } else {
        vec![]
    };
    // PgBouncer refuses to run as root.
    let daemon = ns.spawn(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "pgbouncer",
            conf.to_str().unwrap(),
        ],
        &env,
        &dir.join("stdout"),
    );
    let addr = SocketAddr::new(listen, 6432);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            break s;
        }
        if Instant::now() > deadline {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("PgBouncer did not listen on {addr}: {log_text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // StartupMessage, protocol 3.0: user u, database db.
    let mut body = Vec::new();
    body.extend_from_slice(&196608u32.to_be_bytes());
    for s in ["user", "u", "database", "db", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    conn.write_all(&msg).unwrap();
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    // Wait for PgBouncer's verdict in its log.
    let deadline = Instant::now() + Duration::from_secs(12);
    let text = loop {
        let mut sink = [0u8; 512];
        let _ = conn.read(&mut sink);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("DNS lookup failed")
            || text.contains(":5432 closing because")
            || text.contains(":5432 new connection")
            || Instant::now() > deadline
        {
            std::thread::sleep(Duration::from_millis(200));
            break std::fs::read_to_string(&log).unwrap_or_default();
        }
    };
    // `ip netns exec` and `setpriv` exec, so the child is PgBouncer itself: check which c-ares
    // it really runs with (its --version names the one it was built against).
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", daemon.0.id())).unwrap_or_default();
    let loaded = maps
        .lines()
        .find(|l| l.contains("libcares.so"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("none");
    assert!(
        loaded.contains("libcares.so.2"),
        "PgBouncer maps no c-ares: {maps}"
    );
    assert_eq!(
        Path::new(loaded).starts_with(&lib),
        cares115,
        "PgBouncer runs with {loaded}"
    );
    let error = text
        .lines()
        .find(|l| l.contains("DNS lookup failed"))
        .map(str::to_string);
    // "S-0x...: db/u@198.18.1.2:5432 ..." names the address it resolved to.
    let mut addrs = Vec::new();
    let logged = text.lines().filter_map(|l| {
        let rest = &l[l.find("db/u@")? + 5..];
        let host = &rest[..rest.rfind(":5432")?];
        host.trim_matches(['[', ']']).parse::<IpAddr>().ok()
    });
    for a in logged {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    let error = error.or_else(|| {
        addrs
            .is_empty()
            .then(|| "no verdict in the log".to_string())
    });
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    Outcome::new(addrs, error, text)
}

/// nginx with its own resolver (`ipv6=on`) and a `proxy_pass` through a variable, so it
/// resolves at request time; the backend is nginx itself on port 8081 of the namespace. The
/// `X-Upstream` header lists the addresses it tried, in order; its error log says why a name
/// could not be resolved.
fn nginx(ns: &Netns, name: &str) -> Outcome {
    let dir = daemon_dir("nginx");
    let resolver = match ns.dns_server() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let listen = match ns.service_addr() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen {listen}:8080;\n    resolver {resolver} ipv6=on valid=1s;\n\
             resolver_timeout 10s;\n    proxy_connect_timeout 2s;\n\
             location / {{\n      set $backend {name};\n      proxy_pass http://$backend:8081;\n\
               add_header X-Upstream $upstream_addr always;\n    }}\n  }}\n\
           server {{\n    listen 8081;\n    listen [::]:8081;\n    return 200 \"backend\\n\";\n  }}\n}}\n",
        d = dir.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let daemon = ns.spawn(
        &[
            "nginx",
            "-p",
            dir.to_str().unwrap(),
            "-e",
            dir.join("error.log").to_str().unwrap(),
            "-c",
            conf_path.to_str().unwrap(),
        ],
        &[],
        &dir.join("stdout"),
    );
    let addr = SocketAddr::new(ns.service_addr(), 8080);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            let err = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            panic!("nginx did not listen on {addr}: {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // nginx starts each lookup's address list at a random place (ngx_resolver_export rotates
    // it), so one request shows only one order: several show whether a family is ever tried
    // first.
    let mut addrs = Vec::new();
    let mut firsts = Vec::new();
    let mut failure = None;
    for _ in 0..NGINX_REQUESTS {
        let (ok, tried, first_line) = nginx_request(addr);
        if let Some(&a) = tried.first() {
            firsts.push(a);
        }
        for a in tried {
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if !ok && failure.is_none() {
            failure = Some(first_line);
        }
    }
    let errors = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
    let error = failure.map(|status| {
        errors
            .lines()
            .find(|l| l.contains("could not be resolved") || l.contains("[error]"))
            .map(str::to_string)
            .unwrap_or(status)
    });
    Outcome {
        addrs,
        firsts,
        error,
        queries: Vec::new(),
        detail: format!("--- error.log\n{errors}"),
    }
}

/// Requests per nginx run: the chance that a two-address list never starts with a given one is
/// 2^-12.
const NGINX_REQUESTS: usize = 12;

/// One request through nginx: whether the backend answered, the addresses nginx tried in order
/// (its `$upstream_addr`), and the status line.
fn nginx_request(addr: SocketAddr) -> (bool, Vec<IpAddr>, String) {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (false, Vec::new(), "no connection".into());
    };
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\nHost: interop\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    let ok = response.starts_with("HTTP/1.1 200") && response.contains("backend");
    let mut tried = Vec::new();
    if let Some(h) = response
        .lines()
        .find_map(|l| l.strip_prefix("X-Upstream: "))
    {
        for part in h.split(',') {
            let part = part.trim();
            let host = part.rfind(':').map_or(part, |i| &part[..i]);
            if let Ok(a) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
                tried.push(a);
            }
        }
    }
    let status = response.lines().next().unwrap_or("no response").to_string();
    (ok, tried, status)
}

/// Every client's outcome for `name`, each with the questions ferrodns logged for it.
fn resolve_all(c: &Clients, ns: &Netns, srv: &Server, name: &str) -> HashMap<Client, Outcome> {
    let mut out = HashMap::new();
    for client in ALL {
        let before = srv.stdout_text().len();
        let started = Instant::now();
        let mut o = client.resolve(c, ns, name);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_millis(100));
        let log = srv.stdout_text();
        o.queries = log
            .get(before..)
            .unwrap_or("")
            .lines()
            .filter_map(logged_question)
            .collect();
        eprintln!(
            "{client:?}: {} in {took:.1?} addrs={:?} firsts={:?} {} queries={:?}",
            if o.resolved() { "resolved" } else { "FAILED" },
            o.addrs,
            o.firsts,
            o.error.as_deref().unwrap_or(""),
            o.queries
        );
        out.insert(client, o);
    }
    out
}

/// `"AAAA SERVFAIL"` from a `log` line `... "AAAA IN name. udp 49 false 512" SERVFAIL ...`.
fn logged_question(line: &str) -> Option<String> {
    let mut quoted = line.split('"');
    let question = quoted.nth(1)?;
    let rest = quoted.next()?;
    let qtype = question.split_whitespace().next()?;
    let rcode = rest.split_whitespace().next()?;
    Some(format!("{qtype} {rcode}"))
}

/// The upstream for the incident: `NAME` has an A record (the namespace's own address, so a
/// client that connects reaches the namespace) and `aaaa` for its AAAA question; every other
/// name is NXDOMAIN, so nothing resolves by accident through a search list.
fn incident_upstream(a: Ipv4Addr, aaaa: Behavior) -> Upstream {
    let up = Upstream::start(a.octets());
    up.set(Behavior::Rcode(ResponseCode::NXDomain));
    up.set_name(&format!("{NAME}."), Behavior::Answer);
    up.set_name_type(&format!("{NAME}."), RecordType::AAAA, aaaa);
    up
}

fn assert_resolved(out: &HashMap<Client, Outcome>, clients: &[Client], want: IpAddr, why: &str) {
    for c in clients {
        let o = &out[c];
        assert!(
            o.resolved() && o.addrs.contains(&want),
            "{why}: {c:?} should resolve {NAME} to {want}, got {o:?}"
        );
    }
}

fn assert_failed(out: &HashMap<Client, Outcome>, clients: &[Client], why: &str) {
    for c in clients {
        let o = &out[c];
        assert!(
            !o.resolved(),
            "{why}: {c:?} should fail to resolve {NAME}, got {o:?}"
        );
    }
}

/// Scenarios 1 and 2: a dual-stack namespace whose clients ask ferrodns over IPv4; `NAME` has an
/// A record (the namespace's own address) and `aaaa` for AAAA; `plugins` go before `forward`.
fn incident(
    index: u8,
    aaaa: Behavior,
    plugins: &str,
) -> Option<(IpAddr, HashMap<Client, Outcome>)> {
    let c = clients()?;
    let ns = Netns::new(index, true, &[]);
    let a = ns.ns4.unwrap();
    let up = incident_upstream(a, aaaa);
    let srv = ferrodns(&ns, plugins, &up);
    eprintln!("--- plugins:\n{plugins}");
    let out = resolve_all(c, &ns, &srv, NAME);
    Some((IpAddr::V4(a), out))
}

/// The clients that fall back to the A answer when the AAAA question fails.
const TOLERANT: [Client; 5] = [
    Client::Glibc,
    Client::Getent,
    Client::Cares118Gai,
    Client::Cares118Ghbn,
    Client::PgBouncer,
];

/// The clients that give up on the whole lookup when the AAAA question fails.
const INTOLERANT: [Client; 4] = [
    Client::Musl,
    Client::Cares115Ghbn,
    Client::PgBouncer115,
    Client::Nginx,
];

fn assert_error(out: &HashMap<Client, Outcome>, client: Client, words: &str) {
    let o = &out[&client];
    assert!(
        o.error.as_deref().is_some_and(|e| e.contains(words)),
        "{client:?} should fail with {words:?}, got {o:?}"
    );
}

/// A fix worked: every client resolved `NAME` to its A record and nothing else (the AAAA half
/// became NODATA, never a record of the wrong type).
fn assert_fixed(out: &HashMap<Client, Outcome>, a: IpAddr, why: &str) {
    assert_resolved(out, &ALL, a, why);
    for c in ALL {
        let o = &out[&c];
        assert!(
            o.addrs.iter().all(|x| *x == a),
            "{why}: {c:?} should get only {a}, got {o:?}"
        );
    }
}

const TEMPLATE_FIX: &str = "    template IN AAAA {\n        match ^postgresql-primary.*\n        rcode NOERROR\n        fallthrough\n    }";
const DUALSTACK_FIX: &str = "    dualstack {\n        aaaa_failure nodata\n    }";

#[test]
fn servfail_aaaa_through_plain_forward_breaks_musl_nginx_and_cares_115() {
    let _serial = serial();
    let Some((a, out)) = incident(1, Behavior::Rcode(ResponseCode::ServFail), "") else {
        return;
    };
    assert_resolved(&out, &TOLERANT, a, "plain forward, AAAA SERVFAIL");
    assert_failed(&out, &INTOLERANT, "plain forward, AAAA SERVFAIL");
    // The reasons each gives, as an operator sees them. c-ares 1.15 takes the SERVFAIL for a
    // broken server and ends with "Could not contact DNS servers".
    assert_error(&out, Client::Musl, "Try again");
    assert_error(&out, Client::Cares115Ghbn, "Could not contact DNS servers");
    assert_error(&out, Client::PgBouncer115, "DNS lookup failed");
    assert_error(
        &out,
        Client::Nginx,
        "could not be resolved (2: Server failure)",
    );
}

#[test]
fn nxdomain_aaaa_through_plain_forward() {
    let _serial = serial();
    let Some((a, out)) = incident(2, Behavior::Rcode(ResponseCode::NXDomain), "") else {
        return;
    };
    assert_resolved(&out, &TOLERANT, a, "plain forward, AAAA NXDOMAIN");
    assert_failed(&out, &INTOLERANT, "plain forward, AAAA NXDOMAIN");
    assert_error(&out, Client::Musl, "Name does not resolve");
    assert_error(&out, Client::Cares115Ghbn, "Domain name not found");
    assert_error(&out, Client::PgBouncer115, "DNS lookup failed");
    assert_error(
        &out,
        Client::Nginx,
        "could not be resolved (3: Host not found)",
    );
}

#[test]
fn servfail_aaaa_with_the_template_fix_every_client_resolves() {
    let _serial = serial();
    if !plugins_present(&["template"]) {
        return;
    }
    let Some((a, out)) = incident(3, Behavior::Rcode(ResponseCode::ServFail), TEMPLATE_FIX) else {
        return;
    };
    assert_fixed(&out, a, "template fix, AAAA SERVFAIL");
}

#[test]
fn nxdomain_aaaa_with_the_template_fix_every_client_resolves() {
    let _serial = serial();
    if !plugins_present(&["template"]) {
        return;
    }
    let Some((a, out)) = incident(4, Behavior::Rcode(ResponseCode::NXDomain), TEMPLATE_FIX) else {
        return;
    };
    assert_fixed(&out, a, "template fix, AAAA NXDOMAIN");
}

#[test]
fn servfail_aaaa_with_dualstack_nodata_every_client_resolves() {
    let _serial = serial();
    if !plugins_present(&["dualstack"]) {
        return;
    }
    let Some((a, out)) = incident(5, Behavior::Rcode(ResponseCode::ServFail), DUALSTACK_FIX) else {
        return;
    };
    assert_fixed(&out, a, "dualstack aaaa_failure nodata, AAAA SERVFAIL");
}

#[test]
fn nxdomain_aaaa_with_dualstack_nodata_every_client_resolves() {
    let _serial = serial();
    if !plugins_present(&["dualstack"]) {
        return;
    }
    let Some((a, out)) = incident(6, Behavior::Rcode(ResponseCode::NXDomain), DUALSTACK_FIX) else {
        return;
    };
    assert_fixed(&out, a, "dualstack aaaa_failure nodata, AAAA NXDOMAIN");
}

#[test]
fn rewrite_type_aaaa_a_breaks_nginx() {
    let _serial = serial();
    if !plugins_present(&["rewrite"]) {
        return;
    }
    let Some((a, out)) = incident(
        7,
        Behavior::Rcode(ResponseCode::ServFail),
        "    rewrite type AAAA A",
    ) else {
        return;
    };
    // nginx checks every answer record's type against its question and drops the whole answer.
    assert_failed(&out, &[Client::Nginx], "rewrite type AAAA A");
    assert_error(&out, Client::Nginx, "unexpected A record in DNS response");
    // The others resolve; musl and c-ares 1.18 even take the A records in the AAAA answer as
    // addresses and return the IPv4 address twice.
    let others: Vec<Client> = ALL.into_iter().filter(|c| *c != Client::Nginx).collect();
    assert_resolved(&out, &others, a, "rewrite type AAAA A");
    for c in [Client::Musl, Client::Cares118Gai, Client::Cares118Ghbn] {
        assert_eq!(out[&c].addrs, vec![a, a], "rewrite type AAAA A: {c:?}");
    }
}

/// The IPv4-only service behind NAT64: its A record, and the address `dns64` makes of it (on
/// the IPv6-only namespace's loopback, so a client that uses it reaches nginx's backend).
const V4_ONLY: Ipv4Addr = Ipv4Addr::new(198, 18, 99, 2);
const SYNTHESIZED: Ipv6Addr = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0xc612, 0x6302);

/// Every client gets the synthesized address; `with_v4` get the IPv4 address too, and the
/// others only the synthesized one.
fn assert_dns64_hands_out_ipv4(out: &HashMap<Client, Outcome>, with_v4: &[Client], why: &str) {
    let v4 = IpAddr::V4(V4_ONLY);
    let v6 = IpAddr::V6(SYNTHESIZED);
    for c in ALL {
        let o = &out[&c];
        assert!(
            o.resolved() && o.addrs.contains(&v6),
            "{why}: {c:?} should get {SYNTHESIZED}, got {o:?}"
        );
    }
    // Whoever asks A and AAAA and keeps both gets the IPv4 address as well: getaddrinfo (glibc,
    // musl) and ares_getaddrinfo sort it after the IPv6 one (it has no route here); nginx puts
    // it first in about every second lookup and connects to it first.
    for c in with_v4 {
        let o = &out[c];
        assert!(
            o.has_v4(),
            "{why}: {c:?} should also get {V4_ONLY}, got {o:?}"
        );
        if *c == Client::Nginx {
            assert!(
                o.firsts.contains(&v4),
                "{why}: nginx should try {V4_ONLY} first in some of {NGINX_REQUESTS} requests: {o:?}"
            );
        } else {
            assert_eq!(o.addrs, vec![v6, v4], "{why}: {c:?} order");
        }
    }
    // ares_gethostbyname(AF_UNSPEC) returns one family and prefers IPv6 (1.15 asks A only when
    // AAAA has nothing); PgBouncer uses that call.
    for c in ALL.iter().filter(|c| !with_v4.contains(c)) {
        assert_eq!(
            out[c].addrs,
            vec![v6],
            "{why}: {c:?} gets only {SYNTHESIZED}"
        );
    }
}

/// Scenario 3: an IPv6-only namespace (it reaches ferrodns over IPv6) asking for a name that
/// has only an A record upstream.
fn ipv6_only(index: u8, plugins: &str) -> Option<HashMap<Client, Outcome>> {
    nat64_client(index, false, plugins)
}

/// Like [`ipv6_only`], but `over_ipv4`: the namespace reaches ferrodns over IPv4 (its link has
/// an IPv4 address, and no IPv4 route beyond it, as a pod whose DNS service has an IPv4
/// address while its traffic goes out over IPv6 and NAT64).
fn nat64_client(index: u8, over_ipv4: bool, plugins: &str) -> Option<HashMap<Client, Outcome>> {
    let c = clients()?;
    let ns = Netns::new(index, over_ipv4, &[SYNTHESIZED]);
    let up = incident_upstream(V4_ONLY, Behavior::Answer);
    let srv = ferrodns(&ns, plugins, &up);
    eprintln!("--- plugins:\n{plugins}");
    Some(resolve_all(c, &ns, &srv, NAME))
}

#[test]
fn plain_dns64_still_hands_ipv6_only_clients_the_ipv4_address() {
    let _serial = serial();
    if !plugins_present(&["dns64"]) {
        return;
    }
    let Some(out) = ipv6_only(8, "    dns64") else {
        return;
    };
    // getent ahosts asks with AI_ADDRCONFIG: this namespace has no IPv4 address, so it asks
    // AAAA only.
    let with_v4 = [
        Client::Glibc,
        Client::Musl,
        Client::Cares118Gai,
        Client::Nginx,
    ];
    assert_dns64_hands_out_ipv4(&out, &with_v4, "plain dns64");
}

#[test]
fn dualstack_filter_a_behind_dns64_gives_ipv6_only_clients_no_ipv4() {
    let _serial = serial();
    if !plugins_present(&["dns64", "dualstack"]) {
        return;
    }
    let Some(out) = ipv6_only(
        9,
        "    dualstack {\n        filter_a fd00:f3d::/48\n    }\n    dns64",
    ) else {
        return;
    };
    for c in ALL {
        let o = &out[&c];
        assert!(
            o.resolved() && o.addrs.contains(&IpAddr::V6(SYNTHESIZED)) && !o.has_v4(),
            "dualstack filter_a + dns64: {c:?} should get only {SYNTHESIZED}, got {o:?}"
        );
    }
}

/// The first A and the first AAAA question ferrodns finished for a client, in order.
fn first_two(o: &Outcome) -> Vec<&str> {
    let mut seen = Vec::new();
    for q in &o.queries {
        let t = q.split_whitespace().next().unwrap_or("");
        if (t == "A" || t == "AAAA") && !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen
}

/// How each client asks: with the AAAA answer held back 400 ms, a client that asks both at once
/// finishes A first; with the A answer held back, AAAA first. A client that asks one after the
/// other finishes them in its own order either way.
#[test]
fn which_clients_ask_a_and_aaaa_in_parallel() {
    let _serial = serial();
    let Some(c) = clients() else { return };
    let ns = Netns::new(10, true, &[]);
    let a = ns.ns4.unwrap();
    let up = incident_upstream(a, Behavior::Delay(400));
    let srv = ferrodns(&ns, "", &up);
    let slow_aaaa = resolve_all(c, &ns, &srv, NAME);
    up.set_name_type(&format!("{NAME}."), RecordType::AAAA, Behavior::Answer);
    up.set_name_type(&format!("{NAME}."), RecordType::A, Behavior::Delay(400));
    let slow_a = resolve_all(c, &ns, &srv, NAME);
    let mut parallel = Vec::new();
    let mut sequential = Vec::new();
    for client in ALL {
        let (x, y) = (first_two(&slow_aaaa[&client]), first_two(&slow_a[&client]));
        assert!(slow_aaaa[&client].resolved() && slow_a[&client].resolved());
        if x == ["A", "AAAA"] && y == ["AAAA", "A"] {
            parallel.push(client);
        } else if x == y && x.len() == 2 {
            sequential.push((client, x.join(" then ")));
        } else {
            panic!("{client:?}: unexpected question pattern {x:?} / {y:?}");
        }
    }
    eprintln!("question patterns: parallel {parallel:?}; sequential {sequential:?}");
    assert_eq!(
        parallel,
        vec![
            Client::Glibc,
            Client::Getent,
            Client::Musl,
            Client::Cares118Gai,
            Client::Cares118Ghbn,
            Client::PgBouncer,
            Client::Nginx,
        ]
    );
    assert_eq!(
        sequential,
        vec![
            (Client::Cares115Ghbn, "AAAA then A".to_string()),
            (Client::PgBouncer115, "AAAA then A".to_string()),
        ]
    );
}

#[test]
fn dns64_allow_ipv4_hands_clients_asking_over_ipv4_the_ipv4_address_too() {
    let _serial = serial();
    if !plugins_present(&["dns64"]) {
        return;
    }
    let Some(out) = nat64_client(11, true, "    dns64 {\n        allow_ipv4\n    }") else {
        return;
    };
    // This namespace has an IPv4 address, so getent's AI_ADDRCONFIG lets it ask A as well.
    let with_v4 = [
        Client::Glibc,
        Client::Getent,
        Client::Musl,
        Client::Cares118Gai,
        Client::Nginx,
    ];
    assert_dns64_hands_out_ipv4(&out, &with_v4, "dns64 allow_ipv4");
}

#[test]
fn dualstack_filter_a_for_clients_asking_over_ipv4_behind_dns64_allow_ipv4() {
    let _serial = serial();
    if !plugins_present(&["dns64", "dualstack"]) {
        return;
    }
    let Some(out) = nat64_client(
        12,
        true,
        "    dualstack {\n        filter_a 198.18.12.2/32\n    }\n    dns64 {\n        allow_ipv4\n    }",
    ) else {
        return;
    };
    for c in ALL {
        let o = &out[&c];
        assert!(
            o.resolved() && o.addrs == [IpAddr::V6(SYNTHESIZED)],
            "dualstack filter_a + dns64 allow_ipv4: {c:?} should get only {SYNTHESIZED}, got {o:?}"
        );
    }
}

/// An upstream that never answers AAAA: `forward` gives up after its 5 s deadline and answers
/// SERVFAIL, which races the clients' own timeouts (2 s here). Slow (about three minutes) and
/// timing-bound, so not part of the default run:
/// `cargo test --test interop_dualstack -- --ignored silent`.
#[test]
#[ignore]
fn silent_aaaa_upstream_with_and_without_dualstack() {
    let _serial = serial();
    let Some((a, out)) = incident(13, Behavior::Drop, "") else {
        return;
    };
    // glibc re-asks and settles for the A answer; musl gives up at its own timeout; nginx waits
    // for ferrodns's SERVFAIL and fails. (c-ares and PgBouncer depend on which timeout fires
    // first; see the README.)
    assert_resolved(&out, &[Client::Glibc, Client::Getent], a, "silent AAAA");
    assert_error(&out, Client::Musl, "Try again");
    assert_error(
        &out,
        Client::Nginx,
        "could not be resolved (2: Server failure)",
    );
    if !plugins_present(&["dualstack"]) {
        return;
    }
    let Some((a, out)) = incident(14, Behavior::Drop, DUALSTACK_FIX) else {
        return;
    };
    // dualstack turns the SERVFAIL at forward's deadline into NODATA: every client that waits
    // that long resolves; musl's 2 s timeout is shorter.
    let patient: Vec<Client> = ALL.into_iter().filter(|c| *c != Client::Musl).collect();
    assert_resolved(
        &out,
        &patient,
        a,
        "silent AAAA, dualstack aaaa_failure nodata",
    );
    assert_error(&out, Client::Musl, "Try again");
}
