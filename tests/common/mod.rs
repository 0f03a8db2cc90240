//! Starting the real `ferrodns` binary on loopback and talking DNS to it over UDP and TCP.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

/// A running ferrodns; killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// A port free for both UDP and TCP on 127.0.0.1 right now, chosen below the kernel's ephemeral
/// range (32768 and up): a port the kernel hands out itself can be taken by any outgoing
/// connection (an upstream, another test) between this check and ferrodns's bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    loop {
        // splitmix64 over a per-process counter: distinct tests in one process and distinct
        // test processes draw different ports.
        let mut x = seed.wrapping_add(STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let port = 20000 + (x % 12000) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferrodns-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ferrodns")
}

impl Server {
    /// Start with a Corefile in which `PORT` stands for a free port. Waits until it answers.
    pub fn start(corefile: &str) -> Server {
        Self::start_with(corefile, &[])
    }

    pub fn start_with(corefile: &str, extra_args: &[&str]) -> Server {
        retry_taken_port(|| spawn(corefile, &[], &[], extra_args))
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.try_ready() {
            panic!("{e}");
        }
    }

    /// Wait until the server accepts TCP; an error with its stderr if it exited instead.
    fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "ferrodns exited with {status}: {}",
                    self.stderr_text()
                ));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "ferrodns did not start listening: {}",
            self.stderr_text()
        ))
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until stdout contains `needle` (log lines are written as queries finish).
    pub fn wait_stdout(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.stdout_text();
            if out.contains(needle) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A query that must be answered. Like a stub resolver, it asks again (three tries of 2 s)
    /// before giving up, so a loaded test machine that delays one datagram does not fail the
    /// test; a server that never answers still does.
    pub fn udp(&self, name: &str, qtype: RecordType) -> Message {
        let q = query(name, qtype);
        (0..3)
            .find_map(|_| udp_exchange(self.addr(), &q))
            .expect("udp answer")
    }

    pub fn tcp(&self, name: &str, qtype: RecordType) -> Message {
        tcp_exchange(self.addr(), &query(name, qtype)).expect("tcp answer")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A recursive query for `name`/`qtype` in class IN, with a random ID.
pub fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.id = rand_id();
    m.metadata.recursion_desired = true;
    m.queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m
}

pub fn query_class(name: &str, qtype: RecordType, class: DNSClass) -> Message {
    let mut m = query(name, qtype);
    m.queries[0].query_class = class;
    m
}

pub fn with_edns(mut m: Message, size: u16) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(size);
    m.edns = Some(e);
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static ID: AtomicU16 = AtomicU16::new(1);
    ID.fetch_add(7919, Ordering::Relaxed)
}

pub fn udp_exchange(addr: SocketAddr, m: &Message) -> Option<Message> {
    let raw = udp_raw(addr, &m.to_vec().unwrap())?;
    Message::from_vec(&raw).ok()
}

/// Send bytes over UDP; the reply bytes, or None after a 2 s wait.
pub fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(bytes, addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

pub fn tcp_exchange(addr: SocketAddr, m: &Message) -> Option<Message> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write_frame(&mut s, &m.to_vec().unwrap());
    let raw = read_frame(&mut s)?;
    Message::from_vec(&raw).ok()
}

pub fn write_frame(s: &mut TcpStream, bytes: &[u8]) {
    let mut frame = (bytes.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(bytes);
    s.write_all(&frame).unwrap();
}

pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Whether a command exists on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Interop tools are required in CI (the test script installs them); a developer without them
/// gets a loud skip instead of a failure.
pub fn require(cmd: &str) -> bool {
    if have(cmd) {
        return true;
    }
    if std::env::var_os("CI").is_some() || std::env::var_os("FERRODNS_REQUIRE_TOOLS").is_some() {
        panic!("{cmd} is required (run scripts/install-deps.sh)");
    }
    eprintln!("SKIPPED: {cmd} not installed (run scripts/install-deps.sh)");
    false
}

/// Start with a Corefile plus files beside it (relative names, `PORT` replaced in every one) and
/// extra environment variables for the server process.
pub fn start_with_files(corefile: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> Server {
    retry_taken_port(|| spawn(corefile, files, env, &[]))
}

/// Write the Corefile and the files beside it (`PORT` replaced in each) into a fresh folder and
/// start the binary there, without waiting for it.
fn spawn(
    corefile: &str,
    files: &[(&str, &str)],
    env: &[(&str, &str)],
    extra_args: &[&str],
) -> Server {
    let port = free_port();
    let dir = temp_dir("srv");
    let port_text = port.to_string();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text.replace("PORT", &port_text)).unwrap();
    }
    let conf = dir.join("Corefile");
    std::fs::write(&conf, corefile.replace("PORT", &port_text)).unwrap();
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let child = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .args(extra_args)
        .envs(env.iter().copied())
        .current_dir(&dir)
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start ferrodns");
    Server {
        child,
        port,
        dir,
        stdout,
        stderr,
    }
}

