//! `loop` against the real binary: a server without a loop keeps serving; a server that
//! forwards to itself, or two servers that forward to each other, stop with CoreDNS's fatal
//! message. The loop tests need the `forward` plugin and are skipped, loudly, by a binary that
//! does not have it.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, binary, free_port, temp_dir};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const TROUBLESHOOTING: &str =
    "see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO ";

#[test]
fn no_loop_keeps_serving() {
    let mut s = Server::start(".:PORT {\n    loop\n    whoami\n}\n");
    // The probe is answered within moments; give it time to go wrong if it were to.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.alive(), "{}", s.stdout_text());
    for _ in 0..3 {
        // The same HINFO name three times is no loop once the probe has ended.
        let m = s.udp("1.2.", RecordType::HINFO);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let m = s.tcp("1.2.", RecordType::HINFO);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    assert!(s.alive());
    assert!(!s.stdout_text().contains("[FATAL]"), "{}", s.stdout_text());
}

#[test]
fn loop_takes_no_arguments() {
    let dir = temp_dir("loop-bad");
    let conf = dir.join("Corefile");
    std::fs::write(&conf, format!(".:{} {{\n    loop yes\n}}\n", free_port())).unwrap();
    let out = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains("plugin/loop: ")
            && text.contains("Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'yes'"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A ferrodns started without waiting for it to listen: it may well stop on its own.
struct Proc {
    child: Child,
    dir: PathBuf,
}

impl Proc {
    fn start(corefile: &str) -> Proc {
        let dir = temp_dir("loop");
        let conf = dir.join("Corefile");
        std::fs::write(&conf, corefile).unwrap();
        let child = Command::new(binary())
            .arg("-conf")
            .arg(&conf)
            .current_dir(&dir)
            .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc { child, dir }
    }

    /// The exit code once it stopped, or None if it is still running after `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `[FATAL]` line, checked against CoreDNS's format; returns the probe name it shows.
fn check_fatal(out: &str, to: &str, zone: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.starts_with("[FATAL] plugin/loop: Loop ("))
        .unwrap_or_else(|| panic!("no fatal loop line in: {out}"));
    let rest = line
        .strip_prefix("[FATAL] plugin/loop: Loop (127.0.0.1:")
        .expect(line);
    let (client_port, rest) = rest.split_once(" -> ").expect(line);
    assert!(client_port.parse::<u16>().is_ok(), "{line}");
    let want = format!("{to}) detected for zone \"{zone}\", {TROUBLESHOOTING}");
    let qname = rest
        .strip_prefix(&want)
        .expect(line)
        .strip_suffix('"')
        .expect(line);
    let labels: Vec<&str> = qname.split('.').collect();
    assert!(
        labels[0].parse::<u64>().is_ok() && labels[1].parse::<u64>().is_ok(),
        "{line}"
    );
    let zone_part = if zone == "." { "" } else { zone };
    assert_eq!(
        qname,
        format!("{}.{}.{zone_part}", labels[0], labels[1]),
        "{line}"
    );
    qname.to_string()
}

#[test]
fn forwarding_to_itself_is_fatal() {
    let port = free_port();
    let mut p = Proc::start(&format!(
        ".:{port} {{\n    loop\n    forward . 127.0.0.1:{port}\n}}\n"
    ));
    let code = p.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{}", p.output());
    check_fatal(&p.output(), &format!(":{port}"), ".");
}

#[test]
fn loop_in_a_zone_names_the_zone() {
    let port = free_port();
    let mut p = Proc::start(&format!(
        "example.org:{port} {{\n    loop\n    forward . 127.0.0.1:{port}\n}}\n"
    ));
    assert_eq!(
        p.wait_exit(Duration::from_secs(20)),
        Some(1),
        "{}",
        p.output()
    );
    check_fatal(&p.output(), &format!(":{port}"), "example.org.");
}

#[test]
fn two_servers_forwarding_to_each_other() {
    let (pa, pb) = (free_port(), free_port());
    let mut a = Proc::start(&format!(
        ".:{pa} {{\n    loop\n    forward . 127.0.0.1:{pb}\n}}\n"
    ));
    let mut b = Proc::start(&format!(
        ".:{pb} {{\n    loop\n    forward . 127.0.0.1:{pa}\n}}\n"
    ));
    // Each probe goes round A -> B -> A ...; at least one of the two sees its own probe a
    // third time and stops (the other may lose its peer first and see its probe answered).
    let code_a = a.wait_exit(Duration::from_secs(20));
    let code_b = b.wait_exit(Duration::from_secs(5));
    let stopped: Vec<(&Proc, u16)> = [(code_a, &a, pa), (code_b, &b, pb)]
        .into_iter()
        .filter(|(code, _, _)| *code == Some(1))
        .map(|(_, p, port)| (p, port))
        .collect();
    assert!(!stopped.is_empty(), "A: {}\nB: {}", a.output(), b.output());
    for (p, port) in stopped {
        check_fatal(&p.output(), &format!(":{port}"), ".");
    }
}
