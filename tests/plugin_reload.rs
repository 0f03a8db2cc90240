//! `reload`, SIGUSR1 and the listener swap, end to end: the real binary, its Corefile changed
//! under it, queried over UDP and TCP throughout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn rcode_udp(addr: SocketAddr, name: &str) -> Option<ResponseCode> {
    udp_exchange(addr, &query(name, RecordType::A)).map(|m| m.metadata.response_code)
}

/// Poll `cond` for up to `secs` seconds.
fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn write_corefile(srv: &Server, text: &str) {
    // Written to a temporary name and renamed, as editors and ConfigMaps do: never half a file.
    let tmp = srv.dir.join("Corefile.tmp");
    std::fs::write(&tmp, text.replace("PORT", &srv.port.to_string())).unwrap();
    std::fs::rename(&tmp, srv.dir.join("Corefile")).unwrap();
}

/// Queries sent without pause from another thread, counting the unanswered ones.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    lost: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let lost = Arc::new(AtomicUsize::new(0));
        let (s, n, l) = (stop.clone(), sent.clone(), lost.clone());
        let thread = std::thread::spawn(move || {
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                i += 1;
                n.fetch_add(1, Ordering::Relaxed);
                let q = query("www.example.org.", RecordType::A);
                let answered = if i.is_multiple_of(4) {
                    tcp_exchange(addr, &q).is_some()
                } else {
                    udp_exchange(addr, &q).is_some()
                };
                if !answered {
                    l.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Load {
            stop,
            sent,
            lost,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }
}

#[test]
fn changed_corefile_is_served_without_losing_queries() {
    let srv = Server::start("example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n");
    assert!(
        srv.wait_stdout("plugin/reload: Running configuration SHA512 = ")
            .contains("SHA512")
    );
    assert_eq!(
        rcode_udp(srv.addr(), "example.net."),
        Some(ResponseCode::Refused)
    );
    let load = Load::start(srv.addr());
    write_corefile(
        &srv,
        "example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n.:PORT {\n    whoami\n}\n",
    );
    assert!(
        eventually(10, || rcode_udp(srv.addr(), "example.net.")
            == Some(ResponseCode::NoError)),
        "{}",
        srv.stdout_text()
    );
    let (sent, lost) = load.finish();
    assert!(sent > 20, "load ran: {sent}");
    assert_eq!(lost, 0, "of {sent} queries during the reload");
    let out = srv.wait_stdout("Reloading complete");
    assert!(out.contains("[INFO] Reloading\n"), "{out}");
    assert_eq!(
        out.matches("plugin/reload: Running configuration SHA512 = ")
            .count(),
        2,
        "{out}"
    );
}

#[test]
fn symlink_swap_like_a_configmap_is_seen() {
    // Kubernetes mounts Corefile -> ..data/Corefile, ..data -> ..TIMESTAMP, and swaps ..data.
    let srv = Server::start("example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n");
    let dir = &srv.dir;
    let v1 = dir.join("..v1");
    let v2 = dir.join("..v2");
    std::fs::create_dir_all(&v1).unwrap();
    std::fs::create_dir_all(&v2).unwrap();
    let port = srv.port.to_string();
    std::fs::write(
        v1.join("Corefile"),
        "example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n".replace("PORT", &port),
    )
    .unwrap();
    std::fs::write(
        v2.join("Corefile"),
        ".:PORT {\n    reload 2s 1s\n    whoami\n}\n".replace("PORT", &port),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    let tmp = dir.join("Corefile.link");
    std::os::unix::fs::symlink("..data/Corefile", &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("Corefile")).unwrap();
    // Same content as before the links: still refused outside example.org.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        rcode_udp(srv.addr(), "example.net."),
        Some(ResponseCode::Refused)
    );
    assert!(
        !srv.stdout_text().contains("Reloading"),
        "{}",
        srv.stdout_text()
    );
    // Swap ..data atomically, as the kubelet does.
    let swap = dir.join("..data_tmp");
    std::os::unix::fs::symlink("..v2", &swap).unwrap();
    std::fs::rename(&swap, dir.join("..data")).unwrap();
    assert!(
        eventually(10, || rcode_udp(srv.addr(), "example.net.")
            == Some(ResponseCode::NoError)),
        "{}",
        srv.stdout_text()
    );
}

#[test]
fn invalid_change_keeps_the_old_configuration() {
    let mut srv = Server::start("example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n");
    write_corefile(
        &srv,
        ".:PORT {\n    reload 2s 1s\n    whoami\n    nosuchplugin\n}\n",
    );
    let out = srv.wait_stdout_for("plugin/reload: Corefile changed but reload failed", 10);
    assert!(
        out.contains("[ERROR] plugin/reload: Corefile changed but reload failed: "),
        "{out}"
    );
    assert!(out.contains("Unknown directive 'nosuchplugin'"), "{out}");
    assert!(out.contains("[ERROR] Restart failed: "), "{out}");
    assert!(srv.alive());
    // The old configuration still answers, and still refuses what it refused.
    assert_eq!(
        rcode_udp(srv.addr(), "www.example.org."),
        Some(ResponseCode::NoError)
    );
    assert_eq!(
        rcode_udp(srv.addr(), "example.net."),
        Some(ResponseCode::Refused)
    );
    // A later valid change is applied.
    write_corefile(&srv, ".:PORT {\n    reload 2s 1s\n    whoami\n}\n");
    assert!(eventually(10, || rcode_udp(srv.addr(), "example.net.")
        == Some(ResponseCode::NoError)));
}

#[test]
fn sigusr1_reloads_at_once() {
    let srv = Server::start("example.org:PORT {\n    whoami\n}\n");
    write_corefile(&srv, ".:PORT {\n    whoami\n}\n");
    srv.signal(libc::SIGUSR1);
    assert!(
        eventually(5, || rcode_udp(srv.addr(), "example.net.")
            == Some(ResponseCode::NoError)),
        "{}",
        srv.stdout_text()
    );
    let out = srv.wait_stdout("Reloading complete");
    assert!(out.contains("[INFO] SIGUSR1: Reloading"), "{out}");
    // A broken file on SIGUSR1 is logged and changes nothing.
    write_corefile(&srv, ".:PORT {\n    whoami\n    nosuchplugin\n}\n");
    srv.signal(libc::SIGUSR1);
    let out = srv.wait_stdout("[ERROR] SIGUSR1: ");
    assert!(out.contains("Unknown directive 'nosuchplugin'"), "{out}");
    assert_eq!(
        rcode_udp(srv.addr(), "example.net."),
        Some(ResponseCode::NoError)
    );
}

#[test]
fn reload_opens_new_listeners_and_closes_dropped_ones() {
    let srv = Server::start("example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n");
    let second = free_port();
    let second_addr = SocketAddr::from(([127, 0, 0, 1], second));
    write_corefile(
        &srv,
        &format!(
            "example.org:PORT {{\n    reload 2s 1s\n    whoami\n}}\n.:{second} {{\n    whoami\n}}\n"
        ),
    );
    assert!(
        eventually(10, || rcode_udp(second_addr, "example.net.")
            == Some(ResponseCode::NoError)),
        "{}",
        srv.stdout_text()
    );
    write_corefile(
        &srv,
        "example.org:PORT {\n    reload 2s 1s\n    whoami\n}\n",
    );
    assert!(
        eventually(10, || std::net::TcpStream::connect(second_addr).is_err()),
        "{}",
        srv.stdout_text()
    );
    assert_eq!(
        rcode_udp(srv.addr(), "www.example.org."),
        Some(ResponseCode::NoError)
    );
}

#[test]
fn reload_options_are_checked() {
    let dir = temp_dir("reloadbad");
    for (text, needle) in [
        (
            "reload 1s",
            "plugin/reload: interval value must be greater or equal to 2s",
        ),
        (
            "reload 10s 10ms",
            "plugin/reload: jitter value must be greater or equal to 1s",
        ),
        ("reload 1 2 3", "Wrong argument count"),
        (
            "reload\n    reload",
            "this plugin can only be used once per Server Block",
        ),
    ] {
        std::fs::write(
            dir.join("Corefile"),
            format!(".:1053 {{\n    {text}\n    whoami\n}}\n"),
        )
        .unwrap();
        let out = std::process::Command::new(binary())
            .args(["-conf", "Corefile"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
}