/// Start a server (spawned by `spawn`, not yet ready) and wait for it. If its port was taken
/// between `free_port` and its bind, which a parallel test can cause, try again on another.
fn retry_taken_port(spawn: impl Fn() -> Server) -> Server {
    let mut attempts = 0;
    loop {
        let mut s = spawn();
        match s.try_ready() {
            Ok(()) => return s,
            Err(e) if attempts < 4 && e.contains("address already in use") => attempts += 1,
            Err(e) => panic!("{e}"),
        }
    }
}

/// What a run that must fail left behind.
pub struct Failed {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The Corefile's path, as given to `-conf`.
    pub conf: PathBuf,
    /// The port `PORT` stood for.
    pub port: u16,
    dir: PathBuf,
}

impl Drop for Failed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run the binary on a Corefile (and files beside it, `PORT` replaced) that must make it exit;
/// panics if it is still running after 10 s.
pub fn run_to_exit(corefile: &str, files: &[(&str, &str)]) -> Failed {
    let port = free_port();
    let dir = temp_dir("fail");
    let port_text = port.to_string();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text.replace("PORT", &port_text)).unwrap();
    }
    let conf = dir.join("Corefile");
    std::fs::write(&conf, corefile.replace("PORT", &port_text)).unwrap();
    let mut child = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start ferrodns");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferrodns did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Failed {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        conf,
        port,
        dir,
    }
}

/// Like [`udp_exchange`], from a chosen local address (`127.0.0.2:0`, `[::1]:0`): loopback has
/// every 127/8 address, so tests can play several clients.
pub fn udp_exchange_from(local: &str, addr: SocketAddr, m: &Message) -> Option<Message> {
    let sock = UdpSocket::bind(local).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&m.to_vec().unwrap(), addr).unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Message::from_vec(&buf[..n]).ok()
}

/// Like [`tcp_exchange`], from a chosen local address; `None` when no answer comes within
/// `wait`.
pub fn tcp_exchange_from(
    local: SocketAddr,
    addr: SocketAddr,
    m: &Message,
    wait: Duration,
) -> Option<Message> {
    let domain = if local.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).ok()?;
    sock.bind(&local.into()).ok()?;
    sock.connect(&addr.into()).ok()?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(wait)).unwrap();
    write_frame(&mut s, &m.to_vec().unwrap());
    let raw = read_frame(&mut s)?;
    Message::from_vec(&raw).ok()
}

impl Server {
    /// Like [`Server::wait_stdout`], waiting up to `secs` seconds.
    pub fn wait_stdout_for(&self, needle: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.stdout_text();
            if out.contains(needle) || Instant::now() > deadline {
                return out;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `owner ttl TYPE rdata` of every answer record, for comparing whole answers in one assert.
pub fn answer_lines(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .map(|rr| format!("{} {} {} {}", rr.name, rr.ttl, rr.record_type(), rr.data))
        .collect()
}

/// Ask `name`/`qtype` of `srv` from `client` (an IPv4 loopback address such as "127.0.0.2", or
/// "::1") over `proto` ("udp" or "tcp"); panics when no answer comes.
pub fn ask_from(srv: &Server, client: &str, proto: &str, name: &str, qtype: RecordType) -> Message {
    let v6 = client.contains(':');
    let server: SocketAddr = if v6 {
        format!("[::1]:{}", srv.port).parse().unwrap()
    } else {
        srv.addr()
    };
    let local: SocketAddr = if v6 {
        "[::1]:0".parse().unwrap()
    } else {
        format!("{client}:0").parse().unwrap()
    };
    let q = query(name, qtype);
    let m = match proto {
        "udp" => udp_exchange_from(&local.to_string(), server, &q),
        _ => tcp_exchange_from(local, server, &q, Duration::from_secs(2)),
    };
    m.unwrap_or_else(|| panic!("no {proto} answer from {client} for {name} {qtype}"))
}
