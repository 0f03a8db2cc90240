//! `loadbalance` against the real binary over UDP and TCP.
//!
//! The tests built on `whoami` run with this build alone: its additional section holds an A
//! record (an address) and an SRV record (another type), which every policy reorders in a way
//! a client can see. The tests that need several address records of one name use `hosts` and
//! are skipped, loudly, by a binary that does not have it.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, binary, free_port, temp_dir};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

/// The additional section as record types, in order.
fn additional_types(m: &Message) -> Vec<RecordType> {
    m.additionals.iter().map(|r| r.record_type()).collect()
}

fn both(s: &Server, name: &str, qtype: RecordType) -> [Message; 2] {
    [s.udp(name, qtype), s.tcp(name, qtype)]
}

#[test]
fn whoami_alone_sends_address_first() {
    // The control: without loadbalance, whoami's own order.
    let s = Server::start(".:PORT {\n    whoami\n}\n");
    for m in both(&s, "example.org.", RecordType::A) {
        assert_eq!(additional_types(&m), [RecordType::A, RecordType::SRV]);
    }
}

#[test]
fn round_robin_puts_other_types_before_addresses() {
    for policy in ["loadbalance", "loadbalance round_robin"] {
        let s = Server::start(&format!(".:PORT {{\n    {policy}\n    whoami\n}}\n"));
        for _ in 0..5 {
            for m in both(&s, "example.org.", RecordType::A) {
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                assert_eq!(
                    additional_types(&m),
                    [RecordType::SRV, RecordType::A],
                    "{policy}"
                );
            }
        }
    }
}

#[test]
fn prefer_puts_addresses_first() {
    let s = Server::start(
        ".:PORT {\n    loadbalance round_robin {\n        prefer 127.0.0.0/8\n    }\n    whoami\n}\n",
    );
    for m in both(&s, "example.org.", RecordType::A) {
        assert_eq!(additional_types(&m), [RecordType::A, RecordType::SRV]);
    }
}

