//! Any hosts file must load (entries it cannot use are skipped), and every name and address it
//! gave must be found again; reverse names of any spelling must map to an address or to none.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;

use ferrodns::plugins::hosts::table::{HostsMap, Table, parse, reverse_addr};

fuzz_target!(|data: &[u8]| {
    // The first line stands in for the Corefile's inline entries, the rest for the file.
    let (inline, file) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let origins = [".".to_string()];
    let reverse = data.len() % 2 == 0;
    let file = parse(file, &origins, reverse);
    let inline = parse(inline, &origins, reverse);
    let _ = parse(
        data,
        &["example.org.".to_string(), "in-addr.arpa.".to_string()],
        true,
    );
    let table = Table::build(&file, &inline);
    check(&table, &file);
    check(&table, &inline);
    for word in String::from_utf8_lossy(data).split_whitespace().take(16) {
        let w = word.to_ascii_lowercase();
        let _ = table.lookup(&w);
        for name in [
            w.clone(),
            format!("{w}.in-addr.arpa."),
            format!("{w}.ip6.arpa."),
        ] {
            if let Some(ip) = reverse_addr(&name) {
                let _ = table.reverse(&ip);
            }
        }
    }
});

fn check(table: &Table, map: &HostsMap) {
    for (name, v4) in &map.name4 {
        assert!(name.ends_with('.'));
        let a = table.lookup(name).expect("a listed name is found");
        for ip in v4 {
            assert!(a.v4.contains(ip));
        }
    }
    for (name, v6) in &map.name6 {
        let a = table.lookup(name).expect("a listed name is found");
        for ip in v6 {
            assert!(a.v6.contains(ip));
        }
    }
    for addr in map.addr.keys() {
        let _ = table.reverse(addr);
        // The reverse name of a stored address leads back to it.
        let rev = match addr {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
            }
            IpAddr::V6(v6) => {
                let mut s = String::new();
                for b in v6.octets().iter().rev() {
                    s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
                }
                s + "ip6.arpa."
            }
        };
        assert_eq!(reverse_addr(&rev), Some(*addr), "{rev}");
    }
}