#[test]
fn weighted_reorders_address_queries_only() {
    let dir = temp_dir("lb-weights");
    let wf = dir.join("weights");
    std::fs::write(&wf, "example.org\n127.0.0.1 5\n").unwrap();
    let s = Server::start(&format!(
        ".:PORT {{\n    loadbalance weighted {} {{\n        reload 0s\n    }}\n    whoami\n}}\n",
        wf.display()
    ));
    for m in both(&s, "example.org.", RecordType::A) {
        assert_eq!(additional_types(&m), [RecordType::SRV, RecordType::A]);
    }
    // Not A, AAAA or SRV: the weighted policy leaves the answer alone.
    for m in both(&s, "example.org.", RecordType::TXT) {
        assert_eq!(additional_types(&m), [RecordType::A, RecordType::SRV]);
    }
    let out = s.wait_stdout("Successfully reloaded");
    assert!(
        out.contains(&format!(
            "[INFO] plugin/loadbalance: Successfully reloaded weight file {}",
            wf.display()
        )),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn weight_file_is_reread_and_may_appear_later() {
    let dir = temp_dir("lb-reload");
    let wf = dir.join("weights");
    let s = Server::start(&format!(
        ".:PORT {{\n    loadbalance weighted {} {{\n        reload 1s\n    }}\n    whoami\n}}\n",
        wf.display()
    ));
    let out = s.wait_stdout("Failed to open");
    assert!(
        out.contains("[WARNING] plugin/loadbalance: Failed to open weight file:weight file open error. Will try again in 1s"),
        "{out}"
    );
    std::fs::write(&wf, "example.org\n127.0.0.1 5\n").unwrap();
    let want = format!(
        "[INFO] plugin/loadbalance: Successfully reloaded weight file {}",
        wf.display()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.stdout_text().contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stdout_text().contains(&want), "{}", s.stdout_text());
    // A broken file is reported once and the server keeps serving.
    std::fs::write(&wf, "example.org\n127.0.0.1 0\n").unwrap();
    let bad = format!(
        "[ERROR] plugin/loadbalance: wrong weight value:\"0\" in weight file {}",
        wf.display()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.stdout_text().contains(&bad) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(s.stdout_text().contains(&bad), "{}", s.stdout_text());
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(s.stdout_text().matches(&bad).count(), 1);
    assert_eq!(
        s.udp("example.org.", RecordType::A).metadata.response_code,
        ResponseCode::NoError
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run the binary on a Corefile that must not start; its exit code and output.
fn start_fails(corefile: &str) -> (Option<i32>, String) {
    let dir = temp_dir("lb-bad");
    let port = free_port();
    let conf = dir.join("Corefile");
    std::fs::write(&conf, corefile.replace("PORT", &port.to_string())).unwrap();
    let out = Command::new(binary())
        .arg("-conf")
        .arg(&conf)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn bad_configurations_stop_start_up() {
    let table = [
        (
            ".:PORT {\n    loadbalance fleeb\n}\n",
            "plugin/loadbalance: unknown policy: fleeb",
        ),
        (
            ".:PORT {\n    loadbalance weighted\n}\n",
            "Corefile:2 - Error during parsing: missing weight file argument",
        ),
        (
            ".:PORT {\n    loadbalance round_robin {\n        reload 10s\n    }\n}\n",
            "Error during parsing: unknown property 'reload'",
        ),
        (
            ".:PORT {\n    loadbalance {\n        prefer 10.0.0.0/40\n    }\n}\n",
            "Error during parsing: invalid CIDR \"10.0.0.0/40\": invalid CIDR address: 10.0.0.0/40",
        ),
        (
            ".:PORT {\n    loadbalance weighted /nonexistent/ferrodns/weights {\n        reload 0s\n    }\n}\n",
            "plugin/loadbalance: weight file open error",
        ),
    ];
    for (corefile, want) in table {
        let (code, out) = start_fails(corefile);
        assert_eq!(code, Some(1), "{corefile}: {out}");
        assert!(out.contains(want), "{corefile}: {out}");
        assert!(out.contains("plugin/loadbalance: "), "{corefile}: {out}");
    }
}

const HOSTS: &str = "    hosts {
        192.0.2.1 a.example
        192.0.2.2 a.example
        192.0.2.3 a.example
        10.0.0.1 a.example
        2001:db8::1 a.example
        2001:db8::2 a.example
        fallthrough
    }
";

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn round_robin_shuffles_hosts_answers() {
    let s = Server::start(&format!(".:PORT {{\n    loadbalance\n{HOSTS}}}\n"));
    let mut first = std::collections::HashSet::new();
    for i in 0..200 {
        let m = if i % 2 == 0 {
            s.udp("a.example.", RecordType::A)
        } else {
            s.tcp("a.example.", RecordType::A)
        };
        let mut got = addresses(&m);
        first.insert(got[0].clone());
        got.sort();
        assert_eq!(got, ["10.0.0.1", "192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    }
    assert_eq!(first.len(), 4, "{first:?}");
}

#[test]
fn prefer_orders_hosts_answers() {
    let s = Server::start(&format!(
        ".:PORT {{\n    loadbalance {{\n        prefer 10.0.0.0/8 2001:db8::2/128\n    }}\n{HOSTS}}}\n"
    ));
    for _ in 0..50 {
        let m = s.udp("a.example.", RecordType::A);
        assert_eq!(addresses(&m)[0], "10.0.0.1");
        let m = s.tcp("a.example.", RecordType::AAAA);
        assert_eq!(addresses(&m), ["2001:db8::2", "2001:db8::1"]);
    }
}

#[test]
fn weighted_hosts_answers_follow_the_weights() {
    let dir = temp_dir("lb-hosts-w");
    let wf = dir.join("weights");
    std::fs::write(
        &wf,
        "a.example\n192.0.2.1 3\n192.0.2.2 1\n192.0.2.3 2\n10.0.0.1 2\n",
    )
    .unwrap();
    let s = Server::start(&format!(
        ".:PORT {{\n    loadbalance weighted {}\n{HOSTS}}}\n",
        wf.display()
    ));
    let mut counts = std::collections::HashMap::new();
    let n = 800;
    for _ in 0..n {
        let m = s.udp("a.example.", RecordType::A);
        *counts.entry(addresses(&m)[0].clone()).or_insert(0u32) += 1;
    }
    // Expected 3:1:2:2 of 800 = 300, 100, 200, 200.
    for (ip, want) in [
        ("192.0.2.1", 300),
        ("192.0.2.2", 100),
        ("192.0.2.3", 200),
        ("10.0.0.1", 200),
    ] {
        let got = counts.get(ip).copied().unwrap_or(0) as i32;
        assert!((got - want).abs() < 80, "{counts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
